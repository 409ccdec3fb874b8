"""``imagefolder``: ``root/<class>/<image>``, optionally ``root/{train,val,test}/<class>/…``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from torch_imbalance.data.io import IMAGE_SUFFIXES
from torch_imbalance.data.records import DatasetBundle, DatasetError, ImageSet
from torch_imbalance.data.splits import split_dataset

SPLIT_NAMES = ("train", "val", "test")


def _scan(folder: Path) -> dict[str, list[Path]]:
    """``{class: sorted image paths}`` of one ``<class>/<image>`` folder."""
    classes = {}
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        images = sorted(
            p for p in class_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if images:
            classes[class_dir.name] = images
    return classes


def _image_set(found: dict[str, list[Path]], classes: list[str], root: Path) -> ImageSet:
    items, labels = [], []
    for name, paths in found.items():
        items.extend(paths)
        labels.extend([classes.index(name)] * len(paths))
    ids = [str(p.relative_to(root)) for p in items]
    return ImageSet(items, np.asarray(labels, dtype=np.int64), ids)


def load_imagefolder(
    root: str | Path,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    channels: int = 3,
) -> DatasetBundle:
    """Load an image folder; predefined ``train/val/test`` subfolders are used as given.

    Without them the images are split (stratified, deterministic for ``seed``); with ``train``
    and ``test`` but no ``val``, the validation part is split off the training images.

    Raises:
        DatasetError: the folder is missing or holds no images in class subfolders.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"imagefolder: {root} is not a folder")
    present = [s for s in SPLIT_NAMES if (root / s).is_dir()]
    if present:
        if "train" not in present:
            raise DatasetError(
                f"imagefolder: {root} has {present} but no train/ folder; expected "
                "root/train/<class>/<image> (and optionally val/, test/)"
            )
        found = {s: _scan(root / s) for s in present}
        classes = sorted(set().union(*(f.keys() for f in found.values())))
        if not found["train"]:
            raise DatasetError(
                f"imagefolder: no images found under {root / 'train'}; expected "
                f"train/<class>/<image> with suffixes {', '.join(IMAGE_SUFFIXES)}"
            )
        parts = {s: _image_set(found[s], classes, root) for s in present}
        train = parts["train"]
        if "val" in parts and "test" in parts:
            val, test = parts["val"], parts["test"]
        elif "test" in parts:  # val split off train
            train, val, _ = split_dataset(train, val_fraction, 0.0, seed)
            test = parts["test"]
        elif "val" in parts:  # test split off train
            train, test, _ = split_dataset(train, test_fraction, 0.0, seed)
            val = parts["val"]
        else:
            train, val, test = split_dataset(train, val_fraction, test_fraction, seed)
    else:
        found_all = _scan(root)
        classes = sorted(found_all)
        if not classes:
            raise DatasetError(
                f"imagefolder: no images found under {root}; expected root/<class>/<image> "
                f"with suffixes {', '.join(IMAGE_SUFFIXES)}"
            )
        everything = _image_set(found_all, classes, root)
        train, val, test = split_dataset(everything, val_fraction, test_fraction, seed)
    return DatasetBundle("imagefolder", classes, train, val, test, channels=channels)
