"""Fused, chunked kernels behind every loss: one pass over the logits, exact backward.

Why chunks: a full-size temporary of the logits costs more than the arithmetic on it (on CPU,
buffers above the allocator's reuse threshold are freshly mapped and page-fault on first touch;
on any device they cost memory). Every loss here walks the logits in chunks of about
``CHUNK_ELEMENTS`` values, so its temporaries stay small, cache-resident and reused, and the
only full-size buffer is the gradient it must return.

Two primitives (the multi-class Dual Focal loss has its own kernel, ``_dual_focal_fused``):

* :func:`target_gap` — for every softmax loss that is a function of the target's margin. With
  transformed logits ``y = a·z + o − b_t e_t`` (scale ``a``, per-class offset ``o``, target shift
  ``b``) it returns, per element, ``u = logsumexp_{j≠t} y_j − y_t``. Then ``CE = softplus(u)``,
  ``1 − p_t = σ(u)``, ``log(1 − p_t) = logsigmoid(u)``, so focal, LDAM, LMF, the prior-adjusted
  losses and Poly-1 are scalar functions of ``u`` evaluated on ``(N, *)`` tensors. Its backward is
  closed-form: ``∂u/∂z_j = a · exp(y_j − logsumexp_{j≠t} y)`` for ``j ≠ t`` and ``−a`` at ``t``.
  Several heads (LMF's LDAM and focal terms) share one read of each chunk and one gradient buffer.
* :func:`chunkwise` — for the element-wise multi-label losses: the exact log-space formula runs
  chunk by chunk without a graph in the forward and is recomputed chunk by chunk under autograd
  in the backward, writing into one gradient buffer.

Under ``torch.compile`` both fall back to the plain differentiable formulas, which the compiler
traces and fuses itself.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.autograd.function import once_differentiable

from torch_imbalance._reduce import element_weights, finish_multiclass, split_ignored
from torch_imbalance._types import Reduction
from torch_imbalance.functional._compiled import (
    GapSpec,
    compile_broken,
    gap_kernels,
    gap_values,
    mark_broken,
    normaliser_scales,
    one_pass_kernel,
    record_run,
    wants_compiled,
)
from torch_imbalance.functional._heads import exp_floor

#: Logit values per chunk: 256 Ki (1 MiB in float32) keeps each temporary in cache.
CHUNK_ELEMENTS = 1 << 18


@dataclass(frozen=True)
class GapHead:
    """One transform ``y = scale · z + offset − shift[t] e_t`` of the logits (``(C,)`` vectors)."""

    scale: float = 1.0
    offset: torch.Tensor | None = None
    shift: torch.Tensor | None = None


def _chunk_slices(batch: int, classes: int, spatial: int) -> Iterator[tuple[slice, slice]]:
    """(batch, spatial) slices of ``(N, C, S)`` holding about ``CHUNK_ELEMENTS`` logits each
    (none for an empty input)."""
    if batch * classes * spatial == 0:
        return
    per_item = classes * spatial
    if per_item >= CHUNK_ELEMENTS:
        width = max(1, CHUNK_ELEMENTS // classes)
        for n in range(batch):
            for s in range(0, spatial, width):
                yield slice(n, n + 1), slice(s, min(s + width, spatial))
    else:
        rows = max(1, CHUNK_ELEMENTS // per_item)
        for n in range(0, batch, rows):
            yield slice(n, min(n + rows, batch)), slice(0, spatial)


def _as_3d(tensor: torch.Tensor) -> torch.Tensor:
    """``(N, C, *)`` -> ``(N, C, S)`` (a view when possible; explicit sizes for empty tensors)."""
    return tensor.reshape(tensor.shape[0], tensor.shape[1], math.prod(tensor.shape[2:]))


def _as_2d(tensor: torch.Tensor) -> torch.Tensor:
    """``(N, *)`` -> ``(N, S)``."""
    return tensor.reshape(tensor.shape[0], math.prod(tensor.shape[1:]))


def _head_logits(chunk: torch.Tensor, head: GapHead, in_place: bool) -> torch.Tensor:
    """``scale · z + offset`` of a compute-dtype chunk (in place when allowed)."""
    if head.scale == 1.0 and head.offset is None:
        return chunk if in_place else chunk.clone()
    y = chunk.mul_(head.scale) if in_place else chunk * head.scale
    if head.offset is not None:
        y.add_(head.offset.to(y.dtype).view(1, -1, 1))
    return y


def _chunk_gaps(
    chunk: torch.Tensor, index: torch.Tensor, heads: tuple[GapHead, ...], dtype: torch.dtype
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per element of a ``(n, C, L)`` chunk (consumed): each head's gap ``u`` and
    ``logsumexp_{j≠t} y`` (both ``(n, L)``)."""
    floor = exp_floor(dtype)
    z_target = chunk.gather(1, index).squeeze(1)
    chunk.scatter_(1, index, float("-inf"))  # −inf survives every head's transform
    top = chunk.amax(1)
    gaps, lses = [], []
    last = len(heads) - 1
    for k, head in enumerate(heads):
        y = _head_logits(chunk, head, in_place=k == last)
        # max(a·z + o) is a·max(z) when there is no offset (a > 0).
        head_top = top * head.scale if head.offset is None else y.amax(1)
        # The target's entry becomes exp(floor), below the resolution of a sum >= 1.
        lse = y.sub_(head_top.unsqueeze(1)).clamp_min_(floor).exp_().sum(1).log_().add_(head_top)
        y_target = z_target * head.scale
        if head.offset is not None:
            y_target = y_target + head.offset.to(dtype)[index.squeeze(1)]
        if head.shift is not None:
            y_target = y_target - head.shift.to(dtype)[index.squeeze(1)]
        gaps.append(lse - y_target)
        lses.append(lse)
    return gaps, lses


