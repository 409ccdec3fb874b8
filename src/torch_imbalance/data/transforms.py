"""Preprocessing and light augmentation with torchvision's transforms v2: images alone
(classification) or an image and its mask together (segmentation)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

#: Per-channel ``(mean, std)`` of the input normalisation, or None for [0, 1] pixels.
Normalization = tuple[Sequence[float], Sequence[float]] | None
INTERPOLATIONS = {
    "bilinear": v2.InterpolationMode.BILINEAR,
    "bicubic": v2.InterpolationMode.BICUBIC,
    "nearest": v2.InterpolationMode.NEAREST,
}


def _normalize_step(normalization: Normalization) -> v2.Transform:
    if normalization is None:
        return v2.Identity()
    mean, std = normalization
    return v2.Normalize(list(mean), list(std))


def denormalize(images: torch.Tensor, normalization: Normalization) -> torch.Tensor:
    """``(N, C, H, W)`` network inputs back to [0, 1] pixels (for figures)."""
    if normalization is None:
        return images
    mean, std = (torch.tensor(v, dtype=images.dtype).view(1, -1, 1, 1) for v in normalization)
    return images * std + mean


def build_transform_steps(
    image_size: int,
    channels: int,
    train: bool,
    augment: bool = True,
    normalization: Normalization = None,
    interpolation: str = "bilinear",
) -> tuple[v2.Compose, v2.Compose]:
    """:func:`build_transform` in two parts: the deterministic first steps (to a ``uint8``
    tensor, resized to ``image_size``², what the decoded-image cache stores) and the rest."""
    resize = v2.Resize((image_size, image_size), INTERPOLATIONS[interpolation], antialias=True)
    rest: list[v2.Transform] = []
    if train and augment:
        # fill=None: the corners are zero by the sampler's padding instead of a blended mask
        # channel; the same pixels as fill=0 (tested), a quarter faster.
        rest += [v2.RandomHorizontalFlip(), v2.RandomRotation(10, fill=None)]
    rest += [v2.ToDtype(torch.float32, scale=True), _normalize_step(normalization)]
    return v2.Compose([v2.ToImage(), resize]), v2.Compose(rest)


def build_transform(
    image_size: int,
    channels: int,
    train: bool,
    augment: bool = True,
    normalization: Normalization = None,
    interpolation: str = "bilinear",
) -> v2.Compose:
    """Resize to ``image_size``² (``interpolation``), scale to [0, 1], then normalise with the
    per-channel ``(mean, std)`` (None: none); in training, horizontal flips and rotations of up
    to 10° (the light augmentation of the protocol)."""
    return v2.Compose(
        list(
            build_transform_steps(
                image_size, channels, train, augment, normalization, interpolation
            )
        )
    )


def image_pixels(image: Image.Image) -> torch.Tensor:
    """A PIL image's pixels as ``uint8`` ``(C, H, W)``."""
    return (
        torch.from_numpy(np.array(image, copy=True))
        .reshape(image.height, image.width, -1)
        .permute(2, 0, 1)
    )


def build_segmentation_transform(
    image_size: int,
    channels: int,
    train: bool,
    ignore_index: int | None,
    augment: bool = True,
    normalization: Normalization = None,
    interpolation: str = "bilinear",
):
    """Joint image/mask transform (torchvision v2; the mask is always resampled nearest, the
    image with ``interpolation``): resize for evaluation; in training random resized crops,
    flips and small rotations (exposed corners become the ignore value, or background without
    one); pixels in [0, 1], then normalised with the per-channel ``(mean, std)``."""
    mode = INTERPOLATIONS[interpolation]
    from torchvision import tv_tensors

    fill = {tv_tensors.Image: 0, tv_tensors.Mask: 0 if ignore_index is None else ignore_index}
    size = (image_size, image_size)
    if train and augment:
        steps: list = [
            # A random crop of 60–100 % of the tile, resized back (nearest for the mask).
            v2.RandomResizedCrop(
                size, scale=(0.6, 1.0), ratio=(0.8, 1.25), interpolation=mode, antialias=True
            ),
            v2.RandomHorizontalFlip(),
            v2.RandomVerticalFlip(),
            v2.RandomRotation(10, fill=fill),
        ]
    else:
        steps = [v2.Resize(size, mode, antialias=True)]
    pipeline = v2.Compose(steps)
    normalise = _normalize_step(normalization)

    def apply(
        image: Image.Image | torch.Tensor, mask: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``image``: a PIL image, or its ``uint8`` ``(C, H, W)`` pixels (the decoded cache)."""
        pixels = tv_tensors.Image(image if isinstance(image, torch.Tensor) else image_pixels(image))
        labels = tv_tensors.Mask(torch.from_numpy(mask)[None])
        pixels, labels = pipeline(pixels, labels)
        return normalise(pixels.float() / 255.0), labels[0].long()

    return apply
