"""Evaluate a checkpoint on its dataset's validation or test split."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from torch_imbalance.engine.config import RunConfig
from torch_imbalance.engine.module import ImbalanceModule
from torch_imbalance.engine.run import RunFolderError, build_loaders, load_run_data, write_json
from torch_imbalance.metrics.plots import (
    confusion_matrix_plot,
    per_class_bar_plot,
    per_class_f1_plot,
)
from torch_imbalance.metrics.report import run_report, segmentation_report


def load_module(checkpoint: Path) -> ImbalanceModule:
    if not checkpoint.is_file():
        raise RunFolderError(f"checkpoint not found: {checkpoint}")
    return ImbalanceModule.load_from_checkpoint(checkpoint, map_location="cpu")


def evaluate(checkpoint: Path, split: str, out: Path, overwrite: bool = False) -> dict[str, Any]:
    """Metrics of ``checkpoint`` on ``split`` (the split is rebuilt from the run's saved
    configuration, so it is the same images); writes ``metrics.json``, ``report.md`` and the
    figures into ``out``."""
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise RunFolderError(f"{out} already exists and is not empty; pass --overwrite")
        shutil.rmtree(out)
    module = load_module(checkpoint)
    config: RunConfig = module.config
    bundle = load_run_data(config)
    channels = config.channels or bundle.channels
    loaders = build_loaders(config, bundle, channels)
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
    metrics = {split: result, "config": config.to_dict(), "checkpoint": str(checkpoint)}
    title = f"{checkpoint} on the {split} split of {config.dataset}"
    if module.task == "segmentation":
        per_class_bar_plot(
            result["per_class_iou"], f"per-class IoU ({split})", out / "per_class_iou.png"
        )
        (out / "report.md").write_text(
            segmentation_report(
                title, {split: result}, ["per_class_iou.png"], {"checkpoint": str(checkpoint)}
            )
        )
    else:
        figures = []
        if "confusion_matrix" in result:
            confusion_matrix_plot(
                result["confusion_matrix"], list(result["per_class"]), out / "confusion_matrix.png"
            )
            figures.append("confusion_matrix.png")
        per_class_f1_plot(result["per_class"], out / "per_class_f1.png")
        figures.append("per_class_f1.png")
        (out / "report.md").write_text(
            run_report(title, {split: result}, {"checkpoint": str(checkpoint)}, figures)
        )
    write_json(out / "metrics.json", metrics)
    return metrics
