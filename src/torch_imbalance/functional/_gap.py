"""The target gap: the one quantity every multi-class softmax loss here is a law of.

With transformed logits ``y = a·z + o − b_t e_t`` (scale ``a``, per-class offset ``o``, target
shift ``b``: a :class:`GapHead`), each element's gap is ``u = lse_{j≠t} y_j − y_t``. Then
``CE = softplus(u)``, ``1 − p_t = σ(u)``, ``log(1 − p_t) = log σ(u)``, so focal, LDAM, LMF, the
prior-adjusted losses and Poly-1 are laws of ``u`` (in their family files) and share this
module's gap and its closed-form gradient: ``∂u/∂z_j = a · e^{y_j − lse_{j≠t} y}`` for
``j ≠ t`` and ``−a`` at ``t``. Several heads (LMF's LDAM and focal terms) share one read of each
logit and one gradient. :func:`gap_body` is the body both drivers (``_driver``) run.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from torch_imbalance._types import Reduction
from torch_imbalance.functional._classwise import (
    ClassValues,
    Unrolled,
    assemble,
    class_max,
    class_offsets,
    class_sum,
    first_class,
    is_class,
    per_class,
    pick,
    split_classes,
    unrolls,
)
from torch_imbalance.functional._compiled import ONE_LOOP, in_logit_loop
from torch_imbalance.functional._counts import Normalisers
from torch_imbalance.functional._driver import Body, BodyOutput, run_body
from torch_imbalance.functional._math import Anchor, anchored, exp_floor

#: ``law(gaps, γ, *, log_scales, anchor) -> (ℓ, [∂ℓ/∂u_k], ∂ℓ/∂γ or None)`` per element.
Law = Callable[..., tuple[torch.Tensor, list[torch.Tensor], "torch.Tensor | None"]]


@dataclass(frozen=True)
class GapHead:
    """One transform ``y = scale · z + offset − shift[t] e_t`` of the logits (``(C,)`` vectors)."""

    scale: float = 1.0
    offset: torch.Tensor | None = None
    shift: torch.Tensor | None = None


#: Up to this many classes the one-pass kernels look an element's class weight (and a target
#: class's offset or margin) up by a chain of selects instead of an indexed load, which
#: inductor gathers lane by lane behind a bounds check: seg-4 weighted CE 6.20 -> 5.33 ms,
#: adaptive Dual Focal 11.4 -> 10.1 ms (``benchmarks/kernel_probe.py``); no difference
#: measured at 19 classes, so not beyond 8.
SELECT_WEIGHT_CLASSES = 8


@dataclass(frozen=True)
class GapSpec:
    """The static part of a configuration (baked into the compiled code; hashable key)."""

    scales: tuple[float, ...]
    has_offset: tuple[bool, ...]
    has_shift: tuple[bool, ...]
    dtype: torch.dtype
    floor: float
    gamma: float | None
    wants_gamma: bool
    #: The class axis unrolled on the compiled path (see ``_classwise``); the kernels are then
    #: built per class count.
    unrolled: bool = False


def _head_logits(
    z: ClassValues, k: int, spec: GapSpec, offsets: list[torch.Tensor | None]
) -> ClassValues:
    y = z.mul(spec.scales[k]) if spec.scales[k] != 1.0 else z
    offset = offsets[k]
    if offset is not None:
        y = y.add(class_offsets(offset, z))
    return y


#: Largest integer ratio of two heads' scales for which one head's exponentials are taken as
#: powers of the other's (LMF: LDAM's s = 30 over focal's 1).
MAX_POWER = 64


def _shared_heads(spec: GapSpec) -> list[int]:
    """Per head, the first head with the same transform of the non-target logits (same scale,
    no offset; a target shift does not change ``lse_{j≠t}``): those share one ``exp`` per
    logit and one ``lse`` (LMF on the cosine head, where both terms see ``s·z``)."""
    first: list[int] = []
    for k, (scale, offset) in enumerate(zip(spec.scales, spec.has_offset, strict=True)):
        same = [
            j for j in range(k) if not offset and not spec.has_offset[j] and spec.scales[j] == scale
        ]
        first.append(same[0] if same else k)
    return first


def _power_of(spec: GapSpec, k: int, base: int) -> int | None:
    """``a_k / a_base`` when it is an integer in ``[2, MAX_POWER]`` and neither head has an
    offset (then ``exp(a_k (z − m)) = exp(a_base (z − m))^r``), else None."""
    if spec.has_offset[k] or spec.has_offset[base]:
        return None
    ratio = spec.scales[k] / spec.scales[base]
    if ratio != round(ratio) or not 2 <= ratio <= MAX_POWER:
        return None
    return int(ratio)


def _integer_power(x: torch.Tensor, exponent: int) -> torch.Tensor:
    """``x ** exponent`` by repeated squaring (unrolled at trace time)."""
    result: torch.Tensor | None = None
    square = x
    while exponent:
        if exponent & 1:
            result = square if result is None else result * square
        exponent >>= 1
        if exponent:
            square = square * square
    assert result is not None
    return result


@dataclass
class _HeadExps:
    """One head's exponentials of the non-target logits, shared by its ``lse`` and its
    gradient: ``top = max_{j≠t} y_j`` ``(N, 1, S)``, ``e_j = exp(y_j − top)`` (class values
    in ``[exp(floor), 1]``, or 0 where a power fell below ``exp(floor)``; the target's entry
    is not used) and ``total = Σ_{j≠t} e_j`` (``>= 1``)."""

    top: torch.Tensor
    e: ClassValues
    total: torch.Tensor


def _head_exps(
    z: ClassValues,
    is_target: ClassValues,
    spec: GapSpec,
    offsets: list[torch.Tensor | None],
    anchor: Anchor = None,
) -> list[_HeadExps]:
    """Each head's :class:`_HeadExps`: one ``exp`` per logit for the head with the smallest
    scale; a head whose scale is ``r`` times that (no offsets) takes
    ``e_j = (e_base,j)^r`` by multiplications, flushed to 0 below ``exp(floor)`` (no product
    is subnormal: each takes a ~100× slower microcode path on x86); heads with the same
    transform share one."""
    shared = _shared_heads(spec)
    # (min with key= is not traceable before torch 2.12.)
    base = spec.scales.index(min(spec.scales))
    found: dict[int, _HeadExps] = {}
    for k in [base, *(k for k in range(len(spec.scales)) if k != base)]:
        if shared[k] != k:
            found[k] = found[shared[k]]
            continue
        power = _power_of(spec, k, base) if k != base else None
        if power is None:
            y = _head_logits(z, k, spec, offsets).masked_fill(is_target, float("-inf"))  # type: ignore[arg-type]
            top = class_max(y)
            e = y.sub(top).clamp_min(spec.floor).exp()
        else:
            # y_k = r·y_base, so y_k − top_k = r (y_base − top_base); the intermediate powers
            # of a base above exp(floor / r) stay above exp(floor).
            cut = math.exp(spec.floor / power)
            top = found[base].top * power
            e = per_class(
                lambda b, cut=cut, power=power: anchored(
                    torch.where(b > cut, _integer_power(b.clamp_min(cut), power), 0.0), anchor
                ),
                found[base].e,
            )
        found[k] = _HeadExps(top, e, anchored(class_sum(e), anchor))
    return [found[k] for k in range(len(spec.scales))]


def _gap_parts(
    z: ClassValues,
    target: torch.Tensor,
    is_target: ClassValues,
    offsets: list[torch.Tensor | None],
    shifts: list[torch.Tensor | None],
    spec: GapSpec,
    anchor: Anchor = None,
) -> tuple[list[torch.Tensor], torch.Tensor, list[_HeadExps]]:
    """Per head ``k``: the gap ``u_k = lse_{j≠t} y_k − y_{k,t}`` ``(N, 1, S)`` and the
    exponentials behind it; and the target logits ``z_t`` ``(N, 1, S)``."""
    z_target = pick(z, is_target, target)
    exps = _head_exps(z, is_target, spec, offsets, anchor)
    gaps: list[torch.Tensor] = []
    for k, head in enumerate(exps):
        lse = anchored(head.total.log() + head.top, anchor)
        y_target = z_target * spec.scales[k]
        offset, shift = offsets[k], shifts[k]
        if offset is not None:
            y_target = y_target + per_target(offset, target)
        if shift is not None:
            y_target = y_target - per_target(shift, target)
        gaps.append(anchored(lse - y_target, anchor))
    return gaps, z_target, exps


def _gap_gradient(
    is_target: ClassValues,
    exps: list[_HeadExps],
    coefficients: list[torch.Tensor],
    spec: GapSpec,
    anchor: Anchor = None,
    linear: _Linear | None = None,
) -> ClassValues:
    """``Σ_k c_k ∂u_k/∂z`` for per-element ``c_k`` ``(N, 1, S)`` (the upstream gradient times
    ``w·ℓ'_k``), with ``∂u_k/∂z_j = a_k e_kj / total_k`` for ``j ≠ t`` and ``−a_k`` at ``t``:
    no ``exp`` of its own (the forward's ``e`` are reused).

    No product is subnormal (a mean over 10⁶ pixels scales every term by 10⁻⁶, and a
    subnormal result takes a ~100× slower microcode path on x86: LDAM's ``s = 30`` once made
    seg-4 3× slower): a term below ``exp(floor)`` is 0, chosen per logit by comparing ``e``
    with a per-element threshold before multiplying.

    ``linear``: label smoothing's term ``c · D`` (see :class:`_Linear`), whose gradient
    ``c (W e_t − w)`` is added per class."""
    smallest = math.exp(spec.floor)
    shared = _shared_heads(spec)
    scaled = [coefficients[k] * spec.scales[k] for k in range(len(spec.scales))]
    at_target = -functools.reduce(torch.add, scaled)
    total: ClassValues | None = None
    for k, head in enumerate(exps):
        if shared[k] != k:
            continue
        coefficient = functools.reduce(
            torch.add, [scaled[j] for j in range(len(shared)) if shared[j] == k]
        )
        factor = coefficient / head.total
        size = factor.abs()
        factor = anchored(torch.where(size < smallest, 0.0, factor), anchor)
        threshold = anchored(smallest / size.clamp_min(smallest), anchor)
        term = per_class(
            lambda e, threshold=threshold, factor=factor: anchored(
                torch.where(e >= threshold, e, 0.0) * factor, anchor
            ),
            head.e,
        )
        total = term if total is None else total + term
    assert total is not None
    gradient: ClassValues = per_class(
        lambda t, other: torch.where(t, at_target, other), is_target, total
    )
    if linear is None:
        return gradient
    # ∂D/∂z_j = W [j = t] − w_j.
    at_target = linear.coefficient * linear.total_weight
    with_linear: ClassValues = per_class(
        lambda t, g, w: anchored(
            g + torch.where(t, at_target, 0.0) - linear.coefficient * w, anchor
        ),
        is_target,
        gradient,
        linear.class_weight,
    )
    return with_linear


@dataclass
class _Linear:
    """Label smoothing's part that is linear in the logits, ``c · D`` with
    ``D = Σ_j w_j (z_t − z_j)`` per element: its coefficient ``c`` ``(N, 1, S)``, the class
    weights ``w`` as class values (or 1) and their sum ``W``."""

    coefficient: torch.Tensor
    class_weight: Any
    total_weight: torch.Tensor | float


def smoothing_terms(
    z: ClassValues,
    z_target: torch.Tensor,
    safe: torch.Tensor,
    weight: torch.Tensor,
    valid: torch.Tensor,
    class_weight: torch.Tensor | None,
    offsets: list[torch.Tensor | None],
    shifts: list[torch.Tensor | None],
    spec: GapSpec,
    smoothing: float,
) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], Any, torch.Tensor | float]:
    r"""Label smoothing as ``F.cross_entropy`` defines it, on each head's logits ``y_k``:

    .. math::
        (1 - \varepsilon) w_t (\mathrm{lse}\,y - y_t)
            + \tfrac{\varepsilon}{C} \textstyle\sum_j w_j (\mathrm{lse}\,y - y_j)
        = \kappa\,\mathrm{softplus}(u) + E,

    with :math:`\mathrm{lse}\,y - y_t = \mathrm{softplus}(u)`,
    :math:`\kappa = (1 - \varepsilon) w_t + \tfrac{\varepsilon}{C} W` (``W = Σ_j w_j``) and
    :math:`E = \tfrac{\varepsilon}{C} \sum_j w_j (y_t - y_j)`, linear in the logits:
    ``a D + W o_t − Σ_j w_j o_j − b_t (W − w_t)`` for ``y = a z + o − b_t e_t``, with
    ``D = Σ_j w_j (z_t − z_j)`` (differences of logits: no cancellation of large values).
    A law scales ``κ softplus(u) + E`` as it scales cross-entropy (focal: by ``(1 − p_t)^γ``
    of the hard target, keras-cv's corrected form).

    Returns:
        Per head ``(κ, E)`` (0 where ignored); the class weights as class values (or 1) and
        ``W``.
    """
    classes = len(z) if isinstance(z, Unrolled) else z.shape[1]
    share = smoothing / classes
    if class_weight is None:
        weights: Any = 1.0
        total: torch.Tensor | float = float(classes)
        target_weight: torch.Tensor | float = 1.0
        differences = class_sum(per_class(lambda zj: z_target - zj, z))
    else:
        weights = class_offsets(class_weight, z)
        total = class_weight.sum()
        target_weight = per_target(class_weight, safe)
        differences = class_sum(per_class(lambda zj, wj: (z_target - zj) * wj, z, weights))
    keep = (1 - smoothing) * weight + share * total * valid
    terms = []
    for k, scale in enumerate(spec.scales):
        linear = differences * scale if scale != 1.0 else differences
        offset, shift = offsets[k], shifts[k]
        if offset is not None:
            weighted = offset.sum() if class_weight is None else (offset * class_weight).sum()
            linear = linear + per_target(offset, safe) * total - weighted
        if shift is not None:
            linear = linear - per_target(shift, safe) * (total - target_weight)
        terms.append((keep, linear * (share * valid)))
    return terms, weights, total


def labelled(
    z: ClassValues,
    target: torch.Tensor,
    class_weight: torch.Tensor | None,
    ignore_index: int,
    dtype: torch.dtype,
    classes: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """From the raw ``(N, 1, S)`` targets: the targets with ignored (and out-of-range) entries set
    to 0, each element's weight (0 where ignored) and whether the element is invalid: a logit
    NaN/inf or a label outside ``[0, C)`` (see :func:`flagged`). ``z``: the logits as class
    values in the compute dtype."""
    valid = target != ignore_index
    in_range = (target >= 0) & (target < classes)
    safe = torch.where(valid & in_range, target, 0)
    if class_weight is None:
        weight = valid.to(dtype)
    else:
        weight = torch.where(valid, per_target(class_weight, safe), 0.0)
    # A per-element sum over the classes is not finite when a logit is not (or, rarely, when
    # huge logits overflow it: then the eager checks find nothing and let the loss run); it is
    # fused with the loop over the classes, unlike a separate pass over all logits.
    bad = (valid & ~in_range) | ~torch.isfinite(class_sum(z))
    return safe, weight, bad


def per_target(per_class: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``per_class[target]`` for targets in ``[0, C)``: a chain of selects up to
    :data:`SELECT_WEIGHT_CLASSES` classes (inductor gathers an indexed load lane by lane behind
    a bounds check), the indexed load beyond."""
    classes = per_class.shape[0]
    if classes > SELECT_WEIGHT_CLASSES:
        return per_class[target]
    looked_up = torch.zeros_like(target, dtype=per_class.dtype)
    for c in range(classes):
        looked_up = torch.where(target == c, per_class[c], looked_up)
    return looked_up


def flagged(value: torch.Tensor, bad: torch.Tensor) -> torch.Tensor:
    """Per-element losses, NaN where the input is invalid: the reduced loss is then not finite
    and the eager checks run and say what is wrong (their full message, after the kernel).

    Why not a separate ``any()``: a reduction over the elements in the loop that reads the
    logits keeps the compiler from writing the gradient in that loop (it stored the per-class
    exponentials in full-size buffers for a second loop instead: seg-4 focal 9.5 -> 5 ms)."""
    return torch.where(bad, float("nan"), value)


def gap_body(
    logits: torch.Tensor,
    target: torch.Tensor,
    factors: torch.Tensor | None,
    upstream: torch.Tensor | None,
    gamma: torch.Tensor,
    class_weight: torch.Tensor | None,
    offsets: list[torch.Tensor | None],
    shifts: list[torch.Tensor | None],
    *,
    spec: GapSpec,
    law: Law,
    ignore_index: int,
    normalisers: tuple[str, ...],
    label_smoothing: float,
    compiled: bool,
) -> BodyOutput:
    """A target-gap loss on ``(n, C, S)`` logits and raw ``(n, 1, S)`` targets: masking, class
    weights, the gaps, the law and the closed-form gradient (``F.cross_entropy``'s convention:
    a mean divides by ``Σ w_i`` over the labelled elements).

    ``normalisers``: ``("sum",)`` or ``("weight",)`` for the whole loss, or one per head
    (``"sum"``, ``"weight"``, ``"count"``), handed to the law as ``term_scales`` (LMF as the
    authors wrote it); ``factors``: their values (``_counts.Normalisers``), computed
    from the labels before the loop, so that the gradient is written in the loop that reads
    the logits. Per-element quantities are ``(n, 1, S)``, like one class of ``z``.

    ``label_smoothing``: ``ε > 0`` hands the law each head's smoothed cross-entropy as
    ``(κ, E)`` (:func:`smoothing_terms`; the class weights are then inside them) and adds the
    gradient of ``E`` through the law's extra slopes."""
    dtype = spec.dtype
    z = split_classes(logits.to(dtype), spec.unrolled and compiled)
    safe, weight, bad = labelled(z, target, class_weight, ignore_index, dtype, logits.shape[1])
    scale = factors[0] if normalisers == ("weight",) and factors is not None else None
    if len(normalisers) > 1 and factors is not None:
        law = functools.partial(law, term_scales=[factors[k] for k in range(len(normalisers))])
    # A lower bound on the factor the slopes meet downstream: 1/(count · max(1, max w)) is below
    # every normaliser (see _math.cutoff; a chunk's count makes it looser, never wrong).
    log_upstream: torch.Tensor | float = -math.log(max(target.numel(), 1))
    if class_weight is not None:
        log_upstream = log_upstream - class_weight.amax().clamp_min(1.0).log()
    is_target = is_class(safe, z)
    anchor = in_logit_loop(first_class(z)) if compiled else None
    gaps, z_target, exps = _gap_parts(z, safe, is_target, offsets, shifts, spec, anchor)
    log_scales = [log_upstream + math.log(head_scale) for head_scale in spec.scales]
    smoothed = label_smoothing > 0
    if smoothed:
        valid = (target != ignore_index).to(dtype)
        terms, class_weights, total_weight = smoothing_terms(
            z, z_target, safe, weight, valid, class_weight, offsets, shifts, spec, label_smoothing
        )
        law = functools.partial(law, smoothing=terms)
    value, slopes, d_gamma = law(
        gaps, gamma if spec.gamma is None else spec.gamma, log_scales=log_scales, anchor=anchor
    )
    # Smoothed, the law's value and slopes carry the class weights already; the mask keeps an
    # ignored element's slopes at 0 (not 0 · 1/Σw, which overflows in an all-ignored batch).
    element_weight = valid if smoothed else weight
    multiplier = element_weight
    if scale is not None:
        multiplier = multiplier * scale
    if upstream is not None:
        multiplier = multiplier * upstream.to(dtype)
    heads = len(spec.scales)
    coefficients = [anchored(slope * multiplier, anchor) for slope in slopes[:heads]]
    linear = None
    if smoothed:
        # ∂E_k/∂z = (ε/C)·[labelled]·a_k ∂D/∂z: one coefficient for all heads.
        share = (label_smoothing / logits.shape[1]) * valid
        extra = functools.reduce(
            torch.add, [slopes[heads + k] * spec.scales[k] for k in range(heads)]
        )
        linear = _Linear(anchored(extra * multiplier * share, anchor), class_weights, total_weight)
    gradient = _gap_gradient(is_target, exps, coefficients, spec, anchor, linear)
    grad = assemble(gradient).to(logits.dtype)
    if not spec.wants_gamma:
        d_gamma = None
    elif d_gamma is None:
        d_gamma = torch.zeros_like(value)
    else:
        d_gamma = anchored(d_gamma * multiplier, anchor)
    values = anchored(flagged(value * element_weight, bad), anchor)
    return BodyOutput(values, grad, d_gamma, scale, None)


def gap_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    ignore_index: int,
    heads: tuple[GapHead, ...],
    law: Law,
    dtype: torch.dtype,
    reduction: Reduction,
    gamma: torch.Tensor | float = 0.0,
    checks: Callable[[], None] | None = None,
    normalisers: tuple[str, ...] | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """A target-gap loss from logits ``(N, C, *)`` and raw targets ``(N, *)``, weighted by
    ``weight[t_i]``, ``ignore_index`` left out, reduced like ``F.cross_entropy`` (a mean by
    ``Σ w_i``; ``normalisers`` to give each head its own, see :func:`gap_body`), with
    ``F.cross_entropy``'s ``label_smoothing`` in each head's cross-entropy.
    ``checks``: the value checks still to run (see ``_common.prepare``)."""
    if reduction == "none":
        normalisers = ("sum",)
    elif normalisers is None or reduction == "sum":
        normalisers = ("weight",) if reduction == "mean" else ("sum",)
    classes = input.shape[1]
    spec = GapSpec(
        tuple(float(head.scale) for head in heads),
        tuple(head.offset is not None for head in heads),
        tuple(head.shift is not None for head in heads),
        dtype,
        exp_floor(dtype),
        None if isinstance(gamma, torch.Tensor) else float(gamma),
        isinstance(gamma, torch.Tensor) and gamma.requires_grad,
        unrolls(classes),
    )
    device = input.device
    class_weight = None if weight is None else weight.to(device=device, dtype=dtype)
    offsets = [_cast(head.offset, dtype, device) for head in heads]
    shifts = [_cast(head.shift, dtype, device) for head in heads]
    settings: dict[str, Any] = {
        "spec": spec,
        "law": law,
        "ignore_index": int(ignore_index),
        "normalisers": normalisers,
        "label_smoothing": float(label_smoothing),
    }
    # The unrolled kernel is built per class count.
    options = tuple(ONE_LOOP.items()) if spec.unrolled else ()
    body = Body(
        gap_body, tuple(settings.items()), options, classes if spec.unrolled else None,
        Normalisers(normalisers, classes, int(ignore_index), dtype),
    )  # fmt: skip
    return run_body(
        body,
        input,
        target.unsqueeze(1),
        (class_weight, None),
        gamma,
        (class_weight, offsets, shifts),
        reduction,
        checks,
        dtype,
        tuple(target.shape),
    )


def _cast(
    value: torch.Tensor | None, dtype: torch.dtype, device: torch.device
) -> torch.Tensor | None:
    return None if value is None else value.to(device=device, dtype=dtype)
