"""Evaluate a checkpoint on its dataset's validation or test split."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from torch_imbalance.engine.config import RunConfig
from torch_imbalance.engine.module import ImbalanceModule
from torch_imbalance.engine.outputs import write_json
from torch_imbalance.engine.run import (
    RunFolderError,
    build_loaders,
    load_run_data,
    write_predictions,
)
from torch_imbalance.engine.tasks import PREDICTIONS


def load_module(checkpoint: Path) -> ImbalanceModule:
    """Our Lightning module from ``checkpoint``; anything else is a clear error."""
    if not checkpoint.is_file():
        raise RunFolderError(f"checkpoint not found: {checkpoint}")
    try:
        payload = torch.load(checkpoint, map_location="cpu", weights_only=False, mmap=True)
    except Exception as error:  # a truncated file, not a torch file at all, ...
        raise RunFolderError(f"{checkpoint} is not a readable checkpoint: {error}") from error
    hyper = payload.get("hyper_parameters") if isinstance(payload, dict) else None
    needed = {"config", "classes", "class_counts", "channels"}
    if not isinstance(hyper, dict) or not needed <= set(hyper) or "state_dict" not in payload:
        raise RunFolderError(
            f"{checkpoint} is not a torch-imbalance checkpoint (expected the best.ckpt or "
            "last.ckpt that `torch-imbalance train` writes, with hyper-parameters "
            f"{sorted(needed)} and a state_dict)"
        )
    return ImbalanceModule.load_from_checkpoint(checkpoint, map_location="cpu")


def evaluate(checkpoint: Path, split: str, out: Path, overwrite: bool = False) -> dict[str, Any]:
    """Metrics of ``checkpoint`` on ``split`` (the split is rebuilt from the run's saved
    configuration, so it is the same images); writes ``metrics.json``, ``report.md``, the
    figures and ``predictions/<split>.*`` into ``out``."""
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise RunFolderError(f"{out} already exists and is not empty; pass --overwrite")
        shutil.rmtree(out)
    module = load_module(checkpoint)
    config: RunConfig = module.config
    bundle = load_run_data(config)
    channels = config.channels or bundle.channels
    loaders = build_loaders(config, bundle, channels, module.task_spec)
    trainer = pl.Trainer(
        accelerator=config.accelerator,
        devices=1,
        logger=False,
        enable_progress_bar=config.progress,
        enable_model_summary=False,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        if split == "test":
            trainer.test(module, loaders["test"], verbose=False)
        else:
            trainer.validate(module, loaders["val"], verbose=False)
    result = module.summaries[split]
    out.mkdir(parents=True, exist_ok=True)
    write_predictions(out / PREDICTIONS, module.task_spec, module, bundle)
    metrics = {split: result, "config": config.to_dict(), "checkpoint": str(checkpoint)}
    module.task_spec.write_report(
        out,
        f"{checkpoint} on the {split} split of {config.dataset}",
        {split: result},
        {"checkpoint": str(checkpoint)},
    )
    write_json(out / "metrics.json", metrics)
    return metrics
