"""What a comparison of losses found, and the answer to "which loss should I use?".

Every loss is compared with the baseline (``ce``) and with the leader (the highest mean of the
primary metric) by the paired, seed-aware statistics of ``metrics/statistics.py``; Holm adjusts
the primary metric's comparisons together (each interval shown at its Holm step's level). The
comparison runner, its race and the study all read their results through :func:`analyse`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from torch_imbalance.engine.tasks import task_for
from torch_imbalance.metrics.classification import frequency_group_f1, frequency_groups
from torch_imbalance.metrics.statistics import (
    Metric,
    PairedDifference,
    RunOutcome,
    class_iou,
    classes_f1,
    format_interval,
    holm,
    holm_levels,
    macro_f1,
    miou,
    paired_difference,
    paired_values,
    read_outcome,
)

BASELINE = "ce"
ALPHA = 0.05
#: Verdicts of a loss against the baseline or the leader.
BETTER, WORSE, UNCLEAR = "better", "worse", "cannot tell"
#: Δ metrics with the statistics, primary first, by task.
DELTA_METRICS = {"classification": ("macro_f1",), "segmentation": ("miou", "rarest_class_iou")}


@dataclass
class ArmResults:
    """One loss's finished runs: ``metrics.json`` and the per-item test outcome per seed."""

    label: str
    metrics: dict[int, dict[str, Any]]
    outcomes: dict[int, RunOutcome] = field(default_factory=dict)

    def values(self, metric: str) -> dict[int, float]:
        """The test value of ``metric`` per seed (as ``metrics.json`` records it)."""
        return {s: float(m["test"].get(metric, math.nan)) for s, m in self.metrics.items()}

    def mean(self, metric: str) -> float:
        return float(np.mean(list(self.values(metric).values())))


def load_arm(label: str, folders: Mapping[int, Path]) -> ArmResults:
    """The finished runs among ``folders`` (seed -> run folder or kept results folder)."""
    metrics, outcomes = {}, {}
    for seed, folder in sorted(folders.items()):
        if not (folder / "metrics.json").is_file():
            continue
        metrics[seed] = json.loads((folder / "metrics.json").read_text())
        outcome = read_outcome(folder, metrics[seed]["dataset"]["classes"])
        if outcome is not None:
            outcomes[seed] = outcome
    return ArmResults(label, metrics, outcomes)


def task_of(arm: ArmResults) -> str:
    first = next(iter(arm.metrics.values()))
    return first["config"]["task"]


def training_counts(arm: ArmResults) -> dict[str, float]:
    """Each class's training images (or pixels), averaged over the arm's seeds."""
    runs = [m["dataset"]["counts"]["train"] for m in arm.metrics.values()]
    return {name: float(np.mean([r[name] for r in runs])) for name in runs[0]}


def metric_function(name: str, reference: ArmResults) -> Metric:
    """The batched score of confusion counts behind a ``metrics.json`` metric (the rarest class:
    fewest training pixels)."""
    if name == "macro_f1":
        return macro_f1
    if name == "miou":
        return miou
    if name == "rarest_class_iou":
        counts = list(training_counts(reference).values())
        return class_iou(int(np.argmin(counts)))
    if name.startswith("f1:"):
        classes = list(next(iter(reference.metrics.values()))["dataset"]["classes"])
        return classes_f1([classes.index(c) for c in name[3:].split(",")])
    raise ValueError(f"no per-item statistic for metric {name!r}")


def difference(
    arm: ArmResults,
    reference: ArmResults | None,
    metric: str,
    resamples: int = 2000,
) -> PairedDifference:
    """The paired difference of ``metric`` (arm − reference, or the arm's value alone), from the
    per-item outcomes where every run has them, else from the runs' values."""
    common = set(arm.metrics) if reference is None else set(arm.metrics) & set(reference.metrics)
    have_items = all(s in arm.outcomes for s in common) and (
        reference is None or all(s in reference.outcomes for s in common)
    )
    try:
        function = metric_function(metric, reference or arm)
    except ValueError:  # a metric with no per-item statistic: from the runs' values
        function = None
    if common and have_items and function is not None:
        return paired_difference(
            arm.outcomes, None if reference is None else reference.outcomes, function, resamples
        )
    return paired_values(
        arm.values(metric), None if reference is None else reference.values(metric), resamples
    )


