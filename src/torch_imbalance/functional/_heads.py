"""Per-element losses as closed-form functions of the target gap ``u`` (see ``_fused``).

Each head returns ``(ℓ, [∂ℓ/∂u_k], ∂ℓ/∂γ or None)`` on chunk-sized tensors, with
``CE = softplus(u) = −log p_t``, ``1 − p_t = σ(u)`` and ``p_t = σ(−u)``, all in log space.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

Parts = tuple[torch.Tensor, list[torch.Tensor], "torch.Tensor | None"]
#: Marks a per-element value that the compiled kernels keep in the logits' loop (see
#: ``_compiled._in_logit_loop``); None on the eager path.
Anchor = Callable[[torch.Tensor], torch.Tensor] | None
#: Per head, a lower bound on the ``log`` of the factor its slope is multiplied by downstream
#: (``1 / Σw`` of a mean times the head's scale; see :func:`_cutoff`), or None.
LogScales = list[torch.Tensor | float] | None

#: Largest focal exponent γ (a multiple of 1/2) taken by multiplications (see :func:`_power`).
MAX_HALF_POWER = 4

#: Nats above the exp floor that the cutoff keeps (room for class weights and the λs).
CUTOFF_MARGIN = 10.0


def exp_floor(dtype: torch.dtype) -> float:
    """Smallest exponent kept before ``exp``: below it the result is under the dtype's normal
    range (and ``exp`` takes a ~40× slower path), far below what the sums it feeds can resolve."""
    return -87.0 if dtype in (torch.float32, torch.float16, torch.bfloat16) else -708.0


def _cutoff(
    gap: torch.Tensor, gamma: torch.Tensor | float, log_scale: torch.Tensor | float
) -> torch.Tensor:
    """``u`` raised to the gap below which a head's loss and slope (``≈ e^{(1+γ)u}``), times
    the factor ``e^{log_scale}`` they meet downstream, fall under the dtype's normal range.

    Why: a subnormal float takes a microcode path about 100× slower on x86; with LDAM's
    ``s = 30`` or a confident model, many pixels of a mean over 10⁶ of them land there (seg-4
    LDAM ran 3× slower). Moving such a gap up to the cutoff leaves its terms, once scaled, at
    about ``(1 + γ) e^{floor + margin}`` (4·10⁻³⁴ in float32; times the factor where it is above
    1) instead of less."""
    floor = exp_floor(gap.dtype)
    if isinstance(log_scale, torch.Tensor):
        bounded = log_scale.clamp(floor / 2, 0.0)
    else:
        bounded = min(max(log_scale, floor / 2), 0.0)
    return gap.clamp_min((floor + CUTOFF_MARGIN - bounded) / (1 + gamma))


def log1p_of_small(x: torch.Tensor) -> torch.Tensor:
    """``log1p(x)`` for ``x ≥ 0``, ``x`` itself under the dtype's epsilon: ``log1p`` of a tiny
    value runs 4× slower on subnormal intermediates, and there ``log1p(x) = x`` to rounding
    (relative error ``x/2``).

    Above epsilon it is ``log(u) · x / (u − 1)`` with ``u = 1 + x`` (Goldberg, "What every
    computer scientist should know about floating-point arithmetic", 1991, Theorem 4: within a
    few ulp, as ``u − 1`` is exact), not ``torch.log1p``: the vectorised ``log1p`` costs about
    twice a ``log`` on CPU, and it is the costliest function in the multi-label kernels (seg-4
    multi-label LMF 16 -> 11 ms). Autograd's derivative of this form is ``1/(1 + x)`` within
    ``ε/2``: the rounding of ``u`` cancels to first order.
    """
    epsilon = torch.finfo(x.dtype).eps
    u = 1.0 + x.clamp_min(epsilon)
    return torch.where(x > epsilon, u.log() * (x / (u - 1.0)), x)


def logaddexp_floored(a: torch.Tensor, b: torch.Tensor | float) -> torch.Tensor:
    """``log(e^a + e^b)`` with no subnormal on the way: ``e^{−|a − b|}`` is clamped at the exp
    floor (absolute error below ``e^{floor}``) and its ``log1p`` is :func:`log1p_of_small`
    (one ``exp`` and one ``log``, unlike ``torch.logaddexp``)."""
    difference = a - b
    floor = exp_floor(difference.dtype)
    larger = a - difference.clamp_max(0.0)  # max(a, b)
    return larger + log1p_of_small((-difference.abs()).clamp_min(floor).exp())


def anchored(value: torch.Tensor, anchor: Anchor) -> torch.Tensor:
    """``anchor(value)``, or ``value`` where there is no anchor (the eager path)."""
    return value if anchor is None else anchor(value)


def sigmoid_parts(
    gap: torch.Tensor, anchor: Anchor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(softplus(u), log σ(u), σ(u), σ(−u))`` from one ``exp`` and one ``log``, with no
    subnormal on the way: ``e^{−|u|}`` (clamped at the exp floor) and ``log(1 + e^{−|u|})``
    serve all four (``σ(±u)`` by one reciprocal, not two more ``exp``: the per-element
    functions are most of a few-class kernel's cost). The two transcendental values go through
    ``anchor`` (the compiled kernels keep them in the logits' loop)."""
    beyond = gap > 0
    small = anchored((-gap.abs()).clamp_min(exp_floor(gap.dtype)).exp(), anchor)
    log_term = anchored(log1p_of_small(small), anchor)
    reciprocal = 1.0 / (1.0 + small)
    softplus = torch.where(beyond, gap, 0.0) + log_term
    return (
        softplus,
        # Not where(beyond, 0, u) − log_term: for large u that is −e^{−u} (≈ −1e-38 at the
        # floor), whose products (∂ℓ/∂γ) are subnormal; u − softplus(u) rounds to 0 there.
        gap - softplus,
        torch.where(beyond, 1.0, small) * reciprocal,
        torch.where(beyond, small, 1.0) * reciprocal,
    )


