"""Reading one item: an image as a grey or RGB PIL image, a mask as class indices; a missing or
undecodable file is a :class:`DatasetError` naming it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from torch_imbalance.data.errors import DatasetError

#: The image files the harness reads (folders are searched for these).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def read_image(
    item: str | Path | np.ndarray, channels: int, at_least: int | None = None
) -> Image.Image:
    """Open a file (or wrap an array) as a PIL image in mode ``L`` (1 channel) or ``RGB`` (3).

    Args:
        item: an image file or an array.
        channels: 1 or 3.
        at_least: decode a JPEG at a reduced size (PIL's ``draft``: the decoder's 1/2, 1/4 or
            1/8 scale, several times faster than decoding every pixel) whose sides are still at
            least this many pixels; None: full size.

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
            if at_least is not None and image.format == "JPEG":
                # Keeps the decoder's colour mode; only the scale changes.
                image.draft(image.mode, (at_least, at_least))
            image.load()
            return image.convert(mode)
    except FileNotFoundError as error:
        raise DatasetError(f"image file not found: {item}") from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DatasetError(f"cannot decode image {item}: {error}") from error


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