def _chunk_gap_gradient(
    chunk: torch.Tensor,
    index: torch.Tensor,
    heads: tuple[GapHead, ...],
    lses: list[torch.Tensor],
    coefficients: list[torch.Tensor],
    dtype: torch.dtype,
) -> torch.Tensor:
    """``Σ_k c_k ∂u_k/∂z`` for a ``(n, C, L)`` chunk (consumed), given ``∂L/∂u_k = c_k``."""
    floor = exp_floor(dtype)
    total: torch.Tensor | None = None
    at_target: torch.Tensor | None = None
    last = len(heads) - 1
    for k, head in enumerate(heads):
        # ∂u/∂y_j = exp(y_j − lse_{j≠t}) for j ≠ t and −1 at t; ∂y/∂z = scale.
        coefficient = coefficients[k] * head.scale
        q = _head_logits(chunk, head, in_place=k == last)
        q.sub_(lses[k].unsqueeze(1)).clamp_min_(floor).exp_().mul_(coefficient.unsqueeze(1))
        total = q if total is None else total.add_(q)
        at_target = -coefficient if at_target is None else at_target - coefficient
    assert total is not None and at_target is not None
    # The target entries (possibly inf above) are overwritten here.
    return total.scatter_(1, index, at_target.unsqueeze(1))


