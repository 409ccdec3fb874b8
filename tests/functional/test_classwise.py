"""The two forms of class values (``_classwise``): every helper gives the same on an unrolled
list of ``(N, 1, S)`` slices as on the whole ``(N, C, S)`` tensor, compared with plain torch
reductions written here (not with the other form alone)."""

from __future__ import annotations

import pytest
import torch

from torch_imbalance.functional import _classwise as cw


def _inputs(classes: int, ties: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(classes)
    z = torch.randn(3, classes, 7, generator=g, dtype=torch.float64)
    if ties:  # several classes share the maximum: the first one must be marked
        z = z.round()
    target = torch.randint(0, classes, (3, 1, 7), generator=g)
    return z, target


def _whole(values: cw.ClassValues) -> torch.Tensor:
    return cw.assemble(values)


@pytest.mark.parametrize("unrolled", [True, False])
@pytest.mark.parametrize("classes", [1, 2, 5])
def test_reductions_match_torch(unrolled: bool, classes: int) -> None:
    z, target = _inputs(classes)
    x = cw.split_classes(z, unrolled)
    assert isinstance(x, cw.Unrolled) is unrolled
    torch.testing.assert_close(_whole(x), z)
    torch.testing.assert_close(cw.class_sum(x), z.sum(1, keepdim=True))
    torch.testing.assert_close(cw.class_max(x), z.amax(1, keepdim=True))
    torch.testing.assert_close(cw.class_prod(x), z.prod(1, keepdim=True))
    is_target = cw.is_class(target, x)
    expected_mask = torch.nn.functional.one_hot(target.squeeze(1), classes).permute(0, 2, 1)
    assert torch.equal(_whole(is_target), expected_mask.bool())
    torch.testing.assert_close(cw.pick(x, is_target, target), z.gather(1, target))


@pytest.mark.parametrize("unrolled", [True, False])
def test_first_max_marks_exactly_one_class(unrolled: bool) -> None:
    z, _ = _inputs(6, ties=True)
    z[0, :, 0] = 2.0  # every class tied at one element
    top, marks = cw.first_max(cw.split_classes(z, unrolled))
    torch.testing.assert_close(top, z.amax(1, keepdim=True))
    marked = _whole(marks)
    assert torch.equal(marked.sum(1), torch.ones(3, 7, dtype=torch.long))
    torch.testing.assert_close(torch.where(marked.bool(), z, 0.0).sum(1, keepdim=True), top)
    if unrolled:  # the first of equal ones
        assert bool(marked[0, 0, 0])


@pytest.mark.parametrize("unrolled", [True, False])
def test_arithmetic_and_per_class(unrolled: bool) -> None:
    z, target = _inputs(4)
    x = cw.split_classes(z, unrolled)
    per_element = torch.rand(3, 1, 7, dtype=torch.float64) + 0.5
    offsets = torch.tensor([0.5, -1.0, 2.0, 0.0], dtype=torch.float64)
    checks = {
        "sub": (x.sub(per_element), z - per_element),
        "mul": (x.mul(per_element), z * per_element),
        "div": (x.div(per_element), z / per_element),
        "add offsets": (x.add(cw.class_offsets(offsets, x)), z + offsets.view(1, -1, 1)),
        "exp clamp": (x.clamp(-0.5, 0.5).exp(), z.clamp(-0.5, 0.5).exp()),
        "masked_fill": (
            x.masked_fill(cw.is_class(target, x), -1.0),
            z.masked_fill(cw.is_class(target, z), -1.0),
        ),
        "where": (
            cw.per_class(lambda c: torch.where(c > 0, c, 0.0), x),
            torch.where(z > 0, z, 0.0),
        ),
    }
    if unrolled:
        y = cw.split_classes(z * 2, True)
        assert isinstance(x, cw.Unrolled) and isinstance(y, cw.Unrolled)
        checks.update(
            {
                "+": (x + y, z * 3),
                "-": (y - x, z),
                "*": (x * y, 2 * z * z),
                "/": (y / x, torch.full_like(z, 2.0)),
                "neg": (-x, -z),
                "scalar": (2.0 * x - 1.0, 2 * z - 1),
            }
        )
    for name, (got, expected) in checks.items():
        torch.testing.assert_close(_whole(got), expected, msg=name)


def test_unrolls_up_to_the_limit() -> None:
    assert cw.unrolls(cw.UNROLL_CLASSES)
    assert not cw.unrolls(cw.UNROLL_CLASSES + 1)
