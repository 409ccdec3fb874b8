"""What every loader returns: labelled image records (or image/mask pairs) in train/val/test
splits.

An item is a file path or an in-memory ``uint8`` array (the built-in datasets that ship as
arrays). Labels are class indices ``(n,)`` for multi-class data or 0/1 rows ``(n, C)`` for
multi-label data. ``ids`` name the items in the saved split files.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from torch_imbalance._types import Task
from torch_imbalance.data.errors import DatasetError
from torch_imbalance.data.io import read_mask

__all__ = [
    "DatasetBundle",
    "DatasetError",
    "ImageSet",
    "SegmentationBundle",
    "SegmentationSet",
]

Item = "str | Path | np.ndarray"


@dataclass
class ImageSet:
    """One split: items, labels, group ids (lesion, patient) and printable ids."""

    items: list
    labels: np.ndarray
    ids: list[str]
    groups: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not (len(self.items) == len(self.labels) == len(self.ids)):
            raise DatasetError(
                f"items, labels and ids differ in length: {len(self.items)}, "
                f"{len(self.labels)}, {len(self.ids)}"
            )

    def __len__(self) -> int:
        return len(self.items)

    def subset(self, indices: np.ndarray | list[int]) -> ImageSet:
        index = np.asarray(indices, dtype=np.int64)
        return ImageSet(
            [self.items[i] for i in index],
            self.labels[index],
            [self.ids[i] for i in index],
            None if self.groups is None else self.groups[index],
        )

    def counts(self, num_classes: int) -> list[int]:
        """Images per class (multi-class) or positives per label (multi-label)."""
        if self.labels.ndim == 2:
            return [int(v) for v in self.labels.sum(0)]
        return [int(v) for v in np.bincount(self.labels, minlength=num_classes)]


@dataclass
class DatasetBundle:
    """A loaded dataset: class names, task, channels and the three splits."""

    name: str
    classes: list[str]
    train: ImageSet
    val: ImageSet
    test: ImageSet
    task: Task = "multiclass"
    channels: int = 3
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_counts(self) -> list[int]:
        """Per-class counts of the training split; every class must be present.

        Raises:
            DatasetError: a class has no training example (the count-based losses and the
                metrics need every class).
        """
        counts = self.train.counts(self.num_classes)
        missing = [name for name, count in zip(self.classes, counts, strict=True) if count == 0]
        if missing:
            raise DatasetError(
                f"dataset {self.name!r}: no training examples of class(es) {missing} "
                f"(training counts: {dict(zip(self.classes, counts, strict=True))}); "
                "add examples, raise --max-per-class / --train-fraction, or drop the class"
            )
        return counts

    def summary(self) -> dict[str, dict[str, int]]:
        """``{split: {class: count}}``."""
        return {
            split: dict(zip(self.classes, part.counts(self.num_classes), strict=True))
            for split, part in (("train", self.train), ("val", self.val), ("test", self.test))
        }

    def save_splits(self, folder: Path) -> None:
        """Write ``train.csv``, ``val.csv`` and ``test.csv`` (id and label) into ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        for split, part in (("train", self.train), ("val", self.val), ("test", self.test)):
            with open(folder / f"{split}.csv", "w", newline="") as handle:
                writer = csv.writer(handle)
                if part.labels.ndim == 2:
                    writer.writerow(["id", *self.classes])
                    for item_id, row in zip(part.ids, part.labels, strict=True):
                        writer.writerow([item_id, *(int(v) for v in row)])
                else:
                    writer.writerow(["id", "label"])
                    for item_id, label in zip(part.ids, part.labels, strict=True):
                        writer.writerow([item_id, self.classes[int(label)]])


# ------------------------------------------------------------------------- segmentation
@dataclass
class SegmentationSet:
    """One split: images, masks and ids."""

    images: list
    masks: list
    ids: list[str]

    def __post_init__(self) -> None:
        if not (len(self.images) == len(self.masks) == len(self.ids)):
            raise DatasetError(
                f"images, masks and ids differ in length: {len(self.images)}, "
                f"{len(self.masks)}, {len(self.ids)}"
            )

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, indices) -> SegmentationSet:
        return SegmentationSet(
            [self.images[i] for i in indices],
            [self.masks[i] for i in indices],
            [self.ids[i] for i in indices],
        )

    def counts(self, num_classes: int, ignore_index: int | None = None) -> list[int]:
        """Pixels per class (ignored pixels left out); a value ≥ ``num_classes`` that is not
        ``ignore_index`` is an error naming the mask."""
        total = np.zeros(num_classes, dtype=np.int64)
        for mask, item_id in zip(self.masks, self.ids, strict=True):
            values = read_mask(mask)
            if ignore_index is not None:
                values = values[values != ignore_index]
            bad = values[(values < 0) | (values >= num_classes)]
            if bad.size:
                raise DatasetError(
                    f"mask of {item_id!r} holds value(s) {sorted(set(bad.tolist()))[:5]} outside "
                    f"the {num_classes} classes [0, {num_classes - 1}]"
                    + (f" (ignore value {ignore_index})" if ignore_index is not None else "")
                )
            total += np.bincount(values.ravel(), minlength=num_classes)
        return total.tolist()


@dataclass
class SegmentationBundle:
    """A loaded segmentation dataset."""

    name: str
    classes: list[str]
    train: SegmentationSet
    val: SegmentationSet
    test: SegmentationSet
    channels: int = 1
    ignore_index: int | None = 255
    task: str = "segmentation"
    notes: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.notes = dict(self.notes or {})

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_counts(self) -> list[int]:
        """Training pixels per class; every class must occur."""
        counts = self.train.counts(self.num_classes, self.ignore_index)
        missing = [n for n, c in zip(self.classes, counts, strict=True) if c == 0]
        if missing:
            raise DatasetError(
                f"dataset {self.name!r}: no training pixels of class(es) {missing} "
                f"(pixel counts: {dict(zip(self.classes, counts, strict=True))})"
            )
        return counts

    def summary(self) -> dict[str, dict[str, int]]:
        return {
            split: dict(
                zip(self.classes, part.counts(self.num_classes, self.ignore_index), strict=True)
            )
            for split, part in (("train", self.train), ("val", self.val), ("test", self.test))
        }

    def save_splits(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for split in ("train", "val", "test"):
            (folder / f"{split}.csv").write_text(
                "id\n" + "".join(f"{i}\n" for i in getattr(self, split).ids)
            )
