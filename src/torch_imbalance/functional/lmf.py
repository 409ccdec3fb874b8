"""LMF: Large Margin aware Focal loss (Sadi, Chowdhury et al., arXiv 2212.12741)."""

from __future__ import annotations

import functools
from typing import Literal

import torch

from torch_imbalance._checks import check_range
from torch_imbalance._reduce import (
    mask_multilabel,
    multilabel_sign,
    multilabel_valid,
    reduce_multiclass,
    split_ignored,
)
from torch_imbalance._types import CountsLike, Reduction, Task
from torch_imbalance.functional._common import (
    GammaLike,
    check_gamma,
    multilabel_chunk_loss,
    power_from_log,
    prepare,
    softplus,
)
from torch_imbalance.functional._fused import (
    GapHead,
    one_pass_gap_loss,
    one_pass_wanted,
    reduced_gap_loss,
    target_gap,
)
from torch_imbalance.functional._heads import (
    cross_entropy_head,
    focal_head,
    lmf_head,
    multilabel_lmf_entries,
)
from torch_imbalance.functional.focal import multilabel_focal_terms
from torch_imbalance.functional.ldam import ldam_head, multilabel_ldam_terms, resolve_margins

Variant = Literal["paper", "official"]


def _multilabel_lmf_chunk(
    logits: torch.Tensor,
    target: torch.Tensor,
    *gamma_param: torch.Tensor,
    gamma: GammaLike,
    margins: torch.Tensor,
    scale: float,
    focal_scale: float,
    ldam_weight: float,
    focal_weight: float,
    weight: torch.Tensor | None,
    ignore_index: int | None,
    dtype: torch.dtype,
) -> torch.Tensor:
    z = logits.to(dtype)
    sign = multilabel_sign(target, multilabel_valid(target, ignore_index), dtype)
    focal_logits = z * focal_scale if focal_scale != 1.0 else z
    gamma_value = gamma_param[0] if gamma_param else gamma
    focal = multilabel_focal_terms(focal_logits, sign, gamma_value, None)
    loss = ldam_weight * multilabel_ldam_terms(z, sign, margins, scale) + focal_weight * focal
    return mask_multilabel(loss, target, weight, ignore_index)


