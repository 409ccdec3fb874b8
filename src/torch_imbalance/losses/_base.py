"""Shared plumbing of the loss modules: conventions, the weight buffer and learnable γ."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from torch_imbalance._checks import check_range, check_reduction, check_task
from torch_imbalance._types import Reduction, Task
from torch_imbalance.functional._common import GammaLike, check_gamma, check_label_smoothing


def as_weight_tensor(weight: torch.Tensor | Sequence[float] | None) -> torch.Tensor | None:
    """A per-class weight as a 1-D float tensor (validated against the logits at call time)."""
    if weight is None:
        return None
    tensor = torch.as_tensor(weight, dtype=torch.get_default_dtype()).detach().clone()
    if tensor.ndim != 1:
        raise ValueError(f"weight must be a 1-D tensor (C,), got shape {tuple(tensor.shape)}")
    if not bool(torch.isfinite(tensor).all()) or bool((tensor < 0).any()):
        raise ValueError(f"weight must be finite and non-negative, got {tensor.tolist()}")
    return tensor


class ImbalanceLoss(nn.Module):
    """Base of the loss modules: holds ``weight`` (a buffer), ``ignore_index``, ``reduction``,
    ``task``, ``validate`` and, for the losses that define it, ``label_smoothing``, so they move
    with ``.to()`` and save in ``state_dict``."""

    weight: torch.Tensor | None

    def __init__(
        self,
        *,
        weight: torch.Tensor | Sequence[float] | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
        task: Task = "multiclass",
        validate: bool = True,
        supported_tasks: Sequence[str] = ("multiclass", "multilabel"),
        label_smoothing: float | None = None,
    ) -> None:
        super().__init__()
        check_reduction(reduction)
        check_task(task, supported_tasks)
        if label_smoothing is not None:
            check_label_smoothing(label_smoothing, task)
        #: None where the loss does not define label smoothing (not passed to its function).
        self.label_smoothing = label_smoothing
        self.register_buffer("weight", as_weight_tensor(weight))
        self.ignore_index = ignore_index
        self.reduction: Reduction = reduction
        self.task: Task = task
        self.validate = validate
        self._passes_task = len(supported_tasks) > 1

    def conventions(self) -> dict[str, Any]:
        """The shared keyword arguments of the functional call (``weight``, ``ignore_index``,
        ``reduction``, ``validate`` and, for losses with several tasks, ``task``)."""
        kwargs: dict[str, Any] = {
            "weight": self.weight,
            "ignore_index": self.ignore_index,
            "reduction": self.reduction,
            "validate": self.validate,
        }
        if self._passes_task:
            kwargs["task"] = self.task
        if self.label_smoothing is not None:
            kwargs["label_smoothing"] = self.label_smoothing
        return kwargs

    def extra_repr(self) -> str:
        text = f"reduction={self.reduction!r}, task={self.task!r}, ignore_index={self.ignore_index}"
        if self.label_smoothing:
            text += f", label_smoothing={self.label_smoothing:g}"
        return text

    # What a training loop may ask (``_types.TrainingLoss``).
    def logit_scale(self) -> float:
        """The factor the loss puts on the logits before its softmax: 1 (LDAM and LMF: ``s``)."""
        return 1.0

    def set_epoch(self, epoch: int) -> None:
        """Nothing follows the epoch here (:class:`~torch_imbalance.DeferredReweighting` does)."""

    def current_weight(self) -> torch.Tensor | None:
        """The class weights the next forward uses."""
        return self.weight

    def training_state(self) -> dict[str, float | torch.Tensor]:
        """The class weights in use, when there are any (``{"weight": (C,)}``).

        Examples:
            >>> from torch_imbalance import FocalLoss
            >>> FocalLoss(gamma=2.0, weight=[1.0, 3.0]).training_state()
            {'weight': tensor([1., 3.]), 'gamma': 2.0}
        """
        weight = self.current_weight()
        return {} if weight is None else {"weight": weight.detach()}


class BoundedGamma(nn.Module):
    r"""A learnable γ kept inside ``(γ_min, γ_max)``: :math:`\gamma = \gamma_{min} +
    (\gamma_{max} - \gamma_{min})\,\sigma(\theta)`, with θ initialised so γ starts at ``initial``.

    Note that for focal-type losses :math:`\partial L / \partial \gamma \le 0` everywhere, so
    minimising the training loss alone drives γ towards ``γ_max``.

    Examples:
        >>> g = BoundedGamma(2.0, (0.5, 5.0))
        >>> round(float(g().detach()), 6)
        2.0
    """

    def __init__(self, initial: float, gamma_range: tuple[float, float] = (0.5, 5.0)) -> None:
        super().__init__()
        low, high = (float(v) for v in gamma_range)
        check_range("gamma_range[0]", low, 0.0)
        if not high > low:
            raise ValueError(f"gamma_range must be (low, high) with low < high, got {gamma_range}")
        check_range("gamma", initial, low, high, low_inclusive=False, high_inclusive=False)
        self.low, self.high = low, high
        fraction = (initial - low) / (high - low)
        self.logit = nn.Parameter(torch.tensor(math.log(fraction / (1 - fraction))))

    def forward(self) -> torch.Tensor:
        return self.low + (self.high - self.low) * torch.sigmoid(self.logit)

    def extra_repr(self) -> str:
        return f"range=({self.low}, {self.high})"


class GammaMixin(ImbalanceLoss):
    """``gamma`` as a fixed float or a :class:`BoundedGamma` (``learnable_gamma=True``)."""

    _fixed_gamma: float
    learnable: BoundedGamma | None

    def _init_gamma(
        self, gamma: float, learnable_gamma: bool, gamma_range: tuple[float, float]
    ) -> None:
        check_gamma(gamma)
        self._fixed_gamma = float(gamma)
        self.learnable = BoundedGamma(float(gamma), gamma_range) if learnable_gamma else None

    @property
    def gamma(self) -> GammaLike:
        """The current γ: a float, or a scalar tensor in the graph when learnable."""
        return self.learnable() if self.learnable is not None else self._fixed_gamma

    def gamma_value(self) -> float:
        """The current γ as a float (for logging)."""
        return float(self.learnable().detach()) if self.learnable is not None else self._fixed_gamma

    def training_state(self) -> dict[str, float | torch.Tensor]:
        return {**super().training_state(), "gamma": self.gamma_value()}
