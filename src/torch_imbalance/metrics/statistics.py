"""Paired, seed-aware statistics: is one loss better than another, with the training
randomness in the interval? Shared by ``torch-imbalance compare`` and the study.

A comparison pairs two arms (losses) run with the same seeds; each seed's runs share a data
split (and for segmentation with rotating folds, a test fold). The difference of the primary
metric per seed, ``Δ_s = m(arm, s) − m(reference, s)``, carries both sources of noise: the
training (initialisation, batch order, augmentation, the split a seed draws) and the finite test
set. Three summaries of it:

- the **t-interval** over the per-seed ``Δ_s`` (seeds as the units: exact under normality when
  each seed has its own test set);
- the **two-level bootstrap**: resample seeds, then the test items within each resampled seed;
  items are resampled *jointly* across the seeds that share a test set (the same weights for
  every seed on it), because a test set shared by all seeds is one draw of test data, not one
  per seed;
- the **seed-aware interval** used for every verdict: the t-interval, widened where seeds share
  a test set by that test set's own variance, which the spread of the ``Δ_s`` cannot show
  (from its items resampled jointly across its seeds against independently, seeds held fixed:
  the difference is the term the seeds have in common). A percentile bootstrap over 3-5 seeds
  understates the seeds' uncertainty and, resampling both levels, counts the items' noise
  twice: both were measured on simulated studies (``tests/metrics/test_statistics.py``), so the
  bootstrap is reported beside the verdict's interval, not used for it.

Multiple comparisons: :func:`holm` adjusts the p-values of the comparisons a report makes and
:func:`holm_levels` gives each comparison the confidence level of its Holm step, at which its
interval is then shown.

Metrics come from per-item confusion counts (``metrics/confusion.py``), so a resample of test
items is a weighted sum of counts: classification items each add one to their (true, predicted)
cell, segmentation images their pixel confusion.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from torch_imbalance.metrics.confusion import class_mean, per_class_f1, per_class_iou

#: A score of summed confusion counts ``(..., C, C) -> (...)``, batched.
Metric = Callable[[np.ndarray], np.ndarray]

#: Verdict words of a claim tested with an interval (see :func:`margin_verdict`).
HOLDS = "holds"
BELOW_MARGIN = "a gain, below the claimed margin"
DOES_NOT_HOLD = "does not hold"
CANNOT_TELL = "cannot tell"


# ------------------------------------------------------------------------------- test outcomes
@dataclass(frozen=True)
class RunOutcome:
    """One run's test split as per-item confusion counts.

    Attributes:
        items: the test items' ids (seeds with the same ids share a test set).
        confusion: ``(n_items, C, C)`` counts, rows the true class.
    """

    items: tuple[str, ...]
    confusion: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        shape = self.confusion.shape
        if len(shape) != 3 or shape[1] != shape[2] or shape[0] != len(self.items):
            raise ValueError(
                f"expected confusion counts (n_items, C, C) with n_items = {len(self.items)} "
                f"ids, got shape {tuple(shape)}"
            )

    @classmethod
    def from_labels(
        cls, items: Sequence[str], labels: Sequence[int], predicted: Sequence[int], classes: int
    ) -> RunOutcome:
        """Classification: one true and one predicted class index per item."""
        true, guess = np.asarray(labels), np.asarray(predicted)
        if true.shape != guess.shape or true.shape != (len(items),):
            raise ValueError(
                f"expected one label and one prediction per item ({len(items)}), got "
                f"{true.shape} and {guess.shape}"
            )
        for name, values in (("label", true), ("prediction", guess)):
            if len(values) and not (0 <= values.min() and values.max() < classes):
                raise ValueError(f"a {name} lies outside the {classes} classes")
        confusion = np.zeros((len(items), classes, classes), dtype=np.int64)
        confusion[np.arange(len(items)), true, guess] = 1
        return cls(tuple(items), confusion)

    @property
    def total(self) -> np.ndarray:
        """``(C, C)``: the whole test split's counts."""
        return self.confusion.sum(0)


