"""The training flags are generated from RunConfig: each setting declared once."""

from __future__ import annotations

import argparse
from dataclasses import fields

import pytest

from torch_imbalance.cli.main import build_parser, explicit_settings
from torch_imbalance.data import samplers
from torch_imbalance.engine import config as config_module
from torch_imbalance.engine.config import ConfigError, RunConfig, resolve_config
from torch_imbalance.engine.tasks import TASKS

#: A valid non-default command-line value of every flag-bearing setting, as typed by a user.
NON_DEFAULT = {
    "task": ("segmentation", "segmentation"),
    "dataset": ("elpv", "elpv"),
    "root": ("/data", "/data"),
    "channels": ("3", 3),
    "image_size": ("96", 96),
    "val_fraction": ("0.1", 0.1),
    "test_fraction": ("0.2", 0.2),
    "imbalance_ratio": ("50", 50.0),
    "label_mode": ("single", "single"),
    "train_fraction": ("0.5", 0.5),
    "max_per_class": ("80", 80),
    "val_keep_fraction": ("0.25", 0.25),
    "folds": ("5", 5),
    "sampler": ("oversample", "oversample"),
    "interpolation": ("bicubic", "bicubic"),
    "num_workers": ("2", 2),
    "cache_dir": ("/fast/cache", "/fast/cache"),
    "pin_memory": ("off", "off"),
    "channels_last": ("on", "on"),
    "num_classes": ("4", 4),
    "ignore_index": ("0", 0),
    "model": ("FPN", "FPN"),
    "encoder": ("resnet34", "resnet34"),
    "head": ("cosine", "cosine"),
    "weights": ("w.pth", "w.pth"),
    "loss": ("lmf", "lmf"),
    "preset": ("lmf-paper", "lmf-paper"),
    "epochs": ("3", 3),
    "batch_size": ("8", 8),
    "lr": ("0.01", 0.01),
    "gamma_lr": ("0.05", 0.05),
    "label_smoothing": ("0.1", 0.1),
    "weight_decay": ("0.0", 0.0),
    "optimizer": ("sgd", "sgd"),
    "scheduler": ("step", "step"),
    "step_size": ("5", 5),
    "step_gamma": ("0.5", 0.5),
    "precision": ("16-mixed", "16-mixed"),
    "seed": ("7", 7),
    "accelerator": ("cpu", "cpu"),
    "devices": ("2", "2"),
    "num_nodes": ("2", 2),
    "strategy": ("ddp", "ddp"),
    "out": ("runs/x", "runs/x"),
}
SWITCHES = {  # flag -> (setting, value it sets)
    "--no-augment": ("augment", False),
    "--no-normalize": ("normalize", False),
    "--pretrained": ("pretrained", True),
    "--margin-weights": ("margin_weights", True),
    "--overwrite": ("overwrite", True),
    "--no-progress": ("progress", False),
    "--deterministic": ("deterministic", True),
    "--no-cache": ("cache", False),
    "--no-reduced-decode": ("reduced_decode", False),
}


def train_settings(argv: list[str]) -> dict:
    return explicit_settings(build_parser().parse_args(["train", *argv]), skip=("resume",))


@pytest.mark.parametrize("name", sorted(NON_DEFAULT))
def test_each_setting_has_its_flag_and_reaches_the_config(name):
    text, value = NON_DEFAULT[name]
    flag = "--" + name.replace("_", "-")
    settings = train_settings([flag, text])
    assert settings == {name: value}
    assert getattr(RunConfig.from_dict(settings), name) == value


@pytest.mark.parametrize("flag", sorted(SWITCHES))
def test_switches(flag):
    name, value = SWITCHES[flag]
    assert train_settings([flag]) == {name: value}
    assert getattr(RunConfig(), name) is not value  # the switch changes the default


def test_every_setting_is_on_the_command_line_and_nothing_else():
    """The table above covers every field, so a new setting without a flag (or a flag without a
    setting) fails here."""
    covered = set(NON_DEFAULT) | {name for name, _ in SWITCHES.values()} | {"loss_params"}
    declared = {f.name for f in fields(RunConfig) if f.metadata["command_line"]}
    assert covered == declared
    parser = build_parser()
    train = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[
        "train"
    ]
    destinations = {a.dest for a in train._actions} - {"help", "config", "resume"}
    assert destinations == declared


def test_loss_params_accumulate_over_the_yaml_file(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("loss_params:\n  gamma: 1.0\n  beta: 0.9\n")
    settings = train_settings(
        ["--config", str(config), "--loss-param", "gamma=2", "--loss-param", "s=30"]
    )
    assert settings["loss_params"] == {"gamma": 2, "beta": 0.9, "s": 30}


def test_compare_has_no_per_run_loss_or_seed():
    compare = next(
        a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    ).choices["compare"]
    destinations = {a.dest for a in compare._actions}
    assert {"losses", "seeds", "loss_params"} <= destinations
    assert not {"loss", "seed"} & destinations


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"sampler": "smote"}, r"sampler must be one of \('none', 'oversample', 'undersample'\)"),
        ({"channels": 2}, r"channels must be one of \(1, 3\)"),
        ({"head": "mlp"}, "head must be one of"),
        ({"epochs": "ten"}, "epochs must be a number, got 'ten'"),
        ({"step_gamma": 0}, "step_gamma must be positive"),
        ({"num_workers": -1}, "num_workers must be at least 0"),
    ],
)
def test_declared_choices_and_ranges_are_validated(values, message):
    """Settings that were accepted silently before (an unknown sampler reached the data loader)."""
    with pytest.raises(ConfigError, match=message):
        resolve_config(values)


def test_declared_choices_match_their_owners():
    assert config_module.TASKS == tuple(TASKS)
    assert config_module.SAMPLERS == samplers.SAMPLERS
    assert {TASKS[name].default_model for name in TASKS} == {"resnet18", "Unet"}


def test_losses_split_outside_brackets():
    from torch_imbalance.cli.main import split_losses

    assert split_losses("ce, focal,w=ce:weight=[1,0.5,2]:gamma=1,") == [
        "ce",
        "focal",
        "w=ce:weight=[1,0.5,2]:gamma=1",
    ]
