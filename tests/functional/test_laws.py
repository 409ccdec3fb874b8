"""The multi-label laws of the family files (value, ∂ℓ/∂z and ∂ℓ/∂γ per entry), called
directly: against float64 textbook spellings differentiated by autograd, written here from the
definitions (BCE; the sigmoid focal loss of Lin et al. 2017, eq. 5, as
``torchvision.ops.sigmoid_focal_loss`` documents it; LDAM-DRW's ``LDAMLoss`` margin on the
true class, Cao et al. 2019; Dual Focal Loss eq. of Hossain et al. 2021), not from our laws."""

from __future__ import annotations

import pytest
import torch

from torch_imbalance.functional import dual_focal, focal, ldam, lmf

MARGINS = torch.tensor([0.5, 0.3, 0.2, 0.1], dtype=torch.float64)


def _bce(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # −y log σ(z) − (1 − y) log(1 − σ(z)), as torch's BCE-with-logits defines it
    return torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="none")


def _focal(z, y, gamma, alpha):
    # α_t (1 − p_t)^γ BCE with p_t = p y + (1 − p)(1 − y); α < 0: no α weighting.
    p = torch.sigmoid(z)
    p_t = p * y + (1 - p) * (1 - y)
    loss = _bce(z, y) * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * y + (1 - alpha) * (1 - y)) * loss
    return loss


def _ldam(z, y, scale):
    return _bce(scale * (z - MARGINS.view(1, -1, 1) * y), y)


def _lmf(z, y, gamma, scale, focal_scale, ldam_weight, focal_weight):
    focal = _focal(focal_scale * z, y, gamma, -1.0)  # alpha < 0: no α weighting
    return ldam_weight * _ldam(z, y, scale) + focal_weight * focal


def _dual_focal(z, y, gamma, alpha, beta, rho):
    p = torch.sigmoid(z)
    false_term = -beta * (1 - y) * torch.log(rho - p)
    return -y * torch.log(p) + false_term + alpha * (y - p).abs() ** gamma


CASES = {
    "focal": (
        focal.multilabel_focal_entries,
        {"alpha": 0.25},
        lambda z, y, g: _focal(z, y, g, 0.25),
    ),
    "focal_no_alpha": (
        focal.multilabel_focal_entries,
        {"alpha": None},
        lambda z, y, g: _focal(z, y, g, -1.0),
    ),
    "ldam": (
        ldam.multilabel_ldam_entries,
        {"margins": MARGINS, "scale": 5.0},
        lambda z, y, g: _ldam(z, y, 5.0),
    ),
    "lmf": (
        lmf.multilabel_lmf_entries,
        {
            "margins": MARGINS,
            "scale": 5.0,
            "focal_scale": 2.0,
            "ldam_weight": 0.7,
            "focal_weight": 1.3,
        },
        lambda z, y, g: _lmf(z, y, g, 5.0, 2.0, 0.7, 1.3),
    ),
    "dual_focal": (
        dual_focal.multilabel_dual_focal_entries,
        {"alpha": 0.8, "beta": 1.3, "rho": 1.0},
        lambda z, y, g: _dual_focal(z, y, g, 0.8, 1.3, 1.0),
    ),
    "dual_focal_rho": (
        dual_focal.multilabel_dual_focal_entries,
        {"alpha": 0.8, "beta": 1.3, "rho": 1.7},
        lambda z, y, g: _dual_focal(z, y, g, 0.8, 1.3, 1.7),
    ),
}


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0, 2.7])
@pytest.mark.parametrize("name", sorted(CASES))
def test_multilabel_entries_match_float64_textbook(name, gamma):
    entries, settings, reference = CASES[name]
    torch.manual_seed(0)
    z = (torch.randn(3, 4, 50, dtype=torch.float64) * 4).requires_grad_()
    y = (torch.rand(z.shape) < 0.3).double()
    g = torch.tensor(gamma, dtype=torch.float64, requires_grad=True)
    expected = reference(z, y, g)
    probe = torch.rand_like(expected)
    wants_gamma = name != "ldam"
    inputs = (z, g) if wants_gamma else (z,)
    expected_grads = torch.autograd.grad((expected * probe).sum(), inputs)
    fixed = {"gamma": gamma}
    value, slope, d_gamma = entries(z.detach(), y > 0, log_scale=-5.0, **settings, **fixed)
    torch.testing.assert_close(value, expected.detach(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(slope * probe, expected_grads[0], rtol=1e-9, atol=1e-12)
    if wants_gamma:  # a tensor γ (learnable): the same value, and ∂ℓ/∂γ
        learnable = {"gamma": g.detach()}
        value, slope, d_gamma = entries(z.detach(), y > 0, log_scale=-5.0, **settings, **learnable)
        torch.testing.assert_close(value, expected.detach(), rtol=1e-10, atol=1e-12)
        assert d_gamma is not None
        torch.testing.assert_close(
            (d_gamma * probe).sum(), expected_grads[1], rtol=1e-9, atol=1e-12
        )
