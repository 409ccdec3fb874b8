"""Dual Focal Loss (Hossain, Betts, Paplinski; Neurocomputing 2021), for segmentation.

Not to be confused with "Dual Focal Loss for Calibration" (Tao et al., ICML 2023), a
different loss with the same name.
"""

from __future__ import annotations

import torch

from torch_imbalance._checks import check_range
from torch_imbalance._reduce import (
    mask_multilabel,
    multilabel_sign,
    multilabel_valid,
    reduce_multiclass,
    split_ignored,
)
from torch_imbalance._types import Reduction, Task
from torch_imbalance.functional._common import (
    Checks,
    GammaLike,
    check_gamma,
    log_sigmoid_pair,
    multilabel_chunk_loss,
    power_from_log,
    prepare,
)
from torch_imbalance.functional._compiled import (
    dual_focal_kernel,
    normaliser_scales,
)
from torch_imbalance.functional._dual_focal_fused import (
    dual_focal_terms,
    log_rho_minus_p,
)
from torch_imbalance.functional._fused import (
    _as_2d,
    class_weight_in,
    one_pass_loss,
    one_pass_wanted,
)
from torch_imbalance.functional._heads import multilabel_dual_focal_entries


def multilabel_dual_focal_terms(
    logits: torch.Tensor,
    sign: torch.Tensor,
    alpha: float,
    beta: float,
    gamma: GammaLike,
    rho: float,
) -> torch.Tensor:
    """Unweighted multi-label Dual Focal loss per entry ``(N, C, *)`` (sigmoid, 0/1 ``y``)."""
    signed = logits * sign
    # log p for positives, log(1 − p) for negatives; and the other one
    log_p_true, log_p_false = log_sigmoid_pair(signed)
    positive = sign > 0
    if beta != 0:
        negative_term = -beta * log_rho_minus_p(log_p_true, rho)
        loss = torch.where(positive, -log_p_true, negative_term)
    else:
        loss = torch.where(positive, -log_p_true, 0.0)
    if alpha != 0:
        loss = loss + alpha * power_from_log(log_p_false, gamma)
    return loss


def _multilabel_chunk(
    logits: torch.Tensor,
    target: torch.Tensor,
    *gamma_param: torch.Tensor,
    gamma: GammaLike,
    alpha: float,
    beta: float,
    rho: float,
    weight: torch.Tensor | None,
    ignore_index: int | None,
    dtype: torch.dtype,
) -> torch.Tensor:
    z = logits.to(dtype)
    sign = multilabel_sign(target, multilabel_valid(target, ignore_index), dtype)
    gamma_value = gamma_param[0] if gamma_param else gamma
    loss = multilabel_dual_focal_terms(z, sign, alpha, beta, gamma_value, rho)
    return mask_multilabel(loss, target, weight, ignore_index)


def check_dual_focal_args(alpha: float, beta: float, gamma: GammaLike, rho: float) -> None:
    """``α, β, γ ≥ 0`` and ``ρ ≥ 1``."""
    check_range("alpha", alpha, 0.0)
    check_range("beta", beta, 0.0)
    check_gamma(gamma)
    check_range("rho", rho, 1.0)