def lmf_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    class_counts: CountsLike | None = None,
    *,
    margins: torch.Tensor | None = None,
    gamma: GammaLike = 1.5,
    max_margin: float = 0.5,
    scale: float = 30.0,
    focal_scale: float = 1.0,
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
    and focal on :math:`s_f z` (:math:`s_f` = ``focal_scale``, 1 in the paper: the raw logits),
    both weighted by ``weight`` and reduced the same way, so the result is exactly the weighted
    sum of :func:`ldam_loss` and :func:`focal_loss` (of ``focal_scale · input``).

    With a plain linear head and :math:`s = 30`, the LDAM term's gradient is up to :math:`s`
    times the focal term's. On a cosine head (:class:`~torch_imbalance.NormedLinear`, logits in
    :math:`[-1, 1]`) ``focal_scale = scale`` gives both terms the same temperature: the
    registry's ``lmf_cosine`` and ``lmf_drw`` (with deferred re-weighting).

    ``variant="official"`` reproduces the authors' code (multiclass only):

    * the margins :math:`\Delta` are the per-class weights of both terms (``weight`` is not
      accepted; pass ``ldam_weight=1.5, gamma=1.5`` for their defaults, as the registry's
      ``lmf_official`` does);
    * LDAM term: :math:`\sum_i \Delta_{t_i}\,\mathrm{CE}(s(z_i - \Delta_{t_i} e_{t_i}), t_i) /
      \sum_i \Delta_{t_i}` (weighted mean, as ``F.cross_entropy``);
    * focal term: :math:`\frac{1}{N}\sum_i \Delta_{t_i} (1 - p_{t_i})^\gamma (-\log p_{t_i})`
      with the plain softmax probability :math:`p_t` of the raw logits (their ``focal_loss``
      loads ``adeelh/pytorch-multi-class-focal-loss``: the class weight multiplies only the
      cross-entropy factor, and the mean is over the ``N`` valid elements).

    Args:
        input: logits ``(N, C)`` or ``(N, C, *spatial)``.
        target: class indices ``(N, *spatial)`` or 0/1 labels of ``input``'s shape.
        class_counts: training count per class ``(C,)``; alternatively give ``margins``.
        margins: precomputed LDAM margins ``(C,)``.
        gamma: focal ``γ ≥ 0``.
        max_margin: the largest LDAM margin.
        scale: LDAM logit scale ``s``.
        focal_scale: scale of the logits the focal term sees (1: the raw logits, as the paper).
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
    check_range("focal_scale", focal_scale, 0.0, low_inclusive=False)
    if variant not in ("paper", "official"):
        raise ValueError(f"variant must be 'paper' or 'official', got {variant!r}")
    dtype, target, checks = prepare(task, input, target, weight, ignore_index, reduction, validate)
    margins = resolve_margins(class_counts, margins, max_margin, input, dtype)
    if task == "multilabel":
        if variant == "official":
            raise ValueError(
                "variant='official' reproduces the authors' multiclass code; use "
                "variant='paper' for task='multilabel'"
            )
        return multilabel_chunk_loss(
            _multilabel_lmf_chunk,
            multilabel_lmf_entries,
            input,
            target,
            gamma,
            reduction,
            ignore_index,
            margins=margins,
            scale=scale,
            focal_scale=focal_scale,
            ldam_weight=ldam_weight,
            focal_weight=focal_weight,
            weight=weight,
            dtype=dtype,
            checks=checks,
        )
    if variant == "official" and weight is not None:
        raise ValueError(
            "variant='official' weights both terms by the LDAM margins; weight must be None"
        )
    # One pass over the logits for both terms: LDAM sees s·(z − Δ_t e_t), focal sees s_f·z (last,
    # so the kernel can work on its chunk in place).
    heads = (ldam_head(margins, scale), GapHead(scale=float(focal_scale)))
    if variant == "paper":
        head = functools.partial(lmf_head, ldam_weight=ldam_weight, focal_weight=focal_weight)
        return reduced_gap_loss(
            input, target, weight, ignore_index, heads, head, dtype, reduction, gamma, checks=checks
        )
    if reduction != "none":
        # LDAM weighted by the margins and divided by their sum, focal weighted by the margins
        # and divided by the number of labelled elements (the authors' two normalisers): one
        # compiled pass for both terms, else each term on its own fused kernel.
        official = functools.partial(lmf_head, ldam_weight=ldam_weight, focal_weight=focal_weight)
        if one_pass_wanted(input, reduction):
            normalisers = ("weight", "count") if reduction == "mean" else ("sum",)
            result = one_pass_gap_loss(
                input,
                target,
                margins,
                ignore_index,
                heads,
                official,
                dtype,
                normalisers,
                gamma,
                checks,
            )
            if result is not None:
                return result
        if checks is not None:  # once for both terms (each would otherwise run them)
            checks()
        ldam = reduced_gap_loss(
            input,
            target,
            margins,
            ignore_index,
            heads[:1],
            cross_entropy_head,
            dtype,
            reduction,
        )
        focal = reduced_gap_loss(
            input,
            target,
            margins,
            ignore_index,
            heads[1:],
            focal_head,
            dtype,
            "sum",
            gamma,
        )
        if reduction == "mean":
            labelled = (target != ignore_index).sum().to(focal.dtype)
            focal = focal / labelled.clamp_min(torch.finfo(focal.dtype).tiny)
        return ldam_weight * ldam + focal_weight * focal
    safe_target, valid = split_ignored(target, ignore_index)
    ldam_gap, focal_gap = target_gap(input, safe_target, heads, dtype)
    ldam_terms = softplus(ldam_gap)
    cross_entropy = softplus(focal_gap)
    # log(1 − p_t) = log σ(u) = u − softplus(u): exact where p_t rounds to 1.
    focal_terms = power_from_log(focal_gap - cross_entropy, gamma) * cross_entropy
    ldam = reduce_multiclass(ldam_terms, safe_target, valid, margins, reduction)
    focal = reduce_multiclass(
        focal_terms, safe_target, valid, margins, reduction, normalizer="count"
    )
    return ldam_weight * ldam + focal_weight * focal
