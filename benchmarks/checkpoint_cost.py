"""What a run's checkpoints cost: their sizes, the time to write each, and the epoch times.

    python benchmarks/checkpoint_cost.py --out /tmp/ckpt-run

Trains br35h-lt with resnet18 at 64 px for 3 epochs (about 4 minutes on 2 cores), then reports
the size of ``best.ckpt`` and ``last.ckpt``, the time to write each again (best of 3, synced to
disk) and the training time of each epoch. Epoch times are only comparable on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import lightning.pytorch as pl
import torch

from torch_imbalance.engine import run as run_module
from torch_imbalance.engine.config import resolve_config


class EpochTimer(pl.Callback):
    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer, module) -> None:
        self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer, module) -> None:
        self.seconds.append(time.perf_counter() - self.started)


def write_seconds(payload: dict, path: Path) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        torch.save(payload, path)
        os.sync()
        best = min(best, time.perf_counter() - start)
    path.unlink()
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/checkpoint-cost")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    timer = EpochTimer()
    build = run_module.build_trainer

    def build_with_timer(*a, **k):
        trainer = build(*a, **k)
        trainer.callbacks.append(timer)
        return trainer

    run_module.build_trainer = build_with_timer
    settings = {
        "dataset": "br35h-lt",
        "model": "resnet18",
        "epochs": args.epochs,
        "image_size": 64,
        "out": args.out,
        "overwrite": True,
        "progress": False,
    }
    run_module.train(resolve_config(settings))
    folder = Path(args.out) / "checkpoints"
    report = {"epoch_seconds": [round(s, 1) for s in timer.seconds]}
    for name in ("best.ckpt", "last.ckpt"):
        path = folder / name
        payload = torch.load(path, map_location="cpu", weights_only=False)
        report[name] = {
            "MiB": round(path.stat().st_size / 2**20, 1),
            "write_seconds": round(write_seconds(payload, folder / f".{name}.again"), 3),
            "keys": sorted(payload),
        }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
