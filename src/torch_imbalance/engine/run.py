"""A training run from its configuration: run folder, data, model, fit, evaluate, outputs."""

from __future__ import annotations

import csv
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import DataLoader

from torch_imbalance.data import (
    SEGMENTATION,
    DatasetBundle,
    DatasetError,
    SegmentationBundle,
    load_dataset,
)
from torch_imbalance.data.dataset import ImageDataset
from torch_imbalance.data.samplers import build_sampler
from torch_imbalance.data.segmentation import (
    SegmentationDataset,
    build_segmentation_transform,
    read_mask,
)
from torch_imbalance.data.transforms import build_transform
from torch_imbalance.engine.config import RunConfig, save_yaml
from torch_imbalance.engine.module import PRIMARY, ImbalanceModule
from torch_imbalance.engine.trainer import build_trainer
from torch_imbalance.metrics.plots import (
    confusion_matrix_plot,
    overlay_plot,
    per_class_bar_plot,
    per_class_f1_plot,
    read_metrics_csv,
    training_curves_plot,
)
from torch_imbalance.metrics.report import run_report, segmentation_report

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


def load_run_data(config: RunConfig) -> DatasetBundle | SegmentationBundle:
    """The run's dataset; its kind must match ``config.task``."""
    is_segmentation = config.dataset in SEGMENTATION
    if is_segmentation != (config.task == "segmentation"):
        kind = "segmentation" if is_segmentation else "classification"
        raise DatasetError(
            f"dataset {config.dataset!r} is a {kind} dataset but the task is {config.task!r}; "
            f"pass --task {kind}"
        )
    extra = {}
    if is_segmentation:
        extra = {"num_classes": config.num_classes, "ignore_index": config.ignore_index}
    return load_dataset(
        config.dataset,
        config.root,
        seed=config.seed,
        train_fraction=config.train_fraction,
        max_per_class=config.max_per_class,
        val_fraction=config.val_fraction,
        test_fraction=config.test_fraction,
        imbalance_ratio=config.imbalance_ratio,
        label_mode=config.label_mode,
        **extra,
    )


def build_loaders(
    config: RunConfig, bundle: DatasetBundle | SegmentationBundle, channels: int
) -> dict[str, DataLoader]:
    """Train (shuffled or re-sampled), val and test loaders."""
    common: dict[str, Any] = {
        "batch_size": config.batch_size,
        "num_workers": config.num_workers,
        "persistent_workers": config.num_workers > 0,
    }
    if isinstance(bundle, SegmentationBundle):
        if config.sampler != "none":
            raise DatasetError("--sampler re-samples images by class; segmentation takes 'none'")

        def dataset(split: str, train: bool) -> SegmentationDataset:
            transform = build_segmentation_transform(
                config.image_size,
                channels,
                train,
                bundle.ignore_index,
                config.augment,
                config.normalize,
            )
            return SegmentationDataset(getattr(bundle, split), channels, transform)

        order = build_sampler("none", np.zeros(len(bundle.train)), config.seed)
        return {
            "train": DataLoader(dataset("train", True), sampler=order, **common),
            "val": DataLoader(dataset("val", False), shuffle=False, **common),
            "test": DataLoader(dataset("test", False), shuffle=False, **common),
        }
    train_transform = build_transform(
        config.image_size, channels, True, config.augment, config.normalize
    )
    train_set = ImageDataset(bundle.train, channels, train_transform)
    sampler = build_sampler(config.sampler, bundle.train.labels, config.seed)
    loaders = {"train": DataLoader(train_set, sampler=sampler, drop_last=False, **common)}
    evaluation = build_transform(config.image_size, channels, False, normalize=config.normalize)
    for split in ("val", "test"):
        loaders[split] = DataLoader(
            ImageDataset(getattr(bundle, split), channels, evaluation), shuffle=False, **common
        )
    return loaders


