"""torch-imbalance: losses for class-imbalanced classification and segmentation.

The public face of the loss core: re-exports only. Functional forms live in
:mod:`torch_imbalance.functional`.
"""

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

__version__ = "0.1.0"

__all__ = [
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
