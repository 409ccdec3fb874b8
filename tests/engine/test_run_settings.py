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

    from torch_imbalance.engine.config import resolve_config

    image = Image.new("L", (8, 8), color=255)
    dark = Image.new("L", (8, 8), color=0)
    on = resolve_config({}).input_normalization(1)  # from scratch: 0.5 / 0.5
    off = resolve_config({"normalize": False}).input_normalization(1)
    assert off is None
    normalised = build_transform(8, 1, False, False, on)(image)
    raw = build_transform(8, 1, False, False, off)(image)
    torch.testing.assert_close(raw, torch.ones(1, 8, 8))
    torch.testing.assert_close(normalised, torch.ones(1, 8, 8))  # (1 − 0.5) / 0.5
    assert float(build_transform(8, 1, False, False, off)(dark).max()) == 0.0
    assert float(build_transform(8, 1, False, False, on)(dark).max()) == -1.0


def test_a_learnable_gamma_gets_its_own_learning_rate_and_no_weight_decay():
    from torch_imbalance.engine.module import ImbalanceModule

    config = resolve_config(
        {"loss": "dual_focal", "loss_params": {"learnable_gamma": True}, "gamma_lr": 0.05,
         "model": "test_resnet", "weight_decay": 0.01}
    )  # fmt: skip
    module = ImbalanceModule(config.to_dict(), ["a", "b"], [90, 10], 1)
    optimizer = module.configure_optimizers()["optimizer"]
    model_group, loss_group = optimizer.param_groups
    assert (model_group["lr"], model_group["weight_decay"]) == (1e-3, 0.01)
    assert (loss_group["lr"], loss_group["weight_decay"]) == (0.05, 0.0)
    assert all(p is q for p, q in zip(loss_group["params"], module.loss.parameters(), strict=True))
    # no parameters in the loss: one group
    plain = ImbalanceModule(
        resolve_config({"model": "test_resnet"}).to_dict(), ["a", "b"], [9, 1], 1
    )
    assert len(plain.configure_optimizers()["optimizer"].param_groups) == 1


@pytest.mark.slow
def test_same_seed_same_result(tmp_path):
    """Two deterministic runs with one seed give identical metrics (and a third seed differs)."""
    from torch_imbalance.engine.run import train

    def run(seed, name):
        settings = {"dataset": "digits-lt", "model": "test_resnet", "image_size": 16,
                    "epochs": 2, "batch_size": 16, "deterministic": True, "seed": seed,
                    "progress": False, "out": str(tmp_path / name)}  # fmt: skip
        return train(resolve_config(settings))

    first, second, other = run(0, "a"), run(0, "b"), run(1, "c")
    for key in ("val", "test"):
        assert first[key] == second[key]
    assert first["test"]["per_class"] != other["test"]["per_class"]
