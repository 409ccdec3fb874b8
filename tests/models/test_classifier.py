"""timm classifiers by name, heads, local weights and their errors."""

from __future__ import annotations

import pytest
import torch

from torch_imbalance import NormedLinear
from torch_imbalance.models import build_classifier, default_head
from torch_imbalance.models.classifier import ModelError


def test_grey_input_and_heads():
    model = build_classifier("resnet18", 3, in_chans=1, head="cosine")
    assert isinstance(model.head, NormedLinear)
    with torch.no_grad():
        logits = model(torch.randn(2, 1, 32, 32))
    assert logits.shape == (2, 3)
    assert float(logits.abs().max()) <= 1.0 + 1e-6  # cosine logits
    assert isinstance(build_classifier("resnet18", 3).head, torch.nn.Linear)
    assert default_head("ldam_drw") == "cosine" and default_head("lmf") == "linear"


def test_unknown_names_are_clear_errors():
    with pytest.raises(ModelError, match="unknown timm model 'resnet_18'; did you mean"):
        build_classifier("resnet_18", 2)
    with pytest.raises(ModelError, match="head must be one of"):
        build_classifier("resnet18", 2, head="mlp")


def test_local_weights_file_is_loaded_and_checked(tmp_path):
    source = build_classifier("resnet18", 4, in_chans=1)
    path = tmp_path / "backbone.pt"
    torch.save(source.backbone.state_dict(), path)
    loaded = build_classifier("resnet18", 4, in_chans=1, weights=path)
    for (name, a), b in zip(
        source.backbone.state_dict().items(), loaded.backbone.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    with pytest.raises(ModelError, match="weights file not found"):
        build_classifier("resnet18", 4, weights=tmp_path / "absent.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot read weights file"):
        build_classifier("resnet18", 4, weights=junk)
    torch.save({"unrelated": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ModelError, match="no tensors that fit"):
        build_classifier("resnet18", 4, weights=tmp_path / "other.pt")
