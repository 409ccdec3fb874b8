"""The compiler adapter: everything torch_imbalance asks of ``torch.compile``, in one place.

The losses' laws (``focal.py``, ``ldam.py``, ``lmf.py``, ``priors.py``, ``dual_focal.py``) are
plain tensor code; ``_driver`` runs them either eagerly, chunk by chunk, or as one compiled
whole-tensor kernel built here (vectorised C++ with OpenMP on CPU, Triton on CUDA: the forward,
the closed-form gradient, the masking, weighting and reduction fused into one loop over the
logits). This module decides when to compile (:func:`set_compile_mode`), which inductor options
to pass, keeps one compiled copy per call signature, and falls back to the eager driver with
one warning when compiling fails or the installed torch is outside the tested range.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import types
import warnings
from collections import Counter
from collections.abc import Callable, Hashable
from typing import Any, Literal, cast

import torch

logger = logging.getLogger("torch_imbalance")

CompileMode = Literal["auto", "always", "never"]

#: The torch releases the compiled kernels are tested on (CI runs the loss-core tests on both
#: ends). Outside it ``"auto"`` runs the eager driver, with one note; ``"always"`` compiles anyway.
TESTED_TORCH = ((2, 13), (2, 14))

#: Smallest CPU input (in logits) that ``"auto"`` compiles. Measured on 2 CPU threads, the
#: compiled kernels beat the eager chunks at every size; below 64 Ki logits (classification
#: batches) the few-second compile per configuration and shape is not worth it for a short run,
#: above it (any segmentation batch) it is. On CUDA every input is compiled: there the eager
#: driver's hundred-odd small operations are as many kernel launches per call.
MIN_COMPILED_ELEMENTS = 1 << 16

#: Inductor options that recompute element-wise values in each consumer instead of keeping them
#: as full-size buffers between loops (the whole-form Dual Focal kernel on large inputs and the
#: multi-label kernels: without them the loss's sum went to a second loop over a buffer of the
#: per-entry values).
RECOMPUTE = {
    "realize_reads_threshold": 100,
    "realize_opcount_threshold": 100_000,
    "realize_acc_reads_threshold": 100,
    "realize_opusers_threshold": 100,
}

#: Inductor options for the unrolled kernels: their one loop has several hundred nodes, above
#: inductor's default cap of 64 nodes per fused kernel (which split the 19-class Dual Focal loop
#: in two, with 43 per-pixel buffers between them).
ONE_LOOP = {"max_fusion_size": 100_000}

_MODES = ("auto", "always", "never")
_state: dict[str, Any] = {"mode": os.environ.get("TORCH_IMBALANCE_COMPILE", "auto"), "broken": None}
_kernels: dict[Hashable, Callable[..., Any]] = {}
_copy_numbers = itertools.count()
_said: set[str] = set()
#: How many passes ran on each path (see :func:`kernel_runs`).
_runs: Counter[str] = Counter()


def set_compile_mode(mode: CompileMode) -> None:
    """Choose when the losses run on compiled kernels.

    Args:
        mode: ``"auto"`` (every CUDA input; CPU inputs of at least ``MIN_COMPILED_ELEMENTS``
            logits), ``"always"`` or ``"never"``.

    Examples:
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
    return cast(CompileMode, mode)


def torch_is_tested(version: str | None = None) -> bool:
    """Whether ``version`` (default: the installed torch) is in :data:`TESTED_TORCH`."""
    return _in_tested_range(version or torch.__version__)


@functools.lru_cache(maxsize=8)
def _in_tested_range(version: str) -> bool:  # parsed once: asked on every loss call
    release = version.split("+")[0].split(".")
    major_minor = (int(release[0]), int(release[1]))
    return TESTED_TORCH[0] <= major_minor <= TESTED_TORCH[1]


def _say_once(key: str, message: str) -> None:
    if key not in _said:
        _said.add(key)
        logger.warning(message)


def wants_compiled(logits: torch.Tensor) -> bool:
    """Whether this input goes to the compiled kernels."""
    mode = get_compile_mode()
    if mode == "never" or _state["broken"] is not None or torch.compiler.is_compiling():
        return False
    if not torch_is_tested():
        low, high = (".".join(map(str, v)) for v in TESTED_TORCH)
        tested = (
            f"the compiled loss kernels are tested on torch {low} to {high}, "
            f"not {torch.__version__}"
        )
        if mode == "auto":
            _say_once(
                "untested-torch",
                f"torch_imbalance: {tested}; the eager kernels serve (same results, slower; "
                "TORCH_IMBALANCE_COMPILE=always compiles anyway).",
            )
            return False
        _say_once("untested-torch-always", f"torch_imbalance: {tested}; compiling as asked.")
    return mode == "always" or auto_compiles(logits.device.type, logits.numel())


