"""The comparison figure: seeds as points on an axis fitted to the data, and the differences to
the baseline with their intervals."""

from __future__ import annotations

import math

from PIL import Image

from torch_imbalance.metrics.plots import summary_plot


def test_summary_axis_fits_the_data_so_small_differences_show(tmp_path):
    rows = [
        {"label": "ce", "values": [0.951, 0.955, 0.949], "per_seed": [], "mean": None,
         "interval": None, "verdict": "reference"},
        {"label": "lmf", "values": [0.968, 0.972, 0.965], "per_seed": [0.017, 0.017, 0.016],
         "mean": 0.0167, "interval": (0.015, 0.018), "verdict": "better"},
        {"label": "one_seed", "values": [0.960], "per_seed": [0.009], "mean": 0.009,
         "interval": (-math.inf, math.inf), "verdict": "cannot tell"},
    ]  # fmt: skip
    path = tmp_path / "summary.png"
    bottom, top = summary_plot(rows, "macro_f1", "ce", path)
    assert Image.open(path).size[0] > 0
    everything = [v for row in rows for v in row["values"]]
    assert bottom < min(everything) and top > max(everything)
    # A bar chart from 0 would span 1.0; this axis spans a few points.
    assert top - bottom < 0.2, (bottom, top)
