"""Functional forms of the losses: pure functions holding all of the logic.

Every function takes ``(input, target, ...)`` with logits ``(N, C, *)`` and follows the
conventions of ``torch.nn.functional.cross_entropy`` (see the README's conventions section).
"""

from torch_imbalance.functional.dual_focal import dual_focal_loss
from torch_imbalance.functional.focal import focal_loss
from torch_imbalance.functional.ldam import ldam_loss
from torch_imbalance.functional.lmf import lmf_loss
from torch_imbalance.functional.priors import (
    balanced_softmax_loss,
    logit_adjusted_loss,
    poly1_loss,
)

__all__ = [
    "balanced_softmax_loss",
    "dual_focal_loss",
    "focal_loss",
    "ldam_loss",
    "lmf_loss",
    "logit_adjusted_loss",
    "poly1_loss",
]
