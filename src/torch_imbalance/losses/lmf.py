"""Module form of the LMF loss."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from torch_imbalance._checks import check_range
from torch_imbalance._types import CountsLike, Reduction, Task
from torch_imbalance.functional._common import check_gamma
from torch_imbalance.functional.lmf import Variant, lmf_loss
from torch_imbalance.losses._base import ImbalanceLoss
from torch_imbalance.weights import ldam_margins


class LMFLoss(ImbalanceLoss):
    r"""LMF loss (Sadi, Chowdhury et al., 2022): :math:`\lambda_{ldam} L_{LDAM} + \lambda_{focal}
    L_{focal}` on the same logits.

    Defaults follow the paper's text (equal weights, ``γ = 1.5``, ``max_margin = 0.5``,
    ``s = 30``). :meth:`official` reproduces the authors' code (see
    :func:`torch_imbalance.functional.lmf_loss`); they used a plain linear classifier head.

    Args:
        class_counts: training count per class ``(C,)``.
        gamma: focal ``γ ≥ 0``.
        max_margin: the largest LDAM margin.
        scale: LDAM logit scale ``s``.
        focal_scale: scale of the logits the focal term sees (1, the paper: raw logits; ``scale``
            on a cosine head gives both terms the same temperature).
        ldam_weight: :math:`\lambda_{ldam}`.
        focal_weight: :math:`\lambda_{focal}`.
        weight: per-class weights ``(C,)`` of both terms (paper variant).
        ignore_index: target value that contributes nothing.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"``.
        task: ``"multiclass"`` or ``"multilabel"``.
        variant: ``"paper"`` or ``"official"``.
        label_smoothing: ``ε ∈ [0, 1]``, as ``F.cross_entropy``'s (multiclass only).
        validate: check logits are finite and targets in range on every call.

    Examples:
        >>> import torch
        >>> criterion = LMFLoss(class_counts=[500, 50, 5])
        >>> logits = torch.randn(8, 3, requires_grad=True)
        >>> criterion(logits, torch.randint(0, 3, (8,))).backward()
        >>> LMFLoss.official([500, 50, 5]).ldam_weight
        1.5
    """

    margins: torch.Tensor

    def __init__(
        self,
        class_counts: CountsLike,
        *,
        gamma: float = 1.5,
        max_margin: float = 0.5,
        scale: float = 30.0,
        focal_scale: float = 1.0,
        ldam_weight: float = 1.0,
        focal_weight: float = 1.0,
        weight: torch.Tensor | Sequence[float] | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
        task: Task = "multiclass",
        variant: Variant = "paper",
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
        check_gamma(gamma)
        check_range("scale", scale, 0.0, low_inclusive=False)
        check_range("focal_scale", focal_scale, 0.0, low_inclusive=False)
        check_range("ldam_weight", ldam_weight, 0.0)
        check_range("focal_weight", focal_weight, 0.0)
        if variant not in ("paper", "official"):
            raise ValueError(f"variant must be 'paper' or 'official', got {variant!r}")
        if variant == "official" and (task != "multiclass" or weight is not None):
            raise ValueError(
                "variant='official' is multiclass only and weights by the margins "
                "(weight must be None)"
            )
        # float64, so that float64 inputs keep full precision; cast to the logits' dtype per call.
        self.register_buffer("margins", ldam_margins(class_counts, max_margin, torch.float64))
        self.gamma = float(gamma)
        self.max_margin = max_margin
        self.scale = scale
        self.focal_scale = focal_scale
        self.ldam_weight = ldam_weight
        self.focal_weight = focal_weight
        self.variant: Variant = variant

    @classmethod
    def official(cls, class_counts: CountsLike, **overrides: Any) -> LMFLoss:
        """The authors' code: ``λ_ldam = 1.5``, ``λ_focal = 1``, ``γ = 1.5``, margins as weights."""
        settings: dict[str, Any] = {"gamma": 1.5, "ldam_weight": 1.5, "focal_weight": 1.0}
        settings.update(overrides)
        return cls(class_counts, variant="official", **settings)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return lmf_loss(
            input,
            target,
            margins=self.margins,
            gamma=self.gamma,
            scale=self.scale,
            focal_scale=self.focal_scale,
            ldam_weight=self.ldam_weight,
            focal_weight=self.focal_weight,
            variant=self.variant,
            **self.conventions(),
        )

    def logit_scale(self) -> float:
        """LDAM's ``s``: a cosine head's probabilities are ``softmax(s · z)``."""
        return float(self.scale)

    def extra_repr(self) -> str:
        return (
            f"variant={self.variant!r}, gamma={self.gamma:g}, ldam_weight={self.ldam_weight}, "
            f"focal_weight={self.focal_weight}, scale={self.scale}, "
            f"focal_scale={self.focal_scale}, " + super().extra_repr()
        )
