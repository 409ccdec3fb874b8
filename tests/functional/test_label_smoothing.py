"""Label smoothing (``label_smoothing=ε``, torch's target ``(1 − ε)·onehot + ε/C``) in the
multi-class losses: exact to ``F.cross_entropy`` at γ = 0, to float64 references (written from
torch's documentation, keras-cv's corrected focal loss and the LDAM authors' code, in
``reference.py``) otherwise, on both drivers; gradcheck; clear errors where it is undefined."""

from __future__ import annotations

import pytest
import reference as ref
import torch
import torch.nn.functional as F
from cases import COUNTS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import torch_imbalance as ti
from torch_imbalance import build_loss
from torch_imbalance import functional as TF
from torch_imbalance.functional import _compiled


@pytest.fixture
def on():
    """``on("eager" | "compiled")`` runs the rest of the test on that driver (each compiled
    configuration costs seconds to build on a fresh machine: the compiled runs cover each loss
    once on the unrolled and once on the whole class axis, the eager runs every variation)."""

    def use(driver: str) -> str:
        ti.set_compile_mode("never" if driver == "eager" else "always")
        _compiled.kernel_runs(reset=True)
        return driver

    yield use
    ti.set_compile_mode("auto")


def ran_on(driver: str) -> None:
    runs = _compiled.kernel_runs()
    assert not _compiled.compile_broken()
    assert any(k.startswith(driver) and v for k, v in runs.items()), runs
    other = "compiled" if driver == "eager" else "eager"
    assert not any(k.startswith(other) and v for k, v in runs.items()), runs


def batch(shape, ignored=0.2, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = (torch.randn(shape, generator=g, dtype=torch.float64) * 3).to(dtype)
    t = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g)
    t = torch.where(torch.rand(t.shape, generator=g) < ignored, -100, t)
    return z, t


def counts(classes):
    return COUNTS[classes]


def log_prior(classes, tau=1.0, normalize=True):
    n = torch.tensor(counts(classes), dtype=torch.float64)
    return tau * torch.log(n / n.sum() if normalize else n)


#: name -> (ours(z, t, ε, weight, reduction), reference(z, t, ε, weight, reduction)).
LOSSES = {
    "focal_g2": (
        lambda z, t, e, w, r: TF.focal_loss(z, t, 2.0, label_smoothing=e, weight=w, reduction=r),
        lambda z, t, e, w, r: ref.smoothed_focal(z, t, 2.0, e, w, reduction=r),
    ),
    "focal_g05": (
        lambda z, t, e, w, r: TF.focal_loss(z, t, 0.5, label_smoothing=e, weight=w, reduction=r),
        lambda z, t, e, w, r: ref.smoothed_focal(z, t, 0.5, e, w, reduction=r),
    ),
    "ldam": (
        lambda z, t, e, w, r: TF.ldam_loss(
            z, t, counts(z.shape[1]), label_smoothing=e, weight=w, reduction=r
        ),
        lambda z, t, e, w, r: ref.smoothed_ldam(z, t, counts(z.shape[1]), e, weight=w, reduction=r),
    ),
    "lmf": (
        lambda z, t, e, w, r: TF.lmf_loss(
            z, t, counts(z.shape[1]), label_smoothing=e, weight=w, reduction=r
        ),
        lambda z, t, e, w, r: ref.smoothed_lmf(z, t, counts(z.shape[1]), e, weight=w, reduction=r),
    ),
    "balanced_softmax": (
        lambda z, t, e, w, r: TF.balanced_softmax_loss(
            z, t, counts(z.shape[1]), label_smoothing=e, weight=w, reduction=r
        ),
        lambda z, t, e, w, r: ref.smoothed_prior(
            z, t, log_prior(z.shape[1], normalize=False), e, w, reduction=r
        ),
    ),
    "logit_adjusted": (
        lambda z, t, e, w, r: TF.logit_adjusted_loss(
            z, t, counts(z.shape[1]), tau=0.7, label_smoothing=e, weight=w, reduction=r
        ),
        lambda z, t, e, w, r: ref.smoothed_prior(
            z, t, log_prior(z.shape[1], tau=0.7), e, w, reduction=r
        ),
    ),
}


GAMMA_ZERO_RUNS = [
    *[("eager", shape, weighted, reduction)
      for shape in [(7, 5), (2, 3, 4, 5), (6, 40)]
      for weighted in (False, True)
      for reduction in ("mean", "sum", "none")],
    ("compiled", (2, 3, 4, 5), True, "mean"),
]  # fmt: skip


