"""Numerically exact building blocks shared by the loss families (log-space probabilities)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from torch_imbalance._checks import (
    check_class_weight,
    check_logits,
    check_multiclass_target,
    check_multilabel_target,
    check_range,
    check_reduction,
    check_task,
    squeeze_target_channel,
)
from torch_imbalance._reduce import finish_multilabel
from torch_imbalance._types import Reduction
from torch_imbalance.functional._compiled import (
    mark_broken,
    multilabel_kernel,
    multilabel_one_pass_kernel,
    record_run,
    wants_compiled,
)
from torch_imbalance.functional._fused import _as_3d, chunkwise, one_pass_loss, one_pass_wanted
from torch_imbalance.functional._heads import log1p_of_small

GammaLike = float | torch.Tensor


def log_prob_complement_at(
    logits: torch.Tensor, index: torch.Tensor, lse: torch.Tensor
) -> torch.Tensor:
    """``log(1 − softmax(z)[index])`` computed as ``logsumexp_{j≠index} z_j − logsumexp_j z_j``.

    Exact for saturated predictions where ``1 − p`` rounds to 0 (then ``log1p(−p)`` is ``−inf``).

    Args:
        logits: ``(N, C, *)`` logits.
        index: ``(N, *)`` class index per element.
        lse: ``(N, *)`` ``logsumexp`` of ``logits`` over dim 1.
    """
    masked = logits.scatter(1, index.unsqueeze(1), float("-inf"))
    return torch.logsumexp(masked, dim=1) - lse


def log_prob_complement(logits: torch.Tensor, log_prob: torch.Tensor) -> torch.Tensor:
    """``log(1 − p_c)`` for every class ``c`` of a softmax, exact everywhere.

    Only the arg-max class can have ``p > 1/2``; for it ``log(1 − p)`` comes from a logsumexp
    over the other classes, for all others ``log1p(−p)`` is accurate (``p ≤ 1/2``).
    """
    lse = torch.logsumexp(logits, dim=1)
    top = logits.argmax(dim=1)
    is_top = torch.arange(logits.shape[1], device=logits.device).view(
        1, -1, *([1] * (logits.ndim - 2))
    ) == top.unsqueeze(1)
    # Zero p at the arg-max before log1p: the unused branch must not get inf/NaN gradients.
    small = torch.where(is_top, 0.0, log_prob.exp())
    top_value = log_prob_complement_at(logits, top, lse).unsqueeze(1)
    return torch.where(is_top, top_value, torch.log1p(-small))


def power_from_log(log_base: torch.Tensor, exponent: GammaLike) -> torch.Tensor:
    """``base ** exponent`` from ``log(base)``: finite value and gradients even where base is 0.

    ``exp(γ · log b)`` has the bounded derivative ``γ b^γ · d(log b)``, unlike ``b ** γ`` whose
    derivative ``γ b^(γ−1)`` is infinite at ``b = 0`` for ``γ < 1``.
    """
    if isinstance(exponent, torch.Tensor):
        exponent = exponent.to(log_base.dtype)
    return torch.exp(exponent * log_base)


#: Per compute dtype: below ``−linear``, ``log σ(x) = x`` to rounding (``log1p(e^x) < ε|x|/2``)
#: and its slope 1; above ``flat``, ``log σ(x) ≈ −e^{−x}`` is taken at ``flat`` and its slope
#: is 0 (both off by at most ``e^{−flat}``: 2·10⁻²² in float32).
_LOG_SIGMOID_BOUNDS = {torch.float64: (37.0, 600.0)}
_LOG_SIGMOID_DEFAULT = (17.0, 50.0)


def _softplus_of_minus_abs(
    x: torch.Tensor, low: float, high: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x < 0, log(1 + e^{−|x|}))`` with ``x`` bounded to ``[low, high]`` inside the ``exp``.
    Branches by sign, not ``min(x, 0)`` and ``|x|``: their kinks at 0 would give the logs
    built on it slope 1, not 1/2."""
    bounded = x.clamp(low, high)
    negative = x < 0
    return negative, log1p_of_small(torch.where(negative, bounded, -bounded).exp())


