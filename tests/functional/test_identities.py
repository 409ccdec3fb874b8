"""Identities from the spec: each loss reduces to a known function in a special case."""

from __future__ import annotations

import pytest
import reference as ref
import torch
import torch.nn.functional as F
from cases import CASES, COUNTS, case_id, make_batch

from torch_imbalance import functional as TF

REDUCTIONS = ["mean", "sum", "none"]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(9, 5), (2, 5, 6, 7), (2, 3, 3, 4, 5)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_focal_gamma0_is_cross_entropy(reduction, shape, dtype):
    z, t = make_batch("multiclass", shape, 0.2, dtype=dtype)
    weight = torch.rand(shape[1], dtype=dtype) + 0.1
    ours = TF.focal_loss(z, t, gamma=0.0, weight=weight, ignore_index=-100, reduction=reduction)
    expected = F.cross_entropy(z, t, weight=weight, ignore_index=-100, reduction=reduction)
    # Same function; only the order of the final summation may differ (a few ulp).
    tol = 4 * torch.finfo(dtype).eps
    torch.testing.assert_close(ours, expected, rtol=tol, atol=tol)


def test_focal_gamma0_custom_ignore_index_matches_cross_entropy():
    z, t = make_batch("multiclass", (4, 3, 5, 5), 0.0)
    t[:, :2] = 255
    ours = TF.focal_loss(z, t, gamma=0.0, ignore_index=255)
    torch.testing.assert_close(ours, F.cross_entropy(z, t, ignore_index=255))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("alpha", [0.25, None])
def test_multilabel_focal_matches_torchvision(reduction, gamma, alpha):
    sigmoid_focal_loss = pytest.importorskip("torchvision.ops").sigmoid_focal_loss
    z, y = make_batch("multilabel", (6, 4, 5, 5))
    ours = TF.focal_loss(z, y, gamma=gamma, alpha=alpha, reduction=reduction, task="multilabel")
    expected = sigmoid_focal_loss(
        z, y.to(z.dtype), alpha=-1 if alpha is None else alpha, gamma=gamma, reduction=reduction
    )
    torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("alpha", [0.5, 1.7])
def test_dual_focal_gamma1_alpha_term_is_twice_one_minus_pt(alpha):
    z, t = make_batch("multiclass", (5, 4, 6, 6))
    with_alpha = TF.dual_focal_loss(z, t, alpha=alpha, beta=0.0, gamma=1.0, reduction="none")
    without = TF.dual_focal_loss(z, t, alpha=0.0, beta=0.0, reduction="none")
    pt = torch.softmax(z, 1).gather(1, t.unsqueeze(1)).squeeze(1)
    torch.testing.assert_close(with_alpha - without, 2 * alpha * (1 - pt))


def test_dual_focal_gamma2_alpha_term_is_brier_score():
    z, t = make_batch("multiclass", (5, 4, 6))
    alpha_term = TF.dual_focal_loss(
        z, t, alpha=1.0, beta=0.0, gamma=2.0, reduction="none"
    ) - F.cross_entropy(z, t, reduction="none")
    brier = ((F.one_hot(t, 4).movedim(-1, 1) - torch.softmax(z, 1)) ** 2).sum(1)
    torch.testing.assert_close(alpha_term, brier)


def test_dual_focal_rho1_beta_term_is_negative_half_of_bce_on_p():
    z, t = make_batch("multiclass", (8, 5))
    ce_plus_beta = TF.dual_focal_loss(z, t, alpha=0.0, beta=1.0, rho=1.0, reduction="none")
    bce = F.binary_cross_entropy(torch.softmax(z, 1), F.one_hot(t, 5).to(z.dtype), reduction="none")
    torch.testing.assert_close(ce_plus_beta, bce.sum(1))


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
def test_dual_focal_two_classes_confident_and_wrong_closed_form(task):
    """Two classes, γ = α = β = ρ = 1: with d the target's logit gap, p_t = σ(d) and
    1 − p_other = p_t, so ℓ = 2·softplus(−d) + 2·(1 − σ(d)) (multi-class), and per entry
    ``softplus(∓z) + β·softplus(±z)``-style terms (multi-label). Checked at |d| up to 40, where
    1 − p rounds away in float64 (the float64 reference once lost 1e-8 of relative accuracy
    there; our log-space terms must not)."""
    d = torch.tensor([-40.0, -24.9, -12.0, 0.3, 15.0, 35.0], dtype=torch.float64)
    if task == "multiclass":
        z = torch.stack([d / 2, -d / 2], dim=1)  # target 0, gap z_0 − z_1 = d
        t = torch.zeros(len(d), dtype=torch.long)
        expected = 2 * F.softplus(-d) + 2 * torch.sigmoid(-d)
        ours = TF.dual_focal_loss(z, t, reduction="none")
    else:
        z = d.view(-1, 1)
        t = torch.ones_like(z, dtype=torch.long)  # −log σ(z) + |1 − σ(z)|
        expected = (F.softplus(-d) + torch.sigmoid(-d)).view(-1, 1)
        ours = TF.dual_focal_loss(z, t, reduction="none", task="multilabel")
    # atol: at d = 35 the loss is 2.5e-15 and |1 − p_t| is a difference of numbers near 1.
    torch.testing.assert_close(ours, expected, rtol=1e-11, atol=1e-15)
    reference = ref.dual_focal(z, t, reduction="none", task=task)
    torch.testing.assert_close(reference, expected, rtol=1e-11, atol=1e-15)


