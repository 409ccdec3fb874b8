"""Label counts: a batch's labels per class, and the normalisers of a mean derived from them."""

from __future__ import annotations

import torch

from torch_imbalance.functional import _compiled
from torch_imbalance.functional._classwise import MASKED_SUM_CLASSES


def label_counts(target: torch.Tensor, num_classes: int, ignore_index: int | None) -> torch.Tensor:
    """How many elements of ``target`` hold each class ``(C,)`` (float32; ``ignore_index`` and
    values outside ``[0, C)`` not counted), with no host sync. Large inputs with few classes
    are counted in one compiled loop (one accumulator per class); otherwise by ``scatter_add``.

    Example:
        >>> label_counts(torch.tensor([0, 2, 2, -100]), 3, ignore_index=-100)
        tensor([1., 0., 2.])
    """
    if _compiled.wants_compiled(target) and num_classes <= MASKED_SUM_CLASSES:
        key = ("label-counts", num_classes, ignore_index)
        try:
            kernel = _compiled.compiled_kernel(
                key, _masked_counts, num_classes=num_classes, ignore_index=ignore_index
            )
            counts = kernel(target)
        except Exception as error:
            _compiled.mark_broken(error)
        else:
            _compiled.record_run("compiled-counts")
            return counts
    flat = target.reshape(-1).long()
    keep = (flat >= 0) & (flat < num_classes)
    if ignore_index is not None:
        keep &= flat != ignore_index
    bins = torch.where(keep, flat, num_classes)  # an extra bin for what is not counted
    ones = torch.ones((), device=target.device).expand(bins.shape)  # no full-size buffer
    counts = torch.zeros(num_classes + 1, device=target.device).scatter_add_(0, bins, ones)
    return counts[:num_classes]


def _masked_counts(  # pragma: no cover (compiled)
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


def normaliser_factors(
    target: torch.Tensor,
    class_weight: torch.Tensor | None,
    classes: int,
    ignore_index: int,
    normalisers: tuple[str, ...],
    dtype: torch.dtype,
    counts: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """Per normaliser, the factor of its terms: 1 (``"sum"``), ``1 / Σ w`` (``"weight"``) or
    ``1 / count`` (``"count"``) over the labelled elements, as ``(len(normalisers),)`` in
    ``dtype`` (None when all are sums); with no host sync. ``counts``: the batch's
    :func:`label_counts` where the caller has them already (adaptive class weights count the
    same labels), else they are counted here."""
    if all(kind == "sum" for kind in normalisers):
        return None
    if counts is None and _compiled.wants_compiled(target) and classes <= MASKED_SUM_CLASSES:
        # Counts and factors in one compiled call: on a GPU each of the factors' few scalar
        # operations would be a kernel launch of its own.
        key = ("normaliser-factors", classes, ignore_index, normalisers, dtype)
        try:
            kernel = _compiled.compiled_kernel(
                key,
                _counted_factors,
                num_classes=classes,
                ignore_index=ignore_index,
                normalisers=normalisers,
                dtype=dtype,
            )
            factors = kernel(target, class_weight)
        except Exception as error:
            _compiled.mark_broken(error)
        else:
            _compiled.record_run("compiled-counts")
            return factors
    if counts is None:
        counts = label_counts(target, classes, ignore_index)
    return _factors(counts, class_weight, normalisers, dtype)


def _counted_factors(  # pragma: no cover (compiled)
    target: torch.Tensor,
    class_weight: torch.Tensor | None,
    *,
    num_classes: int,
    ignore_index: int,
    normalisers: tuple[str, ...],
    dtype: torch.dtype,
) -> torch.Tensor:
    counts = _masked_counts(target, num_classes=num_classes, ignore_index=ignore_index)
    return _factors(counts, class_weight, normalisers, dtype)


def _factors(
    counts: torch.Tensor,
    class_weight: torch.Tensor | None,
    normalisers: tuple[str, ...],
    dtype: torch.dtype,
) -> torch.Tensor:
    """The normalisers' factors from the label counts (see :func:`normaliser_factors`)."""
    counts = counts.to(dtype)
    total = counts.sum()
    weight_total = total if class_weight is None else (counts * class_weight).sum()
    tiny = torch.finfo(dtype).tiny
    totals = {"weight": weight_total, "count": total}
    one = torch.ones((), dtype=dtype, device=counts.device)
    return torch.stack(
        [one if kind == "sum" else 1.0 / totals[kind].clamp_min(tiny) for kind in normalisers]
    )