def read_outcome(folder: Path, classes: list[str]) -> RunOutcome | None:
    """A finished run's test outcome from its folder: ``test.csv`` (classification: id, label,
    predicted, ...) or ``test_confusion.npz`` (segmentation), in the folder itself (kept results)
    or in its ``predictions/`` (a run folder). ``None`` where there is none of one label per
    item: no such file, or a multi-label run's ``test.csv`` (``true_<class>`` columns)."""
    for base in (folder, folder / "predictions"):
        if (base / "test_confusion.npz").is_file():
            data = np.load(base / "test_confusion.npz")
            return RunOutcome(tuple(str(i) for i in data["ids"]), data["confusion"])
        if (base / "test.csv").is_file():
            with open(base / "test.csv", newline="") as handle:
                rows = list(csv.DictReader(handle))
            header = set(rows[0]) if rows else set()
            if any(name.startswith("true_") for name in header):
                return None
            missing = {"id", "label", "predicted"} - header
            if missing:
                raise ValueError(f"{base / 'test.csv'}: missing column(s) {sorted(missing)}")
            index = {name: i for i, name in enumerate(classes)}
            return RunOutcome.from_labels(
                [r["id"] for r in rows],
                [index[r["label"]] for r in rows],
                [index[r["predicted"]] for r in rows],
                len(classes),
            )
    return None


# --------------------------------------------------------------------------------- metrics
def macro_f1(counts: np.ndarray) -> np.ndarray:
    """Macro F1 as torchmetrics averages it (classes absent from truth and predictions left
    out).

    Examples:
        >>> float(macro_f1(np.array([[2, 0], [1, 1]])))
        0.7333333333333334
    """
    return class_mean(per_class_f1(counts))


def classes_f1(classes: Sequence[int]) -> Metric:
    """The mean F1 of the given classes (one class: its F1)."""
    chosen = list(classes)
    return lambda counts: class_mean(per_class_f1(counts), chosen)


def miou(counts: np.ndarray) -> np.ndarray:
    """Mean IoU over the classes present (``summarise_segmentation``'s ``miou``)."""
    return class_mean(per_class_iou(counts))


def class_iou(index: int) -> Metric:
    """The IoU of one class."""
    return lambda counts: per_class_iou(counts)[..., index]


# -------------------------------------------------------------------------------- intervals
def _t_quantile(probability: float, dof: float) -> float:
    from scipy.stats import t

    return float(t.ppf(probability, dof))


