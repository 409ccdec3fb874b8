"""Torch ``Dataset`` s over the records: :class:`ImageDataset` (classification) and
:class:`SegmentationDataset` (image and mask through one joint transform)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors

from torch_imbalance.data.cache import Decoded
from torch_imbalance.data.io import read_image, read_mask
from torch_imbalance.data.records import DatasetError, ImageSet, SegmentationSet

__all__ = ["Decoded", "ImageDataset", "SegmentationDataset", "read_image", "read_mask"]

Result = TypeVar("Result")


def seeded(draw: int | None, transform: Callable[[], Result]) -> Result:
    """``transform()``; with a ``draw`` from our samplers its randomness is seeded by it (the
    same augmentation for the same draw, also after a resume), torch's global state untouched."""
    if draw is None:
        return transform()
    with torch.random.fork_rng(devices=[]):
        # The CPU generator only (the transforms' randomness): ``torch.manual_seed`` also
        # seeds every accelerator backend, 0.7 ms per item, a tenth of a 1024×768 JPEG's load.
        torch.default_generator.manual_seed(draw)
        return transform()


def split_key(key: int | tuple[int, int]) -> tuple[int, int | None]:
    """A sampler key: an index, or ``(index, draw)``."""
    return key if isinstance(key, tuple) else (key, None)


class ImageDataset(Dataset):
    """``(image tensor, label)`` pairs; labels are ``int64`` indices or float 0/1 rows.

    With ``decoded``, an item's pixels come from the cache, which holds the output of the
    transform's deterministic first steps, and only ``finish`` (the rest) runs; else the file is
    read (at a reduced JPEG size of at least ``at_least`` pixels, when given) and ``transform``
    runs whole."""

    def __init__(
        self,
        images: ImageSet,
        channels: int,
        transform: Callable[[Image.Image], torch.Tensor],
        *,
        at_least: int | None = None,
        decoded: Decoded | None = None,
        finish: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if decoded is not None and finish is None:
            raise ValueError("a decoded-image cache needs `finish`, the transform's last steps")
        self.images = images
        self.channels = channels
        self.transform = transform
        self.at_least = at_least
        self.decoded = decoded
        self.finish = finish

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """``key`` is an index, or ``(index, draw)`` from our samplers (see :func:`seeded`)."""
        index, draw = split_key(key)
        label = self.images.labels[index]
        target = (
            torch.as_tensor(label, dtype=torch.float32)
            if np.ndim(label)
            else torch.as_tensor(int(label), dtype=torch.int64)
        )
        if self.decoded is not None:
            assert self.finish is not None
            finish = self.finish
            cached = self.decoded.cache.pixels(self.decoded.positions[index])
            pixels = tv_tensors.Image(torch.from_numpy(cached))
            return seeded(draw, lambda: finish(pixels)), target
        image = read_image(self.images.items[index], self.channels, self.at_least)
        return seeded(draw, lambda: self.transform(image)), target


class SegmentationDataset(Dataset):
    """``(image (C, H, W) float, mask (H, W) int64)`` pairs with a joint transform."""

    def __init__(
        self,
        data: SegmentationSet,
        channels: int,
        transform: Callable,
        *,
        decoded: Decoded | None = None,
    ) -> None:
        self.data = data
        self.channels = channels
        self.transform = transform
        #: The decoded images and masks at their own size (the transform then runs whole).
        self.decoded = decoded

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, draw = split_key(key)
        if self.decoded is not None:
            position = self.decoded.positions[index]
            pixels = torch.from_numpy(self.decoded.cache.pixels(position))
            labels = self.decoded.cache.mask(position).astype(np.int64)
            return seeded(draw, lambda: self.transform(pixels, labels))
        image, mask = read_segmentation_item(
            self.data.images[index], self.data.masks[index], self.channels, self.data.ids[index]
        )
        return seeded(draw, lambda: self.transform(image, mask))


def read_segmentation_item(
    image_item: Any, mask_item: Any, channels: int, name: str
) -> tuple[Image.Image, np.ndarray]:
    """An image and its mask, checked to be the same size (``name`` in the error)."""
    image = read_image(image_item, channels)
    mask = read_mask(mask_item)
    if mask.shape != (image.height, image.width):
        raise DatasetError(
            f"{name!r}: mask is {mask.shape[1]}×{mask.shape[0]} but the image is "
            f"{image.width}×{image.height}"
        )
    return image, mask
