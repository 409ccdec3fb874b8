"""A killed run resumes to the same result; a 2-process DDP run (gloo, CPU) through Lightning."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from harness_helpers import Killed, kill_after_epoch

from torch_imbalance.engine.config import resolve_config
from torch_imbalance.engine.run import train

BASE = {
    "dataset": "digits-lt",
    "epochs": 3,
    "image_size": 16,
    "batch_size": 32,
    "max_per_class": 30,
    "loss": "ldam_drw",
    "progress": False,
}


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_final_metrics(tmp_path, monkeypatch):
    uninterrupted = train(resolve_config({**BASE, "out": str(tmp_path / "full")}))

    kill_after_epoch(monkeypatch, 1)
    with pytest.raises(Killed):
        train(resolve_config({**BASE, "out": str(tmp_path / "killed")}))
    assert (tmp_path / "killed" / "checkpoints" / "last.ckpt").is_file()
    assert not (tmp_path / "killed" / "metrics.json").exists()
    monkeypatch.undo()
    resumed = train(resolve_config({**BASE, "out": str(tmp_path / "killed"), "resume": True}))
    for split in ("val", "test"):
        for name in ("macro_f1", "accuracy", "auroc", "ece"):
            assert resumed[split][name] == pytest.approx(uninterrupted[split][name], abs=1e-6), (
                split,
                name,
            )
    assert resumed["loss_state"] == pytest.approx(uninterrupted["loss_state"])
    # The first attempt's logs are kept beside the resumed attempt's.
    logs = tmp_path / "killed" / "logs" / "csv"
    assert (logs / "metrics.csv").is_file() and (logs / "resume-1" / "metrics.csv").is_file()


@pytest.mark.slow
def test_two_process_ddp_run_on_cpu(tmp_path):
    out = tmp_path / "ddp"
    command = [
        sys.executable,
        "-m",
        "torch_imbalance.cli",
        "train",
        "--dataset",
        "digits-lt",
        "--loss",
        "dual_focal_adaptive",
        "--epochs",
        "1",
        "--image-size",
        "16",
        "--max-per-class",
        "20",
        "--batch-size",
        "16",
        "--accelerator",
        "cpu",
        "--devices",
        "2",
        "--strategy",
        "ddp",
        "--out",
        str(out),
        "--no-progress",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["strategy"] == "ddp"
    # The metrics synced over the two processes equal one process's evaluation of the chosen
    # checkpoint on the whole test split (an unsynced metric would see half the images).
    from torch_imbalance.engine.evaluate import evaluate

    single = evaluate(out / metrics["checkpoint"], "test", tmp_path / "evaluation")["test"]
    for name in ("macro_f1", "balanced_accuracy", "accuracy"):
        assert metrics["test"][name] == pytest.approx(single[name], abs=1e-6), name
    assert sum(row["support"] for row in metrics["test"]["per_class"].values()) == sum(
        row["support"] for row in single["per_class"].values()
    )
    weights = [k for k in metrics["loss_state"] if k.startswith("loss/weight_")]
    assert len(weights) == 10  # the adaptive weights were logged
