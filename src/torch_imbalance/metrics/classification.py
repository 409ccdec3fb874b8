"""Classification metrics as torchmetrics collections (synchronised across processes under
DDP), and their conversion to the run's ``metrics.json`` layout.

Multi-class: macro F1 (primary), balanced accuracy (mean recall = ISIC 2019's balanced
multi-class accuracy), accuracy, macro precision and recall, macro AUROC, expected calibration
error (15 bins, L1), per-class precision/recall/F1/support and the confusion matrix.
Multi-label: macro F1 over labels, macro precision and recall, mAP (macro average precision),
macro AUROC and per-label precision/recall/F1/support. Classes without predictions count as
precision 0 (as scikit-learn's ``zero_division=0``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassAUROC,
    MulticlassCalibrationError,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
    MultilabelAUROC,
    MultilabelAveragePrecision,
    MultilabelF1Score,
    MultilabelPrecision,
    MultilabelRecall,
    MultilabelStatScores,
)

PRIMARY_METRIC = "macro_f1"
#: Classes by training images, as the long-tailed literature splits them (many / medium /
#: few-shot): more than 100, 20 to 100, fewer than 20.
FREQUENCY_GROUPS = (("head", 101, math.inf), ("medium", 20, 100), ("tail", 0, 19))


def build_classification_metrics(num_classes: int, task: str = "multiclass") -> MetricCollection:
    """A collection updated with ``(probabilities (N, C), target)``: class indices ``(N,)``
    for ``"multiclass"``, 0/1 rows ``(N, C)`` for ``"multilabel"``."""
    if task == "multilabel":
        labels: dict[str, Any] = {"num_labels": num_classes}
        return MetricCollection(
            {
                "macro_f1": MultilabelF1Score(**labels, average="macro"),
                "macro_precision": MultilabelPrecision(**labels, average="macro"),
                "macro_recall": MultilabelRecall(**labels, average="macro"),
                "map": MultilabelAveragePrecision(**labels, average="macro"),
                "auroc": MultilabelAUROC(**labels, average="macro"),
                "f1_per_class": MultilabelF1Score(**labels, average=None),
                "precision_per_class": MultilabelPrecision(**labels, average=None),
                "recall_per_class": MultilabelRecall(**labels, average=None),
                "stats_per_class": MultilabelStatScores(**labels, average=None),
            },
            compute_groups=False,
        )
    classes: dict[str, Any] = {"num_classes": num_classes}
    return MetricCollection(
        {
            "macro_f1": MulticlassF1Score(**classes, average="macro"),
            "balanced_accuracy": MulticlassRecall(**classes, average="macro"),
            "accuracy": MulticlassAccuracy(**classes, average="micro"),
            "macro_precision": MulticlassPrecision(**classes, average="macro"),
            "macro_recall": MulticlassRecall(**classes, average="macro"),
            "auroc": MulticlassAUROC(**classes, average="macro"),
            "ece": MulticlassCalibrationError(**classes, n_bins=15, norm="l1"),
            "f1_per_class": MulticlassF1Score(**classes, average=None),
            "precision_per_class": MulticlassPrecision(**classes, average=None),
            "recall_per_class": MulticlassRecall(**classes, average=None),
            "confusion_matrix": MulticlassConfusionMatrix(**classes),
        },
        compute_groups=False,
    )


def summarise_classification(computed: dict[str, torch.Tensor], classes: list[str]) -> dict:
    """The computed collection as plain numbers: scalar metrics, ``per_class`` and, for
    multi-class data, ``confusion_matrix`` (rows = true class)."""
    out: dict[str, Any] = {}
    for name, value in computed.items():
        if value.ndim == 0:
            out[name] = float(value)
    if "confusion_matrix" in computed:
        matrix = computed["confusion_matrix"].long()
        support = matrix.sum(1).tolist()
        out["confusion_matrix"] = matrix.tolist()
        # Balanced accuracy is the mean recall over the classes that occur (sklearn's
        # balanced_accuracy_score, the ISIC challenge's scorer); torchmetrics' macro recall
        # also averages in a class that was predicted but never occurs, as 0.
        present = matrix.sum(1) > 0
        if bool(present.any()):
            recall = matrix.diagonal()[present].double() / matrix.sum(1)[present]
            out["balanced_accuracy"] = float(recall.mean())
    else:
        stats = computed["stats_per_class"].long()  # (C, 5): tp, fp, tn, fn, support
        support = stats[:, 4].tolist()
    out["per_class"] = {
        name: {
            "precision": float(computed["precision_per_class"][i]),
            "recall": float(computed["recall_per_class"][i]),
            "f1": float(computed["f1_per_class"][i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(classes)
    }
    return out


def frequency_groups(counts: Mapping[str, float]) -> dict[str, list[int]]:
    """Class indices by training count: ``head`` (> 100), ``medium`` (20-100), ``tail``
    (< 20); empty groups left out.

    Examples:
        >>> frequency_groups({"a": 1055, "b": 74, "c": 8})
        {'head': [0], 'medium': [1], 'tail': [2]}
    """
    groups: dict[str, list[int]] = {}
    for index, count in enumerate(counts.values()):
        for name, low, high in FREQUENCY_GROUPS:
            if low <= round(count) <= high:
                groups.setdefault(name, []).append(index)
    return {name: groups[name] for name, _, _ in FREQUENCY_GROUPS if name in groups}


def frequency_group_f1(
    per_class: Mapping[str, Mapping[str, float]], counts: Mapping[str, float]
) -> dict[str, float]:
    """The mean F1 of each :func:`frequency_groups` group, from a summary's ``per_class``.

    Examples:
        >>> frequency_group_f1({"a": {"f1": 0.9}, "b": {"f1": 0.5}}, {"a": 500, "b": 12})
        {'head': 0.9, 'tail': 0.5}
    """
    names = list(counts)
    return {
        group: sum(per_class[names[i]]["f1"] for i in members) / len(members)
        for group, members in frequency_groups(counts).items()
    }
