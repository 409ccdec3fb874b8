"""The comparison runner: losses × seeds (× models) on one dataset, then the answer to "which
loss should I use?" with the seed-aware statistics (``engine/analysis.py``).

Each run gets its own folder ``out/<model>/<loss>/seed-<k>``; a run whose ``metrics.json``
exists is skipped and a run killed midway resumes from its last checkpoint, so a killed
comparison continues where it stopped. The grid runs seed by seed (every loss's seed 0 first), so
a partial comparison already covers every loss. ``race`` adds seeds only to the losses still in
contention.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch_imbalance.engine.analysis import Analysis, analyse
from torch_imbalance.engine.config import resolve_config
from torch_imbalance.engine.losses import HARNESS_LOSSES
from torch_imbalance.engine.run import LAST_CHECKPOINT, train
from torch_imbalance.engine.tasks import PREDICTIONS, task_for


@dataclass(frozen=True)
class Arm:
    """One loss setting of a comparison: a registry (or harness) loss, its overrides and run
    settings of its own (``gamma_lr``, ...), under a label (its folder's name)."""

    label: str
    loss: str
    params: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Arm:
        """``LOSS`` or ``LABEL=LOSS:KEY=VALUE:...`` (values read as YAML).

        Examples:
            >>> Arm.parse("strong=focal:gamma=3")
            Arm(label='strong', loss='focal', params={'gamma': 3}, settings={})
        """
        from torch_imbalance.cli.options import key_value

        label, _, rest = text.partition("=") if "=" in text.split(":")[0] else ("", "", text)
        loss, *options = rest.split(":")
        params = dict(key_value(option) for option in options if option)
        return cls(label.strip() or loss.strip(), loss.strip(), params)


def run_folder(out: Path, model: str, label: str, seed: int) -> Path:
    return out / model / label / f"seed-{seed}"


def compare(
    base: dict[str, Any],
    losses: Sequence[str | Arm],
    seeds: list[int],
    out: Path,
    models: list[str] | None = None,
    keep: Path | None = None,
    race: bool = False,
    max_seeds: int | None = None,
    time_budget: float | None = None,
) -> dict[str, Any]:
    """Run the grid (finished runs skipped), then write ``results.csv``, ``summary.md``,
    ``summary.json`` and ``summary.png`` into ``out`` and print the summary and its answer.

    Args:
        base: settings shared by every run (as from a YAML file and flags).
        losses: registry names or arms (:meth:`Arm.parse` spells them on the command line).
        seeds: seeds (each loss runs once per seed); with ``race``, the seeds every loss gets.
        out: the comparison folder.
        models: timm names (default: ``base``'s model).
        keep: also copy each finished run's small results (no checkpoints) to
            ``keep/<loss>/seed-<k>`` and count a run kept there as done.
        race: after ``seeds``, add one seed at a time to the losses still in contention (not
            significantly behind the leader, Holm) until one is left, ``max_seeds`` or
            ``time_budget``.
        max_seeds: the race's most seeds per loss (default: ``len(seeds) + 5``).
        time_budget: the race's wall time in seconds (no new round starts after it).
    """
    from rich.console import Console

    console = Console()
    arms = [a if isinstance(a, Arm) else Arm.parse(a) for a in losses]
    task = task_for(base.get("task", "classification"))
    models = models or [base.get("model") or task.default_model]
    check_grid(arms, seeds, race)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    done: dict[tuple[str, str], list[int]] = {(m, a.label): [] for m in models for a in arms}
    rows: list[dict[str, Any]] = []
    skipped = 0
    rounds = [(list(seeds), arms)]
    ran_seeds = list(seeds)
    while rounds:
        round_seeds, round_arms = rounds.pop()
        grid = [(m, a, s) for s in round_seeds for m in models for a in round_arms]
        for number, (model, arm, seed) in enumerate(grid, 1):
            label = f"[{number}/{len(grid)}] {model} · {arm.label} · seed {seed}"
            settings = {**base, **arm.settings, "model": model, "loss": arm.loss, "seed": seed}
            settings["loss_params"] = {**base.get("loss_params", {}), **arm.params}
            folder = run_folder(out, model, arm.label, seed)
            kept = None if keep is None else keep / arm.label / f"seed-{seed}"
            metrics, was_done = run_once(settings, folder, label, console, kept)
            skipped += was_done
            done[(model, arm.label)].append(seed)
            rows.append(result_row(model, arm.label, seed, metrics, task.summary_metrics))
        if race:
            analyses = {m: analyse_runs(out, keep, m, arms, done) for m in models}
            contenders = race_contenders(list(analyses.values()), round_arms)
            dropped = [a.label for a in round_arms if a not in contenders]
            if dropped:
                console.print(f"race: {', '.join(dropped)} significantly behind the leader, out")
            limit = max_seeds if max_seeds is not None else len(seeds) + 5
            over_time = time_budget is not None and time.perf_counter() - started >= time_budget
            if len(contenders) > 1 and len(ran_seeds) < limit and not over_time:
                ran_seeds.append(max(ran_seeds) + 1)
                console.print(
                    f"race: seed {ran_seeds[-1]} for {', '.join(a.label for a in contenders)}"
                )
                rounds.append(([ran_seeds[-1]], contenders))
            elif len(contenders) > 1:
                why = "the time budget" if over_time else f"{limit} seeds"
                console.print(f"race: stopped at {why}, {len(contenders)} losses still open")
    wall = time.perf_counter() - started
    write_results(out / "results.csv", rows)
    analyses = {m: analyse_runs(out, keep, m, arms, done) for m in models}
    report = summary_markdown(base, analyses, models, len(rows))
    (out / "summary.md").write_text(report)
    write_json_summary(out / "summary.json", analyses, wall)
    from torch_imbalance.metrics.plots import summary_plot

    first = analyses[models[0]]
    summary_plot(plot_rows(first), first.metric, first.baseline, out / "summary.png")
    task.comparison_figures(
        {
            a.label: folder
            for a in arms
            for folder in (
                run_folder(out, models[0], a.label, seeds[0]),
                *([keep / a.label / f"seed-{seeds[0]}"] if keep is not None else []),
            )
            if (folder / "metrics.json").is_file()
        },
        out,
    )
    print(report)  # plain Markdown, unwrapped, to paste as is
    console.print(
        f"\n{len(rows)} runs ({skipped} done before) in {wall:.0f} s · "
        f"table: {out / 'summary.md'} · plot: {out / 'summary.png'} · "
        f"per run: {out / 'results.csv'}",
        soft_wrap=True,
    )
    return {"rows": rows, "analyses": analyses, "wall_seconds": wall}


def race_contenders(analyses: list[Analysis], round_arms: list[Arm]) -> list[Arm]:
    """The arms of this round that no analysis (one per model) finds significantly behind its
    leader; an arm once dropped is not in a later round, so it stays dropped."""
    return [a for a in round_arms if all(a.label in found.contenders() for found in analyses)]


def check_grid(arms: list[Arm], seeds: list[int], race: bool) -> None:
    """Fail before training anything: unknown losses, repeated labels, too few seeds."""
    from torch_imbalance.registry import available_losses

    if not arms or not seeds:
        raise ValueError("compare needs at least one loss and one seed")
    known = [*available_losses(), *HARNESS_LOSSES]
    for arm in arms:
        if arm.loss not in known:
            raise ValueError(f"unknown loss {arm.loss!r}; available: {', '.join(known)}")
    labels = [a.label for a in arms]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ValueError(f"each loss needs its own label; repeated: {repeated}")
    if race and (len(seeds) < 2 or len(arms) < 2):
        raise ValueError(
            "--race needs at least two losses and two starting seeds (a loss is dropped only "
            f"when the seeds show it behind); got {len(arms)} loss(es), seeds {seeds}"
        )


def analyse_runs(
    out: Path,
    keep: Path | None,
    model: str,
    arms: list[Arm],
    done: dict[tuple[str, str], list[int]],
) -> Analysis:
    """:func:`analyse` of one model's finished runs (the kept copies where there are any)."""
    folders = {}
    for arm in arms:
        folders[arm.label] = {
            seed: (
                keep / arm.label / f"seed-{seed}"
                if keep is not None and (keep / arm.label / f"seed-{seed}").is_dir()
                else run_folder(out, model, arm.label, seed)
            )
            for seed in sorted(set(done[(model, arm.label)]))
        }
    return analyse(folders)


def run_once(
    settings: dict[str, Any],
    folder: Path,
    label: str,
    console: Any,
    kept: Path | None = None,
) -> tuple[dict[str, Any], bool]:
    """Train one run into ``folder`` unless its ``metrics.json`` (or one in ``kept``) exists; a
    run killed after a checkpoint resumes, one killed before it starts over. With ``kept``, the
    finished run's small results are copied there. Returns ``(metrics, was_done)``."""
    for found in (kept, folder):
        if found is not None and (found / "metrics.json").is_file():
            console.print(f"{label}: done before, skipped")
            return json.loads((found / "metrics.json").read_text()), True
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
    if kept is not None:
        keep_results(folder, kept)
    return metrics, False


def keep_results(run_dir: Path, target: Path) -> None:
    """Copy a finished run's small outputs to ``target``: ``metrics.json`` last (its presence
    marks the copy complete), the per-item test outcome, overlay tiles and the training curves
    as one CSV; no checkpoints, logs or figures."""
    from torch_imbalance.metrics.plots import read_metrics_csv

    target.mkdir(parents=True, exist_ok=True)
    for name in ("overlay_tiles.npz",):
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, target / name)
    for name in ("test.csv", "test_confusion.npz"):
        if (run_dir / PREDICTIONS / name).is_file():
            shutil.copy2(run_dir / PREDICTIONS / name, target / name)
    curves = read_metrics_csv(run_dir / "logs" / "csv")
    epochs = sorted({epoch for series in curves.values() for epoch, _ in series})
    lookup = {key: dict(series) for key, series in curves.items()}
    with open(target / "curves.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epoch", *curves])
        for epoch in epochs:
            writer.writerow([epoch, *(lookup[key].get(epoch, "") for key in curves)])
    shutil.copy2(run_dir / "metrics.json", target / ".metrics.json.tmp")
    (target / ".metrics.json.tmp").replace(target / "metrics.json")


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


