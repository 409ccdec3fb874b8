"""Scores from confusion counts, batched over any leading dimensions: the one definition that
the segmentation summary and the resampled statistics (``metrics/statistics.py``) share.

``counts`` is ``(..., C, C)`` with rows the true class and columns the predicted one. A class
with no pixel or item in its row and column has no score (``nan``) and is left out of the
means, as torchmetrics' macro averages and ``summarise_segmentation`` leave it out.
"""

from __future__ import annotations

import numpy as np


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.full(np.broadcast(numerator, denominator).shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def per_class_iou(counts: np.ndarray) -> np.ndarray:
    """``(..., C)``: ``TP / (TP + FP + FN)`` per class (``nan`` where the class is absent).

    Examples:
        >>> per_class_iou(np.array([[3, 1], [0, 2]]))
        array([0.75      , 0.66666667])
    """
    counts = np.asarray(counts, dtype=np.float64)
    true_positive = np.diagonal(counts, axis1=-2, axis2=-1)
    return _ratio(true_positive, counts.sum(-1) + counts.sum(-2) - true_positive)


def per_class_dice(counts: np.ndarray) -> np.ndarray:
    """``(..., C)``: ``2 TP / (2 TP + FP + FN)`` per class, which is also the class's F1."""
    counts = np.asarray(counts, dtype=np.float64)
    true_positive = np.diagonal(counts, axis1=-2, axis2=-1)
    return _ratio(2 * true_positive, counts.sum(-1) + counts.sum(-2))


#: A class's F1 from its confusion counts is its Dice coefficient.
per_class_f1 = per_class_dice


def class_mean(scores: np.ndarray, classes: list[int] | None = None) -> np.ndarray:
    """``(...)``: the mean of ``scores (..., C)`` over ``classes`` (default all), classes
    without a score left out (``nan`` when none has one)."""
    chosen = scores if classes is None else scores[..., list(classes)]
    present = ~np.isnan(chosen)
    total = np.where(present, chosen, 0.0).sum(-1)
    return _ratio(total, present.sum(-1).astype(np.float64))
