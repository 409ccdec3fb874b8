"""Every loss against its float64 reference: values and gradients over the convention matrix."""

from __future__ import annotations

import pytest
import torch
from cases import TASK_CASES, case_id, make_batch

SHAPES = [(7, 4), (3, 4, 5, 6), (2, 4, 3, 4, 5)]
REDUCTIONS = ["mean", "sum", "none"]


def _weight(c):
    return torch.linspace(0.3, 2.0, c, dtype=torch.float64)


@pytest.mark.parametrize(("case", "task"), TASK_CASES, ids=lambda v: case_id(v) or v)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{len(s) - 2}d")
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("ignore", [0.0, 0.3], ids=["all-valid", "ignore30"])
def test_matches_reference_float64(case, task, shape, reduction, weighted, ignore):
    z, t = make_batch(task, shape, ignore)
    weight = _weight(shape[1]) if weighted else None
    kwargs = {"weight": weight, "reduction": reduction}
    if task == "multilabel":
        kwargs["task"] = task
    ours_in = z.clone().requires_grad_()
    ref_in = z.clone().requires_grad_()
    ours = case.call_ours(ours_in, t, **kwargs)
    expected = case.call_reference(ref_in, t, **kwargs)
    assert ours.shape == expected.shape
    assert ours.dtype == torch.float64
    torch.testing.assert_close(ours, expected, rtol=1e-9, atol=1e-11)
    # Gradients of a random projection, so 'none' checks every element's gradient too.
    probe = torch.randn_like(expected)
    (g_ours,) = torch.autograd.grad((ours * probe).sum(), ours_in)
    (g_ref,) = torch.autograd.grad((expected * probe).sum(), ref_in)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize(("case", "task"), TASK_CASES, ids=lambda v: case_id(v) or v)
def test_float32_close_to_float64_reference(case, task):
    z, t = make_batch(task, (4, 5, 6, 6), 0.1, dtype=torch.float32)
    ours = case.call_ours(z, t, **({"task": task} if task == "multilabel" else {}))
    expected = case.call_reference(
        z.double(), t, **({"task": task} if task == "multilabel" else {})
    )
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours.double(), expected, rtol=2e-5, atol=1e-6)