class _TargetGap(torch.autograd.Function):
    """Per-element gaps ``u_k`` (the per-element loss is then built by autograd)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        logits: torch.Tensor,
        target: torch.Tensor,
        heads: tuple[GapHead, ...],
        dtype: torch.dtype,
    ) -> torch.Tensor:
        z = _as_3d(logits)
        t = _as_2d(target)
        batch, classes, spatial = z.shape
        gaps = torch.empty((len(heads), batch, spatial), dtype=dtype, device=z.device)
        lse_others = torch.empty_like(gaps)
        for rows, cols in _chunk_slices(batch, classes, spatial):
            index = t[rows, cols].unsqueeze(1)
            chunk = z[rows, :, cols].to(dtype=dtype, copy=True)
            chunk_gaps, chunk_lses = _chunk_gaps(chunk, index, heads, dtype)
            for k in range(len(heads)):
                gaps[k, rows, cols] = chunk_gaps[k]
                lse_others[k, rows, cols] = chunk_lses[k]
        ctx.save_for_backward(logits, target, lse_others)
        ctx.heads, ctx.dtype = heads, dtype
        return gaps.view(len(heads), *target.shape)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_gaps: torch.Tensor):  # type: ignore[override]
        logits, target, lse_others = ctx.saved_tensors
        heads, dtype = ctx.heads, ctx.dtype
        z = _as_3d(logits)
        t = _as_2d(target)
        g = grad_gaps.reshape(len(heads), *t.shape)
        grad = torch.empty(z.shape, dtype=logits.dtype, device=logits.device)
        batch, classes, spatial = z.shape
        for rows, cols in _chunk_slices(batch, classes, spatial):
            index = t[rows, cols].unsqueeze(1)
            chunk = z[rows, :, cols].to(dtype=dtype, copy=True)
            lses = [lse_others[k, rows, cols] for k in range(len(heads))]
            coefficients = [g[k, rows, cols] for k in range(len(heads))]
            grad[rows, :, cols] = _chunk_gap_gradient(
                chunk, index, heads, lses, coefficients, dtype
            )
        return grad.view(logits.shape), None, None, None


def _spec_key(
    heads: tuple[GapHead, ...], dtype: torch.dtype, gamma: torch.Tensor | float
) -> tuple[Any, ...]:
    """The static part of a target-gap configuration, as the compiled kernels take it: scales,
    which heads have offsets / shifts, dtype, exp floor, a float γ (None for a tensor) and
    whether γ needs a gradient."""
    return (
        tuple(float(head.scale) for head in heads),
        tuple(head.offset is not None for head in heads),
        tuple(head.shift is not None for head in heads),
        dtype,
        exp_floor(dtype),
        None if isinstance(gamma, torch.Tensor) else float(gamma),
        isinstance(gamma, torch.Tensor) and gamma.requires_grad,
    )


def _compiled_kernels(
    heads: tuple[GapHead, ...],
    head_loss: Callable[..., Any],
    dtype: torch.dtype,
    gamma: Any,
    classes: int,
) -> tuple[Callable[..., Any], Callable[..., Any]]:
    return gap_kernels(head_loss, *_spec_key(heads, dtype, gamma), classes)


def gamma_on(gamma: torch.Tensor | float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """γ as a 0-dim tensor of ``dtype`` on ``device``, for the compiled kernels. A float γ is
    made there once and kept: a new one per call would be a host-to-device copy, and PyTorch
    waits for the device after each such copy (on an H100, queuing 50 loss calls before one
    sync was no faster than a sync after each; this was the one such copy per call)."""
    if isinstance(gamma, torch.Tensor):
        return gamma.detach().to(device=device, dtype=dtype)
    return _constant(float(gamma), dtype, device)


@functools.lru_cache(maxsize=256)
def _constant(value: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    with torch.inference_mode(False), torch.no_grad():  # usable in any later mode
        return torch.tensor(value, dtype=dtype, device=device)


def _head_tensors(
    heads: tuple[GapHead, ...], dtype: torch.dtype, device: torch.device
) -> tuple[list[torch.Tensor | None], list[torch.Tensor | None]]:
    """Each head's offset and shift in the compute dtype (None where absent)."""

    def cast(value: torch.Tensor | None) -> torch.Tensor | None:
        return None if value is None else value.to(device=device, dtype=dtype)

    return [cast(h.offset) for h in heads], [cast(h.shift) for h in heads]


#: ``head_loss(gaps, gamma) -> (loss, [∂loss/∂u_k], ∂loss/∂γ or None)`` on ``(n, L)`` tensors.
HeadLoss = Callable[..., tuple[torch.Tensor, list[torch.Tensor], "torch.Tensor | None"]]


