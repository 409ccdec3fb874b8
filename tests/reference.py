"""Independent float64 references, written from the formulas in the loss spec.

Deliberately naive: explicit softmax / sigmoid probabilities, one-hot targets, ``pow`` and
``log`` as written in the papers. Accurate for moderate logits (|z| up to ~30), which is where
the tests compare values; saturated logits are tested separately against closed forms.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def to64(x: torch.Tensor) -> torch.Tensor:
    return x.detach().to(torch.float64).requires_grad_(x.requires_grad)


def margins(counts, max_margin=0.5) -> torch.Tensor:
    n = torch.as_tensor(counts, dtype=torch.float64)
    return max_margin * (n.min() / n) ** 0.25


def one_hot(target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N, *) -> (N, C, *) float64 one-hot, ignored positions (negative or >= C) all zero."""
    safe = target.clamp(0, num_classes - 1)
    hot = F.one_hot(safe, num_classes).to(torch.float64)
    hot = hot * ((target >= 0) & (target < num_classes)).unsqueeze(-1)
    return hot.movedim(-1, 1)


def reduce_mc(elem, target, weight, ignore_index, reduction, normalizer="weight"):
    """Weighted multiclass reduction, as F.cross_entropy, but 0 for an all-ignored batch."""
    valid = (target != ignore_index).to(torch.float64)
    safe = torch.where(target == ignore_index, 0, target)
    w = weight.to(torch.float64)[safe] if weight is not None else torch.ones_like(valid)
    w = w * valid
    values = elem * w
    if reduction == "none":
        return values
    if reduction == "sum":
        return values.sum()
    denom = w.sum() if normalizer == "weight" else valid.sum()
    return values.sum() / denom if denom > 0 else values.sum() * 0


def reduce_ml(elem, target, weight, ignore_index, reduction):
    valid = (
        (target != ignore_index).to(torch.float64)
        if ignore_index is not None
        else torch.ones_like(elem)
    )
    if weight is not None:
        elem = elem * weight.to(torch.float64).view(1, -1, *([1] * (elem.ndim - 2)))
    values = elem * valid
    if reduction == "none":
        return values
    if reduction == "sum":
        return values.sum()
    return values.sum() / valid.sum() if valid.sum() > 0 else values.sum() * 0


def _softmax_parts(z, target):
    z = z.to(torch.float64)
    p = torch.softmax(z, dim=1)
    y = one_hot(target, z.shape[1])
    pt = (p * y).sum(1)
    return p, y, pt


# ----------------------------------------------------------------------------------- focal
def focal(
    z,
    target,
    gamma=2.0,
    alpha=None,
    weight=None,
    ignore_index=-100,
    reduction="mean",
    task="multiclass",
):
    if task == "multiclass":
        _, _, pt = _softmax_parts(z, torch.where(target == ignore_index, 0, target))
        elem = -((1 - pt) ** gamma) * torch.log(pt)
        return reduce_mc(elem, target, weight, ignore_index, reduction)
    z = z.to(torch.float64)
    y = (target == 1).to(torch.float64)
    p = torch.sigmoid(z)
    p_y = p * y + (1 - p) * (1 - y)
    bce = -(y * F.logsigmoid(z) + (1 - y) * F.logsigmoid(-z))
    elem = (1 - p_y) ** gamma * bce
    if alpha is not None:
        a = torch.as_tensor(alpha, dtype=torch.float64)
        if a.ndim == 1:
            a = a.view(1, -1, *([1] * (z.ndim - 2)))
        elem = (a * y + (1 - a) * (1 - y)) * elem
    return reduce_ml(elem, target, weight, ignore_index, reduction)


