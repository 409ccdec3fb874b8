"""Preprocessing and light augmentation with torchvision's transforms v2: images alone
(classification) or an image and its mask together (segmentation)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2


def build_transform(
    image_size: int, channels: int, train: bool, augment: bool = True, normalize: bool = True
):
    """Resize to ``image_size``², scale to [0, 1] and (``normalize``) to mean 0.5 / std 0.5; in
    training, horizontal flips and rotations of up to 10° (the light augmentation of the
    protocol)."""
    steps: list = [v2.ToImage(), v2.Resize((image_size, image_size), antialias=True)]
    if train and augment:
        steps += [v2.RandomHorizontalFlip(), v2.RandomRotation(10)]
    steps.append(v2.ToDtype(torch.float32, scale=True))
    if normalize:
        steps.append(v2.Normalize([0.5] * channels, [0.5] * channels))
    return v2.Compose(steps)


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