class _GapLoss(torch.autograd.Function):
    """The whole per-element loss inside the chunk loop: ``w_i · ℓ(u_i)`` with ``ℓ`` and ``ℓ'``
    closed-form, so nothing of size ``(N, *)`` goes through autograd."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        logits: torch.Tensor,
        target: torch.Tensor,
        element_weight: torch.Tensor,
        heads: tuple[GapHead, ...],
        head_loss: HeadLoss,
        dtype: torch.dtype,
        gamma: torch.Tensor | float,
    ) -> torch.Tensor:
        z = _as_3d(logits)
        t = _as_2d(target)
        w = _as_2d(element_weight)
        wants_gamma = isinstance(gamma, torch.Tensor) and gamma.requires_grad
        ctx.heads, ctx.dtype, ctx.wants_gamma = heads, dtype, wants_gamma
        ctx.compiled = wants_compiled(z)
        if ctx.compiled:
            try:
                forward, ctx.backward_kernel = _compiled_kernels(
                    heads, head_loss, dtype, gamma, z.shape[1]
                )
                gamma_tensor = gamma_on(gamma, dtype, z.device)
                offsets, shifts = _head_tensors(heads, dtype, z.device)
                loss, lse_others, slopes, d_gamma = forward(z, t, w, offsets, shifts, gamma_tensor)
            except Exception as error:
                mark_broken(error)
                ctx.compiled = False
            else:
                saved = (logits, target, lse_others, slopes, *((d_gamma,) if wants_gamma else ()))
                ctx.save_for_backward(*saved)
                record_run("compiled-forward")
                return loss.view(target.shape)
        record_run("eager-forward")
        batch, classes, spatial = z.shape
        loss = torch.empty((batch, spatial), dtype=dtype, device=z.device)
        lse_others = torch.empty((len(heads), batch, spatial), dtype=dtype, device=z.device)
        slopes = torch.empty_like(lse_others)
        d_gamma = torch.empty_like(loss) if wants_gamma else None
        gamma_value = gamma.detach().to(dtype) if isinstance(gamma, torch.Tensor) else gamma
        for rows, cols in _chunk_slices(batch, classes, spatial):
            index = t[rows, cols].unsqueeze(1)
            chunk = z[rows, :, cols].to(dtype=dtype, copy=True)
            gaps, lses = _chunk_gaps(chunk, index, heads, dtype)
            value, derivatives, value_d_gamma = head_loss(gaps, gamma_value)
            weight = w[rows, cols].to(dtype)
            loss[rows, cols] = value * weight
            for k in range(len(heads)):
                lse_others[k, rows, cols] = lses[k]
                slopes[k, rows, cols] = derivatives[k] * weight
            if d_gamma is not None and value_d_gamma is not None:
                d_gamma[rows, cols] = value_d_gamma * weight
        saved = (logits, target, lse_others, slopes, *(() if d_gamma is None else (d_gamma,)))
        ctx.save_for_backward(*saved)
        return loss.view(target.shape)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss: torch.Tensor):  # type: ignore[override]
        logits, target, lse_others, slopes, *rest = ctx.saved_tensors
        heads, dtype = ctx.heads, ctx.dtype
        z = _as_3d(logits)
        t = _as_2d(target)
        g = _as_2d(grad_loss).to(dtype)
        grad = None
        if ctx.compiled and not compile_broken():
            try:
                offsets, _ = _head_tensors(heads, dtype, z.device)
                grad = ctx.backward_kernel(z, t, slopes, g, offsets)
                record_run("compiled-backward")
            except Exception as error:
                mark_broken(error)
        if grad is None:
            record_run("eager-backward")
            grad = torch.empty(z.shape, dtype=logits.dtype, device=logits.device)
            batch, classes, spatial = z.shape
            for rows, cols in _chunk_slices(batch, classes, spatial):
                index = t[rows, cols].unsqueeze(1)
                chunk = z[rows, :, cols].to(dtype=dtype, copy=True)
                lses = [lse_others[k, rows, cols] for k in range(len(heads))]
                upstream = g[rows, cols]
                coefficients = [slopes[k, rows, cols] * upstream for k in range(len(heads))]
                grad[rows, :, cols] = _chunk_gap_gradient(
                    chunk, index, heads, lses, coefficients, dtype
                )
        grad_gamma = (rest[0] * g).sum() if ctx.wants_gamma else None
        return grad.view(logits.shape), None, None, None, None, None, grad_gamma


def gap_loss(
    logits: torch.Tensor,
    safe_target: torch.Tensor,
    element_weight: torch.Tensor,
    heads: tuple[GapHead, ...],
    head_loss: HeadLoss,
    dtype: torch.dtype,
    gamma: torch.Tensor | float = 0.0,
) -> torch.Tensor:
    """Weighted per-element loss ``w_i · ℓ(u_{1,i}, …, u_{K,i})`` ``(N, *)``, fully fused.

    ``element_weight`` is ``weight[t_i]`` (0 where ignored); ``head_loss`` gives ``ℓ``, its
    derivatives with respect to each gap and, for a tensor ``gamma``, with respect to γ.
    """
    if torch.compiler.is_compiling():
        gaps = _traced_gaps(logits, safe_target, heads, dtype)
        return head_loss(gaps, gamma)[0] * element_weight.to(dtype)
    return _GapLoss.apply(logits, safe_target, element_weight, heads, head_loss, dtype, gamma)


class _OnePassLoss(torch.autograd.Function):
    """A reduced loss whose gradient was computed with it, in the same compiled loop that read
    the logits (and masked and weighted the targets); the backward only scales it by the
    incoming gradient (not at all when that is 1, as for ``loss.backward()``), times the
    kernel's gradient factor where it has one (a multi-label mean: ``numel / count``)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        logits: torch.Tensor,
        gamma: torch.Tensor | float,
        outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None],
        rerun: Callable[[], tuple[Any, ...]],
    ) -> torch.Tensor:
        loss, grad, d_gamma, grad_factor = outputs
        # Kept on ctx (not saved tensors): the first backward hands the buffer on as the
        # logits' gradient; a second backward through the same graph recomputes it.
        ctx.rerun, ctx.grad, ctx.d_gamma, ctx.grad_factor = rerun, grad, d_gamma, grad_factor
        ctx.wants_gamma = isinstance(gamma, torch.Tensor) and gamma.requires_grad
        ctx.shape, ctx.dtype = logits.shape, logits.dtype
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss: torch.Tensor):  # type: ignore[override]
        grad, d_gamma = ctx.grad, ctx.d_gamma
        ctx.grad = ctx.d_gamma = None
        if grad is None:  # backward again through a retained graph
            _, grad, d_gamma, _, _ = ctx.rerun()
        factor = grad_loss if ctx.grad_factor is None else grad_loss * ctx.grad_factor
        if factor.device.type != "cpu" or float(factor) != 1.0:
            grad = grad.mul_(factor.to(grad.dtype))
        grad_gamma = d_gamma * grad_loss if ctx.wants_gamma else None
        return grad.view(ctx.shape).to(ctx.dtype), grad_gamma, None, None


