"""Trainer construction: loggers, checkpoints (written atomically), progress, scaling flags."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO

from torch_imbalance.engine.config import RunConfig


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file beside it, then renames it into place: a run
    killed while saving leaves the previous checkpoint intact, never a truncated one."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        torch.save(checkpoint, temporary)
        os.replace(temporary, path)


def parse_devices(devices: str) -> int | str | list[int]:
    """``"auto"``, a count (``"2"``) or a list of ids (``"0,1"``) as Lightning expects."""
    text = str(devices).strip()
    if text == "auto" or text == "-1":
        return text if text == "auto" else -1
    if "," in text:
        return [int(part) for part in text.split(",") if part]
    return int(text)


def log_version(run_dir: Path, resume: bool) -> str:
    """``""`` for a new run; ``resume-<k>`` for the k-th resume, so that resuming never
    replaces the logs of the attempts before it."""
    if not resume:
        return ""
    attempt = 1
    while (run_dir / "logs" / "csv" / f"resume-{attempt}").exists():
        attempt += 1
    return f"resume-{attempt}"


def build_trainer(
    config: RunConfig,
    run_dir: Path,
    enable_checkpoints: bool = True,
    monitor: str = "val/macro_f1",
) -> pl.Trainer:
    """A Trainer logging to CSV and TensorBoard under ``run_dir/logs`` and keeping, under
    ``run_dir/checkpoints``, the best weights (by ``monitor``, maximised: ``best.ckpt``) and the
    full training state of the last epoch (``last.ckpt``, for ``--resume``)."""
    callbacks: list[pl.Callback] = []
    if enable_checkpoints:
        callbacks += [
            # best.ckpt: the weights and hyper-parameters (all evaluate, predict and Grad-CAM
            # need), written when the monitored metric improves; no optimiser state.
            ModelCheckpoint(
                dirpath=run_dir / "checkpoints",
                filename="best",
                monitor=monitor,
                mode="max",
                save_weights_only=True,
                auto_insert_metric_name=False,
            ),
            # last.ckpt: everything --resume needs (optimiser, scheduler, loops), every epoch.
            ModelCheckpoint(
                dirpath=run_dir / "checkpoints",
                filename="last",
                monitor=None,
                save_top_k=1,
                enable_version_counter=False,
            ),
        ]
    if config.progress:
        callbacks.append(RichProgressBar(leave=False))
    version = log_version(run_dir, config.resume)
    loggers = [
        CSVLogger(run_dir / "logs", name="csv", version=version),
        TensorBoardLogger(
            run_dir / "logs", name="tensorboard", version=version, default_hp_metric=False
        ),
    ]
    return pl.Trainer(
        max_epochs=config.epochs,
        accelerator=config.accelerator,
        devices=parse_devices(config.devices),
        num_nodes=config.num_nodes,
        strategy=config.strategy,
        precision=config.precision,  # type: ignore[arg-type]  # checked by Lightning
        logger=loggers,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=config.progress,
        enable_model_summary=False,
        log_every_n_steps=1,
        # The first real validation follows the first epoch; a sanity pass on two batches
        # (often one class) would only warn about degenerate AUROC inputs.
        num_sanity_val_steps=0,
        deterministic=config.deterministic,
        default_root_dir=run_dir,
    )
