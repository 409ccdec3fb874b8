"""Build any loss of the library from its registry name (for configs and the command line)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
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


@dataclass(frozen=True)
class LossEntry:
    """One registry entry: how to build the loss, and what it needs.

    Attributes:
        build: ``build(counts, options) -> nn.Module``; ``options`` is the user's overrides
            (a fresh dict the builder may pop from).
        summary: one line for listings and the docs.
        needs_counts: the loss uses the training class counts (checked before ``build``).
        head: the classifier head it is made for: ``"cosine"`` for margin losses on normalised
            logits (LDAM's scale ``s`` assumes them), ``"linear"`` otherwise.
        smoothing: why the loss has no ``label_smoothing`` (None: it has one, torch's).
    """

    build: Callable[[Counts, dict[str, Any]], nn.Module]
    summary: str
    needs_counts: bool = False
    head: str = "linear"
    smoothing: str | None = None


#: ``build(counts, options) -> nn.Module``.
Builder = Callable[[Counts, dict[str, Any]], nn.Module]


def _given(counts: Counts) -> CountsLike:
    """The class counts of a loss that needs them (:func:`build_loss` checked they were
    given)."""
    assert counts is not None
    return counts


def _class_weighted(
    scheme: Callable[..., torch.Tensor], option: str, default: float, **fixed: Any
) -> Builder:
    """:class:`FocalLoss` (``fixed``: ``gamma=0`` for cross-entropy) with class weights from
    ``scheme(counts, option)``."""

    def build(counts: Counts, kw: dict[str, Any]) -> nn.Module:
        weight = scheme(counts, kw.pop(option, default))
        return FocalLoss(weight=weight, **fixed, **kw)

    return build


def _deferred(loss: Callable[..., nn.Module], same_scale: bool = False) -> Builder:
    """``loss`` wrapped in :class:`DeferredReweighting`, which owns the class weights."""

    def build(counts: Counts, kw: dict[str, Any]) -> nn.Module:
        if "weight" in kw:
            raise ValueError(
                "deferred re-weighting sets the class weights itself; do not pass weight"
            )
        schedule = {k: kw.pop(k) for k in ("start_epoch", "total_epochs", "beta") if k in kw}
        if "start_epoch" not in schedule and "total_epochs" not in schedule:
            raise ValueError(
                "needs start_epoch or total_epochs (DRW switches at 80 % of the planned epochs "
                "by default)"
            )
        if same_scale:
            kw.setdefault("focal_scale", kw.get("scale", 30.0))
        return DeferredReweighting(loss(_given(counts), **kw), _given(counts), **schedule)

    return build


def _lmf_same_scale(counts: Counts, kw: dict[str, Any]) -> nn.Module:
    kw.setdefault("focal_scale", kw.get("scale", 30.0))
    return LMFLoss(_given(counts), **kw)


def _dual_focal(counts: Counts, kw: dict[str, Any]) -> nn.Module:
    if kw.get("class_weight") == "adaptive" and counts is not None:
        # The running frequencies start from the training counts, as in dual_focal_adaptive.
        kw.setdefault("class_counts", counts)
    return DualFocalLoss(**kw)


def _dual_focal_adaptive(counts: Counts, kw: dict[str, Any]) -> nn.Module:
    settings: dict[str, Any] = {"learnable_gamma": True, "class_weight": "adaptive"}
    if counts is not None:
        settings["class_counts"] = counts
    return DualFocalLoss(**{**settings, **kw})


_DUAL_FOCAL_SMOOTHING = (
    "its terms score the true and the false classes of the hard target separately"
)

#: Every loss by registry name, in the spec's order.
LOSSES: dict[str, LossEntry] = {
    "ce": LossEntry(lambda c, kw: FocalLoss(gamma=0.0, **kw), "cross-entropy"),
    "weighted_ce": LossEntry(
        _class_weighted(inverse_frequency_weights, "power", 1.0, gamma=0.0),
        "cross-entropy with inverse-frequency weights (option power)",
        needs_counts=True,
    ),
    "cb_ce": LossEntry(
        _class_weighted(effective_number_weights, "beta", 0.9999, gamma=0.0),
        "cross-entropy with class-balanced (effective number) weights (option beta)",
        needs_counts=True,
    ),
    "focal": LossEntry(lambda c, kw: FocalLoss(**kw), "focal loss"),
    "cb_focal": LossEntry(
        _class_weighted(effective_number_weights, "beta", 0.9999),
        "focal loss with class-balanced weights (option beta)",
        needs_counts=True,
    ),
    "ldam": LossEntry(
        lambda c, kw: LDAMLoss(_given(c), **kw), "LDAM", needs_counts=True, head="cosine"
    ),
    "ldam_drw": LossEntry(
        _deferred(LDAMLoss),
        "LDAM with deferred re-weighting (start_epoch or total_epochs)",
        needs_counts=True,
        head="cosine",
    ),
    "lmf": LossEntry(
        lambda c, kw: LMFLoss(_given(c), **kw), "LMF (the paper's)", needs_counts=True
    ),
    "lmf_official": LossEntry(
        lambda c, kw: LMFLoss.official(_given(c), **kw),
        "LMF as the authors' code",
        needs_counts=True,
    ),
    "lmf_cosine": LossEntry(
        _lmf_same_scale,
        "LMF for a cosine head: the focal term at the LDAM scale s",
        needs_counts=True,
        head="cosine",
    ),
    "lmf_drw": LossEntry(
        _deferred(LMFLoss, same_scale=True),
        "lmf_cosine with deferred re-weighting (start_epoch or total_epochs)",
        needs_counts=True,
        head="cosine",
    ),
    "dual_focal": LossEntry(_dual_focal, "Dual Focal loss", smoothing=_DUAL_FOCAL_SMOOTHING),
    "dual_focal_adaptive": LossEntry(
        _dual_focal_adaptive,
        "Dual Focal with learnable γ and adaptive class weights",
        smoothing=_DUAL_FOCAL_SMOOTHING,
    ),
    "balanced_softmax": LossEntry(
        lambda c, kw: BalancedSoftmaxLoss(_given(c), **kw), "balanced softmax", needs_counts=True
    ),
    "logit_adjusted": LossEntry(
        lambda c, kw: LogitAdjustedLoss(_given(c), **kw), "logit-adjusted loss", needs_counts=True
    ),
    "poly1": LossEntry(
        lambda c, kw: Poly1Loss(**kw),
        "Poly-1 cross-entropy",
        smoothing="its polynomial term 1 − p_t is defined on the hard target",
    ),
}


def available_losses() -> list[str]:
    """The registry names, in the spec's order.

    Examples:
        >>> available_losses()[:4]
        ['ce', 'weighted_ce', 'cb_ce', 'focal']
    """
    return list(LOSSES)


def smoothing_losses() -> list[str]:
    """The registry names that take ``label_smoothing`` (torch's, in each cross-entropy).

    Examples:
        >>> "lmf" in smoothing_losses(), "dual_focal" in smoothing_losses()
        (True, False)
    """
    return [name for name, entry in LOSSES.items() if entry.smoothing is None]


def build_loss(name: str, class_counts: Counts = None, **overrides: Any) -> nn.Module:
    """Build a loss module from its registry name.

    The names and what each builds are the entries of :data:`LOSSES` (``summary`` of each).

    Args:
        name: a registry name.
        class_counts: training count per class; required by the count-based losses.
        **overrides: keyword arguments of the loss's constructor (``gamma``, ``reduction``, ...).

    Returns:
        The loss module. Modules with a ``set_epoch`` method (``ldam_drw``) expect the trainer to
        call it at the start of every epoch.

    Examples:
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
    entry = LOSSES.get(name)
    if entry is None:
        raise ValueError(f"unknown loss {name!r}; available: {', '.join(LOSSES)}")
    if entry.needs_counts and class_counts is None:
        raise ValueError(f"loss {name!r} needs class_counts (the training count of each class)")
    if entry.smoothing is not None and "label_smoothing" in overrides:
        if overrides.pop("label_smoothing"):
            raise ValueError(
                f"loss {name!r} does not define label smoothing ({entry.smoothing}); "
                f"it is defined for: {', '.join(smoothing_losses())}"
            )
    try:
        return entry.build(class_counts, dict(overrides))
    except TypeError as error:
        raise TypeError(f"invalid option for loss {name!r}: {error}") from error
    except ValueError as error:
        if name in str(error):
            raise
        raise ValueError(f"loss {name!r}: {error}") from error
