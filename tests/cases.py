"""One table of every loss: our functional form next to its float64 reference.

Each case maps the same keyword arguments onto both, so the reference tests, property tests,
gradchecks and edge cases all run over every loss from one place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import reference as ref
import torch

from torch_imbalance import functional as TF

COUNTS = {
    2: [40, 7],
    3: [120, 30, 4],
    4: [500, 60, 9, 2],
    5: [300, 100, 30, 10, 3],
    6: [700, 200, 80, 20, 9, 1],
    40: [round(1000 * 0.85**i) + 1 for i in range(40)],  # many classes, long-tailed
}


@dataclass(frozen=True)
class Case:
    name: str
    ours: Callable[..., torch.Tensor]
    reference: Callable[..., torch.Tensor]
    tasks: tuple[str, ...] = ("multiclass",)
    uses_counts: bool = False
    params: dict[str, Any] = field(default_factory=dict)
    has_gamma: bool = False

    def call_ours(self, z, t, **kw):
        if self.uses_counts:
            kw["class_counts"] = COUNTS[z.shape[1]]
        return self.ours(z, t, **{**self.params, **kw})

    def call_reference(self, z, t, **kw):
        if self.uses_counts:
            kw["counts"] = COUNTS[z.shape[1]]
        return self.reference(z, t, **{**self.params, **kw})


CASES = [
    Case(
        "focal",
        TF.focal_loss,
        ref.focal,
        ("multiclass", "multilabel"),
        params={"gamma": 2.0},
        has_gamma=True,
    ),
    Case(
        "focal_g05",
        TF.focal_loss,
        ref.focal,
        ("multiclass", "multilabel"),
        params={"gamma": 0.5},
        has_gamma=True,
    ),
    Case(
        "focal_alpha",
        TF.focal_loss,
        ref.focal,
        ("multilabel",),
        params={"gamma": 1.5, "alpha": 0.25},
        has_gamma=True,
    ),
    Case("ldam", TF.ldam_loss, ref.ldam, ("multiclass", "multilabel"), True),
    Case(
        "ldam_s5",
        TF.ldam_loss,
        ref.ldam,
        ("multiclass", "multilabel"),
        True,
        {"scale": 5.0, "max_margin": 0.8},
    ),
    Case("lmf", TF.lmf_loss, ref.lmf, ("multiclass", "multilabel"), True, has_gamma=True),
    Case(
        "lmf_mixed",
        TF.lmf_loss,
        ref.lmf,
        ("multiclass", "multilabel"),
        True,
        {"gamma": 0.7, "ldam_weight": 0.3, "focal_weight": 2.0, "scale": 8.0},
        has_gamma=True,
    ),
    Case(
        "lmf_same_scale",
        TF.lmf_loss,
        ref.lmf,
        ("multiclass", "multilabel"),
        True,
        {"gamma": 1.5, "scale": 4.0, "focal_scale": 4.0},
        has_gamma=True,
    ),
    Case(
        "dual_focal",
        TF.dual_focal_loss,
        ref.dual_focal,
        ("multiclass", "multilabel"),
        has_gamma=True,
    ),
    Case(
        "dual_focal_g05",
        TF.dual_focal_loss,
        ref.dual_focal,
        ("multiclass", "multilabel"),
        params={"gamma": 0.5, "alpha": 0.7, "beta": 1.3},
        has_gamma=True,
    ),
    Case(
        "dual_focal_rho",
        TF.dual_focal_loss,
        ref.dual_focal,
        ("multiclass", "multilabel"),
        params={"gamma": 2.5, "rho": 1.5, "beta": 0.5},
        has_gamma=True,
    ),
    Case("balanced_softmax", TF.balanced_softmax_loss, ref.balanced_softmax, uses_counts=True),
    Case(
        "logit_adjusted",
        TF.logit_adjusted_loss,
        ref.logit_adjusted,
        uses_counts=True,
        params={"tau": 1.5},
    ),
    Case("poly1", TF.poly1_loss, ref.poly1, params={"epsilon": 2.0}),
]

TASK_CASES = [(c, task) for c in CASES for task in c.tasks]


def case_id(value):
    if isinstance(value, Case):
        return value.name
    return None


def make_batch(
    task: str,
    shape: tuple[int, ...],
    ignore_fraction: float = 0.0,
    dtype=torch.float64,
    scale: float = 3.0,
    generator=None,
):
    """Random logits of ``shape`` and matching targets, a fraction of them ignore_index."""
    z = (torch.randn(shape, dtype=torch.float64, generator=generator) * scale).to(dtype)
    n, c = shape[0], shape[1]
    if task == "multiclass":
        t = torch.randint(0, c, (n, *shape[2:]), generator=generator)
    else:
        t = (torch.rand(shape, generator=generator) < 0.3).long()
    if ignore_fraction:
        mask = torch.rand(t.shape, generator=generator) < ignore_fraction
        t = torch.where(mask, torch.full_like(t, -100), t)
    return z, t