def auto_compiles(device_type: str, elements: int) -> bool:
    """What ``"auto"`` compiles: every CUDA input, CPU inputs of at least
    :data:`MIN_COMPILED_ELEMENTS` logits."""
    return device_type == "cuda" or (device_type == "cpu" and elements >= MIN_COMPILED_ELEMENTS)


def record_run(path: str) -> None:
    """Count one pass on ``path`` (``"compiled-one-pass"``, ``"eager-gradient"``, ...)."""
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


def known_options(options: dict[str, Any] | None) -> dict[str, Any] | None:
    """``options`` without those this version of inductor does not have (torch.compile refuses
    an unknown one; ``realize_opusers_threshold`` is newer than torch 2.11), each such option
    logged once: they are tuning hints, the kernel is still right without them."""
    if not options:
        return options
    from torch._inductor import config

    known = config.get_config_copy()
    for name in options:
        if name not in known:
            _say_once(
                f"option-{name}",
                f"torch_imbalance: inductor option {name!r} is unknown to torch "
                f"{torch.__version__}; compiling without it (the kernels may be slower).",
            )
    return {name: value for name, value in options.items() if name in known}


def compiled_kernel(
    key: Hashable,
    function: Callable[..., Any],
    options: dict[str, Any] | None = None,
    **keywords: Any,
) -> Callable[..., Any]:
    """``torch.compile`` of ``function`` with ``keywords`` bound, built once per ``key``."""
    kernel = _kernels.get(key)
    if kernel is None:
        # fullgraph: a graph break would split the one loop into several (and slowly).
        kernel = _kernels[key] = _PerSignature(function, options, keywords)
    return kernel


def in_logit_loop(logit: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """An anchor for the laws: ``value + 0·logit``, a (null) read of a logit, so that inductor
    iterates ``value`` like the logits (an ``(N, S)`` nest) and fuses it into their loop.

    Why: inductor realises some per-element nodes into buffers (on CPU every ``exp`` or ``log``
    with more than one user); a node that then reads only such contiguous ``(N, 1, S)`` buffers
    gets a flat ``N·S`` loop that cannot join the nest over the strided logits. Without it the
    general-γ Dual Focal kernel ran in three loops with ten per-pixel buffers (seg-4 12.2 ms),
    with it in one loop with none (9.5 ms); ``tests/functional/test_compiled.py`` fails when a
    per-element buffer reappears. A non-finite logit makes the value NaN, as it does the loss.
    """
    return functools.partial(_plus_null_read, logit=logit)


def _plus_null_read(value: torch.Tensor, logit: torch.Tensor) -> torch.Tensor:
    return value + 0.0 * logit


def _specialise(function: Callable[..., Any], number: int, **keywords: Any) -> Callable[..., Any]:
    """A copy of ``function`` with its own code object and the keyword-only arguments bound.

    Why: torch.compile keeps its cache (and its recompile limit, 8) per code object; a copy per
    configuration keeps the configurations from evicting each other.
    """
    code = function.__code__.replace(co_name=f"{function.__name__}_{number}")
    copy = types.FunctionType(code, function.__globals__, code.co_name)
    copy.__kwdefaults__ = {**(function.__kwdefaults__ or {}), **keywords}
    return copy


def _signature(values: tuple[Any, ...] | list[Any], devices: set[str]) -> Hashable:
    """What of the kernel arguments torch.compile guards on beyond sizes: rank, dtype, device,
    ``requires_grad`` of a tensor and the rank of the tensor it views, the type of anything
    else (nested in tuples). Adds the tensors' device types to ``devices``."""
    described: list[Any] = []
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
    """``torch.compile`` of ``function`` (keywords bound), one compiled copy per call signature
    (:func:`_signature` of the arguments, grad mode, autocast state).

    Why: dynamo allows 8 compiled versions of one code object and past that runs the function
    uncompiled, silently and several times slower. One kernel sees weighted and unweighted
    calls, 2-D to 5-D inputs, training under autocast and evaluation without; with a copy per
    signature each copy sees only new sizes (one recompile to dynamic sizes).
    """

    def __init__(
        self,
        function: Callable[..., Any],
        options: dict[str, Any] | None,
        keywords: dict[str, Any],
    ) -> None:
        self.function, self.options, self.keywords = function, options, keywords
        self.copies: dict[Hashable, Callable[..., Any]] = {}

    def __call__(self, *args: Any) -> Any:
        devices: set[str] = set()
        signature = (
            _signature(args, devices),
            torch.is_grad_enabled(),
            tuple(sorted((d, torch.is_autocast_enabled(d)) for d in devices)),
        )
        compiled = self.copies.get(signature)
        if compiled is None:
            kernel = _specialise(self.function, next(_copy_numbers), **self.keywords)
            options = known_options(self.options)
            compiled = torch.compile(kernel, fullgraph=True, options=options)
            self.copies[signature] = compiled
        return compiled(*args)
