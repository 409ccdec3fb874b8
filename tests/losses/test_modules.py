"""The nn.Module forms: same values as the functions, buffers, parameters, state_dict."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F
from cases import COUNTS, make_batch

import torch_imbalance as ti
from torch_imbalance import functional as TF

IGNORE = 7  # every module must pass ignore_index through to its function
W4 = [1.0, 2.0, 0.5, 1.0]


@pytest.mark.parametrize(
    ("module", "functional"),
    [
        (
            lambda: ti.FocalLoss(gamma=1.5, weight=W4, ignore_index=IGNORE),
            lambda z, t: TF.focal_loss(z, t, 1.5, weight=torch.tensor(W4), ignore_index=IGNORE),
        ),
        (
            lambda: ti.LDAMLoss(
                COUNTS[4], max_margin=0.3, scale=10.0, reduction="sum", ignore_index=IGNORE
            ),
            lambda z, t: TF.ldam_loss(
                z, t, COUNTS[4], max_margin=0.3, scale=10.0, reduction="sum", ignore_index=IGNORE
            ),
        ),
        (
            lambda: ti.LMFLoss(
                COUNTS[4], gamma=2.0, ldam_weight=0.5, weight=W4, ignore_index=IGNORE
            ),
            lambda z, t: TF.lmf_loss(
                z,
                t,
                COUNTS[4],
                gamma=2.0,
                ldam_weight=0.5,
                weight=torch.tensor(W4),
                ignore_index=IGNORE,
            ),
        ),
        (
            lambda: ti.LMFLoss.official(COUNTS[4], ignore_index=IGNORE),
            lambda z, t: TF.lmf_loss(
                z, t, COUNTS[4], gamma=1.5, ldam_weight=1.5, variant="official", ignore_index=IGNORE
            ),
        ),
        (
            lambda: ti.DualFocalLoss(
                alpha=0.5, beta=2.0, gamma=1.5, rho=1.2, reduction="none", ignore_index=IGNORE
            ),
            lambda z, t: TF.dual_focal_loss(
                z, t, alpha=0.5, beta=2.0, gamma=1.5, rho=1.2, reduction="none", ignore_index=IGNORE
            ),
        ),
        (
            lambda: ti.BalancedSoftmaxLoss(COUNTS[4], weight=W4, ignore_index=IGNORE),
            lambda z, t: TF.balanced_softmax_loss(
                z, t, COUNTS[4], weight=torch.tensor(W4), ignore_index=IGNORE
            ),
        ),
        (
            lambda: ti.LogitAdjustedLoss(COUNTS[4], tau=0.5, ignore_index=IGNORE),
            lambda z, t: TF.logit_adjusted_loss(z, t, COUNTS[4], tau=0.5, ignore_index=IGNORE),
        ),
        (
            lambda: ti.Poly1Loss(epsilon=0.5, ignore_index=IGNORE),
            lambda z, t: TF.poly1_loss(z, t, epsilon=0.5, ignore_index=IGNORE),
        ),
    ],
)
def test_module_equals_functional(module, functional):
    z, t = make_batch("multiclass", (3, 4, 5), 0.0, dtype=torch.float32)
    t[0, :2] = IGNORE
    torch.testing.assert_close(module()(z, t), functional(z, t))


def test_multilabel_focal_module_with_per_class_alpha():
    z, y = make_batch("multilabel", (5, 3), dtype=torch.float32)
    alpha = [0.2, 0.5, 0.9]
    loss = ti.FocalLoss(alpha=alpha, task="multilabel")(z, y)
    torch.testing.assert_close(
        loss, TF.focal_loss(z, y, alpha=torch.tensor(alpha), task="multilabel")
    )
    scalar = ti.FocalLoss(alpha=0.25, task="multilabel")(z, y)
    torch.testing.assert_close(scalar, TF.focal_loss(z, y, alpha=0.25, task="multilabel"))


def test_buffers_move_and_save():
    loss = ti.LMFLoss(COUNTS[3], weight=[1.0, 2.0, 3.0])
    state = loss.state_dict()
    assert set(state) == {"weight", "margins"}
    restored = ti.LMFLoss([1, 1, 1], weight=[1.0, 1.0, 1.0])
    restored.load_state_dict(state)
    torch.testing.assert_close(restored.margins, loss.margins)
    torch.testing.assert_close(restored.weight, loss.weight)
    assert loss.double().margins.dtype == torch.float64


def test_learnable_gamma_is_a_bounded_parameter_and_trains_upwards():
    loss = ti.FocalLoss(gamma=2.0, learnable_gamma=True, gamma_range=(0.5, 3.0))
    params = dict(loss.named_parameters())
    assert list(params) == ["learnable.logit"]
    assert loss.gamma_value() == pytest.approx(2.0)
    optimizer = torch.optim.SGD(loss.parameters(), lr=50.0)
    z, t = make_batch("multiclass", (64, 3), 0.0, dtype=torch.float32, scale=1.0)
    for _ in range(30):
        optimizer.zero_grad()
        loss(z, t).backward()
        optimizer.step()
    # ∂L/∂γ ≤ 0: minimising the loss alone drives γ to (but never past) its upper bound.
    assert 2.5 < loss.gamma_value() < 3.0
    assert "gamma=" in repr(loss)


def test_fixed_gamma_has_no_parameters():
    assert list(ti.FocalLoss().parameters()) == []
    assert list(ti.DualFocalLoss().parameters()) == []
    assert ti.DualFocalLoss(gamma=1.5).gamma == 1.5


def test_adaptive_weights_update_in_training_and_freeze_in_eval():
    loss = ti.DualFocalLoss(class_weight="adaptive", class_counts=[8, 1, 1], momentum=0.5)
    assert set(loss.state_dict()) == {"adaptive.frequencies"}
    before = loss.adaptive.frequencies.clone()
    z, _ = make_batch("multiclass", (2, 3, 4, 4), dtype=torch.float32)
    t = torch.full((2, 4, 4), 2)
    t[0, 0, 0] = -100
    loss.eval()
    loss(z, t)
    assert torch.equal(loss.adaptive.frequencies, before)
    loss.train()
    weight_used = loss.current_weight()
    value = loss(z, t)
    # The forward used the weights from before its own update ...
    torch.testing.assert_close(value, TF.dual_focal_loss(z, t, weight=weight_used))
    # ... and then folded in this batch (only class 2, ignored pixel excluded).
    torch.testing.assert_close(
        loss.adaptive.frequencies, 0.5 * before + 0.5 * torch.tensor([0.0, 0.0, 1.0])
    )
    w = loss.current_weight()
    assert w[2] < w[0] < w[1] and w.mean().item() == pytest.approx(1.0)
    # All-ignored batch: no update.
    frozen = loss.adaptive.frequencies.clone()
    loss(z, torch.full_like(t, -100))
    assert torch.equal(loss.adaptive.frequencies, frozen)


def test_adaptive_loss_hands_one_count_to_the_mean_and_the_update(monkeypatch):
    """The module counts the batch's labels once (with a (N, 1, H, W) label map too) and gives
    the count to the loss's mean and to the running frequencies; the functional checks a
    given count's shape."""
    from torch_imbalance.losses import adaptive

    calls = []
    real = adaptive.label_counts

    def counting(target, num_classes, ignore_index):
        calls.append(tuple(target.shape))
        return real(target, num_classes, ignore_index)

    monkeypatch.setattr(adaptive, "label_counts", counting)
    loss = ti.DualFocalLoss(class_weight="adaptive", class_counts=[8, 1, 1], momentum=0.5)
    z, _ = make_batch("multiclass", (2, 3, 4, 4), dtype=torch.float32)
    t = torch.randint(0, 3, (2, 4, 4))
    weight = loss.current_weight()
    value = loss(z, t.unsqueeze(1))
    assert calls == [(2, 4, 4)]
    torch.testing.assert_close(value, TF.dual_focal_loss(z, t, weight=weight))
    with pytest.raises(ValueError, match=r"batch_counts must have shape \(3,\).*\(4,\)"):
        TF.dual_focal_loss(z, t, batch_counts=torch.ones(4))


