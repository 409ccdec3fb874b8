"""Loader and device defaults (issue 26): workers, pinned memory and channels-last follow the
machine unless set, and the run's config records what was used."""

from __future__ import annotations

import os

import pytest
import torch

from torch_imbalance.engine import config as config_module
from torch_imbalance.engine.config import (
    MAX_DEFAULT_WORKERS,
    RunConfig,
    loader_workers,
    with_loader_defaults,
)
from torch_imbalance.engine.module import ImbalanceModule


def test_on_the_cpu_the_main_process_loads_and_nothing_is_pinned():
    resolved = with_loader_defaults(RunConfig(accelerator="cpu"))
    assert (resolved.num_workers, resolved.pin_memory, resolved.channels_last) == (0, "off", "off")


@pytest.mark.parametrize(("cores", "expected"), [(1, 0), (4, 3), (64, MAX_DEFAULT_WORKERS)])
def test_on_cuda_workers_follow_the_cores(monkeypatch, cores, expected):
    monkeypatch.setattr(config_module, "on_cuda", lambda config: True)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    resolved = with_loader_defaults(RunConfig())
    assert resolved.num_workers == expected
    assert (resolved.pin_memory, resolved.channels_last) == ("on", "on")
    # What the user set stays.
    kept = with_loader_defaults(RunConfig(num_workers=2, pin_memory="off", channels_last="off"))
    assert (kept.num_workers, kept.pin_memory, kept.channels_last) == (2, "off", "off")
    assert loader_workers(RunConfig(num_workers=0)) == 0


def test_loaders_take_the_resolved_settings():
    from torch_imbalance.engine.run import load_run_data
    from torch_imbalance.engine.tasks import task_for

    config = RunConfig(dataset="digits-lt", image_size=16, batch_size=8, num_workers=2)
    bundle = load_run_data(config)
    loaders = task_for("multiclass").loaders(config, bundle, 1)
    train = loaders["train"]
    assert train.num_workers == 2 and train.persistent_workers and train.prefetch_factor == 2
    assert not train.pin_memory


def test_channels_last_model_gives_the_same_outputs():
    config = RunConfig(model="resnet10t", image_size=32, channels_last="on").to_dict()
    torch.manual_seed(0)
    fast = ImbalanceModule(config, ["a", "b", "c"], [10, 5, 2], 3)
    torch.manual_seed(0)
    plain = ImbalanceModule({**config, "channels_last": "off"}, ["a", "b", "c"], [10, 5, 2], 3)
    assert fast.channels_last and not plain.channels_last
    conv = next(m for m in fast.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    images = torch.randn(2, 3, 32, 32)
    fast.eval(), plain.eval()
    torch.testing.assert_close(fast(images), plain(images), rtol=1e-4, atol=1e-5)


def test_a_run_from_before_reduced_decoding_keeps_reading_every_pixel():
    config = RunConfig(model="resnet10t", image_size=32).to_dict()
    assert ImbalanceModule(config, ["a", "b"], [5, 2], 3).config.reduced_decode is True
    del config["reduced_decode"]  # a checkpoint saved before the setting existed
    assert ImbalanceModule(config, ["a", "b"], [5, 2], 3).config.reduced_decode is False
