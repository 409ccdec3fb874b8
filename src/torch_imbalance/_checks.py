"""Argument and tensor validation shared by every loss.

Every check raises with the expected and the actual value, so that a user can fix the call
without reading our source. Checks that need to look at tensor *values* (finite logits, target
range) synchronise with the device; they run only when ``validate=True`` and never while
``torch.compile`` traces the loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

_REDUCTIONS = ("mean", "sum", "none")
_TASKS = ("multiclass", "multilabel")


def check_reduction(reduction: str) -> None:
    """Raise unless ``reduction`` is one of ``"mean"``, ``"sum"``, ``"none"``."""
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def check_task(task: str, supported: Sequence[str] = _TASKS) -> None:
    """Raise unless ``task`` is one of the tasks the loss supports."""
    if task not in supported:
        raise ValueError(f"task must be one of {tuple(supported)}, got {task!r}")


def check_range(
    name: str,
    value: float,
    low: float | None = None,
    high: float | None = None,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> None:
    """Raise ``ValueError`` unless ``low <= value <= high`` (bounds optional, inclusiveness set).

    Examples:
        >>> check_range("gamma", 2.0, 0.0)
        >>> check_range("rho", 0.5, 1.0)
        Traceback (most recent call last):
        ...
        ValueError: rho must be >= 1.0, got 0.5
    """
    value_f = float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
    if not np.isfinite(value_f):
        raise ValueError(f"{name} must be finite, got {value_f}")
    if low is not None and (value_f < low or (not low_inclusive and value_f == low)):
        op = ">=" if low_inclusive else ">"
        raise ValueError(f"{name} must be {op} {low}, got {value_f}")
    if high is not None and (value_f > high or (not high_inclusive and value_f == high)):
        op = "<=" if high_inclusive else "<"
        raise ValueError(f"{name} must be {op} {high}, got {value_f}")


def _validating() -> bool:
    """Value checks synchronise with the device and break compiled graphs: skip them there."""
    return not torch.compiler.is_compiling()


def check_logits(input: torch.Tensor, validate: bool = True) -> None:
    """Check ``input`` is floating-point logits ``(N, C, *)`` (and finite, if validating)."""
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"input must be a torch.Tensor of logits, got {type(input).__name__}")
    if not input.is_floating_point():
        raise TypeError(f"input must hold floating-point logits, got dtype {input.dtype}")
    if input.ndim < 2:
        raise ValueError(
            "input must have shape (N, C) or (N, C, *spatial) with classes on dim 1, "
            f"got shape {tuple(input.shape)}"
        )
    if input.shape[1] < 1:
        raise ValueError(
            f"input must have at least one class on dim 1, got shape {tuple(input.shape)}"
        )
    if validate and _validating() and input.numel() > 0:
        # min and max propagate NaN and ±inf: one read of the logits, no full-size mask.
        low, high = torch.aminmax(input.detach())
        if not bool(torch.isfinite(low) & torch.isfinite(high)):
            bad = int((~torch.isfinite(input)).sum())
            raise ValueError(
                f"input contains {bad} non-finite logit(s) (NaN or inf); expected finite values. "
                "Pass validate=False to skip this check."
            )


def squeeze_target_channel(input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Dense multi-class targets as MONAI pipelines hand them over, label maps ``(N, 1, *)``
    for logits ``(N, C, *)``, as ``(N, *)``; any other target unchanged.

    Examples:
        >>> squeeze_target_channel(torch.zeros(2, 3, 4, 4), torch.zeros(2, 1, 4, 4)).shape
        torch.Size([2, 4, 4])
    """
    if (
        isinstance(target, torch.Tensor)
        and input.ndim >= 3
        and target.ndim == input.ndim
        and target.shape[1] == 1
    ):
        return target.squeeze(1)
    return target


