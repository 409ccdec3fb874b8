"""Datasets: formats users bring, built-in offline datasets, splits, samplers, transforms."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch_imbalance.data.builtin import (
    PACKAGES,
    is_installed,
    load_br35h,
    load_br35h_lt,
    load_digits_lt,
    load_dsb2018_nuclei,
    load_elpv,
    load_mni152_tissue,
)
from torch_imbalance.data.dermoscopy import load_ham10000, load_isic2019
from torch_imbalance.data.imagefolder import load_imagefolder
from torch_imbalance.data.odir import load_odir5k
from torch_imbalance.data.records import (
    DatasetBundle,
    DatasetError,
    ImageSet,
    SegmentationBundle,
    SegmentationSet,
)
from torch_imbalance.data.segfolder import load_segfolder
from torch_imbalance.data.splits import limit_training_set

BUILTIN: dict[str, Callable[..., DatasetBundle | SegmentationBundle]] = {
    "br35h": load_br35h,
    "br35h-lt": load_br35h_lt,
    "elpv": load_elpv,
    "digits-lt": load_digits_lt,
    "dsb2018-nuclei": load_dsb2018_nuclei,
    "mni152-tissue": load_mni152_tissue,
}
FORMATS: dict[str, Callable[..., DatasetBundle | SegmentationBundle]] = {
    "imagefolder": load_imagefolder,
    "ham10000": load_ham10000,
    "isic2019": load_isic2019,
    "odir5k": load_odir5k,
    "segfolder": load_segfolder,
}
#: Datasets of the segmentation task (the others are classification).
SEGMENTATION = frozenset({"dsb2018-nuclei", "mni152-tissue", "segfolder"})


def available_datasets() -> list[str]:
    """Every dataset name ``load_dataset`` accepts."""
    return sorted(BUILTIN) + sorted(FORMATS)


def load_dataset(
    name: str,
    root: str | Path | None = None,
    seed: int = 0,
    train_fraction: float | None = None,
    max_per_class: int | None = None,
    val_keep_fraction: float | None = None,
    **options: Any,
) -> DatasetBundle | SegmentationBundle:
    """Load a dataset by name with deterministic splits, then apply the training-size limits.

    Args:
        name: a built-in dataset or a format (``imagefolder``, ...; these need ``root``).
        root: the dataset folder for the formats.
        seed: split seed.
        train_fraction: keep this class-stratified fraction of the training split.
        max_per_class: keep at most this many training examples per class.
        val_keep_fraction: keep this class-stratified fraction of the validation split (a
            validation split scaled down with ``train_fraction``).
        **options: passed to the loader (``val_fraction``, ``test_fraction``,
            ``imbalance_ratio`` for the long-tailed sets, ``channels`` for image folders).

    Raises:
        DatasetError: unknown name, missing ``root``, or a loader's own error.
    """
    if name not in BUILTIN and name not in FORMATS:
        raise DatasetError(
            f"unknown dataset {name!r}; available: {', '.join(available_datasets())}"
        )
    loader = BUILTIN.get(name) or FORMATS[name]
    accepted = inspect.signature(loader).parameters
    given = {key: value for key, value in options.items() if value is not None}
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise DatasetError(f"dataset {name!r} does not take option(s) {unknown}")
    if name in BUILTIN:
        if root is not None:
            raise DatasetError(f"dataset {name!r} is built in and takes no root (got {root})")
        bundle = loader(seed=seed, **given)
    else:
        if root is None:
            raise DatasetError(f"dataset format {name!r} needs --root PATH")
        bundle = loader(root, seed=seed, **given)
    if isinstance(bundle, SegmentationBundle):
        if train_fraction is not None or max_per_class is not None or val_keep_fraction:
            raise DatasetError(
                "--train-fraction / --max-per-class / --val-keep-fraction apply to "
                "classification data"
            )
        return bundle
    if train_fraction is not None or max_per_class is not None:
        bundle.train = limit_training_set(bundle.train, seed, train_fraction, max_per_class)
    if val_keep_fraction is not None:
        bundle.val = limit_training_set(
            bundle.val, seed, val_keep_fraction, setting="val_keep_fraction"
        )
        bundle.notes["validation"] = f"{val_keep_fraction:g} of the validation split kept"
    return bundle


__all__ = [
    "BUILTIN",
    "FORMATS",
    "PACKAGES",
    "SEGMENTATION",
    "DatasetBundle",
    "DatasetError",
    "ImageSet",
    "SegmentationBundle",
    "SegmentationSet",
    "available_datasets",
    "is_installed",
    "load_dataset",
]
