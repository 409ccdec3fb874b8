"""``odir5k``: fundus photographs, multi-label per patient, split by patient."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from torch_imbalance._types import Task
from torch_imbalance.data.records import DatasetBundle, DatasetError, ImageSet
from torch_imbalance.data.splits import split_dataset
from torch_imbalance.data.tables import index_images, read_table, resolve_images

ODIR_LABELS = ["N", "D", "G", "C", "A", "H", "M", "O"]
ODIR_NAMES = [
    "Normal",
    "Diabetes",
    "Glaucoma",
    "Cataract",
    "AMD",
    "Hypertension",
    "Myopia",
    "Other",
]
ODIR_COLUMNS = ["ID", "Left-Fundus", "Right-Fundus", *ODIR_LABELS]
LABEL_MODES = ("multilabel", "single")


def _sheet(root: Path) -> Path:
    for pattern in ("*.xlsx", "*.csv"):
        for path in sorted(root.rglob(pattern)):
            if "annotation" in path.name.lower() or "odir" in path.name.lower():
                return path
    raise DatasetError(
        f"odir5k: no annotation sheet under {root} (an .xlsx or .csv whose name contains "
        "'annotation' or 'odir', with columns " + ", ".join(ODIR_COLUMNS) + ")"
    )


def load_odir5k(
    root: str | Path,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    label_mode: str = "multilabel",
) -> DatasetBundle:
    """ODIR-5K: both fundus images of a patient carry the patient's labels over 8 diseases.

    ``label_mode="multilabel"`` keeps every patient (0/1 rows, a multi-label task);
    ``"single"`` keeps the patients with exactly one label (the LMF authors' multi-class
    subset). The split is by patient, so a patient's two eyes never straddle splits.
    """
    if label_mode not in LABEL_MODES:
        raise DatasetError(f"label_mode must be one of {LABEL_MODES}, got {label_mode!r}")
    root = Path(root)
    sheet = _sheet(root)
    rows = read_table(sheet, ODIR_COLUMNS)
    images = index_images(root)
    items, labels, ids, groups = [], [], [], []
    for line, row in enumerate(rows, 2):
        try:
            hot = [int(float(row[c] or 0)) for c in ODIR_LABELS]
        except ValueError as error:
            raise DatasetError(f"{sheet} line {line}: labels must be 0/1 ({error})") from error
        if label_mode == "single" and sum(hot) != 1:
            continue
        for side in ("Left-Fundus", "Right-Fundus"):
            name = row[side].strip()
            if not name:
                continue
            items.append(name)
            labels.append(hot)
            ids.append(name)
            groups.append(row["ID"])
    if not items:
        raise DatasetError(f"odir5k: no usable rows in {sheet} (label_mode={label_mode!r})")
    paths = resolve_images(items, images, root, "odir5k")
    matrix = np.asarray(labels, dtype=np.int64)
    group_ids = np.unique(groups, return_inverse=True)[1]
    if label_mode == "single":
        data = ImageSet(paths, matrix.argmax(1), ids, group_ids)
        task: Task = "multiclass"
    else:
        data = ImageSet(paths, matrix, ids, group_ids)
        task = "multilabel"
    train, val, test = split_dataset(data, val_fraction, test_fraction, seed)
    bundle = DatasetBundle("odir5k", list(ODIR_NAMES), train, val, test, task=task, channels=3)
    bundle.notes["labels"] = f"{label_mode}: each fundus image carries its patient's labels"
    return bundle
