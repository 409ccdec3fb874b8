"""Segmentation metrics over a whole split (one confusion matrix accumulated over every pixel,
not averaged per image; synchronised across processes under DDP)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torchmetrics.classification import MulticlassConfusionMatrix

from torch_imbalance.metrics.confusion import class_mean, per_class_dice, per_class_iou

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
    counts = matrix.double().cpu().numpy()
    iou, dice = per_class_iou(counts), per_class_dice(counts)
    ground_truth = counts.sum(1)
    total = counts.sum()
    present = ground_truth > 0
    rarest = int(np.where(present, ground_truth, np.inf).argmin())
    return {
        "miou": float(class_mean(iou)),
        "mean_dice": float(class_mean(dice)),
        "miou_foreground": float(class_mean(iou[1:])) if len(classes) > 1 else float("nan"),
        "pixel_accuracy": float(np.trace(counts) / total) if total > 0 else float("nan"),
        "rarest_class": classes[rarest],
        "rarest_class_iou": float(iou[rarest]),
        "per_class_iou": {name: float(v) for name, v in zip(classes, iou, strict=True)},
        "per_class_dice": {name: float(v) for name, v in zip(classes, dice, strict=True)},
        "per_class_pixels": {name: int(v) for name, v in zip(classes, ground_truth, strict=True)},
        "confusion_matrix": matrix.long().tolist(),
    }