@dataclass(frozen=True)
class PairedDifference:
    """The difference of a metric between two arms over their common seeds (or one arm's value
    against a fixed level, ``reference`` None), with the two-level bootstrap's replicates kept so
    that intervals come at any level.

    Attributes:
        seeds: the common seeds, ascending.
        per_seed: ``Δ_s`` per seed (the arm's value minus the reference's, or the value).
        replicates: the two-level bootstrap's means of ``Δ`` (one per resample).
        shared_test_set: whether some seeds share a test set (its items resampled jointly).
        shared_items: the fewest items of a shared test set (the degrees of freedom of its
            variance).
        shared_variance: the variance of the mean ``Δ`` from resampling the items of the test
            sets that several seeds share, jointly, with the seeds held fixed (0 when every seed
            has its own test set, whose noise the per-seed ``Δ_s`` already carry).
    """

    seeds: tuple[int, ...]
    per_seed: tuple[float, ...]
    replicates: np.ndarray = field(repr=False)
    shared_variance: float = 0.0
    shared_test_set: bool = False
    shared_items: int = 0

    @property
    def mean(self) -> float:
        return float(np.mean(self.per_seed))

    @property
    def seed_std(self) -> float:
        """Standard deviation of ``Δ_s`` over seeds (0 for one seed)."""
        return float(np.std(self.per_seed, ddof=1)) if len(self.per_seed) > 1 else 0.0

    def t_interval(self, level: float = 0.95) -> tuple[float, float]:
        """Student's t-interval over the per-seed differences; unbounded for one seed (the
        training randomness is then unknown)."""
        n = len(self.per_seed)
        if n < 2:
            return (-math.inf, math.inf)
        half = _t_quantile(0.5 + level / 2, n - 1) * self.seed_std / math.sqrt(n)
        return (self.mean - half, self.mean + half)

    def bootstrap_interval(self, level: float = 0.95) -> tuple[float, float]:
        """The two-level bootstrap's percentile interval."""
        low, high = np.quantile(self.replicates, [0.5 - level / 2, 0.5 + level / 2])
        return (float(low), float(high))

    def standard_error(self) -> float:
        """Of the mean ``Δ``: the seeds' spread, plus the shared test sets' own variance."""
        n = len(self.per_seed)
        return math.sqrt(self.seed_std**2 / n + self.shared_variance) if n > 1 else math.inf

    def degrees_of_freedom(self) -> float:
        """Welch-Satterthwaite's for the standard error's two terms: ``n − 1`` for the seeds'
        spread, the shared items' count less one for the test set's variance."""
        n = len(self.per_seed)
        seeds_term = self.seed_std**2 / n
        total = seeds_term + self.shared_variance
        if total == 0 or not self.shared_variance:
            return n - 1
        denominator = seeds_term**2 / (n - 1)
        denominator += self.shared_variance**2 / max(self.shared_items - 1, 1)
        return total**2 / denominator

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        """The seed-aware interval: the t-interval over the per-seed differences, widened by
        the test-set noise that seeds sharing a test set have in common (which the seeds'
        spread cannot show); unbounded for one seed."""
        n = len(self.per_seed)
        if n < 2:
            return (-math.inf, math.inf)
        half = _t_quantile(0.5 + level / 2, self.degrees_of_freedom()) * self.standard_error()
        return (self.mean - half, self.mean + half)

    def p_value(self, null: float = 0.0) -> float:
        """Two-sided p-value of ``Δ = null`` from the seed-aware interval's t statistic (the
        interval at level ``1 − α`` excludes ``null`` exactly when this is below ``α``)."""
        n = len(self.per_seed)
        error = self.standard_error()
        if n < 2:
            return 1.0
        if error == 0:
            return 1.0 if self.mean == null else 0.0
        from scipy.stats import t

        return float(2 * t.sf(abs(self.mean - null) / error, self.degrees_of_freedom()))

    def seeds_needed(
        self, alpha: float = 0.05, power: float = 0.8, limit: int = 1000
    ) -> int | None:
        """About how many seeds a paired t-test needs to tell this mean difference from 0 with
        the given power, at the observed seed-to-seed spread (``None``: no difference observed,
        or more than ``limit``)."""
        spread, effect = self.seed_std, abs(self.mean)
        if len(self.per_seed) < 2 or effect == 0:
            return None
        if spread == 0:
            return len(self.per_seed)
        for n in range(2, limit + 1):
            scale = spread / math.sqrt(n)
            reach = (_t_quantile(1 - alpha / 2, n - 1) + _t_quantile(power, n - 1)) * scale
            if reach <= effect:
                return n
        return None


