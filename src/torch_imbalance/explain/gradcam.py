"""Grad-CAM attention maps (the ``grad-cam`` package) for test images under one or more
checkpoints, side by side in one figure, as in the LMF paper's figure."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from torch_imbalance.data import DatasetBundle

if TYPE_CHECKING:
    from torch_imbalance.data.transforms import Normalization
    from torch_imbalance.engine.module import ImbalanceModule

#: Grad-CAM maps coarser than this many cells a side show bands, not lesions.
MIN_CELLS = 7


def target_layer(model: nn.Module, image_size: int | None = None) -> nn.Module:
    """The deepest feature stage of a timm backbone (``feature_info``) whose map has at least
    :data:`MIN_CELLS` cells a side at ``image_size`` (the last stage when ``image_size`` is
    None or no stage is that fine), else the backbone's last conv.

    At 64×64 an EfficientNet's last stage (stride 32) gives 2×2 cells; its stride-8 stage
    (``blocks.2``) gives 8×8.
    """
    backbone = getattr(model, "backbone", model)
    info = getattr(backbone, "feature_info", None)
    if info is not None:
        try:
            stages = list(info)
            chosen = stages[-1]
            if image_size is not None:
                fine = [s for s in stages if image_size // s["reduction"] >= MIN_CELLS]
                chosen = fine[-1] if fine else chosen
            return backbone.get_submodule(chosen["module"])
        except (AttributeError, KeyError, IndexError, TypeError):
            pass
    convolutions = [m for m in backbone.modules() if isinstance(m, nn.Conv2d)]
    if not convolutions:
        raise ValueError("Grad-CAM needs a convolutional backbone; found no Conv2d layer")
    return convolutions[-1]


def layer_note(model: nn.Module, image_size: int) -> str:
    """``Grad-CAM at blocks.2 (8×8 cells)``: which layer the maps come from, and how fine."""
    backbone = getattr(model, "backbone", model)
    layer = target_layer(model, image_size)
    name = next((n for n, m in backbone.named_modules() if m is layer), "the last conv")
    cells = next(
        (image_size // s["reduction"] for s in getattr(backbone, "feature_info", []) or []
         if s.get("module") == name),
        None,
    )  # fmt: skip
    return f"Grad-CAM at {name}" + (f" ({cells}×{cells} cells)" if cells else "")


def choose_images(labels: np.ndarray, count: int) -> list[int]:
    """``count`` indices taking the classes in turn, rarest first (so rare classes show)."""
    classes = np.argsort(np.bincount(labels))
    pools = {int(c): list(np.flatnonzero(labels == c)) for c in classes}
    chosen: list[int] = []
    while len(chosen) < count and any(pools.values()):
        for c in classes:
            if pools[int(c)] and len(chosen) < count:
                chosen.append(int(pools[int(c)].pop(0)))
    return chosen


def attention_maps(
    module: ImbalanceModule, images: torch.Tensor, labels: list[int]
) -> tuple[np.ndarray, torch.Tensor]:
    """Grad-CAM maps ``(n, H, W)`` in [0, 1] for the given classes, and the probabilities."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = module.model.eval()
    layer = target_layer(model, images.shape[-1])
    with GradCAM(model=model, target_layers=[layer]) as cam:
        maps = cam(images, targets=[ClassifierOutputTarget(c) for c in labels])
    with torch.no_grad():
        probabilities = module.probabilities(model(images))
    return maps, probabilities


def gradcam_figure(
    modules: Sequence[tuple[str, ImbalanceModule]],
    bundle: DatasetBundle,
    split: str,
    indices: list[int],
    channels: int,
    image_size: int,
    out: Path,
    *,
    normalization: Normalization = None,
    interpolation: str = "bilinear",
    decode_size: int | None = None,
) -> Path:
    """One row per image: the image, then its Grad-CAM overlay under each checkpoint (for the
    true class), titled with the checkpoint's predicted class and probability."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from pytorch_grad_cam.utils.image import show_cam_on_image

    from torch_imbalance.data.dataset import ImageDataset
    from torch_imbalance.data.transforms import build_transform, denormalize

    part = getattr(bundle, split)
    if not indices:
        raise ValueError("no images chosen")
    bad = [i for i in indices if not 0 <= i < len(part)]
    if bad:
        raise ValueError(f"image indices {bad} are outside the {split} split (0..{len(part) - 1})")
    transform = build_transform(image_size, channels, False, False, normalization, interpolation)
    dataset = ImageDataset(part, channels, transform, at_least=decode_size)
    images = torch.stack([dataset[i][0] for i in indices])
    labels = [int(part.labels[i]) for i in indices]
    shown = (denormalize(images, normalization).clamp(0, 1).permute(0, 2, 3, 1).numpy()).astype(
        np.float32
    )
    if shown.shape[-1] == 1:
        shown = np.repeat(shown, 3, axis=-1)
    columns = 1 + len(modules)
    fig, axes = plt.subplots(
        len(indices), columns, figsize=(2.4 * columns, 2.4 * len(indices)), squeeze=False
    )
    for row, index in enumerate(indices):
        axes[row][0].imshow(shown[row])
        axes[row][0].set_title(
            f"{part.ids[index]}\ntrue: {bundle.classes[labels[row]]}", fontsize=7
        )
    for column, (name, module) in enumerate(modules, 1):
        maps, probabilities = attention_maps(module, images, labels)
        for row in range(len(indices)):
            overlay = show_cam_on_image(shown[row], maps[row], use_rgb=True)
            predicted = int(probabilities[row].argmax())
            axes[row][column].imshow(overlay)
            axes[row][column].set_title(
                f"{name}\npred {bundle.classes[predicted]} "
                f"({float(probabilities[row, predicted]):.2f})",
                fontsize=7,
            )
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(
        f"{layer_note(modules[0][1].model, image_size)} at {image_size}×{image_size} input",
        fontsize=8,
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    plt.close(fig)
    return out
