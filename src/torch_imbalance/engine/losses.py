"""Losses the harness offers beside the library's: ``dice_ce``, the standard segmentation
baseline, from segmentation-models-pytorch's Dice loss plus cross-entropy."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

HARNESS_LOSSES = ("dice_ce",)


class DiceCELoss(nn.Module):
    """``CE + soft Dice`` (smp ``DiceLoss("multiclass")``, mean over classes), unweighted, with
    an ignore value honoured by both terms."""

    def __init__(self, ignore_index: int | None = None) -> None:
        super().__init__()
        from segmentation_models_pytorch.losses import DiceLoss

        self.dice = DiceLoss("multiclass", from_logits=True, ignore_index=ignore_index)
        self.ignore_index = -100 if ignore_index is None else ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target, ignore_index=self.ignore_index) + self.dice(
            logits, target
        )

    # What the training loop asks of a loss (``torch_imbalance._types.TrainingLoss``).
    def logit_scale(self) -> float:
        return 1.0

    def set_epoch(self, epoch: int) -> None:
        """Nothing follows the epoch."""

    def training_state(self) -> dict[str, float | torch.Tensor]:
        return {}
