"""Focal loss (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017)."""

from __future__ import annotations

import torch

from torch_imbalance._checks import check_range
from torch_imbalance._reduce import (
    class_dim_view,
    mask_multilabel,
    multilabel_sign,
    multilabel_valid,
)
from torch_imbalance._types import Reduction, Task
from torch_imbalance.functional._common import (
    GammaLike,
    check_gamma,
    log_sigmoid,
    log_sigmoid_pair,
    multilabel_chunk_loss,
    power_from_log,
    prepare,
)
from torch_imbalance.functional._fused import GapHead, reduced_gap_loss
from torch_imbalance.functional._heads import focal_head, multilabel_focal_entries


def multilabel_focal_terms(
    logits: torch.Tensor,
    sign: torch.Tensor,
    gamma: GammaLike,
    alpha: float | torch.Tensor | None,
) -> torch.Tensor:
    """Unweighted sigmoid focal loss ``α_y (1 − p_y)^γ BCE(z, y)`` per entry ``(n, C, *)``.

    Args:
        logits: ``(n, C, *)`` logits ``z``.
        sign: ``2y − 1`` as floats.
        gamma: focusing parameter.
        alpha: weight of the positives (``1 − α`` for negatives), scalar or per class, or None.
    """
    signed = logits * sign
    if isinstance(gamma, torch.Tensor) or gamma != 0:
        log_p, log_one_minus_p = log_sigmoid_pair(signed)
        bce = -power_from_log(log_one_minus_p, gamma) * log_p
    else:
        bce = -log_sigmoid(signed)
    if alpha is None:
        return bce
    if isinstance(alpha, torch.Tensor) and alpha.ndim == 1:
        alpha = class_dim_view(alpha.to(logits.dtype), logits.ndim)
    return torch.where(sign > 0, alpha * bce, (1 - alpha) * bce)


def _multilabel_focal_chunk(
    logits: torch.Tensor,
    target: torch.Tensor,
    *gamma_param: torch.Tensor,
    gamma: GammaLike,
    alpha: float | torch.Tensor | None,
    weight: torch.Tensor | None,
    ignore_index: int | None,
    dtype: torch.dtype,
) -> torch.Tensor:
    z = logits.to(dtype)
    sign = multilabel_sign(target, multilabel_valid(target, ignore_index), dtype)
    loss = multilabel_focal_terms(z, sign, gamma_param[0] if gamma_param else gamma, alpha)
    return mask_multilabel(loss, target, weight, ignore_index)


def check_alpha(alpha: float | torch.Tensor | None, num_classes: int) -> None:
    """``α ∈ [0, 1]``, a scalar or one value per class."""
    if alpha is None:
        return
    if isinstance(alpha, torch.Tensor) and alpha.numel() > 1:
        if alpha.ndim != 1 or alpha.shape[0] != num_classes:
            raise ValueError(
                f"alpha must be a scalar or have shape ({num_classes},), got {tuple(alpha.shape)}"
            )
        if bool(((alpha < 0) | (alpha > 1)).any()):
            raise ValueError(f"alpha must lie in [0, 1], got {alpha.tolist()}")
        return
    check_range("alpha", alpha, 0.0, 1.0)


def focal_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    gamma: GammaLike = 2.0,
    *,
    alpha: float | torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    task: Task = "multiclass",
    validate: bool = True,
) -> torch.Tensor:
    r"""Focal loss for multi-class (softmax) or multi-label (sigmoid) logits.

    Multi-class: :math:`\ell_i = -w_{t_i} (1 - p_{t_i})^\gamma \log p_{t_i}` with
    :math:`p = \mathrm{softmax}(z)`; ``gamma=0`` is exactly ``F.cross_entropy``.
    Multi-label: :math:`\ell_{ic} = w_c\,\alpha_y (1 - p_y)^\gamma\,\mathrm{BCE}(z_{ic}, y_{ic})`
    with :math:`p_y = \sigma(z)` if ``y = 1`` else :math:`1 - \sigma(z)`, and
    :math:`\alpha_y = \alpha` for positives, :math:`1 - \alpha` for negatives; this equals
    ``torchvision.ops.sigmoid_focal_loss``. The modulator is computed in log space,
    :math:`\exp(\gamma \log(1 - p_t))`, so saturated logits and ``0 < γ < 1`` stay finite.
    One fused pass over the logits, with a closed-form backward.

    Args:
        input: logits ``(N, C)`` or ``(N, C, *spatial)``.
        target: class indices ``(N, *spatial)`` (multiclass) or 0/1 labels of ``input``'s shape
            (multilabel).
        gamma: focusing parameter ``γ ≥ 0`` (a float, or a scalar tensor for learnable γ).
        alpha: multilabel only: weight of positive labels, scalar or per class; None for none.
        weight: per-class weights ``(C,)``.
        ignore_index: target value that contributes nothing (also for multilabel).
        reduction: ``"mean"`` | ``"sum"`` | ``"none"``.
        task: ``"multiclass"`` or ``"multilabel"``.
        validate: check logits are finite and targets in range (costs a device sync).

    Returns:
        The reduced loss (a scalar), or per element ``(N, *spatial)`` (multiclass) /
        ``input``'s shape (multilabel) for ``reduction="none"``; float32 for half inputs.

    Example:
        >>> import torch
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
        >>> target = torch.tensor([0, 1])
        >>> focal_loss(logits, target, gamma=2.0)
        tensor(1.3061)
        >>> focal_loss(logits, target, gamma=0.0)  # cross-entropy
        tensor(1.5755)
    """
    check_gamma(gamma)
    dtype, target, checks = prepare(task, input, target, weight, ignore_index, reduction, validate)
    if task == "multiclass":
        if alpha is not None:
            raise ValueError(
                "alpha applies to task='multilabel'; for multiclass use weight=(C,) class weights"
            )
        return reduced_gap_loss(
            input,
            target,
            weight,
            ignore_index,
            (GapHead(),),
            focal_head,
            dtype,
            reduction,
            gamma,
            checks=checks,
        )
    check_alpha(alpha, input.shape[1])
    return multilabel_chunk_loss(
        _multilabel_focal_chunk,
        multilabel_focal_entries,
        input,
        target,
        gamma,
        reduction,
        ignore_index,
        alpha=alpha,
        weight=weight,
        dtype=dtype,
        checks=checks,
    )
