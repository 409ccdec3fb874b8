"""Compiled whole-tensor kernels for the target-gap losses (``_fused._GapLoss``).

The chunked eager kernels in ``_fused`` pay one dispatch per operation per chunk; on large inputs
with few classes (segmentation with 2-5 classes, the common medical case) that overhead, not the
arithmetic, sets their cost. Here the same forward (per-element loss, ``logsumexp_{j≠t} y`` and
``∂ℓ/∂u`` of every head) and the same closed-form backward are written as plain tensor code over
the whole input and handed to ``torch.compile``, which fuses each into one or two loops
(vectorised C++ with OpenMP on CPU, Triton on CUDA) without full-size temporaries.

When it is used is set by :func:`set_compile_mode` or the ``TORCH_IMBALANCE_COMPILE`` environment
variable: ``"auto"`` (default: inputs of at least :data:`MIN_COMPILED_ELEMENTS` logits on CPU or
CUDA), ``"always"`` or ``"never"``. Compiling takes a few seconds per loss configuration and
input shape; if it fails (no C++ compiler, unsupported platform) a warning is given once and the
eager kernels are used from then on. Both paths compute the same function, to rounding.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import types
import warnings
import weakref
from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Literal

import torch

from torch_imbalance.functional._classwise import (
    MASKED_SUM_CLASSES,
    UNROLL_CLASSES,
    ClassValues,
    assemble,
    class_max,
    class_offsets,
    class_prod,
    class_sum,
    first_class,
    first_max,
    is_class,
    per_class,
    pick,
    split_classes,
    unrolls,
)
from torch_imbalance.functional._heads import (
    Anchor,
    anchored,
    log1p_of_small,
    logaddexp_floored,
    sigmoid_parts,
)

# The kernel bodies below are marked "no cover (compiled)": they run only through torch.compile,
# whose tracer executes them symbolically, out of coverage's sight; tests/functional/
# test_compiled.py checks that they ran (kernel_runs) and what they computed.
CompileMode = Literal["auto", "always", "never"]

#: Smallest input (in logits) that ``"auto"`` compiles. Measured on 2 CPU threads, the compiled
#: kernels beat the eager chunks at every size (focal 0.53 -> 0.24 ms at (32, 10), 1.90 -> 0.58
#: ms at (8, 3, 64, 64)); below 64 Ki logits (classification batches) the few-second compile per
#: configuration and shape is not worth it for a short run, above it (any segmentation batch) it
#: is.
MIN_COMPILED_ELEMENTS = 1 << 16

_MODES = ("auto", "always", "never")
_state: dict[str, Any] = {"mode": os.environ.get("TORCH_IMBALANCE_COMPILE", "auto"), "broken": None}
_kernels: dict[Hashable, tuple[Callable[..., Any], Callable[..., Any]]] = {}
_copy_numbers = itertools.count()
#: How many forward / backward passes ran on each path (see :func:`kernel_runs`).
_runs: Counter[str] = Counter()


def set_compile_mode(mode: CompileMode) -> None:
    """Choose when the target-gap losses (focal, LDAM, LMF, CE family, priors, Poly-1) run on
    compiled kernels.

    Args:
        mode: ``"auto"`` (inputs of at least ``MIN_COMPILED_ELEMENTS`` logits on CPU or CUDA),
            ``"always"`` or ``"never"``.

    Example:
        >>> import torch_imbalance as ti
        >>> ti.set_compile_mode("never")
        >>> ti.get_compile_mode()
        'never'
        >>> ti.set_compile_mode("auto")
    """
    if mode not in _MODES:
        raise ValueError(f"compile mode must be one of {_MODES}, got {mode!r}")
    _state["mode"] = mode
    _state["broken"] = None


def get_compile_mode() -> CompileMode:
    """The current compile mode (see :func:`set_compile_mode`)."""
    mode = _state["mode"]
    if mode not in _MODES:
        raise ValueError(f"TORCH_IMBALANCE_COMPILE must be one of {_MODES}, got {mode!r}")
    return mode


def wants_compiled(logits: torch.Tensor) -> bool:
    """Whether this input goes to the compiled kernels."""
    mode = get_compile_mode()
    if mode == "never" or _state["broken"] is not None or torch.compiler.is_compiling():
        return False
    if mode == "always":
        return True
    return logits.numel() >= MIN_COMPILED_ELEMENTS and logits.device.type in ("cpu", "cuda")


def record_run(path: str) -> None:
    """Count one pass on ``path`` (``"compiled-forward"``, ``"eager-backward"``, ...)."""
    _runs[path] += 1


def kernel_runs(reset: bool = False) -> dict[str, int]:
    """Passes per path since the last reset, and ``"kernels-built"``: how many compiled
    configurations exist (so a test can tell which path ran, not only that results agree)."""
    counts = {**_runs, "kernels-built": len(_kernels)}
    if reset:
        _runs.clear()
    return counts


def compile_broken() -> bool:
    """Whether an earlier compile failed (the eager kernels are then used)."""
    return _state["broken"] is not None


def mark_broken(error: BaseException) -> None:
    """After a failed compile: re-raise in ``"always"`` mode; otherwise stop compiling and say
    so once (the eager kernels serve from then on)."""
    if get_compile_mode() == "always":
        raise error
    _state["broken"] = error
    warnings.warn(
        f"torch_imbalance: compiling the fused loss kernels failed ({type(error).__name__}: "
        f"{str(error).splitlines()[0] if str(error) else ''}); using the eager kernels from now "
        "on. Set TORCH_IMBALANCE_COMPILE=never to skip the attempt.",
        UserWarning,
        stacklevel=3,
    )


def _head_key(head_loss: Callable[..., Any]) -> Hashable:
    if isinstance(head_loss, functools.partial):
        return (head_loss.func, head_loss.args, tuple(sorted(head_loss.keywords.items())))
    return head_loss


def gap_kernels(
    head_loss: Callable[..., Any],
    scales: tuple[float, ...],
    has_offset: tuple[bool, ...],
    has_shift: tuple[bool, ...],
    dtype: torch.dtype,
    floor: float,
    gamma: float | None,
    wants_gamma: bool,
    classes: int,
) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """Compiled ``(forward, backward)`` for one loss configuration (cached).

    A float ``gamma`` is compiled in as a constant (``None``: γ is a tensor argument);
    ``wants_gamma`` adds the ``∂ℓ/∂γ`` output. ``classes``: the number of classes (an
    unrolled kernel is built per count, see ``_classwise``).
    """
    unrolled = unrolls(classes)
    spec = GapSpec(scales, has_offset, has_shift, dtype, floor, gamma, wants_gamma, unrolled)
    key = (_head_key(head_loss), spec, classes if unrolled else None)
    if key not in _kernels:
        forward = _PerSignature(_gap_forward, None, False, {"spec": spec, "head_loss": head_loss})
        backward = _PerSignature(_gap_backward, None, False, {"spec": spec})
        _kernels[key] = (forward, backward)
    return _kernels[key]


def one_pass_kernel(
    head_loss: Callable[..., Any],
    scales: tuple[float, ...],
    has_offset: tuple[bool, ...],
    has_shift: tuple[bool, ...],
    dtype: torch.dtype,
    floor: float,
    gamma: float | None,
    wants_gamma: bool,
    ignore_index: int,
    normalisers: tuple[str, ...],
    classes: int,
) -> Callable[..., Any]:
    """Compiled ``(logits, raw target, label counts, class weight, offsets, shifts, γ) ->
    (reduced loss, gradient, ∂/∂γ, invalid-input flag)`` for one configuration (cached): the
    ignore mask, the class weights, the mean's denominator, the value checks, the forward and
    the closed-form gradient of :func:`_gap_forward` / :func:`_gap_backward`, fused so that each
    logit is read once and its gradient written once. The normalisers' factors
    (:func:`normaliser_scales`, None for a sum) are computed before, from the labels alone, so
    that the gradient is written in the loop that reads the logits (with ``Σ w`` taken in the
    same loop, the compiler kept per-element values in full-size buffers until it was known).

    ``normalisers``: ``("sum",)`` or ``("weight",)`` (a mean over ``Σ w_i``) for the whole
    loss, or one per head (``"sum"``, ``"weight"`` or ``"count"``: the number of labelled
    elements), handed to ``head_loss`` as ``term_scales`` (LMF as the authors wrote it).
    ``classes``: see :func:`gap_kernels`."""
    unrolled = unrolls(classes)
    spec = GapSpec(scales, has_offset, has_shift, dtype, floor, gamma, wants_gamma, unrolled)
    key = ("one-pass", _head_key(head_loss), spec, ignore_index, normalisers)
    key = (*key, classes if unrolled else None)
    return _cached_kernel(
        key,
        _gap_forward_with_gradient,
        _ONE_LOOP if unrolled else None,
        spec=spec,
        head_loss=head_loss,
        ignore_index=ignore_index,
        normalisers=normalisers,
    )


def _specialise(function: Callable[..., Any], number: int, **keywords: Any) -> Callable[..., Any]:
    """A copy of ``function`` with its own code object and the keyword-only arguments bound.

    Why: torch.compile keeps its cache (and its recompile limit) per code object; a copy per
    configuration keeps the configurations from evicting each other.
    """
    code = function.__code__.replace(co_name=f"{function.__name__}_{number}")
    copy = types.FunctionType(code, function.__globals__, code.co_name)
    copy.__kwdefaults__ = {**(function.__kwdefaults__ or {}), **keywords}
    return copy


def _known_options(options: dict[str, Any] | None) -> dict[str, Any] | None:
    """``options`` without those this version of inductor does not have: they are tuning
    hints (torch.compile refuses an unknown one, and ``realize_opusers_threshold`` is newer
    than torch 2.11)."""
    if not options:
        return options
    from torch._inductor import config

    known = config.get_config_copy()
    return {name: value for name, value in options.items() if name in known}


def _cached_kernel(
    key: Hashable,
    function: Callable[..., Any],
    options: dict[str, Any] | None = None,
    **keywords: Any,
) -> Callable[..., Any]:
    """The compiled copy of ``function`` with ``keywords`` bound, built once per ``key``."""
    if key not in _kernels:
        # fullgraph: a graph break would split the one loop into several (and slowly).
        kernel = _PerSignature(function, options, True, keywords)
        _kernels[key] = (kernel, function)
    return _kernels[key][0]


def _signature(values: tuple[Any, ...] | list[Any], devices: set[str]) -> Hashable:
    """What of the kernel arguments torch.compile guards on beyond sizes: rank, dtype, device,
    ``requires_grad`` of a tensor and the rank of the tensor it views (the kernels take
    ``(N, C, L)`` views of 2-D to 5-D inputs, and dynamo guards on the base too), the type of
    anything else (nested in tuples). Adds the tensors' device types to ``devices``. (Called
    on every loss call: a plain loop, a few µs.)"""
    described: list[Hashable] = []
    for value in values:
        if isinstance(value, torch.Tensor):
            base = value._base
            device = value.device.type
            devices.add(device)
            described.append(
                (
                    value.dim(),
                    value.dtype,
                    device,
                    value.requires_grad,
                    None if base is None else base.dim(),
                )
            )
        elif isinstance(value, (tuple, list)):
            described.append(_signature(value, devices))
        else:
            described.append(type(value))
    return tuple(described)


class _PerSignature:
    """``torch.compile`` of ``function`` (keywords bound), one compiled copy per call
    signature (:func:`_signature` of the arguments, grad mode, autocast state).

    Why: dynamo allows 8 compiled versions of one code object and past that runs the function
    uncompiled, silently and several times slower. One kernel sees weighted and unweighted
    calls, 2-D to 5-D inputs, training under autocast and evaluation without: a benchmark over
    four shapes with and without autocast hit the limit on CUDA. With a copy per signature,
    each copy sees only new sizes (one recompile to dynamic sizes).
    """

    def __init__(
        self,
        function: Callable[..., Any],
        options: dict[str, Any] | None,
        fullgraph: bool,
        keywords: dict[str, Any],
    ) -> None:
        self.function = function
        self.options = options
        self.fullgraph = fullgraph
        self.keywords = keywords
        self.copies: dict[Hashable, Callable[..., Any]] = {}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        devices: set[str] = set()
        signature = (
            _signature(args, devices),
            tuple((name, _signature((kwargs[name],), devices)) for name in sorted(kwargs)),
            torch.is_grad_enabled(),
            tuple(sorted((d, torch.is_autocast_enabled(d)) for d in devices)),
        )
        compiled = self.copies.get(signature)
        if compiled is None:
            kernel = _specialise(self.function, next(_copy_numbers), **self.keywords)
            options = _known_options(self.options)
            compiled = torch.compile(kernel, fullgraph=self.fullgraph, options=options)
            self.copies[signature] = compiled
        return compiled(*args, **kwargs)


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
    #: The class axis unrolled (see ``_classwise``); the kernels are then built per class count.
    unrolled: bool = False


def _head_logits(  # pragma: no cover (compiled)
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


def _integer_power(x: torch.Tensor, exponent: int) -> torch.Tensor:  # pragma: no cover (compiled)
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


def _head_exps(  # pragma: no cover (compiled)
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
            y = _head_logits(z, k, spec, offsets).masked_fill(is_target, float("-inf"))
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


def _gap_parts(  # pragma: no cover (compiled)
    z: ClassValues,
    target: torch.Tensor,
    is_target: ClassValues,
    offsets: list[torch.Tensor | None],
    shifts: list[torch.Tensor | None],
    spec: GapSpec,
    anchor: Anchor = None,
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[_HeadExps]]:
    """Per head ``k``: the gap ``u_k = lse_{j≠t} y_k − y_{k,t}``, ``lse_{j≠t} y_k`` (both
    ``(N, 1, S)``, as ``target``) and the exponentials behind them."""
    z_target = pick(z, is_target, target)
    exps = _head_exps(z, is_target, spec, offsets, anchor)
    gaps: list[torch.Tensor] = []
    lses: list[torch.Tensor] = []
    for k, head in enumerate(exps):
        lse = anchored(head.total.log() + head.top, anchor)
        y_target = z_target * spec.scales[k]
        offset, shift = offsets[k], shifts[k]
        if offset is not None:
            y_target = y_target + _per_target(offset, target)
        if shift is not None:
            y_target = y_target - _per_target(shift, target)
        gaps.append(anchored(lse - y_target, anchor))
        lses.append(lse)
    return gaps, lses, exps


def gap_values(  # pragma: no cover (compiled)
    z: torch.Tensor,
    target: torch.Tensor,
    offsets: list[torch.Tensor | None],
    shifts: list[torch.Tensor | None],
    *,
    spec: GapSpec,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per head ``k``, the gap ``u_k = lse_{j≠t} y_k − y_{k,t}`` and ``lse_{j≠t} y_k``
    (``(N, S)`` each) of ``(N, C, S)`` logits in the compute dtype: the one whole-tensor
    definition, which the compiled kernels and, under a caller's ``torch.compile``, the traced
    losses (differentiated by autograd there) both use; the eager chunks compute the same in
    place (``_fused._chunk_gaps``)."""
    x = split_classes(z, spec.unrolled)
    index = target.unsqueeze(1)
    gaps, lses, _ = _gap_parts(x, index, is_class(index, x), offsets, shifts, spec)
    return [gap.squeeze(1) for gap in gaps], [lse.squeeze(1) for lse in lses]


