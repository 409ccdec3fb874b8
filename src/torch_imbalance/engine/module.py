"""The Lightning module of a run (classification or segmentation): model, loss, optimiser and
metrics."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, cast

import lightning.pytorch as pl
import torch
from lightning.pytorch.trainer.states import TrainerFn

from torch_imbalance._types import TrainingLoss
from torch_imbalance.engine.config import RunConfig, resolve_switch
from torch_imbalance.engine.losses import DiceCELoss
from torch_imbalance.engine.tasks import Task, task_for
from torch_imbalance.registry import build_loss
from torch_imbalance.weights import ldam_margins

#: The LMF authors' baselines that take the LDAM margins as class weights (``--margin-weights``):
#: their ``train.py`` builds ``LDAMLoss(weight=m_list)`` and ``focal_loss(alpha=m_list)``. (Our
#: weighted focal divides by ``Σ Δ_t`` like ``F.cross_entropy``; theirs by the batch size.)
MARGIN_WEIGHTED_LOSSES = ("focal", "ldam")

if TYPE_CHECKING:
    from torchmetrics import MetricCollection


def build_run_loss(
    config: RunConfig,
    class_counts: list[int],
    task: Task | str,
    ignore_index: int | None = None,
) -> torch.nn.Module:
    """The registry loss (or ``dice_ce``) with the run's overrides; DRW spans the run's epochs
    by default; the task's own options (multi-label, the masks' ignore value) are passed on.
    Each implements :class:`~torch_imbalance._types.TrainingLoss`."""
    if config.loss == "dice_ce":
        return DiceCELoss(ignore_index)
    overrides = dict(config.loss_params)
    if config.loss in ("ldam_drw", "lmf_drw"):
        overrides.setdefault("total_epochs", config.epochs)
    task = task_for(task) if isinstance(task, str) else task
    for key, value in task.loss_options(ignore_index).items():
        overrides.setdefault(key, value)
    if config.label_smoothing:
        overrides.setdefault("label_smoothing", config.label_smoothing)
    if config.margin_weights and config.loss in MARGIN_WEIGHTED_LOSSES:
        overrides.setdefault("weight", ldam_margins(class_counts))
    return build_loss(config.loss, class_counts, **overrides)


class ImbalanceModule(pl.LightningModule):
    """Trains ``model`` with one of the library's losses and keeps balanced metrics.

    ``task`` is ``"multiclass"`` or ``"multilabel"`` (a timm classifier) or
    ``"segmentation"`` (an smp model; metrics over every pixel of the split).

    After each validation or test epoch, ``summaries[stage]`` holds the metrics as plain numbers
    (the layout of ``metrics.json``).
    """

    def __init__(
        self,
        config: dict[str, Any],
        classes: list[str],
        class_counts: list[int],
        channels: int,
        task: str = "multiclass",
        ignore_index: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.config = RunConfig.from_dict(config)
        if "reduced_decode" not in config:  # a run from before it existed read every pixel
            self.config = replace(self.config, reduced_decode=False)
        self.classes = classes
        self.task = task
        self.ignore_index = ignore_index
        #: What the task decides (model, metrics, per-item outputs); ``task`` names its labels.
        self.task_spec = task_for(task)
        self.model: torch.nn.Module = self.task_spec.build_model(
            self.config, len(classes), channels
        )
        #: Channels-last activations (faster convolutions with tensor cores, on CUDA).
        self.channels_last = resolve_switch(self.config.channels_last, self.config) and any(
            isinstance(layer, torch.nn.Conv2d) for layer in self.model.modules()
        )
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.loss: torch.nn.Module = build_run_loss(
            self.config, class_counts, self.task_spec, ignore_index
        )
        self.probability_scale = self.task_spec.probability_scale(self.config, self.loss)
        metrics = {
            stage: self.task_spec.build_metrics(len(classes), ignore_index)
            for stage in ("val", "test")
        }
        self.metrics = torch.nn.ModuleDict(metrics)
        self.summaries: dict[str, dict[str, Any]] = {}
        #: Per item of the last evaluation outside training, by stage: class probabilities
        #: ``(n, C)`` (classification) or a pixel confusion per image ``(n, C, C)``
        #: (segmentation; rows = truth).
        self.item_outputs: dict[str, torch.Tensor] = {}
        self._item_batches: list[torch.Tensor] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.model(images)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Class probabilities of the model's logits (softmax, or sigmoid for multi-label)."""
        return self.task_spec.probabilities(logits, self.probability_scale)

    @property
    def training_loss(self) -> TrainingLoss:
        """The loss, through what the training loop asks of it (``_types.TrainingLoss``)."""
        assert isinstance(self.loss, TrainingLoss), type(self.loss).__name__
        return self.loss

    # --------------------------------------------------------------------------- training
    def on_train_epoch_start(self) -> None:
        self.training_loss.set_epoch(self.current_epoch)  # deferred re-weighting switches here

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # Dropout and other in-model randomness draw from torch's global generator: seeding it
        # per step makes a resumed run repeat exactly what an uninterrupted one does.
        seed = (self.config.seed * 1_000_003 + self.current_epoch) * 100_003 + batch_idx
        torch.manual_seed(seed)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        images, target = batch
        loss = self.loss(self(images), target)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        return loss

    def on_train_epoch_end(self) -> None:
        for name, value in self.loss_state().items():
            self.log(name, value, on_epoch=True, sync_dist=False)

    def loss_state(self) -> dict[str, float]:
        """Learnable γ, adaptive / DRW class weights: what the loss learned or switched."""
        state: dict[str, float] = {}
        reported = self.training_loss.training_state()
        if "gamma" in reported:
            state["loss/gamma"] = float(reported["gamma"])
        weights = reported.get("weight")
        if isinstance(weights, torch.Tensor) and weights.numel() == len(self.classes):
            for name, value in zip(self.classes, weights.detach().float().tolist(), strict=True):
                state[f"loss/weight_{name}"] = value
        return state

    # ------------------------------------------------------------------------- evaluation
    def _evaluation_step(self, stage: str, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        images, target = batch
        logits = self(images)
        loss = self.loss(logits, target)
        if self._fitting():
            self.log(f"{stage}/loss", loss, on_epoch=True, sync_dist=True)
        metrics = cast("MetricCollection", self.metrics[stage])
        outputs = self.task_spec.update_metrics(metrics, logits, target, self.probability_scale)
        if not self._fitting():
            self._item_batches.append(outputs)

    def _evaluation_end(self, stage: str) -> None:
        if not self._fitting():
            batches, self._item_batches = self._item_batches, []
            if batches:
                self.item_outputs[stage] = torch.cat(batches)
        metrics = cast("MetricCollection", self.metrics[stage])
        computed = metrics.compute()
        metrics.reset()
        summary = self.task_spec.summarise(computed, self.classes)
        self.summaries[stage] = summary
        if not self._fitting():
            return  # the final evaluation of the chosen checkpoint goes to metrics.json only
        for name, value in summary.items():
            if isinstance(value, float):
                self.log(
                    f"{stage}/{name}",
                    value,
                    prog_bar=name == self.task_spec.primary_metric,
                    sync_dist=False,
                )

    def _fitting(self) -> bool:
        return self._trainer is not None and self.trainer.state.fn == TrainerFn.FITTING

    def validation_step(self, batch, batch_idx: int) -> None:
        self._evaluation_step("val", batch)

    def on_validation_epoch_end(self) -> None:
        self._evaluation_end("val")

    def on_validation_epoch_start(self) -> None:
        self._item_batches = []

    def on_test_epoch_start(self) -> None:
        self._item_batches = []

    def test_step(self, batch, batch_idx: int) -> None:
        self._evaluation_step("test", batch)

    def on_test_epoch_end(self) -> None:
        self._evaluation_end("test")

    # ------------------------------------------------------------------------ optimisation
    def configure_optimizers(self):
        config = self.config
        # The loss's own parameters (a learnable γ) form their own group: their own learning
        # rate (a γ behind a sigmoid barely moves at the network's), and no weight decay, which
        # would pull γ towards the middle of its range.
        groups = [{"params": list(self.model.parameters())}]
        loss_parameters = list(self.loss.parameters())
        if loss_parameters:
            groups.append(
                {
                    "params": loss_parameters,
                    "lr": config.gamma_lr or config.lr,
                    "weight_decay": 0.0,
                }
            )
        if config.optimizer == "adamw":
            optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
        elif config.optimizer == "adam":
            optimizer = torch.optim.Adam(groups, lr=config.lr, weight_decay=config.weight_decay)
        else:
            optimizer = torch.optim.SGD(
                groups, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay
            )
        if config.scheduler == "none":
            return optimizer
        if config.scheduler == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
        else:
            scheduler = torch.optim.lr_scheduler.StepLR(
                optimizer, step_size=config.step_size, gamma=config.step_gamma
            )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"},
        }
