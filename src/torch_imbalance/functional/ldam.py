"""LDAM: label-distribution-aware margin loss (Cao et al., NeurIPS 2019)."""

from __future__ import annotations

import torch

from torch_imbalance._checks import check_class_counts_match, check_range
from torch_imbalance._reduce import (
    class_dim_view,
    mask_multilabel,
    multilabel_sign,
    multilabel_valid,
)
from torch_imbalance._types import CountsLike, Reduction, Task
from torch_imbalance.functional._common import log_sigmoid, multilabel_chunk_loss, prepare
from torch_imbalance.functional._fused import GapHead, reduced_gap_loss
from torch_imbalance.functional._heads import cross_entropy_head, multilabel_ldam_entries
from torch_imbalance.weights import ldam_margins


def resolve_margins(
    class_counts: CountsLike | None,
    margins: torch.Tensor | None,
    max_margin: float,
    input: torch.Tensor,
    dtype: torch.dtype,
) -> torch.Tensor:
    """The per-class margins ``Δ`` on the logits' device, from counts or given directly."""
    if (class_counts is None) == (margins is None):
        raise ValueError("pass exactly one of class_counts (to derive margins) or margins")
    if margins is None:
        check_range("max_margin", max_margin, 0.0, low_inclusive=False)
        margins = ldam_margins(class_counts, max_margin, torch.float64)
    check_class_counts_match(
        margins, input, "class_counts" if class_counts is not None else "margins"
    )
    return margins.to(device=input.device, dtype=dtype)


def ldam_head(margins: torch.Tensor, scale: float) -> GapHead:
    """The LDAM logits ``s · (z − Δ_t e_t)`` as a target-gap transform."""
    return GapHead(scale=scale, shift=scale * margins)


def multilabel_ldam_terms(
    logits: torch.Tensor, sign: torch.Tensor, margins: torch.Tensor, scale: float
) -> torch.Tensor:
    """Unweighted ``BCE(s · (z − Δ_c y), y)`` per entry ``(n, C, *)``."""
    shifted = logits - torch.where(sign > 0, class_dim_view(margins, logits.ndim), 0.0)
    return -log_sigmoid(scale * shifted * sign)


def _multilabel_ldam_chunk(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    gamma: None,
    margins: torch.Tensor,
    scale: float,
    weight: torch.Tensor | None,
    ignore_index: int | None,
    dtype: torch.dtype,
) -> torch.Tensor:
    z = logits.to(dtype)
    sign = multilabel_sign(target, multilabel_valid(target, ignore_index), dtype)
    return mask_multilabel(
        multilabel_ldam_terms(z, sign, margins, scale), target, weight, ignore_index
    )


def ldam_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    class_counts: CountsLike | None = None,
    *,
    margins: torch.Tensor | None = None,
    max_margin: float = 0.5,
    scale: float = 30.0,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    task: Task = "multiclass",
    validate: bool = True,
) -> torch.Tensor:
    r"""Label-distribution-aware margin loss.

    Multi-class: :math:`\ell_i = w_{t_i}\,\mathrm{CE}(s\,(z_i - \Delta_{t_i} e_{t_i}), t_i)` with
    margins :math:`\Delta_j = m_{\max} (n_{\min} / n_j)^{1/4}`: the margin is subtracted from the
    target logit only, then every logit is scaled by ``s``.
    Multi-label (our extension): :math:`\ell_{ic} = w_c\,\mathrm{BCE}(s\,(z_{ic} - \Delta_c y_{ic}),
    y_{ic})`, with counts = positives per class.

    LDAM is designed for cosine logits in ``[-1, 1]`` (use :class:`~torch_imbalance.NormedLinear`);
    with a plain linear head ``s = 30`` inflates the logits, so lower ``scale`` there.

    Args:
        input: logits ``(N, C)`` or ``(N, C, *spatial)``.
        target: class indices ``(N, *spatial)`` or 0/1 labels of ``input``'s shape.
        class_counts: training count per class ``(C,)``; alternatively give ``margins``.
        margins: precomputed per-class margins ``(C,)``.
        max_margin: the largest margin (of the rarest class), ``> 0``.
        scale: logit scale ``s > 0``.
        weight: per-class weights ``(C,)`` (e.g. from deferred re-weighting).
        ignore_index: target value that contributes nothing.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"``.
        task: ``"multiclass"`` or ``"multilabel"``.
        validate: check logits are finite and targets in range (costs a device sync).

    Returns:
        The reduced loss, or per element for ``reduction="none"``.

    Example:
        >>> import torch
        >>> logits = torch.tensor([[0.9, 0.1, -0.3], [0.2, 0.4, 0.8]])
        >>> ldam_loss(logits, torch.tensor([0, 2]), class_counts=[100, 10, 1])
        tensor(1.5255)
    """
    check_range("scale", scale, 0.0, low_inclusive=False)
    dtype, target, checks = prepare(task, input, target, weight, ignore_index, reduction, validate)
    margins = resolve_margins(class_counts, margins, max_margin, input, dtype)
    if task == "multiclass":
        heads = (ldam_head(margins, scale),)
        return reduced_gap_loss(
            input,
            target,
            weight,
            ignore_index,
            heads,
            cross_entropy_head,
            dtype,
            reduction,
            checks=checks,
        )
    return multilabel_chunk_loss(
        _multilabel_ldam_chunk,
        multilabel_ldam_entries,
        input,
        target,
        None,
        reduction,
        ignore_index,
        margins=margins,
        scale=scale,
        weight=weight,
        dtype=dtype,
        checks=checks,
    )
