"""Tiny synthetic datasets written in the real on-disk formats (a few small images)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, value: int, size: int = 12, mode: str = "RGB") -> Path:
    """A small image whose content depends on ``value`` (so classes are learnable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    pixels = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
    pixels[: size // 2, :, value % 3] += np.uint8(150)
    image = Image.fromarray(pixels)
    image.convert(mode).save(path)
    return path


def write_imagefolder(
    root: Path, counts: dict[str, int], splits: tuple[str, ...] = (), suffix: str = ".png"
) -> Path:
    """``root/<class>/<i>.png`` or, with ``splits``, ``root/<split>/<class>/<i>.png``."""
    for split in splits or ("",):
        for label, (name, count) in enumerate(counts.items()):
            for i in range(count):
                write_image(root / split / name / f"{name}_{i}{suffix}", label * 1000 + i)
    return root
