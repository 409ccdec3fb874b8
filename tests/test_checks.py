"""Bad input gets a clear error that says what was expected and what was found."""

from __future__ import annotations

import pytest
import torch

import torch_imbalance as ti
from torch_imbalance import functional as TF

Z = torch.randn(4, 3)
T = torch.tensor([0, 1, 2, 1])


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: TF.focal_loss(torch.randn(4), T), ValueError, r"shape \(N, C\).*got shape \(4,\)"),
        (lambda: TF.focal_loss(Z, torch.tensor([0, 1])), ValueError, r"shape \(4,\).*got \(2,\)"),
        (lambda: TF.focal_loss(Z, T.float()), TypeError, "integer class indices.*torch.float32"),
        (
            lambda: TF.focal_loss(Z, torch.tensor([0, 1, 3, 1])),
            ValueError,
            r"outside \[0, 3\).*\[3\]",
        ),
        (
            lambda: TF.focal_loss(Z, torch.tensor([0, -1, 2, 1])),
            ValueError,
            r"outside \[0, 3\).*\[-1\]",
        ),
        (lambda: TF.focal_loss(Z.long(), T), TypeError, "floating-point logits"),
        (
            lambda: TF.focal_loss(torch.tensor([[0.0, float("nan"), 1.0]]), T[:1]),
            ValueError,
            "1 non-finite logit.*validate=False",
        ),
        (
            lambda: TF.focal_loss(torch.tensor([[0.0, float("inf"), 1.0]]), T[:1]),
            ValueError,
            "non-finite",
        ),
        (
            lambda: TF.focal_loss(Z, T, weight=torch.ones(4)),
            ValueError,
            r"weight must have shape \(3,\).*got \(4,\)",
        ),
        (lambda: TF.focal_loss(Z, T, gamma=-1.0), ValueError, "gamma must be >= 0.0, got -1.0"),
        (lambda: TF.focal_loss(Z, T, reduction="avg"), ValueError, "reduction must be one of"),
        (lambda: TF.focal_loss(Z, T, task="binary"), ValueError, "task must be one of"),
        (lambda: TF.focal_loss(Z, T, alpha=0.25), ValueError, "alpha applies to task='multilabel'"),
        (
            lambda: TF.focal_loss(Z, (Z > 0).long(), alpha=1.5, task="multilabel"),
            ValueError,
            "alpha must be <= 1.0",
        ),
        (
            lambda: TF.focal_loss(Z, (Z > 0).long(), alpha=torch.ones(2) * 0.5, task="multilabel"),
            ValueError,
            r"shape \(3,\)",
        ),
        (
            lambda: TF.focal_loss(Z, T, task="multilabel"),
            ValueError,
            r"same shape as input \(4, 3\)",
        ),
        (
            lambda: TF.focal_loss(Z, torch.full((4, 3), 2), task="multilabel"),
            ValueError,
            r"0 or 1.*\[2\]",
        ),
        (
            lambda: TF.focal_loss(torch.randn(4, 1), torch.zeros(4, dtype=torch.long)),
            ValueError,
            "at least 2 classes",
        ),
        (
            lambda: TF.focal_loss(Z, T.to("meta")),
            ValueError,
            "target is on meta but input is on cpu",
        ),
        (
            lambda: TF.focal_loss(Z, T, weight=torch.ones(3, device="meta")),
            ValueError,
            "weight is on meta",
        ),
        (lambda: TF.ldam_loss(Z, T, [10, 0, 5]), ValueError, "class 1 has count 0"),
        (lambda: TF.ldam_loss(Z, T, [10, -2, 5]), ValueError, "class 1 has count -2"),
        (
            lambda: TF.ldam_loss(Z, T, [10, 5]),
            ValueError,
            "class_counts has 2 classes but input has 3",
        ),
        (lambda: TF.ldam_loss(Z, T), ValueError, "exactly one of class_counts"),
        (lambda: TF.ldam_loss(Z, T, [3, 2, 1], scale=0.0), ValueError, "scale must be > 0.0"),
        (
            lambda: TF.ldam_loss(Z, T, [3, 2, 1], max_margin=-0.1),
            ValueError,
            "max_margin must be > 0.0",
        ),
        (lambda: TF.lmf_loss(Z, T, [3, 2, 1], variant="authors"), ValueError, "variant must be"),
        (
            lambda: TF.lmf_loss(Z, T, [3, 2, 1], variant="official", weight=torch.ones(3)),
            ValueError,
            "weight must be None",
        ),
        (
            lambda: TF.lmf_loss(
                Z, (Z > 0).long(), [3, 2, 1], variant="official", task="multilabel"
            ),
            ValueError,
            "multiclass code",
        ),
        (
            lambda: TF.lmf_loss(Z, T, [3, 2, 1], ldam_weight=-1.0),
            ValueError,
            "ldam_weight must be >= 0.0",
        ),
        (lambda: TF.dual_focal_loss(Z, T, rho=0.9), ValueError, "rho must be >= 1.0, got 0.9"),
        (lambda: TF.dual_focal_loss(Z, T, beta=-1.0), ValueError, "beta must be >= 0.0"),
        (
            lambda: TF.dual_focal_loss(Z, T, gamma=torch.ones(2)),
            ValueError,
            "gamma must be a scalar",
        ),
        (lambda: TF.dual_focal_loss(Z, T, gamma=float("nan")), ValueError, "gamma must be finite"),
        (
            lambda: TF.logit_adjusted_loss(Z, T, [3, 2, 1], tau=-1.0),
            ValueError,
            "tau must be >= 0.0",
        ),
        (lambda: TF.balanced_softmax_loss(Z, T, [3, 2]), ValueError, "class_counts has 2 classes"),
        (lambda: TF.poly1_loss(Z, T, epsilon=-2.0), ValueError, "epsilon must be >= -1.0"),
        (lambda: TF.focal_loss([[0.0, 1.0]], T), TypeError, "must be a torch.Tensor"),
        (lambda: TF.focal_loss(Z, [0, 1, 2, 1]), TypeError, "target must be a torch.Tensor"),
    ],
)
def test_bad_input_raises_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_validate_false_skips_value_checks():
    z = torch.tensor([[0.0, float("nan"), 1.0]])
    assert torch.isnan(TF.focal_loss(z, T[:1], validate=False))
    assert torch.isnan(TF.dual_focal_loss(z, T[:1], validate=False))


