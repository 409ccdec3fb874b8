"""Per-element losses as closed-form functions of the target gap ``u`` (see ``_fused``).

Each head returns ``(ℓ, [∂ℓ/∂u_k], ∂ℓ/∂γ or None)`` on chunk-sized tensors, with
``CE = softplus(u) = −log p_t``, ``1 − p_t = σ(u)`` and ``p_t = σ(−u)``, all in log space.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Parts = tuple[torch.Tensor, list[torch.Tensor], "torch.Tensor | None"]


def _focal_parts(gap: torch.Tensor, gamma: torch.Tensor | float) -> Parts:
    # One softplus serves every log: log p_t = −softplus(u), log(1 − p_t) = u − softplus(u).
    cross_entropy = -F.logsigmoid(-gap)
    log_one_minus = gap - cross_entropy
    one_minus = log_one_minus.exp()
    if not isinstance(gamma, torch.Tensor) and gamma == 0:
        return cross_entropy, [one_minus], None
    modulator = torch.exp(gamma * log_one_minus)
    value = modulator * cross_entropy
    # d/du [σ(u)^γ softplus(u)] = σ(u)^γ (γ p_t softplus(u) + σ(u)); p_t = 1 − σ(u) is exact
    # where it matters (where σ(u) dominates the bracket, p_t's rounding does not show).
    slope = modulator * (gamma * (1 - one_minus) * cross_entropy + one_minus)
    return value, [slope], log_one_minus * value


def cross_entropy_head(gaps: list[torch.Tensor], gamma: torch.Tensor | float) -> Parts:
    """``ℓ = softplus(u)``."""
    return _focal_parts(gaps[0], 0.0)


def focal_head(gaps: list[torch.Tensor], gamma: torch.Tensor | float) -> Parts:
    """``ℓ = σ(u)^γ softplus(u)``, the softmax focal loss."""
    return _focal_parts(gaps[0], gamma)


def poly1_head(gaps: list[torch.Tensor], gamma: torch.Tensor | float, *, epsilon: float) -> Parts:
    """``ℓ = softplus(u) + ε σ(u)``."""
    gap = gaps[0]
    cross_entropy = -F.logsigmoid(-gap)
    one_minus = torch.sigmoid(gap)
    slope = one_minus * (1 + epsilon * torch.sigmoid(-gap))
    return cross_entropy + epsilon * one_minus, [slope], None


def lmf_head(
    gaps: list[torch.Tensor],
    gamma: torch.Tensor | float,
    *,
    ldam_weight: float,
    focal_weight: float,
    term_scales: list[torch.Tensor] | None = None,
) -> Parts:
    """``ℓ = λ_ldam softplus(u_ldam) + λ_focal σ(u_f)^γ softplus(u_f)`` (heads: LDAM, focal);
    ``term_scales`` multiply the two terms (each term's own normaliser, as the authors' code
    has it)."""
    if term_scales is not None:
        ldam_weight = ldam_weight * term_scales[0]  # type: ignore[assignment]
        focal_weight = focal_weight * term_scales[1]  # type: ignore[assignment]
    ldam, (ldam_slope,), _ = _focal_parts(gaps[0], 0.0)
    focal, (focal_slope,), focal_d_gamma = _focal_parts(gaps[1], gamma)
    value = ldam_weight * ldam + focal_weight * focal
    d_gamma = None if focal_d_gamma is None else focal_weight * focal_d_gamma
    return value, [ldam_weight * ldam_slope, focal_weight * focal_slope], d_gamma
