"""Segmentation metrics against a direct numpy computation over the whole split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torch_imbalance.metrics.segmentation import (
    build_segmentation_metrics,
    summarise_segmentation,
)


def numpy_metrics(pred: np.ndarray, target: np.ndarray, classes: int, ignore: int | None):
    keep = np.ones(target.shape, bool) if ignore is None else target != ignore
    p, t = pred[keep], target[keep]
    iou, dice = [], []
    for c in range(classes):
        tp = np.sum((p == c) & (t == c))
        fp = np.sum((p == c) & (t != c))
        fn = np.sum((p != c) & (t == c))
        iou.append(tp / (tp + fp + fn) if tp + fp + fn else np.nan)
        dice.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else np.nan)
    return np.array(iou), np.array(dice), np.mean(p == t)


@pytest.mark.parametrize("ignore", [None, 255])
def test_whole_split_iou_dice_and_accuracy_match_numpy(ignore):
    rng = np.random.default_rng(0)
    classes = 4
    target = rng.choice(classes, (6, 20, 20), p=[0.7, 0.2, 0.08, 0.02])
    pred = np.where(rng.random(target.shape) < 0.7, target, rng.integers(0, classes, target.shape))
    if ignore is not None:
        target[rng.random(target.shape) < 0.1] = ignore
    metric = build_segmentation_metrics(classes, ignore)
    for i in range(0, 6, 2):  # batches: accumulated, not averaged per image
        metric.update(torch.as_tensor(pred[i : i + 2]), torch.as_tensor(target[i : i + 2]))
    names = ["bg", "a", "b", "rare"]
    got = summarise_segmentation(metric.compute(), names)
    iou, dice, accuracy = numpy_metrics(pred, target, classes, ignore)
    assert [got["per_class_iou"][n] for n in names] == pytest.approx(iou.tolist())
    assert [got["per_class_dice"][n] for n in names] == pytest.approx(dice.tolist())
    assert got["miou"] == pytest.approx(np.nanmean(iou))
    assert got["mean_dice"] == pytest.approx(np.nanmean(dice))
    assert got["miou_foreground"] == pytest.approx(np.nanmean(iou[1:]))
    assert got["pixel_accuracy"] == pytest.approx(accuracy)
    assert got["rarest_class"] == "rare" and got["rarest_class_iou"] == pytest.approx(iou[3])


def test_absent_class_is_left_out_of_the_means():
    matrix = torch.tensor([[5, 1, 0], [2, 3, 0], [0, 0, 0]])
    got = summarise_segmentation(matrix, ["bg", "fg", "never"])
    assert np.isnan(got["per_class_iou"]["never"])
    assert got["miou"] == pytest.approx((5 / 8 + 3 / 6) / 2)
    assert got["rarest_class"] == "fg"