def check_multiclass_target(
    input: torch.Tensor, target: torch.Tensor, ignore_index: int, validate: bool = True
) -> None:
    """Check class-index targets ``(N, *)`` against logits ``(N, C, *)`` (a ``(N, 1, *)`` label
    map is squeezed by :func:`squeeze_target_channel` before this check)."""
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
    num_classes = input.shape[1]
    if num_classes < 2:
        raise ValueError(
            "multiclass losses need at least 2 classes on dim 1 of input "
            f"(for one binary label use task='multilabel' with C=1), got shape {tuple(input.shape)}"
        )
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise TypeError(
            "multiclass target must hold integer class indices (torch.long), "
            f"got dtype {target.dtype}; for 0/1 label maps use task='multilabel'"
        )
    expected = (input.shape[0], *input.shape[2:])
    if tuple(target.shape) != expected:
        raise ValueError(
            f"multiclass target must have shape {expected} for input of shape "
            f"{tuple(input.shape)}, got {tuple(target.shape)}"
        )
    if target.device != input.device:
        raise ValueError(f"target is on {target.device} but input is on {input.device}")
    if validate and _validating() and target.numel() > 0:
        labelled = torch.where(target == ignore_index, 0, target)
        low, high = torch.aminmax(labelled)
        if int(low) < 0 or int(high) >= num_classes:
            invalid = ((target < 0) | (target >= num_classes)) & (target != ignore_index)
            bad = target[invalid]
            raise ValueError(
                f"target holds class indices outside [0, {num_classes}) (ignore_index="
                f"{ignore_index}): found {sorted(set(torch.unique(bad)[:5].tolist()))} at "
                f"{int(invalid.sum())} position(s)"
            )


def check_multilabel_target(
    input: torch.Tensor, target: torch.Tensor, ignore_index: int | None, validate: bool = True
) -> None:
    """Check 0/1 targets of the same shape as the logits."""
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
    if tuple(target.shape) != tuple(input.shape):
        raise ValueError(
            f"multilabel target must have the same shape as input {tuple(input.shape)}, "
            f"got {tuple(target.shape)}"
        )
    if target.device != input.device:
        raise ValueError(f"target is on {target.device} but input is on {input.device}")
    if validate and _validating() and target.numel() > 0:
        invalid = (target != 0) & (target != 1)
        if ignore_index is not None:
            invalid &= target != ignore_index
        if bool(invalid.any()):
            found = sorted(set(torch.unique(target[invalid])[:5].tolist()))
            raise ValueError(
                f"multilabel target must hold 0 or 1 (or ignore_index={ignore_index}), "
                f"found {found} at {int(invalid.sum())} position(s)"
            )


def check_class_weight(
    weight: torch.Tensor | None, input: torch.Tensor, name: str = "weight"
) -> None:
    """Check a per-class weight vector ``(C,)`` against the logits."""
    if weight is None:
        return
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (C,), got {type(weight).__name__}")
    num_classes = input.shape[1]
    if weight.ndim != 1 or weight.shape[0] != num_classes:
        raise ValueError(
            f"{name} must have shape ({num_classes},) to match the {num_classes} classes on dim 1 "
            f"of input, got {tuple(weight.shape)}"
        )
    if weight.device != input.device:
        raise ValueError(f"{name} is on {weight.device} but input is on {input.device}")


def as_class_counts(class_counts: Sequence[float] | np.ndarray | torch.Tensor) -> np.ndarray:
    """Return ``class_counts`` as a float64 array, raising on zero, negative or missing counts.

    Examples:
        >>> as_class_counts([10, 3, 1])
        array([10.,  3.,  1.])
        >>> as_class_counts([10, 0, 1])
        Traceback (most recent call last):
        ...
        ValueError: class_counts must be positive for every class; class 1 has count 0.0
    """
    if isinstance(class_counts, torch.Tensor):
        counts = class_counts.detach().cpu().double().numpy()
    else:
        counts = np.asarray(class_counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size == 0:
        raise ValueError(
            f"class_counts must be a non-empty 1-D sequence (one count per class), got shape "
            f"{counts.shape}"
        )
    if not np.all(np.isfinite(counts)):
        raise ValueError(f"class_counts must be finite, got {counts.tolist()}")
    bad = np.flatnonzero(counts <= 0)
    if bad.size:
        detail = ", ".join(f"class {i} has count {counts[i]}" for i in bad[:10])
        raise ValueError(f"class_counts must be positive for every class; {detail}")
    return counts


def check_class_counts_match(counts: torch.Tensor, input: torch.Tensor, name: str) -> None:
    """Check that a per-class vector derived from ``class_counts`` matches the logits' classes."""
    if counts.shape[0] != input.shape[1]:
        raise ValueError(
            f"{name} has {counts.shape[0]} classes but input has {input.shape[1]} on dim 1 "
            f"(shape {tuple(input.shape)})"
        )
