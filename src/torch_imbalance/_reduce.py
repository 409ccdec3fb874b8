"""Ignore masks, per-class weights and reductions shared by every loss.

The conventions are those of ``torch.nn.functional.cross_entropy`` (multi-class) and
``binary_cross_entropy_with_logits`` (multi-label), with one deliberate difference: a batch in
which every element is ignored reduces to ``0.0`` (still connected to the graph, so its
gradients are zeros) instead of NaN.
"""

from __future__ import annotations

from typing import Literal

import torch

from torch_imbalance._types import Reduction

Normalizer = Literal["weight", "count"]


def class_dim_view(vector: torch.Tensor, ndim: int) -> torch.Tensor:
    """Reshape a per-class vector ``(C,)`` to broadcast over ``(N, C, *)`` of rank ``ndim``."""
    return vector.view(1, -1, *([1] * (ndim - 2)))


def split_ignored(target: torch.Tensor, ignore_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(safe_target, valid)``: ignored positions replaced by class 0, and their mask."""
    valid = target != ignore_index
    safe_target = torch.where(
        valid, target, torch.zeros((), dtype=target.dtype, device=target.device)
    )
    return safe_target.long(), valid


def _safe_divide(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    # An empty (all-ignored) batch gives 0 / 0: return the 0 numerator, still in the graph.
    return numerator / denominator.clamp_min(torch.finfo(numerator.dtype).tiny)


def element_weights(
    safe_target: torch.Tensor, valid: torch.Tensor, weight: torch.Tensor | None, dtype: torch.dtype
) -> torch.Tensor:
    """``weight[t_i]`` per element (1 without weights), 0 where ignored: ``(N, *)``."""
    if weight is None:
        return valid.to(dtype)
    return weight.to(dtype)[safe_target] * valid


def finish_multiclass(
    weighted_loss: torch.Tensor, element_weight: torch.Tensor, reduction: Reduction
) -> torch.Tensor:
    """Reduce an already weighted and masked per-element loss like ``F.cross_entropy``."""
    if reduction == "none":
        return weighted_loss
    total = weighted_loss.sum()
    if reduction == "sum":
        return total
    return _safe_divide(total, element_weight.sum().to(total.dtype))


def reduce_multiclass(
    loss: torch.Tensor,
    safe_target: torch.Tensor,
    valid: torch.Tensor,
    weight: torch.Tensor | None,
    reduction: Reduction,
    normalizer: Normalizer = "weight",
) -> torch.Tensor:
    """Weight, mask and reduce an unweighted per-element loss ``(N, *)``.

    Element ``i`` is multiplied by ``weight[t_i]``; ignored elements contribute nothing.
    ``"mean"`` divides by ``Σ weight[t_i]`` over valid elements (``normalizer="weight"``, as
    ``F.cross_entropy``) or by the number of valid elements (``normalizer="count"``).
    """
    if weight is not None:
        element_weight = weight.to(loss.dtype)[safe_target] * valid
        loss = torch.where(valid, loss * element_weight, 0.0)
    else:
        element_weight = None
        loss = torch.where(valid, loss, 0.0)
    if reduction == "none":
        return loss
    total = loss.sum()
    if reduction == "sum":
        return total
    if normalizer == "weight" and element_weight is not None:
        return _safe_divide(total, element_weight.sum())
    return _safe_divide(total, valid.sum().to(loss.dtype))


def mask_multilabel(
    loss: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None, ignore_index: int | None
) -> torch.Tensor:
    """Weight entry ``(i, c)`` by ``weight[c]`` and zero ignored entries (``(n, C, *)`` chunks)."""
    if weight is not None:
        loss = loss * class_dim_view(weight.to(loss.dtype), loss.ndim)
    valid = multilabel_valid(target, ignore_index)
    return loss if valid is None else torch.where(valid, loss, 0.0)


def finish_multilabel(
    masked_loss: torch.Tensor, target: torch.Tensor, ignore_index: int | None, reduction: Reduction
) -> torch.Tensor:
    """Reduce an already weighted and masked per-entry loss like BCE-with-logits does."""
    if reduction == "none":
        return masked_loss
    total = masked_loss.sum()
    if reduction == "sum":
        return total
    valid = multilabel_valid(target, ignore_index)
    count = valid.sum() if valid is not None else target.numel()
    return _safe_divide(total, torch.as_tensor(count, dtype=total.dtype, device=total.device))


def multilabel_valid(target: torch.Tensor, ignore_index: int | None) -> torch.Tensor | None:
    """Mask of entries to keep, or ``None`` when nothing can be ignored."""
    if ignore_index is None:
        return None
    return target != ignore_index


def multilabel_sign(
    target: torch.Tensor, valid: torch.Tensor | None, dtype: torch.dtype
) -> torch.Tensor:
    """``2y − 1`` as ``dtype`` (ignored entries treated as negatives; they are masked later)."""
    positive = target == 1
    if valid is not None:
        positive = positive & valid
    return positive.to(dtype) * 2 - 1