def one_pass_wanted(logits: torch.Tensor, reduction: Reduction) -> bool:
    """Whether a reduced loss runs on a compiled one-pass kernel (its value checks then run
    inside the kernel: see :func:`one_pass_loss`)."""
    return (
        reduction != "none"
        and logits.numel() > 0
        and not torch.compiler.is_compiling()
        and wants_compiled(logits)
    )


def one_pass_loss(
    logits: torch.Tensor,
    gamma: torch.Tensor | float,
    build_kernel: Callable[[], Callable[..., Any]],
    arguments: tuple[Any, ...],
    dtype: torch.dtype,
    checks: Callable[[], None] | None,
) -> torch.Tensor | None:
    """A reduced loss and its gradient from one compiled kernel (cached by ``build_kernel``),
    or None (said once, see :func:`mark_broken`) when the kernel cannot be built or run: the
    eager kernels serve then.

    ``kernel(logits (N, C, S), *arguments, γ) -> (loss, gradient, ∂loss/∂γ or None, invalid,
    gradient factor or None)``: the factor (a scalar tensor) multiplies the gradient in the
    backward;
    ``invalid`` flags a NaN/inf logit or a label out of range, found in the same loop, and
    ``checks`` (the eager value checks) then raise the full message (``None``: the caller's
    ``validate=False``, no device sync). After a None the caller runs ``checks`` itself.
    """
    gamma_tensor = gamma_on(gamma, dtype, logits.device)
    inputs = (_as_3d(logits.detach()), *arguments, gamma_tensor)
    try:
        kernel = build_kernel()
        with torch.no_grad():
            loss, grad, d_gamma, invalid, grad_factor = kernel(*inputs)
    except Exception as error:
        mark_broken(error)
        return None
    record_run("compiled-one-pass")
    if checks is not None and bool(invalid):
        checks()

    def rerun() -> tuple[Any, ...]:
        with torch.no_grad():
            return kernel(*inputs)

    return _OnePassLoss.apply(logits, gamma, (loss, grad, d_gamma, grad_factor), rerun)


