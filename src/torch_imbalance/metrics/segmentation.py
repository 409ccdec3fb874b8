"""Segmentation metrics over a whole split (one confusion matrix accumulated over every pixel,
not averaged per image; synchronised across processes under DDP)."""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics.classification import MulticlassConfusionMatrix

SEGMENTATION_PRIMARY_METRIC = "miou"


def build_segmentation_metrics(
    num_classes: int, ignore_index: int | None
) -> MulticlassConfusionMatrix:
    """A confusion matrix updated with ``(predicted classes (N, *), target (N, *))``."""
    return MulticlassConfusionMatrix(num_classes, ignore_index=ignore_index)


def summarise_segmentation(matrix: torch.Tensor, classes: list[str]) -> dict[str, Any]:
    """IoU and Dice per class, their means (background included; ``miou_foreground`` without
    class 0), pixel accuracy and the IoU of the rarest class (fewest ground-truth pixels).

    A class absent from both the ground truth and the predictions has no IoU (``nan``) and is
    left out of the means.
    """
    counts = matrix.double()
    true_positive = counts.diag()
    ground_truth = counts.sum(1)
    predicted = counts.sum(0)
    union = ground_truth + predicted - true_positive
    nan = torch.tensor(float("nan"), dtype=torch.float64)
    iou = torch.where(union > 0, true_positive / union.clamp_min(1), nan)
    dice_denominator = ground_truth + predicted
    dice = torch.where(dice_denominator > 0, 2 * true_positive / dice_denominator.clamp_min(1), nan)
    total = counts.sum()
    present = ground_truth > 0
    rarest = int(torch.where(present, ground_truth, torch.inf).argmin())
    return {
        "miou": float(iou.nanmean()),
        "mean_dice": float(dice.nanmean()),
        "miou_foreground": float(iou[1:].nanmean()) if len(classes) > 1 else float("nan"),
        "pixel_accuracy": float(true_positive.sum() / total) if total > 0 else float("nan"),
        "rarest_class": classes[rarest],
        "rarest_class_iou": float(iou[rarest]),
        "per_class_iou": {name: float(v) for name, v in zip(classes, iou, strict=True)},
        "per_class_dice": {name: float(v) for name, v in zip(classes, dice, strict=True)},
        "per_class_pixels": {name: int(v) for name, v in zip(classes, ground_truth, strict=True)},
        "confusion_matrix": matrix.long().tolist(),
    }
