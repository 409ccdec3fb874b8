"""Per-element losses as closed-form functions of the target gap ``u`` (see ``_fused``).

Each head returns ``(ℓ, [∂ℓ/∂u_k], ∂ℓ/∂γ or None)`` on chunk-sized tensors, with
``CE = softplus(u) = −log p_t``, ``1 − p_t = σ(u)`` and ``p_t = σ(−u)``, all in log space.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from torch_imbalance._reduce import class_dim_view

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


# ------------------------------------------------------------------------------ multi-label
# Each entry (i, c) of a multi-label loss is one element with its own gap
# ``u = −(2y − 1) z``: ``BCE(z, y) = softplus(u)``, ``1 − p_y = σ(u)``, ``p_y = σ(−u)``. The
# functions below return ``(ℓ, ∂ℓ/∂z, ∂ℓ/∂γ or None)`` per entry, unweighted and unmasked (the
# compiled one-pass kernel weights, masks and reduces them); ``log_scale`` bounds the log of
# the factor the slopes meet downstream, as for the heads. The eager chunks (``focal.py``,
# ``ldam.py``, ``lmf.py``, ``dual_focal.py``) spell the same losses by value only, for autograd:
# the equivalence tests hold the two against each other and against float64 references.
EntryParts = tuple[torch.Tensor, torch.Tensor, "torch.Tensor | None"]


def _signed_gap(z: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """``u = −(2y − 1) z``."""
    return torch.where(positive, -z, z)


def _scalar(value: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """``value`` as a tensor of ``like``'s dtype (``torch.where`` of two Python floats would
    give the default dtype: float32 constants in a float64 loss)."""
    return torch.as_tensor(value, dtype=like.dtype, device=like.device)


def multilabel_focal_entries(
    z: torch.Tensor,
    positive: torch.Tensor,
    *,
    gamma: torch.Tensor | float,
    alpha: float | torch.Tensor | None,
    log_scale: torch.Tensor | float,
    anchor: Anchor = None,
) -> EntryParts:
    """``ℓ = α_y σ(u)^γ softplus(u)`` (``torchvision.ops.sigmoid_focal_loss``)."""
    value, (slope,), d_gamma = _focal_parts(_signed_gap(z, positive), gamma, log_scale, anchor)
    slope = torch.where(positive, -slope, slope)
    if alpha is not None:
        if isinstance(alpha, torch.Tensor) and alpha.ndim == 1:
            alpha = class_dim_view(alpha, z.ndim)
        weight = torch.where(positive, _scalar(alpha, z), 1 - alpha)
        value, slope = weight * value, weight * slope
        d_gamma = None if d_gamma is None else weight * d_gamma
    return value, slope, d_gamma


def _ldam_gap(
    z: torch.Tensor, positive: torch.Tensor, margins: torch.Tensor, scale: float
) -> torch.Tensor:
    """``u = −(2y − 1) s (z − Δ_c y)``."""
    shifted = torch.where(positive, z - class_dim_view(margins, z.ndim), z)
    return _signed_gap(scale * shifted, positive)


def multilabel_ldam_entries(
    z: torch.Tensor,
    positive: torch.Tensor,
    *,
    gamma: None,
    margins: torch.Tensor,
    scale: float,
    log_scale: torch.Tensor | float,
    anchor: Anchor = None,
) -> EntryParts:
    """``ℓ = BCE(s (z − Δ_c y), y) = softplus(u)``."""
    gap = _ldam_gap(z, positive, margins, scale)
    value, (slope,), _ = _focal_parts(gap, 0.0, log_scale, anchor)
    return value, torch.where(positive, -scale * slope, scale * slope), None


def multilabel_lmf_entries(
    z: torch.Tensor,
    positive: torch.Tensor,
    *,
    gamma: torch.Tensor | float,
    margins: torch.Tensor,
    scale: float,
    focal_scale: float,
    ldam_weight: float,
    focal_weight: float,
    log_scale: torch.Tensor | float,
    anchor: Anchor = None,
) -> EntryParts:
    """``ℓ = λ_ldam BCE(s (z − Δ_c y), y) + λ_focal σ(u_f)^γ softplus(u_f)``, ``u_f`` the gap of
    ``s_f z`` (:func:`lmf_head` on the two gaps)."""
    gaps = [_ldam_gap(z, positive, margins, scale), _signed_gap(focal_scale * z, positive)]
    value, (ldam_slope, focal_slope), d_gamma = lmf_head(
        gaps,
        gamma,
        ldam_weight=ldam_weight,
        focal_weight=focal_weight,
        log_scales=[log_scale, log_scale],
        anchor=anchor,
    )
    slope = scale * ldam_slope + focal_scale * focal_slope
    return value, torch.where(positive, -slope, slope), d_gamma


def multilabel_dual_focal_entries(
    z: torch.Tensor,
    positive: torch.Tensor,
    *,
    gamma: torch.Tensor | float,
    alpha: float,
    beta: float,
    rho: float,
    log_scale: torch.Tensor | float,
    anchor: Anchor = None,
) -> EntryParts:
    """``ℓ = −y log p − β (1 − y) log(ρ − p) + α |y − p|^γ`` with ``p = σ(z)``: in the gap,
    ``softplus(u)`` for a positive, ``−β log(ρ − 1 + σ(−u))`` for a negative, plus
    ``α σ(u)^γ``; slopes ``σ(u)``, ``β σ(u) σ(−u) / (ρ − 1 + σ(−u))`` and ``αγ σ(u)^γ σ(−u)``."""
    gap = _cutoff(_signed_gap(z, positive), 0.0, log_scale)
    softplus, log_sig, sig, p_y = sigmoid_parts(gap, anchor)
    if rho == 1.0:  # −log(1 − p) of a negative is softplus(u) too
        true_weight = torch.where(positive, 1.0, _scalar(beta, z))
        value, slope = true_weight * softplus, true_weight * sig
    else:
        shifted = (rho - 1.0) + p_y  # ρ − p of a negative, ≥ ρ − 1 > 0
        value = torch.where(positive, softplus, -beta * anchored(shifted.log(), anchor))
        slope = sig * torch.where(positive, 1.0, beta * p_y / shifted)
    d_gamma = None
    if alpha != 0:
        if not isinstance(gamma, torch.Tensor) and gamma == 0:
            value = value + alpha
        else:
            power = anchored(_power(sig, log_sig, gamma), anchor)  # |y − p|^γ = σ(u)^γ
            value = value + alpha * power
            slope = slope + (alpha * gamma) * power * p_y
            d_gamma = alpha * power * log_sig
    return value, torch.where(positive, -slope, slope), d_gamma
