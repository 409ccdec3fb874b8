"""Run settings that change what the engine builds: margin-weighted baselines, normalisation."""

from __future__ import annotations

import pytest
import torch

import torch_imbalance as ti
from torch_imbalance.data.transforms import build_transform
from torch_imbalance.engine.config import resolve_config
from torch_imbalance.engine.module import build_run_loss

COUNTS = [400, 90, 20, 5]


@pytest.mark.parametrize("loss", ["focal", "ldam"])
def test_margin_weights_weight_the_authors_baselines(loss):
    config = resolve_config({"loss": loss, "margin_weights": True})
    built = build_run_loss(config, COUNTS, "multiclass")
    torch.testing.assert_close(built.weight, ti.ldam_margins(COUNTS))
    assert build_run_loss(resolve_config({"loss": loss}), COUNTS, "multiclass").weight is None


def test_margin_weights_leave_other_losses_alone():
    for loss in ("ce", "lmf", "lmf_official", "balanced_softmax"):
        config = resolve_config({"loss": loss, "margin_weights": True})
        assert getattr(build_run_loss(config, COUNTS, "multiclass"), "weight", None) is None


def test_normalize_off_feeds_zero_to_one_pixels():
    from PIL import Image

    image = Image.new("L", (8, 8), color=255)
    normalised = build_transform(8, 1, train=False)(image)
    raw = build_transform(8, 1, train=False, normalize=False)(image)
    torch.testing.assert_close(raw, torch.ones(1, 8, 8))
    torch.testing.assert_close(normalised, torch.ones(1, 8, 8))  # (1 − 0.5) / 0.5
    dark = Image.new("L", (8, 8), color=0)
    assert float(build_transform(8, 1, False, normalize=False)(dark).max()) == 0.0
    assert float(build_transform(8, 1, False)(dark).max()) == -1.0
