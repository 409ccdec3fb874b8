"""LDAM: label-distribution-aware margin loss (Cao et al., NeurIPS 2019)."""

from __future__ import annotations

import torch

from torch_imbalance._checks import check_class_counts_match, check_range
from torch_imbalance._types import CountsLike, Reduction, Task
from torch_imbalance.functional._common import check_label_smoothing, prepare
from torch_imbalance.functional._gap import GapHead, gap_loss
from torch_imbalance.functional._math import Anchor, class_dim_view, signed_gap
from torch_imbalance.functional._multilabel import multilabel_loss
from torch_imbalance.functional.focal import cross_entropy_head, focal_law
from torch_imbalance.weights import ldam_margins


def resolve_margins(
    class_counts: CountsLike | None,
    margins: torch.Tensor | None,
    max_margin: float,
    input: torch.Tensor,
    dtype: torch.dtype,
) -> torch.Tensor:
    """The per-class margins ``Δ`` on the logits' device, from counts or given directly."""
    if (class_counts is None) == (margins is None):
        raise ValueError("pass exactly one of class_counts (to derive margins) or margins")
    if margins is None:
        assert class_counts is not None
        check_range("max_margin", max_margin, 0.0, low_inclusive=False)
        margins = ldam_margins(class_counts, max_margin, torch.float64)
    check_class_counts_match(
        margins, input, "class_counts" if class_counts is not None else "margins"
    )
    return margins.to(device=input.device, dtype=dtype)


def ldam_head(margins: torch.Tensor, scale: float) -> GapHead:
    """The LDAM logits ``s · (z − Δ_t e_t)`` as a target-gap transform."""
    return GapHead(scale=scale, shift=scale * margins)


def ldam_gap(
    z: torch.Tensor, positive: torch.Tensor, margins: torch.Tensor, scale: float
) -> torch.Tensor:
    """The multi-label LDAM gap ``u = −(2y − 1) s (z − Δ_c y)``."""
    shifted = torch.where(positive, z - class_dim_view(margins, z.ndim), z)
    return signed_gap(scale * shifted, positive)


def multilabel_ldam_entries(
    z: torch.Tensor,
    positive: torch.Tensor,
    *,
    gamma: torch.Tensor | float,
    margins: torch.Tensor,
    scale: float,
    log_scale: torch.Tensor | float,
    anchor: Anchor = None,
) -> tuple[torch.Tensor, torch.Tensor, None]:
    """``ℓ = BCE(s (z − Δ_c y), y) = softplus(u)`` per entry (``gamma`` unused); the slope
    ``∂ℓ/∂z = −(2y − 1) s σ(u)``."""
    value, (slope,), _ = focal_law(ldam_gap(z, positive, margins, scale), 0.0, log_scale, anchor)
    return value, torch.where(positive, -scale * slope, scale * slope), None


def ldam_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    class_counts: CountsLike | None = None,
    *,
    margins: torch.Tensor | None = None,
    max_margin: float = 0.5,
    scale: float = 30.0,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    task: Task = "multiclass",
    label_smoothing: float = 0.0,
    validate: bool = True,
) -> torch.Tensor:
    r"""Label-distribution-aware margin loss.

    Multi-class: :math:`\ell_i = w_{t_i}\,\mathrm{CE}(s\,(z_i - \Delta_{t_i} e_{t_i}), t_i)` with
    margins :math:`\Delta_j = m_{\max} (n_{\min} / n_j)^{1/4}`: the margin is subtracted from the
    target logit only, then every logit is scaled by ``s``.
    Multi-label (our extension): :math:`\ell_{ic} = w_c\,\mathrm{BCE}(s\,(z_{ic} - \Delta_c y_{ic}),
    y_{ic})`, with counts = positives per class.

    LDAM is designed for cosine logits in ``[-1, 1]`` (use :class:`~torch_imbalance.NormedLinear`);
    with a plain linear head ``s = 30`` inflates the logits, so lower ``scale`` there.

    Args:
        input: logits ``(N, C)`` or ``(N, C, *spatial)``.
        target: class indices ``(N, *spatial)`` or 0/1 labels of ``input``'s shape.
        class_counts: training count per class ``(C,)``; alternatively give ``margins``.
        margins: precomputed per-class margins ``(C,)``.
        max_margin: the largest margin (of the rarest class), ``> 0``.
        scale: logit scale ``s > 0``.
        weight: per-class weights ``(C,)`` (e.g. from deferred re-weighting).
        ignore_index: target value that contributes nothing.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"``.
        task: ``"multiclass"`` or ``"multilabel"``.
        label_smoothing: ``ε ∈ [0, 1]``: the target distribution ``(1 − ε)·onehot + ε/C``, as
            ``F.cross_entropy(..., label_smoothing=ε)`` (multiclass only).
        validate: check logits are finite and targets in range (on CUDA a device-side assert:
            no host sync; a failure says to rerun on the CPU for details).

    Returns:
        The reduced loss, or per element for ``reduction="none"``.

    Examples:
        >>> import torch
        >>> logits = torch.tensor([[0.9, 0.1, -0.3], [0.2, 0.4, 0.8]])
        >>> ldam_loss(logits, torch.tensor([0, 2]), class_counts=[100, 10, 1])
        tensor(1.5255)
    """
    check_range("scale", scale, 0.0, low_inclusive=False)
    check_label_smoothing(label_smoothing, task)
    dtype, target, checks = prepare(task, input, target, weight, ignore_index, reduction, validate)
    margins = resolve_margins(class_counts, margins, max_margin, input, dtype)
    if task == "multiclass":
        heads = (ldam_head(margins, scale),)
        return gap_loss(
            input, target, weight, ignore_index, heads, cross_entropy_head, dtype, reduction,
            checks=checks, label_smoothing=label_smoothing,
        )  # fmt: skip
    return multilabel_loss(
        multilabel_ldam_entries,
        input,
        target,
        0.0,
        reduction,
        ignore_index,
        checks,
        weight,
        dtype,
        margins=margins,
        scale=scale,
    )