def _head_slopes(  # pragma: no cover (compiled)
    gaps: list[torch.Tensor],
    gamma: torch.Tensor,
    element_weight: torch.Tensor,
    spec: GapSpec,
    head_loss: Callable[..., Any],
    log_upstream: torch.Tensor | float | None,
    anchor: Anchor = None,
) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor | None]:
    """From ``(N, S)`` gaps: ``w·ℓ``, ``w·∂ℓ/∂u_k`` per head and (when asked for)
    ``w·∂ℓ/∂γ``. ``log_upstream``: a lower bound on the log of the factor the slopes will be
    multiplied by (then the heads keep them out of the subnormal range, see
    ``_heads._cutoff``)."""
    extra = {}
    if log_upstream is not None:
        extra["log_scales"] = [log_upstream + math.log(scale) for scale in spec.scales]
    if anchor is not None:
        extra["anchor"] = anchor
    value, derivatives, d_gamma = head_loss(
        gaps, gamma if spec.gamma is None else spec.gamma, **extra
    )
    weight = element_weight.to(spec.dtype)
    slopes = [anchored(d * weight, anchor) for d in derivatives]
    if not spec.wants_gamma:
        d_gamma = None
    elif d_gamma is None:
        d_gamma = torch.zeros_like(value)
    else:
        d_gamma = anchored(d_gamma * weight, anchor)
    return anchored(value * weight, anchor), slopes, d_gamma


