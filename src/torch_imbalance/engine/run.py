"""A training run from its configuration: run folder, data, model, fit, evaluate, outputs."""

from __future__ import annotations

import shutil
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import DataLoader

from torch_imbalance.data import DatasetError, load_dataset
from torch_imbalance.engine.config import RunConfig, load_yaml, save_yaml, with_loader_defaults
from torch_imbalance.engine.module import ImbalanceModule
from torch_imbalance.engine.outputs import write_json
from torch_imbalance.engine.preprocessing import with_model_preprocessing
from torch_imbalance.engine.tasks import PREDICTIONS, TASKS, Bundle, Task, task_for
from torch_imbalance.engine.trainer import build_trainer

__all__ = ["BEST_CHECKPOINT", "LAST_CHECKPOINT", "RunFolderError", "train", "write_json"]

LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"
BEST_CHECKPOINT = Path("checkpoints") / "best.ckpt"


class RunFolderError(ValueError):
    """The run folder cannot be used as asked (exists, or has nothing to resume)."""


def prepare_run_dir(config: RunConfig) -> Path:
    """The run folder, created; an existing one is only reused with ``resume`` and only
    deleted with ``overwrite``."""
    run_dir = Path(config.out)
    occupied = run_dir.exists() and any(run_dir.iterdir())
    if config.resume:
        if not (run_dir / LAST_CHECKPOINT).is_file():
            raise RunFolderError(
                f"--resume: no checkpoint to resume from at {run_dir / LAST_CHECKPOINT}"
            )
        return run_dir
    if occupied:
        if not config.overwrite:
            raise RunFolderError(
                f"run folder {run_dir} already exists and is not empty; pass --resume to "
                "continue it, --overwrite to replace it, or choose another --out"
            )
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def load_run_data(config: RunConfig) -> Bundle:
    """The run's dataset; it must be data of ``config.task``."""
    from torch_imbalance.data import SEGMENTATION

    wanted = TASKS[config.task]
    kind = "segmentation" if config.dataset in SEGMENTATION else "classification"
    if kind != wanted.name:
        raise DatasetError(
            f"dataset {config.dataset!r} is a {kind} dataset but the task is {config.task!r}; "
            f"pass --task {kind}"
        )
    return load_dataset(
        config.dataset,
        config.root,
        seed=config.seed,
        train_fraction=config.train_fraction,
        max_per_class=config.max_per_class,
        val_keep_fraction=config.val_keep_fraction,
        val_fraction=config.val_fraction,
        test_fraction=config.test_fraction,
        imbalance_ratio=config.imbalance_ratio,
        label_mode=config.label_mode,
        **wanted.data_options(config),
    )


def build_loaders(
    config: RunConfig, bundle: Bundle, channels: int, task: Task
) -> dict[str, DataLoader]:
    """Train (shuffled or re-sampled), val and test loaders of the bundle's task."""
    return task.loaders(config, bundle, channels)


def train(config: RunConfig) -> dict[str, Any]:
    """Train, select the best epoch by the task's validation metric (macro F1, mIoU), evaluate
    it on val and test, write the run folder.

    Returns:
        The content of ``metrics.json``.
    """
    config.validate()
    saved = Path(config.out) / "config.yaml"
    begun_unrecorded = config.resume and saved.is_file() and "interpolation" not in load_yaml(saved)
    config = with_loader_defaults(with_model_preprocessing(config, legacy=begun_unrecorded))
    if config.resume and saved.is_file() and "reduced_decode" not in load_yaml(saved):
        config = replace(config, reduced_decode=False)  # begun reading every pixel: keep on
    # Under DDP the launcher re-runs this function in every process; only the first prepares
    # and writes the folder (the others find it already there).
    is_first_process = getattr(rank_zero_only, "rank", 0) == 0
    run_dir = prepare_run_dir(config) if is_first_process else Path(config.out)
    pl.seed_everything(config.seed, workers=True, verbose=False)
    bundle = load_run_data(config)
    counts = bundle.class_counts()
    channels = config.channels or bundle.channels
    task = task_for(bundle.task)
    if is_first_process:
        bundle.save_splits(run_dir / "splits")
        save_yaml(config, run_dir / "config.yaml")
    loaders = build_loaders(config, bundle, channels, task)
    ignore_index = getattr(bundle, "ignore_index", None)
    module = ImbalanceModule(
        config.to_dict(), bundle.classes, counts, channels, bundle.task, ignore_index
    )
    trainer = build_trainer(config, run_dir, monitor=f"val/{task.primary_metric}")
    with warnings.catch_warnings():
        # Small datasets give Lightning's few-batches and no-workers hints on every run.
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*number of training batches.*")
        # Resuming reuses the checkpoint folder on purpose; Lightning's own deprecation notice.
        warnings.filterwarnings("ignore", ".*Checkpoint directory .* exists and is not empty.*")
        warnings.filterwarnings("ignore", ".*LeafSpec.*")
        resume_from = run_dir / LAST_CHECKPOINT if config.resume else None
        trainer.fit(module, loaders["train"], loaders["val"], ckpt_path=resume_from)
        best = run_dir / BEST_CHECKPOINT
        chosen = best if best.is_file() else run_dir / LAST_CHECKPOINT
        trainer.validate(module, loaders["val"], ckpt_path=chosen, verbose=False)
        trainer.test(module, loaders["test"], ckpt_path=chosen, verbose=False)
    metrics = {
        "val": module.summaries["val"],
        "test": module.summaries["test"],
        "config": config.to_dict(),
        "dataset": {
            "name": bundle.name,
            "classes": bundle.classes,
            "counts": bundle.summary(),
            "notes": bundle.notes,
            "ignore_index": getattr(bundle, "ignore_index", None),
        },
        "checkpoint": str(chosen.relative_to(run_dir)),
        "loss_state": module.loss_state(),
    }
    if trainer.world_size == 1:  # under DDP each process saw only its share of each split
        write_predictions(run_dir / PREDICTIONS, task, module, bundle)
    if trainer.is_global_zero:
        task.save_examples(module, loaders["test"].dataset, bundle, run_dir)
        write_run_outputs(run_dir, task, metrics)
    return metrics


def write_predictions(folder: Path, task: Task, module: ImbalanceModule, bundle: Bundle) -> None:
    """Per item of every split the module just evaluated (``predictions/val.csv``,
    ``test.csv``, or ``*_confusion.npz`` for segmentation), for error analysis and paired
    statistics."""
    for split, outputs in module.item_outputs.items():
        part = getattr(bundle, split)
        if len(outputs) != len(part.ids):
            raise RuntimeError(
                f"expected one {split} output per {split} item ({len(part.ids)}), got "
                f"{len(outputs)}"
            )
        task.write_predictions(folder, split, outputs, part.ids, part, module.classes)


def write_run_outputs(run_dir: Path, task: Task, metrics: dict[str, Any]) -> None:
    """``report.md`` with the task's figures, then ``metrics.json`` (last: its presence marks a
    finished run)."""
    task.write_report(
        run_dir,
        task.run_title(metrics["config"]),
        {"val": metrics["val"], "test": metrics["test"]},
        task.run_notes(metrics),
        metrics["dataset"],
        metrics["config"]["loss"],
    )
    write_json(run_dir / "metrics.json", metrics)