def summary_markdown(
    base: dict[str, Any], analyses: dict[str, Analysis], models: list[str], runs: int
) -> str:
    """``summary.md``: per model, the table and the answer."""
    parts = [
        f"# Comparison on {base.get('dataset', 'digits-lt')}\n",
        f"{runs} runs; test split, mean ± std over seeds (one seed: the value). Δ: the paired "
        "difference to the baseline on the same seed's split, in points, per seed and as the mean "
        "with its seed-aware interval (the t-interval over the per-seed Δ, widened where seeds "
        "share a test set), at the level of its Holm step (95 % family-wise). `better` / "
        "`worse`: the interval is above / below 0.\n",
    ]
    for model in models:
        analysis = analyses[model]
        if len(models) > 1:
            parts.append(f"## {model}\n")
        parts.append(analysis.markdown() + "\n")
        parts.append(f"**Answer:** {analysis.sentence()}\n")
    return "\n".join(parts)


def write_json_summary(path: Path, analyses: dict[str, Analysis], wall: float) -> None:
    payload = {"wall_seconds": wall, "models": {m: a.as_json() for m, a in analyses.items()}}
    path.write_text(json.dumps(payload, indent=1))


def plot_rows(analysis: Analysis) -> list[dict[str, Any]]:
    """What :func:`~torch_imbalance.metrics.plots.summary_plot` draws per loss."""
    rows = []
    for label, arm in analysis.arms.items():
        found = analysis.versus_baseline.get(label, {}).get(analysis.metric)
        rows.append(
            {
                "label": label,
                "values": list(arm.values(analysis.metric).values()),
                "per_seed": list(found.found.per_seed) if found else [],
                "mean": found.found.mean if found else None,
                "interval": found.interval if found else None,
                "verdict": found.verdict if found else "reference",
            }
        )
    return rows
