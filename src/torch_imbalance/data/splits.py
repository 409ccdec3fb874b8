"""Deterministic stratified splits, grouped where images share a lesion or a patient."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from torch_imbalance.data.records import DatasetError, ImageSet


def strata(labels: np.ndarray) -> np.ndarray:
    """Labels to stratify on: the class, or for multi-label rows the rarest positive label
    (``-1`` for rows without one)."""
    if labels.ndim == 1:
        return labels
    frequency = labels.sum(0)
    rarity = np.where(labels > 0, frequency[None, :], np.inf)
    return np.where(labels.any(1), rarity.argmin(1), -1)


def _split_off(
    indices: np.ndarray,
    stratum: np.ndarray,
    groups: np.ndarray | None,
    fraction: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``indices`` into (rest, part) with ``part`` about ``fraction`` of them."""
    if fraction <= 0:
        return indices, indices[:0]
    if groups is None:
        _, class_sizes = np.unique(stratum[indices], return_counts=True)
        stratify = stratum[indices] if class_sizes.min() >= 2 else None
        rest, part = train_test_split(
            indices, test_size=fraction, stratify=stratify, random_state=seed, shuffle=True
        )
        return np.sort(rest), np.sort(part)
    folds = max(2, round(1 / fraction))
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    rest, part = next(splitter.split(indices, stratum[indices], groups[indices]))
    return np.sort(indices[rest]), np.sort(indices[part])


def split_dataset(
    data: ImageSet, val_fraction: float, test_fraction: float, seed: int
) -> tuple[ImageSet, ImageSet, ImageSet]:
    """Train/val/test parts of ``data``, stratified by class and grouped by ``data.groups``.

    The same ``seed`` always gives the same split. Fractions are of the whole set.
    """
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 <= value < 1:
            raise DatasetError(f"{name} must lie in [0, 1), got {value}")
    if val_fraction + test_fraction >= 1:
        raise DatasetError(
            f"val_fraction + test_fraction must be below 1, got {val_fraction + test_fraction}"
        )
    stratum = strata(data.labels)
    everything = np.arange(len(data))
    rest, test = _split_off(everything, stratum, data.groups, test_fraction, seed)
    rest_fraction = val_fraction / (1 - test_fraction)
    train, val = _split_off(rest, stratum, data.groups, rest_fraction, seed + 1)
    return data.subset(train), data.subset(val), data.subset(test)


def limit_training_set(
    data: ImageSet,
    seed: int,
    fraction: float | None = None,
    max_per_class: int | None = None,
    setting: str = "train_fraction",
) -> ImageSet:
    """A class-stratified fraction of a training set and/or at most ``max_per_class`` per class
    (the low-data regime); multi-label rows count towards their rarest label. ``setting`` names
    the fraction in the error message."""
    if fraction is not None and not 0 < fraction <= 1:
        raise DatasetError(f"{setting} must lie in (0, 1], got {fraction}")
    if max_per_class is not None and max_per_class < 1:
        raise DatasetError(f"max_per_class must be at least 1, got {max_per_class}")
    rng = np.random.default_rng(seed)
    stratum = strata(data.labels)
    keep: list[np.ndarray] = []
    for value in np.unique(stratum):
        members = rng.permutation(np.flatnonzero(stratum == value))
        size = len(members)
        if fraction is not None:
            size = max(1, round(size * fraction))
        if max_per_class is not None:
            size = min(size, max_per_class)
        keep.append(members[:size])
    return data.subset(np.sort(np.concatenate(keep)) if keep else np.arange(0))


def long_tail_counts(largest: int, num_classes: int, ratio: float) -> list[int]:
    """``n_i = n_max · ratio^(−i/(C−1))``: the usual exponential long-tail profile."""
    if ratio < 1:
        raise DatasetError(f"imbalance ratio must be at least 1, got {ratio}")
    if num_classes == 1:
        return [largest]
    return [max(1, int(largest * ratio ** (-i / (num_classes - 1)))) for i in range(num_classes)]


def long_tail(data: ImageSet, counts: list[int], seed: int) -> ImageSet:
    """Keep ``counts[c]`` random examples of each class ``c`` (all when fewer exist)."""
    rng = np.random.default_rng(seed)
    keep = [
        rng.permutation(np.flatnonzero(data.labels == c))[:count] for c, count in enumerate(counts)
    ]
    return data.subset(np.sort(np.concatenate(keep)))
