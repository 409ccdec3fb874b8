"""Figures of a run (matplotlib, no screen needed)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def confusion_matrix_plot(matrix: list[list[int]], classes: list[str], path: Path) -> None:
    """Row-normalised confusion matrix (recall per true class) with the counts written in."""
    counts = np.asarray(matrix, dtype=float)
    rows = counts.sum(1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    size = max(4.0, 0.6 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(
                j,
                i,
                f"{int(counts[i, j])}",
                ha="center",
                va="center",
                color="white" if share[i, j] > 0.5 else "black",
                fontsize=8,
            )
    ax.set_title("confusion matrix (colour: share of the true class)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def per_class_f1_plot(per_class: dict[str, dict[str, float]], path: Path) -> None:
    """Per-class F1 bars, annotated with each class's test support."""
    names = list(per_class)
    f1 = [per_class[n]["f1"] for n in names]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(names) + 2), 3.5))
    bars = ax.bar(range(len(names)), f1, color="tab:blue")
    for bar, name in zip(bars, names, strict=True):
        ax.text(
            bar.get_x() + bar.get_width() / 2,
            bar.get_height() + 0.01,
            f"n={per_class[name]['support']}",
            ha="center",
            fontsize=7,
        )
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("F1")
    ax.set_title("per-class F1 (test)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def read_metrics_csv(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Lightning's CSV logs under ``folder`` (the first attempt, then each resume) as
    ``{column: [(epoch, value), ...]}``; a later attempt's value for an epoch replaces an
    earlier one, empty cells are skipped."""
    merged: dict[str, dict[int, float]] = {}
    files = sorted(folder.glob("*/metrics.csv"), key=lambda p: _attempt(p.parent.name))
    for path in [folder / "metrics.csv", *files]:
        if not path.is_file():
            continue
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                epoch = row.get("epoch")
                if not epoch:
                    continue
                for key, value in row.items():
                    if key in ("epoch", "step") or not value:
                        continue
                    merged.setdefault(key, {})[int(float(epoch))] = float(value)
    return {key: sorted(values.items()) for key, values in merged.items()}


def _attempt(name: str) -> int:
    return int(name.rsplit("-", 1)[-1]) if name.startswith("resume-") else 0


def training_curves_plot(series: dict[str, list[tuple[int, float]]], path: Path) -> None:
    """Loss curves, validation macro F1 / balanced accuracy, and γ and class weights when the
    loss has them."""
    panels: list[tuple[str, list[str]]] = [
        ("loss", [k for k in ("train/loss", "val/loss") if k in series]),
        ("validation", [k for k in ("val/macro_f1", "val/balanced_accuracy") if k in series]),
        ("loss state", sorted(k for k in series if k.startswith("loss/"))),
    ]
    panels = [(title, keys) for title, keys in panels if keys]
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(4.2 * max(1, len(panels)), 3.3))
    axes = np.atleast_1d(axes)
    for ax, (title, keys) in zip(axes, panels, strict=False):
        for key in keys:
            epochs, values = zip(*series[key], strict=True)
            ax.plot(epochs, values, marker="o", markersize=3, label=key)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def summary_plot(rows: list[dict], metric: str, baseline: str, path: Path) -> tuple:
    """A comparison at a glance. Left: each seed's test value per loss (points) with the mean
    and its ±std, on an axis fitted to the data (so differences of a point or two show).
    Right: each loss's paired difference to the baseline in points: the per-seed differences
    (points), their mean (diamond) and the seed-aware interval at its Holm level (bar), coloured
    by the verdict.

    Args:
        rows: per loss: ``label``, ``values`` (per seed), ``per_seed`` Δ, ``mean`` Δ,
            ``interval`` (or None for the baseline) and ``verdict``.
        metric: the metric's name.
        baseline: the reference loss's name.
        path: the PNG to write.

    Returns:
        The left panel's y-axis limits.
    """
    colours = {"better": "tab:green", "worse": "tab:red", "cannot tell": "tab:gray"}
    labels = [r["label"] for r in rows]
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(max(4.5, 0.5 * len(labels) + 2) + 5.0, 0.35 * len(labels) + 3.2)
    )
    everything: list[float] = []
    for x, row in enumerate(rows):
        points = np.asarray(row["values"], dtype=float)
        points = points[np.isfinite(points)]
        if points.size == 0:
            continue
        offsets = np.linspace(-0.15, 0.15, points.size) if points.size > 1 else np.zeros(1)
        left.plot(x + offsets, points, "o", color="tab:blue", alpha=0.6, markersize=4)
        mean = float(points.mean())
        spread = float(points.std(ddof=1)) if points.size > 1 else 0.0
        left.errorbar(x, mean, yerr=spread, fmt="D", color="black", capsize=4, markersize=4)
        everything += [*points.tolist(), mean - spread, mean + spread]
    left.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    left.set_title(f"test {metric}: seeds (points), mean ± std", fontsize=9)
    if everything:
        bottom, top = min(everything), max(everything)
        pad = max(0.1 * (top - bottom), 0.005)
        left.set_ylim(bottom - pad, top + pad)
    left.grid(axis="y", alpha=0.3)
    for y, row in enumerate(rows):
        if row["interval"] is None:
            continue
        colour = colours.get(row["verdict"], "tab:gray")
        low, high = (100 * v for v in row["interval"])
        if math.isfinite(low) and math.isfinite(high):
            right.plot([low, high], [y, y], color=colour, linewidth=3, alpha=0.7)
        right.plot([100 * v for v in row["per_seed"]], [y] * len(row["per_seed"]), "o",
                   color="tab:blue", alpha=0.6, markersize=4)  # fmt: skip
        right.plot(100 * row["mean"], y, "D", color="black", markersize=5)
    right.axvline(0, color="black", linewidth=0.8)
    right.set_yticks(
        range(len(labels)),
        [
            f"{label} (reference)" if r["interval"] is None else label
            for label, r in zip(labels, rows, strict=True)
        ],
    )
    right.set_ylim(len(labels) - 0.5, -0.5)
    right.set_xlabel(f"Δ {metric} vs {baseline} (points)")
    right.set_title("per seed (points), mean (◆), seed-aware interval (bar):\n"
                    "green better, red worse, grey cannot tell", fontsize=8)  # fmt: skip
    right.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    limits = tuple(map(float, left.get_ylim()))
    plt.close(fig)
    return limits


def _class_colours(count: int) -> np.ndarray:
    """Fixed colours: black background, then distinct hues."""
    base = np.array(
        [[0, 0, 0], [230, 159, 0], [0, 114, 178], [204, 121, 167], [0, 158, 115], [240, 228, 66]],
        dtype=np.uint8,
    )
    if count <= len(base):
        return base[:count]
    extra = (plt.get_cmap("tab20")(np.linspace(0, 1, count - len(base)))[:, :3] * 255).astype(
        np.uint8
    )
    return np.concatenate([base, extra])


def colour_mask(mask: np.ndarray, count: int, ignore_index: int | None = None) -> np.ndarray:
    """``(H, W)`` class indices as an RGB image (ignored pixels grey)."""
    colours = _class_colours(count)
    rgb = colours[np.clip(mask, 0, count - 1)]
    if ignore_index is not None:
        rgb[mask == ignore_index] = 128
    return rgb


def overlay_plot(
    images: np.ndarray,
    targets: np.ndarray,
    predictions: dict[str, np.ndarray],
    ids: list[str],
    classes: list[str],
    path: Path,
    ignore_index: int | None = None,
) -> None:
    """One row per tile: the image, its ground truth, then each named prediction."""
    columns = 2 + len(predictions)
    fig, axes = plt.subplots(
        len(ids), columns, figsize=(2.2 * columns, 2.2 * len(ids) + 0.5), squeeze=False
    )
    for row, tile in enumerate(ids):
        axes[row][0].imshow(images[row], cmap="gray")
        axes[row][0].set_title(tile, fontsize=7)
        axes[row][1].imshow(colour_mask(targets[row], len(classes), ignore_index))
        axes[row][1].set_title("ground truth", fontsize=7)
        for column, (name, predicted) in enumerate(predictions.items(), 2):
            axes[row][column].imshow(colour_mask(predicted[row], len(classes)))
            axes[row][column].set_title(name, fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    colours = _class_colours(len(classes)) / 255.0
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours]
    fig.legend(handles, classes, loc="lower center", ncol=len(classes), fontsize=7)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def per_class_bar_plot(values: dict[str, float], title: str, path: Path) -> None:
    """Bars of one value per class (e.g. IoU)."""
    names = list(values)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(names) + 2), 3.3))
    ax.bar(range(len(names)), [values[n] for n in names], color="tab:blue")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
