"""Module form of the Dual Focal Loss, with learnable γ and adaptive class weights."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from torch_imbalance._checks import check_range, squeeze_target_channel
from torch_imbalance._types import CountsLike, Reduction, Task
from torch_imbalance.functional.dual_focal import check_dual_focal_args, dual_focal_loss
from torch_imbalance.losses._base import GammaMixin, ImbalanceLoss
from torch_imbalance.losses.adaptive import AdaptiveClassWeights


class DualFocalLoss(GammaMixin, ImbalanceLoss):
    r"""Dual Focal Loss (Hossain, Betts, Paplinski; Neurocomputing 2021) for segmentation.

    See :func:`torch_imbalance.functional.dual_focal_loss` for the formula. Two options from
    "Adaptive Class Weight based Dual Focal Loss":

    * ``learnable_gamma=True``: γ is a bounded parameter
      :math:`\gamma_{min} + (\gamma_{max} - \gamma_{min})\sigma(\theta)` trained with the model.
      Since :math:`\partial L / \partial \gamma \le 0` (as :math:`|y - p| \le 1`), the training
      loss alone drives γ to its upper bound; log it and compare with a fixed γ.
    * ``class_weight="adaptive"``: per-class weights from running class frequencies
      (:class:`AdaptiveClassWeights`), used by each training-mode forward and then updated
      from its targets, frozen in eval mode,
      all-reduced across processes under ``torch.distributed``.

    Not "Dual Focal Loss for Calibration" (Tao et al., ICML 2023), which is a different loss.

    Args:
        alpha: weight of the focal-like term.
        beta: weight of the false-class term.
        gamma: exponent of the focal-like term (initial value when learnable).
        rho: offset ``ρ ≥ 1`` in :math:`\log(\rho - p)`.
        weight: fixed per-class weights ``(C,)`` (exclusive with ``class_weight="adaptive"``).
        ignore_index: target value that contributes nothing.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"``.
        task: ``"multiclass"`` or ``"multilabel"``.
        learnable_gamma: train γ by back-propagation.
        gamma_range: bounds of a learnable γ.
        class_weight: None, or ``"adaptive"``.
        class_counts: initial counts for the adaptive weights (also sets the number of classes).
        num_classes: number of classes, when adaptive weights start without counts.
        momentum: momentum of the running class frequencies.
        adaptive_power: :math:`\kappa` in :math:`w_c \propto f_c^{-\kappa}`.
        validate: check logits are finite and targets in range on every call.

    Examples:
        >>> import torch
        >>> criterion = DualFocalLoss(learnable_gamma=True, gamma=1.0, class_weight="adaptive",
        ...                           num_classes=3)
        >>> logits = torch.randn(2, 3, 4, 4, requires_grad=True)
        >>> criterion(logits, torch.randint(0, 3, (2, 4, 4))).backward()
        >>> criterion.learnable.logit.grad is not None
        True
    """

    def __init__(
        self,
        *,
        alpha: float = 1.0,
        beta: float = 1.0,
        gamma: float = 1.0,
        rho: float = 1.0,
        weight: torch.Tensor | Sequence[float] | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
        task: Task = "multiclass",
        learnable_gamma: bool = False,
        gamma_range: tuple[float, float] = (0.5, 5.0),
        class_weight: Literal["adaptive"] | None = None,
        class_counts: CountsLike | None = None,
        num_classes: int | None = None,
        momentum: float = 0.99,
        adaptive_power: float = 0.5,
        validate: bool = True,
    ) -> None:
        super().__init__(
            weight=weight,
            ignore_index=ignore_index,
            reduction=reduction,
            task=task,
            validate=validate,
        )
        check_dual_focal_args(alpha, beta, gamma, rho)
        # Checked with or without adaptive weights: a bad value is a mistake either way.
        check_range("momentum", momentum, 0.0, 1.0, high_inclusive=False)
        check_range("adaptive_power", adaptive_power, 0.0)
        if class_weight is None and (class_counts is not None or num_classes is not None):
            raise ValueError(
                "class_counts and num_classes set the adaptive class weights; pass "
                "class_weight='adaptive' with them (or weight=... for fixed weights)"
            )
        self._init_gamma(gamma, learnable_gamma, gamma_range)
        self.alpha, self.beta, self.rho = float(alpha), float(beta), float(rho)
        self.adaptive: AdaptiveClassWeights | None = None
        if class_weight == "adaptive":
            if weight is not None:
                raise ValueError("pass either weight or class_weight='adaptive', not both")
            if num_classes is None and class_counts is None:
                raise ValueError("class_weight='adaptive' needs class_counts or num_classes")
            size = num_classes if num_classes is not None else len(class_counts)  # type: ignore[arg-type]
            self.adaptive = AdaptiveClassWeights(size, class_counts, momentum, adaptive_power)
        elif class_weight is not None:
            raise ValueError(f"class_weight must be None or 'adaptive', got {class_weight!r}")

    def current_weight(self) -> torch.Tensor | None:
        """The class weights the next forward uses (adaptive or fixed)."""
        return self.adaptive.weights() if self.adaptive is not None else self.weight

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        counts = None
        if self.adaptive is not None and self.task == "multiclass":
            # One count of the batch's labels serves the mean's divisor and the update.
            labels = squeeze_target_channel(input, target)
            counts = self.adaptive.count(labels, self.ignore_index, self.task)
        loss = dual_focal_loss(
            input,
            target,
            alpha=self.alpha,
            beta=self.beta,
            gamma=self.gamma,
            rho=self.rho,
            **{**self.conventions(), "weight": self.current_weight()},
            batch_counts=counts,
        )
        # Update after the loss has validated the targets, so bad labels never reach the estimate.
        if self.adaptive is not None and self.training:
            self.adaptive.update(target, self.ignore_index, self.task, counts)
        return loss

    def extra_repr(self) -> str:
        return (
            f"alpha={self.alpha}, beta={self.beta}, gamma={self.gamma_value():g}, "
            f"rho={self.rho}, " + super().extra_repr()
        )
