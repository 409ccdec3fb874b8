"""Focal loss (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017)."""

from __future__ import annotations

import torch

from torch_imbalance._checks import check_range
from torch_imbalance._types import Reduction, Task
from torch_imbalance.functional._common import (
    GammaLike,
    check_gamma,
    check_label_smoothing,
    prepare,
)
from torch_imbalance.functional._gap import GapHead, gap_loss
from torch_imbalance.functional._math import (
    Anchor,
    LogScales,
    Parts,
    Smoothing,
    class_dim_view,
    cutoff,
    power,
    scalar,
    sigmoid_parts,
    signed_gap,
)
from torch_imbalance.functional._multilabel import multilabel_loss


def focal_law(
    gap: torch.Tensor,
    gamma: torch.Tensor | float,
    log_scale: torch.Tensor | float,
    anchor: Anchor = None,
    smoothing: Smoothing | None = None,
) -> Parts:
    r"""The focal loss of one element as a law of its gap ``u`` (Lin et al. 2017, eq. 4).

    With :math:`p_t = \sigma(-u)` and :math:`1 - p_t = \sigma(u)`:

    .. math::
        \ell = (1 - p_t)^\gamma (-\log p_t) = \sigma(u)^\gamma\,\mathrm{softplus}(u),

    and since :math:`\mathrm{softplus}' = \sigma` and :math:`\sigma' = \sigma(u)\,p_t`,

    .. math::
        \frac{\partial\ell}{\partial u} = \sigma(u)^\gamma
            \big(\gamma\,p_t\,\mathrm{softplus}(u) + \sigma(u)\big), \qquad
        \frac{\partial\ell}{\partial\gamma} = \log\sigma(u)\,\ell.

    ``γ = 0`` is cross-entropy (slope ``σ(u)``). Every quantity comes from one ``exp`` and one
    ``log`` (``_math.sigmoid_parts``); ``u`` is first raised to the cutoff below which the
    value and slope, times ``e^{log_scale}``, would be subnormal (``_math.cutoff``).

    With label smoothing (``smoothing = (κ, E)``, see ``_gap.smoothing_terms``) the
    cross-entropy factor is the smoothed one, ``κ softplus(u) + E``, and the modulator stays
    that of the hard target (keras-cv's corrected focal loss): the slopes are then
    ``[∂ℓ/∂u, ∂ℓ/∂E]``.

    Returns:
        ``(ℓ, [∂ℓ/∂u] (+ [∂ℓ/∂E]), ∂ℓ/∂γ or None)``.
    """
    gap = cutoff(gap, gamma, log_scale)
    cross_entropy, log_one_minus, one_minus, p_t = sigmoid_parts(gap, anchor)
    base_slope = one_minus
    if smoothing is not None:
        keep, extra = smoothing
        cross_entropy = keep * cross_entropy + extra
        base_slope = keep * one_minus
    if not isinstance(gamma, torch.Tensor) and gamma == 0:
        extra_slopes = [] if smoothing is None else [torch.ones_like(gap)]
        return cross_entropy, [base_slope, *extra_slopes], None
    modulator = power(one_minus, log_one_minus, gamma)
    value = modulator * cross_entropy
    slope = modulator * (gamma * p_t * cross_entropy + base_slope)
    extra_slopes = [] if smoothing is None else [modulator]
    return value, [slope, *extra_slopes], log_one_minus * value


def cross_entropy_head(
    gaps: list[torch.Tensor],
    gamma: torch.Tensor | float,
    *,
    log_scales: LogScales,
    anchor: Anchor = None,
    smoothing: list[Smoothing] | None = None,
) -> Parts:
    """``ℓ = softplus(u)`` (the focal law at ``γ = 0``) of one head: cross-entropy, LDAM and
    the prior-adjusted losses (their heads transform the logits)."""
    return focal_head(gaps, 0.0, log_scales=log_scales, anchor=anchor, smoothing=smoothing)


def focal_head(
    gaps: list[torch.Tensor],
    gamma: torch.Tensor | float,
    *,
    log_scales: LogScales,
    anchor: Anchor = None,
    smoothing: list[Smoothing] | None = None,
) -> Parts:
    """The softmax focal loss of one head (:func:`focal_law`)."""
    assert log_scales is not None
    return focal_law(
        gaps[0], gamma, log_scales[0], anchor, None if smoothing is None else smoothing[0]
    )


def multilabel_focal_entries(
    z: torch.Tensor,
    positive: torch.Tensor,
    *,
    gamma: torch.Tensor | float,
    alpha: float | torch.Tensor | None,
    log_scale: torch.Tensor | float,
    anchor: Anchor = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``ℓ = α_y σ(u)^γ softplus(u)`` per entry, ``u = −(2y − 1) z``
    (``torchvision.ops.sigmoid_focal_loss``): :func:`focal_law` with ``∂u/∂z = −(2y − 1)``."""
    value, (slope,), d_gamma = focal_law(signed_gap(z, positive), gamma, log_scale, anchor)
    slope = torch.where(positive, -slope, slope)
    if alpha is not None:
        if isinstance(alpha, torch.Tensor) and alpha.ndim == 1:
            alpha = class_dim_view(alpha, z.ndim)
        weight = torch.where(positive, scalar(alpha, z), 1 - alpha)
        value, slope = weight * value, weight * slope
        d_gamma = None if d_gamma is None else weight * d_gamma
    return value, slope, d_gamma


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
    check_range("alpha", float(alpha), 0.0, 1.0)


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
    label_smoothing: float = 0.0,
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
        label_smoothing: ``ε ∈ [0, 1]``: the target distribution ``(1 − ε)·onehot + ε/C``, as
            ``F.cross_entropy(..., label_smoothing=ε)`` (multiclass only).
        validate: check logits are finite and targets in range (on CUDA a device-side assert:
            no host sync; a failure says to rerun on the CPU for details).

    Returns:
        The reduced loss (a scalar), or per element ``(N, *spatial)`` (multiclass) /
        ``input``'s shape (multilabel) for ``reduction="none"``; float32 for half inputs.

    Examples:
        >>> import torch
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
        >>> target = torch.tensor([0, 1])
        >>> focal_loss(logits, target, gamma=2.0)
        tensor(1.3061)
        >>> focal_loss(logits, target, gamma=0.0)  # cross-entropy
        tensor(1.5755)
    """
    check_gamma(gamma)
    check_label_smoothing(label_smoothing, task)
    dtype, target, checks = prepare(task, input, target, weight, ignore_index, reduction, validate)
    if task == "multiclass":
        if alpha is not None:
            raise ValueError(
                "alpha applies to task='multilabel'; for multiclass use weight=(C,) class weights"
            )
        heads = (GapHead(),)
        return gap_loss(
            input, target, weight, ignore_index, heads, focal_head, dtype, reduction, gamma, checks,
            label_smoothing=label_smoothing,
        )  # fmt: skip
    check_alpha(alpha, input.shape[1])
    return multilabel_loss(
        multilabel_focal_entries,
        input,
        target,
        gamma,
        reduction,
        ignore_index,
        checks,
        weight,
        dtype,
        alpha=alpha,
    )
