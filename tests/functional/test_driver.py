"""The eager driver across chunk boundaries and memory layouts (tiny chunks force many)."""

from __future__ import annotations

import pytest
import torch
from cases import TASK_CASES, case_id, make_batch

from torch_imbalance.functional import _driver


@pytest.fixture
def tiny_chunks(monkeypatch):
    monkeypatch.setattr(_driver, "CHUNK_ELEMENTS", 37)  # not a divisor of anything below


@pytest.mark.parametrize(("case", "task"), TASK_CASES, ids=lambda v: case_id(v) or v)
@pytest.mark.parametrize(
    "shape",
    [(23, 4), (3, 4, 5, 7), (2, 5, 3, 2, 4), (13, 3, 2)],
    ids=["rows-per-chunk", "spatial-chunks", "3d", "few-pixels"],
)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_many_chunks_match_reference(tiny_chunks, case, task, shape, reduction):
    """Per-element losses chunk by chunk, and a reduction's sums, counts and normalisers
    carried across chunks (a multi-label mean: the count and ``1/numel`` of the whole tensor)."""
    z, t = make_batch(task, shape, 0.2)
    z.requires_grad_()
    kwargs = {
        "reduction": reduction,
        "weight": torch.linspace(0.5, 1.5, shape[1], dtype=torch.float64),
    }
    if task == "multilabel":
        kwargs["task"] = task
    ours = case.call_ours(z, t, **kwargs)
    expected = case.call_reference(z, t, **kwargs)
    torch.testing.assert_close(ours, expected, rtol=1e-9, atol=1e-11)
    probe = torch.randn_like(expected)
    (g1,) = torch.autograd.grad((ours * probe).sum(), z)
    (g2,) = torch.autograd.grad((expected * probe).sum(), z)
    torch.testing.assert_close(g1, g2, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize(("case", "task"), TASK_CASES, ids=lambda v: case_id(v) or v)
def test_non_contiguous_logits(tiny_chunks, case, task):
    z, t = make_batch(task, (2, 4, 6, 5), 0.1)
    channels_last = z.contiguous(memory_format=torch.channels_last).requires_grad_()
    plain = z.clone().requires_grad_()
    kwargs = {"task": task} if task == "multilabel" else {}
    a = case.call_ours(channels_last, t, **kwargs)
    b = case.call_ours(plain, t, **kwargs)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    a.backward()
    b.backward()
    torch.testing.assert_close(channels_last.grad, plain.grad, rtol=1e-12, atol=1e-12)


def test_gradient_is_written_in_the_input_dtype_and_layout():
    z, t = make_batch("multiclass", (2, 3, 4, 4), 0.0, dtype=torch.float16)
    z.requires_grad_()
    from torch_imbalance import functional as TF

    TF.lmf_loss(z, t, [5, 3, 1]).backward()
    assert z.grad.dtype == torch.float16 and z.grad.shape == z.shape
