"""The README's first training example against a yardstick: a logistic regression on the same
splits of ``digits-lt`` (scikit-learn's 8×8 digits, training split long-tailed with IR 100,
validation and test balanced).

For each seed: the README's command (LMF, timm ``resnet10t`` from scratch, 32×32, batch 16, 15
epochs) and scikit-learn's ``LogisticRegression`` on the 64 raw pixels, plain and with
``class_weight="balanced"`` (C = 1), all scored by test macro F1 on the split the run saved.
Writes ``benchmarks/results/digits_yardstick.{md,json}``.

    python benchmarks/digits_yardstick.py                 # seeds 0, 1, 2 (about 40 s a run)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

from torch_imbalance.data.builtin import load_digits_lt
from torch_imbalance.engine.config import resolve_config
from torch_imbalance.engine.run import train

#: The README's first example, flag for flag (`--out` aside).
EXAMPLE = {
    "dataset": "digits-lt",
    "loss": "lmf",
    "model": "resnet10t",
    "image_size": 32,
    "batch_size": 16,
    "epochs": 15,
    "progress": False,
}


def pixels(split) -> np.ndarray:
    return np.stack(
        [np.asarray(image, dtype=np.float64).reshape(-1) / 255 for image in split.items]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--runs", default="runs/digits-yardstick")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        bundle = load_digits_lt(seed=seed)
        row: dict = {"seed": seed, "train_counts": bundle.train.counts(10)}
        for name, weighting in (("logistic", None), ("logistic_balanced", "balanced")):
            model = LogisticRegression(C=1.0, max_iter=5000, class_weight=weighting)
            model.fit(pixels(bundle.train), bundle.train.labels)
            predicted = model.predict(pixels(bundle.test))
            row[name] = float(f1_score(bundle.test.labels, predicted, average="macro"))
        config = resolve_config(
            {**EXAMPLE, "seed": seed, "out": f"{args.runs}/seed-{seed}", "overwrite": True}
        )
        start = time.perf_counter()
        metrics = train(config)
        row["cnn_lmf_seconds"] = time.perf_counter() - start
        row["cnn_lmf"] = float(metrics["test"]["macro_f1"])
        rows.append(row)
        print(row, flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "digits_yardstick.json").write_text(
        json.dumps({"example": EXAMPLE, "rows": rows}, indent=1)
    )
    lines = [
        "Test macro F1 on digits-lt (balanced test split, about 36 images per class); "
        "`python benchmarks/digits_yardstick.py`.",
        "",
        "| seed | README example (LMF, resnet10t, 15 epochs) | time | logistic regression | "
        "logistic regression, balanced weights |",
        "|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['seed']} | {row['cnn_lmf']:.3f} | {row['cnn_lmf_seconds']:.0f} s "
            f"| {row['logistic']:.3f} | {row['logistic_balanced']:.3f} |"
        )
    mean = {
        k: statistics.mean(r[k] for r in rows) for k in ("cnn_lmf", "logistic", "logistic_balanced")
    }
    lines.append(
        f"| mean | {mean['cnn_lmf']:.3f} | | {mean['logistic']:.3f} "
        f"| {mean['logistic_balanced']:.3f} |"
    )
    (out / "digits_yardstick.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
