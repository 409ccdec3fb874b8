"""Type aliases shared across the library: one home for each."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import torch

#: How a loss reduces its per-element values.
Reduction = Literal["mean", "sum", "none"]
#: One label per item (softmax over classes) or a 0/1 row of labels (a sigmoid per label).
Task = Literal["multiclass", "multilabel"]
#: The training count of each class (images, or pixels for segmentation).
CountsLike = Sequence[float] | np.ndarray | torch.Tensor


@runtime_checkable
class TrainingLoss(Protocol):
    """What a training loop may ask of a loss besides calling it: every loss module here, the
    :class:`~torch_imbalance.weights.DeferredReweighting` wrapper (which forwards to the loss it
    wraps) and the harness's Dice + CE implement it."""

    def logit_scale(self) -> float:
        """The factor the loss puts on the logits before its softmax (LDAM's ``s``): a cosine
        head's class probabilities are ``softmax(logit_scale · z)``."""
        ...

    def set_epoch(self, epoch: int) -> None:
        """Called at the start of each epoch (0-based): a schedule switches here."""
        ...

    def training_state(self) -> dict[str, float | torch.Tensor]:
        """What the loss learned or switched, for logging: ``"gamma"`` (a loss with γ) and
        ``"weight"`` (the class weights in use), where they exist."""
        ...


__all__ = ["CountsLike", "Reduction", "Task", "TrainingLoss"]