def test_adaptive_weights_from_counts_follow_the_power_law():
    adaptive = ti.AdaptiveClassWeights(3, class_counts=[60, 30, 10], power=0.5)
    f = torch.tensor([0.6, 0.3, 0.1])
    expected = f**-0.5 / (f**-0.5).mean()
    torch.testing.assert_close(adaptive.weights(), expected)
    uniform = ti.AdaptiveClassWeights(4)
    torch.testing.assert_close(uniform.weights(), torch.ones(4))


def test_adaptive_multilabel_counts_positives_per_class():
    loss = ti.DualFocalLoss(class_weight="adaptive", num_classes=3, task="multilabel", momentum=0.0)
    y = torch.tensor([[1, 0, 0], [1, 1, 0], [1, 0, -100]])
    loss(torch.zeros(3, 3), y)
    torch.testing.assert_close(loss.adaptive.frequencies, torch.tensor([0.75, 0.25, 0.0]))
    assert torch.isfinite(loss.current_weight()).all()


def test_adaptive_state_survives_save_and_load():
    loss = ti.build_loss("dual_focal_adaptive", [50, 10, 2])
    z, t = make_batch("multiclass", (2, 3, 4, 4), dtype=torch.float32)
    loss(z, t).backward()
    buffer = io.BytesIO()
    torch.save(loss.state_dict(), buffer)
    buffer.seek(0)
    fresh = ti.build_loss("dual_focal_adaptive", [1, 1, 1])
    fresh.load_state_dict(torch.load(buffer))
    torch.testing.assert_close(fresh.adaptive.frequencies, loss.adaptive.frequencies)
    torch.testing.assert_close(fresh.gamma, loss.gamma)