@dataclass(frozen=True)
class Comparison:
    """One arm against a reference on one metric, at its Holm level."""

    arm: str
    reference: str
    metric: str
    found: PairedDifference
    p_adjusted: float
    level: float

    @property
    def interval(self) -> tuple[float, float]:
        return self.found.interval(self.level)

    @property
    def verdict(self) -> str:
        low, high = self.interval
        return BETTER if low > 0 else WORSE if high < 0 else UNCLEAR

    def text(self) -> str:
        """``+1.2 [-0.4, +2.8]`` in points."""
        return f"{100 * self.found.mean:+.1f} {format_interval(self.interval)}"

    def as_json(self) -> dict[str, Any]:
        return {
            "arm": self.arm,
            "reference": self.reference,
            "metric": self.metric,
            "seeds": list(self.found.seeds),
            "per_seed": list(self.found.per_seed),
            "mean": self.found.mean,
            "interval": list(self.interval),
            "level": self.level,
            "t_interval": list(self.found.t_interval(self.level)),
            "bootstrap_interval": list(self.found.bootstrap_interval(self.level)),
            "shared_test_set": self.found.shared_test_set,
            "p_adjusted": self.p_adjusted,
            "verdict": self.verdict,
        }


def adjust(found: dict[tuple[str, str], PairedDifference], metric: str) -> dict:
    """Holm across a family of ``{(arm, reference): difference}``."""
    keys = list(found)
    p_values = [found[k].p_value() for k in keys]
    adjusted, levels = holm(p_values), holm_levels(p_values, ALPHA)
    return {
        key: Comparison(key[0], key[1], metric, found[key], p, level)
        for key, p, level in zip(keys, adjusted, levels, strict=True)
    }


@dataclass
class Analysis:
    """A comparison's findings (see :func:`analyse`)."""

    task: str
    metric: str
    baseline: str
    arms: dict[str, ArmResults]
    versus_baseline: dict[str, dict[str, Comparison]]
    leader: str
    versus_leader: dict[str, Comparison]
    groups: dict[str, list[int]]

    @property
    def seeds(self) -> int:
        """The most seeds any arm has."""
        return max(len(a.metrics) for a in self.arms.values())

    def contenders(self) -> list[str]:
        """The leader and every arm not significantly behind it."""
        return [
            label
            for label in self.arms
            if label == self.leader
            or label not in self.versus_leader
            or self.versus_leader[label].verdict != WORSE
        ]

    def group_means(self, label: str) -> dict[str, float]:
        """Mean over seeds of the F1 of each frequency group's classes."""
        arm = self.arms[label]
        counts = training_counts(self.arms[self.baseline])
        per_seed = [
            frequency_group_f1(m["test"]["per_class"], counts) for m in arm.metrics.values()
        ]
        return {name: float(np.mean([g[name] for g in per_seed])) for name in self.groups}

    def sentence(self) -> str:
        """The answer in one plain sentence (or two)."""
        metric, base = self.metric.replace("_", " "), self.baseline
        first = self.versus_baseline.get(self.leader, {}).get(self.metric)
        seeds = f"{self.seeds} seed{'s' if self.seeds != 1 else ''}"
        level = "Holm-adjusted 95 %"
        if first is not None and first.verdict == BETTER:
            tied = [
                f"`{label}`"
                for label, c in self.versus_leader.items()
                if label != self.leader and c.verdict == UNCLEAR
            ]
            text = (
                f"Use `{self.leader}`: it beats `{base}` by {first.text()} points of {metric} "
                f"({level}, {seeds})"
            )
            if tied:
                text += f"; it is not yet distinguishable from {_join(tied)} at {seeds}"
            else:
                text += ", and is ahead of every other loss compared"
            return text + "."
        candidates = [c[self.metric] for c in self.versus_baseline.values() if self.metric in c]
        worse = [f"`{c.arm}`" for c in candidates if c.verdict == WORSE]
        winners = [c for c in candidates if c.verdict == BETTER]
        if winners:  # the leader's own gain is not yet clear, another loss's is
            best = max(winners, key=lambda c: c.found.mean)
            return (
                f"Use `{best.arm}`: it beats `{base}` by {best.text()} points of {metric} "
                f"({level}, {seeds}); `{self.leader}` has the higher mean but is not yet "
                f"distinguishable from `{base}`."
            )
        if self.seeds < 2:
            text = (
                "One seed cannot tell the losses apart: the training randomness is unknown; "
                "run at least 3 seeds (`--seeds 0,1,2`) or `--race`"
            )
            return text + "."
        verb = "beats" if worse else "is distinguishable from"
        text = f"No loss {verb} `{base}` on {metric} at {seeds} ({level})"
        gains = [c for c in candidates if c.found.mean > 0]
        if gains:
            best = max(gains, key=lambda c: c.found.mean)
            needed = best.found.seeds_needed()
            text += f": the largest gain, `{best.arm}` {best.text()} points,"
            text += (
                f" would need about {needed} seeds to be told apart (a paired t-test at 5 %, "
                "80 % power, at the observed seed-to-seed spread)"
                if needed
                else " is too small against its seed-to-seed spread to be told apart"
            )
        if worse:
            text += f". {_join(worse)} {'is' if len(worse) == 1 else 'are'} worse than `{base}`"
        return text + "."

    def markdown(self) -> str:
        """The table: per loss, mean ± std of the summary metrics, frequency-group F1, per-seed
        Δ of each Δ metric, its interval at the Holm level and the verdict against the
        baseline."""
        names = task_for(self.task).summary_metrics
        deltas = DELTA_METRICS.get(self.task, (self.metric,))
        header = ["loss", "seeds", *names]
        if self.groups:
            header.append("F1 " + " / ".join(self.groups))
        for d in deltas:
            header += [f"Δ {d} per seed", f"Δ {d} [Holm 95 %]"]
        header.append(f"vs {self.baseline}")
        lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
        for label, arm in self.arms.items():
            cells = [f"`{label}`", str(len(arm.metrics))]
            for name in names:
                values = list(arm.values(name).values())
                cells.append(_mean_std(values))
            if self.groups:
                cells.append(" / ".join(f"{v:.3f}" for v in self.group_means(label).values()))
            for d in deltas:
                found = self.versus_baseline.get(label, {}).get(d)
                if found is None:
                    cells += ["–", "–"]
                    continue
                cells.append(" ".join(f"{100 * v:+.1f}" for v in found.found.per_seed))
                cells.append(found.text())
            found = self.versus_baseline.get(label, {}).get(self.metric)
            cells.append("reference" if label == self.baseline else found.verdict if found else "–")
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "metric": self.metric,
            "baseline": self.baseline,
            "leader": self.leader,
            "answer": self.sentence(),
            "seeds": {label: sorted(a.metrics) for label, a in self.arms.items()},
            "versus_baseline": {
                label: {m: c.as_json() for m, c in found.items()}
                for label, found in self.versus_baseline.items()
            },
            "versus_leader": {label: c.as_json() for label, c in self.versus_leader.items()},
            "frequency_groups": {
                label: self.group_means(label) for label in self.arms if self.groups
            },
        }


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


