"""The class axis of the compiled kernels, whole or unrolled (one definition of each kernel).

A kernel body is written once over "class values": per-class quantities of ``(N, C, S)``
logits, combined with per-element ``(N, 1, S)`` quantities by broadcasting. They come in two
forms, chosen by the number of classes:

* **whole** — an ``(N, C, S)`` tensor; a reduction over the classes is ``x.sum(1)``. The
  compiler makes each such reduction a loop of its own and keeps its per-element results in
  full-size buffers between the loops.
* **unrolled** (at most :data:`UNROLL_CLASSES` classes) — an :class:`Unrolled` list of ``C``
  tensors of shape ``(N, 1, S)``; a reduction over the classes is ``C − 1`` element-wise
  operations. Every quantity is then element-wise over ``(N, 1, S)`` and the compiler fuses the
  whole kernel into one loop over the elements that reads each element's ``C`` logits and
  writes its ``C`` gradients (seg-4 focal: 12 -> 5.6 ms, measured on 2 CPU threads).

The helpers below (:func:`per_class`, :func:`class_sum`, ...) take either form. Per-element
quantities (targets, weights, losses) keep the shape ``(N, 1, S)`` throughout a kernel: the
compiler fuses only loops over the same shape, and an ``(N, S)`` quantity made one more loop.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch

#: Up to this many classes the kernels unroll the class axis (see the module docstring).
#: Measured on 2 CPU threads with the target-gap and Dual Focal kernels; above it the loop body
#: (and the compile time) grows with ``C`` while the whole form's extra passes matter less.
UNROLL_CLASSES = 32


class Unrolled:
    """``C`` per-class tensors of shape ``(N, 1, S)``: the unrolled form of ``(N, C, S)``
    class values. Arithmetic applies per class; a plain tensor operand broadcasts to every
    class (a per-element ``(N, 1, S)`` value or a scalar)."""

    def __init__(self, parts: Sequence[torch.Tensor]) -> None:
        self.parts = list(parts)

    def __len__(self) -> int:
        return len(self.parts)

    def _map(self, function: Callable[..., torch.Tensor], *others: Any) -> Unrolled:
        mapped: Unrolled = per_class(function, self, *others)
        return mapped

    def __add__(self, other: Any) -> Unrolled:
        return self._map(lambda a, b: a + b, other)

    def __radd__(self, other: Any) -> Unrolled:
        return self._map(lambda a, b: b + a, other)

    def __sub__(self, other: Any) -> Unrolled:
        return self._map(lambda a, b: a - b, other)

    def __rsub__(self, other: Any) -> Unrolled:
        return self._map(lambda a, b: b - a, other)

    def __mul__(self, other: Any) -> Unrolled:
        return self._map(lambda a, b: a * b, other)

    def __rmul__(self, other: Any) -> Unrolled:
        return self._map(lambda a, b: b * a, other)

    def __truediv__(self, other: Any) -> Unrolled:
        return self._map(lambda a, b: a / b, other)

    def __rtruediv__(self, other: Any) -> Unrolled:
        return self._map(lambda a, b: b / a, other)

    def __neg__(self) -> Unrolled:
        return self._map(lambda a: -a)

    # Named forms of the operators, which plain tensors have too: under torch.compile an
    # operator between an Unrolled and a tensor is taken for a tensor operation and fails, so
    # the kernels write ``x.sub(t)`` where ``t`` is a tensor (``x - y`` between class values).
    def add(self, other: Any) -> Unrolled:
        return self._map(lambda a, b: a + b, other)

    def sub(self, other: Any) -> Unrolled:
        return self._map(lambda a, b: a - b, other)

    def mul(self, other: Any) -> Unrolled:
        return self._map(lambda a, b: a * b, other)

    def div(self, other: Any) -> Unrolled:
        return self._map(lambda a, b: a / b, other)

    def exp(self) -> Unrolled:
        return self._map(torch.exp)

    def clamp(self, low: Any = None, high: Any = None) -> Unrolled:
        return self._map(lambda a: a.clamp(low, high))

    def clamp_min(self, low: Any) -> Unrolled:
        return self._map(lambda a: a.clamp_min(low))

    def masked_fill(self, mask: Any, value: float) -> Unrolled:
        return self._map(lambda a, m: a.masked_fill(m, value), mask)


#: Class values in either form.
ClassValues = torch.Tensor | Unrolled


def unrolls(classes: int) -> bool:
    """Whether a kernel over ``classes`` classes uses the unrolled form."""
    return classes <= UNROLL_CLASSES


def split_classes(z: torch.Tensor, unrolled: bool) -> ClassValues:
    """``(N, C, S)`` as class values: unrolled into ``C`` views ``(N, 1, S)`` or whole."""
    if not unrolled:
        return z
    return Unrolled([z[:, c : c + 1] for c in range(z.shape[1])])


def per_class(function: Callable[..., torch.Tensor], *arguments: Any) -> Any:
    """``function`` applied class by class to the unrolled arguments (plain tensors and scalars
    passed to every call), or once to whole tensors when none is unrolled."""
    classes = next((len(a) for a in arguments if isinstance(a, Unrolled)), None)
    if classes is None:
        return function(*arguments)
    return Unrolled(
        [
            function(*(a.parts[c] if isinstance(a, Unrolled) else a for a in arguments))
            for c in range(classes)
        ]
    )


def class_sum(values: ClassValues) -> torch.Tensor:
    """``Σ_c values_c`` as ``(N, 1, S)``."""
    if isinstance(values, Unrolled):
        return functools.reduce(torch.add, values.parts)
    return values.sum(1, keepdim=True)


def class_prod(values: ClassValues) -> torch.Tensor:
    """``Π_c values_c`` as ``(N, 1, S)``."""
    if isinstance(values, Unrolled):
        return functools.reduce(torch.mul, values.parts)
    return values.prod(1, keepdim=True)


def first_class(values: ClassValues) -> torch.Tensor:
    """The first class's values, ``(N, 1, S)`` (a strided read of the logits: see
    ``_compiled.in_logit_loop``)."""
    if isinstance(values, Unrolled):
        return values.parts[0]
    return values[:, :1]


def class_max(values: ClassValues) -> torch.Tensor:
    """``max_c values_c`` as ``(N, 1, S)``."""
    if isinstance(values, Unrolled):
        return functools.reduce(torch.maximum, values.parts)
    return values.amax(1, keepdim=True)


def is_class(target: torch.Tensor, z: ClassValues) -> ClassValues:
    """The ``(N, 1, S)`` labels as class values: ``target == c`` (bool), in the form of
    ``z``."""
    if isinstance(z, Unrolled):
        return Unrolled([target == c for c in range(len(z))])
    return torch.arange(z.shape[1], device=z.device).view(1, -1, 1) == target


def first_max(values: ClassValues) -> tuple[torch.Tensor, ClassValues]:
    """``max_c values_c`` ``(N, 1, S)`` and, as bool class values, the class where it is taken
    (exactly one per element; the first of equal ones in the unrolled form)."""
    if isinstance(values, Unrolled):
        top = class_max(values)
        taken = torch.zeros_like(top, dtype=torch.bool)
        marks = []
        for part in values.parts:
            mark = (part == top) & ~taken
            taken = taken | mark
            marks.append(mark)
        return top, Unrolled(marks)
    top, index = values.max(1, keepdim=True)
    return top, torch.arange(values.shape[1], device=values.device).view(1, -1, 1) == index


def class_offsets(offset: torch.Tensor, like: ClassValues) -> Any:
    """A per-class ``(C,)`` vector to add to class values: each entry (unrolled) or a view
    ``(1, C, 1)`` (whole)."""
    if isinstance(like, Unrolled):
        return Unrolled([offset[c] for c in range(len(like))])
    return offset.view(1, -1, 1)


def assemble(values: ClassValues) -> torch.Tensor:
    """Class values as one ``(N, C, S)`` tensor (the gradient the kernels return)."""
    if isinstance(values, Unrolled):
        return torch.cat(values.parts, 1)
    return values


#: Up to this many classes the whole form reads the target's logit as a masked sum over the
#: classes (vectorised along the elements); above it, as a gather (one read per element).
MASKED_SUM_CLASSES = 32


def pick(values: ClassValues, is_target: ClassValues, target: torch.Tensor) -> torch.Tensor:
    """Each element's value at its target class (``target``: ``(N, 1, S)``), ``(N, 1, S)``."""
    if isinstance(values, Unrolled) or values.shape[1] <= MASKED_SUM_CLASSES:
        return class_sum(per_class(lambda m, v: torch.where(m, v, 0.0), is_target, values))
    return values.gather(1, target)
