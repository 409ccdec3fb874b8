"""The input preprocessing comes from the pretrained model's configuration (timm) and is
recorded in the run's config; runs from scratch and runs begun before it was recorded keep
0.5 / 0.5 and bilinear resizing."""

from __future__ import annotations

import pytest
import torch

from torch_imbalance.data.transforms import build_transform, denormalize
from torch_imbalance.engine.config import ConfigError, resolve_config
from torch_imbalance.engine.preprocessing import with_model_preprocessing

IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


@pytest.mark.parametrize(
    ("settings", "mean", "std", "interpolation"),
    [
        ({"model": "resnet50", "pretrained": True}, *IMAGENET, "bicubic"),
        ({"model": "resnet50", "weights": "w.pt"}, *IMAGENET, "bicubic"),
        ({"model": "efficientnet_lite0", "pretrained": True}, [0.5] * 3, [0.5] * 3, "bicubic"),
        ({"model": "resnet50"}, [0.5], [0.5], "bilinear"),  # from scratch
        ({"model": "no_such_net", "pretrained": True}, [0.5], [0.5], "bilinear"),
        (
            {"task": "segmentation", "encoder": "tu-efficientnet_lite0", "pretrained": True},
            [0.5] * 3,
            [0.5] * 3,
            "bicubic",
        ),
        (
            {"model": "resnet50", "pretrained": True, "mean": [0.4], "interpolation": "bilinear"},
            [0.4],
            IMAGENET[1],
            "bilinear",
        ),
    ],
)
def test_preprocessing_follows_the_pretrained_weights(settings, mean, std, interpolation):
    config = with_model_preprocessing(resolve_config(settings))
    assert config.mean == pytest.approx(mean) and config.std == pytest.approx(std)
    assert config.interpolation == interpolation


def test_resumed_run_begun_before_recording_keeps_the_defaults():
    config = resolve_config({"model": "resnet50", "pretrained": True})
    legacy = with_model_preprocessing(config, legacy=True)
    assert (legacy.mean, legacy.std, legacy.interpolation) == ([0.5], [0.5], "bilinear")


def test_input_normalization_per_channel_and_off():
    config = with_model_preprocessing(resolve_config({"model": "resnet50", "pretrained": True}))
    assert config.input_normalization(3) == IMAGENET
    (grey_mean,), (grey_std,) = config.input_normalization(1)  # one grey channel: the average
    assert grey_mean == pytest.approx(sum(IMAGENET[0]) / 3)
    assert grey_std == pytest.approx(sum(IMAGENET[1]) / 3)
    assert resolve_config({"mean": [0.2], "std": [0.1]}).input_normalization(3) == (
        [0.2] * 3,
        [0.1] * 3,
    )
    with pytest.raises(ConfigError, match="mean has 2 values for 3 input channels"):
        resolve_config({"mean": [0.2, 0.3]}).input_normalization(3)
    lmf = with_model_preprocessing(resolve_config({"preset": "lmf-paper", "model": "resnet50"}))
    assert lmf.input_normalization(3) is None  # the authors' ToTensor only


def test_transform_normalizes_and_denormalize_inverts():
    from PIL import Image

    image = Image.fromarray((torch.rand(20, 20, 3) * 255).byte().numpy())
    normalization = IMAGENET
    pixels = build_transform(16, 3, False, False, None, "bicubic")(image)
    normed = build_transform(16, 3, False, False, normalization, "bicubic")(image)
    expected = (pixels - torch.tensor(IMAGENET[0]).view(3, 1, 1)) / torch.tensor(IMAGENET[1]).view(
        3, 1, 1
    )
    torch.testing.assert_close(normed, expected)
    torch.testing.assert_close(denormalize(normed[None], normalization)[0], pixels)
    bilinear = build_transform(16, 3, False, False, None, "bilinear")(image)
    assert not torch.equal(bilinear, pixels)  # the interpolation reaches the resize
