"""Prior-based baselines: Balanced Softmax, logit adjustment, and Poly-1 cross-entropy."""

from __future__ import annotations

import functools

import numpy as np
import torch

from torch_imbalance._checks import as_class_counts, check_class_counts_match, check_range
from torch_imbalance._types import CountsLike, Reduction
from torch_imbalance.functional._common import check_label_smoothing, prepare_multiclass
from torch_imbalance.functional._gap import GapHead, gap_loss
from torch_imbalance.functional._math import Anchor, LogScales, Parts, cutoff, sigmoid_parts
from torch_imbalance.functional.focal import cross_entropy_head


def poly1_head(
    gaps: list[torch.Tensor],
    gamma: torch.Tensor | float,
    *,
    epsilon: float,
    log_scales: LogScales,
    anchor: Anchor = None,
) -> Parts:
    r"""Poly-1 (Leng et al. 2022, eq. 3) of one element as a law of its gap ``u``:
    :math:`\ell = -\log p_t + \epsilon (1 - p_t) = \mathrm{softplus}(u) + \epsilon\,\sigma(u)`,
    slope :math:`\sigma(u) + \epsilon\,\sigma(u)\,p_t` (``gamma`` unused)."""
    assert log_scales is not None
    gap = cutoff(gaps[0], 0.0, log_scales[0])
    cross_entropy, _, one_minus, p_t = sigmoid_parts(gap, anchor)
    slope = one_minus * (1 + epsilon * p_t)
    return cross_entropy + epsilon * one_minus, [slope], None


def log_prior_offset(
    class_counts: CountsLike,
    tau: float = 1.0,
    normalize: bool = True,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    r"""Per-class logit offset :math:`\tau \log \pi_j` (``normalize``) or :math:`\tau \log n_j`.

    Examples:
        >>> import torch
        >>> log_prior_offset([3, 1], dtype=torch.float32)
        tensor([-0.2877, -1.3863])
    """
    counts = as_class_counts(class_counts)
    values = counts / counts.sum() if normalize else counts
    return torch.as_tensor(tau * np.log(values), dtype=dtype)


def offset_cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    offset: torch.Tensor,
    *,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    validate: bool = True,
) -> torch.Tensor:
    """``CE(z + offset, t)`` with a per-class offset ``(C,)``: the core of the prior losses."""
    check_label_smoothing(label_smoothing)
    dtype, target, checks = prepare_multiclass(
        input, target, weight, ignore_index, reduction, validate
    )
    check_class_counts_match(offset, input, "class_counts")
    heads = (GapHead(offset=offset.to(device=input.device, dtype=dtype)),)
    return gap_loss(
        input, target, weight, ignore_index, heads, cross_entropy_head, dtype, reduction,
        checks=checks, label_smoothing=label_smoothing,
    )  # fmt: skip


def balanced_softmax_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    class_counts: CountsLike,
    *,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    validate: bool = True,
) -> torch.Tensor:
    r"""Balanced Softmax (Ren et al., NeurIPS 2020): :math:`\mathrm{CE}(z + \log n, t)`.

    Train with it; predict with ``argmax z`` (without the offset).

    Args:
        input: logits ``(N, C)`` or ``(N, C, *spatial)``.
        target: class indices ``(N, *spatial)``.
        class_counts: training count per class ``(C,)``.
        weight: per-class weights ``(C,)``.
        ignore_index: target value that contributes nothing.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"``.
        label_smoothing: ``ε ∈ [0, 1]``: the target distribution ``(1 − ε)·onehot + ε/C``, as
            ``F.cross_entropy(..., label_smoothing=ε)`` (multiclass only).
        validate: check logits are finite and targets in range.

    Returns:
        The reduced loss, or per element for ``reduction="none"``.

    Examples:
        >>> import torch
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
        >>> balanced_softmax_loss(logits, torch.tensor([0, 2]), class_counts=[100, 10, 1])
        tensor(0.9921)
    """
    offset = log_prior_offset(class_counts, normalize=False)
    return offset_cross_entropy(
        input,
        target,
        offset,
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        validate=validate,
        label_smoothing=label_smoothing,
    )


def logit_adjusted_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    class_counts: CountsLike,
    *,
    tau: float = 1.0,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    validate: bool = True,
) -> torch.Tensor:
    r"""Logit-adjusted loss (Menon et al., ICLR 2021): :math:`\mathrm{CE}(z + \tau \log \pi, t)`.

    Args:
        input: logits ``(N, C)`` or ``(N, C, *spatial)``.
        target: class indices ``(N, *spatial)``.
        class_counts: training count per class ``(C,)``.
        tau: temperature :math:`\tau \ge 0` of the prior.
        weight: per-class weights ``(C,)``.
        ignore_index: target value that contributes nothing.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"``.
        label_smoothing: ``ε ∈ [0, 1]``: the target distribution ``(1 − ε)·onehot + ε/C``, as
            ``F.cross_entropy(..., label_smoothing=ε)`` (multiclass only).
        validate: check logits are finite and targets in range.

    Returns:
        The reduced loss, or per element for ``reduction="none"``.

    Examples:
        >>> import torch
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
        >>> logit_adjusted_loss(logits, torch.tensor([0, 2]), class_counts=[100, 10, 1])
        tensor(0.9921)
    """
    check_range("tau", tau, 0.0)
    offset = log_prior_offset(class_counts, tau)
    return offset_cross_entropy(
        input,
        target,
        offset,
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        validate=validate,
        label_smoothing=label_smoothing,
    )


def poly1_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    *,
    epsilon: float = 1.0,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    validate: bool = True,
) -> torch.Tensor:
    r"""Poly-1 cross-entropy (Leng et al., ICLR 2022): :math:`\mathrm{CE} + \epsilon (1 - p_t)`.

    ``1 − p_t = σ(u)`` with the target gap ``u``: exact when ``p_t`` is close to 1. With ``weight``
    the whole element is weighted by ``w[t]``.

    Args:
        input: logits ``(N, C)`` or ``(N, C, *spatial)``.
        target: class indices ``(N, *spatial)``.
        epsilon: coefficient of the first polynomial term (``≥ −1`` keeps the loss monotone).
        weight: per-class weights ``(C,)``.
        ignore_index: target value that contributes nothing.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"``.
        validate: check logits are finite and targets in range.

    Returns:
        The reduced loss, or per element for ``reduction="none"``.

    Examples:
        >>> import torch
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
        >>> poly1_loss(logits, torch.tensor([0, 1]))
        tensor(2.1554)
    """
    check_range("epsilon", epsilon, -1.0)
    dtype, target, checks = prepare_multiclass(
        input, target, weight, ignore_index, reduction, validate
    )
    head = functools.partial(poly1_head, epsilon=epsilon)  # softplus(u) + ε σ(u)
    return gap_loss(
        input, target, weight, ignore_index, (GapHead(),), head, dtype, reduction, checks=checks
    )
