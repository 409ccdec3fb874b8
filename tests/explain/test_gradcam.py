"""Grad-CAM's layer: fine enough to show a lesion (at least 7×7 cells), as deep as that allows."""

from __future__ import annotations

import pytest
import torch

from torch_imbalance.explain.gradcam import MIN_CELLS, layer_note, target_layer
from torch_imbalance.models import build_classifier


@pytest.mark.parametrize(
    ("size", "module", "cells"),
    [(64, "blocks.2", 8), (32, "blocks.1", 8), (224, "blocks.6", 7), (16, "blocks.0", 8)],
)
def test_the_deepest_stage_with_at_least_seven_cells(size, module, cells):
    model = build_classifier("efficientnet_lite0", 2, in_chans=1, pretrained=False)
    layer = target_layer(model, size)
    assert layer is model.backbone.get_submodule(module)
    assert layer_note(model, size) == f"Grad-CAM at {module} ({cells}×{cells} cells)"
    # the layer's map really has that many cells
    seen = []
    handle = layer.register_forward_hook(lambda _m, _i, out: seen.append(out.shape[-1]))
    with torch.no_grad():
        model.eval()(torch.zeros(1, 1, size, size))
    handle.remove()
    assert seen == [cells] and cells >= MIN_CELLS


def test_without_an_image_size_the_last_stage():
    model = build_classifier("efficientnet_lite0", 2, in_chans=1, pretrained=False)
    assert target_layer(model) is model.backbone.get_submodule("blocks.6")
