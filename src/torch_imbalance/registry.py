"""Build any loss of the library from its registry name (for configs and the command line)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from torch_imbalance._types import CountsLike
from torch_imbalance.losses import (
    BalancedSoftmaxLoss,
    DualFocalLoss,
    FocalLoss,
    LDAMLoss,
    LMFLoss,
    LogitAdjustedLoss,
    Poly1Loss,
)
from torch_imbalance.weights import (
    DeferredReweighting,
    effective_number_weights,
    inverse_frequency_weights,
)

Counts = CountsLike | None
Builder = Callable[[Counts, dict[str, Any]], nn.Module]


def _needs_counts(name: str, counts: Counts) -> Counts:
    if counts is None:
        raise ValueError(f"loss {name!r} needs class_counts (the training count of each class)")
    return counts


def _ce(counts: Counts, kw: dict[str, Any]) -> nn.Module:
    return FocalLoss(gamma=0.0, **kw)


def _weighted_ce(counts: Counts, kw: dict[str, Any]) -> nn.Module:
    power = kw.pop("power", 1.0)
    weight = inverse_frequency_weights(_needs_counts("weighted_ce", counts), power)
    return FocalLoss(gamma=0.0, weight=weight, **kw)


def _cb_ce(counts: Counts, kw: dict[str, Any]) -> nn.Module:
    weight = effective_number_weights(_needs_counts("cb_ce", counts), kw.pop("beta", 0.9999))
    return FocalLoss(gamma=0.0, weight=weight, **kw)


def _focal(counts: Counts, kw: dict[str, Any]) -> nn.Module:
    return FocalLoss(**kw)


def _cb_focal(counts: Counts, kw: dict[str, Any]) -> nn.Module:
    weight = effective_number_weights(_needs_counts("cb_focal", counts), kw.pop("beta", 0.9999))
    return FocalLoss(weight=weight, **kw)


def _ldam(counts: Counts, kw: dict[str, Any]) -> nn.Module:
    return LDAMLoss(_needs_counts("ldam", counts), **kw)


def _drw_schedule(name: str, kw: dict[str, Any]) -> dict[str, Any]:
    """Pop DRW's own settings from ``kw``; the wrapped loss's weights belong to DRW."""
    if "weight" in kw:
        raise ValueError(
            f"loss {name!r}: deferred re-weighting sets the class weights itself; "
            "do not pass weight"
        )
    schedule = {key: kw.pop(key) for key in ("start_epoch", "total_epochs", "beta") if key in kw}
    if "start_epoch" not in schedule and "total_epochs" not in schedule:
        raise ValueError(
            f"loss {name!r} needs start_epoch or total_epochs (DRW switches at "
            "80 % of the planned epochs by default)"
        )
    return schedule


def _ldam_drw(counts: Counts, kw: dict[str, Any]) -> nn.Module:
    counts = _needs_counts("ldam_drw", counts)
    schedule = _drw_schedule("ldam_drw", kw)
    return DeferredReweighting(LDAMLoss(counts, **kw), counts, **schedule)


def _lmf(counts: Counts, kw: dict[str, Any]) -> nn.Module:
    return LMFLoss(_needs_counts("lmf", counts), **kw)


def _lmf_official(counts: Counts, kw: dict[str, Any]) -> nn.Module:
    return LMFLoss.official(_needs_counts("lmf_official", counts), **kw)


def _lmf_cosine(counts: Counts, kw: dict[str, Any]) -> nn.Module:
    kw.setdefault("focal_scale", kw.get("scale", 30.0))
    return LMFLoss(_needs_counts("lmf_cosine", counts), **kw)


def _lmf_drw(counts: Counts, kw: dict[str, Any]) -> nn.Module:
    counts = _needs_counts("lmf_drw", counts)
    schedule = _drw_schedule("lmf_drw", kw)
    kw.setdefault("focal_scale", kw.get("scale", 30.0))
    return DeferredReweighting(LMFLoss(counts, **kw), counts, **schedule)


def _dual_focal(counts: Counts, kw: dict[str, Any]) -> nn.Module:
    if kw.get("class_weight") == "adaptive" and counts is not None:
        # The running frequencies start from the training counts, as in dual_focal_adaptive.
        kw.setdefault("class_counts", counts)
    return DualFocalLoss(**kw)


def _dual_focal_adaptive(counts: Counts, kw: dict[str, Any]) -> nn.Module:
    settings: dict[str, Any] = {"learnable_gamma": True, "class_weight": "adaptive"}
    if counts is not None:
        settings["class_counts"] = counts
    settings.update(kw)
    return DualFocalLoss(**settings)


def _balanced_softmax(counts: Counts, kw: dict[str, Any]) -> nn.Module:
    return BalancedSoftmaxLoss(_needs_counts("balanced_softmax", counts), **kw)


def _logit_adjusted(counts: Counts, kw: dict[str, Any]) -> nn.Module:
    return LogitAdjustedLoss(_needs_counts("logit_adjusted", counts), **kw)


def _poly1(counts: Counts, kw: dict[str, Any]) -> nn.Module:
    return Poly1Loss(**kw)


LOSSES: dict[str, Builder] = {
    "ce": _ce,
    "weighted_ce": _weighted_ce,
    "cb_ce": _cb_ce,
    "focal": _focal,
    "cb_focal": _cb_focal,
    "ldam": _ldam,
    "ldam_drw": _ldam_drw,
    "lmf": _lmf,
    "lmf_official": _lmf_official,
    "lmf_cosine": _lmf_cosine,
    "lmf_drw": _lmf_drw,
    "dual_focal": _dual_focal,
    "dual_focal_adaptive": _dual_focal_adaptive,
    "balanced_softmax": _balanced_softmax,
    "logit_adjusted": _logit_adjusted,
    "poly1": _poly1,
}


def available_losses() -> list[str]:
    """The registry names, in the spec's order.

    Example:
        >>> available_losses()[:4]
        ['ce', 'weighted_ce', 'cb_ce', 'focal']
    """
    return list(LOSSES)


def build_loss(name: str, class_counts: Counts = None, **overrides: Any) -> nn.Module:
    """Build a loss module from its registry name.

    Names: ``ce``, ``weighted_ce`` (inverse frequency; ``power`` override), ``cb_ce`` (effective
    number; ``beta``), ``focal``, ``cb_focal``, ``ldam``, ``ldam_drw`` (LDAM wrapped in
    :class:`DeferredReweighting`; needs ``start_epoch`` or ``total_epochs``), ``lmf``,
    ``lmf_official`` (the authors' code), ``lmf_cosine`` (LMF for a cosine head: the focal
    term at the same scale ``s`` as LDAM), ``lmf_drw`` (``lmf_cosine`` with deferred
    re-weighting; needs ``start_epoch`` or ``total_epochs``), ``dual_focal``,
    ``dual_focal_adaptive`` (learnable γ + adaptive class weights), ``balanced_softmax``,
    ``logit_adjusted``, ``poly1``.

    Args:
        name: a registry name.
        class_counts: training count per class; required by the count-based losses.
        **overrides: keyword arguments of the loss's constructor (``gamma``, ``reduction``, ...).

    Returns:
        The loss module. Modules with a ``set_epoch`` method (``ldam_drw``) expect the trainer to
        call it at the start of every epoch.

    Example:
        >>> import torch
        >>> loss = build_loss("lmf", class_counts=[900, 90, 10], gamma=2.0)
        >>> type(loss).__name__, loss.gamma
        ('LMFLoss', 2.0)
        >>> build_loss("ldam_drw", [900, 90, 10], total_epochs=100).start_epoch
        80
        >>> build_loss("lmfx")
        Traceback (most recent call last):
        ...
        ValueError: unknown loss 'lmfx'; available: ce, weighted_ce, cb_ce, focal, ...
    """
    builder = LOSSES.get(name)
    if builder is None:
        raise ValueError(f"unknown loss {name!r}; available: {', '.join(LOSSES)}")
    try:
        return builder(class_counts, dict(overrides))
    except TypeError as error:
        raise TypeError(f"invalid option for loss {name!r}: {error}") from error
