"""build_loss for every registry name; NormedLinear; the public API contract."""

from __future__ import annotations

import pytest
import torch
from cases import make_batch

import torch_imbalance as ti

COUNTS = [400, 90, 20, 5]
SPEC_NAMES = [
    "ce",
    "weighted_ce",
    "cb_ce",
    "focal",
    "cb_focal",
    "ldam",
    "ldam_drw",
    "lmf",
    "lmf_official",
    "dual_focal",
    "dual_focal_adaptive",
    "balanced_softmax",
    "logit_adjusted",
    "poly1",
]


def test_registry_has_exactly_the_spec_names():
    assert ti.available_losses() == SPEC_NAMES


@pytest.mark.parametrize("name", SPEC_NAMES)
@pytest.mark.parametrize("shape", [(6, 4), (2, 4, 5, 5), (1, 4, 2, 3, 3)])
def test_every_registry_loss_trains(name, shape):
    loss = ti.build_loss(name, COUNTS, **({"total_epochs": 10} if name == "ldam_drw" else {}))
    if hasattr(loss, "set_epoch"):
        loss.set_epoch(9)
    z, t = make_batch("multiclass", shape, 0.1, dtype=torch.float32)
    z.requires_grad_()
    value = loss(z, t)
    value.backward()
    assert value.ndim == 0 and torch.isfinite(value) and torch.isfinite(z.grad).all()


def test_registry_defaults_follow_the_spec():
    assert ti.build_loss("ce").gamma == 0.0
    assert ti.build_loss("focal").gamma == 2.0
    torch.testing.assert_close(
        ti.build_loss("weighted_ce", COUNTS).weight, ti.inverse_frequency_weights(COUNTS)
    )
    torch.testing.assert_close(
        ti.build_loss("cb_ce", COUNTS).weight, ti.effective_number_weights(COUNTS, 0.9999)
    )
    torch.testing.assert_close(
        ti.build_loss("cb_focal", COUNTS, beta=0.99).weight,
        ti.effective_number_weights(COUNTS, 0.99),
    )
    lmf = ti.build_loss("lmf", COUNTS)
    assert (lmf.gamma, lmf.ldam_weight, lmf.focal_weight, lmf.scale, lmf.variant) == (
        1.5,
        1.0,
        1.0,
        30.0,
        "paper",
    )
    official = ti.build_loss("lmf_official", COUNTS)
    assert (official.gamma, official.ldam_weight, official.focal_weight, official.variant) == (
        1.5,
        1.5,
        1.0,
        "official",
    )
    adaptive = ti.build_loss("dual_focal_adaptive", COUNTS)
    assert adaptive.learnable is not None and adaptive.adaptive is not None
    torch.testing.assert_close(adaptive.adaptive.frequencies, torch.tensor(COUNTS) / sum(COUNTS))
    assert ti.build_loss("dual_focal_adaptive", num_classes=4).adaptive.frequencies.numel() == 4
    drw = ti.build_loss("ldam_drw", COUNTS, start_epoch=3, max_margin=0.3)
    assert drw.start_epoch == 3 and drw.loss.max_margin == 0.3
    assert ti.build_loss("weighted_ce", COUNTS, power=0.5).weight.sum().item() == pytest.approx(4.0)
    assert ti.build_loss("focal", task="multilabel", alpha=0.25).task == "multilabel"


def test_public_api_names():
    for name in [
        "focal_loss",
        "ldam_loss",
        "lmf_loss",
        "dual_focal_loss",
        "balanced_softmax_loss",
        "logit_adjusted_loss",
        "poly1_loss",
    ]:
        assert callable(getattr(ti.functional, name))
    for name in [
        "FocalLoss",
        "LDAMLoss",
        "LMFLoss",
        "DualFocalLoss",
        "BalancedSoftmaxLoss",
        "LogitAdjustedLoss",
        "Poly1Loss",
        "NormedLinear",
        "DeferredReweighting",
        "build_loss",
        "ldam_margins",
        "inverse_frequency_weights",
        "median_frequency_weights",
        "effective_number_weights",
    ]:
        assert hasattr(ti, name)


def test_core_imports_only_torch_and_numpy():
    import subprocess
    import sys

    code = (
        "import sys, torch_imbalance; heavy = {'torchvision', 'lightning', 'timm', 'sklearn', "
        "'scipy', 'pandas', 'matplotlib'} & set(sys.modules); print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_normed_linear_is_cosine_similarity():
    head = ti.NormedLinear(16, 5)
    x = torch.randn(7, 16)
    logits = head(x)
    expected = torch.nn.functional.cosine_similarity(x[:, None, :], head.weight[None], dim=-1)
    torch.testing.assert_close(logits, expected)
    assert "in_features=16" in repr(head)
    logits.sum().backward()
    assert head.weight.grad is not None
