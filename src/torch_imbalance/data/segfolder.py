"""The ``segfolder`` format: ``root/images/<name>.<ext>`` with ``root/masks/<name>.png``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from torch_imbalance.data.io import IMAGE_SUFFIXES, read_mask
from torch_imbalance.data.records import DatasetError, SegmentationBundle, SegmentationSet


def load_segfolder(
    root: str | Path,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    num_classes: int | None = None,
    ignore_index: int = 255,
    channels: int = 3,
) -> SegmentationBundle:
    """``root/images/<name>.<ext>`` + ``root/masks/<name>.png``; classes ``0..C-1`` (``C``
    from ``num_classes`` or the largest mask value + 1), ``ignore_index`` unlabelled.

    Raises:
        DatasetError: missing folders, an image without its mask, or mask values out of range.
    """
    root = Path(root)
    image_dir, mask_dir = root / "images", root / "masks"
    for folder in (image_dir, mask_dir):
        if not folder.is_dir():
            raise DatasetError(f"segfolder: {folder} is missing; expected images/ and masks/")
    images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise DatasetError(f"segfolder: no images in {image_dir}")
    masks = {p.stem: p for p in mask_dir.iterdir() if p.suffix.lower() in (".png", ".tif", ".tiff")}
    missing = [p.name for p in images if p.stem not in masks]
    if missing:
        raise DatasetError(
            f"segfolder: {len(missing)} image(s) have no mask in {mask_dir} (first: {missing[:5]})"
        )
    data = SegmentationSet(images, [masks[p.stem] for p in images], [p.stem for p in images])
    if num_classes is None:
        largest = max(int(v[v != ignore_index].max(initial=0)) for v in map(read_mask, data.masks))
        num_classes = largest + 1
    order = np.random.default_rng(seed).permutation(len(data))
    n_test = round(len(data) * test_fraction)
    n_val = round(len(data) * val_fraction)
    parts = (order[n_test + n_val :], order[n_test : n_test + n_val], order[:n_test])
    train, val, test = (data.subset(sorted(p.tolist())) for p in parts)
    bundle = SegmentationBundle(
        "segfolder",
        [f"class{c}" for c in range(num_classes)],
        train,
        val,
        test,
        channels=channels,
        ignore_index=ignore_index,
    )
    for part in (train, val, test):
        part.counts(num_classes, ignore_index)  # validates every mask's values
    return bundle
