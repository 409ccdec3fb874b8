"""The two drivers that run every loss: one compiled whole-tensor pass, or eager chunks.

A loss is a *body*: plain tensor code that, for a block of logits, returns each element's
weighted loss and the closed-form gradient with respect to the logits (the family files hold
the laws: ``focal.py``, ``ldam.py``, ``lmf.py``, ``priors.py``, ``dual_focal.py``; ``_gap``
and ``_multilabel`` the bodies that apply them). The drivers run a body

* **compiled** (``_compiled``): over the whole tensor in one fused loop that reads each logit once
  and writes its gradient once (a reduced loss's gradient is computed with its value);
* **eager**: chunk by chunk (about :data:`CHUNK_ELEMENTS` logits each, so temporaries stay small
  and cache-resident), the fallback for small inputs and where compiling is not possible.

Both run the same body, so they compute the same function. Reductions follow
``F.cross_entropy`` (multi-class: a mean over ``Σ w_i`` of the labelled elements) and
``F.binary_cross_entropy_with_logits`` (multi-label: over the entries not ignored), except that
a batch with nothing labelled reduces to 0 with zero gradients, not NaN. ``reduction="none"``
returns the per-element values and runs the body again in the backward, with the incoming
gradient. Under a caller's ``torch.compile`` the body's value is traced and differentiated by
autograd.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch.autograd.function import once_differentiable

from torch_imbalance._types import Reduction
from torch_imbalance.functional import _compiled
from torch_imbalance.functional._compiled import mark_broken, record_run, wants_compiled
from torch_imbalance.functional._counts import Normalisers

#: What the normalisers' factors are computed from besides the labels: the class weights and
#: the batch's label counts where the caller has them (each may be None).
FactorInputs = tuple[torch.Tensor | None, torch.Tensor | None]

#: Logit values per chunk: 256 Ki (1 MiB in float32) keeps each temporary in cache.
CHUNK_ELEMENTS = 1 << 18


class BodyOutput(NamedTuple):
    """What a body returns for a block of ``(n, C, S)`` logits.

    Attributes:
        values: per element ``(n, 1, S)`` (multi-class) or entry ``(n, C, S)`` (multi-label):
            the weighted loss, NaN where the input is invalid (a NaN/inf logit, a label out of
            range), so that a reduced loss is not finite and the eager checks say why.
        grad: ``∂(scale · Σ values · upstream)/∂z`` ``(n, C, S)`` in the logits' dtype.
        d_gamma: per element ``∂(scale · values · upstream)/∂γ`` (``scale`` included: the
            compiled loop then sums it with the values), or None when not asked for.
        scale: the factor of the reduced sum (``1 / Σ w`` for a mean), or None for 1.
        counted: per entry, 1 where labelled (a multi-label mean's divisor, counted in the same
            loop), or None; the gradient is then written scaled by ``1 / numel``.
    """

    values: torch.Tensor
    grad: torch.Tensor
    d_gamma: torch.Tensor | None
    scale: torch.Tensor | float | None
    counted: torch.Tensor | None


@dataclass(frozen=True)
class Body:
    """A body with its static settings: ``function(logits, target, factors, upstream, γ,
    *tensors, compiled=..., **settings)`` -> :class:`BodyOutput`.

    ``settings`` are keyword values (hashable through :func:`key_of`: the compiled kernels are
    cached on them); ``options``: inductor options for its compiled form; ``tag``: anything
    else its compiled form is built per (an unrolled kernel's class count); ``normalisers``:
    how the body's ``factors`` are computed from the labels (None: the body takes none).
    """

    function: Callable[..., BodyOutput]
    settings: tuple[tuple[str, Any], ...]
    options: tuple[tuple[str, Any], ...] = ()
    tag: Hashable = None
    normalisers: Normalisers | None = None

    def __call__(self, *args: Any, compiled: bool) -> BodyOutput:
        return self.function(*args, compiled=compiled, **dict(self.settings))

    def key(self) -> Hashable:
        return (self.function, key_of(self.settings), self.options, self.tag, self.normalisers)

    def factors(
        self, target: torch.Tensor, factor_inputs: FactorInputs, *, compiled: bool
    ) -> torch.Tensor | None:
        """The normalisers' factors for the whole ``target`` (computed in the compiled kernel,
        or once before the eager chunks)."""
        if self.normalisers is None:
            return None
        return self.normalisers(target, *factor_inputs, compiled=compiled)


def key_of(value: Any) -> Hashable:
    """A hashable stand-in for settings: partials by function and arguments (two equal
    partials made on two calls are the same kernel), tuples element by element."""
    if isinstance(value, functools.partial):
        keywords = tuple(sorted((k, key_of(v)) for k, v in value.keywords.items()))
        return (value.func, key_of(value.args), keywords)
    if isinstance(value, (tuple, list)):
        return tuple(key_of(v) for v in value)
    hashable: Hashable = value
    return hashable


def chunk_slices(batch: int, classes: int, spatial: int) -> Iterator[tuple[slice, slice]]:
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


def as_3d(tensor: torch.Tensor) -> torch.Tensor:
    """``(N, C, *)`` -> ``(N, C, S)`` (a view when possible; explicit sizes for empty tensors)."""
    return tensor.reshape(tensor.shape[0], tensor.shape[1], math.prod(tensor.shape[2:]))


def gamma_on(gamma: torch.Tensor | float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """γ as a 0-dim tensor of ``dtype`` on ``device``. A float γ is made there once and kept:
    a new one per call would be a host-to-device copy, after which PyTorch waits for the
    device (on an H100 this was the one such copy per call)."""
    if isinstance(gamma, torch.Tensor):
        return gamma.detach().to(device=device, dtype=dtype)
    return constant(float(gamma), dtype, device)


@functools.lru_cache(maxsize=256)
def constant(value: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A 0-dim tensor of ``value``, made once per value, dtype and device and kept."""
    with torch.inference_mode(False), torch.no_grad():  # usable in any later mode
        return torch.tensor(value, dtype=dtype, device=device)


