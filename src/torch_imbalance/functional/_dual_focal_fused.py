r"""Fused multi-class Dual Focal loss: one chunked pass forward, a closed-form backward.

Per element, with ``p = softmax(z)``, target ``t`` and ``j*`` the arg-max of the other classes
(the only one whose probability can exceed 1/2):

.. math::
    \ell = \mathrm{softplus}(u) - \beta \sum_{c \ne t} \log(\rho - p_c)
           + \alpha \Big[\sigma(u)^\gamma + \sum_{c \ne t} p_c^\gamma\Big],
    \quad u = \operatorname{logsumexp}_{c \ne t} z_c - z_t,\ 1 - p_t = \sigma(u).

``log(1 − p_{j*})`` is taken from a log-sum-exp over the classes other than ``j*``, so the
false-class term is exact however confident the wrong prediction. The gradient
(``∂p_c/∂z_j = p_c(δ_cj − p_j)``) is assembled per class from

* CE: ``p_j`` for ``j ≠ t``, ``−σ(u)`` at ``t``;
* α-term: ``αγ[1_{j≠t} p_j^γ − p_j P_γ + σ(u)^γ p_t (q_j for j ≠ t, −1 at t)]`` with
  ``P_γ = Σ_{c≠t} p_c^γ`` and ``q_j = p_j / (1 − p_t)``;
* β-term: ``−β ∂B/∂z_j`` with ``∂B/∂z_j = −1_{j≠t} r_j + p_j R + p_j p_{j*}/(ρ − p_{j*})`` for
  ``j ∉ {t, j*}``, ``r_c = p_c/(ρ − p_c)`` and ``R = Σ_{c∉{t,j*}} r_c``; at ``j*``
  ``−p_{j*}(1 − p_{j*})/(ρ − p_{j*}) + p_{j*} R``; at ``t`` ``p_t R + p_t p_{j*}/(ρ − p_{j*})``.

Every ratio that could overflow is formed from logarithms whose difference is ``≤ 0``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from torch_imbalance._reduce import class_dim_view
from torch_imbalance.functional._common import GammaLike, log_prob_complement, power_from_log
from torch_imbalance.functional._fused import _as_2d, _as_3d, _chunk_slices
from torch_imbalance.functional._heads import exp_floor

#: Sums of exp(z − max) below this are recomputed around their own maximum.
_RESCALE_BELOW = 1e-30


def _gamma_float(gamma: float | torch.Tensor) -> float | None:
    return None if isinstance(gamma, torch.Tensor) else float(gamma)


def _power(base: torch.Tensor, gamma: float | torch.Tensor) -> torch.Tensor:
    """``base ** γ`` with cheap exact paths for γ = 1 and γ = 2 (``base ≥ 0``)."""
    fixed = _gamma_float(gamma)
    if fixed == 1.0:
        return base
    if fixed == 2.0:
        return base * base
    return base.pow(gamma)


def log_rho_minus_p(log_one_minus_p: torch.Tensor, rho: float) -> torch.Tensor:
    """``log(ρ − p) = log((ρ − 1) + (1 − p))``, exact for every ``ρ ≥ 1``."""
    if rho == 1.0:
        return log_one_minus_p
    return torch.logaddexp(log_one_minus_p, log_one_minus_p.new_tensor(math.log(rho - 1.0)))


def multiclass_dual_focal_terms(
    logits: torch.Tensor,
    safe_target: torch.Tensor,
    alpha: float,
    beta: float,
    gamma: GammaLike,
    rho: float,
) -> torch.Tensor:
    """Unweighted multi-class Dual Focal loss per element ``(N, *)`` (softmax, one-hot ``y``)."""
    log_p = F.log_softmax(logits, dim=1)
    log_one_minus_p = log_prob_complement(logits, log_p)
    classes = torch.arange(logits.shape[1], device=logits.device)
    is_target = class_dim_view(classes, logits.ndim) == safe_target.unsqueeze(1)
    loss = -log_p.gather(1, safe_target.unsqueeze(1)).squeeze(1)
    if beta != 0:
        false_class_term = torch.where(is_target, 0.0, log_rho_minus_p(log_one_minus_p, rho))
        loss = loss - beta * false_class_term.sum(1)
    if alpha != 0:
        # |y_c − p_c| is 1 − p_t at the target and p_c elsewhere.
        log_distance = torch.where(is_target, log_one_minus_p, log_p)
        loss = loss + alpha * power_from_log(log_distance, gamma).sum(1)
    return loss


class _DualFocal(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        logits: torch.Tensor,
        target: torch.Tensor,
        gamma: float | torch.Tensor,
        alpha: float,
        beta: float,
        rho: float,
        dtype: torch.dtype,
    ) -> torch.Tensor:
        z = _as_3d(logits)
        t = _as_2d(target)
        batch, classes, spatial = z.shape
        gamma_t = gamma.detach().to(dtype) if isinstance(gamma, torch.Tensor) else gamma
        # Per element: lse, u, max of the others, log(1 − p_{j*}), log(ρ − p_{j*}), R.
        stats = torch.empty((6, batch, spatial), dtype=dtype, device=z.device)
        star = torch.empty((batch, spatial), dtype=torch.long, device=z.device)
        loss = torch.empty((batch, spatial), dtype=dtype, device=z.device)
        log_rho = math.log(rho)
        for rows, cols in _chunk_slices(batch, classes, spatial):
            index = t[rows, cols].unsqueeze(1)
            y = z[rows, :, cols].to(dtype=dtype, copy=True)
            z_t = y.gather(1, index)
            y.scatter_(1, index, float("-inf"))
            top, j_star = y.max(1, keepdim=True)
            shifted = y.sub_(top)  # z − max of the others; −inf at t
            e = shifted.exp()
            lse_others = top + e.sum(1, keepdim=True).log()
            lse = torch.logaddexp(lse_others, z_t)
            gap = lse_others - z_t
            e.scatter_(1, j_star, 0.0)
            rest_sum = e.sum(1, keepdim=True)  # classes other than t and j*, relative to j*
            lse_rest = top + rest_sum.log()
            if bool((rest_sum < _RESCALE_BELOW).any()):
                # The rest lies far below j* (its sum under- or nearly underflows): re-centre it on
                # its own maximum so that log(1 − p_{j*}) stays exact.
                shifted.scatter_(1, j_star, float("-inf"))
                rest_top = shifted.amax(1, keepdim=True)
                rest_top = torch.where(torch.isfinite(rest_top), rest_top, 0.0)
                rest_lse = (shifted - rest_top).exp().sum(1, keepdim=True).log()
                lse_rest = top + rest_top + rest_lse
            log1m_p_star = torch.logaddexp(z_t, lse_rest) - lse
            p_star = (top - lse).exp()
            p = e.mul_(p_star)  # p_c for c ∉ {t, j*}; 0 at t and j*
            value = -F.logsigmoid(-gap)  # cross-entropy, softplus(u)
            ratio_sum = torch.zeros_like(gap)
            if beta != 0:
                if rho == 1.0:
                    # Π(1 − p_c) over c ∉ {t, j*} lies in [1/4, 1] (each p_c ≤ 1/2, Σ p_c ≤ 1):
                    # one log per element instead of one per class.
                    log_false = torch.log(torch.prod(1 - p, 1, keepdim=True)) + log1m_p_star
                    log_rho_star = log1m_p_star
                else:
                    log_false = torch.log(rho - p).sum(1, keepdim=True) - 2 * log_rho
                    log_rho_star = torch.logaddexp(
                        log1m_p_star, torch.full_like(gap, math.log(rho - 1))
                    )
                    log_false = log_false + log_rho_star
                value = value - beta * log_false
                ratio_sum = (p / (rho - p)).sum(1, keepdim=True)
            else:
                log_rho_star = log1m_p_star
            power_sum = torch.zeros_like(gap)
            if alpha != 0:
                if _gamma_float(gamma) == 0.0:
                    value = value + alpha * classes
                else:
                    if _gamma_float(gamma) in (1.0, 2.0):
                        power = _power(p, gamma_t)
                    else:  # exp(γ log p) is several times faster than a general pow
                        power = (shifted + (top - lse)).mul_(gamma_t).exp_()
                        power.scatter_(1, j_star, 0.0)  # 0 at t already (shifted = −inf)
                    power_sum = power.sum(1, keepdim=True) + torch.exp(gamma_t * (top - lse))
                    value = value + alpha * (torch.exp(gamma_t * F.logsigmoid(gap)) + power_sum)
            loss[rows, cols] = value.squeeze(1)
            for k, stat in enumerate((lse, gap, top, log1m_p_star, log_rho_star, ratio_sum)):
                stats[k, rows, cols] = stat.squeeze(1)
            star[rows, cols] = j_star.squeeze(1)
        ctx.save_for_backward(logits, target, stats, star)
        ctx.gamma = gamma
        ctx.settings = (alpha, beta, rho, dtype)
        return loss.view(target.shape)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss: torch.Tensor):  # type: ignore[override]
        logits, target, stats, star = ctx.saved_tensors
        gamma = ctx.gamma
        alpha, beta, rho, dtype = ctx.settings
        z = _as_3d(logits)
        t = _as_2d(target)
        g_all = grad_loss.reshape(t.shape).to(dtype)
        batch, classes, spatial = z.shape
        floor = exp_floor(dtype)
        gamma_t = gamma.detach().to(dtype) if isinstance(gamma, torch.Tensor) else gamma
        fixed_gamma = _gamma_float(gamma)
        # The value of a learnable γ picks the cheaper exact branch (one host read per call).
        gamma_value = float(gamma.detach()) if isinstance(gamma, torch.Tensor) else gamma
        use_alpha = alpha != 0 and fixed_gamma != 0.0
        want_gamma = isinstance(gamma, torch.Tensor) and gamma.requires_grad
        grad = torch.empty(z.shape, dtype=logits.dtype, device=logits.device)
        grad_gamma = torch.zeros((), dtype=dtype, device=z.device) if want_gamma else None
        for rows, cols in _chunk_slices(batch, classes, spatial):
            index = t[rows, cols].unsqueeze(1)
            j_star = star[rows, cols].unsqueeze(1)
            lse, gap, top, log1m_p_star, log_rho_star, ratio_sum = (
                s[rows, cols].unsqueeze(1) for s in stats
            )
            g = g_all[rows, cols].unsqueeze(1)
            y = z[rows, :, cols].to(dtype=dtype, copy=True)
            log_p = y - lse  # log p_c for every class
            # w_c = p_c / (1 − p_{j*}) ≤ 1 for c ∉ {t, j*}: one exp with a per-pixel shift.
            w = (log_p - log1m_p_star).scatter_(1, index, float("-inf"))
            w.scatter_(1, j_star, float("-inf")).clamp_min_(floor).exp_()
            w.scatter_(1, index, 0.0).scatter_(1, j_star, 0.0)
            one_m_p_star = log1m_p_star.exp()
            p = w * one_m_p_star
            log_p_star = top - lse
            p_star = log_p_star.exp()
            log_sig = F.logsigmoid(gap)  # log(1 − p_t)
            sig = log_sig.exp()
            p_t = torch.sigmoid(-gap)
            log_p_t = F.logsigmoid(-gap)

            # G = w·K + αγ p^γ + β r on c ∉ {t, j*}; t and j* are set afterwards.
            k_p = torch.ones_like(gap)  # coefficient of p_c
            k_w = torch.zeros_like(gap)  # coefficient of w_c
            grad_chunk = torch.zeros_like(w)
            if beta != 0:
                ratio = p / (rho - p)
                grad_chunk.add_(ratio, alpha=beta)
                k_p = k_p - beta * ratio_sum
                # p_c p_{j*}/(ρ − p_{j*}) = w_c · p_{j*} (1 − p_{j*})/(ρ − p_{j*})
                star_coef = p_star * (log1m_p_star - log_rho_star).exp()
                k_w = k_w - beta * star_coef
            if use_alpha:
                if fixed_gamma in (1.0, 2.0):
                    power = _power(p, gamma_t)
                else:  # exp(γ log p), zero at t and j*
                    power = (log_p * gamma_t).exp_().scatter_(1, index, 0.0)
                    power.scatter_(1, j_star, 0.0)
                power_star = torch.exp(gamma_t * log_p_star)
                power_sum = power.sum(1, keepdim=True) + power_star
                sig_gamma = torch.exp(gamma_t * log_sig)
                grad_chunk.add_(gamma_t * alpha * power)
                k_p = k_p - alpha * gamma_t * power_sum
                if gamma_value >= 1.0:
                    # σ(u)^γ p_t q_c = p_t σ(u)^{γ−1} p_c, with σ(u)^{γ−1} ≤ 1.
                    k_p = k_p + alpha * gamma_t * p_t * torch.exp((gamma_t - 1) * log_sig)
                    focal_extra = None
                else:
                    # exp(log p_c + (γ−1) log σ(u)) ≤ σ(u)^γ for c ≠ t: its own exp pass.
                    shifted = (log_p + (gamma_t - 1) * log_sig).clamp_min_(floor).exp_()
                    focal_extra = shifted.scatter_(1, index, 0.0).mul_(alpha * gamma_t * p_t)
                    grad_chunk.add_(focal_extra)
            grad_chunk.add_(w * (k_p * one_m_p_star + k_w))

            # The target and j* entries, from per-pixel quantities.
            at_target = -sig
            at_star = p_star.clone()
            if beta != 0:
                # ∂B/∂z_t = p_t R + p_t p*/(ρ − p*);  ∂B/∂z_j* = −p* (1 − p*)/(ρ − p*) + p* R
                at_target = at_target - beta * (
                    p_t * ratio_sum + p_star * (log_p_t - log_rho_star).exp()
                )
                at_star = at_star - beta * (p_star * ratio_sum - star_coef)
            if use_alpha:
                at_target = at_target - alpha * gamma_t * (p_t * power_sum + sig_gamma * p_t)
                star_focal = p_t * torch.exp(log_p_star + (gamma_t - 1) * log_sig)
                at_star = at_star + alpha * gamma_t * (power_star - p_star * power_sum + star_focal)
            grad_chunk.scatter_(1, index, at_target).scatter_(1, j_star, at_star)
            grad[rows, :, cols] = grad_chunk.mul_(g)

            if want_gamma and alpha != 0:
                log_power = (power * log_p).sum(1, keepdim=True)  # power is 0 at t and j*
                d_gamma = sig_gamma * log_sig + log_power + power_star * log_p_star
                grad_gamma += (alpha * d_gamma * g).sum()
        return grad.view(logits.shape), None, grad_gamma, None, None, None, None


def dual_focal_terms(
    logits: torch.Tensor,
    safe_target: torch.Tensor,
    alpha: float,
    beta: float,
    gamma: float | torch.Tensor,
    rho: float,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Unweighted multi-class Dual Focal loss per element ``(N, *)``, fused.

    Under ``torch.compile`` the plain log-space form is traced instead (the compiler fuses it).
    """
    if torch.compiler.is_compiling():
        return multiclass_dual_focal_terms(logits.to(dtype), safe_target, alpha, beta, gamma, rho)
    return _DualFocal.apply(logits, safe_target, gamma, alpha, beta, rho, dtype)
