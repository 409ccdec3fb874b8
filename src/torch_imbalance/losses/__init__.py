"""Thin ``nn.Module`` forms of the losses: hyper-parameters, buffers and parameters."""

from torch_imbalance.losses.adaptive import AdaptiveClassWeights
from torch_imbalance.losses.dual_focal import DualFocalLoss
from torch_imbalance.losses.focal import FocalLoss
from torch_imbalance.losses.ldam import LDAMLoss
from torch_imbalance.losses.lmf import LMFLoss
from torch_imbalance.losses.priors import BalancedSoftmaxLoss, LogitAdjustedLoss, Poly1Loss

__all__ = [
    "AdaptiveClassWeights",
    "BalancedSoftmaxLoss",
    "DualFocalLoss",
    "FocalLoss",
    "LDAMLoss",
    "LMFLoss",
    "LogitAdjustedLoss",
    "Poly1Loss",
]