# ------------------------------------------------------------------ the compiled kernels
def _finish(
    total: torch.Tensor, d_total: torch.Tensor | None, count: torch.Tensor | None, numel: int
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """The reduced loss, ``∂/∂γ`` and the gradient factor from a body's sums: a counted mean
    divides by the count (none labelled: 0, as ``F.cross_entropy``'s empty mean is made here),
    and its gradient, written scaled by ``1/numel``, is scaled by ``numel / count``."""
    if count is None:
        return total, d_total, None
    count = count.clamp_min(1.0)
    d_total = None if d_total is None else d_total / count
    return total / count, d_total, max(numel, 1) / count


def _sums(out: BodyOutput) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    total = out.values.sum()
    d_total = None if out.d_gamma is None else out.d_gamma.sum()
    if out.scale is not None:
        total = total * out.scale
    return total, d_total, None if out.counted is None else out.counted.sum()


def _one_pass(  # pragma: no cover (compiled)
    logits: torch.Tensor,
    target: torch.Tensor,
    factor_inputs: FactorInputs,
    gamma: torch.Tensor,
    *tensors: Any,
    body: Body,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
    """A reduced loss, its gradient, ``∂/∂γ``, an invalid-input flag and the gradient factor
    (the normalisers' factors too: one compiled call per loss call)."""
    factors = body.factors(target, factor_inputs, compiled=True)
    out = body(logits, target, factors, None, gamma, *tensors, compiled=True)
    total, d_total, count = _sums(out)
    loss, d_total, factor = _finish(total, d_total, count, target.numel())
    return loss, out.grad, d_total, ~torch.isfinite(loss), factor


def _elements(  # pragma: no cover (compiled)
    logits: torch.Tensor,
    target: torch.Tensor,
    factor_inputs: FactorInputs,
    gamma: torch.Tensor,
    *tensors: Any,
    body: Body,
) -> torch.Tensor:
    """Per-element values (the compiler drops the gradient it is not asked for)."""
    factors = body.factors(target, factor_inputs, compiled=True)
    return body(logits, target, factors, None, gamma, *tensors, compiled=True).values


def _gradient(  # pragma: no cover (compiled)
    logits: torch.Tensor,
    target: torch.Tensor,
    factor_inputs: FactorInputs,
    upstream: torch.Tensor,
    gamma: torch.Tensor,
    *tensors: Any,
    body: Body,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The gradient of ``Σ values · upstream`` with respect to the logits and to γ."""
    factors = body.factors(target, factor_inputs, compiled=True)
    out = body(logits, target, factors, upstream, gamma, *tensors, compiled=True)
    return out.grad, None if out.d_gamma is None else out.d_gamma.sum()


def _kernel(kind: Callable[..., Any], body: Body) -> Callable[..., Any]:
    return _compiled.compiled_kernel(
        (kind.__name__, body.key()), kind, dict(body.options) or None, body=body
    )


# ------------------------------------------------------------------------ the eager driver
def _eager(
    body: Body,
    logits: torch.Tensor,
    target: torch.Tensor,
    factor_inputs: FactorInputs,
    upstream: torch.Tensor | None,
    gamma: torch.Tensor,
    tensors: tuple[Any, ...],
    values_shape: tuple[int, ...] | None,
) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor, Any, Any]:
    """The body chunk by chunk: per-element values (of ``values_shape``, None: only their
    sums), the gradient, and the sums ``(total, ∂/∂γ, count)`` (None where the body has
    none)."""
    factors = body.factors(target, factor_inputs, compiled=False)
    batch, classes, spatial = logits.shape
    grad = torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)
    values = None if values_shape is None else logits.new_empty(values_shape, dtype=gamma.dtype)
    sums: list[Any] = [None, None, None]
    for rows, cols in chunk_slices(batch, classes, spatial):
        part = None if upstream is None else upstream[rows, :, cols]
        out = body(
            logits[rows, :, cols], target[rows, :, cols], factors, part, gamma, *tensors,
            compiled=False,
        )  # fmt: skip
        grad[rows, :, cols] = out.grad
        if values is not None:
            values[rows, :, cols] = out.values
        for k, value in enumerate(_sums(out)):
            if value is not None:
                sums[k] = value if sums[k] is None else sums[k] + value
    total = logits.new_zeros((), dtype=gamma.dtype) if sums[0] is None else sums[0]
    return values, grad, total, sums[1], sums[2]


def _reduced_outputs(
    body: Body,
    logits: torch.Tensor,
    target: torch.Tensor,
    factor_inputs: FactorInputs,
    gamma: torch.Tensor,
    tensors: tuple[Any, ...],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
    """:func:`_one_pass` on the compiled kernel where wanted (falling back once it fails), else
    on the eager chunks."""
    if logits.numel() > 0 and wants_compiled(logits):
        try:
            outputs: tuple[
                torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None
            ] = _kernel(_one_pass, body)(logits, target, factor_inputs, gamma, *tensors)
        except Exception as error:
            mark_broken(error)
        else:
            record_run("compiled-one-pass")
            return outputs
    record_run("eager-one-pass")
    _, grad, total, d_total, count = _eager(
        body, logits, target, factor_inputs, None, gamma, tensors, None
    )
    loss, d_total, factor = _finish(total, d_total, count, target.numel())
    return loss, grad, d_total, ~torch.isfinite(loss), factor


class _OnePassLoss(torch.autograd.Function):
    """A reduced loss whose gradient was computed with it; the backward only scales it by the
    incoming gradient (not at all when that is 1, as for ``loss.backward()``), times the
    gradient factor where there is one (a multi-label mean: ``numel / count``)."""

    @staticmethod
    def forward(
        ctx: Any,
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
    def backward(ctx: Any, grad_loss: torch.Tensor) -> tuple[Any, ...]:
        grad, d_gamma = ctx.grad, ctx.d_gamma
        ctx.grad = ctx.d_gamma = None
        if grad is None:  # backward again through a retained graph
            _, grad, d_gamma, _, _ = ctx.rerun()
        factor = grad_loss if ctx.grad_factor is None else grad_loss * ctx.grad_factor
        if factor.device.type != "cpu" or float(factor) != 1.0:
            grad = grad.mul_(factor.to(grad.dtype))
        # No d_gamma with a learnable γ: an empty input (no chunk), whose γ gradient is 0.
        grad_gamma = d_gamma * grad_loss if ctx.wants_gamma and d_gamma is not None else None
        return grad.view(ctx.shape).to(ctx.dtype), grad_gamma, None, None


class _ElementLoss(torch.autograd.Function):
    """Per-element losses; the backward runs the body again with the incoming gradient as the
    ``upstream`` of every element (no per-element state is kept between the passes)."""

    @staticmethod
    def forward(
        ctx: Any, logits: torch.Tensor, gamma: torch.Tensor | float, run: Callable[..., Any]
    ) -> torch.Tensor:
        ctx.run = run
        ctx.wants_gamma = isinstance(gamma, torch.Tensor) and gamma.requires_grad
        ctx.save_for_backward(logits)
        values: torch.Tensor = run(logits, None)
        return values

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_values: torch.Tensor) -> tuple[Any, ...]:
        (logits,) = ctx.saved_tensors
        grad, d_gamma = ctx.run(logits, grad_values)
        return grad, d_gamma if ctx.wants_gamma else None, None


def run_body(
    body: Body,
    logits: torch.Tensor,
    target: torch.Tensor,
    factor_inputs: FactorInputs,
    gamma: torch.Tensor | float,
    tensors: tuple[Any, ...],
    reduction: Reduction,
    checks: Callable[[], None] | None,
    dtype: torch.dtype,
    element_shape: tuple[int, ...],
) -> torch.Tensor:
    """A loss from its body: reduced (one pass, loss and gradient together) or per element.

    Args:
        body: the loss (see :class:`Body`).
        logits: ``(N, C, *)``.
        target: ``(N, 1, *)`` class indices or ``(N, C, *)`` 0/1 labels.
        factor_inputs: the class weights and label counts (each may be None) from which
            ``body.normalisers`` computes the factors of a mean.
        gamma: a float, or a scalar tensor (learnable γ: gets a gradient).
        tensors: further arguments of the body (class weights, margins, ...).
        reduction: ``"mean"`` | ``"sum"`` (the body's ``factors`` and settings say which) or
            ``"none"``.
        checks: the eager value checks (run when the body flags an invalid input, or before
            a per-element loss; on CUDA a device-side assert instead, :func:`check_flag`), or
            None (``validate=False``).
        dtype: the compute dtype.
        element_shape: the shape of the per-element losses.
    """
    z, t = as_3d(logits), as_3d(target)
    if torch.compiler.is_compiling():  # a caller's torch.compile: autograd of the body's value
        traced_gamma = gamma.to(dtype) if isinstance(gamma, torch.Tensor) else float(gamma)
        factors = body.factors(t, factor_inputs, compiled=True)
        out = body(z, t, factors, None, traced_gamma, *tensors, compiled=False)
        if reduction == "none":
            return out.values.reshape(element_shape)
        total, _, count = _sums(out)
        return total if count is None else total / count.clamp_min(1.0)
    gamma_value = gamma_on(gamma, dtype, z.device)
    if reduction != "none":
        detached = z.detach()

        def rerun() -> tuple[Any, ...]:
            with torch.no_grad():
                return _reduced_outputs(body, detached, t, factor_inputs, gamma_value, tensors)

        loss, grad, d_gamma, invalid, grad_factor = rerun()
        if checks is not None:
            check_flag(invalid, checks)
        reduced: torch.Tensor = _OnePassLoss.apply(
            logits, gamma, (loss, grad, d_gamma, grad_factor), rerun
        )
        return reduced
    on_device = z.device.type == "cuda"
    if checks is not None and not on_device:
        checks()
    compiled = z.numel() > 0 and wants_compiled(z)

    def run(x: torch.Tensor, upstream: torch.Tensor | None) -> Any:
        x3 = as_3d(x.detach())
        g = None if upstream is None else upstream.reshape(t.shape)
        if compiled and not _compiled.compile_broken():
            try:
                if g is None:
                    values = _kernel(_elements, body)(x3, t, factor_inputs, gamma_value, *tensors)
                    record_run("compiled-elements")
                    return values.reshape(element_shape)
                grad, d_gamma = _kernel(_gradient, body)(
                    x3, t, factor_inputs, g, gamma_value, *tensors
                )
                record_run("compiled-gradient")
                return grad.view(x.shape), d_gamma
            except Exception as error:
                mark_broken(error)
        values_shape = None if g is not None else (x3.shape[0], t.shape[1], x3.shape[2])
        values, grad, _, d_total, _ = _eager(
            body, x3, t, factor_inputs, g, gamma_value, tensors, values_shape
        )
        if g is None:
            assert values is not None
            record_run("eager-elements")
            return values.reshape(element_shape)
        record_run("eager-gradient")
        return grad.view(x.shape), d_total

    values: torch.Tensor = _ElementLoss.apply(logits, gamma, run)
    if checks is not None and on_device:
        check_flag(~torch.isfinite(values).all(), checks)
    return values


#: What a device-side check says (the device cannot run the eager checks' full message).
INVALID_ON_DEVICE = (
    "torch_imbalance: a non-finite logit or a label out of range (the loss is not finite). "
    "The same call on the CPU says which and where; validate=False skips this check."
)


def check_flag(invalid: torch.Tensor, checks: Callable[[], None]) -> None:
    """Act on a kernel's invalid-input flag: on the CPU run the eager ``checks`` (they raise
    with what is wrong and where) when it is set; on CUDA assert on the device, as
    ``F.cross_entropy`` does for a label out of range, so that a call never waits for the
    device (a failed assert ends the CUDA context, like any device-side assert)."""
    if invalid.device.type == "cuda":
        torch._assert_async(~invalid, INVALID_ON_DEVICE)
    elif bool(invalid):
        checks()
