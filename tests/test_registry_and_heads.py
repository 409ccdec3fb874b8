"""build_loss for every registry name; NormedLinear; the public API contract."""

from __future__ import annotations

import pytest
import reference as ref
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
#: Beyond the spec: the LMF variants of issue 9 (cosine head, same scale; with DRW).
EXTRA_NAMES = ["lmf_cosine", "lmf_drw"]


def test_registry_has_exactly_the_spec_names():
    assert sorted(ti.available_losses()) == sorted(SPEC_NAMES + EXTRA_NAMES)


@pytest.mark.parametrize("name", SPEC_NAMES + EXTRA_NAMES)
@pytest.mark.parametrize("shape", [(6, 4), (2, 4, 5, 5), (1, 4, 2, 3, 3)])
def test_every_registry_loss_trains(name, shape):
    drw = name in ("ldam_drw", "lmf_drw")
    loss = ti.build_loss(name, COUNTS, **({"total_epochs": 10} if drw else {}))
    if hasattr(loss, "set_epoch"):
        loss.set_epoch(9)
    z, t = make_batch("multiclass", shape, 0.1, dtype=torch.float32)
    z.requires_grad_()
    value = loss(z, t)
    value.backward()
    assert value.ndim == 0 and torch.isfinite(value) and torch.isfinite(z.grad).all()


#: What each loss needs, written from the spec (losses.md) and the papers, not read back from
#: the registry: the count-based losses and the margin losses made for a cosine head.
NEEDS_COUNTS = {
    "weighted_ce",
    "cb_ce",
    "cb_focal",
    "ldam",
    "ldam_drw",
    "lmf",
    "lmf_official",
    "lmf_cosine",
    "lmf_drw",
    "balanced_softmax",
    "logit_adjusted",
}
COSINE_HEAD = {"ldam", "ldam_drw", "lmf_cosine", "lmf_drw"}


@pytest.mark.parametrize("name", SPEC_NAMES + EXTRA_NAMES)
def test_registry_entries_declare_counts_and_head(name):
    from torch_imbalance.models import default_head

    if name in NEEDS_COUNTS:
        with pytest.raises(ValueError, match=f"loss '{name}' needs class_counts"):
            ti.build_loss(name, total_epochs=10) if "drw" in name else ti.build_loss(name)
    else:  # the adaptive weights need their class count, from counts or num_classes
        options = {"num_classes": 4} if name == "dual_focal_adaptive" else {}
        assert isinstance(ti.build_loss(name, **options), torch.nn.Module)
    assert default_head(name) == ("cosine" if name in COSINE_HEAD else "linear")
    assert ti.registry.LOSSES[name].summary  # listed with a description


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
    weighted_only = ti.build_loss("dual_focal", COUNTS, class_weight="adaptive")
    assert weighted_only.learnable is None
    torch.testing.assert_close(
        weighted_only.adaptive.frequencies, torch.tensor(COUNTS) / sum(COUNTS)
    )
    adaptive = ti.build_loss("dual_focal_adaptive", COUNTS)
    assert adaptive.learnable is not None and adaptive.adaptive is not None
    torch.testing.assert_close(adaptive.adaptive.frequencies, torch.tensor(COUNTS) / sum(COUNTS))
    assert ti.build_loss("dual_focal_adaptive", num_classes=4).adaptive.frequencies.numel() == 4
    drw = ti.build_loss("ldam_drw", COUNTS, start_epoch=3, max_margin=0.3)
    assert drw.start_epoch == 3 and drw.loss.max_margin == 0.3
    assert ti.build_loss("weighted_ce", COUNTS, power=0.5).weight.sum().item() == pytest.approx(4.0)
    assert ti.build_loss("focal", task="multilabel", alpha=0.25).task == "multilabel"


@pytest.mark.parametrize("shape", [(16, 4), (2, 4, 3, 3)])
def test_lmf_variants_follow_their_formulas(shape):
    """lmf_cosine: the paper's LMF with the focal term at the LDAM scale s; lmf_drw: the same
    under deferred re-weighting (class-balanced weights of Cui et al. from the switch epoch)."""
    z, t = make_batch("multiclass", shape, 0.1, scale=0.4)  # cosine logits lie in [-1, 1]
    same_scale = ref.lmf(z, t, COUNTS, scale=30.0, focal_scale=30.0)
    torch.testing.assert_close(ti.build_loss("lmf_cosine", COUNTS)(z, t), same_scale)
    drw = ti.build_loss("lmf_drw", COUNTS, total_epochs=10)
    torch.testing.assert_close(drw(z, t), same_scale)  # epochs 0-7: unweighted
    drw.set_epoch(8)
    n = torch.tensor(COUNTS, dtype=torch.float64)
    balanced = (1 - 0.9999) / (1 - 0.9999**n)
    balanced = balanced / balanced.sum() * len(COUNTS)
    expected = ref.lmf(z, t, COUNTS, scale=30.0, focal_scale=30.0, weight=balanced)
    torch.testing.assert_close(drw(z, t), expected)
    assert not torch.allclose(expected, same_scale)
    # A smaller scale moves both terms together unless focal_scale is given.
    small = ti.build_loss("lmf_cosine", COUNTS, scale=10.0)
    assert (small.scale, small.focal_scale) == (10.0, 10.0)


@pytest.mark.parametrize("name", ["ldam_drw", "lmf_drw"])
def test_drw_losses_refuse_a_weight(name):
    with pytest.raises(ValueError, match="deferred re-weighting sets the class weights"):
        ti.build_loss(name, COUNTS, total_epochs=10, weight=torch.ones(4))


def test_public_api_is_exactly_the_documented_names_from_their_homes():
    """Each public name is the object from the module that defines it (not a stale copy or a
    shadowing alias), and the public set is exactly this list: adding or dropping an export
    must show up here."""
    from torch_imbalance import functional, heads, losses, registry, weights
    from torch_imbalance.losses import _base

    homes = {
        "AdaptiveClassWeights": losses,
        "BalancedSoftmaxLoss": losses,
        "BoundedGamma": _base,
        "DeferredReweighting": weights,
        "DualFocalLoss": losses,
        "FocalLoss": losses,
        "LDAMLoss": losses,
        "LMFLoss": losses,
        "LogitAdjustedLoss": losses,
        "NormedLinear": heads,
        "Poly1Loss": losses,
        "available_losses": registry,
        "build_loss": registry,
        "effective_number_weights": weights,
        "inverse_frequency_weights": weights,
        "ldam_margins": weights,
        "median_frequency_weights": weights,
    }
    assert set(ti.__all__) == {*homes, "functional", "get_compile_mode", "set_compile_mode"}
    for name, home in homes.items():
        assert getattr(ti, name) is getattr(home, name), name
        assert getattr(ti, name).__module__.startswith("torch_imbalance."), name
    assert ti.functional is functional
    functions = {
        "focal_loss": "focal",
        "ldam_loss": "ldam",
        "lmf_loss": "lmf",
        "dual_focal_loss": "dual_focal",
        "balanced_softmax_loss": "priors",
        "logit_adjusted_loss": "priors",
        "poly1_loss": "priors",
    }
    for name, family in functions.items():
        assert getattr(functional, name).__module__ == f"torch_imbalance.functional.{family}", name


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
