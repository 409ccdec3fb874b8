"""LMF: Large Margin aware Focal loss (Sadi, Chowdhury et al., arXiv 2212.12741)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from torch_imbalance._checks import Reduction, Task, check_range
from torch_imbalance._reduce import (
    multilabel_sign,
    multilabel_valid,
    reduce_multiclass,
    reduce_multilabel,
    split_ignored,
)
from torch_imbalance.functional._common import GammaLike, check_gamma, power_from_log, prepare
from torch_imbalance.functional.focal import multiclass_focal_terms, multilabel_focal_terms
from torch_imbalance.functional.ldam import (
    CountsLike,
    multiclass_ldam_terms,
    multilabel_ldam_terms,
    resolve_margins,
)

Variant = Literal["paper", "official"]


def official_focal_terms(
    logits: torch.Tensor, safe_target: torch.Tensor, element_weight: torch.Tensor, gamma: GammaLike
) -> torch.Tensor:
    """The authors' focal term per element: ``(1 − e^{−x})^γ · x`` with ``x = w_t · CE``.

    Their code takes ``p = exp(−weighted CE)`` as the probability, which differs from
    ``w_t (1 − p_t)^γ CE`` whenever the weights are not 1. ``1 − e^{−x}`` is ``−expm1(−x)``,
    exact for small ``x``; where it is 0 the term and its gradient are 0.
    """
    weighted_ce = element_weight * F.cross_entropy(logits, safe_target, reduction="none")
    one_minus_p = -torch.expm1(-weighted_ce)
    positive = one_minus_p > 0
    log_one_minus_p = torch.log(torch.where(positive, one_minus_p, 1.0))
    modulator = torch.where(positive, power_from_log(log_one_minus_p, gamma), 0.0)
    return modulator * weighted_ce


def lmf_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    class_counts: CountsLike | None = None,
    *,
    margins: torch.Tensor | None = None,
    gamma: GammaLike = 1.5,
    max_margin: float = 0.5,
    scale: float = 30.0,
    ldam_weight: float = 1.0,
    focal_weight: float = 1.0,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    task: Task = "multiclass",
    variant: Variant = "paper",
    validate: bool = True,
) -> torch.Tensor:
    r"""LMF loss: :math:`\lambda_{ldam} L_{LDAM} + \lambda_{focal} L_{focal}` on the same logits.

    ``variant="paper"`` (default) follows the paper's text: LDAM on :math:`s(z - \Delta_t e_t)`
    and focal on the raw logits :math:`z`, both weighted by ``weight`` and reduced the same way,
    so the result is exactly the weighted sum of :func:`ldam_loss` and :func:`focal_loss`.

    ``variant="official"`` reproduces the authors' code (multiclass only):

    * the margins :math:`\Delta` are the per-class weights of both terms (``weight`` is not
      accepted; pass ``ldam_weight=1.5, gamma=1.5`` for their defaults, as the registry's
      ``lmf_official`` does);
    * LDAM term: :math:`\sum_i \Delta_{t_i}\,\mathrm{CE}(s(z_i - \Delta_{t_i} e_{t_i}), t_i) /
      \sum_i \Delta_{t_i}` (weighted mean, as ``F.cross_entropy``);
    * focal term: :math:`\frac{1}{N}\sum_i (1 - e^{-x_i})^\gamma x_i` with
      :math:`x_i = \Delta_{t_i}\,\mathrm{CE}(z_i, t_i)` (their focal treats ``exp(−weighted CE)``
      as the probability and averages over the ``N`` elements).

    Args:
        input: logits ``(N, C)`` or ``(N, C, *spatial)``.
        target: class indices ``(N, *spatial)`` or 0/1 labels of ``input``'s shape.
        class_counts: training count per class ``(C,)``; alternatively give ``margins``.
        margins: precomputed LDAM margins ``(C,)``.
        gamma: focal ``γ ≥ 0``.
        max_margin: the largest LDAM margin.
        scale: LDAM logit scale ``s``.
        ldam_weight: :math:`\lambda_{ldam}`.
        focal_weight: :math:`\lambda_{focal}`.
        weight: per-class weights ``(C,)`` of both terms (paper variant).
        ignore_index: target value that contributes nothing.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"``.
        task: ``"multiclass"`` or ``"multilabel"`` (paper variant only).
        variant: ``"paper"`` or ``"official"``.
        validate: check logits are finite and targets in range (costs a device sync).

    Returns:
        The reduced loss, or per element for ``reduction="none"``.

    Example:
        >>> import torch
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
        >>> lmf_loss(logits, torch.tensor([0, 1]), class_counts=[100, 10, 1])
        tensor(47.5671)
    """
    check_gamma(gamma)
    check_range("ldam_weight", ldam_weight, 0.0)
    check_range("focal_weight", focal_weight, 0.0)
    check_range("scale", scale, 0.0, low_inclusive=False)
    if variant not in ("paper", "official"):
        raise ValueError(f"variant must be 'paper' or 'official', got {variant!r}")
    z = prepare(task, input, target, weight, ignore_index, reduction, validate)
    margins = resolve_margins(class_counts, margins, max_margin, z, z.dtype)
    if variant == "official":
        return _official_lmf(
            z,
            target,
            margins,
            gamma,
            scale,
            ldam_weight,
            focal_weight,
            weight,
            ignore_index,
            reduction,
            task,
        )
    if task == "multiclass":
        safe_target, valid = split_ignored(target, ignore_index)
        loss = ldam_weight * multiclass_ldam_terms(z, safe_target, margins, scale)
        loss = loss + focal_weight * multiclass_focal_terms(z, safe_target, gamma)
        return reduce_multiclass(loss, safe_target, valid, weight, reduction)
    valid = multilabel_valid(target, ignore_index)
    sign = multilabel_sign(target, valid, z.dtype)
    loss = ldam_weight * multilabel_ldam_terms(z, sign, margins, scale)
    loss = loss + focal_weight * multilabel_focal_terms(z, sign, gamma, None)
    return reduce_multilabel(loss, valid, weight, reduction)


def _official_lmf(
    z: torch.Tensor,
    target: torch.Tensor,
    margins: torch.Tensor,
    gamma: GammaLike,
    scale: float,
    ldam_weight: float,
    focal_weight: float,
    weight: torch.Tensor | None,
    ignore_index: int,
    reduction: Reduction,
    task: Task,
) -> torch.Tensor:
    if task != "multiclass":
        raise ValueError(
            "variant='official' reproduces the authors' multiclass code; use "
            "variant='paper' for task='multilabel'"
        )
    if weight is not None:
        raise ValueError(
            "variant='official' weights both terms by the LDAM margins; weight must be None"
        )
    safe_target, valid = split_ignored(target, ignore_index)
    element_weight = margins[safe_target]
    ldam = reduce_multiclass(
        multiclass_ldam_terms(z, safe_target, margins, scale),
        safe_target,
        valid,
        margins,
        reduction,
    )
    focal = reduce_multiclass(
        official_focal_terms(z, safe_target, element_weight, gamma),
        safe_target,
        valid,
        None,
        reduction,
        normalizer="count",
    )
    return ldam_weight * ldam + focal_weight * focal
