"""Markdown reports of a run."""

from __future__ import annotations

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


def run_report(title: str, metrics: dict, notes: dict[str, str], figures: list[str]) -> str:
    """``report.md``: headline metrics per split, the per-class table, figures and notes."""
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
    if figures:
        lines += ["", "## Figures", ""] + [f"![{f}]({f})" for f in figures]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {key}: {value}" for key, value in notes.items()]
    return "\n".join(lines) + "\n"
