"""torch.autograd.gradcheck in float64 for every loss (and γ as a differentiable input)."""

from __future__ import annotations

import pytest
import torch
from cases import TASK_CASES, case_id, make_batch
from torch.autograd import gradcheck

from torch_imbalance import functional as TF


@pytest.mark.parametrize(("case", "task"), TASK_CASES, ids=lambda v: case_id(v) or v)
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_gradcheck_logits(case, task, reduction):
    z, t = make_batch(task, (3, 4, 2, 3), 0.25, scale=1.5)
    z.requires_grad_()
    weight = torch.tensor([0.5, 1.0, 1.5, 2.0], dtype=torch.float64)
    kwargs = {"weight": weight, "reduction": reduction}
    if task == "multilabel":
        kwargs["task"] = task
    assert gradcheck(lambda x: case.call_ours(x, t, **kwargs), (z,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
@pytest.mark.parametrize(
    "loss",
    [
        lambda z, t, g, task: TF.focal_loss(z, t, gamma=g, task=task),
        lambda z, t, g, task: TF.dual_focal_loss(z, t, gamma=g, task=task),
        lambda z, t, g, task: TF.lmf_loss(z, t, [9, 3, 2, 1], gamma=g, task=task),
    ],
    ids=["focal", "dual_focal", "lmf"],
)
@pytest.mark.parametrize("gamma0", [0.4, 1.0, 2.5])
def test_gradcheck_gamma(loss, task, gamma0):
    z, t = make_batch(task, (4, 4, 3), 0.2, scale=1.5)
    z.requires_grad_()
    gamma = torch.tensor(gamma0, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda x, g: loss(x, t, g, task), (z, gamma), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("module_name", ["FocalLoss", "DualFocalLoss"])
def test_learnable_gamma_module_gradient_is_exact(module_name):
    import torch_imbalance

    module = getattr(torch_imbalance, module_name)(gamma=1.3, learnable_gamma=True).double()
    functional = TF.focal_loss if module_name == "FocalLoss" else TF.dual_focal_loss
    low, high = module.learnable.low, module.learnable.high
    z, t = make_batch("multiclass", (5, 3, 2), 0.0, scale=1.5)
    z.requires_grad_()

    def loss_of(x, theta):
        return functional(x, t, gamma=low + (high - low) * torch.sigmoid(theta))

    theta = module.learnable.logit.detach().clone().requires_grad_()
    assert gradcheck(loss_of, (z, theta), eps=1e-6, atol=1e-6)
    module(z.detach(), t).backward()
    (expected,) = torch.autograd.grad(loss_of(z.detach(), theta), theta)
    torch.testing.assert_close(module.learnable.logit.grad, expected)
    assert float(expected) < 0  # ∂L/∂γ ≤ 0: training alone pushes γ up