# ------------------------------------------------------------------------------------ LDAM
def ldam(
    z,
    target,
    counts,
    max_margin=0.5,
    scale=30.0,
    weight=None,
    ignore_index=-100,
    reduction="mean",
    task="multiclass",
):
    delta = margins(counts, max_margin)
    z = z.to(torch.float64)
    view = (1, -1, *([1] * (z.ndim - 2)))
    if task == "multiclass":
        safe = torch.where(target == ignore_index, 0, target)
        y = one_hot(safe, z.shape[1])
        shifted = scale * (z - delta.view(view) * y)
        elem = -(torch.log_softmax(shifted, dim=1) * y).sum(1)
        return reduce_mc(elem, target, weight, ignore_index, reduction)
    y = (target == 1).to(torch.float64)
    shifted = scale * (z - delta.view(view) * y)
    elem = -(y * F.logsigmoid(shifted) + (1 - y) * F.logsigmoid(-shifted))
    return reduce_ml(elem, target, weight, ignore_index, reduction)


# ------------------------------------------------------------------------------------- LMF
def lmf(
    z,
    target,
    counts,
    gamma=1.5,
    max_margin=0.5,
    scale=30.0,
    ldam_weight=1.0,
    focal_weight=1.0,
    weight=None,
    ignore_index=-100,
    reduction="mean",
    task="multiclass",
    focal_scale=1.0,
):
    """Sadi et al., eq. 3: ``λ_ldam · LDAM + λ_focal · focal`` on the same logits; the focal
    term sees ``focal_scale · z`` (1 in the paper; ``s`` for the cosine-head variants)."""
    z = z.to(torch.float64)
    return ldam_weight * ldam(
        z, target, counts, max_margin, scale, weight, ignore_index, reduction, task
    ) + focal_weight * focal(
        focal_scale * z, target, gamma, None, weight, ignore_index, reduction, task
    )


def lmf_official(
    z, target, counts, gamma=1.5, max_margin=0.5, scale=30.0, ldam_weight=1.5, focal_weight=1.0
):
    """The authors' code, term by term (github.com/Adnan-Sadi/LMFLOSS, commit 0bcc59b):

    * margins: ``utils.py: get_mlist`` — ``m = 1 / n^{1/4}``, rescaled so that ``max m = max_m``;
      ``train.py`` passes them as ``cls_num_list`` (the margins) AND as ``weight`` / ``alpha``;
    * LDAM: ``loss_functions.py: LDAMLoss.forward`` — subtract ``m[t]`` from the target logit,
      then ``F.cross_entropy(s * output, target, weight=m)`` (weighted mean);
    * focal: ``loss_functions.py: focal_loss`` loads ``adeelh/pytorch-multi-class-focal-loss``
      (``focal_loss.py: FocalLoss.forward``): ``log_p = log_softmax(x)``,
      ``ce = NLLLoss(weight=alpha, reduction='none')(log_p, y)``, ``pt = exp(log_p[rows, y])``,
      ``loss = ((1 - pt) ** gamma * ce).mean()``;
    * LMF: ``loss_functions.py: LMFLoss.forward`` — ``alpha * ldam + beta * focal`` with
      ``config.ini``'s ``alpha = 1.5``, ``beta = 1.0``.
    """
    z = z.to(torch.float64)
    n = torch.as_tensor(counts, dtype=torch.float64)
    m_list = 1.0 / torch.sqrt(torch.sqrt(n))
    m_list = m_list * (max_margin / m_list.max())
    # LDAMLoss.forward
    index = torch.zeros_like(z, dtype=torch.bool).scatter_(1, target.view(-1, 1), True)
    batch_m = (m_list[None, :] @ index.to(torch.float64).T).view(-1, 1)
    output = torch.where(index, z - batch_m, z)
    loss_ldam = F.cross_entropy(scale * output, target, weight=m_list)
    # FocalLoss.forward (adeelh), alpha = m_list
    log_p = F.log_softmax(z, dim=-1)
    ce = F.nll_loss(log_p, target, weight=m_list, reduction="none")
    log_pt = log_p[torch.arange(len(z)), target]
    pt = log_pt.exp()
    loss_focal = ((1 - pt) ** gamma * ce).mean()
    return ldam_weight * loss_ldam + focal_weight * loss_focal


