"""Saturated logits, 0 < γ < 1, half precision and all-ignored batches: finite and exact."""

from __future__ import annotations

import math

import pytest
import torch
from cases import TASK_CASES, case_id, make_batch

from torch_imbalance import functional as TF
from torch_imbalance.functional import _math

BIG = 1e4


def _kw(task, **extra):
    return {**({"task": task} if task == "multilabel" else {}), **extra}


def _saturated_batches(task, dtype):
    """Logits at ±1e4: predictions exactly right, exactly wrong, and confidently wrong."""
    n, c = 6, 4
    if task == "multiclass":
        t = torch.arange(n) % c
        right = torch.zeros(n, c, dtype=dtype).scatter(1, t[:, None], BIG)
        wrong = torch.full((n, c), BIG, dtype=dtype).scatter(1, t[:, None], -BIG)
        confident_wrong = torch.zeros(n, c, dtype=dtype).scatter(1, ((t + 1) % c)[:, None], BIG)
    else:
        t = (torch.arange(n * c).view(n, c) % 3 == 0).long()
        sign = t * 2 - 1
        right, wrong = sign * BIG, -sign * BIG
        confident_wrong = torch.where(t == 1, -BIG, BIG).to(dtype)
        right, wrong = right.to(dtype), wrong.to(dtype)
    return t, [right, wrong, confident_wrong]


@pytest.mark.parametrize(("case", "task"), TASK_CASES, ids=lambda v: case_id(v) or v)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_saturated_logits_finite_loss_and_gradients(case, task, dtype):
    t, batches = _saturated_batches(task, dtype)
    extra = {"gamma": 0.5} if case.has_gamma else {}
    for z in batches:
        z = z.clone().requires_grad_()
        loss = case.call_ours(z, t, **_kw(task, **extra))
        loss.backward()
        assert torch.isfinite(loss), (case.name, loss)
        assert torch.isfinite(z.grad).all(), (case.name, z.grad)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_focal_saturated_values(gamma):
    t = torch.tensor([0, 1])
    right = torch.tensor([[BIG, 0.0, 0.0], [0.0, BIG, 0.0]], requires_grad=True)
    # 0 up to the subnormal cutoff (_math.cutoff): (1 + γ) e^{floor + margin} over the mean's
    # factor 1/2.
    floor = 2 * (1 + gamma) * math.exp(_math.exp_floor(torch.float32) + _math.CUTOFF_MARGIN)
    assert 0 <= TF.focal_loss(right, t, gamma=gamma) <= floor
    wrong = torch.tensor([[-BIG, 0.0, 0.0], [0.0, -BIG, 0.0]])
    # p_t = e^{-1e4} / 2 underflows, yet log p_t = -(1e4 + log 2) and the modulator is 1.
    expected = BIG + torch.log(torch.tensor(2.0))
    torch.testing.assert_close(TF.focal_loss(wrong, t, gamma=gamma), expected)


def test_dual_focal_confidently_wrong_value():
    # Target 0 at logit 0, class 1 at 1e4: CE = 1e4, false-class term
    # -log(1 - p_1) = -(logsumexp(0, 0) - 1e4) = 1e4 - log 2, alpha term 2(1 - p_t) = 2.
    z = torch.tensor([[0.0, BIG, 0.0]], requires_grad=True)
    loss = TF.dual_focal_loss(z, torch.tensor([0]))
    expected = torch.tensor(2 * BIG - torch.log(torch.tensor(2.0)).item() + 2)
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-3)
    loss.backward()
    assert torch.isfinite(z.grad).all()


def test_focal_gradient_at_saturation_small_gamma_is_exact():
    # d/dz_t of -(1-p_t)^γ log p_t at p_t ≈ 1 - 2e-13 with γ = 0.5, against 50-digit arithmetic;
    # naive float64 formulas lose 3 digits here and pow-based autograd returns inf/nan at p_t = 1.
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50

    def exact(zt):
        lse = mpmath.log(mpmath.exp(zt) + 2)
        log_pt = zt - lse
        return -((mpmath.mpf(2) / (mpmath.exp(zt) + 2)) ** mpmath.mpf(0.5)) * log_pt

    z = torch.tensor([[30.0, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    TF.focal_loss(z, torch.tensor([0]), gamma=0.5).backward()
    expected = float(mpmath.diff(exact, mpmath.mpf(30)))
    # The closed-form backward works from u = logsumexp_{j≠t} z − z_t and log(1 − p_t) = logsigmoid(u),
    # so no 1 − p_t is ever formed by cancellation: the gradient is exact to float64 precision.
    torch.testing.assert_close(z.grad[0, 0].item(), expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize(("case", "task"), TASK_CASES, ids=lambda v: case_id(v) or v)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_computed_in_float32(case, task, dtype):
    z, t = make_batch(task, (3, 4, 5, 5), 0.1, dtype=dtype)
    z.requires_grad_()
    loss = case.call_ours(z, t, **_kw(task))
    assert loss.dtype == torch.float32
    expected = case.call_ours(z.detach().float(), t, **_kw(task))
    torch.testing.assert_close(loss, expected, rtol=0, atol=0)
    loss.backward()
    assert z.grad.dtype == dtype and torch.isfinite(z.grad.float()).all()


@pytest.mark.parametrize(("case", "task"), TASK_CASES, ids=lambda v: case_id(v) or v)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_all_ignored_batch_is_zero_with_zero_gradients(case, task, reduction):
    z, t = make_batch(task, (2, 4, 3, 3), 1.0, dtype=torch.float32)
    assert (t == -100).all()
    z.requires_grad_()
    weight = torch.rand(4) + 0.1
    loss = case.call_ours(z, t, **_kw(task, reduction=reduction, weight=weight))
    assert loss.requires_grad
    assert torch.equal(loss, torch.zeros_like(loss))
    loss.sum().backward()
    assert torch.equal(z.grad, torch.zeros_like(z))


def test_empty_batch_is_zero():
    z = torch.zeros(0, 3, requires_grad=True)
    loss = TF.focal_loss(z, torch.zeros(0, dtype=torch.long))
    assert loss == 0
    loss.backward()


@pytest.mark.parametrize(("case", "task"), TASK_CASES, ids=lambda v: case_id(v) or v)
@pytest.mark.parametrize("shape", [(0, 4), (0, 4, 3, 3), (2, 4, 0, 3), (2, 4, 3, 0, 2)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_empty_inputs_are_zero_with_zero_gradients(case, task, shape, reduction):
    """Every loss, both tasks: an empty batch or an empty spatial extent gives what multi-class
    cross-entropy gives (0 for mean and sum, an empty tensor for none), never an error."""
    z = torch.zeros(shape, requires_grad=True)
    if task == "multiclass":
        t = torch.zeros((shape[0], *shape[2:]), dtype=torch.long)
    else:
        t = torch.zeros(shape)
    loss = case.call_ours(z, t, **_kw(task, reduction=reduction))
    if reduction == "none":
        assert loss.numel() == 0
    else:
        assert loss.shape == () and float(loss) == 0.0
    (grad,) = torch.autograd.grad(loss.sum(), z, allow_unused=True)
    assert grad is None or (grad.shape == z.shape and grad.numel() == 0)
