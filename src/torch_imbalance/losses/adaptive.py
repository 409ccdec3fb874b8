"""Adaptive class weights: running class frequencies, all-reduced under torch.distributed."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from torch_imbalance._checks import as_class_counts, check_range
from torch_imbalance._types import CountsLike, Task
from torch_imbalance.functional._counts import label_counts

#: Frequencies are floored here so that a class absent from the data gets a large, finite weight.
MIN_FREQUENCY = 1e-6


class AdaptiveClassWeights(nn.Module):
    r"""Class weights :math:`w_c \propto f_c^{-\kappa}` (mean 1 over classes) from running
    class frequencies ``f``.

    Each :meth:`update` (called by the loss on a training-mode forward) adds the batch's class
    frequencies with momentum: :math:`f \leftarrow m f + (1 - m) f_{batch}`. Under an initialised
    ``torch.distributed`` process group the batch counts are summed over all ranks first, so every
    rank holds the same weights. ``frequencies`` is a buffer: it is saved in ``state_dict``.

    Args:
        num_classes: number of classes ``C``.
        class_counts: optional initial counts (else uniform frequencies).
        momentum: ``m ∈ [0, 1)``.
        power: :math:`\kappa \ge 0`.

    Examples:
        >>> import torch
        >>> adaptive = AdaptiveClassWeights(3, class_counts=[80, 15, 5], momentum=0.9)
        >>> adaptive.weights()
        tensor([0.4104, 0.9478, 1.6417])
        >>> adaptive.update(torch.tensor([0, 0, 1, 2]), ignore_index=-100, task="multiclass")
        >>> adaptive.frequencies
        tensor([0.7700, 0.1600, 0.0700])
    """

    frequencies: torch.Tensor

    def __init__(
        self,
        num_classes: int,
        class_counts: CountsLike | None = None,
        momentum: float = 0.99,
        power: float = 0.5,
    ) -> None:
        super().__init__()
        check_range("momentum", momentum, 0.0, 1.0, high_inclusive=False)
        check_range("power", power, 0.0)
        check_range("num_classes", num_classes, 1)
        if class_counts is not None:
            counts = torch.as_tensor(as_class_counts(class_counts), dtype=torch.float32)
            if counts.numel() != num_classes:
                raise ValueError(
                    f"class_counts has {counts.numel()} classes, expected num_classes={num_classes}"
                )
            initial = counts / counts.sum()
        else:
            initial = torch.full((num_classes,), 1.0 / num_classes)
        self.register_buffer("frequencies", initial)
        self.momentum = momentum
        self.power = power

    @torch.no_grad()
    def count(self, target: torch.Tensor, ignore_index: int | None, task: Task) -> torch.Tensor:
        """The labels of ``target`` per class ``(C,)`` (multi-label: the positives)."""
        num_classes = self.frequencies.numel()
        if task == "multiclass":
            return label_counts(target, num_classes, ignore_index)
        positive = target == 1
        return positive.transpose(0, 1).reshape(num_classes, -1).sum(1).float()

    @torch.no_grad()
    def update(
        self,
        target: torch.Tensor,
        ignore_index: int | None,
        task: Task,
        counts: torch.Tensor | None = None,
    ) -> None:
        """Fold the class frequencies of ``target`` into the running estimate (``counts``: its
        :meth:`count`, where the caller has it already)."""
        if counts is None:
            counts = self.count(target, ignore_index, task)
        counts = counts.to(self.frequencies, copy=True)  # all-reduced in place below
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(counts, op=dist.ReduceOp.SUM)
        total = counts.sum()
        batch_frequencies = counts / total.clamp_min(1.0)
        updated = self.momentum * self.frequencies + (1 - self.momentum) * batch_frequencies
        # A batch with no labelled element leaves the estimate unchanged (no host sync needed).
        self.frequencies.copy_(torch.where(total > 0, updated, self.frequencies))

    def weights(self) -> torch.Tensor:
        """The current class weights ``(C,)``, mean 1."""
        raw = self.frequencies.clamp_min(MIN_FREQUENCY) ** -self.power
        return raw / raw.mean()

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.frequencies.numel()}, momentum={self.momentum}, power={self.power}"
        )
