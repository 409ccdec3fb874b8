"""``--label-smoothing`` (issue 25): the run's loss gets it; a loss or data that does not
define it is refused before training, by name."""

from __future__ import annotations

import pytest

from torch_imbalance.engine.config import ConfigError, RunConfig
from torch_imbalance.engine.module import build_run_loss


def test_the_flag_reaches_the_loss():
    config = RunConfig(loss="lmf_drw", label_smoothing=0.15, epochs=4).validate()
    loss = build_run_loss(config, [30, 10, 2], "classification")
    assert loss.loss.label_smoothing == 0.15  # through deferred re-weighting
    assert RunConfig().label_smoothing == 0.0
    assert build_run_loss(RunConfig(), [3, 2], "classification").label_smoothing == 0.0


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"loss": "dual_focal"}, "loss 'dual_focal' does not define label smoothing"),
        ({"task": "segmentation", "loss": "dice_ce"}, "loss 'dice_ce' does not define"),
        ({"loss": "poly1"}, "loss 'poly1' does not define"),
        ({"dataset": "odir5k", "label_mode": "multilabel"}, "not --label-mode multilabel"),
    ],
)
def test_undefined_is_refused_before_training(settings, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig(**settings, label_smoothing=0.1).validate()
    RunConfig(**settings).validate()  # without it: fine


def test_more_than_one_is_refused():
    with pytest.raises(ConfigError, match="at most 1"):
        RunConfig(label_smoothing=2.0).validate()