def write_json(path: Path, payload: dict) -> None:
    """Atomically (temporary file, then rename)."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(payload, indent=1))
    os.replace(temporary, path)


def train(config: RunConfig) -> dict[str, Any]:
    """Train, select the best epoch by validation macro F1, test it, write the run folder.

    Returns:
        The content of ``metrics.json``.
    """
    config.validate()
    # Under DDP the launcher re-runs this function in every process; only the first prepares
    # and writes the folder (the others find it already there).
    is_first_process = rank_zero_only.rank == 0
    run_dir = prepare_run_dir(config) if is_first_process else Path(config.out)
    pl.seed_everything(config.seed, workers=True, verbose=False)
    bundle = load_run_data(config)
    counts = bundle.class_counts()
    channels = config.channels or bundle.channels
    task = bundle.task
    if is_first_process:
        bundle.save_splits(run_dir / "splits")
        save_yaml(config, run_dir / "config.yaml")
    loaders = build_loaders(config, bundle, channels)
    ignore_index = getattr(bundle, "ignore_index", None)
    module = ImbalanceModule(config.to_dict(), bundle.classes, counts, channels, task, ignore_index)
    trainer = build_trainer(config, run_dir, monitor=f"val/{PRIMARY[task]}")
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
    if trainer.world_size == 1:  # under DDP each process saw only its share of the test split
        labels = getattr(bundle.test, "labels", None)
        write_test_predictions(run_dir, module, bundle.test.ids, labels)
    if trainer.is_global_zero:
        if task == "segmentation":
            save_overlay_tiles(module, loaders["test"].dataset, bundle, run_dir)
            write_segmentation_outputs(run_dir, metrics)
        else:
            write_outputs(run_dir, metrics)
    return metrics


PREDICTIONS = Path("predictions")


def write_test_predictions(
    run_dir: Path, module: ImbalanceModule, ids: list[str], labels: Any
) -> None:
    """Per test item, for error analysis and paired statistics: ``predictions/test.csv`` (id,
    true label(s), predicted class, each class's probability) or, for segmentation,
    ``predictions/test_confusion.npz`` (ids and a ``(n, C, C)`` pixel confusion per image)."""
    outputs = module.test_outputs
    if outputs is None or len(outputs) != len(ids):
        raise RuntimeError(
            f"expected one test output per test item ({len(ids)}), got "
            f"{None if outputs is None else len(outputs)}"
        )
    folder = run_dir / PREDICTIONS
    folder.mkdir(exist_ok=True)
    classes = module.classes
    if module.task == "segmentation":
        temporary = folder / ".test_confusion.tmp.npz"
        np.savez_compressed(temporary, ids=np.array(ids), confusion=outputs.numpy())
        os.replace(temporary, folder / "test_confusion.npz")
        return
    probabilities = outputs.float().numpy()
    labels = np.asarray(labels)
    if module.task == "multilabel":
        header = ["id", *(f"true_{c}" for c in classes), *(f"prob_{c}" for c in classes)]
        rows = [
            [item, *map(int, truth), *(f"{p:.6g}" for p in probability)]
            for item, truth, probability in zip(ids, labels, probabilities, strict=True)
        ]
    else:
        header = ["id", "label", "predicted", *(f"prob_{c}" for c in classes)]
        rows = [
            [item, classes[int(truth)], classes[int(probability.argmax())]]
            + [f"{p:.6g}" for p in probability]
            for item, truth, probability in zip(ids, labels, probabilities, strict=True)
        ]
    temporary = folder / ".test.csv.tmp"
    with temporary.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(temporary, folder / "test.csv")


#: How many test tiles the overlay figures show.
OVERLAY_TILES = 4


def overlay_tile_indices(dataset: SegmentationDataset, count: int, classes: int) -> list[int]:
    """The ``count`` test tiles with the most pixels of the rarest class (so its errors show)."""
    masks = [read_mask(m) for m in dataset.data.masks]
    totals = np.sum([np.bincount(m[(m >= 0) & (m < classes)], minlength=classes) for m in masks], 0)
    rarest = int(np.argmin(np.where(totals > 0, totals, np.iinfo(np.int64).max)))
    scores = [int((m == rarest).sum()) for m in masks]
    return sorted(np.argsort(scores)[::-1][:count].tolist())


def save_overlay_tiles(
    module: ImbalanceModule, dataset: SegmentationDataset, bundle: SegmentationBundle, run_dir: Path
) -> None:
    """Predictions of the chosen checkpoint on a few test tiles -> ``overlay_tiles.npz``."""
    indices = overlay_tile_indices(dataset, OVERLAY_TILES, bundle.num_classes)
    images, targets = zip(*(dataset[i] for i in indices), strict=True)
    batch = torch.stack(images)
    module.eval()
    with torch.no_grad():
        predicted = module(batch.to(module.device)).argmax(1).cpu().numpy()
    np.savez_compressed(
        run_dir / "overlay_tiles.npz",
        images=(batch[:, 0] * 0.5 + 0.5 if module.config.normalize else batch[:, 0])
        .clamp(0, 1)
        .numpy(),
        targets=torch.stack(targets).numpy(),
        predictions=predicted,
        ids=np.array([dataset.data.ids[i] for i in indices]),
    )


def write_segmentation_outputs(run_dir: Path, metrics: dict[str, Any]) -> None:
    """``metrics.json``, ``report.md``, per-class IoU, overlays, training curves."""
    test = metrics["test"]
    config = metrics["config"]
    classes = metrics["dataset"]["classes"]
    per_class_bar_plot(test["per_class_iou"], "per-class IoU (test)", run_dir / "per_class_iou.png")
    tiles = np.load(run_dir / "overlay_tiles.npz")
    overlay_plot(
        tiles["images"],
        tiles["targets"],
        {config["loss"]: tiles["predictions"]},
        [str(i) for i in tiles["ids"]],
        classes,
        run_dir / "overlays.png",
        metrics["dataset"].get("ignore_index"),
    )
    training_curves_plot(
        read_metrics_csv(run_dir / "logs" / "csv"), run_dir / "training_curves.png"
    )
    title = (
        f"{config['loss']} on {config['dataset']} ({config['model']}/{config['encoder']}, "
        f"seed {config['seed']})"
    )
    notes = {
        **metrics["dataset"]["notes"],
        "rarest class": test["rarest_class"],
        "checkpoint": metrics["checkpoint"],
    }
    figures = ["overlays.png", "per_class_iou.png", "training_curves.png"]
    report = segmentation_report(title, {"val": metrics["val"], "test": test}, figures, notes)
    (run_dir / "report.md").write_text(report)
    write_json(run_dir / "metrics.json", metrics)


def write_outputs(run_dir: Path, metrics: dict[str, Any]) -> None:
    """``metrics.json``, ``report.md`` and the figures."""
    test = metrics["test"]
    figures = []
    if "confusion_matrix" in test:
        confusion_matrix_plot(
            test["confusion_matrix"], list(test["per_class"]), run_dir / "confusion_matrix.png"
        )
        figures.append("confusion_matrix.png")
    per_class_f1_plot(test["per_class"], run_dir / "per_class_f1.png")
    figures.append("per_class_f1.png")
    training_curves_plot(
        read_metrics_csv(run_dir / "logs" / "csv"),
        run_dir / "training_curves.png",
    )
    figures.append("training_curves.png")
    config = metrics["config"]
    title = f"{config['loss']} on {config['dataset']} ({config['model']}, seed {config['seed']})"
    notes = dict(metrics["dataset"]["notes"])
    notes["training counts"] = str(metrics["dataset"]["counts"]["train"])
    notes["checkpoint"] = metrics["checkpoint"]
    (run_dir / "report.md").write_text(
        run_report(title, {"val": metrics["val"], "test": test}, notes, figures)
    )
    write_json(run_dir / "metrics.json", metrics)
