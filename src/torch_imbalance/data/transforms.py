"""Preprocessing and light augmentation with torchvision's transforms v2."""

from __future__ import annotations

import torch
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