def class_weight_in(weight: torch.Tensor | None, dtype: torch.dtype, device: torch.device):
    return None if weight is None else weight.to(device=device, dtype=dtype)


def reduced_gap_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    ignore_index: int,
    heads: tuple[GapHead, ...],
    head_loss: HeadLoss,
    dtype: torch.dtype,
    reduction: Reduction,
    gamma: torch.Tensor | float = 0.0,
    checks: Callable[[], None] | None = None,
) -> torch.Tensor:
    """A target-gap loss from raw targets, weighted by ``weight[t_i]``, ``ignore_index``
    left out, reduced like ``F.cross_entropy`` (``"mean"``: by ``Σ w_i``).

    A mean or a sum on the compiled path is computed in one pass with its gradient
    (:func:`one_pass_loss`); everything else is the per-element loss of :func:`gap_loss`,
    then reduced. ``checks``: the value checks still to run (see ``_common.prepare``).
    """
    if one_pass_wanted(logits, reduction):
        normalisers = ("weight",) if reduction == "mean" else ("sum",)
        result = one_pass_gap_loss(
            logits,
            target,
            weight,
            ignore_index,
            heads,
            head_loss,
            dtype,
            normalisers,
            gamma,
            checks,
        )
        if result is not None:
            return result
    if checks is not None:
        checks()
    safe_target, valid = split_ignored(target, ignore_index)
    element_weight = element_weights(safe_target, valid, weight, dtype)
    loss = gap_loss(logits, safe_target, element_weight, heads, head_loss, dtype, gamma)
    return finish_multiclass(loss, element_weight, reduction)


def one_pass_gap_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    ignore_index: int,
    heads: tuple[GapHead, ...],
    head_loss: HeadLoss,
    dtype: torch.dtype,
    normalisers: tuple[str, ...],
    gamma: torch.Tensor | float = 0.0,
    checks: Callable[[], None] | None = None,
) -> torch.Tensor | None:
    """A reduced target-gap loss on its compiled one-pass kernel, or None (the caller's eager
    path then serves; call only where :func:`one_pass_wanted`). ``normalisers``: see
    ``_compiled.one_pass_kernel`` (one per head: ``head_loss`` takes ``term_scales``)."""
    spec = _spec_key(heads, dtype, gamma)
    offsets, shifts = _head_tensors(heads, dtype, logits.device)
    class_weight = class_weight_in(weight, dtype, logits.device)
    factors = normaliser_scales(
        target, class_weight, logits.shape[1], int(ignore_index), normalisers, dtype
    )
    arguments = (_as_2d(target), factors, class_weight, offsets, shifts)
    return one_pass_loss(
        logits,
        gamma,
        lambda: one_pass_kernel(head_loss, *spec, int(ignore_index), normalisers, logits.shape[1]),
        arguments,
        dtype,
        checks,
    )


