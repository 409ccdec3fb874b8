"""The comparison runner: losses × seeds (× models) on one dataset, then a summary.

Each run gets its own folder ``out/<model>/<loss>/seed-<k>``; a run whose ``metrics.json``
exists is skipped and a run killed midway resumes from its last checkpoint, so a killed
comparison continues where it stopped.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

from torch_imbalance.engine.config import resolve_config
from torch_imbalance.engine.losses import HARNESS_LOSSES
from torch_imbalance.engine.run import LAST_CHECKPOINT, train
from torch_imbalance.engine.tasks import task_for

#: Metrics where lower is better (bold marks the minimum).
LOWER_IS_BETTER = frozenset({"ece"})
BASELINE = "ce"


def run_folder(out: Path, model: str, loss: str, seed: int) -> Path:
    return out / model / loss / f"seed-{seed}"


def compare(
    base: dict[str, Any],
    losses: list[str],
    seeds: list[int],
    out: Path,
    models: list[str] | None = None,
) -> dict[str, Any]:
    """Run the grid (finished runs skipped), then write ``results.csv``, ``summary.md`` and
    ``summary.png`` into ``out`` and print the summary table.

    Args:
        base: settings shared by every run (as from a YAML file and flags).
        losses: registry names.
        seeds: seeds (each loss runs once per seed).
        out: the comparison folder.
        models: timm names (default: ``base``'s model).
    """
    from rich.console import Console

    console = Console()
    task = task_for(base.get("task", "classification"))
    names = task.summary_metrics
    models = models or [base.get("model") or task.default_model]
    if not losses or not seeds:
        raise ValueError("compare needs at least one loss and one seed")
    for loss in losses:  # fail before training anything
        from torch_imbalance.registry import available_losses

        known = [*available_losses(), *HARNESS_LOSSES]
        if loss not in known:
            raise ValueError(f"unknown loss {loss!r}; available: {', '.join(known)}")
    out.mkdir(parents=True, exist_ok=True)
    grid = [(m, loss, s) for m in models for loss in losses for s in seeds]
    rows = []
    skipped = 0
    started = time.perf_counter()
    for number, (model, loss, seed) in enumerate(grid, 1):
        folder = run_folder(out, model, loss, seed)
        label = f"[{number}/{len(grid)}] {model} · {loss} · seed {seed}"
        settings = {**base, "model": model, "loss": loss, "seed": seed}
        metrics, was_done = run_once(settings, folder, label, console)
        skipped += was_done
        rows.append(result_row(model, loss, seed, metrics, names))
    wall = time.perf_counter() - started
    write_results(out / "results.csv", rows)
    summary = summarise(rows, names)
    table = summary_markdown(summary, losses, models, names, task.delta_metrics)
    header = (
        f"# Comparison on {base.get('dataset', 'digits-lt')}\n\n"
        f"{len(grid)} runs ({', '.join(models)}; seeds {', '.join(map(str, seeds))}); "
        "test split, mean ± std over seeds (one seed: the value); Δ = paired difference to "
        "`ce` (same seed), "
        "in points; best in bold.\n\n"
    )
    (out / "summary.md").write_text(header + table + "\n")
    from torch_imbalance.metrics.plots import comparison_plot

    comparison_plot(
        {
            f"{m}/{loss}" if len(models) > 1 else loss: {
                name: [r[name] for r in rows if r["model"] == m and r["loss"] == loss]
                for name in task.plot_metrics
            }
            for m in models
            for loss in losses
        },
        list(task.plot_metrics),
        out / "summary.png",
    )
    task.comparison_figures(
        {loss: run_folder(out, models[0], loss, seeds[0]) for loss in losses}, out
    )
    print(table)  # plain Markdown, unwrapped, to paste as is
    console.print(
        f"\n{len(grid)} runs ({skipped} done before) in {wall:.0f} s · "
        f"table: {out / 'summary.md'} · plot: {out / 'summary.png'} · "
        f"per run: {out / 'results.csv'}",
        soft_wrap=True,
    )
    return {"rows": rows, "summary": summary, "wall_seconds": wall}


def run_once(
    settings: dict[str, Any], folder: Path, label: str, console: Any
) -> tuple[dict[str, Any], bool]:
    """Train one run into ``folder`` unless its ``metrics.json`` exists; a run killed after a
    checkpoint resumes, one killed before it starts over. Returns ``(metrics, was_done)``."""
    metrics_file = folder / "metrics.json"
    if metrics_file.is_file():
        console.print(f"{label}: done before, skipped")
        return json.loads(metrics_file.read_text()), True
    settings = {**settings, "out": str(folder)}
    if (folder / LAST_CHECKPOINT).is_file():
        console.print(f"{label}: resuming from {folder / LAST_CHECKPOINT}")
        settings["resume"] = True
        settings.pop("overwrite", None)
    elif folder.exists():
        # Our own half-written folder from a run killed before its first checkpoint.
        settings["overwrite"] = True
    else:
        console.print(f"{label}: training")
    started = time.perf_counter()
    metrics = train(resolve_config(settings))
    console.print(f"{label}: done in {time.perf_counter() - started:.1f} s")
    return metrics, False


def result_row(
    model: str, loss: str, seed: int, metrics: dict[str, Any], names: tuple[str, ...]
) -> dict[str, Any]:
    test = metrics["test"]
    row: dict[str, Any] = {"model": model, "loss": loss, "seed": seed}
    for name in names:
        row[name] = test.get(name, math.nan)
    if "per_class" in test:
        for name, values in test["per_class"].items():
            row[f"f1[{name}]"] = values["f1"]
    for name, value in test.get("per_class_iou", {}).items():
        row[f"iou[{name}]"] = value
    return row


def write_results(path: Path, rows: list[dict[str, Any]]) -> None:
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def summarise(
    rows: list[dict[str, Any]], names: tuple[str, ...]
) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (model, loss): mean and std per metric, and the paired difference to ``ce``."""
    summary: dict[tuple[str, str], dict[str, Any]] = {}
    by_key: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        by_key.setdefault((row["model"], row["loss"]), []).append(row)
    for key, group in by_key.items():
        stats = {}
        for name in names:
            values = [r[name] for r in group]
            stats[name] = (
                statistics.fmean(values),
                statistics.stdev(values) if len(values) > 1 else 0.0,
            )
        deltas = {}
        baseline = {r["seed"]: r for r in by_key.get((key[0], BASELINE), [])}
        for name in names:
            paired = [r[name] - baseline[r["seed"]][name] for r in group if r["seed"] in baseline]
            if paired and key[1] != BASELINE:
                deltas[name] = statistics.fmean(paired)
        summary[key] = {"metrics": stats, "delta": deltas, "runs": len(group)}
    return summary


def summary_markdown(
    summary: dict[tuple[str, str], dict[str, Any]],
    losses: list[str],
    models: list[str],
    names: tuple[str, ...],
    deltas: tuple[str, ...],
) -> str:
    lines = [
        "| model | loss | " + " | ".join(names) + "".join(f" | Δ {d} vs ce" for d in deltas) + " |",
        "|---|---|" + "---:|" * (len(names) + len(deltas)),
    ]
    for model in models:
        keys = [(model, loss) for loss in losses]
        best = {}
        for name in names:
            means = [summary[k]["metrics"][name][0] for k in keys]
            best[name] = min(means) if name in LOWER_IS_BETTER else max(means)
        for key in keys:
            cells = []
            for name in names:
                mean, std = summary[key]["metrics"][name]
                text = f"{mean:.3f} ± {std:.3f}" if summary[key]["runs"] > 1 else f"{mean:.3f}"
                cells.append(f"**{text}**" if mean == best[name] else text)
            for name in deltas:
                delta = summary[key]["delta"].get(name)
                cells.append("–" if delta is None else f"{100 * delta:+.1f}")
            lines.append(f"| {model} | {key[1]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
