"""Property tests (hypothesis): any shape, class count, dtype, reduction and ignore mask."""

from __future__ import annotations

import torch
from cases import TASK_CASES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


@st.composite
def problems(draw):
    case, task = draw(st.sampled_from(TASK_CASES))
    n = draw(st.integers(1, 3))
    c = draw(st.integers(2, 6))
    spatial = tuple(draw(st.lists(st.integers(1, 3), min_size=0, max_size=3)))
    shape = (n, c, *spatial)
    dtype = draw(st.sampled_from(DTYPES))
    reduction = draw(st.sampled_from(["mean", "sum", "none"]))
    seed = draw(st.integers(0, 2**31 - 1))
    ignore = draw(st.sampled_from([0.0, 0.2, 0.7, 1.0]))
    weighted = draw(st.booleans())
    scale = draw(st.sampled_from([0.1, 2.0, 6.0]))
    return case, task, shape, dtype, reduction, seed, ignore, weighted, scale


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_any_problem_is_finite_shaped_and_matches_reference(problem):
    case, task, shape, dtype, reduction, seed, ignore, weighted, scale = problem
    g = torch.Generator().manual_seed(seed)
    z = (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(dtype)
    if task == "multiclass":
        t = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g)
    else:
        t = (torch.rand(shape, generator=g) < 0.4).long()
    t = torch.where(torch.rand(t.shape, generator=g) < ignore, torch.full_like(t, -100), t)
    weight = torch.rand(shape[1], generator=g) + 0.2 if weighted else None
    kwargs = {"weight": weight, "reduction": reduction}
    if task == "multilabel":
        kwargs["task"] = task

    z_in = z.clone().requires_grad_()
    loss = case.call_ours(z_in, t, **kwargs)
    expected_shape = () if reduction != "none" else (t.shape if task == "multiclass" else z.shape)
    assert tuple(loss.shape) == tuple(expected_shape)
    assert loss.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert torch.isfinite(loss).all()
    loss.sum().backward()
    assert torch.isfinite(z_in.grad.float()).all()

    expected = case.call_reference(
        z.double(), t, **{**kwargs, "weight": None if weight is None else weight.double()}
    )
    tol = 1e-9 if dtype == torch.float64 else 5e-5
    torch.testing.assert_close(loss.double(), expected, rtol=tol, atol=tol)