def test_drw_switches_weights_and_resumes():
    counts = [100, 10, 1]
    drw = ti.DeferredReweighting(ti.LDAMLoss(counts), counts, start_epoch=3, beta=0.999)
    z, t = make_batch("multiclass", (8, 3), dtype=torch.float32)
    for epoch in range(3):
        drw.set_epoch(epoch)
        torch.testing.assert_close(drw(z, t), TF.ldam_loss(z, t, counts))
    drw.set_epoch(3)
    balanced = ti.effective_number_weights(counts, 0.999)
    torch.testing.assert_close(drw(z, t), TF.ldam_loss(z, t, counts, weight=balanced))
    restored = ti.DeferredReweighting(ti.LDAMLoss(counts), counts, start_epoch=3, beta=0.999)
    restored.load_state_dict(drw.state_dict())
    assert int(restored.epoch) == 3
    torch.testing.assert_close(restored.loss.weight, balanced)
    assert "start_epoch=3" in repr(drw)


def test_drw_works_with_torch_cross_entropy():
    counts = [30, 3]
    drw = ti.DeferredReweighting(torch.nn.CrossEntropyLoss(), counts, start_epoch=1)
    z, t = make_batch("multiclass", (6, 2), dtype=torch.float32)
    drw.set_epoch(1)
    torch.testing.assert_close(
        drw(z, t), F.cross_entropy(z, t, weight=ti.effective_number_weights(counts))
    )


def test_reprs_are_informative():
    assert "max_margin=0.5" in repr(ti.LDAMLoss([3, 1]))
    assert "variant='official'" in repr(ti.LMFLoss.official([3, 1]))
    assert "rho=1.0" in repr(ti.DualFocalLoss())
    assert "range=(0.5, 5.0)" in repr(ti.DualFocalLoss(learnable_gamma=True))
    assert "momentum=0.99" in repr(ti.DualFocalLoss(class_weight="adaptive", num_classes=2))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"momentum": float("nan")}, "momentum must be finite"),
        ({"momentum": 1.0}, "momentum must be < 1"),
        ({"adaptive_power": -1.0}, "adaptive_power must be >= 0"),
        ({"num_classes": 3}, "pass class_weight='adaptive' with them"),
        ({"class_counts": [5, 1]}, "pass class_weight='adaptive' with them"),
    ],
)
def test_dual_focal_rejects_adaptive_settings_it_would_ignore(options, message):
    """Without adaptive weights these were accepted and dropped silently."""
    with pytest.raises(ValueError, match=message):
        ti.DualFocalLoss(**options)
    if "momentum" in options or "adaptive_power" in options:  # and with adaptive weights alike
        with pytest.raises(ValueError, match=message):
            ti.DualFocalLoss(class_weight="adaptive", num_classes=3, **options)