def log_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """``log σ(x)`` whose value and derivative make no subnormal float.

    Why: ``F.logsigmoid`` and its derivative take ``e^{−|x|}``, subnormal for ``|x| > 87`` in
    float32 (a ~100× slower path on x86): multi-label LDAM's ``s = 30`` put half the entries
    there. The input of ``e^{−|x|}`` is bounded to where the function is not yet flat to
    rounding, and its ``log1p`` is ``_heads.log1p_of_small``; autograd's derivative of this
    form multiplies only normal floats. (A custom autograd function with the derivative
    written out was 10–15 % faster but made inductor keep full-size buffers: multi-label LMF
    32 → 96 MiB on vol-4.)
    """
    linear, flat = _LOG_SIGMOID_BOUNDS.get(x.dtype, _LOG_SIGMOID_DEFAULT)
    negative, softplus = _softplus_of_minus_abs(x, -linear, flat)
    return torch.where(negative, x, 0.0) - softplus


def log_sigmoid_pair(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log σ(x), log σ(−x))`` from one ``e^{−|x|}`` and one ``log1p``, with no subnormal
    float in the values or autograd's derivatives (as :func:`log_sigmoid`).

    Why: the multi-label focal and Dual Focal losses take both logs per entry; two calls of
    :func:`log_sigmoid` cost two ``exp`` and two ``log1p`` (``log1p`` is the slowest of the
    vectorised functions here: 2× ``log``). ``|x|`` is bounded at ``flat`` on both sides (beyond
    it both functions are linear or flat to ``e^{−flat}``).
    """
    _, flat = _LOG_SIGMOID_BOUNDS.get(x.dtype, _LOG_SIGMOID_DEFAULT)
    negative, softplus = _softplus_of_minus_abs(x, -flat, flat)
    return torch.where(negative, x, 0.0) - softplus, torch.where(negative, 0.0, -x) - softplus


def compute_dtype(input: torch.Tensor) -> torch.dtype:
    """Half-precision logits are computed in float32; other dtypes are kept."""
    return torch.float32 if input.dtype in (torch.float16, torch.bfloat16) else input.dtype


def softplus(x: torch.Tensor) -> torch.Tensor:
    """``log(1 + e^x)`` exact for every ``x`` (torch's ``F.softplus`` linearises above 20)."""
    return -F.logsigmoid(-x)


def check_gamma(gamma: GammaLike) -> None:
    """``γ ≥ 0``; tensors (learnable γ) must be scalars.

    The value of a tensor γ is checked only on the CPU: elsewhere reading it would synchronise
    the device on every call (a learnable γ is kept in range by its parametrisation).
    """
    if isinstance(gamma, torch.Tensor):
        if gamma.numel() != 1:
            raise ValueError(f"gamma must be a scalar, got a tensor of shape {tuple(gamma.shape)}")
        if gamma.device.type != "cpu" or torch.compiler.is_compiling():
            return
    check_range("gamma", gamma, 0.0)


#: Value checks left to the kernel that computes the loss (None: nothing left to check).
Checks = Callable[[], None] | None


def _run_or_defer(
    checks: Callable[[], None], validate: bool, input: torch.Tensor, reduction: Reduction
) -> Checks:
    """Run the value checks now, or return them to the caller when a one-pass kernel will do
    them in its own loops instead of separate passes over the logits and targets (see
    ``_fused.one_pass_loss``); None when there is nothing (left) to check."""
    if not validate:
        return None
    if one_pass_wanted(input, reduction):
        return checks
    checks()
    return None


def prepare_multiclass(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    ignore_index: int,
    reduction: Reduction,
    validate: bool,
) -> tuple[torch.dtype, torch.Tensor, Checks]:
    """Validate a multi-class call; returns the compute dtype (float32 for half inputs), the
    target (a dense ``(N, 1, *)`` label map squeezed to ``(N, *)``) and the value checks left
    to the loss's kernel (finite logits, labels in range), which must run them."""
    check_reduction(reduction)
    check_logits(input, validate=False)
    target = squeeze_target_channel(input, target)
    check_multiclass_target(input, target, ignore_index, validate=False)
    check_class_weight(weight, input)

    def checks() -> None:
        check_logits(input)
        check_multiclass_target(input, target, ignore_index)

    return compute_dtype(input), target, _run_or_defer(checks, validate, input, reduction)


def prepare_multilabel(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    ignore_index: int | None,
    reduction: Reduction,
    validate: bool,
) -> tuple[torch.dtype, torch.Tensor, Checks]:
    """Validate a multi-label call; returns the compute dtype (float32 for half inputs), the
    target unchanged and the value checks left to the loss's kernel, which must run them."""
    check_reduction(reduction)
    check_logits(input, validate=False)
    check_multilabel_target(input, target, ignore_index, validate=False)
    check_class_weight(weight, input)

    def checks() -> None:
        check_logits(input)
        check_multilabel_target(input, target, ignore_index)

    return compute_dtype(input), target, _run_or_defer(checks, validate, input, reduction)


def prepare(
    task: str,
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    ignore_index: int,
    reduction: Reduction,
    validate: bool,
) -> tuple[torch.dtype, torch.Tensor, Checks]:
    """Dispatch to the multi-class or multi-label validation; returns the compute dtype, the
    target to use and the value checks left to the loss's kernel."""
    check_task(task)
    if task == "multiclass":
        return prepare_multiclass(input, target, weight, ignore_index, reduction, validate)
    return prepare_multilabel(input, target, weight, ignore_index, reduction, validate)


def multilabel_chunk_loss(
    chunk_fn: Callable[..., torch.Tensor],
    entries: Callable[..., Any],
    input: torch.Tensor,
    target: torch.Tensor,
    gamma: GammaLike | None,
    reduction: Reduction,
    ignore_index: int | None,
    checks: Checks = None,
    **settings: Any,
) -> torch.Tensor:
    """Run a multi-label per-entry loss chunk by chunk and reduce it.

    ``chunk_fn(z, y, *gamma_param, gamma=..., ignore_index=..., **settings)`` returns the weighted,
    masked per-entry loss of a chunk; a tensor γ is passed as a differentiable input.
    ``entries``: the same loss's closed-form value and slope per entry (``_heads``), which a
    reduced loss runs on in one compiled pass.
    ``checks``: the value checks still to run (see :func:`prepare`).
    """
    if input.numel() > 0 and not torch.compiler.is_compiling() and wants_compiled(input):
        result = _compiled_multilabel(
            chunk_fn, entries, input, target, gamma, reduction, ignore_index, settings, checks
        )
        if result is not None:
            return result
    if checks is not None:
        checks()
    params = (gamma,) if isinstance(gamma, torch.Tensor) else ()
    fn = functools.partial(chunk_fn, gamma=gamma, ignore_index=ignore_index, **settings)
    loss = chunkwise(fn, input, target, *params)
    return finish_multilabel(loss, target, ignore_index, reduction)


def _compiled_multilabel(
    chunk_fn: Callable[..., torch.Tensor],
    entries: Callable[..., Any],
    input: torch.Tensor,
    target: torch.Tensor,
    gamma: GammaLike | None,
    reduction: Reduction,
    ignore_index: int | None,
    settings: dict[str, Any],
    checks: Checks,
) -> torch.Tensor | None:
    """The whole-tensor compiled form of :func:`multilabel_chunk_loss` (a mean or a sum: loss
    and gradient from one loop, see ``_fused.one_pass_loss``), or None to fall back."""
    learnable = isinstance(gamma, torch.Tensor)
    if reduction != "none" and settings.get("weight") is None:  # the one-pass kernel's input
        dtype = settings.get("dtype", compute_dtype(input))
        settings = {**settings, "weight": input.new_ones(input.shape[1], dtype=dtype)}
    tensors = {k: v for k, v in settings.items() if isinstance(v, torch.Tensor)}
    statics = {k: v for k, v in settings.items() if k not in tensors}
    if not learnable:
        statics["gamma"] = None if gamma is None else float(gamma)
    try:
        hash(tuple(statics.items()))
    except TypeError:  # a setting the kernel cache cannot key on: the eager chunks serve it
        return None
    static_items = tuple(sorted(statics.items(), key=lambda item: item[0]))
    if reduction != "none":
        wants_gamma = learnable and gamma.requires_grad  # type: ignore[union-attr]
        dtype = settings.get("dtype", compute_dtype(input))
        return one_pass_loss(
            input,
            gamma if learnable else 0.0,  # type: ignore[arg-type]
            lambda: multilabel_one_pass_kernel(
                entries,
                static_items,
                tuple(tensors),
                learnable,
                wants_gamma,
                ignore_index,
                reduction,
            ),
            (_as_3d(target), *tensors.values()),
            dtype,
            checks,
        )
    try:
        kernel = multilabel_kernel(
            chunk_fn,
            static_items,
            tuple(tensors),
            learnable,
            ignore_index,
            reduction,
            finish_multilabel,
        )
        loss = kernel(input, target, gamma if learnable else None, *tensors.values())
    except Exception as error:
        mark_broken(error)
        return None
    record_run("compiled-multilabel")
    return loss