def paired_difference(
    arm: Mapping[int, RunOutcome],
    reference: Mapping[int, RunOutcome] | None,
    metric: Metric,
    resamples: int = 2000,
    seed: int = 0,
) -> PairedDifference:
    """``metric(arm) − metric(reference)`` over the seeds both have (or ``metric(arm)`` alone,
    ``reference`` None), with the two-level bootstrap.

    Each resample draws the seeds with replacement, then for every drawn seed a resample of its
    test items; seeds whose outcomes list the same item ids share a test set and get the *same*
    item weights within a resample, so the test set's own randomness is counted once, not
    averaged away. Both arms of a seed are scored on the same resampled items (paired).

    Args:
        arm: test outcome per seed.
        reference: the baseline's outcome per seed, with the same items per seed as ``arm``.
        metric: a batched score of confusion counts (:func:`macro_f1`, :func:`miou`, ...).
        resamples: bootstrap resamples.
        seed: the bootstrap's random seed (the result is reproducible).

    Raises:
        ValueError: no common seed, or a seed whose two arms were tested on different items.

    Examples:
        >>> rng = np.random.default_rng(0)
        >>> def outcome(p):  # 40 two-class items, each right with probability p
        ...     truth = rng.integers(0, 2, 40)
        ...     guess = np.where(rng.random(40) < p, truth, 1 - truth)
        ...     return RunOutcome.from_labels([str(i) for i in range(40)], truth, guess, 2)
        >>> found = paired_difference({0: outcome(0.9)}, {0: outcome(0.6)}, macro_f1)
        >>> found.seeds, found.t_interval()  # one seed: the training randomness is unknown
        ((0,), (-inf, inf))
    """
    seeds = sorted(set(arm) & set(reference)) if reference is not None else sorted(arm)
    if not seeds:
        raise ValueError("no seed in common between the two arms")
    for s in seeds:
        if reference is not None and arm[s].items != reference[s].items:
            raise ValueError(
                f"seed {s}: the two arms were tested on different items ({len(arm[s].items)} "
                f"vs {len(reference[s].items)}); a paired comparison needs the same test split"
            )

    def score(outcome_counts: np.ndarray) -> np.ndarray:
        return np.asarray(metric(outcome_counts), dtype=np.float64)

    def delta(s: int, weights: np.ndarray | None) -> np.ndarray:
        """Δ of seed ``s`` under item weights ``(k, n_items)`` (None: every item once)."""
        values = []
        for side in (arm, reference):
            if side is None:
                continue
            flat = side[s].confusion.reshape(len(side[s].items), -1).astype(np.float64)
            classes = side[s].confusion.shape[-1]
            summed = flat.sum(0) if weights is None else weights @ flat
            values.append(score(summed.reshape(*summed.shape[:-1], classes, classes)))
        return values[0] - values[1] if len(values) == 2 else values[0]

    per_seed = tuple(float(delta(s, None)) for s in seeds)
    rng = np.random.default_rng(seed)
    groups: dict[tuple[str, ...], list[int]] = {}
    for s in seeds:
        groups.setdefault(arm[s].items, []).append(s)
    shared = any(len(members) > 1 for members in groups.values())
    # One weight vector per resample for each shared test set; drawn seeds on a test set of
    # their own get fresh weights at every position.
    shared_weights = {
        items: _item_weights(rng, len(items), resamples)
        for items, members in groups.items()
        if len(members) > 1
    }
    drawn = rng.integers(0, len(seeds), size=(resamples, len(seeds)))
    deltas = np.empty(drawn.shape)
    for position, s in enumerate(seeds):
        where = drawn == position
        count = int(where.sum())
        if not count:
            continue
        items = arm[s].items
        if items in shared_weights:
            weights = shared_weights[items][np.nonzero(where)[0]]
        else:
            weights = _item_weights(rng, len(items), count)
        deltas[where] = delta(s, weights)
    # The variance a shared test set adds to the mean Δ, common to the seeds on it (the spread
    # of the Δ_s cannot show it). Resampling its items jointly for those seeds (the others
    # fixed) varies the mean by (n_g² σ²_items + n_g σ²_runs) / (n² N); independently per seed
    # by (n_g σ²_items + n_g σ²_runs) / (n² N). Their difference · n_g / (n_g − 1) leaves the
    # test set's own term, n_g² σ²_items / (n² N), without counting the runs' noise twice.
    shared_variance = 0.0
    fixed = np.array(per_seed)
    for items, weights in shared_weights.items():
        members = groups[items]
        joint = np.tile(fixed, (resamples, 1))
        apart = joint.copy()
        for s in members:
            column = seeds.index(s)
            joint[:, column] = delta(s, weights)
            apart[:, column] = delta(s, _item_weights(rng, len(items), resamples))
        excess = np.var(joint.mean(1), ddof=1) - np.var(apart.mean(1), ddof=1)
        shared_variance += max(0.0, float(excess)) * len(members) / (len(members) - 1)
    return PairedDifference(
        tuple(seeds),
        per_seed,
        deltas.mean(1),
        shared_variance,
        shared,
        min((len(items) for items in shared_weights), default=0),
    )


