r"""Dual Focal Loss (Hossain, Betts, Paplinski; Neurocomputing 2021), for segmentation.

Not to be confused with "Dual Focal Loss for Calibration" (Tao et al., ICML 2023), a
different loss with the same name.

The multi-class law (:func:`dual_focal_body`), per element, with ``p = softmax(z)``, target ``t``
and ``j*`` the arg-max of the other classes (the only one whose probability can exceed 1/2):

.. math::
    \ell = \mathrm{softplus}(u) - \beta \sum_{c \ne t} \log(\rho - p_c)
           + \alpha \Big[\sigma(u)^\gamma + \sum_{c \ne t} p_c^\gamma\Big],
    \quad u = \operatorname{logsumexp}_{c \ne t} z_c - z_t,\ 1 - p_t = \sigma(u).

``log(1 − p_{j*})`` is taken from a log-sum-exp over the classes other than ``j*``, so the
false-class term is exact however confident the wrong prediction. The gradient
(``∂p_c/∂z_j = p_c(δ_cj − p_j)``) is assembled per class from

* CE: ``p_j`` for ``j ≠ t``, ``−σ(u)`` at ``t``;
* α-term: ``αγ[1_{j≠t} p_j^γ − p_j P_γ + σ(u)^γ p_t (q_j for j ≠ t, −1 at t)]`` with
  ``P_γ = Σ_{c≠t} p_c^γ`` and ``q_j = p_j / (1 − p_t)``;
* β-term: ``−β ∂B/∂z_j`` with ``∂B/∂z_j = −1_{j≠t} r_j + p_j R + p_j p_{j*}/(ρ − p_{j*})`` for
  ``j ∉ {t, j*}``, ``r_c = p_c/(ρ − p_c)`` and ``R = Σ_{c∉{t,j*}} r_c``; at ``j*``
  ``−p_{j*}(1 − p_{j*})/(ρ − p_{j*}) + p_{j*} R``; at ``t`` ``p_t R + p_t p_{j*}/(ρ − p_{j*})``.

Every ratio that could overflow is formed from logarithms whose difference is ``≤ 0``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from torch_imbalance._checks import check_range
from torch_imbalance._types import Reduction, Task
from torch_imbalance.functional._classwise import (
    UNROLL_CLASSES,
    ClassValues,
    assemble,
    class_max,
    class_prod,
    class_sum,
    first_class,
    first_max,
    is_class,
    per_class,
    pick,
    split_classes,
)
from torch_imbalance.functional._common import GammaLike, check_gamma, prepare
from torch_imbalance.functional._compiled import ONE_LOOP, RECOMPUTE, in_logit_loop
from torch_imbalance.functional._counts import Normalisers
from torch_imbalance.functional._driver import Body, BodyOutput, run_body
from torch_imbalance.functional._gap import flagged, labelled
from torch_imbalance.functional._math import (
    Anchor,
    anchored,
    cutoff,
    exp_floor,
    log1p_of_small,
    logaddexp_floored,
    power,
    scalar,
    sigmoid_parts,
    signed_gap,
)
from torch_imbalance.functional._multilabel import multilabel_loss

#: From this many logits on, the whole-form Dual Focal kernel recomputes its per-class
#: quantities in the gradient's loop instead of keeping them in full-size buffers: vol-4 (8 Mi
#: logits) 152 -> 72 MiB, ×0.75 of ``F.cross_entropy``'s instead of ×1.58, at the same time; on
#: seg-4 (4 Mi) it cost 25–40 % more time for 8 MiB less
#: (``benchmarks/bench_losses.py --only dual_focal``).
RECOMPUTE_ELEMENTS = 1 << 23

#: From this many logits on, with at most :data:`UNROLL_CLASSES_LIMIT` classes, the Dual
#: Focal kernel runs on unrolled classes in one loop over the elements (seg-19 fixed γ: 1.0–1.2×
#: ``F.cross_entropy``'s time whole, 0.44× unrolled; learnable γ 1.7–2.2× -> 0.55×). Its build
#: takes 15 s for 4 classes, 21–24 s for 19 and 35 s for 32 on this 2-core machine (paid once
#: per configuration and cached on disk): worth it for training-size inputs, not below.
UNROLL_ELEMENTS = 1 << 20


def dual_focal_body(
    logits: torch.Tensor,
    target: torch.Tensor,
    factors: torch.Tensor | None,
    upstream: torch.Tensor | None,
    gamma: torch.Tensor,
    class_weight: torch.Tensor | None,
    *,
    alpha: float,
    beta: float,
    rho: float,
    fixed_gamma: float | None,
    wants_gamma: bool,
    dtype: torch.dtype,
    ignore_index: int,
    mean: bool,
    unrolled: bool,
    compiled: bool,
) -> BodyOutput:
    """The multi-class law (see the module docstring) with its gradient, on ``(n, C, S)``
    logits and raw ``(n, 1, S)`` targets. Per-element quantities are ``(n, 1, S)``, per-class
    ones class values (unrolled on the compiled path for few classes); ``factors[0]``: a
    mean's ``1 / Σ w``."""
    floor = exp_floor(dtype)
    z = split_classes(logits.to(dtype), unrolled and compiled)
    classes = logits.shape[1]
    safe, weight, bad = labelled(z, target, class_weight, ignore_index, dtype, classes)
    scale = factors[0] if mean and factors is not None else None
    g = weight if scale is None else weight * scale
    if upstream is not None:
        g = g * upstream.to(dtype)
    is_t = is_class(safe, z)
    z_t = pick(z, is_t, safe)
    anchor: Any = in_logit_loop(first_class(z)) if compiled else _identity
    top, is_star = first_max(z.masked_fill(is_t, float("-inf")))  # type: ignore[arg-type]
    outside = per_class(lambda t, s: ~(t | s), is_t, is_star)  # the classes c ∉ {t, j*}
    # One exp per logit, centred on the largest of the classes ∉ {t, j*} (exact for the terms
    # that matter however far apart the logits are); with 2 classes there are none.
    rest_top = class_max(per_class(lambda o, c: torch.where(o, c, float("-inf")), outside, z))
    has_rest = torch.isfinite(rest_top)
    rest_top = torch.where(has_rest, rest_top, top)
    e = per_class(
        lambda o, c: torch.where(o, (c - rest_top).clamp_min(floor).exp(), 0.0), outside, z
    )
    rest_sum = class_sum(e)  # >= 1 with a rest, 0 without
    # Per element, every log-space quantity from few exponentials (the per-element functions,
    # not the per-class ones, were most of this kernel's cost at 4 classes): the gap's
    # e^{−|u|} and its log1p serve softplus(u), log σ(±u) and σ(±u); lse = z_t + softplus(u).
    lse_others = anchor(top + log1p_of_small(rest_sum * (rest_top - top).clamp_min(floor).exp()))
    gap = lse_others - z_t  # u: CE = softplus(u), 1 − p_t = σ(u)
    softplus_gap, log_sig, sig, p_t = sigmoid_parts(gap, anchor)  # log σ(u), σ(u), σ(−u)
    log_p_t = -softplus_gap  # log σ(−u)
    lse = z_t + softplus_gap
    # log(1 − p*) = logaddexp(z_t, log Σ_rest e^{z_c}) − lse, exact however close p* is to 1.
    rest_lse = anchor(torch.where(has_rest, rest_top + rest_sum.log(), z_t + floor))
    log1m_p_star = anchor(logaddexp_floored(z_t, rest_lse) - lse)
    log_p_star = top - lse
    p_star = anchor(log_p_star.exp())
    p = per_class(anchor, e.mul(anchor((rest_top - lse).exp())))  # p_c = e_c e^{rest_top − lse}
    # w_c = p_c / (1 − p*) = e_c / (e^{z_t − rest_top} + Σ e): a per-element reciprocal.
    tiny = torch.finfo(dtype).tiny
    w = e.mul(1.0 / (anchor((z_t - rest_top).exp()) + rest_sum).clamp_min(tiny))
    value = softplus_gap
    ratio_sum = torch.zeros_like(gap)
    log_rho_star = log1m_p_star
    if beta != 0:
        # Σ_c log(1 − p_c/ρ) over c ∉ {t, j*} as the log of a product: one log per element,
        # not one per class. The product is at least 1/4 (every such p_c ≤ 1/2 and Σ p_c ≤ 1),
        # so its log is well-conditioned; rounding 1 − p_c costs C·ε/2 absolute at most.
        if rho == 1.0:
            log_false = anchor(class_prod(per_class(lambda q: 1.0 - q, p)).log()) + log1m_p_star
        else:
            log_rho_star = anchor(logaddexp_floored(log1m_p_star, math.log(rho - 1)))  # log(ρ − p*)
            logs = anchor(class_prod(per_class(lambda q: 1.0 - q / rho, p)).log())
            log_false = (logs + (classes - 2) * math.log(rho)) + log_rho_star
        value = value - beta * log_false
        ratio_sum = anchor(class_sum(per_class(lambda q: q / (rho - q), p)))
    use_alpha = alpha != 0 and fixed_gamma != 0.0
    g_gamma = gamma if fixed_gamma is None else fixed_gamma
    power = power_sum = power_star = sig_gamma = None
    # σ(u)^{γ−1}, capped below overflow (large only for γ < 1 and σ(u) → 0): it gives σ(u)^γ and
    # the focal terms of the gradient without an exp of their own; the cap changes only terms
    # below exp(−cap·γ/(1−γ)) (each is at most σ(u)^γ, and at most σ(u)·e^{cap} where capped).
    focal_power = None  # 1 for γ = 1
    if fixed_gamma == 2.0:
        focal_power = sig
    elif fixed_gamma != 1.0 and use_alpha:
        focal_power = anchor(((g_gamma - 1) * log_sig).clamp_max(-floor - 7.0).exp())
    if alpha != 0 and fixed_gamma == 0.0:
        value = value + alpha * classes
    elif alpha != 0:
        if fixed_gamma == 1.0:  # the paper's default: powers are the probabilities themselves
            power, power_star, sig_gamma = p, p_star, sig
        elif fixed_gamma == 2.0:
            power = per_class(lambda q: q * q, p)
            power_star, sig_gamma = p_star * p_star, sig * sig
        else:
            power = per_class(
                lambda o, c: torch.where(o, ((c - lse) * g_gamma).exp(), 0.0), outside, z
            )
            power_star = anchor(torch.exp(g_gamma * log_p_star))
            assert focal_power is not None
            sig_gamma = sig * focal_power
        power_sum = anchor(class_sum(power) + power_star)
        value = value + alpha * (sig_gamma + power_sum)
    # The gradient, per class c ∉ {t, j*}: G = w_c·(k_p (1 − p*) + k_w) + αγ p_c^γ + β r_c.
    one_m_p_star = anchor(log1m_p_star.exp())
    k_p = torch.ones_like(gap)
    k_w = torch.zeros_like(gap)
    grad: ClassValues | None = None
    at_target = -sig
    at_star = p_star
    if beta != 0:
        grad = per_class(lambda q: beta * (q / (rho - q)), p)
        k_p = k_p - beta * ratio_sum
        # ρ = 1: log(ρ − p*) is log(1 − p*), the ratio 1.
        star_coef = p_star if rho == 1.0 else p_star * anchor((log1m_p_star - log_rho_star).exp())
        k_w = k_w - beta * star_coef
        at_target_ratio = anchor((log_p_t - log_rho_star).exp())
        at_target = at_target - beta * (p_t * ratio_sum + p_star * at_target_ratio)
        at_star = at_star - beta * (p_star * ratio_sum - star_coef)
    if use_alpha:
        assert power is not None and power_sum is not None and power_star is not None
        grad = _sum_of(grad, power.mul(g_gamma * alpha))
        k_p = k_p - alpha * g_gamma * power_sum
        # σ(u)^γ p_t q_c = p_c σ(u)^{γ−1}: a per-element factor on p_c (no exp per class);
        # p_c ≤ σ(u) bounds the product by σ(u)^γ.
        focal_factor = (alpha * g_gamma) * p_t
        star_focal = p_t * p_star  # p_t p* σ(u)^{γ−1}
        if focal_power is not None:
            focal_factor = focal_factor * focal_power
            star_focal = star_focal * focal_power
        grad = _sum_of(grad, p.mul(focal_factor))
        assert power_sum is not None and sig_gamma is not None and power_star is not None
        at_target = at_target - alpha * g_gamma * (p_t * power_sum + sig_gamma * p_t)
        at_star = at_star + alpha * g_gamma * (power_star - p_star * power_sum + star_focal)
    grad = _sum_of(grad, w.mul(k_p * one_m_p_star + k_w))
    gradient = per_class(
        lambda t, s, c: torch.where(t, at_target, torch.where(s, at_star, c)) * g,
        is_t,
        is_star,
        grad,
    )
    d_gamma = None
    if wants_gamma:
        if use_alpha:
            assert power is not None and sig_gamma is not None and power_star is not None
            log_power = class_sum(
                per_class(lambda o, q, c: torch.where(o, q * (c - lse), 0.0), outside, power, z)
            )
            per_element = sig_gamma * log_sig + log_power + power_star * log_p_star
            d_gamma = anchor(alpha * per_element * g)
        else:
            d_gamma = torch.zeros_like(gap)
    values = anchor(flagged(value * weight, bad))
    return BodyOutput(values, assemble(gradient).to(logits.dtype), d_gamma, scale, None)


