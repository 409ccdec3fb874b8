"""Label counts: a batch's labels per class, and the normalisers of a mean derived from them."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from torch_imbalance.functional import _compiled
from torch_imbalance.functional._classwise import MASKED_SUM_CLASSES


def label_counts(target: torch.Tensor, num_classes: int, ignore_index: int | None) -> torch.Tensor:
    """How many elements of ``target`` hold each class ``(C,)`` (float32; ``ignore_index`` and
    values outside ``[0, C)`` not counted), with no host sync. Large inputs with few classes
    are counted in one compiled loop (one accumulator per class); otherwise by ``scatter_add``.

    Examples:
        >>> label_counts(torch.tensor([0, 2, 2, -100]), 3, ignore_index=-100)
        tensor([1., 0., 2.])
    """
    if _compiled.wants_compiled(target) and num_classes <= MASKED_SUM_CLASSES:
        key = ("label-counts", num_classes, ignore_index)
        try:
            kernel = _compiled.compiled_kernel(
                key, _count, num_classes=num_classes, ignore_index=ignore_index, masked=True
            )
            counts: torch.Tensor = kernel(target)
        except Exception as error:
            _compiled.mark_broken(error)
        else:
            _compiled.record_run("compiled-counts")
            return counts
    return _count(target, num_classes=num_classes, ignore_index=ignore_index, masked=False)


def _count(
    target: torch.Tensor, *, num_classes: int, ignore_index: int | None, masked: bool
) -> torch.Tensor:
    """:func:`label_counts`: ``masked`` (for a compiled kernel, few classes): one masked sum
    per class, which the compiler runs as one loop with an accumulator per class; else one
    ``scatter_add`` into a bin per class."""
    flat = target.reshape(-1)
    if masked and num_classes <= MASKED_SUM_CLASSES:
        zero = torch.zeros((), dtype=torch.float32, device=target.device)
        return torch.stack(
            [
                zero if c == ignore_index else (flat == c).sum().to(torch.float32)
                for c in range(num_classes)
            ]
        )
    flat = flat.long()
    keep = (flat >= 0) & (flat < num_classes)
    if ignore_index is not None:
        keep &= flat != ignore_index
    bins = torch.where(keep, flat, num_classes)  # an extra bin for what is not counted
    ones = torch.ones((), device=target.device).expand(bins.shape)  # no full-size buffer
    counts = torch.zeros(num_classes + 1, device=target.device).scatter_add_(0, bins, ones)
    return counts[:num_classes]


@dataclass(frozen=True)
class Normalisers:
    """How a reduced loss is normalised, per term: ``"sum"`` (factor 1), ``"weight"``
    (``1 / Σ w`` over the labelled elements, ``F.cross_entropy``'s mean), ``"count"``
    (``1 / count`` of the labelled elements) or ``"numel"`` (``1 / numel`` of the target: a
    multi-label mean's gradient scale). The driver computes the factors inside the compiled
    kernel (no second call; on a GPU each of their few scalar operations would otherwise be a
    kernel launch), or once before the eager chunks.
    """

    kinds: tuple[str, ...]
    classes: int
    ignore_index: int | None
    dtype: torch.dtype

    def __call__(
        self,
        target: torch.Tensor,
        class_weight: torch.Tensor | None,
        counts: torch.Tensor | None,
        *,
        compiled: bool,
    ) -> torch.Tensor | None:
        """The factors ``(len(kinds),)`` in ``dtype``, or None when all are sums. ``counts``:
        the batch's :func:`label_counts` where the caller has them already (adaptive class
        weights count the same labels), else counted here (no host sync)."""
        if all(kind == "sum" for kind in self.kinds):
            return None
        one = torch.ones((), dtype=self.dtype, device=target.device)
        if self.kinds == ("numel",):
            return (one / max(target.numel(), 1)).reshape(1)
        if counts is None:
            counts = _count(
                target, num_classes=self.classes, ignore_index=self.ignore_index, masked=compiled
            )
        counts = counts.to(self.dtype)
        total = counts.sum()
        totals = {
            "weight": total if class_weight is None else (counts * class_weight).sum(),
            "count": total,
        }
        tiny = torch.finfo(self.dtype).tiny
        return torch.stack(
            [one if kind == "sum" else 1.0 / totals[kind].clamp_min(tiny) for kind in self.kinds]
        )
