"""Module form of the focal loss."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from torch_imbalance._types import Reduction, Task
from torch_imbalance.functional.focal import check_alpha, focal_loss
from torch_imbalance.losses._base import GammaMixin, ImbalanceLoss


class FocalLoss(GammaMixin, ImbalanceLoss):
    r"""Focal loss (Lin et al., 2017), multi-class (softmax) or multi-label (sigmoid).

    See :func:`torch_imbalance.functional.focal_loss` for the formula. ``learnable_gamma=True``
    makes γ a bounded parameter trained with the model (``gamma_range``); since
    :math:`\partial L / \partial \gamma \le 0`, the training loss alone pushes it to the upper
    bound: compare with a fixed γ on validation data.

    Args:
        gamma: focusing parameter ``γ ≥ 0`` (initial value when learnable).
        alpha: multilabel only: weight of positives (scalar or per class ``(C,)``), or None.
        weight: per-class weights ``(C,)``.
        ignore_index: target value that contributes nothing.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"``.
        task: ``"multiclass"`` or ``"multilabel"``.
        learnable_gamma: train γ by back-propagation.
        gamma_range: bounds of a learnable γ.
        label_smoothing: ``ε ∈ [0, 1]``, as ``F.cross_entropy``'s (multiclass only).
        validate: check logits are finite and targets in range on every call.

    Shape:
        - input: ``(N, C)`` or ``(N, C, *spatial)`` logits.
        - target: ``(N, *spatial)`` class indices, or 0/1 of ``input``'s shape (multilabel).
        - output: scalar, or per element with ``reduction="none"``.

    Examples:
        >>> import torch
        >>> criterion = FocalLoss(gamma=2.0)
        >>> logits = torch.randn(4, 3, 8, 8, requires_grad=True)
        >>> loss = criterion(logits, torch.randint(0, 3, (4, 8, 8)))
        >>> loss.backward()
        >>> FocalLoss(gamma=2.0, learnable_gamma=True).gamma_value()
        2.0
    """

    alpha: torch.Tensor | None

    def __init__(
        self,
        gamma: float = 2.0,
        *,
        alpha: float | Sequence[float] | torch.Tensor | None = None,
        weight: torch.Tensor | Sequence[float] | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
        task: Task = "multiclass",
        learnable_gamma: bool = False,
        gamma_range: tuple[float, float] = (0.5, 5.0),
        validate: bool = True,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(
            weight=weight,
            ignore_index=ignore_index,
            reduction=reduction,
            task=task,
            validate=validate,
            label_smoothing=label_smoothing,
        )
        self._init_gamma(gamma, learnable_gamma, gamma_range)
        if alpha is not None and task != "multilabel":
            raise ValueError("alpha applies to task='multilabel'; for multiclass use weight=")
        alpha_tensor = None if alpha is None else torch.as_tensor(alpha, dtype=torch.float32)
        if alpha_tensor is not None:
            check_alpha(alpha_tensor, alpha_tensor.numel())
        # A per-class alpha is a buffer (it moves with .to()); a scalar stays a float.
        per_class = alpha_tensor is not None and alpha_tensor.ndim == 1
        self.register_buffer("alpha", alpha_tensor if per_class else None)
        self._scalar_alpha = None if alpha_tensor is None or per_class else float(alpha_tensor)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha if self.alpha is not None else self._scalar_alpha
        return focal_loss(
            input,
            target,
            self.gamma,
            alpha=alpha,
            **self.conventions(),
        )

    def extra_repr(self) -> str:
        return f"gamma={self.gamma_value():g}, " + super().extra_repr()
