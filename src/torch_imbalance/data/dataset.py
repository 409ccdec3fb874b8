"""Torch ``Dataset`` s over the records: :class:`ImageDataset` (classification) and
:class:`SegmentationDataset` (image and mask through one joint transform)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from torch_imbalance.data.io import read_image, read_mask
from torch_imbalance.data.records import DatasetError, ImageSet, SegmentationSet

__all__ = ["ImageDataset", "SegmentationDataset", "read_image", "read_mask"]

Result = TypeVar("Result")


def seeded(draw: int | None, transform: Callable[[], Result]) -> Result:
    """``transform()``; with a ``draw`` from our samplers its randomness is seeded by it (the
    same augmentation for the same draw, also after a resume), torch's global state untouched."""
    if draw is None:
        return transform()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(draw)
        return transform()


def split_key(key: int | tuple[int, int]) -> tuple[int, int | None]:
    """A sampler key: an index, or ``(index, draw)``."""
    return key if isinstance(key, tuple) else (key, None)


class ImageDataset(Dataset):
    """``(image tensor, label)`` pairs; labels are ``int64`` indices or float 0/1 rows."""

    def __init__(
        self,
        images: ImageSet,
        channels: int,
        transform: Callable[[Image.Image], torch.Tensor],
    ) -> None:
        self.images = images
        self.channels = channels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """``key`` is an index, or ``(index, draw)`` from our samplers (see :func:`seeded`)."""
        index, draw = split_key(key)
        image = read_image(self.images.items[index], self.channels)
        label = self.images.labels[index]
        target = (
            torch.as_tensor(label, dtype=torch.float32)
            if np.ndim(label)
            else torch.as_tensor(int(label), dtype=torch.int64)
        )
        return seeded(draw, lambda: self.transform(image)), target


class SegmentationDataset(Dataset):
    """``(image (C, H, W) float, mask (H, W) int64)`` pairs with a joint transform."""

    def __init__(self, data: SegmentationSet, channels: int, transform: Callable) -> None:
        self.data = data
        self.channels = channels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, draw = split_key(key)
        image = read_image(self.data.images[index], self.channels)
        mask = read_mask(self.data.masks[index])
        if mask.shape != (image.height, image.width):
            raise DatasetError(
                f"{self.data.ids[index]!r}: mask is {mask.shape[1]}×{mask.shape[0]} but the image "
                f"is {image.width}×{image.height}"
            )
        return seeded(draw, lambda: self.transform(image, mask))
