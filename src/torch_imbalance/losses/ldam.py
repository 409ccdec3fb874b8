"""Module form of the LDAM loss."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from torch_imbalance._checks import check_range
from torch_imbalance._types import CountsLike, Reduction, Task
from torch_imbalance.functional.ldam import ldam_loss
from torch_imbalance.losses._base import ImbalanceLoss
from torch_imbalance.weights import ldam_margins


class LDAMLoss(ImbalanceLoss):
    r"""LDAM loss (Cao et al., 2019) with margins :math:`\Delta_j = m_{\max}(n_{\min}/n_j)^{1/4}`.

    See :func:`torch_imbalance.functional.ldam_loss`. Designed for a cosine head
    (:class:`~torch_imbalance.NormedLinear`); wrap it in
    :class:`~torch_imbalance.DeferredReweighting` for LDAM-DRW.

    Args:
        class_counts: training count per class ``(C,)`` (positives per class for multilabel).
        max_margin: the largest margin ``> 0``.
        scale: logit scale ``s > 0``.
        weight: per-class weights ``(C,)``.
        ignore_index: target value that contributes nothing.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"``.
        task: ``"multiclass"`` or ``"multilabel"``.
        label_smoothing: ``ε ∈ [0, 1]``, as ``F.cross_entropy``'s (multiclass only).
        validate: check logits are finite and targets in range on every call.

    Examples:
        >>> import torch
        >>> criterion = LDAMLoss(class_counts=[500, 50, 5])
        >>> criterion.margins.float()
        tensor([0.1581, 0.2812, 0.5000])
        >>> criterion(torch.zeros(2, 3), torch.tensor([0, 2])).shape
        torch.Size([])
    """

    margins: torch.Tensor

    def __init__(
        self,
        class_counts: CountsLike,
        *,
        max_margin: float = 0.5,
        scale: float = 30.0,
        weight: torch.Tensor | Sequence[float] | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
        task: Task = "multiclass",
        validate: bool = True,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(
            weight=weight,
            ignore_index=ignore_index,
            reduction=reduction,
            task=task,
            validate=validate,
            label_smoothing=label_smoothing,
        )
        check_range("scale", scale, 0.0, low_inclusive=False)
        # float64, so that float64 inputs keep full precision; cast to the logits' dtype per call.
        self.register_buffer("margins", ldam_margins(class_counts, max_margin, torch.float64))
        self.max_margin = max_margin
        self.scale = scale

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ldam_loss(
            input,
            target,
            margins=self.margins,
            scale=self.scale,
            **self.conventions(),
        )

    def logit_scale(self) -> float:
        """LDAM's ``s``: a cosine head's probabilities are ``softmax(s · z)``."""
        return float(self.scale)

    def extra_repr(self) -> str:
        return f"max_margin={self.max_margin}, scale={self.scale}, " + super().extra_repr()
