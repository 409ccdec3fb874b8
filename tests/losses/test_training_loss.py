"""What a training loop asks of a loss (``_types.TrainingLoss``): every registry loss answers
it directly, and deferred re-weighting forwards to the loss it wraps."""

from __future__ import annotations

import pytest
import torch

import torch_imbalance as ti
from torch_imbalance._types import TrainingLoss

COUNTS = [100, 30, 10, 3]


def build(name: str) -> torch.nn.Module:
    return ti.build_loss(name, COUNTS, **({"total_epochs": 10} if name.endswith("_drw") else {}))


@pytest.mark.parametrize("name", ti.available_losses())
def test_every_registry_loss_is_a_training_loss(name):
    loss = build(name)
    assert isinstance(loss, TrainingLoss)
    loss.set_epoch(0)
    state = loss.training_state()
    assert set(state) <= {"gamma", "weight"}
    scale = loss.logit_scale()
    assert scale == (30.0 if name.startswith(("ldam", "lmf")) else 1.0)


def test_drw_forwards_the_scale_and_reports_the_weights_it_switched():
    loss = build("ldam_drw")  # switches at epoch 8 of 10
    assert loss.logit_scale() == loss.loss.logit_scale() == 30.0
    loss.set_epoch(0)
    torch.testing.assert_close(loss.training_state()["weight"], torch.ones(4))
    loss.set_epoch(8)
    switched = loss.training_state()["weight"]
    assert switched[3] > switched[0]  # the rare class weighs more after the switch


def test_drw_around_a_torch_loss():
    loss = ti.DeferredReweighting(torch.nn.CrossEntropyLoss(), COUNTS, start_epoch=1)
    assert loss.logit_scale() == 1.0
    loss.set_epoch(1)
    assert set(loss.training_state()) == {"weight"}


def test_learnable_gamma_and_adaptive_weights_are_reported():
    focal = ti.FocalLoss(gamma=2.0, learnable_gamma=True)
    assert focal.training_state()["gamma"] == pytest.approx(2.0)
    dual = ti.DualFocalLoss(class_weight="adaptive", class_counts=COUNTS)
    weight = dual.training_state()["weight"]
    assert weight.shape == (4,) and weight[3] > weight[0]