def test_ignore_index_values_are_not_out_of_range():
    t = torch.tensor([0, 255, 2, 255])
    assert torch.isfinite(TF.focal_loss(Z, t, ignore_index=255))
    with pytest.raises(ValueError, match="outside"):
        TF.focal_loss(Z, t)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ti.FocalLoss(gamma=-0.5), "gamma must be >= 0.0"),
        (lambda: ti.FocalLoss(reduction="avg"), "reduction must be one of"),
        (lambda: ti.FocalLoss(alpha=0.25), "alpha applies to task='multilabel'"),
        (lambda: ti.FocalLoss(learnable_gamma=True, gamma=6.0), r"gamma must be < 5.0"),
        (lambda: ti.FocalLoss(learnable_gamma=True, gamma_range=(2.0, 1.0)), "low < high"),
        (lambda: ti.FocalLoss(weight=[1.0, float("nan")]), "finite and non-negative"),
        (lambda: ti.FocalLoss(weight=[[1.0]]), "1-D"),
        (lambda: ti.LDAMLoss([5, 0]), "class 1 has count 0"),
        (lambda: ti.LDAMLoss([5, 1], scale=-1), "scale must be > 0.0"),
        (lambda: ti.LMFLoss([5, 1], variant="official", weight=[1.0, 2.0]), "weight must be None"),
        (lambda: ti.LMFLoss([5, 1], variant="x"), "variant must be"),
        (lambda: ti.DualFocalLoss(rho=0.5), "rho must be >= 1.0"),
        (lambda: ti.DualFocalLoss(class_weight="adaptive"), "needs class_counts or num_classes"),
        (
            lambda: ti.DualFocalLoss(class_weight="median"),
            "class_weight must be None or 'adaptive'",
        ),
        (
            lambda: ti.DualFocalLoss(class_weight="adaptive", num_classes=2, weight=[1.0, 1.0]),
            "either weight",
        ),
        (
            lambda: ti.DualFocalLoss(class_weight="adaptive", num_classes=2, momentum=1.0),
            "momentum must be < 1.0",
        ),
        (
            lambda: ti.DualFocalLoss(class_weight="adaptive", num_classes=3, class_counts=[1, 2]),
            "num_classes=3",
        ),
        (lambda: ti.BalancedSoftmaxLoss([1, 0, 2]), "class 1 has count 0"),
        (lambda: ti.Poly1Loss(epsilon=-3.0), "epsilon must be >= -1.0"),
        (
            lambda: ti.LogitAdjustedLoss([1, 2], task="multilabel"),
            "unexpected keyword argument 'task'",
        ),
        (lambda: ti.NormedLinear(0, 3), "must be >= 1"),
        (
            lambda: ti.DeferredReweighting(ti.LDAMLoss([5, 1]), [5, 1]),
            "start_epoch, or total_epochs",
        ),
        (
            lambda: ti.DeferredReweighting(torch.nn.ReLU(), [5, 1], start_epoch=1),
            "no `weight` attribute",
        ),
        (lambda: ti.inverse_frequency_weights([]), "non-empty 1-D"),
        (lambda: ti.inverse_frequency_weights([1.0, float("inf")]), "must be finite"),
        (lambda: ti.effective_number_weights([3, 1], beta=1.0), "beta must be < 1.0"),
        (lambda: ti.build_loss("focall"), "unknown loss 'focall'; available: ce,"),
        (lambda: ti.build_loss("lmf"), "'lmf' needs class_counts"),
        (lambda: ti.build_loss("ldam_drw", [5, 1]), "needs start_epoch or total_epochs"),
    ],
)
def test_bad_construction_raises_clear_error(build, message):
    with pytest.raises((ValueError, TypeError), match=message):
        build()


def test_build_loss_unknown_option_names_the_loss():
    with pytest.raises(TypeError, match="invalid option for loss 'focal'.*gama"):
        ti.build_loss("focal", gama=2.0)


def test_normed_linear_wrong_features():
    with pytest.raises(ValueError, match="expects inputs with 8 features.*got shape \\(2, 4\\)"):
        ti.NormedLinear(8, 3)(torch.randn(2, 4))
