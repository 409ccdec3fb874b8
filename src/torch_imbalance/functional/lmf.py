"""LMF: Large Margin aware Focal loss (Sadi, Chowdhury et al., arXiv 2212.12741)."""

from __future__ import annotations

import functools
import math
from typing import Literal

import torch

from torch_imbalance._checks import check_range
from torch_imbalance._types import CountsLike, Reduction, Task
from torch_imbalance.functional._common import (
    GammaLike,
    check_gamma,
    check_label_smoothing,
    prepare,
)
from torch_imbalance.functional._gap import GapHead, gap_loss
from torch_imbalance.functional._math import Anchor, LogScales, Parts, Smoothing, signed_gap
from torch_imbalance.functional._multilabel import multilabel_loss
from torch_imbalance.functional.focal import focal_law
from torch_imbalance.functional.ldam import ldam_gap, ldam_head, resolve_margins

Variant = Literal["paper", "official"]


def lmf_head(
    gaps: list[torch.Tensor],
    gamma: torch.Tensor | float,
    *,
    ldam_weight: float,
    focal_weight: float,
    term_scales: list[torch.Tensor] | None = None,
    log_scales: LogScales,
    anchor: Anchor = None,
    smoothing: list[Smoothing] | None = None,
) -> Parts:
    r"""LMF of one element from its two gaps (heads: LDAM's ``s (z − Δ_t e_t)``, focal's
    ``s_f z``): the paper's eq. (3), a weighted sum of the two laws,

    .. math::
        \ell = \lambda_{ldam}\,\mathrm{softplus}(u_{ldam})
              + \lambda_{focal}\,\sigma(u_f)^\gamma\,\mathrm{softplus}(u_f),

    with the slopes of :func:`~torch_imbalance.functional.focal.focal_law` per gap.
    ``term_scales`` multiply the two terms (each term's own normaliser, as the authors' code
    has it); ``smoothing``: each term's label smoothing (slopes ``[∂ℓ/∂u_k] + [∂ℓ/∂E_k]``)."""
    assert log_scales is not None
    ldam_log, focal_log = log_scales[0], log_scales[1]
    # The λs scale the slopes downstream too (``log_scales`` bounds the normalisers).
    ldam_log = ldam_log + _log(ldam_weight)
    focal_log = focal_log + _log(focal_weight)
    if term_scales is not None:
        ldam_weight = ldam_weight * term_scales[0]  # type: ignore[assignment]
        focal_weight = focal_weight * term_scales[1]  # type: ignore[assignment]
    ldam_smoothing, focal_smoothing = (None, None) if smoothing is None else smoothing
    ldam, ldam_slopes, _ = focal_law(gaps[0], 0.0, ldam_log, anchor, ldam_smoothing)
    focal, focal_slopes, focal_d_gamma = focal_law(
        gaps[1], gamma, focal_log, anchor, focal_smoothing
    )
    value = ldam_weight * ldam + focal_weight * focal
    d_gamma = None if focal_d_gamma is None else focal_weight * focal_d_gamma
    # [∂/∂u_ldam, ∂/∂u_focal] then, smoothed, [∂/∂E_ldam, ∂/∂E_focal].
    slopes = [
        weight * slope
        for pair in zip(ldam_slopes, focal_slopes, strict=True)
        for weight, slope in zip((ldam_weight, focal_weight), pair, strict=True)
    ]
    return value, slopes, d_gamma


def _log(value: float) -> float:
    return math.log(value) if value > 0 else -math.inf


def multilabel_lmf_entries(
    z: torch.Tensor,
    positive: torch.Tensor,
    *,
    gamma: torch.Tensor | float,
    margins: torch.Tensor,
    scale: float,
    focal_scale: float,
    ldam_weight: float,
    focal_weight: float,
    log_scale: torch.Tensor | float,
    anchor: Anchor = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``ℓ = λ_ldam BCE(s (z − Δ_c y), y) + λ_focal σ(u_f)^γ softplus(u_f)`` per entry, ``u_f``
    the gap of ``s_f z`` (:func:`lmf_head` on the two gaps)."""
    gaps = [ldam_gap(z, positive, margins, scale), signed_gap(focal_scale * z, positive)]
    value, (ldam_slope, focal_slope), d_gamma = lmf_head(
        gaps,
        gamma,
        ldam_weight=ldam_weight,
        focal_weight=focal_weight,
        log_scales=[log_scale, log_scale],
        anchor=anchor,
    )
    slope = scale * ldam_slope + focal_scale * focal_slope
    return value, torch.where(positive, -slope, slope), d_gamma


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
    label_smoothing: float = 0.0,
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
        label_smoothing: ``ε ∈ [0, 1]``: the target distribution ``(1 − ε)·onehot + ε/C``, as
            ``F.cross_entropy(..., label_smoothing=ε)`` (multiclass only).
        validate: check logits are finite and targets in range (on CUDA a device-side assert:
            no host sync; a failure says to rerun on the CPU for details).

    Returns:
        The reduced loss, or per element for ``reduction="none"``.

    Examples:
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
    check_label_smoothing(label_smoothing, task)
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
        return multilabel_loss(
            multilabel_lmf_entries,
            input,
            target,
            gamma,
            reduction,
            ignore_index,
            checks,
            weight,
            dtype,
            margins=margins,
            scale=scale,
            focal_scale=focal_scale,
            ldam_weight=ldam_weight,
            focal_weight=focal_weight,
        )
    if variant == "official" and weight is not None:
        raise ValueError(
            "variant='official' weights both terms by the LDAM margins; weight must be None"
        )
    # One pass over the logits for both terms: LDAM sees s·(z − Δ_t e_t), focal sees s_f·z.
    heads = (ldam_head(margins, scale), GapHead(scale=float(focal_scale)))
    law = functools.partial(lmf_head, ldam_weight=ldam_weight, focal_weight=focal_weight)
    if variant == "paper":
        return gap_loss(
            input, target, weight, ignore_index, heads, law, dtype, reduction, gamma, checks,
            label_smoothing=label_smoothing,
        )  # fmt: skip
    # The authors' code: both terms weighted by the margins, LDAM divided by their sum, focal by
    # the number of labelled elements.
    return gap_loss(
        input, target, margins, ignore_index, heads, law, dtype, reduction, gamma, checks,
        normalisers=("weight", "count"), label_smoothing=label_smoothing,
    )  # fmt: skip
