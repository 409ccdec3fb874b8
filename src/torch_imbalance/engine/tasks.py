"""What differs between the harness's tasks, in one object per task.

The engine (``run``, ``evaluate``, ``compare``, the Lightning module) asks the run's task for its
data loaders, model, loss options, metrics, per-item outputs, reports and figures instead of
branching on the task's name. A new task (3-D volumes, multi-label segmentation) is one more
:class:`Task` subclass registered in :data:`TASKS`.

Heavy libraries (timm, segmentation-models-pytorch, matplotlib, torchvision) are imported on use,
so that reading the task table (the command line's ``--task`` choices) stays cheap.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

from torch_imbalance._types import TrainingLoss
from torch_imbalance.data.records import DatasetBundle, SegmentationBundle
from torch_imbalance.engine.config import (
    DEFAULT_MODELS,
    RunConfig,
    loader_workers,
    on_cuda,
    resolve_switch,
)
from torch_imbalance.engine.outputs import (
    ClassificationWriter,
    PredictError,
    SegmentationWriter,
    write_csv,
)

#: The splits every task trains, validates and tests on.
SPLITS = ("train", "val", "test")

if TYPE_CHECKING:
    from torch.utils.data import DataLoader, Dataset
    from torchmetrics import MetricCollection

Bundle = DatasetBundle | SegmentationBundle

#: Where per-item predictions go inside a run (or evaluation) folder.
PREDICTIONS = Path("predictions")
#: How many test tiles the segmentation overlay figures show.
OVERLAY_TILES = 4


def training_curves(run_dir: Path) -> list[str]:
    """``training_curves.png`` from the run's CSV logs, if it has any."""
    from torch_imbalance.metrics.plots import read_metrics_csv, training_curves_plot

    if not (run_dir / "logs" / "csv").is_dir():
        return []
    training_curves_plot(
        read_metrics_csv(run_dir / "logs" / "csv"), run_dir / "training_curves.png"
    )
    return ["training_curves.png"]