def _identity(value: torch.Tensor) -> torch.Tensor:
    return value


def _sum_of(total: ClassValues | None, term: ClassValues) -> ClassValues:
    return term if total is None else total.add(term)  # type: ignore[arg-type]  # either form


def multilabel_dual_focal_entries(
    z: torch.Tensor,
    positive: torch.Tensor,
    *,
    gamma: torch.Tensor | float,
    alpha: float,
    beta: float,
    rho: float,
    log_scale: torch.Tensor | float,
    anchor: Anchor = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``ℓ = −y log p − β (1 − y) log(ρ − p) + α |y − p|^γ`` with ``p = σ(z)``: in the gap,
    ``softplus(u)`` for a positive, ``−β log(ρ − 1 + σ(−u))`` for a negative, plus
    ``α σ(u)^γ``; slopes ``σ(u)``, ``β σ(u) σ(−u) / (ρ − 1 + σ(−u))`` and ``αγ σ(u)^γ σ(−u)``."""
    gap = cutoff(signed_gap(z, positive), 0.0, log_scale)
    softplus, log_sig, sig, p_y = sigmoid_parts(gap, anchor)
    if rho == 1.0:  # −log(1 − p) of a negative is softplus(u) too
        true_weight = torch.where(positive, 1.0, scalar(beta, z))
        value, slope = true_weight * softplus, true_weight * sig
    else:
        shifted = (rho - 1.0) + p_y  # ρ − p of a negative, ≥ ρ − 1 > 0
        value = torch.where(positive, softplus, -beta * anchored(shifted.log(), anchor))
        slope = sig * torch.where(positive, 1.0, beta * p_y / shifted)
    d_gamma = None
    if alpha != 0:
        if not isinstance(gamma, torch.Tensor) and gamma == 0:
            value = value + alpha
        else:
            modulator = anchored(power(sig, log_sig, gamma), anchor)  # |y − p|^γ = σ(u)^γ
            value = value + alpha * modulator
            slope = slope + (alpha * gamma) * modulator * p_y
            d_gamma = alpha * modulator * log_sig
    return value, torch.where(positive, -slope, slope), d_gamma


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
    batch_counts: torch.Tensor | None = None,
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
        validate: check logits are finite and targets in range (on CUDA a device-side assert:
            no host sync; a failure says to rerun on the CPU for details).
        batch_counts: multiclass: the labels of ``target`` per class ``(C,)`` where the caller
            has counted them already (adaptive class weights do), so that a mean's divisor
            needs no second pass over the labels.

    Returns:
        The reduced loss, or per element for ``reduction="none"``.

    Examples:
        >>> import torch
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
        >>> dual_focal_loss(logits, torch.tensor([0, 1]))
        tensor(4.0096)
    """
    check_dual_focal_args(alpha, beta, gamma, rho)
    dtype, target, checks = prepare(task, input, target, weight, ignore_index, reduction, validate)
    if task == "multilabel":
        return multilabel_loss(
            multilabel_dual_focal_entries,
            input,
            target,
            gamma,
            reduction,
            ignore_index,
            checks,
            weight,
            dtype,
            alpha=float(alpha),
            beta=float(beta),
            rho=float(rho),
        )
    classes = input.shape[1]
    if batch_counts is not None and tuple(batch_counts.shape) != (classes,):
        raise ValueError(
            f"batch_counts must have shape ({classes},) (one count per class of input), got "
            f"{tuple(batch_counts.shape)}"
        )
    class_weight = None if weight is None else weight.to(device=input.device, dtype=dtype)
    mean = reduction == "mean"
    normalisers = ("weight",) if mean else ("sum",)
    # The form of the class axis, when compiled: unrolled into one loop for training-size
    # inputs with few classes, else whole (recomputing per-class values from RECOMPUTE_ELEMENTS).
    elements = input.numel()
    unrolled = classes <= UNROLL_CLASSES and elements >= UNROLL_ELEMENTS
    recompute = not unrolled and elements >= RECOMPUTE_ELEMENTS
    options = ONE_LOOP if unrolled else RECOMPUTE if recompute else {}
    settings = {
        "alpha": float(alpha),
        "beta": float(beta),
        "rho": float(rho),
        "fixed_gamma": None if isinstance(gamma, torch.Tensor) else float(gamma),
        "wants_gamma": isinstance(gamma, torch.Tensor) and gamma.requires_grad,
        "dtype": dtype,
        "ignore_index": int(ignore_index),
        "mean": mean,
        "unrolled": unrolled,
    }
    body = Body(
        dual_focal_body, tuple(settings.items()), tuple(options.items()),
        classes if unrolled else None, Normalisers(normalisers, classes, int(ignore_index), dtype),
    )  # fmt: skip
    return run_body(
        body,
        input,
        target.unsqueeze(1),
        (class_weight, batch_counts),
        gamma,
        (class_weight,),
        reduction,
        checks,
        dtype,
        tuple(target.shape),
    )
