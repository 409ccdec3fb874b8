"""A torch ``Dataset`` over an :class:`ImageSet`: decode, convert to grey or RGB, transform."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from torch_imbalance.data.records import DatasetError, ImageSet


def read_image(item: str | Path | np.ndarray, channels: int) -> Image.Image:
    """Open a file (or wrap an array) as a PIL image in mode ``L`` (1 channel) or ``RGB`` (3).

    Raises:
        DatasetError: the file is missing or cannot be decoded (names the file).
    """
    if channels not in (1, 3):
        raise DatasetError(f"channels must be 1 or 3, got {channels}")
    mode = "L" if channels == 1 else "RGB"
    if isinstance(item, np.ndarray):
        return Image.fromarray(item).convert(mode)
    try:
        with Image.open(item) as image:
            image.load()
            return image.convert(mode)
    except FileNotFoundError as error:
        raise DatasetError(f"image file not found: {item}") from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DatasetError(f"cannot decode image {item}: {error}") from error


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
        """``key`` is an index, or ``(index, draw)`` from our samplers: the random
        augmentation of that draw is then seeded by it (reproducible, also after a resume)."""
        index, draw = key if isinstance(key, tuple) else (key, None)
        image = read_image(self.images.items[index], self.channels)
        label = self.images.labels[index]
        target = (
            torch.as_tensor(label, dtype=torch.float32)
            if np.ndim(label)
            else torch.as_tensor(int(label), dtype=torch.int64)
        )
        if draw is None:
            return self.transform(image), target
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(draw)
            return self.transform(image), target
