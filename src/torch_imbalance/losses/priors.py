"""Module forms of the prior-based baselines."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from torch_imbalance._checks import check_range
from torch_imbalance._types import CountsLike, Reduction
from torch_imbalance.functional.priors import log_prior_offset, offset_cross_entropy, poly1_loss
from torch_imbalance.losses._base import ImbalanceLoss


class _OffsetCrossEntropy(ImbalanceLoss):
    """``CE(z + offset, t)`` with a per-class offset held as a buffer."""

    offset: torch.Tensor

    def __init__(
        self,
        offset: torch.Tensor,
        *,
        weight: torch.Tensor | Sequence[float] | None,
        ignore_index: int,
        reduction: Reduction,
        validate: bool,
        label_smoothing: float,
    ) -> None:
        super().__init__(
            weight=weight,
            ignore_index=ignore_index,
            reduction=reduction,
            validate=validate,
            supported_tasks=("multiclass",),
            label_smoothing=label_smoothing,
        )
        self.register_buffer("offset", offset)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return offset_cross_entropy(
            input,
            target,
            self.offset,
            **self.conventions(),
        )


class BalancedSoftmaxLoss(_OffsetCrossEntropy):
    r"""Balanced Softmax (Ren et al., 2020): :math:`\mathrm{CE}(z + \log n, t)`; predict with
    ``argmax z``.

    Examples:
        >>> import torch
        >>> criterion = BalancedSoftmaxLoss([100, 10, 1])
        >>> criterion(torch.zeros(2, 3), torch.tensor([0, 2]))
        tensor(2.4069)
    """

    def __init__(
        self,
        class_counts: CountsLike,
        *,
        weight: torch.Tensor | Sequence[float] | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
        validate: bool = True,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(
            log_prior_offset(class_counts, normalize=False),
            weight=weight,
            ignore_index=ignore_index,
            reduction=reduction,
            validate=validate,
            label_smoothing=label_smoothing,
        )


class LogitAdjustedLoss(_OffsetCrossEntropy):
    r"""Logit-adjusted loss (Menon et al., 2021): :math:`\mathrm{CE}(z + \tau \log \pi, t)`.

    Examples:
        >>> import torch
        >>> criterion = LogitAdjustedLoss([100, 10, 1], tau=1.0)
        >>> criterion(torch.zeros(2, 3), torch.tensor([0, 2]))
        tensor(2.4069)
    """

    def __init__(
        self,
        class_counts: CountsLike,
        *,
        tau: float = 1.0,
        weight: torch.Tensor | Sequence[float] | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
        validate: bool = True,
        label_smoothing: float = 0.0,
    ) -> None:
        check_range("tau", tau, 0.0)
        super().__init__(
            log_prior_offset(class_counts, tau),
            weight=weight,
            ignore_index=ignore_index,
            reduction=reduction,
            validate=validate,
            label_smoothing=label_smoothing,
        )
        self.tau = tau


class Poly1Loss(ImbalanceLoss):
    r"""Poly-1 cross-entropy (Leng et al., 2022): :math:`\mathrm{CE} + \epsilon (1 - p_t)`.

    Examples:
        >>> import torch
        >>> Poly1Loss(epsilon=1.0)(torch.zeros(2, 4), torch.tensor([0, 3]))
        tensor(2.1363)
    """

    def __init__(
        self,
        epsilon: float = 1.0,
        *,
        weight: torch.Tensor | Sequence[float] | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
        validate: bool = True,
    ) -> None:
        super().__init__(
            weight=weight,
            ignore_index=ignore_index,
            reduction=reduction,
            validate=validate,
            supported_tasks=("multiclass",),
        )
        check_range("epsilon", epsilon, -1.0)
        self.epsilon = epsilon

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return poly1_loss(
            input,
            target,
            epsilon=self.epsilon,
            **self.conventions(),
        )
