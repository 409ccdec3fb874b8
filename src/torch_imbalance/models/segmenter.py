"""segmentation-models-pytorch architectures by name, encoder weights off by default."""

from __future__ import annotations

import difflib

from torch import nn

from torch_imbalance.models.classifier import ModelError


def build_segmenter(
    arch: str,
    num_classes: int,
    in_channels: int = 1,
    encoder: str = "resnet18",
    encoder_weights: str | None = None,
) -> nn.Module:
    """An smp model (``Unet``, ``UnetPlusPlus``, ``FPN``, ``DeepLabV3Plus``, ...) with any of its
    encoders; logits ``(N, num_classes, H, W)``.

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
    encoders = smp.encoders.get_encoder_names()
    if encoder not in encoders:
        close = difflib.get_close_matches(encoder, encoders, n=4)
        raise ModelError(
            f"unknown encoder {encoder!r} for segmentation-models-pytorch"
            + (f"; did you mean {', '.join(close)}?" if close else "")
        )
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
                f"({type(error).__name__}: {error}); this needs the network"
            ) from error
        raise
