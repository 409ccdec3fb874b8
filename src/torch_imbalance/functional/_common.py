"""Argument handling shared by the loss families: γ, the compute dtype, and the validation
of a call (the value checks are left to the driver, which runs them only when its pass flags an
invalid input)."""

from __future__ import annotations

from collections.abc import Callable

import torch

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
from torch_imbalance._types import Reduction

GammaLike = float | torch.Tensor


def compute_dtype(input: torch.Tensor) -> torch.dtype:
    """Half-precision logits are computed in float32; other dtypes are kept."""
    return torch.float32 if input.dtype in (torch.float16, torch.bfloat16) else input.dtype


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
        check_range("gamma", float(gamma.detach()), 0.0)
        return
    check_range("gamma", gamma, 0.0)


def check_label_smoothing(label_smoothing: float, task: str = "multiclass") -> None:
    """``ε ∈ [0, 1]`` (``F.cross_entropy``'s range), and only for softmax losses: a multi-label
    loss has no ``1/C`` of the classes to spread (``F.binary_cross_entropy_with_logits`` has
    no label smoothing either; smooth the 0/1 targets there)."""
    check_range("label_smoothing", label_smoothing, 0.0, 1.0)
    if label_smoothing > 0 and task != "multiclass":
        raise ValueError(
            f"label_smoothing applies to task='multiclass' (a softmax over the classes); "
            f"got task={task!r} with label_smoothing={label_smoothing}"
        )


#: Value checks left to the kernel that computes the loss (None: nothing left to check).
Checks = Callable[[], None] | None


def _deferred(checks: Callable[[], None], validate: bool) -> Checks:
    """The value checks for the driver to run (it runs them before a per-element loss, and
    after a reduced one only when its pass found a NaN/inf logit or a label out of range: no
    separate passes over the logits and targets), or None when ``validate`` is off."""
    return checks if validate else None


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

    return compute_dtype(input), target, _deferred(checks, validate)


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

    return compute_dtype(input), target, _deferred(checks, validate)


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