def _gap_forward(  # pragma: no cover (compiled)
    logits: torch.Tensor,
    target: torch.Tensor,
    element_weight: torch.Tensor,
    offsets: list[torch.Tensor | None],
    shifts: list[torch.Tensor | None],
    gamma: torch.Tensor,
    *,
    spec: GapSpec,
    head_loss: Callable[..., Any],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(N, C, S)`` logits -> loss, ``lse_{j≠t}`` per head, ``w·∂ℓ/∂u`` per head and, when
    asked for, ``w·∂ℓ/∂γ`` (the two-pass kernels' forward)."""
    gaps, lses = gap_values(logits.to(spec.dtype), target, offsets, shifts, spec=spec)
    value, slopes, d_gamma = _head_slopes(gaps, gamma, element_weight, spec, head_loss, None)
    return value, torch.stack(lses), torch.stack(slopes), d_gamma


def _gap_gradient(  # pragma: no cover (compiled)
    is_target: ClassValues,
    exps: list[_HeadExps],
    coefficients: list[torch.Tensor],
    spec: GapSpec,
    anchor: Anchor = None,
) -> ClassValues:
    """``Σ_k c_k ∂u_k/∂z`` for per-element ``c_k`` ``(N, 1, S)`` (the upstream gradient times
    ``w·ℓ'_k``), with ``∂u_k/∂z_j = a_k e_kj / total_k`` for ``j ≠ t`` and ``−a_k`` at ``t``:
    no ``exp`` of its own (the forward's ``e`` are reused).

    No product is subnormal (a mean over 10⁶ pixels scales every term by 10⁻⁶, and a
    subnormal result takes a ~100× slower microcode path on x86: LDAM's ``s = 30`` once made
    seg-4 3× slower): a term below ``exp(floor)`` is 0, chosen per logit by comparing ``e``
    with a per-element threshold before multiplying."""
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
    return per_class(lambda t, other: torch.where(t, at_target, other), is_target, total)


def _gap_backward(  # pragma: no cover (compiled)
    logits: torch.Tensor,
    target: torch.Tensor,
    slopes: torch.Tensor,
    upstream: torch.Tensor,
    offsets: list[torch.Tensor | None],
    *,
    spec: GapSpec,
) -> torch.Tensor:
    """``Σ_k (w·ℓ'_k·g) ∂u_k/∂z`` as ``(N, C, S)`` in the logits' dtype (the two-pass
    kernels' backward: the exponentials are recomputed, see :func:`_gap_gradient`)."""
    z = split_classes(logits.to(spec.dtype), spec.unrolled)
    is_target = is_class(target.unsqueeze(1), z)
    exps = _head_exps(z, is_target, spec, offsets)
    coefficients = [(slopes[k] * upstream).unsqueeze(1) for k in range(len(spec.scales))]
    return assemble(_gap_gradient(is_target, exps, coefficients, spec)).to(logits.dtype)


def _gap_forward_with_gradient(  # pragma: no cover (compiled)
    logits: torch.Tensor,
    target: torch.Tensor,
    normaliser_factors: torch.Tensor | None,
    class_weight: torch.Tensor | None,
    offsets: list[torch.Tensor | None],
    shifts: list[torch.Tensor | None],
    gamma: torch.Tensor,
    *,
    spec: GapSpec,
    head_loss: Callable[..., Any],
    ignore_index: int,
    normalisers: tuple[str, ...],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor, None]:
    """The reduced loss (``F.cross_entropy``'s convention: a mean divides by ``Σ w_i`` over
    the labelled elements), its gradient with respect to the logits and (when asked for) to γ,
    from the raw targets: the same functions as the two-pass kernels, which the compiler fuses
    with the masking and weighting into one loop over the logits (unrolled classes)."""
    per_term = len(normalisers) > 1
    mean = normalisers == ("weight",)
    z = split_classes(logits.to(spec.dtype), spec.unrolled)
    # Every per-element quantity as (N, 1, S), like one class of z (see _classwise).
    safe, weight, bad = _labelled(
        z, target.unsqueeze(1), class_weight, ignore_index, spec.dtype, logits.shape[1]
    )
    scale = torch.ones((), dtype=spec.dtype, device=logits.device)
    if mean:
        assert normaliser_factors is not None
        scale = normaliser_factors[0]
    if per_term:
        assert normaliser_factors is not None
        term_scales = [normaliser_factors[k] for k in range(len(normalisers))]
        head_loss = functools.partial(head_loss, term_scales=term_scales)
    # A bound known before the loop (1/Σw is not): 1/(count · max(1, max w)) is below every
    # normaliser (mean, per-term weight or count, sum).
    log_upstream: torch.Tensor | float = -math.log(max(target.numel(), 1))
    if class_weight is not None:
        log_upstream = log_upstream - class_weight.amax().clamp_min(1.0).log()
    is_target = is_class(safe, z)
    anchor = functools.partial(_in_logit_loop, logit=first_class(z))
    gaps, _, exps = _gap_parts(z, safe, is_target, offsets, shifts, spec, anchor)
    value, slopes, d_gamma = _head_slopes(
        gaps, gamma, weight, spec, head_loss, log_upstream, anchor
    )
    coefficients = [slope * scale for slope in slopes]
    grad = assemble(_gap_gradient(is_target, exps, coefficients, spec, anchor)).to(logits.dtype)
    d_gamma = None if d_gamma is None else d_gamma.sum() * scale
    loss = anchor(_flagged(value, bad)).sum() * scale
    return loss, grad, d_gamma, ~torch.isfinite(loss), None  # no gradient factor


def _labelled(  # pragma: no cover (compiled)
    z: ClassValues,
    target: torch.Tensor,
    class_weight: torch.Tensor | None,
    ignore_index: int,
    dtype: torch.dtype,
    classes: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """From the raw ``(N, 1, S)`` targets: the targets with ignored (and out-of-range) entries set
    to 0, each element's weight (0 where ignored) and whether the element is invalid: a logit
    NaN/inf or a label outside ``[0, C)`` (see :func:`_flagged`). ``z``: the logits as class
    values in the compute dtype."""
    valid = target != ignore_index
    in_range = (target >= 0) & (target < classes)
    safe = torch.where(valid & in_range, target, 0)
    if class_weight is None:
        weight = valid.to(dtype)
    else:
        weight = torch.where(valid, _per_target(class_weight, safe), 0.0)
    # A per-element sum over the classes is not finite when a logit is not (or, rarely, when
    # huge logits overflow it: then the eager checks find nothing and let the loss run); it is
    # fused with the loop over the classes, unlike a separate pass over all logits.
    bad = (valid & ~in_range) | ~torch.isfinite(class_sum(z))
    return safe, weight, bad


def _per_target(  # pragma: no cover (compiled)
    per_class: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
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


def _flagged(value: torch.Tensor, bad: torch.Tensor) -> torch.Tensor:  # pragma: no cover (compiled)
    """Per-element losses, NaN where the input is invalid: the reduced loss is then not finite
    and the eager checks run and say what is wrong (their full message, after the kernel).

    Why not a separate ``any()``: a reduction over the elements in the loop that reads the
    logits keeps the compiler from writing the gradient in that loop (it stored the per-class
    exponentials in full-size buffers for a second loop instead: seg-4 focal 9.5 -> 5 ms)."""
    return torch.where(bad, float("nan"), value)


# ----------------------------------------------------------------------------- Dual Focal
def dual_focal_kernel(
    alpha: float,
    beta: float,
    rho: float,
    gamma: float | None,
    wants_gamma: bool,
    dtype: torch.dtype,
    ignore_index: int,
    mean: bool,
    classes: int,
    elements: int,
) -> Callable[..., Any]:
    """Compiled ``(logits, raw target, normaliser factor, class weight, γ) -> (reduced loss,
    gradient, ∂/∂γ, invalid-input flag)`` of the multi-class Dual Focal loss for one
    configuration (cached); the formulas are those of ``_dual_focal_fused`` (its docstring
    derives them), written over class values (see ``_classwise``). ``elements``: how many
    logits, which picks the form: unrolled into one loop (:data:`_ONE_LOOP`) for large inputs
    with at most :data:`DUAL_FOCAL_UNROLL_CLASSES` classes (:data:`DUAL_FOCAL_UNROLL_ELEMENTS`),
    whole otherwise (with the recompute-over-store options from :data:`RECOMPUTE_ELEMENTS`
    on). The normaliser factor: :func:`normaliser_scales` (None for a sum)."""
    unrolled = classes <= DUAL_FOCAL_UNROLL_CLASSES and elements >= DUAL_FOCAL_UNROLL_ELEMENTS
    recompute = not unrolled and elements >= RECOMPUTE_ELEMENTS
    key = ("dual-focal", alpha, beta, rho, gamma, wants_gamma, dtype, ignore_index, mean)
    key = (*key, recompute, classes if unrolled else None)
    return _cached_kernel(
        key,
        _dual_focal_forward_with_gradient,
        _ONE_LOOP if unrolled else _RECOMPUTE if recompute else None,
        alpha=alpha,
        beta=beta,
        rho=rho,
        fixed_gamma=gamma,
        wants_gamma=wants_gamma,
        dtype=dtype,
        ignore_index=ignore_index,
        mean=mean,
        unrolled=unrolled,
    )


def _in_logit_loop(value: torch.Tensor, logit: torch.Tensor) -> torch.Tensor:  # pragma: no cover
    """``value`` with a (null) read of a logit, so that inductor iterates it like the logits
    (an ``(N, S)`` nest) and fuses it into their loop.

    Why: inductor realises some per-element nodes into buffers (on CPU every ``exp`` or ``log``
    with more than one user, and nodes of more than 100 operations or with many reads); a node
    that then reads only such contiguous ``(N, 1, S)`` buffers gets a flat ``N·S`` loop, and
    flat nodes fused with each other first cannot join the ``(N, S)`` nest over the strided
    logits (inductor re-indexes only a single node). The general-γ Dual Focal kernel ran in
    three loops with ten per-pixel buffers (seg-4 12.2 ms), one loop with none with this read
    (9.5 ms); seg-4 LMF on the cosine head four loops and ten buffers, then one and none. A
    non-finite logit makes the sum NaN, as it does the loss (the input is invalid).
    """
    return value + 0.0 * logit


def _plus(total: ClassValues | None, term: ClassValues) -> ClassValues:  # pragma: no cover
    return term if total is None else total.add(term)


def _dual_focal_forward_with_gradient(  # pragma: no cover (compiled)
    logits: torch.Tensor,
    target: torch.Tensor,
    normaliser_factors: torch.Tensor | None,
    class_weight: torch.Tensor | None,
    gamma: torch.Tensor,
    *,
    alpha: float,
    beta: float,
    rho: float,
    fixed_gamma: float | None,
    wants_gamma: bool,
    dtype: torch.dtype,
    ignore_index: int,
    mean: bool,
    unrolled: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor, None]:
    """Per element, ``t`` the target and ``j*`` the arg-max of the other classes (the only one
    whose probability can exceed 1/2); every quantity in log space as in the eager kernel.
    Per-element quantities are ``(N, 1, S)``, per-class ones class values."""
    floor = -87.0 if dtype == torch.float32 else -708.0
    z = split_classes(logits.to(dtype), unrolled)
    classes = logits.shape[1]
    index = target.unsqueeze(1)
    safe, weight, bad = _labelled(z, index, class_weight, ignore_index, dtype, classes)
    scale = torch.ones((), dtype=dtype, device=logits.device)
    if mean:
        assert normaliser_factors is not None
        scale = normaliser_factors[0]
    g = weight * scale
    is_t = is_class(safe, z)
    z_t = pick(z, is_t, safe)
    anchor = functools.partial(_in_logit_loop, logit=first_class(z))
    top, is_star = first_max(z.masked_fill(is_t, float("-inf")))
    outside = per_class(lambda t, s: ~(t | s), is_t, is_star)  # the classes c ∉ {t, j*}
    # One exp per logit, centred on the largest of the classes ∉ {t, j*} (exact for the terms
    # that matter however far apart the logits are); with 2 classes there are none.
    rest_top = class_max(per_class(lambda o, c: torch.where(o, c, float("-inf")), outside, z))
    has_rest = torch.isfinite(rest_top)
    rest_top = torch.where(has_rest, rest_top, top)
    e = per_class(
        lambda o, c: torch.where(o, (c - rest_top).clamp_min(floor).exp(), 0.0), outside, z
    )
    rest_sum = class_sum(e)  # >= 1 with a rest, 0 without
    # Per element, every log-space quantity from few exponentials (the per-element functions,
    # not the per-class ones, were most of this kernel's cost at 4 classes): the gap's
    # e^{−|u|} and its log1p serve softplus(u), log σ(±u) and σ(±u); lse = z_t + softplus(u).
    lse_others = anchor(top + log1p_of_small(rest_sum * (rest_top - top).clamp_min(floor).exp()))
    gap = lse_others - z_t  # u: CE = softplus(u), 1 − p_t = σ(u)
    softplus_gap, log_sig, sig, p_t = sigmoid_parts(gap, anchor)  # log σ(u), σ(u), σ(−u)
    log_p_t = -softplus_gap  # log σ(−u)
    lse = z_t + softplus_gap
    # log(1 − p*) = logaddexp(z_t, log Σ_rest e^{z_c}) − lse, exact however close p* is to 1.
    rest_lse = anchor(torch.where(has_rest, rest_top + rest_sum.log(), z_t + floor))
    log1m_p_star = anchor(logaddexp_floored(z_t, rest_lse) - lse)
    log_p_star = top - lse
    p_star = anchor(log_p_star.exp())
    p = per_class(anchor, e.mul(anchor((rest_top - lse).exp())))  # p_c = e_c e^{rest_top − lse}
    # w_c = p_c / (1 − p*) = e_c / (e^{z_t − rest_top} + Σ e): a per-element reciprocal.
    tiny = torch.finfo(dtype).tiny
    w = e.mul(1.0 / (anchor((z_t - rest_top).exp()) + rest_sum).clamp_min(tiny))
    value = softplus_gap
    ratio_sum = torch.zeros_like(gap)
    log_rho_star = log1m_p_star
    if beta != 0:
        # Σ_c log(1 − p_c/ρ) over c ∉ {t, j*} as the log of a product: one log per element,
        # not one per class. The product is at least 1/4 (every such p_c ≤ 1/2 and Σ p_c ≤ 1),
        # so its log is well-conditioned; rounding 1 − p_c costs C·ε/2 absolute at most.
        if rho == 1.0:
            log_false = anchor(class_prod(per_class(lambda q: 1.0 - q, p)).log()) + log1m_p_star
        else:
            log_rho_star = anchor(logaddexp_floored(log1m_p_star, math.log(rho - 1)))  # log(ρ − p*)
            logs = anchor(class_prod(per_class(lambda q: 1.0 - q / rho, p)).log())
            log_false = (logs + (classes - 2) * math.log(rho)) + log_rho_star
        value = value - beta * log_false
        ratio_sum = anchor(class_sum(per_class(lambda q: q / (rho - q), p)))
    use_alpha = alpha != 0 and fixed_gamma != 0.0
    g_gamma = gamma if fixed_gamma is None else fixed_gamma
    power = power_sum = power_star = sig_gamma = None
    # σ(u)^{γ−1}, capped below overflow (large only for γ < 1 and σ(u) → 0): it gives σ(u)^γ and
    # the focal terms of the gradient without an exp of their own; the cap changes only terms
    # below exp(−cap·γ/(1−γ)) (each is at most σ(u)^γ, and at most σ(u)·e^{cap} where capped).
    focal_power = None  # 1 for γ = 1
    if fixed_gamma == 2.0:
        focal_power = sig
    elif fixed_gamma != 1.0 and use_alpha:
        focal_power = anchor(((g_gamma - 1) * log_sig).clamp_max(-floor - 7.0).exp())
    if alpha != 0 and fixed_gamma == 0.0:
        value = value + alpha * classes
    elif alpha != 0:
        if fixed_gamma == 1.0:  # the paper's default: powers are the probabilities themselves
            power, power_star, sig_gamma = p, p_star, sig
        elif fixed_gamma == 2.0:
            power = per_class(lambda q: q * q, p)
            power_star, sig_gamma = p_star * p_star, sig * sig
        else:
            power = per_class(
                lambda o, c: torch.where(o, ((c - lse) * g_gamma).exp(), 0.0), outside, z
            )
            power_star = anchor(torch.exp(g_gamma * log_p_star))
            sig_gamma = sig * focal_power
        power_sum = anchor(class_sum(power) + power_star)
        value = value + alpha * (sig_gamma + power_sum)
    # The gradient, per class c ∉ {t, j*}: G = w_c·(k_p (1 − p*) + k_w) + αγ p_c^γ + β r_c.
    one_m_p_star = anchor(log1m_p_star.exp())
    k_p = torch.ones_like(gap)
    k_w = torch.zeros_like(gap)
    grad: ClassValues | None = None
    at_target = -sig
    at_star = p_star
    if beta != 0:
        grad = per_class(lambda q: beta * (q / (rho - q)), p)
        k_p = k_p - beta * ratio_sum
        # ρ = 1: log(ρ − p*) is log(1 − p*), the ratio 1.
        star_coef = p_star if rho == 1.0 else p_star * anchor((log1m_p_star - log_rho_star).exp())
        k_w = k_w - beta * star_coef
        at_target_ratio = anchor((log_p_t - log_rho_star).exp())
        at_target = at_target - beta * (p_t * ratio_sum + p_star * at_target_ratio)
        at_star = at_star - beta * (p_star * ratio_sum - star_coef)
    if use_alpha:
        assert power is not None and power_sum is not None and power_star is not None
        grad = _plus(grad, power.mul(g_gamma * alpha))
        k_p = k_p - alpha * g_gamma * power_sum
        # σ(u)^γ p_t q_c = p_c σ(u)^{γ−1}: a per-element factor on p_c (no exp per class);
        # p_c ≤ σ(u) bounds the product by σ(u)^γ.
        focal_factor = (alpha * g_gamma) * p_t
        star_focal = p_t * p_star  # p_t p* σ(u)^{γ−1}
        if focal_power is not None:
            focal_factor = focal_factor * focal_power
            star_focal = star_focal * focal_power
        grad = grad.add(p.mul(focal_factor))
        at_target = at_target - alpha * g_gamma * (p_t * power_sum + sig_gamma * p_t)
        at_star = at_star + alpha * g_gamma * (power_star - p_star * power_sum + star_focal)
    grad = _plus(grad, w.mul(k_p * one_m_p_star + k_w))
    gradient = per_class(
        lambda t, s, c: torch.where(t, at_target, torch.where(s, at_star, c)) * g,
        is_t,
        is_star,
        grad,
    )
    d_gamma = None
    if wants_gamma:
        if use_alpha:
            assert power is not None and sig_gamma is not None and power_star is not None
            log_power = class_sum(
                per_class(lambda o, q, c: torch.where(o, q * (c - lse), 0.0), outside, power, z)
            )
            per_element = sig_gamma * log_sig + log_power + power_star * log_p_star
            d_gamma = anchor(alpha * per_element * g).sum()
        else:
            d_gamma = torch.zeros((), dtype=dtype, device=logits.device)
    loss = anchor(_flagged(value * weight, bad)).sum() * scale
    gradient_out = assemble(gradient).to(logits.dtype)
    return loss, gradient_out, d_gamma, ~torch.isfinite(loss), None  # no gradient factor


# ---------------------------------------------------------------------------- multi-label
def multilabel_kernel(
    chunk_fn: Callable[..., torch.Tensor],
    statics: tuple[tuple[str, Hashable], ...],
    tensor_names: tuple[str, ...],
    learnable_gamma: bool,
    ignore_index: int | None,
    reduction: str,
    finish: Callable[..., torch.Tensor],
) -> Callable[..., Any]:
    """A compiled multi-label loss over the whole tensor (cached per configuration): the same
    per-entry function as the eager chunks, with the reduction; the compiler derives and fuses
    its backward (element-wise, so one loop each way)."""
    key = ("multilabel", chunk_fn, statics, tensor_names, learnable_gamma, ignore_index, reduction)
    return _cached_kernel(
        key,
        _multilabel_loss,
        chunk_fn=chunk_fn,
        statics=dict(statics),
        tensor_names=tensor_names,
        learnable_gamma=learnable_gamma,
        ignore_index=ignore_index,
        reduction=reduction,
        finish=finish,
    )


def _multilabel_loss(  # pragma: no cover (compiled)
    logits: torch.Tensor,
    target: torch.Tensor,
    gamma: torch.Tensor | None,
    *tensors: torch.Tensor | None,
    chunk_fn: Callable[..., torch.Tensor],
    statics: dict[str, Any],
    tensor_names: tuple[str, ...],
    learnable_gamma: bool,
    ignore_index: int | None,
    reduction: str,
    finish: Callable[..., torch.Tensor],
) -> torch.Tensor:
    """The eager chunks' per-entry loss over the whole tensor, finished (``reduction="none"``:
    the per-entry losses; the compiler derives the backward)."""
    settings = {**statics, **dict(zip(tensor_names, tensors, strict=True))}
    params = (gamma,) if learnable_gamma else ()
    if learnable_gamma:
        settings["gamma"] = gamma
    loss = chunk_fn(logits, target, *params, ignore_index=ignore_index, **settings)
    return finish(loss, target, ignore_index, reduction)


#: Inductor options that recompute element-wise values in each consumer instead of keeping them
#: as full-size buffers between loops: the large whole-form Dual Focal kernel, and with
#: :data:`_ONE_LOOP` the multi-label one-pass kernels (without them the loss's sum went to a
#: second loop over a buffer of the per-entry values: seg-4 LDAM and Dual Focal; with them one
#: loop, the gradient the only full-size buffer).
_RECOMPUTE = {
    "realize_reads_threshold": 100,
    "realize_opcount_threshold": 100_000,
    "realize_acc_reads_threshold": 100,
    "realize_opusers_threshold": 100,
}


#: Up to this many classes the one-pass kernels look an element's class weight (and a target
#: class's offset or margin) up by a chain of selects instead of an indexed load, which
#: inductor gathers lane by lane behind a bounds check: seg-4 weighted CE 6.20 -> 5.33 ms,
#: adaptive Dual Focal 11.4 -> 10.1 ms (``benchmarks/kernel_probe.py``); no difference
#: measured at 19 classes, so not beyond 8.
SELECT_WEIGHT_CLASSES = 8

#: From this many logits on, the whole-form Dual Focal kernel recomputes its per-class
#: quantities in the gradient's loop instead of keeping them in full-size buffers: vol-4 (8 Mi
#: logits) 152 -> 72 MiB, ×0.75 of ``F.cross_entropy``'s instead of ×1.58, at the same time; on
#: seg-4 (4 Mi) it cost 25–40 % more time for 8 MiB less
#: (``benchmarks/bench_losses.py --only dual_focal``).
RECOMPUTE_ELEMENTS = 1 << 23

#: From this many logits on, with at most :data:`DUAL_FOCAL_UNROLL_CLASSES` classes, the Dual
#: Focal kernel runs on unrolled classes in one loop over the elements (seg-19 fixed γ: 1.0–1.2×
#: ``F.cross_entropy``'s time whole, 0.44× unrolled; learnable γ 1.7–2.2× -> 0.55×). Its build
#: takes 15 s for 4 classes, 21–24 s for 19 and 35 s for 32 on this 2-core machine (paid once
#: per configuration and cached on disk): worth it for training-size inputs, not below.
DUAL_FOCAL_UNROLL_ELEMENTS = 1 << 20
DUAL_FOCAL_UNROLL_CLASSES = UNROLL_CLASSES

#: Inductor options for the unrolled kernels (target-gap and Dual Focal). Their per-element
#: values are realised (inductor keeps every multi-use ``exp``/``log`` in a buffer on CPU) but
#: stay in the logits' loop (each carries a logit read, :func:`_in_logit_loop`), so the loop's
#: buffers are local to it; the one loop has several hundred nodes, above inductor's default
#: cap of 64 nodes per fused kernel (it split the 19-class Dual Focal loop in two, with 43
#: per-pixel buffers between them). Unlike :data:`_RECOMPUTE` (everything inlined into each of
#: the C gradient outputs), the build grows about linearly with the classes: Dual Focal 4
#: classes 32–45 s -> 15 s, 19 classes > 5 min -> 22 s; LMF 19 classes 110 -> 23 s, at the
#: same speed.
_ONE_LOOP = {"max_fusion_size": 100_000}


def multilabel_one_pass_kernel(
    entries: Callable[..., Any],
    statics: tuple[tuple[str, Hashable], ...],
    tensor_names: tuple[str, ...],
    learnable_gamma: bool,
    wants_gamma: bool,
    ignore_index: int | None,
    reduction: str,
) -> Callable[..., Any]:
    """Compiled ``(logits, target, *tensors, γ) -> (reduced loss, gradient, ∂/∂γ, invalid-input
    flag, gradient factor)`` of a multi-label loss (cached per configuration): the closed-form
    value and slope of each entry (``entries``, see ``_heads.multilabel_focal_entries``), weighted,
    masked and reduced in one loop over the logits that also writes the gradient."""
    key = (
        "multilabel-one-pass",
        entries,
        statics,
        tensor_names,
        learnable_gamma,
        wants_gamma,
        ignore_index,
        reduction,
    )
    return _cached_kernel(
        key,
        _multilabel_forward_with_gradient,
        {**_RECOMPUTE, **_ONE_LOOP},
        entries=entries,
        statics=dict(statics),
        tensor_names=tensor_names,
        learnable_gamma=learnable_gamma,
        wants_gamma=wants_gamma,
        ignore_index=ignore_index,
        mean=reduction == "mean",
    )


def _multilabel_forward_with_gradient(  # pragma: no cover (compiled)
    logits: torch.Tensor,
    target: torch.Tensor,
    *tensors_and_gamma: torch.Tensor | None,
    entries: Callable[..., Any],
    statics: dict[str, Any],
    tensor_names: tuple[str, ...],
    learnable_gamma: bool,
    wants_gamma: bool,
    ignore_index: int | None,
    mean: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
    """A mean (BCE's convention: over the entries not ignored) or a sum. The mean's count is a
    reduction of the same loop, so the gradient is written scaled by ``1/numel`` and comes
    with the factor ``numel / count`` (1 when nothing is ignored, and then never applied;
    see ``_fused._OnePassLoss``): no separate pass over the targets before the loop."""
    *tensors, gamma = tensors_and_gamma
    settings = {**statics, **dict(zip(tensor_names, tensors, strict=True))}
    class_weight: torch.Tensor = settings.pop("weight")  # ones where the caller gave none
    dtype = settings.pop("dtype")
    if learnable_gamma:
        settings["gamma"] = gamma
    z = logits.to(dtype)
    valid = None if ignore_index is None else target != ignore_index
    positive = target == 1
    bad = (target != 0) & ~positive
    if valid is not None:
        positive = positive & valid
        bad = bad & valid
    bad = bad | ~torch.isfinite(z)
    # Always given (ones for no weights): every realised value reads it (see _in_logit_loop),
    # so that inductor runs the whole kernel as one (N, C, S) nest.
    column = class_weight.to(dtype).view(1, -1, 1)
    weight = column if valid is None else valid.to(dtype) * column
    log_upstream = -math.log(max(target.numel(), 1)) - class_weight.amax().clamp_min(1.0).log()
    anchor = functools.partial(_in_logit_loop, logit=column)
    value, slope, d_gamma = entries(z, positive, log_scale=log_upstream, anchor=anchor, **settings)
    scale = 1.0 / max(target.numel(), 1) if mean else 1.0
    grad = (slope * (weight * scale)).to(logits.dtype)
    total = anchor(_flagged(value * weight, bad)).sum()
    d_total = (d_gamma * weight).sum() if wants_gamma and d_gamma is not None else None
    if wants_gamma and d_total is None:  # Dual Focal with α = 0: no term depends on γ
        d_total = torch.zeros((), dtype=dtype, device=logits.device)
    factor = None
    if mean:
        divisor: torch.Tensor | float = max(target.numel(), 1)  # the gradient's 1/numel
        if valid is not None:
            # A float sum anchored like the loss's (an integer count went to a loop of its
            # own): exact up to 2^24 entries in float32, beyond that rounded no worse than the
            # loss's own sum. No entry kept: a 0 loss and gradient, as F.cross_entropy's.
            divisor = anchor(valid.to(dtype)).sum().clamp_min(1.0)
            factor = target.numel() / divisor
        total = total / divisor
        d_total = None if d_total is None else d_total / divisor
    return total, grad, d_total, ~torch.isfinite(total), factor


# ------------------------------------------------------------------------------ label counts
def normaliser_scales(
    target: torch.Tensor,
    class_weight: torch.Tensor | None,
    classes: int,
    ignore_index: int,
    normalisers: tuple[str, ...],
    dtype: torch.dtype,
) -> torch.Tensor | None:
    """Per normaliser (see :func:`one_pass_kernel`), the factor of its terms: 1 (``"sum"``),
    ``1 / Σ w`` (``"weight"``) or ``1 / count`` (``"count"``) over the labelled elements, as
    ``(len(normalisers),)`` in ``dtype`` (None when all are sums); with no host sync. Few
    classes: one compiled loop over the labels (see :func:`label_counts`)."""
    if all(kind == "sum" for kind in normalisers):
        return None
    counted = _counted_before(target, classes, ignore_index)
    if counted is not None:  # the adaptive weights counted this batch's labels just now
        return _factors_from_counts(counted, class_weight, normalisers, dtype)
    if wants_compiled(target) and classes <= MASKED_SUM_CLASSES:
        key = ("normalisers", classes, ignore_index, normalisers, dtype)
        factors = _counted_or_none(
            key,
            _normaliser_scales,
            (target, class_weight),
            classes=classes,
            ignore_index=ignore_index,
            normalisers=normalisers,
            dtype=dtype,
        )
        if factors is not None:
            return factors
    counts = label_counts(target, classes, ignore_index)
    return _factors_from_counts(counts, class_weight, normalisers, dtype)


def _counted_or_none(
    key: Hashable, function: Callable[..., Any], arguments: tuple[Any, ...], **keywords: Any
) -> torch.Tensor | None:
    """A label-counting kernel's result, or None after a failed compile (said once, see
    :func:`mark_broken`; the caller counts eagerly then)."""
    try:
        result = _cached_kernel(key, function, **keywords)(*arguments)
    except Exception as error:
        mark_broken(error)
        return None
    record_run("compiled-counts")
    return result


def _factors_from_counts(
    counts: torch.Tensor,
    class_weight: torch.Tensor | None,
    normalisers: tuple[str, ...],
    dtype: torch.dtype,
) -> torch.Tensor:
    counts = counts.to(dtype)
    total = counts.sum()
    weight_total = total if class_weight is None else (counts * class_weight).sum()
    tiny = torch.finfo(dtype).tiny
    totals = {"weight": weight_total, "count": total}
    one = torch.ones((), dtype=dtype, device=counts.device)
    return torch.stack(
        [one if kind == "sum" else 1.0 / totals[kind].clamp_min(tiny) for kind in normalisers]
    )


def _normaliser_scales(  # pragma: no cover (compiled)
    target: torch.Tensor,
    class_weight: torch.Tensor | None,
    *,
    classes: int,
    ignore_index: int,
    normalisers: tuple[str, ...],
    dtype: torch.dtype,
) -> torch.Tensor:
    counts = _label_counts(target, num_classes=classes, ignore_index=ignore_index)
    return _factors_from_counts(counts, class_weight, normalisers, dtype)


#: The last :func:`label_counts` call: (target, its version counter, classes, ignore_index) and
#: its counts. A loss with adaptive class weights counts the batch's labels for the weights,
#: then needs the same counts for its mean's divisor: a second pass over the labels, saved.
_last_counted: tuple[weakref.ref[torch.Tensor], int, int, int | None, torch.Tensor] | None = None


def _counted_before(
    target: torch.Tensor, num_classes: int, ignore_index: int | None
) -> torch.Tensor | None:
    """The counts of the last :func:`label_counts` call if it counted this very tensor, unchanged
    since (same object, same version counter), the same way; else None."""
    if _last_counted is None or target.is_inference():  # no version counter to check
        return None
    reference, version, classes, ignored, counts = _last_counted
    if reference() is not target or version != target._version:
        return None
    return counts if (classes, ignored) == (num_classes, ignore_index) else None


def label_counts(target: torch.Tensor, num_classes: int, ignore_index: int | None) -> torch.Tensor:
    """How many elements of ``target`` hold each class ``(C,)`` (float32; ``ignore_index`` and
    values outside ``[0, C)`` not counted), with no host sync. Large inputs with few classes
    are counted in one compiled loop (one accumulator per class); otherwise by ``scatter_add``."""
    global _last_counted
    counts = _label_counts_of(target, num_classes, ignore_index)
    if target.is_inference():  # no version counter: never reused
        _last_counted = None
        return counts
    # A copy: the caller may change its counts in place (an all-reduce over the ranks).
    kept = counts.clone()
    _last_counted = (weakref.ref(target), target._version, num_classes, ignore_index, kept)
    return counts


def _label_counts_of(
    target: torch.Tensor, num_classes: int, ignore_index: int | None
) -> torch.Tensor:
    if wants_compiled(target) and num_classes <= MASKED_SUM_CLASSES:
        key = ("label-counts", num_classes, ignore_index)
        counts = _counted_or_none(
            key, _label_counts, (target,), num_classes=num_classes, ignore_index=ignore_index
        )
        if counts is not None:
            return counts
    flat = target.reshape(-1).long()
    keep = (flat >= 0) & (flat < num_classes)
    if ignore_index is not None:
        keep &= flat != ignore_index
    bins = torch.where(keep, flat, num_classes)  # an extra bin for what is not counted
    ones = torch.ones((), device=target.device).expand(bins.shape)  # no full-size buffer
    counts = torch.zeros(num_classes + 1, device=target.device).scatter_add_(0, bins, ones)
    return counts[:num_classes]


def _label_counts(  # pragma: no cover (compiled)
    target: torch.Tensor, *, num_classes: int, ignore_index: int | None
) -> torch.Tensor:
    flat = target.reshape(-1)
    zero = torch.zeros((), dtype=torch.float32, device=target.device)
    return torch.stack(
        [
            zero if c == ignore_index else (flat == c).sum().to(torch.float32)
            for c in range(num_classes)
        ]
    )
