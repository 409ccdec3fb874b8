"""torch-imbalance: losses for class-imbalanced classification and segmentation.

The public face of the loss core: re-exports only, imported on first use (so that
``torch-imbalance --help`` does not wait for torch). Functional forms live in
:mod:`torch_imbalance.functional`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_EXPORTS = {
    "AdaptiveClassWeights": "torch_imbalance.losses",
    "BalancedSoftmaxLoss": "torch_imbalance.losses",
    "BoundedGamma": "torch_imbalance.losses._base",
    "DeferredReweighting": "torch_imbalance.weights",
    "DualFocalLoss": "torch_imbalance.losses",
    "FocalLoss": "torch_imbalance.losses",
    "LDAMLoss": "torch_imbalance.losses",
    "LMFLoss": "torch_imbalance.losses",
    "LogitAdjustedLoss": "torch_imbalance.losses",
    "NormedLinear": "torch_imbalance.heads",
    "Poly1Loss": "torch_imbalance.losses",
    "available_losses": "torch_imbalance.registry",
    "build_loss": "torch_imbalance.registry",
    "effective_number_weights": "torch_imbalance.weights",
    "get_compile_mode": "torch_imbalance.functional._compiled",
    "inverse_frequency_weights": "torch_imbalance.weights",
    "ldam_margins": "torch_imbalance.weights",
    "median_frequency_weights": "torch_imbalance.weights",
    "set_compile_mode": "torch_imbalance.functional._compiled",
}

__all__ = [  # a literal: documentation tools read it without importing the package
    "AdaptiveClassWeights",
    "BalancedSoftmaxLoss",
    "BoundedGamma",
    "DeferredReweighting",
    "DualFocalLoss",
    "FocalLoss",
    "LDAMLoss",
    "LMFLoss",
    "LogitAdjustedLoss",
    "NormedLinear",
    "Poly1Loss",
    "available_losses",
    "build_loss",
    "effective_number_weights",
    "functional",
    "get_compile_mode",
    "inverse_frequency_weights",
    "ldam_margins",
    "median_frequency_weights",
    "set_compile_mode",
]


def __getattr__(name: str) -> Any:
    if name == "functional":
        return importlib.import_module("torch_imbalance.functional")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'torch_imbalance' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # what type checkers and IDEs see
    from torch_imbalance import functional
    from torch_imbalance.functional._compiled import get_compile_mode, set_compile_mode
    from torch_imbalance.heads import NormedLinear
    from torch_imbalance.losses import (
        AdaptiveClassWeights,
        BalancedSoftmaxLoss,
        DualFocalLoss,
        FocalLoss,
        LDAMLoss,
        LMFLoss,
        LogitAdjustedLoss,
        Poly1Loss,
    )
    from torch_imbalance.losses._base import BoundedGamma
    from torch_imbalance.registry import available_losses, build_loss
    from torch_imbalance.weights import (
        DeferredReweighting,
        effective_number_weights,
        inverse_frequency_weights,
        ldam_margins,
        median_frequency_weights,
    )
