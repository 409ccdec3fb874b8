"""End-to-end segmentation runs of the ``torch-imbalance`` command."""

from __future__ import annotations

import json

import numpy as np
import pytest
from harness_helpers import Killed, kill_after_epoch, write_segfolder

from torch_imbalance.cli.main import main
from torch_imbalance.engine.config import resolve_config
from torch_imbalance.engine.run import train

SEG = ["--task", "segmentation", "--batch-size", "8", "--no-progress"]
SEG_TEST_KEYS = {"miou", "mean_dice", "pixel_accuracy", "per_class_iou", "per_class_dice"}


@pytest.mark.slow
@pytest.mark.compiled
def test_dual_focal_adaptive_on_dsb2018_nuclei(tmp_path):
    out = tmp_path / "dsb"
    code = main(
        [
            "train",
            "--dataset",
            "dsb2018-nuclei",
            "--loss",
            "dual_focal_adaptive",
            "--epochs",
            "1",
            "--seed",
            "0",
            "--out",
            str(out),
            *SEG,
        ]
    )
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert SEG_TEST_KEYS <= set(metrics["test"])
    assert set(metrics["test"]["per_class_iou"]) == {"background", "interior", "boundary"}
    assert {"loss/gamma", "loss/weight_boundary"} <= set(metrics["loss_state"])
    for name in ("overlays.png", "per_class_iou.png", "training_curves.png", "report.md"):
        assert (out / name).is_file(), name
    evaluation = tmp_path / "eval"
    assert main(["evaluate", str(out / "checkpoints" / "best.ckpt"), "--out", str(evaluation)]) == 0
    report = (out / "report.md").read_text()
    assert "| rarest_class_iou |" in report and "| boundary |" in report
    assert "| boundary |" in (evaluation / "report.md").read_text()
    evaluated = json.loads((evaluation / "metrics.json").read_text())["test"]
    assert evaluated["miou"] == pytest.approx(metrics["test"]["miou"], abs=1e-6)
    # Per-image confusion matrices add up to the split's.
    per_image = np.load(out / "predictions" / "test_confusion.npz")
    assert per_image["confusion"].shape == (len(per_image["ids"]), 3, 3)
    np.testing.assert_array_equal(
        per_image["confusion"].sum(0), np.array(metrics["test"]["confusion_matrix"])
    )


@pytest.mark.slow
def test_offline_pretrained_encoder_on_dsb2018(tmp_path):
    out = tmp_path / "dsb"
    arguments = ["train", "--dataset", "dsb2018-nuclei", "--encoder", "tu-efficientnet_lite0"]
    code = main([*arguments, "--pretrained", "--epochs", "1", "--out", str(out), *SEG])
    assert code == 0
    assert json.loads((out / "metrics.json").read_text())["config"]["pretrained"]


@pytest.mark.slow
def test_segfolder_compare_with_dice_ce_and_overlays(tmp_path, capsys):
    root = write_segfolder(tmp_path / "seg", count=16)
    out = tmp_path / "cmp"
    code = main(
        [
            "compare",
            "--dataset",
            "segfolder",
            "--root",
            str(root),
            "--losses",
            "ce,dice_ce,focal",
            "--epochs",
            "1",
            "--image-size",
            "32",
            "--out",
            str(out),
            *SEG,
        ]
    )
    assert code == 0
    summary = (out / "summary.md").read_text()
    assert "| `dice_ce` | 1 |" in summary and "Δ rarest_class_iou [Holm 95 %]" in summary
    assert (out / "summary_overlays.png").is_file() and (out / "summary.png").is_file()
    test = json.loads((out / "Unet" / "dice_ce" / "seed-0" / "metrics.json").read_text())["test"]
    assert set(test["per_class_iou"]) == {"class0", "class1", "class2"}


def test_task_and_dataset_must_agree(tmp_path, capsys):
    assert (
        main(
            ["train", "--dataset", "dsb2018-nuclei", "--out", str(tmp_path / "r"), "--no-progress"]
        )
        == 2
    )
    assert "pass --task segmentation" in capsys.readouterr().err
    assert main(["train", "--dataset", "digits-lt", "--out", str(tmp_path / "r"), *SEG]) == 2
    assert "pass --task classification" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                "--dataset",
                "dsb2018-nuclei",
                "--model",
                "Unett",
                "--out",
                str(tmp_path / "r"),
                *SEG,
            ]
        )
        == 2
    )
    assert "unknown segmentation architecture 'Unett'" in capsys.readouterr().err


@pytest.mark.slow
def test_killed_segmentation_run_resumes_to_the_same_result(tmp_path, monkeypatch):
    root = write_segfolder(tmp_path / "seg", count=12)
    base = {
        "task": "segmentation",
        "dataset": "segfolder",
        "root": str(root),
        "epochs": 3,
        "image_size": 24,
        "batch_size": 4,
        "loss": "dual_focal_adaptive",
        "progress": False,
    }
    full = train(resolve_config({**base, "out": str(tmp_path / "full")}))
    kill_after_epoch(monkeypatch, 1)  # epoch 0's checkpoint is on disk by then
    with pytest.raises(Killed):
        train(resolve_config({**base, "out": str(tmp_path / "killed")}))
    monkeypatch.undo()
    resumed = train(resolve_config({**base, "out": str(tmp_path / "killed"), "resume": True}))
    assert resumed["test"]["miou"] == pytest.approx(full["test"]["miou"], abs=1e-6)
    assert resumed["loss_state"] == pytest.approx(full["loss_state"])