def paired_values(
    arm: Mapping[int, float],
    reference: Mapping[int, float] | None,
    resamples: int = 2000,
    seed: int = 0,
) -> PairedDifference:
    """:func:`paired_difference` from one number per run, where no per-item outcome exists
    (multi-label runs): the bootstrap resamples seeds only.

    Examples:
        >>> found = paired_values({0: 0.71, 1: 0.74, 2: 0.70}, {0: 0.69, 1: 0.70, 2: 0.70})
        >>> [round(v, 2) for v in found.per_seed], round(found.mean, 3)
        ([0.02, 0.04, 0.0], 0.02)
    """
    seeds = sorted(set(arm) & set(reference)) if reference is not None else sorted(arm)
    if not seeds:
        raise ValueError("no seed in common between the two arms")
    per_seed = np.array(
        [arm[s] - (reference[s] if reference is not None else 0.0) for s in seeds], dtype=float
    )
    drawn = np.random.default_rng(seed).integers(0, len(seeds), size=(resamples, len(seeds)))
    return PairedDifference(tuple(seeds), tuple(per_seed.tolist()), per_seed[drawn].mean(1))


def _item_weights(rng: np.random.Generator, items: int, rows: int) -> np.ndarray:
    """``(rows, items)`` resampling counts: each row ``items`` draws with replacement."""
    draws = rng.integers(0, items, size=(rows, items))
    offsets = np.arange(rows)[:, None] * items
    return np.bincount((draws + offsets).ravel(), minlength=rows * items).reshape(rows, items)


# ------------------------------------------------------------------------ multiple comparisons
def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given).

    Examples:
        >>> holm([0.01, 0.04, 0.03])
        [0.03, 0.06, 0.06]
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for step, i in enumerate(order):
        running = max(running, min(1.0, (m - step) * p_values[i]))
        adjusted[i] = running
    return adjusted


def holm_levels(p_values: Sequence[float], alpha: float = 0.05) -> list[float]:
    """The confidence level of each comparison's interval at its Holm step: the k-th smallest
    of m p-values is tested at ``α / (m − k + 1)``, so its interval is shown at
    ``1 − α / (m − k + 1)`` (the smallest p-value's at Bonferroni's level).

    Examples:
        >>> [round(v, 4) for v in holm_levels([0.01, 0.04, 0.03])]
        [0.9833, 0.95, 0.975]
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    levels = [0.0] * m
    for step, i in enumerate(order):
        levels[i] = 1 - alpha / (m - step)
    return levels


# ---------------------------------------------------------------------------------- verdicts
def margin_verdict(interval: tuple[float, float], margin: float) -> str:
    """The verdict on a claim "the arm beats the reference by at least ``margin``" from the
    interval of the difference: ``holds`` (the whole interval at or above the margin), ``a
    gain, below the claimed margin`` (above 0, below the margin), ``does not hold`` (below the
    margin and not above 0), else ``cannot tell``.

    A claim is a gain, so an interval that is not above 0 never holds, even with a margin of
    0: ``[0, 0]`` (the two arms agreeing on every seed) is no gain and does not hold.

    Examples:
        >>> margin_verdict((0.5, 1.5), 2.0), margin_verdict((-1.0, 3.0), 2.0)
        ('a gain, below the claimed margin', 'cannot tell')
        >>> margin_verdict((0.0, 0.0), 0.0), margin_verdict((0.001, 0.02), 0.0)
        ('does not hold', 'holds')
    """
    low, high = interval
    if low > 0 and low >= margin:
        return HOLDS
    if high <= 0 or (high < margin and low <= 0):
        return DOES_NOT_HOLD
    if high < margin:
        return BELOW_MARGIN
    return CANNOT_TELL


def level_verdict(interval: tuple[float, float], level: float) -> str:
    """The verdict on a claim "the value reaches ``level``": ``holds`` when the whole interval
    is at or above it, ``does not hold`` when the whole interval is below it."""
    low, high = interval
    if low >= level:
        return HOLDS
    if high < level:
        return DOES_NOT_HOLD
    return CANNOT_TELL


def format_interval(interval: tuple[float, float], scale: float = 100.0) -> str:
    """``[-1.2, +3.4]`` in points (``scale`` 100), values as they are (``scale`` 1:
    ``[0.712, 0.845]``), ``[−∞, +∞]`` when unbounded."""

    def one(value: float) -> str:
        if math.isinf(value):
            return "+∞" if value > 0 else "−∞"
        return f"{scale * value:+.1f}" if scale != 1.0 else f"{value:.3f}"

    return f"[{one(interval[0])}, {one(interval[1])}]"
