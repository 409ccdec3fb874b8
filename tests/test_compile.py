"""torch.compile smoke test: the losses trace and give the eager values and gradients."""

from __future__ import annotations

import pytest
import torch
from cases import COUNTS, make_batch

import torch_imbalance as ti


@pytest.mark.slow
@pytest.mark.parametrize(
    "make_loss",
    [
        lambda: ti.FocalLoss(gamma=2.0),
        lambda: ti.LMFLoss(COUNTS[4]),
        lambda: ti.LMFLoss(COUNTS[4], label_smoothing=0.1, weight=[0.5, 1.0, 1.5, 2.0]),
        lambda: ti.DualFocalLoss(gamma=1.5),
        # Adaptive weights: a training-mode call updates the running frequencies (two modules)
        lambda: ti.build_loss("dual_focal_adaptive", COUNTS[4]),
    ],
    ids=["focal", "lmf", "lmf_smoothed", "dual_focal", "dual_focal_adaptive"],
)
def test_compiled_loss_matches_eager(make_loss):
    torch._dynamo.reset()
    z, t = make_batch("multiclass", (4, 4, 8, 8), 0.1, dtype=torch.float32)
    eager_in = z.clone().requires_grad_()
    compiled_in = z.clone().requires_grad_()
    expected = make_loss()(eager_in, t)
    expected.backward()
    compiled = torch.compile(make_loss())
    value = compiled(compiled_in, t)
    value.backward()
    torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(compiled_in.grad, eager_in.grad, rtol=1e-4, atol=1e-7)
