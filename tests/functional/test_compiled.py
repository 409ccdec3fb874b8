"""The compiled driver (one whole-tensor kernel per loss body) against the float64 references
and the eager chunk driver, the compiler adapter (``_compiled``: modes, options, one copy per
call signature, fallback), and the generated code's shape where a trick steers it."""

from __future__ import annotations

import re
import warnings

import pytest
import torch
from cases import CASES, make_batch

import torch_imbalance as ti
from torch_imbalance import functional as TF
from torch_imbalance.functional import _classwise, _common, _compiled, _counts, _driver, _gap
from torch_imbalance.functional import dual_focal as dual_focal_module

# The multi-class target-gap losses: those the compiled kernels serve.
GAP_CASES = [c for c in CASES if "multiclass" in c.tasks and not c.name.startswith("dual_focal")]
# Every reduced multi-class loss with a one-pass kernel: the gap losses and Dual Focal.
ONE_PASS_CASES = [c for c in CASES if "multiclass" in c.tasks]
# Each compiled configuration costs seconds to build on a fresh machine, so the per-element
# and sum forms (the same bodies as the means, other reductions) run on one case per law and
# transform: focal, a shifted head (LDAM), two heads (LMF), an offset head, Poly-1, Dual Focal.
PER_ELEMENT_CASES = [
    c
    for c in GAP_CASES
    if c.name in ("focal_g05", "ldam_s5", "lmf_mixed", "balanced_softmax", "poly1")
]
SUM_CASES = [c for c in ONE_PASS_CASES if c.name in ("focal", "lmf_mixed", "dual_focal_rho")]


@pytest.fixture
def mode():
    def set_mode(value):
        ti.set_compile_mode(value)

    yield set_mode
    ti.set_compile_mode("auto")


