"""The multi-label body: every entry ``(i, c)`` is one element with its own gap.

For 0/1 labels ``y`` the gap of logit ``z`` is ``u = −(2y − 1) z``: ``BCE(z, y) = softplus(u)``,
``1 − p_y = σ(u)``, ``p_y = σ(−u)``. Each multi-label loss is a law of its entries (in its
family file: ``*_entries(z, positive, ...) -> (ℓ, ∂ℓ/∂z, ∂ℓ/∂γ or None)``); this body weights,
masks and reduces them like ``F.binary_cross_entropy_with_logits`` (a mean over the entries not
ignored) and writes the gradient in the same loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from torch_imbalance._types import Reduction
from torch_imbalance.functional._compiled import ONE_LOOP, RECOMPUTE, in_logit_loop
from torch_imbalance.functional._counts import Normalisers
from torch_imbalance.functional._driver import Body, BodyOutput, run_body
from torch_imbalance.functional._gap import flagged

Entries = Callable[..., tuple[torch.Tensor, torch.Tensor, "torch.Tensor | None"]]


def multilabel_body(
    logits: torch.Tensor,
    target: torch.Tensor,
    factors: torch.Tensor | None,
    upstream: torch.Tensor | None,
    gamma: torch.Tensor,
    class_weight: torch.Tensor,
    *tensors: torch.Tensor,
    entries: Entries,
    settings: tuple[tuple[str, Any], ...],
    tensor_names: tuple[str, ...],
    learnable_gamma: bool,
    wants_gamma: bool,
    ignore_index: int | None,
    mean: bool,
    dtype: torch.dtype,
    compiled: bool,
) -> BodyOutput:
    """``(n, C, S)`` logits and labels. A mean's count is a reduction of the same loop: the
    gradient is written scaled by ``1/numel`` (``factors``: ``1/numel`` of the whole tensor,
    which a chunk does not know) and comes with the factor ``numel / count``."""
    law_settings = {**dict(settings), **dict(zip(tensor_names, tensors, strict=True))}
    if learnable_gamma:
        law_settings["gamma"] = gamma
    z = logits.to(dtype)
    valid = None if ignore_index is None else target != ignore_index
    positive = target == 1
    bad = (target != 0) & ~positive
    if valid is not None:
        positive = positive & valid
        bad = bad & valid
    bad = bad | ~torch.isfinite(z)
    # The class weights (ones where the caller gave none) are the anchor's null read: every
    # realised value then reads the (N, C, S) nest's column, so inductor runs one loop.
    column = class_weight.to(dtype).view(1, -1, 1)
    weight = column if valid is None else valid.to(dtype) * column
    anchor = in_logit_loop(column) if compiled else None
    log_upstream = -math.log(max(target.numel(), 1)) - class_weight.amax().clamp_min(1.0).log()
    value, slope, d_gamma = entries(
        z, positive, log_scale=log_upstream, anchor=anchor, **law_settings
    )
    inverse_numel = factors if factors is not None else 1.0 / max(target.numel(), 1)
    upstream_weight = weight if upstream is None else weight * upstream.to(dtype)
    multiplier = upstream_weight * inverse_numel if mean else upstream_weight
    grad = (slope * multiplier).to(logits.dtype)
    if not wants_gamma:
        d_gamma = None
    elif d_gamma is None:  # Dual Focal with α = 0: no term depends on γ
        d_gamma = torch.zeros_like(value)
    else:
        d_gamma = d_gamma * upstream_weight
        if mean and valid is None:
            d_gamma = d_gamma * inverse_numel
    values = anchor(flagged(value * weight, bad)) if anchor else flagged(value * weight, bad)
    count = scale = None
    if mean and valid is not None:
        # A float sum anchored like the loss's (an integer count went to a loop of its own).
        count = anchor(valid.to(dtype)) if anchor else valid.to(dtype)
    elif mean:
        scale = inverse_numel
    return BodyOutput(values, grad, d_gamma, scale, count)


def multilabel_loss(
    entries: Entries,
    input: torch.Tensor,
    target: torch.Tensor,
    gamma: torch.Tensor | float,
    reduction: Reduction,
    ignore_index: int | None,
    checks: Callable[[], None] | None,
    weight: torch.Tensor | None,
    dtype: torch.dtype,
    **settings: Any,
) -> torch.Tensor:
    """A multi-label loss from its ``entries`` law (``settings``: the law's keywords; tensors
    among them are passed to the compiled kernel as inputs, the rest compiled in)."""
    learnable = isinstance(gamma, torch.Tensor)
    tensors = {k: v for k, v in settings.items() if isinstance(v, torch.Tensor)}
    statics = {k: v for k, v in settings.items() if k not in tensors}
    if not learnable:
        statics["gamma"] = float(gamma)
    classes = input.shape[1]
    class_weight = (
        input.new_ones(classes, dtype=dtype) if weight is None else weight.to(input.device, dtype)
    )
    mean = reduction == "mean"
    body = Body(
        multilabel_body,
        (
            ("entries", entries),
            ("settings", tuple(sorted(statics.items()))),
            ("tensor_names", tuple(tensors)),
            ("learnable_gamma", learnable),
            ("wants_gamma", learnable and gamma.requires_grad),  # type: ignore[union-attr]
            ("ignore_index", ignore_index),
            ("mean", mean),
            ("dtype", dtype),
        ),
        tuple({**RECOMPUTE, **ONE_LOOP}.items()),
        normalisers=Normalisers(("numel",) if mean else ("sum",), classes, ignore_index, dtype),
    )
    return run_body(
        body,
        input,
        target,
        (None, None),
        gamma,
        (class_weight, *tensors.values()),
        reduction,
        checks,
        dtype,
        tuple(input.shape),
    )
