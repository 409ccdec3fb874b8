"""``ham10000`` and ``isic2019``: dermoscopy formats, split grouped by lesion."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from torch_imbalance.data.records import DatasetBundle, DatasetError, ImageSet
from torch_imbalance.data.splits import split_dataset
from torch_imbalance.data.tables import index_images, read_table, resolve_images

HAM10000_CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
HAM10000_COLUMNS = ["lesion_id", "image_id", "dx"]
ISIC2019_CLASSES = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC"]


def _find(root: Path, name: str) -> Path:
    direct = root / name
    if direct.is_file():
        return direct
    matches = sorted(root.rglob(name))
    if not matches:
        raise DatasetError(f"{name} not found under {root}")
    return matches[0]


def load_ham10000(
    root: str | Path, seed: int = 0, val_fraction: float = 0.15, test_fraction: float = 0.15
) -> DatasetBundle:
    """HAM10000: ``HAM10000_metadata.csv`` + ``<image_id>.jpg`` in any folder below ``root``;
    7 classes by ``dx``; split grouped by ``lesion_id`` (a lesion's images stay together)."""
    root = Path(root)
    rows = read_table(_find(root, "HAM10000_metadata.csv"), HAM10000_COLUMNS)
    unknown = sorted({r["dx"] for r in rows} - set(HAM10000_CLASSES))
    if unknown:
        raise DatasetError(f"HAM10000_metadata.csv: unknown dx value(s) {unknown}")
    ids = [r["image_id"] for r in rows]
    paths = resolve_images(ids, index_images(root), root, "ham10000")
    labels = np.asarray([HAM10000_CLASSES.index(r["dx"]) for r in rows], dtype=np.int64)
    groups = np.unique([r["lesion_id"] for r in rows], return_inverse=True)[1]
    data = ImageSet(paths, labels, ids, groups)
    train, val, test = split_dataset(data, val_fraction, test_fraction, seed)
    return DatasetBundle("ham10000", HAM10000_CLASSES, train, val, test, channels=3)


def load_isic2019(
    root: str | Path, seed: int = 0, val_fraction: float = 0.15, test_fraction: float = 0.15
) -> DatasetBundle:
    """ISIC 2019: ``ISIC_2019_Training_GroundTruth.csv`` (one-hot over MEL … SCC, UNK) +
    ``<image>.jpg``; 8 classes (UNK is empty in training); grouped by ``lesion_id`` when
    ``ISIC_2019_Training_Metadata.csv`` is present (images without one form their own group)."""
    root = Path(root)
    truth = _find(root, "ISIC_2019_Training_GroundTruth.csv")
    rows = read_table(truth, ["image", *ISIC2019_CLASSES])
    labels = []
    for line, row in enumerate(rows, 2):
        hot = [float(row[c] or 0) for c in ISIC2019_CLASSES]
        if sum(v > 0.5 for v in hot) != 1:
            raise DatasetError(
                f"{truth} line {line} ({row['image']}): expected exactly one of "
                f"{ISIC2019_CLASSES} set to 1, got {hot}"
                + (" (UNK is not a training class)" if float(row.get("UNK") or 0) > 0.5 else "")
            )
        labels.append(int(np.argmax(hot)))
    ids = [r["image"] for r in rows]
    paths = resolve_images(ids, index_images(root), root, "isic2019")
    groups = None
    metadata = sorted(root.rglob("ISIC_2019_Training_Metadata.csv"))
    if metadata:
        lesions = {
            r["image"]: r.get("lesion_id") or r["image"]
            for r in read_table(metadata[0], ["image", "lesion_id"])
        }
        groups = np.unique([lesions.get(i, i) for i in ids], return_inverse=True)[1]
    data = ImageSet(paths, np.asarray(labels, dtype=np.int64), ids, groups)
    train, val, test = split_dataset(data, val_fraction, test_fraction, seed)
    bundle = DatasetBundle("isic2019", ISIC2019_CLASSES, train, val, test, channels=3)
    bundle.notes["metric"] = "ISIC 2019's official metric is balanced multi-class accuracy"
    return bundle