def dual_focal_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    *,
    alpha: float = 1.0,
    beta: float = 1.0,
    gamma: GammaLike = 1.0,
    rho: float = 1.0,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    task: Task = "multiclass",
    validate: bool = True,
) -> torch.Tensor:
    r"""Dual Focal Loss (Hossain et al., 2021): scores the true and the false classes.

    Per element (pixel or sample):

    .. math::
        \ell = \sum_c \left[-y_c \log p_c - \beta (1 - y_c) \log(\rho - p_c)
               + \alpha |y_c - p_c|^\gamma\right]

    with one-hot ``y`` and softmax ``p`` (multiclass) or 0/1 ``y`` and sigmoid ``p`` per entry
    (multilabel; then each ``(i, c)`` entry is one element, as in BCE). The first term is
    cross-entropy, the second pushes every false class down, the third is a focal-like term
    (``γ = 1``: :math:`2\alpha(1 - p_t)`; ``γ = 2``: α × Brier score). All logs are taken in
    log space, so the loss and its exact gradient are finite for saturated logits and any
    ``γ ≥ 0``. Reduced like ``F.cross_entropy`` (``weight``, ``ignore_index``).

    This is the segmentation loss of Hossain, Betts and Paplinski, not "Dual Focal Loss for
    Calibration" (Tao et al., ICML 2023).

    Speed: a reduced multi-class loss runs one compiled kernel (loss and gradient together).
    With at most 32 classes and at least 2^20 logits (training-size segmentation batches) that
    kernel is unrolled over the classes into one loop; its first build then takes about 15 s
    (4 classes) to 35 s (32) on a 2-core CPU (once per configuration and input rank; inductor
    caches it on disk).

    Args:
        input: logits ``(N, C)`` or ``(N, C, *spatial)``.
        target: class indices ``(N, *spatial)`` or 0/1 labels of ``input``'s shape.
        alpha: weight of the focal-like term, ``≥ 0``.
        beta: weight of the false-class term, ``≥ 0``.
        gamma: exponent of the focal-like term, ``≥ 0`` (float or scalar tensor).
        rho: offset in :math:`\log(\rho - p)`, ``≥ 1``.
        weight: per-class weights ``(C,)``.
        ignore_index: target value that contributes nothing.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"``.
        task: ``"multiclass"`` or ``"multilabel"``.
        validate: check logits are finite and targets in range (costs a device sync).

    Returns:
        The reduced loss, or per element for ``reduction="none"``.

    Example:
        >>> import torch
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
        >>> dual_focal_loss(logits, torch.tensor([0, 1]))
        tensor(4.0096)
    """
    check_dual_focal_args(alpha, beta, gamma, rho)
    dtype, target, checks = prepare(task, input, target, weight, ignore_index, reduction, validate)
    settings = {"alpha": alpha, "beta": beta, "rho": rho, "dtype": dtype}
    if task == "multilabel":
        return multilabel_chunk_loss(
            _multilabel_chunk,
            multilabel_dual_focal_entries,
            input,
            target,
            gamma,
            reduction,
            ignore_index,
            weight=weight,
            **settings,
            checks=checks,
        )
    if one_pass_wanted(input, reduction):
        result = _one_pass_dual_focal(
            input,
            target,
            weight,
            ignore_index,
            alpha,
            beta,
            gamma,
            rho,
            dtype,
            reduction,
            checks=checks,
        )
        if result is not None:
            return result
    if checks is not None:
        checks()
    safe_target, valid = split_ignored(target, ignore_index)
    loss = dual_focal_terms(input, safe_target, alpha, beta, gamma, rho, dtype)
    return reduce_multiclass(loss, safe_target, valid, weight, reduction)


def _one_pass_dual_focal(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    ignore_index: int,
    alpha: float,
    beta: float,
    gamma: GammaLike,
    rho: float,
    dtype: torch.dtype,
    reduction: Reduction,
    checks: Checks,
) -> torch.Tensor | None:
    """The compiled one-pass kernel (loss and gradient in one loop), or None to fall back."""
    fixed_gamma = None if isinstance(gamma, torch.Tensor) else float(gamma)
    wants_gamma = isinstance(gamma, torch.Tensor) and gamma.requires_grad
    settings = (float(alpha), float(beta), float(rho), fixed_gamma, wants_gamma, dtype)
    class_weight = class_weight_in(weight, dtype, input.device)
    normaliser = ("weight",) if reduction == "mean" else ("sum",)
    classes = input.shape[1]
    factors = normaliser_scales(target, class_weight, classes, int(ignore_index), normaliser, dtype)
    arguments = (_as_2d(target), factors, class_weight)
    return one_pass_loss(
        input,
        gamma,
        lambda: dual_focal_kernel(
            *settings,
            int(ignore_index),
            reduction == "mean",
            classes,
            input.numel(),
        ),
        arguments,
        dtype,
        checks,
    )
