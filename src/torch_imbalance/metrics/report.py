"""Markdown reports of a run."""

from __future__ import annotations

import csv
from pathlib import Path

SCALARS = (
    "macro_f1",
    "balanced_accuracy",
    "accuracy",
    "macro_precision",
    "macro_recall",
    "auroc",
    "ece",
    "map",
)


def confident_mistakes(predictions: Path, per_class: int = 3) -> list[str]:
    """Markdown lines: per true class, the wrong predictions made with the highest
    probability, from a ``predictions/<split>.csv`` (id, label, predicted, prob_<class>...)."""
    with open(predictions, newline="") as handle:
        rows = list(csv.DictReader(handle))
    wrong: dict[str, list[tuple[float, str, str]]] = {}
    for row in rows:
        if row["predicted"] != row["label"]:
            confidence = float(row[f"prob_{row['predicted']}"])
            wrong.setdefault(row["label"], []).append((confidence, row["id"], row["predicted"]))
    relative = f"{predictions.parent.name}/{predictions.name}"
    lines = [
        "",
        f"## Most confident mistakes ({predictions.stem})",
        "",
        f"Per true class, the errors made with the highest probability (all: [{relative}]"
        f"({relative})).",
        "",
        "| true class | image | predicted | probability |",
        "|---|---|---|---:|",
    ]
    for label in sorted(wrong):
        for confidence, item, predicted in sorted(wrong[label], reverse=True)[:per_class]:
            lines.append(f"| {label} | `{item}` | {predicted} | {confidence:.3f} |")
    if not wrong:
        lines.append("| – | no mistakes | – | – |")
    return lines


def run_report(
    title: str,
    metrics: dict,
    notes: dict[str, str],
    figures: list[str],
    predictions: Path | None = None,
    training_counts: dict[str, float] | None = None,
) -> str:
    """``report.md``: headline metrics per split, the F1 of the head / medium / tail classes
    (given the ``training_counts`` per class), the per-class table, the most confident mistakes
    (given the split's ``predictions`` CSV), figures and notes."""
    lines = [f"# {title}", ""]
    splits = [s for s in ("val", "test") if s in metrics]
    names = [n for n in SCALARS if any(n in metrics[s] for s in splits)]
    lines += ["| metric | " + " | ".join(splits) + " |", "|---|" + "---:|" * len(splits)]
    for name in names:
        cells = [
            f"{metrics[s][name]:.4f}" if isinstance(metrics[s].get(name), float) else "–"
            for s in splits
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if training_counts and all("per_class" in metrics[s] for s in splits):
        from torch_imbalance.metrics.classification import frequency_group_f1

        groups = {s: frequency_group_f1(metrics[s]["per_class"], training_counts) for s in splits}
        lines += [
            "",
            "## F1 by training frequency",
            "",
            "Mean F1 of the classes with more than 100 (head), 20-100 (medium) and fewer than "
            "20 (tail) training images.",
            "",
            "| group | " + " | ".join(splits) + " |",
            "|---|" + "---:|" * len(splits),
        ]
        for group in groups[splits[-1]]:
            lines.append(
                f"| {group} | " + " | ".join(f"{groups[s][group]:.4f}" for s in splits) + " |"
            )
    if "test" in metrics:
        lines += [
            "",
            "## Per class (test)",
            "",
            "| class | precision | recall | F1 | support |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, row in metrics["test"]["per_class"].items():
            lines.append(
                f"| {name} | {row['precision']:.4f} | {row['recall']:.4f} | {row['f1']:.4f} "
                f"| {row['support']} |"
            )
    if predictions is not None and predictions.is_file():
        lines += confident_mistakes(predictions)
    if figures:
        lines += ["", "## Figures", ""] + [f"![{f}]({f})" for f in figures]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {key}: {value}" for key, value in notes.items()]
    return "\n".join(lines) + "\n"


SEGMENTATION_SCALARS = (
    "miou",
    "mean_dice",
    "miou_foreground",
    "pixel_accuracy",
    "rarest_class_iou",
)


def segmentation_report(
    title: str, metrics: dict, figures: list[str], notes: dict[str, str]
) -> str:
    """``report.md`` of a segmentation run: headline metrics per split, per-class IoU / Dice
    (of the last split given) with pixel counts, figures and notes."""
    splits = [s for s in ("val", "test") if s in metrics]
    lines = [
        f"# {title}",
        "",
        "| metric | " + " | ".join(splits) + " |",
        "|---|" + "---:|" * len(splits),
    ]
    for name in SEGMENTATION_SCALARS:
        lines.append(f"| {name} | " + " | ".join(f"{metrics[s][name]:.4f}" for s in splits) + " |")
    last = metrics[splits[-1]]
    lines += [
        "",
        f"## Per class ({splits[-1]})",
        "",
        "| class | IoU | Dice | pixels |",
        "|---|---:|---:|---:|",
    ]
    for name, iou in last["per_class_iou"].items():
        lines.append(
            f"| {name} | {iou:.4f} | {last['per_class_dice'][name]:.4f} "
            f"| {last['per_class_pixels'][name]} |"
        )
    if figures:
        lines += ["", "## Figures", ""] + [f"![{f}]({f})" for f in figures]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {key}: {value}" for key, value in notes.items()]
    return "\n".join(lines) + "\n"
