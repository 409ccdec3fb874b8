"""Class-weight schemes and LDAM margins against their formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import torch_imbalance as ti

COUNTS = [1200, 340, 55, 9]


def test_inverse_frequency():
    n = np.array(COUNTS, dtype=float)
    for power in (1.0, 0.5):
        w = n**-power
        expected = w / w.sum() * len(n)
        np.testing.assert_allclose(
            ti.inverse_frequency_weights(COUNTS, power).numpy(), expected, rtol=1e-6
        )


def test_median_frequency():
    n = np.array(COUNTS, dtype=float)
    pi = n / n.sum()
    np.testing.assert_allclose(
        ti.median_frequency_weights(COUNTS).numpy(), np.median(pi) / pi, rtol=1e-6
    )


@pytest.mark.parametrize("beta", [0.9, 0.99, 0.999, 0.9999])
def test_effective_number(beta):
    n = np.array(COUNTS, dtype=float)
    w = (1 - beta) / (1 - beta**n)
    np.testing.assert_allclose(
        ti.effective_number_weights(COUNTS, beta).numpy(), w / w.sum() * 4, rtol=1e-6
    )


def test_effective_number_beta0_is_uniform():
    assert torch.equal(ti.effective_number_weights(COUNTS, 0.0), torch.ones(4))


def test_ldam_margins():
    n = np.array(COUNTS, dtype=float)
    np.testing.assert_allclose(
        ti.ldam_margins(COUNTS, 0.7).numpy(), 0.7 * (n.min() / n) ** 0.25, rtol=1e-6
    )
    assert ti.ldam_margins(torch.tensor(COUNTS), 0.5).max().item() == pytest.approx(0.5)
    assert ti.ldam_margins(COUNTS, dtype=torch.float64).dtype == torch.float64


def test_counts_accept_tensors_and_arrays():
    for counts in (torch.tensor(COUNTS), np.array(COUNTS), tuple(COUNTS)):
        torch.testing.assert_close(
            ti.inverse_frequency_weights(counts), ti.inverse_frequency_weights(COUNTS)
        )


def test_zero_count_names_every_bad_class():
    with pytest.raises(ValueError, match="class 1 has count 0.0, class 3 has count -1.0"):
        ti.effective_number_weights([5, 0, 2, -1])