@pytest.mark.parametrize("case", PER_ELEMENT_CASES, ids=lambda c: c.name)
def test_compiled_matches_reference_and_eager(mode, case):
    z, t = make_batch("multiclass", (3, 4, 5, 6), 0.2)
    weight = torch.linspace(0.5, 1.5, 4, dtype=torch.float64)
    probe = torch.randn(t.shape, dtype=torch.float64)
    results = {}
    for value in ("always", "never"):
        mode(value)
        _compiled.kernel_runs(reset=True)
        x = z.clone().requires_grad_()
        loss = case.call_ours(x, t, reduction="none", weight=weight)
        (grad,) = torch.autograd.grad((loss * probe).sum(), x)
        results[value] = (loss, grad)
        # Which path ran (a compile that failed and fell back would compare eager with eager).
        runs = _compiled.kernel_runs()
        ran = "compiled" if value == "always" else "eager"
        other = "eager" if value == "always" else "compiled"
        assert runs.get(f"{ran}-elements", 0) >= 1 and runs.get(f"{ran}-gradient", 0) >= 1, runs
        assert runs.get(f"{other}-elements", 0) == 0 and runs.get(f"{other}-gradient", 0) == 0
        assert not _compiled.compile_broken() and runs["kernels-built"] >= 1
    x = z.clone().requires_grad_()
    expected = case.call_reference(x, t, reduction="none", weight=weight)
    (expected_grad,) = torch.autograd.grad((expected * probe).sum(), x)
    torch.testing.assert_close(results["always"][0], expected, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(results["always"][1], expected_grad, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(results["always"][0], results["never"][0], rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(results["always"][1], results["never"][1], rtol=1e-10, atol=1e-12)


def test_compiled_float32_mean_and_learnable_gamma(mode):
    z, t = make_batch("multiclass", (64, 5), 0.1, dtype=torch.float32)
    grads = {}
    for value in ("always", "never"):
        mode(value)
        x = z.clone().requires_grad_()
        gamma = torch.tensor(1.3, requires_grad=True)
        loss = ti.functional.lmf_loss(x, t, [50, 20, 9, 4, 1], gamma=gamma)
        loss.backward()
        grads[value] = (loss.detach(), x.grad, gamma.grad)
    for a, b in zip(grads["always"], grads["never"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_auto_mode_compiles_only_large_inputs(mode, monkeypatch):
    mode("auto")
    small = torch.zeros(4, 3)
    assert not _compiled.wants_compiled(small)
    monkeypatch.setattr(_compiled, "MIN_COMPILED_ELEMENTS", 12)
    assert _compiled.wants_compiled(small)
    mode("never")
    assert not _compiled.wants_compiled(small)


def test_auto_mode_compiles_every_cuda_input():
    """On CUDA the eager driver's small operations are kernel launches each: "auto" compiles
    every size there, and only large inputs on the CPU."""
    assert _compiled.auto_compiles("cuda", 1)
    assert not _compiled.auto_compiles("cpu", _compiled.MIN_COMPILED_ELEMENTS - 1)
    assert _compiled.auto_compiles("cpu", _compiled.MIN_COMPILED_ELEMENTS)
    assert not _compiled.auto_compiles("mps", 1 << 30)


def test_failed_compile_warns_once_and_falls_back(mode, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(_compiled, "MIN_COMPILED_ELEMENTS", 0)
    monkeypatch.setattr(_compiled, "compiled_kernel", broken)
    mode("auto")
    z, t = make_batch("multiclass", (6, 3), 0.0)
    expected = torch.nn.functional.cross_entropy(z, t)
    with pytest.warns(UserWarning, match="no compiler here"):
        got = ti.functional.focal_loss(z, t, gamma=0.0)
    torch.testing.assert_close(got, expected)
    assert _compiled.compile_broken()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once: the eager kernels run without a word
        ti.functional.focal_loss(z, t, gamma=0.0)
    mode("always")
    with pytest.raises(RuntimeError, match="no compiler here"):
        ti.functional.focal_loss(z, t, gamma=0.0)


def test_compile_mode_is_validated(mode, monkeypatch):
    with pytest.raises(ValueError, match="compile mode must be one of"):
        ti.set_compile_mode("sometimes")  # type: ignore[arg-type]
    monkeypatch.setitem(_compiled._state, "mode", "fast")
    with pytest.raises(ValueError, match="TORCH_IMBALANCE_COMPILE must be one of"):
        ti.get_compile_mode()


@pytest.mark.parametrize(
    ("case", "reduction"),
    [(c, "mean") for c in ONE_PASS_CASES] + [(c, "sum") for c in SUM_CASES],
    ids=lambda v: v.name if hasattr(v, "name") else v,
)
def test_one_pass_reduced_kernel_matches_reference_and_eager(mode, case, reduction):
    """A mean or sum on the compiled path computes its gradient in the forward (one pass):
    the same value and gradient as the float64 reference and the eager kernels, for an
    upstream gradient of 1 (``loss.backward()``) and of 3."""
    z, t = make_batch("multiclass", (3, 4, 5, 6), 0.2)
    weight = torch.linspace(0.5, 1.5, 4, dtype=torch.float64)
    x = z.clone().requires_grad_()
    expected = case.call_reference(x, t, reduction=reduction, weight=weight)
    (expected_grad,) = torch.autograd.grad(expected, x)
    for value in ("always", "never"):
        mode(value)
        _compiled.kernel_runs(reset=True)
        for upstream in (1.0, 3.0):
            x = z.clone().requires_grad_()
            loss = case.call_ours(x, t, reduction=reduction, weight=weight)
            (loss * upstream).backward()
            torch.testing.assert_close(loss, expected, rtol=1e-9, atol=1e-11)
            torch.testing.assert_close(x.grad, upstream * expected_grad, rtol=1e-8, atol=1e-10)
        runs = _compiled.kernel_runs()
        assert runs.get("compiled-one-pass", 0) == (2 if value == "always" else 0), runs


@pytest.mark.parametrize("classes", [_gap.SELECT_WEIGHT_CLASSES, 12])
@pytest.mark.parametrize("name", ["focal", "balanced_softmax"])  # a class weight; an offset
def test_one_pass_per_target_lookup_by_select_and_by_index(mode, name, classes):
    """An element's class weight, a target's margin (LDAM) or offset (balanced softmax) in the
    one-pass kernels: a chain of selects up to ``SELECT_WEIGHT_CLASSES`` classes, an indexed
    load beyond; both against the float64 eager kernels, with ignored elements."""
    z, t = make_batch("multiclass", (4, classes, 5, 6), 0.2)
    weight = torch.linspace(0.25, 2.0, classes, dtype=torch.float64)
    counts = list(range(classes * 10, 0, -10))
    if name in ("focal", "dual_focal"):
        loss_fn = ti.build_loss(name, weight=weight)
    else:
        loss_fn = ti.build_loss(name, counts)
    results = {}
    for value in ("never", "always"):
        mode(value)
        _compiled.kernel_runs(reset=True)
        x = z.clone().requires_grad_()
        loss = loss_fn(x, t)
        loss.backward()
        results[value] = (loss, x.grad)
    assert _compiled.kernel_runs().get("compiled-one-pass", 0) == 1
    for ours, eager in zip(results["always"], results["never"], strict=True):
        torch.testing.assert_close(ours, eager, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize(("gamma_value", "rho"), [(0.4, 1.5), (1.0, 1.0), (2.0, 1.5)])
def test_one_pass_dual_focal_learnable_gamma_and_saturation(mode, gamma_value, rho):
    """Dual Focal's one-pass kernel: γ below and above 1 (two forms of the focal gradient),
    ρ = 1 and ρ > 1 and a learnable γ's gradient against the float64 reference; saturated
    logits (confidently right and wrong, where the naive reference overflows) against the
    eager kernel, whose exactness there is tested in test_numerics."""
    import reference as ref

    settings = {"rho": rho, "beta": 0.8, "alpha": 1.2}
    z, t = make_batch("multiclass", (4, 5, 6, 7), 0.1)
    saturated = z.clone()
    saturated[0, :, 0, 0] = torch.tensor([60.0, -60.0, 0.0, 1.0, 2.0], dtype=torch.float64)
    saturated[1, :, 0, 0] = torch.tensor([-50.0, 50.0, 49.0, 0.0, 0.0], dtype=torch.float64)

    def run(logits, use_reference=False, learnable=True):
        gamma = torch.tensor(gamma_value, dtype=torch.float64, requires_grad=True)
        x = logits.clone().requires_grad_()
        value = gamma if learnable else gamma_value  # a float γ takes the fixed-γ fast paths
        if use_reference:
            loss = ref.dual_focal(x, t, gamma=value, **settings)
        else:
            loss = ti.functional.dual_focal_loss(x, t, gamma=value, **settings)
        loss.backward()
        return loss.detach(), x.grad, gamma.grad if learnable else torch.zeros(())

    expected = run(z, use_reference=True)
    mode("never")
    eager = run(saturated)
    eager_fixed = run(saturated, learnable=False)
    mode("always")
    _compiled.kernel_runs(reset=True)
    got = run(z)
    got_fixed = run(z, learnable=False)
    got_saturated = run(saturated)
    got_saturated_fixed = run(saturated, learnable=False)
    assert _compiled.kernel_runs().get("compiled-one-pass", 0) == 4
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)
    for a, b in zip(got_fixed[:2], expected[:2], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)
    for ours, theirs in ((got_saturated, eager), (got_saturated_fixed, eager_fixed)):
        for a, b in zip(ours, theirs, strict=True):
            assert torch.isfinite(a).all()
            torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("num_classes", [2, 5])
def test_lmf_official_runs_both_terms_on_one_one_pass_kernel(mode, num_classes):
    """lmf_official's two terms, each with its own normaliser (LDAM by Σ Δ_t, focal by the
    count), on one one-pass kernel: equal to the authors' code (tests/reference.py:
    lmf_official) in value and gradient."""
    import reference as ref
    from cases import COUNTS

    z, t = make_batch("multiclass", (48, num_classes))
    x = z.clone().requires_grad_()
    expected = ref.lmf_official(x, t, COUNTS[num_classes])
    (expected_grad,) = torch.autograd.grad(expected, x)
    mode("always")
    _compiled.kernel_runs(reset=True)
    x = z.clone().requires_grad_()
    loss = ti.LMFLoss.official(COUNTS[num_classes])(x, t)
    loss.backward()
    assert _compiled.kernel_runs().get("compiled-one-pass", 0) == 1
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(x.grad, expected_grad, rtol=1e-9, atol=1e-11)


def test_one_pass_kernel_backward_twice_and_learnable_gamma(mode):
    """A retained graph's second backward recomputes the gradient (the first handed its buffer
    on); a learnable γ gets its gradient from the same pass."""
    mode("always")
    z, t = make_batch("multiclass", (4, 3, 7, 5), 0.1)
    gamma = torch.tensor(1.7, dtype=torch.float64, requires_grad=True)
    x = z.clone().requires_grad_()
    loss = ti.functional.focal_loss(x, t, gamma=gamma)
    loss.backward(retain_graph=True)
    first = (x.grad.clone(), gamma.grad.clone())
    loss.backward()
    torch.testing.assert_close(x.grad, 2 * first[0], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(gamma.grad, 2 * first[1], rtol=1e-12, atol=1e-14)
    mode("never")
    x2 = z.clone().requires_grad_()
    gamma2 = torch.tensor(1.7, dtype=torch.float64, requires_grad=True)
    ti.functional.focal_loss(x2, t, gamma=gamma2).backward()
    torch.testing.assert_close(first[0], x2.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(first[1], gamma2.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["ldam", "lmf", "balanced_softmax", "focal"])
def test_many_classes_read_the_target_by_gather(mode, name):
    """Above MASKED_SUM_CLASSES the compiled kernels gather the target's logit, offset and
    margin instead of a masked sum over the classes: same values and gradients."""
    assert _classwise.MASKED_SUM_CLASSES < 40
    case = next(c for c in GAP_CASES if c.name == name)
    z, t = make_batch("multiclass", (16, 40), 0.1)
    x = z.clone().requires_grad_()
    expected = case.call_reference(x, t)
    (expected_grad,) = torch.autograd.grad(expected, x)
    mode("always")
    _compiled.kernel_runs(reset=True)
    x = z.clone().requires_grad_()
    loss = case.call_ours(x, t)
    loss.backward()
    assert _compiled.kernel_runs().get("compiled-one-pass", 0) == 1
    torch.testing.assert_close(loss, expected, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(x.grad, expected_grad, rtol=1e-8, atol=1e-10)


MULTILABEL_CASES = [c for c in CASES if "multilabel" in c.tasks]


# Every case reduced by the mean, two per entry (each configuration compiles: a few seconds).
MULTILABEL_RUNS = [(c, "mean") for c in MULTILABEL_CASES] + [
    (c, "none") for c in MULTILABEL_CASES if c.name in ("focal", "dual_focal_rho")
]


@pytest.mark.parametrize(
    ("case", "reduction"), MULTILABEL_RUNS, ids=lambda v: v.name if hasattr(v, "name") else v
)
def test_compiled_multilabel_matches_reference(mode, case, reduction):
    """The multi-label losses compiled over the whole tensor (the same per-entry function as
    the eager chunks; a mean differentiated inside the kernel, one pass): value and gradient
    against the float64 reference, and the path ran."""
    z, t = make_batch("multilabel", (3, 4, 5, 6), 0.2)
    weight = torch.linspace(0.5, 1.5, 4, dtype=torch.float64)
    probe = torch.randn(z.shape if reduction == "none" else (), dtype=torch.float64)
    x = z.clone().requires_grad_()
    expected = case.call_reference(x, t, task="multilabel", reduction=reduction, weight=weight)
    (expected_grad,) = torch.autograd.grad((expected * probe).sum(), x)
    mode("always")
    _compiled.kernel_runs(reset=True)
    x = z.clone().requires_grad_()
    loss = case.call_ours(x, t, task="multilabel", reduction=reduction, weight=weight)
    (grad,) = torch.autograd.grad((loss * probe).sum(), x)
    path = "compiled-gradient" if reduction == "none" else "compiled-one-pass"
    assert _compiled.kernel_runs().get(path, 0) == 1
    assert not _compiled.compile_broken()
    torch.testing.assert_close(loss, expected, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-8, atol=1e-10)


def test_compiled_multilabel_learnable_gamma(mode):
    z, t = make_batch("multilabel", (4, 3, 5), 0.1)
    grads = {}
    for value in ("always", "never"):
        mode(value)
        gamma = torch.tensor(1.4, dtype=torch.float64, requires_grad=True)
        x = z.clone().requires_grad_()
        ti.functional.dual_focal_loss(x, t, gamma=gamma, task="multilabel").backward()
        grads[value] = (x.grad, gamma.grad)
    for a, b in zip(grads["always"], grads["never"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.fixture
def value_checks(monkeypatch):
    """The ``validate`` argument of every ``check_logits`` call made by the losses' ``prepare``
    (False: shapes only; True: a pass over the values)."""
    calls = []
    real_check_logits = _common.check_logits

    def counting_check_logits(input, validate=True):
        calls.append(validate)
        return real_check_logits(input, validate)

    monkeypatch.setattr(_common, "check_logits", counting_check_logits)
    return calls


@pytest.mark.parametrize("loss_fn", [TF.focal_loss, TF.dual_focal_loss], ids=["focal", "dual"])
@pytest.mark.parametrize("classes", [4, 40])
def test_one_pass_kernel_checks_values_in_its_loop(mode, value_checks, loss_fn, classes):
    """The one-pass kernel finds NaN/inf logits and labels out of range in the loop that reads
    them (no separate passes): the same errors as the eager checks; ``validate=False`` neither
    raises nor breaks the compiled path (an out-of-range label is never used as an index): the
    reduced loss is NaN there (the flag travels in the loss), not an arbitrary number."""
    mode("always")
    z, t = make_batch("multiclass", (2, classes, 3, 3), 0.2)
    _compiled.kernel_runs(reset=True)
    assert torch.isfinite(loss_fn(z, t))
    assert value_checks == [False]  # shapes only: the values were checked by the kernel
    bad_target = t.clone()
    bad_target[1, 2, 0] = classes
    with pytest.raises(ValueError, match=rf"outside \[0, {classes}\).*\[{classes}\]"):
        loss_fn(z, bad_target)
    bad_logits = z.clone()
    bad_logits[0, 1, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="1 non-finite logit"):
        loss_fn(bad_logits, t)
    assert torch.isnan(loss_fn(z, bad_target, validate=False))
    assert _compiled.kernel_runs().get("compiled-one-pass", 0) == 4
    assert not _compiled.compile_broken()


def test_multilabel_one_pass_kernel_checks_values_in_its_loop(mode, value_checks):
    mode("always")
    z, t = make_batch("multilabel", (2, 3, 4, 4), 0.2)
    _compiled.kernel_runs(reset=True)
    assert torch.isfinite(TF.focal_loss(z, t, task="multilabel"))
    assert value_checks == [False]
    bad_target = t.clone()
    bad_target[0, 1, 2, 2] = 2
    with pytest.raises(ValueError, match=r"0 or 1.*\[2\]"):
        TF.focal_loss(z, bad_target, task="multilabel")
    bad_logits = z.clone()
    bad_logits[1, 0, 0, 3] = float("inf")
    with pytest.raises(ValueError, match="1 non-finite logit"):
        TF.focal_loss(bad_logits, t, task="multilabel")
    assert _compiled.kernel_runs().get("compiled-one-pass", 0) == 3
    assert not _compiled.compile_broken()


@pytest.mark.parametrize("spread", [1.0, 15.0])
def test_lmf_backward_powers_match_float64_when_saturated(mode, spread):
    """LMF's LDAM exponentials (scale 30) are taken in the backward as 30th powers of the focal
    head's (scale 1): float32, including logits far apart (many terms flushed), against the
    float64 eager kernels."""
    z, t = make_batch("multiclass", (4, 5, 6, 7), 0.1, dtype=torch.float32, scale=spread)
    counts = [50, 20, 9, 4, 1]
    results = {}
    for value, dtype in (("always", torch.float32), ("never", torch.float64)):
        mode(value)
        _compiled.kernel_runs(reset=True)
        x = z.detach().to(dtype).requires_grad_()
        loss = TF.lmf_loss(x, t, counts)
        loss.backward()
        results[value] = (loss.detach().double(), x.grad.double())
        if value == "always":
            assert _compiled.kernel_runs().get("compiled-one-pass", 0) == 1
    torch.testing.assert_close(results["always"][0], results["never"][0], rtol=2e-5, atol=1e-6)
    torch.testing.assert_close(results["always"][1], results["never"][1], rtol=2e-4, atol=1e-6)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_lmf_official_one_pass_matches_eager_terms_with_ignored_elements(mode, reduction):
    """The one kernel's per-term normalisers (LDAM by Σ Δ_t over the labelled elements, focal
    by their count) against the eager path, which reduces each term on its own."""
    z, t = make_batch("multiclass", (3, 4, 5, 6), 0.25)
    counts = [40, 12, 5, 2]
    results = {}
    for value in ("always", "never"):
        mode(value)
        _compiled.kernel_runs(reset=True)
        x = z.clone().requires_grad_()
        loss = TF.lmf_loss(x, t, counts, variant="official", reduction=reduction)
        loss.backward()
        results[value] = (loss.detach(), x.grad)
        assert _compiled.kernel_runs().get("compiled-one-pass", 0) == (value == "always")
    torch.testing.assert_close(results["always"][0], results["never"][0], rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(results["always"][1], results["never"][1], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("gamma_value", [0.4, 1.0, 1.7])
def test_one_pass_dual_focal_float32_far_apart_logits(mode, gamma_value):
    """float32 Dual Focal kernel with logits farther apart than float32's exp range (one exp
    per logit, centred on the largest class outside {t, j*}) against the float64 eager kernel."""
    z, t = make_batch("multiclass", (3, 5, 4, 4), 0.0)
    z[0, :, 0, 0] = torch.tensor([120.0, -120.0, 0.0, 1.0, 2.0], dtype=torch.float64)
    z[1, :, 0, 0] = torch.tensor([-100.0, 100.0, 99.0, 0.0, 0.0], dtype=torch.float64)
    z[2, :, 0, 0] = torch.tensor([0.0, 0.0, 200.0, -5.0, 3.0], dtype=torch.float64)
    z[2, :, 1, 1] = torch.tensor([-150.0, 30.0, 0.0, 1.0, 2.0], dtype=torch.float64)
    t[0, 0, 0], t[1, 0, 0], t[2, 0, 0], t[2, 1, 1] = 0, 1, 4, 1
    settings = {"rho": 1.0, "beta": 0.8, "alpha": 1.2, "gamma": gamma_value}
    results = {}
    for value, dtype in (("always", torch.float32), ("never", torch.float64)):
        mode(value)
        x = z.detach().to(dtype).requires_grad_()
        loss = TF.dual_focal_loss(x, t, **settings)
        loss.backward()
        results[value] = (loss.detach().double(), x.grad.double())
    torch.testing.assert_close(results["always"][0], results["never"][0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(results["always"][1], results["never"][1], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    ("variant", "settings"),
    [
        ("whole", {"gamma": 1.5, "beta": 0.7}),
        ("whole-recompute", {"gamma": 1.5, "beta": 0.7}),
        ("unrolled", {"gamma": 1.5, "beta": 0.7}),
        ("unrolled", {"gamma": "learnable", "beta": 0.7, "rho": 1.5}),
    ],
)
def test_one_pass_dual_focal_kernel_variants_match_eager(mode, monkeypatch, variant, settings):
    """The Dual Focal kernel's three builds (whole; whole with the recompute-over-store options
    for large inputs; unrolled classes in one loop for large inputs with few classes): the same
    loss, gradient (and ∂/∂γ of a learnable γ) as the eager float64 kernel, and the build the
    sizes ask for."""
    thresholds = {
        "whole": (1 << 40, 1 << 40),
        "whole-recompute": (1, 1 << 40),
        "unrolled": (1 << 40, 1),
    }[variant]
    monkeypatch.setattr(dual_focal_module, "RECOMPUTE_ELEMENTS", thresholds[0])
    monkeypatch.setattr(dual_focal_module, "UNROLL_ELEMENTS", thresholds[1])
    built = []
    real_compiled_kernel = _compiled.compiled_kernel

    def spy(key, function, options=None, **keywords):
        body = keywords.get("body")
        if body is not None and body.function is dual_focal_module.dual_focal_body:
            built.append((options, dict(body.settings)["unrolled"]))
        return real_compiled_kernel(key, function, options, **keywords)

    monkeypatch.setattr(_compiled, "compiled_kernel", spy)
    z, t = make_batch("multiclass", (2, 4, 6, 7), 0.1)
    weight = torch.tensor([0.5, 1.0, 2.0, 1.5], dtype=torch.float64)
    results = {}
    for value in ("always", "never"):
        mode(value)
        _compiled.kernel_runs(reset=True)
        x = z.clone().requires_grad_()
        gamma = settings["gamma"]
        if gamma == "learnable":
            gamma = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
        loss = TF.dual_focal_loss(x, t, weight=weight, **{**settings, "gamma": gamma})
        loss.backward()
        d_gamma = gamma.grad if isinstance(gamma, torch.Tensor) else torch.zeros(())
        results[value] = (loss.detach(), x.grad, d_gamma)
        assert _compiled.kernel_runs().get("compiled-one-pass", 0) == (value == "always")
    options = {
        "whole": None,
        "whole-recompute": _compiled.RECOMPUTE,
        "unrolled": _compiled.ONE_LOOP,
    }[variant]
    assert built == [(options, variant == "unrolled")]
    torch.testing.assert_close(results["always"][0], results["never"][0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(results["always"][1], results["never"][1], rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(results["always"][2], results["never"][2], rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("ignore_index", [-100, 2])
def test_label_counts_compiled_and_eager_match_bincount(mode, ignore_index):
    """The adaptive weights' per-batch class counts: one compiled loop (few classes, large
    input) or scatter_add, both equal to bincount of the kept labels."""
    target = torch.randint(0, 5, (3, 17, 19))
    target[0, :4] = -100
    kept = target[(target != ignore_index) & (target >= 0)]
    expected = torch.bincount(kept, minlength=5).to(torch.float32)
    for value in ("always", "never"):
        mode(value)
        _compiled.kernel_runs(reset=True)
        got = _counts.label_counts(target, 5, ignore_index)
        torch.testing.assert_close(got, expected)
        assert _compiled.kernel_runs().get("compiled-counts", 0) == (value == "always")


def test_adaptive_loss_counts_its_labels_once_per_call(mode):
    """A loss with adaptive class weights counts the batch's labels once per training call: the
    one count serves the weights' update and the mean's divisor (no cache: every batch is a new
    tensor in training). The mean equals the eager driver's and the float64 reference's
    (the weights the call used, read before it)."""
    import reference as ref

    z, t = make_batch("multiclass", (2, 4, 8, 8), 0.1)
    results = {}
    for value in ("always", "never"):
        mode(value)
        loss = ti.build_loss("dual_focal_adaptive", [40, 30, 20, 10])
        loss.train()
        _compiled.kernel_runs(reset=True)
        weight = loss.current_weight().double()
        results[value] = loss(z, t.clone())
        counted = _compiled.kernel_runs().get("compiled-counts", 0)
        assert counted == (value == "always"), counted
        expected = ref.dual_focal(z, t, weight=weight)
        torch.testing.assert_close(results[value], expected, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(results["always"], results["never"], rtol=1e-10, atol=1e-12)


def test_inductor_options_this_torch_lacks_are_logged_once_and_left_out(mode, monkeypatch, caplog):
    """The tuning options are hints: one this torch's inductor does not know (the recompute
    options name ``realize_opusers_threshold``, which torch 2.11 lacks) is left out with one
    logged warning, not a failed compile that sends every multi-label loss to the eager path."""
    monkeypatch.setattr(_compiled, "_kernels", {})
    monkeypatch.setattr(_compiled, "_said", set())
    from torch._inductor import config as inductor_config

    options = {**_compiled.RECOMPUTE, "no_such_inductor_option": 1}
    known = inductor_config.get_config_copy()  # torch 2.13 lacks realize_opusers_threshold
    expected = {k: v for k, v in _compiled.RECOMPUTE.items() if k in known}
    with caplog.at_level("WARNING", logger="torch_imbalance"):
        assert _compiled.known_options(options) == expected
        assert _compiled.known_options(options) == expected
    said = [r.getMessage() for r in caplog.records if "no_such_inductor_option" in r.getMessage()]
    assert len(said) == 1, said  # once, however often the options are asked for
    monkeypatch.setattr(_compiled, "RECOMPUTE", options)
    from torch_imbalance.functional import _multilabel

    monkeypatch.setattr(_multilabel, "RECOMPUTE", options)
    mode("always")
    _compiled.kernel_runs(reset=True)
    z, t = make_batch("multilabel", (2, 3, 4, 5), 0.1)
    x = z.clone().requires_grad_()
    TF.focal_loss(x, t, task="multilabel").backward()
    assert _compiled.kernel_runs().get("compiled-one-pass", 0) == 1
    assert not _compiled.compile_broken() and torch.isfinite(x.grad).all()


def test_untested_torch_falls_back_to_eager_with_one_note(mode, monkeypatch, caplog):
    """Outside the tested torch range "auto" runs the eager driver (same results), said once;
    "always" compiles anyway (a user who insists, a GPU machine's older torch), said once."""
    assert _compiled.torch_is_tested("2.13.0") and _compiled.torch_is_tested("2.14.1+cu130")
    assert not _compiled.torch_is_tested("2.4.1") and not _compiled.torch_is_tested("3.0.0")
    monkeypatch.setattr(_compiled.torch, "__version__", "2.99.0")
    monkeypatch.setattr(_compiled, "_said", set())
    monkeypatch.setattr(_compiled, "MIN_COMPILED_ELEMENTS", 0)
    mode("auto")
    z, t = make_batch("multiclass", (2, 3, 4, 5), 0.1)
    _compiled.kernel_runs(reset=True)
    with caplog.at_level("WARNING", logger="torch_imbalance"):
        TF.focal_loss(z, t)
        TF.focal_loss(z, t)
        runs = _compiled.kernel_runs(reset=True)
        assert runs.get("eager-one-pass", 0) == 2 and runs.get("compiled-one-pass", 0) == 0
        mode("always")
        TF.focal_loss(z, t)
        TF.focal_loss(z, t)
    assert _compiled.kernel_runs().get("compiled-one-pass", 0) == 2
    notes = [r.getMessage() for r in caplog.records if "tested on torch" in r.getMessage()]
    assert len(notes) == 2 and "eager" in notes[0] and "compiling as asked" in notes[1], notes


@pytest.mark.parametrize(
    ("loss", "task"),
    [(TF.focal_loss, "multiclass"), (TF.focal_loss, "multilabel")],
    ids=["gap", "multilabel"],
)
def test_one_kernel_serves_many_call_signatures_without_hitting_the_recompile_limit(
    mode, monkeypatch, loss, task
):
    """One configuration called with 2-D, 4-D and 5-D inputs, with and without a weight, with
    and without grad: a compiled copy per signature, so dynamo's per-code limit (8; lowered to
    1 here and made an error) is never reached. Past the limit dynamo runs the kernel
    uncompiled, silently (seen on CUDA: a benchmark over four shapes with autocast)."""
    monkeypatch.setattr(_compiled, "_kernels", {})  # copies built by earlier tests saw other sizes
    mode("always")
    _compiled.kernel_runs(reset=True)
    kwargs = {"task": task} if task == "multilabel" else {}
    with torch._dynamo.config.patch(recompile_limit=1, fail_on_recompile_limit_hit=True):
        for shape in [(6, 3), (2, 3, 4, 5), (1, 3, 2, 3, 4)]:
            z, t = make_batch(task, shape, 0.1)
            for weight in (None, torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)):
                x = z.clone().requires_grad_()
                loss(x, t, weight=weight, gamma=2.0, **kwargs).backward()
                assert torch.isfinite(x.grad).all()
        with torch.no_grad():
            assert torch.isfinite(loss(z, t, gamma=2.0, **kwargs))
    assert not _compiled.compile_broken()
    # Every call (6 with grad, 1 without) ran compiled, none fell back to eager.
    assert _compiled.kernel_runs().get("compiled-one-pass", 0) == 7


def test_fixed_gamma_reaches_the_kernel_as_one_kept_device_tensor(mode):
    """A float γ is made on the device once and reused: a new tensor per call is a
    host-to-device copy, after which PyTorch waits for the device (every loss call on a GPU
    then queues behind the work before it). Made first under inference mode, it still serves
    a training call."""
    with torch.inference_mode():
        first = _driver.gamma_on(2.75, torch.float32, torch.device("cpu"))
        z, t = make_batch("multiclass", (2, 3, 4, 5), 0.1, dtype=torch.float32)
        mode("always")
        TF.focal_loss(z, t, gamma=2.75)
    assert _driver.gamma_on(2.75, torch.float32, torch.device("cpu")) is first
    assert not first.is_inference() and first.item() == 2.75
    # A training call takes its γ from the kept tensors: a lookup, no new tensor.
    before = _driver.constant.cache_info()
    x = z.clone().requires_grad_()
    TF.focal_loss(x, t, gamma=2.75).backward()
    after = _driver.constant.cache_info()
    assert after.hits > before.hits and after.misses == before.misses
    assert torch.isfinite(x.grad).all()
    learnable = torch.tensor(1.5, requires_grad=True)
    assert _driver.gamma_on(learnable, torch.float64, torch.device("cpu")).dtype == torch.float64


@pytest.mark.parametrize(
    ("name", "settings"),
    [
        ("lmf", {}),
        ("lmf_official", {}),
        ("lmf_cosine", {}),
        ("focal", {}),
        ("dual_focal", {}),
        ("dual_focal", {"gamma": "learnable", "rho": 1.5}),
    ],
)
def test_unrolled_one_pass_kernels_keep_no_per_element_buffer(mode, monkeypatch, name, settings):
    """The unrolled one-pass kernels compute every per-element value in the loop over the logits
    (``_compiled.in_logit_loop`` on each value inductor realises): the generated code allocates
    no ``(N, 1, S)`` buffer. Without those logit reads seg-4 LMF ran four loops with ten such
    buffers (more memory than ``F.cross_entropy``, and slower); this says which build ran."""
    from torch._inductor import config as inductor_config
    from torch._inductor.utils import run_and_get_code

    monkeypatch.setattr(_compiled, "_kernels", {})
    monkeypatch.setattr(dual_focal_module, "UNROLL_ELEMENTS", 1)
    mode("always")
    z, t = make_batch("multiclass", (2, 4, 16, 32), 0.1)
    z = z.float()
    counts = torch.bincount(t[t >= 0].flatten(), minlength=4).clamp_min(1).tolist()
    if name == "dual_focal":
        gamma = settings.get("gamma", 1.0)
        if gamma == "learnable":
            gamma = torch.tensor(1.5, requires_grad=True)
        rho = settings.get("rho", 1.0)

        def call(x):
            return TF.dual_focal_loss(x, t, gamma=gamma, rho=rho)
    else:
        loss = ti.build_loss(name, counts)

        def call(x):
            return loss(x, t)

    x = z.clone().requires_grad_()
    _compiled.kernel_runs(reset=True)
    with inductor_config.patch({"fx_graph_cache": False}):
        _, sources = run_and_get_code(lambda: call(x).backward())
    assert _compiled.kernel_runs().get("compiled-one-pass", 0) == 1
    code = "\n".join(sources)
    assert "cpp_fused" in code  # the kernel was generated here, not read from a cache
    # The allocation pattern is checked on the gradient, which must be there: if inductor
    # renames its allocator this test fails instead of passing on a pattern found nowhere.
    assert code.count("empty_strided_cpu((2, 4, 512)") == 1, "the gradient's buffer not found"
    per_element = "empty_strided_cpu((2, 1, 512)"
    assert code.count(per_element) == 0, f"{code.count(per_element)} per-element buffers"


@pytest.mark.parametrize("name", ["focal", "ldam", "lmf", "dual_focal"])
@pytest.mark.parametrize("ignored", [0.0, 0.1])
def test_multilabel_one_pass_kernel_is_one_loop(mode, monkeypatch, name, ignored):
    """A reduced multi-label loss runs one loop over the entries: the closed-form values and
    slopes, the loss's sum, the count of entries not ignored (the mean's divisor) and the
    gradient, with no buffer but the gradient. Before, the count and a second pass over the
    logits for the autograd-derived gradient made two loops (seg-4: 1.1–1.5× F.cross_entropy's
    time, about 1.0× with one). The mean's gradient is then scaled by numel / count in the
    backward, only where entries were ignored: checked against the eager path."""
    from torch._inductor import config as inductor_config
    from torch._inductor.utils import run_and_get_code

    monkeypatch.setattr(_compiled, "_kernels", {})
    z, y = make_batch("multilabel", (2, 4, 16, 32), ignored)
    z = z.float()
    counts = (y == 1).transpose(0, 1).reshape(4, -1).sum(1).clamp_min(1).tolist()
    loss = ti.build_loss(name, counts, task="multilabel")
    grads = {}
    for value in ("never", "always"):
        mode(value)
        x = z.clone().requires_grad_()
        _compiled.kernel_runs(reset=True)
        with inductor_config.patch({"fx_graph_cache": False}):
            _, sources = run_and_get_code(lambda: loss(x, y).backward())  # noqa: B023
        grads[value] = x.grad
    assert _compiled.kernel_runs().get("compiled-one-pass", 0) == 1
    code = "\n".join(sources)
    # Outermost loops (no omp pragma on one thread), but the one over the 4 class weights.
    extents = re.findall(
        r"for\(int64_t x0=static_cast<int64_t>\(0L\); x0<static_cast<int64_t>\((\d+)L", code
    )
    loops = [int(extent) for extent in extents if int(extent) != 4]
    assert len(loops) == 1, f"loops over {loops}"
    assert code.count("empty_strided_cpu((2, 4, 512)") == 1  # the gradient
    torch.testing.assert_close(grads["always"], grads["never"], rtol=2e-5, atol=1e-9)


def test_class_weight_lookup_by_selects_makes_no_indexed_load(mode, monkeypatch):
    """Up to ``SELECT_WEIGHT_CLASSES`` classes an element's class weight is a chain of selects,
    not an indexed load, which inductor gathers lane by lane behind a bounds check (seg-4
    weighted CE 6.20 -> 5.33 ms, ``benchmarks/kernel_probe.py``). The generated code has no
    such check; with the chain switched off it has one, so the pattern looked for is real."""
    from torch._inductor import config as inductor_config
    from torch._inductor.utils import run_and_get_code

    z, t = make_batch("multiclass", (2, 4, 16, 32), 0.1)
    z = z.float()
    weight = torch.tensor([0.5, 1.0, 2.0, 1.5])
    mode("always")

    def generated_code() -> str:
        monkeypatch.setattr(_compiled, "_kernels", {})
        x = z.clone().requires_grad_()
        with inductor_config.patch({"fx_graph_cache": False}):
            _, sources = run_and_get_code(lambda: TF.focal_loss(x, t, weight=weight).backward())
        return "\n".join(sources)

    with_selects = generated_code()
    monkeypatch.setattr(_gap, "SELECT_WEIGHT_CLASSES", 0)
    with_index = generated_code()
    bounds_check = "index out of bounds"
    assert bounds_check in with_index
    assert bounds_check not in with_selects