def _power(
    base: torch.Tensor, log_base: torch.Tensor, exponent: torch.Tensor | float
) -> torch.Tensor:
    """``base ** exponent`` for ``base`` in ``(0, 1]``: by multiplications and one ``sqrt`` for
    a float multiple of 1/2 up to :data:`MAX_HALF_POWER` (γ = 1.5, 2: cheaper than an ``exp``),
    else ``exp(exponent · log_base)``."""
    if isinstance(exponent, torch.Tensor) or not _is_half_power(exponent):
        return torch.exp(exponent * log_base)
    halves = int(2 * exponent)  # 1 to 2·MAX_HALF_POWER
    result = base.sqrt() if halves % 2 else None
    for _ in range(halves // 2):
        result = base if result is None else result * base
    assert result is not None
    return result


def _is_half_power(exponent: float) -> bool:
    halves = 2 * exponent
    return halves == int(halves) and 1 <= halves <= 2 * MAX_HALF_POWER


def _focal_parts(
    gap: torch.Tensor,
    gamma: torch.Tensor | float,
    log_scale: torch.Tensor | float | None = None,
    anchor: Anchor = None,
) -> Parts:
    if log_scale is None:
        # One softplus serves every log: log p_t = −softplus(u), log(1 − p_t) = u − softplus(u).
        cross_entropy = -F.logsigmoid(-gap)
        log_one_minus = gap - cross_entropy
        one_minus = log_one_minus.exp()
        p_t = 1 - one_minus  # exact where it matters (where σ(u) dominates the slope's bracket)
    else:
        gap = _cutoff(gap, gamma, log_scale)
        cross_entropy, log_one_minus, one_minus, p_t = sigmoid_parts(gap, anchor)
    if not isinstance(gamma, torch.Tensor) and gamma == 0:
        return cross_entropy, [one_minus], None
    modulator = _power(one_minus, log_one_minus, gamma)
    value = modulator * cross_entropy
    # d/du [σ(u)^γ softplus(u)] = σ(u)^γ (γ p_t softplus(u) + σ(u)).
    slope = modulator * (gamma * p_t * cross_entropy + one_minus)
    return value, [slope], log_one_minus * value


def _log_scale(log_scales: LogScales, k: int) -> torch.Tensor | float | None:
    return None if log_scales is None else log_scales[k]


def cross_entropy_head(
    gaps: list[torch.Tensor],
    gamma: torch.Tensor | float,
    *,
    log_scales: LogScales = None,
    anchor: Anchor = None,
) -> Parts:
    """``ℓ = softplus(u)``."""
    return _focal_parts(gaps[0], 0.0, _log_scale(log_scales, 0), anchor)


def focal_head(
    gaps: list[torch.Tensor],
    gamma: torch.Tensor | float,
    *,
    log_scales: LogScales = None,
    anchor: Anchor = None,
) -> Parts:
    """``ℓ = σ(u)^γ softplus(u)``, the softmax focal loss."""
    return _focal_parts(gaps[0], gamma, _log_scale(log_scales, 0), anchor)


def poly1_head(
    gaps: list[torch.Tensor],
    gamma: torch.Tensor | float,
    *,
    epsilon: float,
    log_scales: LogScales = None,
    anchor: Anchor = None,
) -> Parts:
    """``ℓ = softplus(u) + ε σ(u)``."""
    gap = gaps[0]
    log_scale = _log_scale(log_scales, 0)
    if log_scale is None:
        cross_entropy = -F.logsigmoid(-gap)
        one_minus, p_t = torch.sigmoid(gap), torch.sigmoid(-gap)
    else:
        gap = _cutoff(gap, 0.0, log_scale)
        cross_entropy, _, one_minus, p_t = sigmoid_parts(gap, anchor)
    slope = one_minus * (1 + epsilon * p_t)
    return cross_entropy + epsilon * one_minus, [slope], None


def lmf_head(
    gaps: list[torch.Tensor],
    gamma: torch.Tensor | float,
    *,
    ldam_weight: float,
    focal_weight: float,
    term_scales: list[torch.Tensor] | None = None,
    log_scales: LogScales = None,
    anchor: Anchor = None,
) -> Parts:
    """``ℓ = λ_ldam softplus(u_ldam) + λ_focal σ(u_f)^γ softplus(u_f)`` (heads: LDAM, focal);
    ``term_scales`` multiply the two terms (each term's own normaliser, as the authors' code
    has it)."""
    ldam_log, focal_log = _log_scale(log_scales, 0), _log_scale(log_scales, 1)
    if ldam_log is not None and focal_log is not None:
        # The λs scale the slopes downstream too (``log_scales`` bounds the normalisers).
        ldam_log = ldam_log + _log(ldam_weight)
        focal_log = focal_log + _log(focal_weight)
    if term_scales is not None:
        ldam_weight = ldam_weight * term_scales[0]  # type: ignore[assignment]
        focal_weight = focal_weight * term_scales[1]  # type: ignore[assignment]
    ldam, (ldam_slope,), _ = _focal_parts(gaps[0], 0.0, ldam_log, anchor)
    focal, (focal_slope,), focal_d_gamma = _focal_parts(gaps[1], gamma, focal_log, anchor)
    value = ldam_weight * ldam + focal_weight * focal
    d_gamma = None if focal_d_gamma is None else focal_weight * focal_d_gamma
    return value, [ldam_weight * ldam_slope, focal_weight * focal_slope], d_gamma


def _log(value: float) -> float:
    return math.log(value) if value > 0 else -math.inf
