"""The comparison figure: seeds as points on an axis fitted to the data."""

from __future__ import annotations

from PIL import Image

from torch_imbalance.metrics.plots import comparison_plot


def test_comparison_axis_fits_the_data_so_small_differences_show(tmp_path):
    values = {
        "ce": {"macro_f1": [0.951, 0.955, 0.949], "balanced_accuracy": [0.95, 0.96, 0.955]},
        "lmf": {"macro_f1": [0.968, 0.972, 0.965], "balanced_accuracy": [0.97, 0.97, 0.975]},
        "one_seed": {"macro_f1": [0.960], "balanced_accuracy": [float("nan")]},
    }
    path = tmp_path / "summary.png"
    limits = comparison_plot(values, ["macro_f1", "balanced_accuracy"], path)
    assert Image.open(path).size[0] > 0
    for (bottom, top), metric in zip(limits, ["macro_f1", "balanced_accuracy"], strict=True):
        everything = [v for loss in values.values() for v in loss[metric] if v == v]
        assert bottom < min(everything) and top > max(everything)
        # A bar chart from 0 would span 1.0; this axis spans a few points.
        assert top - bottom < 0.2, (metric, bottom, top)
