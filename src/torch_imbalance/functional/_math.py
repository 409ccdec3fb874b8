"""Exact element-wise building blocks of the losses' laws, in log space and with no subnormal
float on the way (a subnormal takes a ~100× slower microcode path on x86).

The losses are written as functions of a *gap* ``u`` (multi-class: ``u = lse_{j≠t} z_j − z_t``;
multi-label: ``u = −(2y − 1) z`` per entry): ``CE = softplus(u) = −log p_t``,
``1 − p_t = σ(u)``, ``p_t = σ(−u)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

#: ``(ℓ, [∂ℓ/∂u_k], ∂ℓ/∂γ or None)``: a law's value and slopes per element.
Parts = tuple[torch.Tensor, list[torch.Tensor], "torch.Tensor | None"]
#: Label smoothing's ``(κ, E)`` of one head: the smoothed cross-entropy is
#: ``κ softplus(u) + E`` (see ``_gap.smoothing_terms``).
Smoothing = tuple[torch.Tensor, torch.Tensor]
#: Marks a per-element value that the compiled kernels keep in the logits' loop (see
#: ``_compiled.in_logit_loop``); None on the eager path.
Anchor = Callable[[torch.Tensor], torch.Tensor] | None
#: Per head, a lower bound on the ``log`` of the factor its slope is multiplied by downstream
#: (``1 / Σw`` of a mean times the head's scale; see :func:`_cutoff`), or None.
LogScales = list[torch.Tensor | float] | None

#: Largest focal exponent γ (a multiple of 1/2) taken by multiplications (see :func:`power`).
MAX_HALF_POWER = 4

#: Nats above the exp floor that the cutoff keeps (room for class weights and the λs).
CUTOFF_MARGIN = 10.0


def exp_floor(dtype: torch.dtype) -> float:
    """Smallest exponent kept before ``exp``: below it the result is under the dtype's normal
    range (and ``exp`` takes a ~40× slower path), far below what the sums it feeds can resolve."""
    return -87.0 if dtype in (torch.float32, torch.float16, torch.bfloat16) else -708.0


def cutoff(
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
    bounded: torch.Tensor | float
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


def power(
    base: torch.Tensor, log_base: torch.Tensor, exponent: torch.Tensor | float
) -> torch.Tensor:
    """``base ** exponent`` for ``base`` in ``(0, 1]``: by multiplications and one ``sqrt`` for
    a float multiple of 1/2 up to :data:`MAX_HALF_POWER` (γ = 1.5, 2: cheaper than an ``exp``),
    else ``exp(exponent · log_base)``."""
    if isinstance(exponent, torch.Tensor) or not is_half_power(exponent):
        return torch.exp(exponent * log_base)
    halves = int(2 * exponent)  # 1 to 2·MAX_HALF_POWER
    result = base.sqrt() if halves % 2 else None
    for _ in range(halves // 2):
        result = base if result is None else result * base
    assert result is not None
    return result


def is_half_power(exponent: float) -> bool:
    halves = 2 * exponent
    return halves == int(halves) and 1 <= halves <= 2 * MAX_HALF_POWER


def signed_gap(z: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """``u = −(2y − 1) z``."""
    return torch.where(positive, -z, z)


def scalar(value: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """``value`` as a tensor of ``like``'s dtype (``torch.where`` of two Python floats would
    give the default dtype: float32 constants in a float64 loss)."""
    return torch.as_tensor(value, dtype=like.dtype, device=like.device)


def class_dim_view(vector: torch.Tensor, ndim: int) -> torch.Tensor:
    """A per-class vector ``(C,)`` shaped to broadcast over ``(N, C, *)`` of rank ``ndim``."""
    return vector.view(1, -1, *([1] * (ndim - 2)))
