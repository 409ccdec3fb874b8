"""The run configuration: defaults, presets, YAML files and flags, validation."""

from __future__ import annotations

import pytest

from torch_imbalance.engine.config import ConfigError, RunConfig, load_yaml, resolve_config


def test_preset_sits_between_defaults_and_explicit_settings():
    config = resolve_config({"preset": "lmf-paper", "lr": 5e-4})
    assert config.optimizer == "adam" and config.scheduler == "step"
    assert config.lr == 5e-4  # the explicit value wins over the preset's 1e-4
    assert resolve_config({"preset": "lmf-paper"}).lr == 1e-4
    with pytest.raises(ConfigError, match="unknown preset 'sota'"):
        resolve_config({"preset": "sota"})


def test_lmf_paper_preset_is_the_authors_config_ini():
    """github.com/Adnan-Sadi/LMFLOSS config.ini ([hyperparameters]) and train.py (optim.Adam with
    weight_decay, StepLR, Resize + ToTensor only, margins as the baselines' class weights)."""
    config = resolve_config({"preset": "lmf-paper"})
    assert (config.optimizer, config.lr, config.weight_decay) == ("adam", 1e-4, 5e-4)
    assert (config.scheduler, config.step_size, config.step_gamma) == ("step", 30, 0.1)
    assert (config.epochs, config.batch_size, config.image_size) == (100, 32, 224)
    assert not config.augment and not config.normalize
    assert config.margin_weights and config.pretrained


def test_model_default_follows_the_task():
    assert resolve_config({}).model == "resnet18"
    assert resolve_config({"task": "segmentation"}).model == "Unet"
    assert resolve_config({"task": "segmentation", "model": "FPN"}).model == "FPN"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"task": "detection"}, "task must be one of"),
        ({"optimizer": "lion"}, "optimizer must be one of"),
        ({"scheduler": "onecycle"}, "scheduler must be one of"),
        ({"batch_size": 0}, "batch_size must be at least 1"),
        ({"lr": 0.0}, "lr must be positive"),
        ({"resume": True, "overwrite": True}, "exclude each other"),
        ({"epoch": 3}, r"unknown key\(s\) \['epoch'\]"),
    ],
)
def test_bad_settings_are_named(values, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config(values)


def test_yaml_files_are_read_and_checked(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("loss: lmf\nloss_params:\n  gamma: 2.0\n")
    assert load_yaml(good) == {"loss": "lmf", "loss_params": {"gamma": 2.0}}
    with pytest.raises(ConfigError, match="config file not found"):
        load_yaml(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("loss: [unclosed\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_yaml(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_yaml(listing)
    assert RunConfig.from_dict({"seed": 3}).seed == 3
