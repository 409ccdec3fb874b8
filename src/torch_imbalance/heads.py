"""Classifier heads."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class NormedLinear(nn.Module):
    r"""Cosine classifier head: :math:`z_j = \langle x / \|x\|, W_j / \|W_j\| \rangle \in [-1, 1]`.

    The head LDAM is designed for (no bias); the loss's ``scale`` then sets the logit range.

    Args:
        in_features: size of each input feature vector.
        out_features: number of classes.

    Shape:
        - Input: ``(N, in_features)``.
        - Output: ``(N, out_features)``, values in ``[-1, 1]``.

    Examples:
        >>> import torch
        >>> head = NormedLinear(8, 3)
        >>> logits = head(torch.randn(4, 8))
        >>> logits.shape, bool(logits.abs().max() <= 1)
        (torch.Size([4, 3]), True)
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError(
                f"in_features and out_features must be >= 1, got {in_features} and {out_features}"
            )
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if input.shape[-1] != self.in_features:
            raise ValueError(
                f"NormedLinear expects inputs with {self.in_features} features in the last "
                f"dimension, got shape {tuple(input.shape)}"
            )
        return F.linear(F.normalize(input, dim=-1), F.normalize(self.weight, dim=-1))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"
