"""No subnormal floats in the one-pass target-gap kernels.

A subnormal result (below ``torch.finfo(float32).tiny``) takes a microcode path on x86 about
100× slower than a normal one. A mean over 10⁶ pixels scales every gradient term by 10⁻⁶, and
LDAM's ``s = 30`` (or any confident model) puts many probabilities far below 1, so the kernels
used to make them by the hundred thousand (seg-4 LDAM ran 3× slower than with flush-to-zero).
These tests say that none are made and that what replaced them changes nothing measurable.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import platform

import pytest
import torch
from cases import make_batch

import torch_imbalance as ti
from torch_imbalance.functional import _compiled, _heads

TINY = torch.finfo(torch.float32).tiny


def _subnormal(values: torch.Tensor) -> int:
    return int(((values != 0) & (values.abs() < TINY)).sum())


@pytest.fixture
def mode():
    yield ti.set_compile_mode
    ti.set_compile_mode("auto")


# ------------------------------------------------------------------------------ the heads
def _softplus64(u: torch.Tensor) -> torch.Tensor:
    """``log(1 + e^u)`` in float64, the textbook overflow-free spelling."""
    u = u.double()
    return u.clamp_min(0) + torch.log1p(torch.exp(-u.abs()))


def _reference_focal(gap: torch.Tensor, gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 ``ℓ(u) = (1 − p_t)^γ · (−log p_t)`` with ``p_t = σ(−u)`` (the softmax focal
    loss of Lin et al. written in the target gap, spec ``losses.md``) and ``dℓ/du`` by autograd."""
    u = gap.double().detach().requires_grad_()
    value = torch.sigmoid(u) ** gamma * _softplus64(u)
    (slope,) = torch.autograd.grad(value.sum(), u)
    return value.detach(), slope


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("log_scale", [math.log(30e-6), math.log(1e-9), 0.0, 5.0])
def test_focal_head_with_cutoff_makes_no_subnormal_and_matches_float64(gamma, log_scale):
    gap = torch.linspace(-300.0, 300.0, 20001)
    value, (slope,), _ = _heads.focal_head([gap], gamma, log_scales=[log_scale])
    scale = math.exp(log_scale)
    for scaled in (value * scale, slope * scale):
        assert _subnormal(scaled) == 0
    expected_value, expected_slope = _reference_focal(gap, gamma)
    # What the cutoff changes: the loss and slope at the cutoff, e^{floor + margin} and (1 + γ)
    # times that once scaled (4e-34), times the scale where that is above 1; 1 %: rounding.
    # rtol: float32 (p_t = 1 − σ(u) rounds where σ ≈ 1).
    margin = math.exp(_heads.exp_floor(torch.float32) + _heads.CUTOFF_MARGIN)
    atol = 1.01 * (1 + gamma) * margin * max(1, scale)
    torch.testing.assert_close(
        (value * scale).double(), expected_value * scale, rtol=2e-5, atol=atol
    )
    torch.testing.assert_close(
        (slope * scale).double(), expected_slope * scale, rtol=2e-5, atol=atol
    )


def test_lmf_and_poly1_heads_with_cutoff_make_no_subnormal():
    gap = torch.linspace(-300.0, 300.0, 20001)
    log_scale = math.log(1e-6)
    # The terms at the cutoff: e^{floor + margin} over the scale 1e-6, per term (7e-28).
    atol = 3 * math.exp(_heads.exp_floor(torch.float32) + _heads.CUTOFF_MARGIN) / 1e-6
    value, slopes, d_gamma = _heads.lmf_head(
        [gap * 30, gap], 2.0, ldam_weight=1.0, focal_weight=1.0, log_scales=[log_scale] * 2
    )
    for scaled in (*slopes, d_gamma):
        assert _subnormal(scaled * 1e-6) == 0
    expected_value, _ = _reference_focal(gap * 30, 0.0)
    focal_value, _ = _reference_focal(gap, 2.0)
    torch.testing.assert_close(value.double(), expected_value + focal_value, rtol=2e-5, atol=atol)
    value, (slope,), _ = _heads.poly1_head([gap], 0.0, epsilon=-0.5, log_scales=[log_scale])
    assert _subnormal(slope * 1e-6) == 0
    u = gap.double()
    expected = _softplus64(u) - 0.5 * torch.sigmoid(u)
    torch.testing.assert_close(value.double(), expected, rtol=2e-5, atol=atol)


def test_softplus_without_subnormals_matches_float64():
    gap = torch.linspace(-200.0, 200.0, 40001)
    ours = _heads._softplus(gap, exact_below_floor=False)
    assert _subnormal(ours) == 0
    expected = _softplus64(gap)
    torch.testing.assert_close(ours.double(), expected, rtol=2e-7, atol=2 * TINY)


# -------------------------------------------------------------------- the compiled kernels
LOSSES = ["ldam", "lmf", "lmf_official", "focal", "poly1", "balanced_softmax"]


def _loss(name: str, counts: list[int]):
    return ti.build_loss(name, counts)


@pytest.mark.parametrize("spread", [1.0, 10.0])
@pytest.mark.parametrize("name", LOSSES)
def test_one_pass_gradient_has_no_subnormal_and_matches_float64(mode, name, spread):
    z, t = make_batch("multiclass", (2, 4, 64, 64), 0.05, dtype=torch.float32, scale=spread)
    counts = torch.bincount(t[t >= 0].flatten(), minlength=4).clamp_min(1).tolist()
    loss = _loss(name, counts)
    results = {}
    for value, dtype in (("always", torch.float32), ("never", torch.float64)):
        mode(value)
        _compiled.kernel_runs(reset=True)
        x = z.detach().to(dtype).requires_grad_()
        loss(x, t).backward()
        results[value] = x.grad
        if value == "always":
            assert _compiled.kernel_runs().get("compiled-one-pass", 0) == 1
    assert _subnormal(results["always"]) == 0
    torch.testing.assert_close(results["always"].double(), results["never"], rtol=1e-4, atol=1e-9)


def _fenv() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("m")
    if platform.machine() not in ("x86_64", "AMD64") or name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


#: x86's floating-point status flags (glibc's fenv.h): a result rounded into the subnormal
#: range (underflow) and a subnormal operand (denormal).
FE_DENORMAL, FE_UNDERFLOW, FE_ALL = 0x02, 0x10, 0x3F


@pytest.mark.parametrize("spread", [1.0, 10.0])
@pytest.mark.parametrize("name", LOSSES)
def test_one_pass_kernel_raises_no_underflow_flag(mode, name, spread):
    """The processor's own record: after a forward and backward on one thread, neither the
    underflow nor the denormal-operand flag is set (before, LDAM set both)."""
    libm = _fenv()
    if libm is None:
        pytest.skip("needs x86-64 and a C math library with fenv")
    z, t = make_batch("multiclass", (2, 4, 128, 128), 0.05, dtype=torch.float32, scale=spread)
    counts = torch.bincount(t[t >= 0].flatten(), minlength=4).clamp_min(1).tolist()
    loss = _loss(name, counts)
    mode("always")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the flags are per thread: run the kernel on this one
    try:
        x = z.clone().requires_grad_()
        loss(x, t).backward()  # compiles
        x.grad = None
        libm.feclearexcept(FE_ALL)
        loss(x, t).backward()
        flags = libm.fetestexcept(FE_ALL)
    finally:
        torch.set_num_threads(threads)
    assert flags & (FE_UNDERFLOW | FE_DENORMAL) == 0, f"flags {flags:#04x}"
    assert _compiled.kernel_runs().get("compiled-one-pass", 0) >= 2