def analyse(
    arms: Mapping[str, Mapping[int, Path]],
    baseline: str = BASELINE,
    resamples: int = 2000,
) -> Analysis:
    """Compare every arm with the baseline and with the leader.

    Args:
        arms: ``{label: {seed: folder}}``, the baseline included (folders without a
            ``metrics.json`` are left out).
        baseline: the reference arm (the first arm when it is absent).
        resamples: bootstrap resamples per comparison.

    Raises:
        ValueError: no arm has a finished run.
    """
    results = {label: load_arm(label, folders) for label, folders in arms.items()}
    results = {label: arm for label, arm in results.items() if arm.metrics}
    if not results:
        raise ValueError("no finished run to analyse")
    if baseline not in results:
        baseline = next(iter(results))
    reference = results[baseline]
    task = task_of(reference)
    deltas = DELTA_METRICS.get(task, ("macro_f1",))
    metric = deltas[0]
    leader = max(results, key=lambda label: results[label].mean(metric))
    # One Holm family for the primary metric: every arm against the baseline and against the
    # leader (the leader against the baseline counted once); one per secondary metric.
    primary: dict[tuple[str, str], PairedDifference] = {}
    for label, arm in results.items():
        for against in (baseline, leader):
            if label == baseline and against == leader:
                continue  # the leader against the baseline, mirrored below
            if label != against and (label, against) not in primary:
                if set(arm.metrics) & set(results[against].metrics):
                    primary[(label, against)] = difference(arm, results[against], metric, resamples)
    adjusted = adjust(primary, metric)
    versus_baseline: dict[str, dict[str, Comparison]] = {label: {} for label in results}
    versus_leader: dict[str, Comparison] = {}
    for (label, against), comparison in adjusted.items():
        if against == baseline:
            versus_baseline[label][metric] = comparison
        if against == leader:
            versus_leader[label] = comparison
    if leader != baseline and (leader, baseline) in adjusted:
        # the baseline against the leader is the same comparison, mirrored
        versus_leader[baseline] = _mirrored(adjusted[(leader, baseline)])
    for secondary in deltas[1:]:
        family = {
            (label, baseline): difference(arm, reference, secondary, resamples)
            for label, arm in results.items()
            if label != baseline and set(arm.metrics) & set(reference.metrics)
        }
        for (label, _), comparison in adjust(family, secondary).items():
            versus_baseline[label][secondary] = comparison
    groups: dict[str, list[int]] = {}
    if task == "classification" and "per_class" in next(iter(reference.metrics.values()))["test"]:
        groups = frequency_groups(training_counts(reference))
    return Analysis(task, metric, baseline, results, versus_baseline, leader, versus_leader, groups)


def _mirrored(comparison: Comparison) -> Comparison:
    found = comparison.found
    flipped = PairedDifference(
        found.seeds,
        tuple(-v for v in found.per_seed),
        -found.replicates,
        found.shared_variance,
        found.shared_test_set,
        found.shared_items,
    )
    return Comparison(
        comparison.reference,
        comparison.arm,
        comparison.metric,
        flipped,
        comparison.p_adjusted,
        comparison.level,
    )
