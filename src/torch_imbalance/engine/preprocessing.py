"""The input preprocessing a run's model expects: the normalisation (and resize interpolation)
its pretrained weights were trained with, from timm's pretrained configuration."""

from __future__ import annotations

import dataclasses

from torch_imbalance.engine.config import RunConfig
from torch_imbalance.models.pretrained import offline_architecture

#: What a model trained from scratch gets (and any model timm has no configuration for).
DEFAULT_MEAN, DEFAULT_STD, DEFAULT_INTERPOLATION = [0.5], [0.5], "bilinear"


def timm_name(config: RunConfig) -> str:
    """The timm architecture whose weights the run loads: the classifier, or the segmentation
    encoder (``tu-<name>`` is timm's ``<name>``); our offline aliases resolved
    (``efficientnet_lite0`` loads ``tf_efficientnet_lite0``'s weights)."""
    name = config.model if config.task == "classification" else config.encoder
    name = (name or "").removeprefix("tu-")
    return offline_architecture(name) or name


def pretrained_preprocessing(name: str) -> tuple[list[float], list[float], str] | None:
    """``(mean, std, interpolation)`` of timm's pretrained configuration of ``name``, or None
    when timm has none.

    Examples:
        >>> pretrained_preprocessing("resnet50")
        ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225], 'bicubic')
        >>> pretrained_preprocessing("tf_efficientnet_lite0")
        ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5], 'bicubic')
    """
    import timm

    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except Exception:  # not a timm name (timm raises on some, returns None on others)
        cfg = None
    if cfg is None or cfg.mean is None or cfg.std is None:
        return None
    interpolation = cfg.interpolation if cfg.interpolation in ("bilinear", "bicubic") else None
    return list(cfg.mean), list(cfg.std), interpolation or DEFAULT_INTERPOLATION


def with_model_preprocessing(config: RunConfig, legacy: bool = False) -> RunConfig:
    """``config`` with ``mean``, ``std`` and ``interpolation`` filled where unset: the
    pretrained weights' own (``--pretrained`` or ``--weights``), else 0.5 / 0.5 and bilinear.
    Recorded in the run's config and checkpoint, so evaluation and prediction preprocess alike.
    ``legacy``: a resumed run begun before they were recorded keeps what it trained with (the
    defaults)."""
    found = None
    if (config.pretrained or config.weights) and not legacy:
        found = pretrained_preprocessing(timm_name(config))
    mean, std, interpolation = found or (DEFAULT_MEAN, DEFAULT_STD, DEFAULT_INTERPOLATION)
    return dataclasses.replace(
        config,
        mean=config.mean if config.mean is not None else mean,
        std=config.std if config.std is not None else std,
        interpolation=config.interpolation or interpolation,
    )
