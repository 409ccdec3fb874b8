"""segmentation-models-pytorch architectures by name, encoder weights off by default."""

from __future__ import annotations

import difflib

from torch import nn

from torch_imbalance.models.pretrained import (
    ModelError,
    load_imagenet_weights,
    offline_architecture,
    offline_names,
)

#: smp's prefix for "any timm model as the encoder".
TIMM_PREFIX = "tu-"


def _offline_encoder(encoder: str) -> str | None:
    """The timm architecture of an encoder with offline ImageNet weights (``tu-efficientnet_lite0``
    or plain ``efficientnet_lite0``), or None."""
    return offline_architecture(encoder.removeprefix(TIMM_PREFIX))


def build_segmenter(
    arch: str,
    num_classes: int,
    in_channels: int = 1,
    encoder: str = "resnet18",
    encoder_weights: str | None = None,
) -> nn.Module:
    """An smp model (``Unet``, ``UnetPlusPlus``, ``FPN``, ``DeepLabV3Plus``, ...) with any of its
    encoders or any timm model as ``tu-NAME``; logits ``(N, num_classes, H, W)``.

    ``encoder_weights="imagenet"`` for the EfficientNet-Lite encoders (``tu-efficientnet_lite0``,
    or just ``efficientnet_lite0``; also 1 and 2) loads the offline weights of
    :mod:`torch_imbalance.models.pretrained`; other encoders fetch theirs from the network.

    Raises:
        ModelError: unknown architecture or encoder, or encoder weights that cannot be fetched.
    """
    import segmentation_models_pytorch as smp

    architectures = {key: cls.__name__ for key, cls in smp.MODEL_ARCHITECTURES_MAPPING.items()}
    if arch.lower() not in architectures:
        close = difflib.get_close_matches(arch, list(architectures.values()), n=4)
        raise ModelError(
            f"unknown segmentation architecture {arch!r}; available: "
            f"{', '.join(sorted(architectures.values()))}"
            + (f" (did you mean {', '.join(close)}?)" if close else "")
        )
    offline = _offline_encoder(encoder) if encoder_weights == "imagenet" else None
    if offline is not None:
        model = smp.create_model(
            architectures[arch.lower()],
            encoder_name=TIMM_PREFIX + offline,
            encoder_weights=None,
            in_channels=in_channels,
            classes=num_classes,
        )
        load_imagenet_weights(model.encoder.model, offline, in_channels)
        return model
    _check_encoder(encoder)
    try:
        return smp.create_model(
            architectures[arch.lower()],
            encoder_name=encoder,
            encoder_weights=encoder_weights,
            in_channels=in_channels,
            classes=num_classes,
        )
    except Exception as error:
        if encoder_weights is not None:
            raise ModelError(
                f"could not load {encoder_weights!r} weights for encoder {encoder!r} "
                f"({type(error).__name__}: {error}); this needs the network. Offline ImageNet "
                f"weights exist for the encoders {', '.join(offline_names())}"
            ) from error
        raise


def _check_encoder(encoder: str) -> None:
    import segmentation_models_pytorch as smp
    import timm

    if encoder.startswith(TIMM_PREFIX):
        if not timm.is_model(encoder.removeprefix(TIMM_PREFIX)):
            raise ModelError(f"unknown timm model in encoder {encoder!r}")
        return
    encoders = smp.encoders.get_encoder_names()
    if encoder not in encoders:
        close = difflib.get_close_matches(encoder, encoders, n=4)
        raise ModelError(
            f"unknown encoder {encoder!r} for segmentation-models-pytorch (or tu-NAME for any "
            "timm model)" + (f"; did you mean {', '.join(close)}?" if close else "")
        )
