"""Type aliases shared across the library: one home for each."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

#: How a loss reduces its per-element values.
Reduction = Literal["mean", "sum", "none"]
#: One label per item (softmax over classes) or a 0/1 row of labels (a sigmoid per label).
Task = Literal["multiclass", "multilabel"]
#: The training count of each class (images, or pixels for segmentation).
CountsLike = Sequence[float] | np.ndarray | torch.Tensor

__all__ = ["CountsLike", "Reduction", "Task"]