class Task(ABC):
    """One kind of learning problem as the harness runs it.

    Args:
        labels: how the data labels its items: ``"multiclass"``, ``"multilabel"`` (a
            classification bundle's ``task``) or ``"segmentation"``.
    """

    #: The value of ``--task``.
    name: ClassVar[str]
    #: The model when ``--model`` is not given.
    default_model: ClassVar[str]
    #: The validation metric that picks the best epoch (maximised).
    primary_metric: ClassVar[str]
    #: Test metrics of the comparison table, headline first.
    summary_metrics: ClassVar[tuple[str, ...]]
    #: Metrics whose paired difference to ``ce`` the comparison reports.
    delta_metrics: ClassVar[tuple[str, ...]]
    #: Metrics drawn in the comparison figure.
    plot_metrics: ClassVar[tuple[str, ...]]
    #: The data of this task (the others' datasets are refused with a hint).
    bundle_type: ClassVar[type]

    def __init__(self, labels: str) -> None:
        self.labels = labels

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.labels!r})"

    # ------------------------------------------------------------------------------ data
    @classmethod
    def data_options(cls, config: RunConfig) -> dict[str, Any]:
        """Dataset options of this task taken from the run's settings (a loader that does not
        take one that is set refuses it by name)."""
        return {"folds": config.folds}

    @abstractmethod
    def datasets(self, config: RunConfig, bundle: Any, channels: int) -> dict[str, Dataset]:
        """``train``, ``val`` and ``test`` torch datasets with this task's transforms."""

    def train_sampler(self, config: RunConfig, bundle: Any) -> Any:
        from torch_imbalance.data.samplers import build_sampler

        return build_sampler("none", np.zeros(len(bundle.train)), config.seed)

    def loaders(self, config: RunConfig, bundle: Any, channels: int) -> dict[str, DataLoader]:
        """Train (shuffled or re-sampled), val and test loaders."""
        from torch.utils.data import DataLoader

        workers = loader_workers(config)
        common: dict[str, Any] = {
            "batch_size": config.batch_size,
            "num_workers": workers,
            "persistent_workers": workers > 0,
            "pin_memory": resolve_switch(config.pin_memory, config),
        }
        if workers > 0:
            common["prefetch_factor"] = 4 if on_cuda(config) else 2
        sets = self.datasets(config, bundle, channels)
        return {
            "train": DataLoader(
                sets["train"], sampler=self.train_sampler(config, bundle), **common
            ),
            "val": DataLoader(sets["val"], shuffle=False, **common),
            "test": DataLoader(sets["test"], shuffle=False, **common),
        }

    # ---------------------------------------------------------------------- model, loss
    @abstractmethod
    def build_model(self, config: RunConfig, classes: int, channels: int) -> nn.Module:
        """The network for ``classes`` outputs and ``channels`` input channels."""

    def loss_options(self, ignore_index: int | None) -> dict[str, Any]:
        """Constructor options every loss of this task gets (unless the user set them)."""
        return {}

    def probability_scale(self, config: RunConfig, loss: nn.Module) -> float:
        """Factor on the logits before the softmax (a cosine head's logits lie in [-1, 1])."""
        return 1.0

    def probabilities(self, logits: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """Class probabilities along dimension 1."""
        return (logits.float() * scale).softmax(1)

    # -------------------------------------------------------------------------- metrics
    @abstractmethod
    def build_metrics(self, classes: int, ignore_index: int | None) -> nn.Module:
        """A fresh torchmetrics collection (or metric) for one stage."""

    @abstractmethod
    def update_metrics(
        self, metrics: MetricCollection, logits: torch.Tensor, target: torch.Tensor, scale: float
    ) -> torch.Tensor:
        """Feed one batch; returns what is kept per test item (on the CPU)."""

    @abstractmethod
    def summarise(self, computed: Any, classes: list[str]) -> dict[str, Any]:
        """The computed metrics as plain numbers (the layout of ``metrics.json``)."""

    # -------------------------------------------------------------------------- outputs
    @abstractmethod
    def write_predictions(
        self,
        folder: Path,
        split: str,
        outputs: torch.Tensor,
        ids: list[str],
        part: Any,
        classes: list[str],
    ) -> Path:
        """Per-item predictions of ``split`` into ``folder`` (one file); returns its path."""

    @abstractmethod
    def write_report(
        self,
        folder: Path,
        title: str,
        metrics: dict[str, dict],
        notes: dict[str, str],
        dataset: dict[str, Any] | None = None,
        model_label: str = "",
    ) -> None:
        """``report.md`` with this task's figures (and the training curves when ``folder``
        holds the run's logs)."""

    @abstractmethod
    def prediction_transform(
        self, config: RunConfig, channels: int, ignore_index: int | None
    ) -> Any:
        """``transform(PIL image) -> tensor``: the preprocessing of the evaluation splits."""

    def decode_size(self, config: RunConfig) -> int | None:
        """The smallest side a JPEG is decoded at (``read_image``'s ``at_least``), or None for
        full size: what training, evaluation, ``predict`` and ``gradcam`` all read with."""
        return None

    @abstractmethod
    def prediction_writer(self, out: Path, module: Any, output_format: str, overlays: bool) -> Any:
        """What ``predict`` feeds (``add(paths, logits, images)``, then ``close()``)."""

    def save_examples(self, module: Any, test_set: Dataset, bundle: Any, run_dir: Path) -> None:
        """Keep what the report draws from the chosen checkpoint (segmentation: overlays);
        nothing by default."""
        return None

    def comparison_figures(self, folders: dict[str, Path], out: Path) -> list[str]:
        """Figures that set the compared runs side by side (``{loss: run folder}``)."""
        return []

    def run_title(self, config: dict[str, Any]) -> str:
        return f"{config['loss']} on {config['dataset']} ({config['model']}, seed {config['seed']})"

    def run_notes(self, metrics: dict[str, Any]) -> dict[str, str]:
        return {**metrics["dataset"]["notes"], "checkpoint": metrics["checkpoint"]}


class ClassificationTask(Task):
    """Images with one label (``multiclass``) or a 0/1 row of labels (``multilabel``): a timm
    classifier, balanced classification metrics, the confusion matrix and per-class F1."""

    name = "classification"
    default_model = DEFAULT_MODELS["classification"]
    primary_metric = "macro_f1"
    summary_metrics = (
        "macro_f1",
        "balanced_accuracy",
        "accuracy",
        "macro_precision",
        "macro_recall",
        "ece",
    )
    delta_metrics = ("macro_f1",)
    plot_metrics = ("macro_f1", "balanced_accuracy")
    bundle_type = DatasetBundle

    def datasets(self, config: RunConfig, bundle: Any, channels: int) -> dict[str, Dataset]:
        from torchvision.transforms import v2

        from torch_imbalance.data.cache import cache_splits
        from torch_imbalance.data.dataset import ImageDataset
        from torch_imbalance.data.io import read_image
        from torch_imbalance.data.transforms import build_transform_steps

        normalization = config.input_normalization(channels)
        interpolation = config.resize_interpolation()
        at_least = self.decode_size(config)
        steps = {
            train: build_transform_steps(
                config.image_size, channels, train, config.augment and train, normalization,
                interpolation,
            )
            for train in (True, False)
        }  # fmt: skip
        first_steps = steps[False][0]  # decode and resize: the same for every split
        decoded: dict[str, Any] = dict.fromkeys(SPLITS)
        if config.cache:
            recipe = {
                "task": "classification",
                "size": config.image_size,
                "channels": channels,
                "interpolation": interpolation,
                "at_least": at_least,
            }
            decoded = cache_splits(
                {split: getattr(bundle, split).items for split in SPLITS},
                recipe,
                lambda item: (first_steps(read_image(item, channels, at_least)).numpy(), None),
                config.cache_dir,
                progress=config.progress,
            )

        def dataset(split: str) -> ImageDataset:
            first, rest = steps[split == "train"]
            return ImageDataset(
                getattr(bundle, split),
                channels,
                v2.Compose([first, rest]),
                at_least=at_least,
                decoded=decoded[split],
                finish=rest,
            )

        return {split: dataset(split) for split in SPLITS}

    def decode_size(self, config: RunConfig) -> int | None:
        # The first step resizes to image_size² whatever the aspect: no side needs more.
        return config.image_size if config.reduced_decode else None

    def train_sampler(self, config: RunConfig, bundle: Any) -> Any:
        from torch_imbalance.data.samplers import build_sampler

        return build_sampler(config.sampler, bundle.train.labels, config.seed)

    def prediction_transform(
        self, config: RunConfig, channels: int, ignore_index: int | None
    ) -> Any:
        from torch_imbalance.data.transforms import build_transform

        return build_transform(
            config.image_size,
            channels,
            False,
            False,
            config.input_normalization(channels),
            config.resize_interpolation(),
        )

    def prediction_writer(self, out: Path, module: Any, output_format: str, overlays: bool) -> Any:
        if overlays:
            raise PredictError("--overlays draws segmentation masks; this is a classifier")
        return ClassificationWriter(out, module, output_format)

    def head(self, config: RunConfig) -> str:
        from torch_imbalance.models import default_head

        return config.head or default_head(config.loss)

    def build_model(self, config: RunConfig, classes: int, channels: int) -> nn.Module:
        from torch_imbalance.models import build_classifier

        return build_classifier(
            config.model or self.default_model,
            classes,
            in_chans=channels,
            pretrained=config.pretrained,
            head=self.head(config),
            weights=config.weights,
        )

    def loss_options(self, ignore_index: int | None) -> dict[str, Any]:
        return {"task": "multilabel"} if self.labels == "multilabel" else {}

    def probability_scale(self, config: RunConfig, loss: nn.Module) -> float:
        if self.head(config) == "cosine" and isinstance(loss, TrainingLoss):
            return loss.logit_scale()  # the cosine head's logits, as the loss scales them
        return 1.0

    def probabilities(self, logits: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        scaled = logits.float() * scale
        return scaled.sigmoid() if self.labels == "multilabel" else scaled.softmax(1)

    def build_metrics(self, classes: int, ignore_index: int | None) -> nn.Module:
        from torch_imbalance.metrics import build_classification_metrics

        return build_classification_metrics(classes, self.labels)

    def update_metrics(
        self, metrics: MetricCollection, logits: torch.Tensor, target: torch.Tensor, scale: float
    ) -> torch.Tensor:
        probabilities = self.probabilities(logits, scale)
        metrics.update(probabilities, target.long() if self.labels == "multilabel" else target)
        return probabilities.detach().cpu()

    def summarise(self, computed: Any, classes: list[str]) -> dict[str, Any]:
        from torch_imbalance.metrics import summarise_classification

        return summarise_classification(computed, classes)

    def write_predictions(
        self,
        folder: Path,
        split: str,
        outputs: torch.Tensor,
        ids: list[str],
        part: Any,
        classes: list[str],
    ) -> Path:
        """``<split>.csv``: id, true label(s), predicted class (multi-class), each class's
        probability."""
        probabilities = outputs.float().numpy()
        labels = np.asarray(part.labels)
        if self.labels == "multilabel":
            header = ["id", *(f"true_{c}" for c in classes), *(f"prob_{c}" for c in classes)]
            rows: list[list[Any]] = [
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
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{split}.csv"
        write_csv(path, header, rows)
        return path

    def write_report(
        self,
        folder: Path,
        title: str,
        metrics: dict[str, dict],
        notes: dict[str, str],
        dataset: dict[str, Any] | None = None,
        model_label: str = "",
    ) -> None:
        from torch_imbalance.metrics.plots import confusion_matrix_plot, per_class_f1_plot
        from torch_imbalance.metrics.report import run_report

        last = metrics[[s for s in ("val", "test") if s in metrics][-1]]
        figures = []
        if "confusion_matrix" in last:
            confusion_matrix_plot(
                last["confusion_matrix"], list(last["per_class"]), folder / "confusion_matrix.png"
            )
            figures.append("confusion_matrix.png")
        per_class_f1_plot(last["per_class"], folder / "per_class_f1.png")
        figures.append("per_class_f1.png")
        figures += training_curves(folder)
        split = [s for s in ("val", "test") if s in metrics][-1]
        mistakes = folder / PREDICTIONS / f"{split}.csv" if self.labels == "multiclass" else None
        counts = (dataset or {}).get("counts", {}).get("train")
        (folder / "report.md").write_text(
            run_report(title, metrics, notes, figures, mistakes, counts)
        )

    def run_notes(self, metrics: dict[str, Any]) -> dict[str, str]:
        return {
            **metrics["dataset"]["notes"],
            "training counts": str(metrics["dataset"]["counts"]["train"]),
            "checkpoint": metrics["checkpoint"],
        }


class SegmentationTask(Task):
    """Images with a class index per pixel: an smp model, pixel metrics (IoU, Dice) over the
    whole split, per-image confusion matrices and overlays of the rarest class's tiles."""

    name = "segmentation"
    default_model = DEFAULT_MODELS["segmentation"]
    primary_metric = "miou"
    summary_metrics = ("miou", "mean_dice", "miou_foreground", "pixel_accuracy", "rarest_class_iou")
    delta_metrics = ("miou", "rarest_class_iou")
    plot_metrics = ("miou", "rarest_class_iou")
    bundle_type = SegmentationBundle

    @classmethod
    def data_options(cls, config: RunConfig) -> dict[str, Any]:
        return {
            **super().data_options(config),
            "num_classes": config.num_classes,
            "ignore_index": config.ignore_index,
        }

    def datasets(self, config: RunConfig, bundle: Any, channels: int) -> dict[str, Dataset]:
        from torch_imbalance.data.cache import cache_splits, source_signature
        from torch_imbalance.data.dataset import (
            SegmentationDataset,
            read_segmentation_item,
        )
        from torch_imbalance.data.errors import DatasetError
        from torch_imbalance.data.transforms import build_segmentation_transform, image_pixels

        if config.sampler != "none":
            raise DatasetError("--sampler re-samples images by class; segmentation takes 'none'")

        decoded: dict[str, Any] = dict.fromkeys(SPLITS)
        if config.cache:
            masks = {
                str(image): (mask, name)
                for split in SPLITS
                for image, mask, name in zip(
                    getattr(bundle, split).images,
                    getattr(bundle, split).masks,
                    getattr(bundle, split).ids,
                    strict=True,
                )
            }

            def decode(item: Any) -> tuple[np.ndarray, np.ndarray]:
                mask, name = masks[str(item)]
                image, labels = read_segmentation_item(item, mask, channels, name)
                return image_pixels(image).numpy(), labels

            mask_files = [m for m, _ in masks.values() if isinstance(m, str | Path)]
            decoded = cache_splits(
                {split: getattr(bundle, split).images for split in SPLITS},
                # The masks' files key the cache too (images and masks at their own size).
                {"task": "segmentation", "channels": channels,
                 "masks": source_signature(mask_files)},
                decode,
                config.cache_dir,
                describe="images and masks",
                progress=config.progress,
            )  # fmt: skip

        def dataset(split: str, train: bool) -> SegmentationDataset:
            transform = build_segmentation_transform(
                config.image_size,
                channels,
                train,
                bundle.ignore_index,
                config.augment,
                config.input_normalization(channels),
                config.resize_interpolation(),
            )
            return SegmentationDataset(
                getattr(bundle, split),
                channels,
                transform,
                decoded=decoded[split],
            )

        return {
            "train": dataset("train", True),
            "val": dataset("val", False),
            "test": dataset("test", False),
        }

    def prediction_transform(
        self, config: RunConfig, channels: int, ignore_index: int | None
    ) -> Any:
        from torch_imbalance.data.transforms import build_segmentation_transform

        joint = build_segmentation_transform(
            config.image_size,
            channels,
            False,
            ignore_index,
            config.augment,
            config.input_normalization(channels),
            config.resize_interpolation(),
        )
        # The evaluation's joint transform, with a blank mask: the image is resized exactly so.
        return lambda image: joint(image, np.zeros((image.height, image.width), np.int64))[0]

    def prediction_writer(self, out: Path, module: Any, output_format: str, overlays: bool) -> Any:
        return SegmentationWriter(out, module, output_format, overlays)

    def build_model(self, config: RunConfig, classes: int, channels: int) -> nn.Module:
        from torch_imbalance.models.segmenter import build_segmenter

        return build_segmenter(
            config.model or self.default_model,
            classes,
            in_channels=channels,
            encoder=config.encoder,
            encoder_weights="imagenet" if config.pretrained else None,
        )

    def loss_options(self, ignore_index: int | None) -> dict[str, Any]:
        return {} if ignore_index is None else {"ignore_index": ignore_index}

    def build_metrics(self, classes: int, ignore_index: int | None) -> nn.Module:
        from torch_imbalance.metrics.segmentation import build_segmentation_metrics

        return build_segmentation_metrics(classes, ignore_index)

    def update_metrics(
        self, metrics: MetricCollection, logits: torch.Tensor, target: torch.Tensor, scale: float
    ) -> torch.Tensor:
        predicted = logits.argmax(1)
        metrics.update(predicted, target)
        return image_confusions(predicted, target, logits.shape[1])

    def summarise(self, computed: Any, classes: list[str]) -> dict[str, Any]:
        from torch_imbalance.metrics.segmentation import summarise_segmentation

        return summarise_segmentation(computed, classes)

    def write_predictions(
        self,
        folder: Path,
        split: str,
        outputs: torch.Tensor,
        ids: list[str],
        part: Any,
        classes: list[str],
    ) -> Path:
        """``<split>_confusion.npz``: ids and a ``(n, C, C)`` pixel confusion per image (rows:
        truth), the per-image statistics' input."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{split}_confusion.npz"
        temporary = folder / f".{split}_confusion.tmp.npz"
        np.savez_compressed(temporary, ids=np.array(ids), confusion=outputs.numpy())
        os.replace(temporary, path)
        return path

    def save_examples(self, module: Any, test_set: Dataset, bundle: Any, run_dir: Path) -> None:
        """Predictions of the chosen checkpoint on a few test tiles -> ``overlay_tiles.npz``."""
        indices = overlay_tile_indices(test_set, OVERLAY_TILES, bundle.num_classes)
        images, targets = zip(*(test_set[i] for i in indices), strict=True)
        batch = torch.stack(images)
        module.eval()
        with torch.no_grad():
            predicted = module(batch.to(module.device)).argmax(1).cpu().numpy()
        from torch_imbalance.data.transforms import denormalize

        channels = batch.shape[1]
        pixels = denormalize(batch, module.config.input_normalization(channels))[:, 0]
        np.savez_compressed(
            run_dir / "overlay_tiles.npz",
            images=pixels.clamp(0, 1).numpy(),
            targets=torch.stack(targets).numpy(),
            predictions=predicted,
            ids=np.array([test_set.data.ids[i] for i in indices]),  # type: ignore[attr-defined]
        )

    def write_report(
        self,
        folder: Path,
        title: str,
        metrics: dict[str, dict],
        notes: dict[str, str],
        dataset: dict[str, Any] | None = None,
        model_label: str = "",
    ) -> None:
        from torch_imbalance.metrics.plots import overlay_plot, per_class_bar_plot
        from torch_imbalance.metrics.report import segmentation_report

        split = [s for s in ("val", "test") if s in metrics][-1]
        figures = []
        tiles_file = folder / "overlay_tiles.npz"
        if tiles_file.is_file() and dataset is not None:
            tiles = np.load(tiles_file)
            overlay_plot(
                tiles["images"],
                tiles["targets"],
                {model_label: tiles["predictions"]},
                [str(i) for i in tiles["ids"]],
                dataset["classes"],
                folder / "overlays.png",
                dataset.get("ignore_index"),
            )
            figures.append("overlays.png")
        per_class_bar_plot(
            metrics[split]["per_class_iou"],
            f"per-class IoU ({split})",
            folder / "per_class_iou.png",
        )
        figures.append("per_class_iou.png")
        figures += training_curves(folder)
        (folder / "report.md").write_text(segmentation_report(title, metrics, figures, notes))

    def comparison_figures(self, folders: dict[str, Path], out: Path) -> list[str]:
        """The same test tiles under each loss (``summary_overlays.png``), from the losses
        whose folder holds its overlay tiles."""
        from torch_imbalance.metrics.plots import overlay_plot

        tiles = {
            loss: np.load(folder / "overlay_tiles.npz")
            for loss, folder in folders.items()
            if (folder / "overlay_tiles.npz").is_file()
        }
        if not tiles:
            return []
        first_loss = next(iter(tiles))
        first = tiles[first_loss]
        metrics = json.loads((folders[first_loss] / "metrics.json").read_text())
        overlay_plot(
            first["images"],
            first["targets"],
            {loss: tile["predictions"] for loss, tile in tiles.items()},
            [str(i) for i in first["ids"]],
            metrics["dataset"]["classes"],
            out / "summary_overlays.png",
            metrics["dataset"].get("ignore_index"),
        )
        return ["summary_overlays.png"]

    def run_title(self, config: dict[str, Any]) -> str:
        return (
            f"{config['loss']} on {config['dataset']} ({config['model']}/{config['encoder']}, "
            f"seed {config['seed']})"
        )

    def run_notes(self, metrics: dict[str, Any]) -> dict[str, str]:
        return {
            **metrics["dataset"]["notes"],
            "rarest class": metrics["test"]["rarest_class"],
            "checkpoint": metrics["checkpoint"],
        }


def image_confusions(predicted: torch.Tensor, target: torch.Tensor, classes: int) -> torch.Tensor:
    """``(B, C, C)`` pixel counts per image (rows: truth), ignored pixels left out."""
    batch = target.shape[0]
    valid = (target >= 0) & (target < classes)
    image = torch.arange(batch, device=target.device).view(-1, *[1] * (target.ndim - 1))
    cell = (image * classes + target.clamp(0, classes - 1)) * classes + predicted
    counts = torch.bincount(cell[valid], minlength=batch * classes * classes)
    return counts.view(batch, classes, classes).cpu()


def overlay_tile_indices(dataset: Any, count: int, classes: int) -> list[int]:
    """The ``count`` test tiles with the most pixels of the rarest class (so its errors show)."""
    from torch_imbalance.data.io import read_mask

    masks = [read_mask(m) for m in dataset.data.masks]
    totals = np.sum([np.bincount(m[(m >= 0) & (m < classes)], minlength=classes) for m in masks], 0)
    rarest = int(np.argmin(np.where(totals > 0, totals, np.iinfo(np.int64).max)))
    scores = [int((m == rarest).sum()) for m in masks]
    return sorted(np.argsort(scores)[::-1][:count].tolist())


#: Every task by its ``--task`` name.
TASKS: dict[str, type[Task]] = {
    ClassificationTask.name: ClassificationTask,
    SegmentationTask.name: SegmentationTask,
}
#: What a dataset's items are labelled with -> the task that runs it.
_BY_LABELS = {
    "multiclass": ClassificationTask,
    "multilabel": ClassificationTask,
    "segmentation": SegmentationTask,
}


def task_for(labels: str) -> Task:
    """The task object for a bundle's (or a checkpoint's) labels: ``"multiclass"``,
    ``"multilabel"`` or ``"segmentation"``; a ``--task`` name gives its default labels.

    Examples:
        >>> task_for("multilabel").primary_metric, task_for("segmentation").name
        ('macro_f1', 'segmentation')
    """
    if labels in _BY_LABELS:
        return _BY_LABELS[labels](labels)
    if labels == "classification":
        return ClassificationTask("multiclass")
    raise ValueError(f"unknown task {labels!r}; known: {sorted({*_BY_LABELS, *TASKS})}")