def target_gap(
    logits: torch.Tensor, safe_target: torch.Tensor, heads: tuple[GapHead, ...], dtype: torch.dtype
) -> torch.Tensor:
    """``u_k = logsumexp_{j≠t} y_k − y_{k,t}`` for each head ``k``: shape ``(K, N, *)``.

    Args:
        logits: ``(N, C, *)`` logits (any floating dtype; computed in ``dtype``).
        safe_target: ``(N, *)`` class indices in ``[0, C)`` (ignored positions replaced).
        heads: the logit transforms.
        dtype: compute dtype (float32 for half inputs).
    """
    if torch.compiler.is_compiling():
        # Under torch.compile the plain differentiable form is traced and fused by the compiler.
        return torch.stack(_traced_gaps(logits, safe_target, heads, dtype))
    return _TargetGap.apply(logits, safe_target, heads, dtype)


def _traced_gaps(
    logits: torch.Tensor, safe_target: torch.Tensor, heads: tuple[GapHead, ...], dtype: torch.dtype
) -> list[torch.Tensor]:
    """Each head's gap ``(N, *)`` from the compiled kernels' definition
    (``_compiled.gap_values``), as plain differentiable ops for a caller's ``torch.compile``."""
    spec = GapSpec(*_spec_key(heads, dtype, 0.0))
    offsets, shifts = _head_tensors(heads, dtype, logits.device)
    z = _as_3d(logits).to(dtype)
    gaps, _ = gap_values(z, _as_2d(safe_target), offsets, shifts, spec=spec)
    return [gap.view(safe_target.shape) for gap in gaps]


# ---------------------------------------------------------------------------------- chunkwise
ChunkLoss = Callable[..., torch.Tensor]


class _Chunkwise(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx, fn: ChunkLoss, logits: torch.Tensor, target: torch.Tensor, *params: torch.Tensor
    ) -> torch.Tensor:
        z, t = _as_3d(logits), _as_3d(target)
        batch, classes, spatial = z.shape
        out: torch.Tensor | None = None
        for rows, cols in _chunk_slices(batch, classes, spatial):
            value = fn(z[rows, :, cols], t[rows, :, cols], *params)
            if out is None:
                out = torch.empty(z.shape, dtype=value.dtype, device=z.device)
            out[rows, :, cols] = value
        if out is None:  # an empty input: no chunk, the formula on the empty tensor itself
            out = fn(z, t, *params)
        ctx.save_for_backward(logits, target, *params)
        ctx.fn = fn
        return out.view(logits.shape)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        logits, target, *params = ctx.saved_tensors
        z, t, g = _as_3d(logits), _as_3d(target), _as_3d(grad_out)
        batch, classes, spatial = z.shape
        grad = torch.empty(z.shape, dtype=logits.dtype, device=logits.device)
        wants = [p.requires_grad for p in params]
        param_grads = [
            torch.zeros_like(p) if w else None for p, w in zip(params, wants, strict=True)
        ]
        detached = [p.detach().requires_grad_(w) for p, w in zip(params, wants, strict=True)]
        for rows, cols in _chunk_slices(batch, classes, spatial):
            chunk = z[rows, :, cols].detach().requires_grad_()
            with torch.enable_grad():
                value = ctx.fn(chunk, t[rows, :, cols], *detached)
                inputs = [chunk, *(p for p, w in zip(detached, wants, strict=True) if w)]
                grads = torch.autograd.grad(value, inputs, g[rows, :, cols])
            grad[rows, :, cols] = grads[0]
            extra = iter(grads[1:])
            for i, w in enumerate(wants):
                if w:
                    param_grads[i] += next(extra)  # type: ignore[operator]
        return (None, grad.view(logits.shape), None, *param_grads)


def chunkwise(
    fn: ChunkLoss, logits: torch.Tensor, target: torch.Tensor, *params: torch.Tensor
) -> torch.Tensor:
    """Evaluate an element-wise (multi-label) loss chunk by chunk, with an exact backward.

    ``fn(z_chunk, target_chunk, *params)`` receives ``(n, C, L)`` logits and targets and returns
    the per-entry loss ``(n, C, L)``. ``params`` are scalar tensors (e.g. a learnable γ) that
    receive gradients.
    """
    if torch.compiler.is_compiling():
        return fn(_as_3d(logits), _as_3d(target), *params).view(logits.shape)
    return _Chunkwise.apply(fn, logits, target, *params)
