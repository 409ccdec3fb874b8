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
from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

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
) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """Compiled ``(forward, backward)`` for one loss configuration (cached).

    A float ``gamma`` is compiled in as a constant (``None``: γ is a tensor argument);
    ``wants_gamma`` adds the ``∂ℓ/∂γ`` output.
    """
    spec = GapSpec(scales, has_offset, has_shift, dtype, floor, gamma, wants_gamma)
    key = (_head_key(head_loss), spec)
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
) -> Callable[..., Any]:
    """Compiled ``(logits, raw target, class weight, offsets, shifts, γ) -> (reduced loss,
    gradient, ∂/∂γ, invalid-input flag)`` for one configuration (cached): the ignore mask, the
    class weights, the mean's denominator, the value checks, the forward and the closed-form
    gradient of :func:`_gap_forward` / :func:`_gap_backward`, fused so that each logit is read
    once and its gradient written once.

    ``normalisers``: ``("sum",)`` or ``("weight",)`` (a mean over ``Σ w_i``) for the whole
    loss, or one per head (``"sum"``, ``"weight"`` or ``"count"``: the number of labelled
    elements), handed to ``head_loss`` as ``term_scales`` (LMF as the authors wrote it)."""
    spec = GapSpec(scales, has_offset, has_shift, dtype, floor, gamma, wants_gamma)
    key = ("one-pass", _head_key(head_loss), spec, ignore_index, normalisers)
    return _cached_kernel(
        key,
        _gap_forward_with_gradient,
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


def _head_logits(  # pragma: no cover (compiled)
    z: torch.Tensor, k: int, spec: GapSpec, offsets: list[torch.Tensor | None]
) -> torch.Tensor:
    y = z * spec.scales[k] if spec.scales[k] != 1.0 else z
    offset = offsets[k]
    if offset is not None:
        y = y + offset.view(1, -1, 1)
    return y


#: Up to this many classes the target's logit is read as a masked sum over the classes (the
#: class loop is unrolled and stays vectorised); above it, as a gather (one read per element).
MASKED_SUM_CLASSES = 32


def _picker(  # pragma: no cover (compiled)
    classes: int, is_target: torch.Tensor, index: torch.Tensor
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``(N, C, S) -> (N, S)``: each element's value at its target class."""
    if classes <= MASKED_SUM_CLASSES:
        return lambda values: torch.where(is_target, values, 0.0).sum(1)
    return lambda values: values.gather(1, index).squeeze(1)


#: Largest integer ratio of two heads' scales for which the backward takes one head's
#: exponentials as powers of the other's (LMF: LDAM's s = 30 over focal's 1).
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
    index = target.unsqueeze(1)
    is_target = torch.arange(z.shape[1], device=z.device).view(1, -1, 1) == index
    pick = _picker(z.shape[1], is_target, index)
    z_target = pick(z)
    shared = _shared_heads(spec)
    gaps: list[torch.Tensor] = []
    lses: list[torch.Tensor] = []
    for k in range(len(spec.scales)):
        if shared[k] != k:
            lse = lses[shared[k]]
        else:
            y = _head_logits(z, k, spec, offsets).masked_fill(is_target, float("-inf"))
            top = y.amax(1, keepdim=True)
            lse = (y - top).clamp_min(spec.floor).exp().sum(1).log() + top.squeeze(1)
        y_target = z_target * spec.scales[k]
        offset, shift = offsets[k], shifts[k]
        if offset is not None:
            y_target = y_target + offset[target]
        if shift is not None:
            y_target = y_target - shift[target]
        gaps.append(lse - y_target)
        lses.append(lse)
    return gaps, lses


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
    log_upstream: torch.Tensor | float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(N, C, S)`` logits -> loss, ``lse_{j≠t}`` per head, ``w·∂ℓ/∂u`` per head and, when
    asked for, ``w·∂ℓ/∂γ``. ``log_upstream``: a lower bound on the log of the factor the
    slopes will be multiplied by (then the heads keep them out of the subnormal range, see
    ``_heads._cutoff``)."""
    gaps, lses = gap_values(logits.to(spec.dtype), target, offsets, shifts, spec=spec)
    extra = {}
    if log_upstream is not None:
        extra["log_scales"] = [log_upstream + math.log(scale) for scale in spec.scales]
    value, derivatives, d_gamma = head_loss(
        gaps, gamma if spec.gamma is None else spec.gamma, **extra
    )
    weight = element_weight.to(spec.dtype)
    slopes = torch.stack([d * weight for d in derivatives])
    if not spec.wants_gamma:
        d_gamma = None
    elif d_gamma is None:
        d_gamma = torch.zeros_like(value)
    else:
        d_gamma = d_gamma * weight
    return value * weight, torch.stack(lses), slopes, d_gamma


def _gap_backward(  # pragma: no cover (compiled)
    logits: torch.Tensor,
    target: torch.Tensor,
    lses: torch.Tensor,
    slopes: torch.Tensor,
    upstream: torch.Tensor,
    offsets: list[torch.Tensor | None],
    *,
    spec: GapSpec,
) -> torch.Tensor:
    """``Σ_k (w·ℓ'_k·g) ∂u_k/∂z`` as ``(N, C, S)`` in the logits' dtype, with
    ``∂u_k/∂z_j = a_k exp(y_kj − lse_k)`` for ``j ≠ t`` and ``−a_k`` at ``t``.

    Heads with the same non-target transform share ``exp(y_j − lse)`` (their coefficients are
    summed). A head whose scale is ``r`` times the smallest one's (no offsets) takes no ``exp``
    of its own: with ``m = max_{j≠t} z_j`` and ``b_j = exp(a₀ (z_j − m)) ≤ 1``,
    ``exp(y_kj − lse_k) = b_j^r · exp(a_k m − lse_k)``.

    No product here is subnormal (each takes a ~100× slower microcode path on x86, and a mean
    over 10⁶ pixels scales every term by 10⁻⁶: LDAM's ``s = 30`` made seg-4 3× slower): the
    per-element coefficient enters the exponent as ``log |c|`` (terms below ``exp(floor)``
    become ``±exp(floor)``, 0 where ``c = 0``), and the powers are flushed to 0 below a
    per-element threshold (:func:`_flushed_power`)."""
    z = logits.to(spec.dtype)
    floor = spec.floor
    is_target = torch.arange(z.shape[1], device=z.device).view(1, -1, 1) == target.unsqueeze(1)
    shared = _shared_heads(spec)
    coefficients = [slopes[k] * upstream * spec.scales[k] for k in range(len(spec.scales))]
    total: torch.Tensor | None = None
    at_target: torch.Tensor | None = None
    for k in range(len(spec.scales)):
        at_target = -coefficients[k] if at_target is None else at_target - coefficients[k]
    # The head with the smallest scale is the base of the others' powers.
    # (min with key= is not traceable before torch 2.12.)
    base = spec.scales.index(min(spec.scales))
    powers: dict[int, int] = {}
    for k in range(len(spec.scales)):
        power = _power_of(spec, k, base) if shared[k] == k and k != base else None
        if power is not None:
            powers[k] = power
    top: torch.Tensor | None = None
    base_exp: torch.Tensor | None = None
    if powers:
        top = z.masked_fill(is_target, float("-inf")).amax(1, keepdim=True)
        # At most 1 (0 in the exponent): the target's entry, above ``top``, is not used.
        base_exp = ((z - top) * spec.scales[base]).clamp(floor, 0.0).exp()
    for k in range(len(spec.scales)):
        if shared[k] != k:
            continue
        coefficient = sum(coefficients[j] for j in range(len(shared)) if shared[j] == k)
        log_size = coefficient.abs().log().unsqueeze(1)  # type: ignore[union-attr]
        sign = coefficient.sign().unsqueeze(1)  # type: ignore[union-attr]
        lse = lses[k].unsqueeze(1)
        if base_exp is not None and top is not None and (k == base or k in powers):
            log_factor = top * spec.scales[k] - lse + log_size
            term = _flushed_power(base_exp, powers.get(k, 1), log_factor, sign, floor)
        else:
            exponent = _head_logits(z, k, spec, offsets) - (lse - log_size)
            # Capped above too: the target's entry (replaced below) must not overflow.
            term = exponent.clamp(floor, -floor).exp() * sign
        total = term if total is None else total + term
    assert total is not None and at_target is not None
    return torch.where(is_target, at_target.unsqueeze(1), total).to(logits.dtype)


def _flushed_power(  # pragma: no cover (compiled)
    base: torch.Tensor,
    power: int,
    log_factor: torch.Tensor,
    sign: torch.Tensor,
    floor: float,
) -> torch.Tensor:
    """``sign · base^power · exp(log_factor)`` for ``base`` in ``[exp(floor), 1]`` (per
    logit) and per-element ``log_factor`` / ``sign``, 0 where the result is below
    ``exp(floor)``. The base is clamped at the per-element threshold before the powers are
    taken, so that no intermediate power and no product is subnormal."""
    # base^power · e^L >= e^floor  <=>  base > exp((floor − L) / power); with L <= 0 clamped
    # in, every partial power base^i (i <= power) is >= e^floor too.
    threshold = ((floor - log_factor.clamp_max(0.0)) / power).clamp_max(0.0).exp()
    kept = base > threshold
    powered = _integer_power(torch.maximum(base, threshold), power) if power > 1 else base
    factor = log_factor.clamp_min(floor).exp() * sign
    return torch.where(kept, powered, 0.0) * factor


def _gap_forward_with_gradient(  # pragma: no cover (compiled)
    logits: torch.Tensor,
    target: torch.Tensor,
    class_weight: torch.Tensor | None,
    offsets: list[torch.Tensor | None],
    shifts: list[torch.Tensor | None],
    gamma: torch.Tensor,
    *,
    spec: GapSpec,
    head_loss: Callable[..., Any],
    ignore_index: int,
    normalisers: tuple[str, ...],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """The reduced loss (``F.cross_entropy``'s convention: a mean divides by ``Σ w_i`` over
    the labelled elements), its gradient with respect to the logits and (when asked for) to γ,
    from the raw targets: the same two functions as the two-pass kernels, which the compiler
    fuses with the masking and weighting into one loop over the logits."""
    per_term = len(normalisers) > 1
    mean = normalisers == ("weight",)
    safe, weight, scale, invalid = _labelled(
        logits, target, class_weight, ignore_index, mean, spec.dtype
    )
    if per_term:
        tiny = torch.finfo(spec.dtype).tiny
        totals = {"weight": weight.sum(), "count": (target != ignore_index).sum().to(spec.dtype)}
        term_scales = [
            scale if kind == "sum" else 1.0 / totals[kind].clamp_min(tiny) for kind in normalisers
        ]
        head_loss = functools.partial(head_loss, term_scales=term_scales)
    # A bound known before the loop (1/Σw is not): 1/(count · max(1, max w)) is below every
    # normaliser (mean, per-term weight or count, sum).
    log_upstream: torch.Tensor | float = -math.log(max(target.numel(), 1))
    if class_weight is not None:
        log_upstream = log_upstream - class_weight.amax().clamp_min(1.0).log()
    loss, lses, slopes, d_gamma = _gap_forward(
        logits,
        safe,
        weight,
        offsets,
        shifts,
        gamma,
        spec=spec,
        head_loss=head_loss,
        log_upstream=log_upstream,
    )
    grad = _gap_backward(logits, safe, lses, slopes, scale, offsets, spec=spec)
    d_gamma = None if d_gamma is None else d_gamma.sum() * scale
    return loss.sum() * scale, grad, d_gamma, invalid


def _labelled(  # pragma: no cover (compiled)
    logits: torch.Tensor,
    target: torch.Tensor,
    class_weight: torch.Tensor | None,
    ignore_index: int,
    mean: bool,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """From the raw ``(N, S)`` targets: the targets with ignored (and out-of-range) entries set
    to 0, each element's weight (0 where ignored), the reduction's factor (``1 / Σ w`` for a
    mean, else 1) and the validation flag, all in the loop that reads the logits: whether a
    logit is NaN/inf or a label outside ``[0, C)`` (checked, with the full message, after the
    kernel)."""
    classes = logits.shape[1]
    valid = target != ignore_index
    in_range = (target >= 0) & (target < classes)
    safe = torch.where(valid & in_range, target, 0)
    if class_weight is None:
        weight = valid.to(dtype)
    else:
        weight = torch.where(valid, class_weight[safe], 0.0)
    if mean:
        scale = 1.0 / weight.sum().clamp_min(torch.finfo(dtype).tiny)
    else:
        scale = torch.ones((), dtype=dtype, device=logits.device)
    # A per-element sum over the classes is not finite when a logit is not (or, rarely, when
    # huge logits overflow it: then the eager checks find nothing and let the loss run); it is
    # fused with the loop over the classes, unlike a separate pass over all logits.
    finite = torch.isfinite(logits.sum(1)).all()
    invalid = (valid & ~in_range).any() | ~finite
    return safe, weight, scale, invalid


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
    large: bool = False,
) -> Callable[..., Any]:
    """Compiled ``(logits, raw target, class weight, γ) -> (reduced loss, gradient, ∂/∂γ,
    invalid-input flag)`` of
    the multi-class Dual Focal loss for one configuration (cached); the formulas are those of
    ``_dual_focal_fused`` (its docstring derives them), written over the whole tensor.
    ``large`` (see :data:`RECOMPUTE_ELEMENTS`): built with the recompute-over-store options."""
    key = ("dual-focal", alpha, beta, rho, gamma, wants_gamma, dtype, ignore_index, mean, large)
    return _cached_kernel(
        key,
        _dual_focal_forward_with_gradient,
        _RECOMPUTE if large else None,
        alpha=alpha,
        beta=beta,
        rho=rho,
        fixed_gamma=gamma,
        wants_gamma=wants_gamma,
        dtype=dtype,
        ignore_index=ignore_index,
        mean=mean,
    )


def _dual_focal_forward_with_gradient(  # pragma: no cover (compiled)
    logits: torch.Tensor,
    target: torch.Tensor,
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
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Per element, ``t`` the target and ``j*`` the arg-max of the other classes (the only one
    whose probability can exceed 1/2); every quantity in log space as in the eager kernel."""
    floor = -87.0 if dtype == torch.float32 else -708.0
    z = logits.to(dtype)
    classes = z.shape[1]
    safe, weight, scale, invalid = _labelled(
        logits, target, class_weight, ignore_index, mean, dtype
    )
    g = (weight * scale).unsqueeze(1)
    c_index = torch.arange(classes, device=z.device).view(1, -1, 1)
    is_t = c_index == safe.unsqueeze(1)
    pick = _picker(classes, is_t, safe.unsqueeze(1))
    z_t = pick(z).unsqueeze(1)
    others = z.masked_fill(is_t, float("-inf"))
    top, j_star = others.max(1, keepdim=True)
    is_star = c_index == j_star
    outside = ~(is_t | is_star)  # the classes c ∉ {t, j*}
    # One exp per logit, centred on the largest of the classes ∉ {t, j*} (exact for the terms
    # that matter however far apart the logits are); with 2 classes there are none.
    rest_top = z.masked_fill(~outside, float("-inf")).amax(1, keepdim=True)
    has_rest = torch.isfinite(rest_top)
    rest_top = torch.where(has_rest, rest_top, top)
    e = torch.where(outside, (z - rest_top).clamp_min(floor).exp(), 0.0)
    rest_sum = e.sum(1, keepdim=True)  # >= 1 with a rest, 0 without
    lse_others = top + torch.log1p(rest_sum * (rest_top - top).exp())
    lse = torch.logaddexp(lse_others, z_t)
    gap = lse_others - z_t  # u: CE = softplus(u), 1 − p_t = σ(u)
    rest_lse = torch.where(has_rest, rest_top + rest_sum.log(), float("-inf"))
    log1m_p_star = torch.logaddexp(z_t, rest_lse) - lse
    log_p = z - lse
    log_p_star = top - lse
    p_star = log_p_star.exp()
    p = e * (rest_top - lse).exp()  # p_c = e_c e^{rest_top − lse}: no new exp
    # w_c = p_c / (1 − p*) = e_c / (e^{z_t − rest_top} + Σ e): a per-element reciprocal.
    tiny = torch.finfo(dtype).tiny
    w = e * (1.0 / ((z_t - rest_top).exp() + rest_sum).clamp_min(tiny))
    value = F.softplus(gap)
    ratio_sum = torch.zeros_like(gap)
    log_rho_star = log1m_p_star
    if beta != 0:
        if rho == 1.0:
            log_false = torch.log1p(-p).sum(1, keepdim=True) + log1m_p_star
        else:
            log_rho_star = torch.logaddexp(log1m_p_star, torch.full_like(gap, math.log(rho - 1)))
            log_false = (torch.log(rho - p).sum(1, keepdim=True) - 2 * math.log(rho)) + log_rho_star
        value = value - beta * log_false
        ratio_sum = (p / (rho - p)).sum(1, keepdim=True)
    use_alpha = alpha != 0 and fixed_gamma != 0.0
    g_gamma = gamma if fixed_gamma is None else fixed_gamma
    log_sig = F.logsigmoid(gap)
    power = power_sum = power_star = sig_gamma = None
    if alpha != 0 and fixed_gamma == 0.0:
        value = value + alpha * classes
    elif alpha != 0:
        if fixed_gamma == 1.0:  # the paper's default: powers are the probabilities themselves
            power, power_star, sig_gamma = p, p_star, log_sig.exp()
        elif fixed_gamma == 2.0:
            power, power_star, sig_gamma = p * p, p_star * p_star, (2 * log_sig).exp()
        else:
            power = torch.where(outside, (log_p * g_gamma).exp(), 0.0)
            power_star = torch.exp(g_gamma * log_p_star)
            sig_gamma = torch.exp(g_gamma * log_sig)
        power_sum = power.sum(1, keepdim=True) + power_star
        value = value + alpha * (sig_gamma + power_sum)
    # The gradient, per class c ∉ {t, j*}: G = w_c·(k_p (1 − p*) + k_w) + αγ p_c^γ + β r_c.
    one_m_p_star = log1m_p_star.exp()
    p_t = torch.sigmoid(-gap)
    log_p_t = F.logsigmoid(-gap)
    sig = log_sig.exp()
    k_p = torch.ones_like(gap)
    k_w = torch.zeros_like(gap)
    grad = torch.zeros_like(z)
    at_target = -sig
    at_star = p_star
    if beta != 0:
        grad = grad + beta * (p / (rho - p))
        k_p = k_p - beta * ratio_sum
        star_coef = p_star * (log1m_p_star - log_rho_star).exp()
        k_w = k_w - beta * star_coef
        at_target = at_target - beta * (p_t * ratio_sum + p_star * (log_p_t - log_rho_star).exp())
        at_star = at_star - beta * (p_star * ratio_sum - star_coef)
    if use_alpha:
        assert power is not None and power_sum is not None and power_star is not None
        grad = grad + (g_gamma * alpha) * power
        k_p = k_p - alpha * g_gamma * power_sum
        # σ(u)^γ p_t q_c = p_c σ(u)^{γ−1}: a per-element factor on p_c (no exp per class).
        # p_c ≤ σ(u) bounds the product by σ(u)^γ; the factor (large only for γ < 1 and
        # σ(u) → 0) is capped below overflow, which changes only terms below exp(−cap·γ/(1−γ)).
        focal_scale = (g_gamma - 1) * log_sig
        if fixed_gamma == 1.0:  # exp(log p_c + 0) = p_c
            focal_extra = p
        else:
            focal_extra = p * focal_scale.clamp_max(-floor - 7.0).exp()
        grad = grad + (alpha * g_gamma) * p_t * focal_extra
        at_target = at_target - alpha * g_gamma * (p_t * power_sum + sig_gamma * p_t)
        star_focal = p_t * torch.exp(log_p_star + focal_scale)
        at_star = at_star + alpha * g_gamma * (power_star - p_star * power_sum + star_focal)
    grad = grad + w * (k_p * one_m_p_star + k_w)
    grad = torch.where(is_t, at_target, torch.where(is_star, at_star, grad)) * g
    d_gamma = None
    if wants_gamma:
        if use_alpha:
            assert power is not None and sig_gamma is not None and power_star is not None
            log_power = torch.where(outside, power * log_p, 0.0).sum(1, keepdim=True)
            per_element = sig_gamma * log_sig + log_power + power_star * log_p_star
            d_gamma = (alpha * per_element * g).sum()
        else:
            d_gamma = torch.zeros((), dtype=dtype, device=z.device)
    loss = (value.squeeze(1) * weight).sum() * scale
    return loss, grad.to(logits.dtype), d_gamma, invalid


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
    settings = {**statics, **dict(zip(tensor_names, tensors, strict=True))}
    params = (gamma,) if learnable_gamma else ()
    if learnable_gamma:
        settings["gamma"] = gamma
    loss = chunk_fn(logits, target, *params, ignore_index=ignore_index, **settings)
    return finish(loss, target, ignore_index, reduction)


#: Inductor options for the multi-label one-pass kernels: recompute element-wise values in the
#: gradient's loop instead of keeping them as full-size buffers between loops (measured on
#: seg-4 LMF 33 -> 18 ms and 2 fewer 16 MiB buffers; the target-gap kernels gain nothing).
_RECOMPUTE = {
    "realize_reads_threshold": 100,
    "realize_opcount_threshold": 100_000,
    "realize_acc_reads_threshold": 100,
    "realize_opusers_threshold": 100,
}


#: From this many logits on, the Dual Focal kernel recomputes its per-class quantities in the
#: gradient's loop instead of keeping them in full-size buffers: vol-4 (8 Mi logits) 152 -> 72
#: MiB, ×0.75 of ``F.cross_entropy``'s instead of ×1.58, at the same time; on seg-4 (4 Mi) it
#: cost 25–40 % more time for 8 MiB less (``benchmarks/bench_losses.py --only dual_focal``).
RECOMPUTE_ELEMENTS = 1 << 23


def multilabel_one_pass_kernel(
    chunk_fn: Callable[..., torch.Tensor],
    statics: tuple[tuple[str, Hashable], ...],
    tensor_names: tuple[str, ...],
    learnable_gamma: bool,
    wants_gamma: bool,
    ignore_index: int | None,
    reduction: str,
    finish: Callable[..., torch.Tensor],
) -> Callable[..., Any]:
    """Compiled ``(logits, target, *tensors, γ) -> (reduced loss, gradient, ∂/∂γ, invalid-input
    flag)`` of a multi-label loss (cached per configuration): the per-entry function of the
    eager chunks, differentiated by ``torch.func.grad_and_value`` inside the compiled function,
    so that the loss, its gradient and the value checks come out of one loop over the logits."""
    key = (
        "multilabel-one-pass",
        chunk_fn,
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
        _RECOMPUTE,
        chunk_fn=chunk_fn,
        statics=dict(statics),
        tensor_names=tensor_names,
        learnable_gamma=learnable_gamma,
        wants_gamma=wants_gamma,
        ignore_index=ignore_index,
        reduction=reduction,
        finish=finish,
    )


def _multilabel_forward_with_gradient(  # pragma: no cover (compiled)
    logits: torch.Tensor,
    target: torch.Tensor,
    *tensors_and_gamma: torch.Tensor | None,
    chunk_fn: Callable[..., torch.Tensor],
    statics: dict[str, Any],
    tensor_names: tuple[str, ...],
    learnable_gamma: bool,
    wants_gamma: bool,
    ignore_index: int | None,
    reduction: str,
    finish: Callable[..., torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    *tensors, gamma = tensors_and_gamma

    def reduced(z: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return _multilabel_loss(
            z,
            target,
            g,
            *tensors,
            chunk_fn=chunk_fn,
            statics=statics,
            tensor_names=tensor_names,
            learnable_gamma=learnable_gamma,
            ignore_index=ignore_index,
            reduction=reduction,
            finish=finish,
        )

    argnums = (0, 1) if wants_gamma else 0
    grads, loss = torch.func.grad_and_value(reduced, argnums=argnums)(logits, gamma)
    grad, d_gamma = grads if wants_gamma else (grads, None)
    labels = (target != 0) & (target != 1)
    if ignore_index is not None:
        labels = labels & (target != ignore_index)
    invalid = labels.any() | ~torch.isfinite(logits).all()
    return loss, grad, d_gamma, invalid


# ------------------------------------------------------------------------------ label counts
def label_counts(target: torch.Tensor, num_classes: int, ignore_index: int | None) -> torch.Tensor:
    """How many elements of ``target`` hold each class ``(C,)`` (float32; ``ignore_index`` and
    values outside ``[0, C)`` not counted), with no host sync. Large inputs with few classes
    are counted in one compiled loop (one accumulator per class); otherwise by ``scatter_add``."""
    if wants_compiled(target) and num_classes <= MASKED_SUM_CLASSES:
        key = ("label-counts", num_classes, ignore_index)
        try:
            kernel = _cached_kernel(
                key, _label_counts, num_classes=num_classes, ignore_index=ignore_index
            )
            counts = kernel(target)
        except Exception as error:
            mark_broken(error)
        else:
            record_run("compiled-counts")
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
