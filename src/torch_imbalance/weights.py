"""Class-weight schemes, LDAM margins and the deferred re-weighting (DRW) schedule.

Every scheme takes the training count per class (a sequence, array or tensor of length ``C``)
and returns a ``(C,)`` tensor in torch's default dtype. Zero or negative counts raise a
``ValueError`` naming the classes, never a silent ``inf``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from torch_imbalance._checks import as_class_counts, check_range
from torch_imbalance._types import CountsLike, TrainingLoss


def _to_tensor(values: np.ndarray, dtype: torch.dtype | None = None) -> torch.Tensor:
    return torch.as_tensor(values, dtype=dtype or torch.get_default_dtype())


def _sum_to_num_classes(values: np.ndarray) -> np.ndarray:
    scaled: np.ndarray = values * (values.size / values.sum())
    return scaled


def inverse_frequency_weights(class_counts: CountsLike, power: float = 1.0) -> torch.Tensor:
    r"""Inverse-frequency weights :math:`w_j \propto n_j^{-\kappa}`, normalised to sum to ``C``.

    Args:
        class_counts: training count per class ``(C,)``.
        power: :math:`\kappa` (1 for inverse frequency, 0.5 for "sqrt" inverse frequency).

    Returns:
        ``(C,)`` weights.

    Examples:
        >>> inverse_frequency_weights([100, 10, 1])
        tensor([0.0270, 0.2703, 2.7027])
        >>> inverse_frequency_weights([100, 10, 1], power=0.5).sum()
        tensor(3.)
    """
    check_range("power", power, 0.0)
    counts = as_class_counts(class_counts)
    return _to_tensor(_sum_to_num_classes(counts**-power))


def median_frequency_weights(class_counts: CountsLike) -> torch.Tensor:
    r"""Median frequency balancing (segmentation): :math:`w_j = \mathrm{median}(\pi) / \pi_j`.

    Args:
        class_counts: training count per class (pixels for segmentation) ``(C,)``.

    Returns:
        ``(C,)`` weights; the class at the median frequency gets weight 1.

    Examples:
        >>> median_frequency_weights([800, 150, 50])
        tensor([0.1875, 1.0000, 3.0000])
    """
    counts = as_class_counts(class_counts)
    frequencies = counts / counts.sum()
    return _to_tensor(np.median(frequencies) / frequencies)


def effective_number_weights(class_counts: CountsLike, beta: float = 0.9999) -> torch.Tensor:
    r"""Class-balanced weights from the effective number of samples (Cui et al., CVPR 2019).

    :math:`w_j = (1 - \beta) / (1 - \beta^{n_j})`, normalised to sum to ``C``.

    Args:
        class_counts: training count per class ``(C,)``.
        beta: :math:`\beta \in [0, 1)`; 0 gives uniform weights, ``β → 1`` inverse frequency.

    Returns:
        ``(C,)`` weights.

    Examples:
        >>> effective_number_weights([1000, 100, 10], beta=0.99)
        tensor([0.2301, 0.3630, 2.4068])
    """
    check_range("beta", beta, 0.0, 1.0, high_inclusive=False)
    counts = as_class_counts(class_counts)
    if beta == 0.0:
        return _to_tensor(np.ones_like(counts))
    # 1 − β^n computed as −expm1(n log β): exact even when β^n is close to 1.
    effective_number = -np.expm1(counts * np.log(beta))
    return _to_tensor(_sum_to_num_classes((1.0 - beta) / effective_number))


def ldam_margins(
    class_counts: CountsLike, max_margin: float = 0.5, dtype: torch.dtype | None = None
) -> torch.Tensor:
    r"""LDAM margins :math:`\Delta_j = m_{\max} (n_{\min} / n_j)^{1/4}`.

    The rarest class gets ``max_margin``; margins shrink with the fourth root of the count.

    Args:
        class_counts: training count per class ``(C,)``.
        max_margin: the largest margin, ``> 0``.
        dtype: of the result (default: torch's default dtype). The losses keep float64
            margins so that float64 inputs are computed at full precision.

    Returns:
        ``(C,)`` margins.

    Examples:
        >>> ldam_margins([10000, 100, 1], max_margin=0.5)
        tensor([0.0500, 0.1581, 0.5000])
    """
    check_range("max_margin", max_margin, 0.0, low_inclusive=False)
    counts = as_class_counts(class_counts)
    return _to_tensor(max_margin * (counts.min() / counts) ** 0.25, dtype)


class DeferredReweighting(nn.Module):
    r"""Deferred re-weighting (DRW, Cao et al. 2019) for any loss with a ``weight`` buffer.

    Wraps a loss (ours, or ``torch.nn.CrossEntropyLoss``): until ``start_epoch`` the wrapped loss
    uses all-ones class weights, from then on class-balanced weights
    (:func:`effective_number_weights` with ``beta``). The trainer calls :meth:`set_epoch` at the
    start of every epoch; the forward simply calls the wrapped loss.

    Args:
        loss: a loss module whose ``weight`` attribute is a per-class weight (or None).
        class_counts: training count per class ``(C,)``.
        start_epoch: first epoch (0-based) with class-balanced weights. Default: 80 % of
            ``total_epochs`` (the reference recipe switches at epoch 160 of 200, its first
            learning-rate decay).
        total_epochs: planned number of epochs, used when ``start_epoch`` is not given.
        beta: β of the effective-number weights.

    Examples:
        >>> import torch
        >>> from torch_imbalance import LDAMLoss
        >>> drw = DeferredReweighting(LDAMLoss([50, 5]), [50, 5], total_epochs=10)
        >>> drw.start_epoch
        8
        >>> drw.set_epoch(0); drw.loss.weight
        tensor([1., 1.])
        >>> drw.set_epoch(8); drw.loss.weight
        tensor([0.1822, 1.8178])
        >>> drw(torch.zeros(2, 2), torch.tensor([0, 1])).shape
        torch.Size([])
    """

    balanced_weight: torch.Tensor
    epoch: torch.Tensor

    def __init__(
        self,
        loss: nn.Module,
        class_counts: CountsLike,
        *,
        start_epoch: int | None = None,
        total_epochs: int | None = None,
        beta: float = 0.9999,
    ) -> None:
        super().__init__()
        if not hasattr(loss, "weight"):
            raise TypeError(
                f"{type(loss).__name__} has no `weight` attribute; DRW needs a loss with per-class "
                "weights"
            )
        if start_epoch is None:
            if total_epochs is None:
                raise ValueError("give start_epoch, or total_epochs to start at 80 % of them")
            check_range("total_epochs", total_epochs, 1)
            start_epoch = int(0.8 * total_epochs)
        check_range("start_epoch", start_epoch, 0)
        self.loss = loss
        self.start_epoch = int(start_epoch)
        self.beta = beta
        balanced = effective_number_weights(class_counts, beta)
        self.register_buffer("balanced_weight", balanced)
        self.register_buffer("epoch", torch.zeros((), dtype=torch.long))
        self.set_epoch(0)

    def weight_at(self, epoch: int) -> torch.Tensor:
        """The class weights used during ``epoch``."""
        if epoch >= self.start_epoch:
            return self.balanced_weight.clone()
        return torch.ones_like(self.balanced_weight)

    def set_epoch(self, epoch: int) -> None:
        """Switch the wrapped loss's weights for ``epoch`` (0-based)."""
        check_range("epoch", epoch, 0)
        self.epoch.fill_(int(epoch))
        self.loss.weight = self.weight_at(int(epoch))

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        value: torch.Tensor = self.loss(input, target)
        return value

    def logit_scale(self) -> float:
        """The wrapped loss's (1 for a loss outside this library)."""
        return self.loss.logit_scale() if isinstance(self.loss, TrainingLoss) else 1.0

    def training_state(self) -> dict[str, float | torch.Tensor]:
        """The wrapped loss's state, with the class weights this wrapper has set."""
        state = self.loss.training_state() if isinstance(self.loss, TrainingLoss) else {}
        weight = self.loss.weight
        return {**state, "weight": weight.detach()} if isinstance(weight, torch.Tensor) else state

    def extra_repr(self) -> str:
        return f"start_epoch={self.start_epoch}, beta={self.beta}"