# ------------------------------------------------------------------------------ Dual Focal
def dual_focal(
    z,
    target,
    alpha=1.0,
    beta=1.0,
    gamma=1.0,
    rho=1.0,
    weight=None,
    ignore_index=-100,
    reduction="mean",
    task="multiclass",
):
    # ρ − p is written (ρ − 1) + (1 − p), with 1 − p_c = Σ_{j≠c} p_j (softmax) or σ(−z)
    # (sigmoid): the same number, without the cancellation of 1 − p when p is within 1e-11 of
    # 1, which left the float64 reference itself 1e-8 off on confident logits (hypothesis found
    # one at scale 6). The spec's numerics note asks for the same of the implementation.
    z = z.to(torch.float64)
    if task == "multiclass":
        p = torch.softmax(z, dim=1)
        classes = z.shape[1]
        not_same = 1.0 - torch.eye(classes, dtype=torch.float64)
        others = torch.einsum("nj...,cj->nc...", p, not_same)  # Σ_{j≠c} p_j
        y = one_hot(torch.where(target == ignore_index, 0, target), classes)
        terms = (
            -y * torch.log(p)
            - beta * (1 - y) * torch.log((rho - 1) + others)
            + alpha * (y - p).abs() ** gamma
        )
        return reduce_mc(terms.sum(1), target, weight, ignore_index, reduction)
    p = torch.sigmoid(z)
    y = (target == 1).to(torch.float64)
    terms = (
        -y * torch.log(p)
        - beta * (1 - y) * torch.log((rho - 1) + torch.sigmoid(-z))
        + alpha * (y - p).abs() ** gamma
    )
    return reduce_ml(terms, target, weight, ignore_index, reduction)


# ---------------------------------------------------------------------------------- priors
def _ce_elem(z, target):
    y = one_hot(target, z.shape[1])
    return -(torch.log_softmax(z.to(torch.float64), dim=1) * y).sum(1)


def _offset(z, offset):
    return z.to(torch.float64) + offset.view(1, -1, *([1] * (z.ndim - 2)))


def balanced_softmax(z, target, counts, weight=None, ignore_index=-100, reduction="mean"):
    n = torch.as_tensor(counts, dtype=torch.float64)
    safe = torch.where(target == ignore_index, 0, target)
    return reduce_mc(
        _ce_elem(_offset(z, torch.log(n)), safe), target, weight, ignore_index, reduction
    )


def logit_adjusted(z, target, counts, tau=1.0, weight=None, ignore_index=-100, reduction="mean"):
    n = torch.as_tensor(counts, dtype=torch.float64)
    safe = torch.where(target == ignore_index, 0, target)
    elem = _ce_elem(_offset(z, tau * torch.log(n / n.sum())), safe)
    return reduce_mc(elem, target, weight, ignore_index, reduction)


def poly1(z, target, epsilon=1.0, weight=None, ignore_index=-100, reduction="mean"):
    safe = torch.where(target == ignore_index, 0, target)
    _, _, pt = _softmax_parts(z, safe)
    elem = -torch.log(pt) + epsilon * (1 - pt)
    return reduce_mc(elem, target, weight, ignore_index, reduction)


# ------------------------------------------------------------------------- label smoothing
def smoothed_cross_entropy(logits, target, epsilon, weight=None, ignore_index=-100):
    """Per element, label smoothing as ``torch.nn.CrossEntropyLoss`` documents it: the target
    distribution ``q = (1 − ε)·onehot(t) + ε/C``, ``ℓ = −Σ_j w_j q_j log p_j`` over the softmax
    of ``logits`` (0 where ignored). Written from the documentation, not from our law."""
    z = logits.to(torch.float64)
    classes = z.shape[1]
    safe = torch.where(target == ignore_index, 0, target)
    q = (1 - epsilon) * one_hot(safe, classes) + epsilon / classes
    w = torch.ones(classes, dtype=torch.float64) if weight is None else weight.to(torch.float64)
    elem = -(w.view(1, -1, *([1] * (z.ndim - 2))) * q * torch.log_softmax(z, dim=1)).sum(1)
    return elem * (target != ignore_index)