def test_dual_focal_alpha0_beta0_is_cross_entropy():
    z, t = make_batch("multiclass", (3, 4, 5, 5), 0.2)
    w = torch.rand(4, dtype=z.dtype) + 0.5
    torch.testing.assert_close(
        TF.dual_focal_loss(z, t, alpha=0.0, beta=0.0, weight=w), F.cross_entropy(z, t, weight=w)
    )


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_lmf_is_weighted_sum_of_its_parts(task, reduction):
    z, t = make_batch(task, (4, 5, 3, 3), 0.2)
    w = torch.rand(5, dtype=z.dtype) + 0.5
    counts = COUNTS[5]
    common = {"weight": w, "reduction": reduction, "task": task}
    ours = TF.lmf_loss(
        z, t, counts, gamma=1.2, ldam_weight=0.7, focal_weight=1.9, scale=10.0, **common
    )
    parts = 0.7 * TF.ldam_loss(z, t, counts, scale=10.0, **common) + 1.9 * TF.focal_loss(
        z, t, gamma=1.2, **common
    )
    torch.testing.assert_close(ours, parts, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("num_classes", [2, 4, 5, 6])
def test_lmf_official_equals_authors_formula(num_classes):
    z, t = make_batch("multiclass", (32, num_classes))
    z.requires_grad_()
    counts = COUNTS[num_classes]
    from torch_imbalance import LMFLoss

    ours = LMFLoss.official(counts)(z, t)
    expected = ref.lmf_official(z, t, counts)
    torch.testing.assert_close(ours, expected, rtol=1e-12, atol=1e-12)
    (g1,) = torch.autograd.grad(ours, z)
    (g2,) = torch.autograd.grad(expected, z)
    torch.testing.assert_close(g1, g2, rtol=1e-10, atol=1e-12)


def test_lmf_official_differs_from_paper_variant():
    z, t = make_batch("multiclass", (32, 4))
    paper = TF.lmf_loss(z, t, COUNTS[4], ldam_weight=1.5)
    official = TF.lmf_loss(z, t, COUNTS[4], ldam_weight=1.5, variant="official")
    assert not torch.allclose(paper, official)


def test_balanced_softmax_is_logit_adjustment_with_tau1():
    # log n and log π differ by a constant per sample, which softmax cancels.
    z, t = make_batch("multiclass", (10, 5, 4), 0.2)
    torch.testing.assert_close(
        TF.balanced_softmax_loss(z, t, COUNTS[5]), TF.logit_adjusted_loss(z, t, COUNTS[5], tau=1.0)
    )


def test_zero_strength_priors_are_cross_entropy():
    z, t = make_batch("multiclass", (10, 5, 4), 0.2)
    ce = F.cross_entropy(z, t)
    torch.testing.assert_close(TF.logit_adjusted_loss(z, t, COUNTS[5], tau=0.0), ce)
    torch.testing.assert_close(TF.poly1_loss(z, t, epsilon=0.0), ce)
    torch.testing.assert_close(TF.balanced_softmax_loss(z, t, [7] * 5), ce)


def test_ldam_with_equal_counts_is_scaled_shifted_cross_entropy():
    z, t = make_batch("multiclass", (12, 3))
    shifted = 30 * (z - 0.5 * F.one_hot(t, 3))
    torch.testing.assert_close(TF.ldam_loss(z, t, [5, 5, 5]), F.cross_entropy(shifted, t))


@pytest.mark.parametrize("case", [c for c in CASES if "multiclass" in c.tasks], ids=case_id)
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (2, 4, 2, 3, 3)])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_dense_label_maps_with_a_channel_dim_equal_the_plain_form(case, shape, reduction):
    """MONAI pipelines hand dense targets as (N, 1, *): the same loss and gradient as (N, *)."""
    z, t = make_batch("multiclass", shape, 0.1)
    z.requires_grad_()
    plain = case.call_ours(z, t, reduction=reduction)
    (plain_grad,) = torch.autograd.grad(plain.sum(), z)
    channel = case.call_ours(z, t[:, None], reduction=reduction)
    (channel_grad,) = torch.autograd.grad(channel.sum(), z)
    torch.testing.assert_close(channel, plain, rtol=0, atol=0)
    torch.testing.assert_close(channel_grad, plain_grad, rtol=0, atol=0)
    with pytest.raises(ValueError, match="multiclass target must have shape"):
        case.call_ours(z, t[:, None].expand(-1, 2, *t.shape[1:]))  # two channels: not a map