@pytest.mark.parametrize(("driver", "shape", "weighted", "reduction"), GAMMA_ZERO_RUNS, ids=str)
def test_gamma_zero_is_cross_entropy_with_label_smoothing(on, driver, shape, weighted, reduction):
    on(driver)
    z, t = batch(shape)
    weight = torch.linspace(0.3, 2.0, shape[1], dtype=torch.float64) if weighted else None
    probe = torch.rand(t.shape, dtype=torch.float64)
    for epsilon in (0.1, 1.0) if driver == "eager" else (0.1,):  # ε is built into a kernel
        x = z.clone().requires_grad_()
        ours = TF.focal_loss(x, t, 0.0, weight=weight, reduction=reduction, label_smoothing=epsilon)
        (grad,) = torch.autograd.grad((ours * probe).sum() if reduction == "none" else ours, x)
        y = z.clone().requires_grad_()
        torch_value = F.cross_entropy(
            y, t, weight=weight, reduction=reduction, label_smoothing=epsilon
        )
        (torch_grad,) = torch.autograd.grad(
            (torch_value * probe).sum() if reduction == "none" else torch_value, y
        )
        torch.testing.assert_close(ours, torch_value, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(grad, torch_grad, rtol=1e-11, atol=1e-12)
    ran_on(driver)


REFERENCE_RUNS = [
    *[("eager", name, shape) for name in LOSSES for shape in [(9, 4), (2, 5, 3, 4), (5, 40)]],
    *[("compiled", name, (2, 5, 3, 4)) for name in ("lmf", "logit_adjusted")],
    ("compiled", "lmf", (5, 40)),
]


@pytest.mark.parametrize(("driver", "name", "shape"), REFERENCE_RUNS, ids=str)
def test_matches_float64_reference(on, driver, name, shape):
    on(driver)
    ours, reference = LOSSES[name]
    z, t = batch(shape, seed=1)
    weight = torch.linspace(0.5, 1.5, shape[1], dtype=torch.float64)
    probe = torch.rand(t.shape, dtype=torch.float64)
    settings = [(w, r) for w in (None, weight) for r in ("mean", "none")]
    if driver == "compiled":  # each compiled configuration costs seconds to build
        settings = [(None, "none"), (weight, "mean")] if name == "lmf" and shape[1] == 5 else []
        settings = settings or [(weight, "mean")]
    for w, reduction in settings:
        x = z.clone().requires_grad_()
        value = ours(x, t, 0.2, w, reduction)
        (grad,) = torch.autograd.grad((value * probe).sum(), x)
        y = z.clone().requires_grad_()
        expected = reference(y, t, 0.2, w, reduction)
        (expected_grad,) = torch.autograd.grad((expected * probe).sum(), y)
        torch.testing.assert_close(value, expected, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(grad, expected_grad, rtol=1e-9, atol=1e-12)
    ran_on(driver)


@pytest.mark.parametrize(("driver", "classes"), [("eager", 4), ("eager", 40), ("compiled", 4)])
def test_lmf_official_matches_the_authors_terms_smoothed(on, driver, classes):
    on(driver)
    z, t = batch((6, classes, 3), seed=2)
    x = z.clone().requires_grad_()
    value = TF.lmf_loss(
        x, t, counts(classes), variant="official", ldam_weight=1.5, label_smoothing=0.3
    )
    (grad,) = torch.autograd.grad(value, x)
    y = z.clone().requires_grad_()
    expected = ref.smoothed_lmf_official(y, t, counts(classes), 0.3)
    (expected_grad,) = torch.autograd.grad(expected, y)
    torch.testing.assert_close(value, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-9, atol=1e-12)
    ran_on(driver)


@pytest.mark.parametrize("driver", ["eager", "compiled"])
def test_float32_and_learnable_gamma(on, driver):
    on(driver)
    z, t = batch((4, 6, 8, 8), dtype=torch.float32, seed=3)
    gamma = torch.tensor(1.5, requires_grad=True)
    x = z.clone().requires_grad_()
    value = TF.lmf_loss(x, t, counts(6), gamma=gamma, label_smoothing=0.1)
    grads = torch.autograd.grad(value, [x, gamma])
    y = z.double().requires_grad_()
    g64 = gamma.detach().double().requires_grad_()
    expected = ref.smoothed_ldam(y, t, counts(6), 0.1) + ref.smoothed_focal(y, t, g64, 0.1)
    expected_grads = torch.autograd.grad(expected, [y, g64])
    torch.testing.assert_close(value.double(), expected, rtol=2e-6, atol=1e-6)
    for ours, theirs in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(ours.double(), theirs, rtol=1e-4, atol=1e-7)
    assert grads[1] < 0  # the knob moves: the smoothed focal term still falls with γ
    ran_on(driver)


@pytest.mark.parametrize("name", ["focal_g2", "ldam", "lmf", "logit_adjusted"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_gradcheck(name, reduction):
    ours, _ = LOSSES[name]
    z, t = batch((3, 4, 2), seed=4)
    z = (z / 6).requires_grad_()  # LDAM's s = 30: keep the scaled logits moderate
    weight = torch.tensor([0.5, 1.0, 2.0, 1.5], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: ours(x, t, 0.25, weight, reduction), (z,))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(list(LOSSES)),
    n=st.integers(1, 3),
    classes=st.integers(2, 6),
    spatial=st.lists(st.integers(1, 3), max_size=2),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.bfloat16]),
    reduction=st.sampled_from(["mean", "sum", "none"]),
    ignored=st.sampled_from([0.0, 0.5, 1.0]),
    epsilon=st.sampled_from([0.05, 0.3, 1.0]),
    weighted=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_any_problem_matches_reference(
    name, n, classes, spatial, dtype, reduction, ignored, epsilon, weighted, seed
):
    ours, reference = LOSSES[name]
    z, t = batch((n, classes, *spatial), ignored, seed=seed)
    weight = torch.linspace(0.2, 1.8, classes, dtype=torch.float64) if weighted else None
    x = z.to(dtype).requires_grad_()
    value = ours(x, t, epsilon, None if weight is None else weight.to(dtype), reduction)
    assert value.shape == (() if reduction != "none" else t.shape)
    value.sum().backward()
    assert torch.isfinite(x.grad.float()).all()
    # The reference sees the weights our loss sees (rounded to the dtype).
    weight = None if weight is None else weight.to(dtype).double()
    expected = reference(z.to(dtype).double(), t, epsilon, weight, reduction)
    tolerance = 1e-9 if dtype == torch.float64 else 5e-5
    torch.testing.assert_close(value.double(), expected, rtol=tolerance, atol=tolerance)


def test_modules_pass_it_on_and_show_it():
    z, t = batch((5, 3))
    for module, functional in [
        (ti.FocalLoss(gamma=2.0, label_smoothing=0.1),
         TF.focal_loss(z, t, 2.0, label_smoothing=0.1)),
        (ti.LDAMLoss([100, 10, 1], label_smoothing=0.1),
         TF.ldam_loss(z, t, [100, 10, 1], label_smoothing=0.1)),
        (ti.LMFLoss([100, 10, 1], label_smoothing=0.1),
         TF.lmf_loss(z, t, [100, 10, 1], label_smoothing=0.1)),
        (ti.BalancedSoftmaxLoss([100, 10, 1], label_smoothing=0.1),
         TF.balanced_softmax_loss(z, t, [100, 10, 1], label_smoothing=0.1)),
        (ti.LogitAdjustedLoss([100, 10, 1], label_smoothing=0.1),
         TF.logit_adjusted_loss(z, t, [100, 10, 1], label_smoothing=0.1)),
    ]:  # fmt: skip
        torch.testing.assert_close(module(z, t), functional, rtol=0, atol=0)
        assert "label_smoothing=0.1" in repr(module)
    assert "label_smoothing" not in repr(ti.FocalLoss())
    # Deferred re-weighting forwards it to the loss it wraps.
    drw = build_loss("ldam_drw", [100, 10, 1], total_epochs=10, label_smoothing=0.2)
    drw.set_epoch(9)
    expected = TF.ldam_loss(
        z, t, [100, 10, 1], weight=drw.weight_at(9).double(), label_smoothing=0.2
    )
    torch.testing.assert_close(drw(z, t), expected)


def test_undefined_or_out_of_range_is_a_clear_error():
    z, t = batch((4, 3))
    with pytest.raises(ValueError, match="label_smoothing must be <= 1.0, got 1.5"):
        TF.focal_loss(z, t, label_smoothing=1.5)
    with pytest.raises(ValueError, match="label_smoothing must be >= 0.0"):
        TF.ldam_loss(z, t, [3, 2, 1], label_smoothing=-0.1)
    labels = (torch.rand(4, 3) < 0.5).long()
    with pytest.raises(ValueError, match="applies to task='multiclass'.*task='multilabel'"):
        TF.focal_loss(z, labels, task="multilabel", label_smoothing=0.1)
    with pytest.raises(ValueError, match="applies to task='multiclass'"):
        ti.LMFLoss([3, 2, 1], task="multilabel", label_smoothing=0.1)
    for name in ("poly1", "dual_focal", "dual_focal_adaptive"):
        with pytest.raises(ValueError, match=f"loss '{name}' does not define label smoothing"):
            build_loss(name, [3, 2, 1], label_smoothing=0.1)
    build_loss("poly1", [3, 2, 1], label_smoothing=0.0)  # 0 is no smoothing: accepted


@pytest.mark.parametrize("name", list(LOSSES))
def test_all_ignored_batch_is_zero_with_zero_gradients(name):
    # LDAM's s = 30 times the 1/Σw of an empty mean once overflowed into NaN gradients.
    ours, _ = LOSSES[name]
    z = torch.randn(3, 4, dtype=torch.float32, requires_grad=True)
    t = torch.full((3,), -100)
    value = ours(z, t, 0.1, None, "mean")
    value.backward()
    assert value.item() == 0.0 and torch.equal(z.grad, torch.zeros_like(z))