def reduce_smoothed(elem, target, weight, ignore_index, reduction, normalizer="weight"):
    """``F.cross_entropy``'s reduction of smoothed elements (the class weights are already in
    them): a mean divides by ``Σ_i w_{t_i}`` over the labelled elements (or their count)."""
    if reduction == "none":
        return elem
    if reduction == "sum":
        return elem.sum()
    valid = target != ignore_index
    safe = torch.where(valid, target, 0)
    if normalizer == "count" or weight is None:
        denominator = valid.sum().to(torch.float64)
    else:
        denominator = (weight.to(torch.float64)[safe] * valid).sum()
    return elem.sum() / denominator if denominator > 0 else elem.sum() * 0


def smoothed_focal(
    z, target, gamma, epsilon, weight=None, ignore_index=-100, reduction="mean", normalizer="weight"
):
    """Focal loss with label smoothing as keras-cv settled it (issue keras-team/keras-cv#672,
    PRs #680/#1086, ``keras_cv/losses/focal.py: FocalLoss.call``): ``p_t`` (and α) from the
    hard labels, the smoothing inside the cross-entropy: ``(1 − p_t)^γ · CE_ε``."""
    safe = torch.where(target == ignore_index, 0, target)
    _, _, pt = _softmax_parts(z, safe)
    elem = (1 - pt) ** gamma * smoothed_cross_entropy(z, target, epsilon, weight, ignore_index)
    return reduce_smoothed(elem, target, weight, ignore_index, reduction, normalizer)


def smoothed_ldam(
    z, target, counts, epsilon, max_margin=0.5, scale=30.0, weight=None, ignore_index=-100,
    reduction="mean",
):  # fmt: skip
    """The LDAM authors' ``LDAMLoss.forward`` (kaidic/LDAM-DRW, ``losses.py``) ends in
    ``F.cross_entropy(s * output, target, weight)``: smoothing is that call's
    ``label_smoothing``."""
    delta = margins(counts, max_margin)
    z = z.to(torch.float64)
    safe = torch.where(target == ignore_index, 0, target)
    shifted = scale * (z - delta.view(1, -1, *([1] * (z.ndim - 2))) * one_hot(safe, z.shape[1]))
    elem = smoothed_cross_entropy(shifted, target, epsilon, weight, ignore_index)
    return reduce_smoothed(elem, target, weight, ignore_index, reduction)


def smoothed_lmf(
    z, target, counts, epsilon, gamma=1.5, max_margin=0.5, scale=30.0, weight=None,
    ignore_index=-100, reduction="mean",
):  # fmt: skip
    """The paper's LMF (eq. 3, λ = 1) with each term smoothed: LDAM's cross-entropy and the
    focal term's, as above."""
    return smoothed_ldam(
        z, target, counts, epsilon, max_margin, scale, weight, ignore_index, reduction
    ) + smoothed_focal(z, target, gamma, epsilon, weight, ignore_index, reduction)


def smoothed_lmf_official(z, target, counts, epsilon, gamma=1.5, ldam_weight=1.5, reduction="mean"):
    """The authors' LMF (see :func:`lmf_official`: margins as the class weights, LDAM a
    weighted mean, focal a mean over the elements) with each cross-entropy smoothed."""
    delta = margins(counts, 0.5)
    ldam = smoothed_ldam(z, target, counts, epsilon, weight=delta, reduction=reduction)
    focal = smoothed_focal(
        z, target, gamma, epsilon, weight=delta, reduction=reduction, normalizer="count"
    )
    return ldam_weight * ldam + focal


def smoothed_prior(z, target, offset, epsilon, weight=None, ignore_index=-100, reduction="mean"):
    """``F.cross_entropy(z + offset, t, weight, label_smoothing=ε)``, written out."""
    elem = smoothed_cross_entropy(_offset(z, offset), target, epsilon, weight, ignore_index)
    return reduce_smoothed(elem, target, weight, ignore_index, reduction)
