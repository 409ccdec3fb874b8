"""Train a small classifier on long-tailed digits with several losses and compare macro F1.

The interim main job of the README (until the training harness lands): real data from
scikit-learn's bundled 8×8 digits, made long-tailed with n_i = n_max · IR^(−i/(C−1)), a
balanced held-out test split, and the same model and schedule for every loss.

    python examples/digits_lt.py --losses ce,lmf,lmf_official,ldam_drw --imbalance 100 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.metrics import balanced_accuracy_score, f1_score
from torch import nn

import torch_imbalance as ti


def long_tailed_digits(imbalance: float, seed: int, test_per_class: int = 50):
    """Balanced test split; long-tailed train split with counts n_max · IR^(−i/(C−1))."""
    images, labels = load_digits(return_X_y=True)
    rng = np.random.default_rng(seed)
    num_classes = int(labels.max()) + 1
    train_idx, test_idx = [], []
    for c in range(num_classes):
        idx = rng.permutation(np.flatnonzero(labels == c))
        test_idx.extend(idx[:test_per_class])
        pool = idx[test_per_class:]
        n_max = min(len(np.flatnonzero(labels == k)) for k in range(num_classes)) - test_per_class
        keep = max(1, round(n_max * imbalance ** (-c / (num_classes - 1))))
        train_idx.extend(pool[:keep])
    x = torch.tensor(images / 16.0, dtype=torch.float32)
    y = torch.tensor(labels, dtype=torch.long)
    train, test = np.array(train_idx), np.array(test_idx)
    counts = np.bincount(labels[train], minlength=num_classes)
    return x[train], y[train], x[test], y[test], counts


def make_model(num_classes: int, cosine_head: bool) -> nn.Module:
    head = ti.NormedLinear(128, num_classes) if cosine_head else nn.Linear(128, num_classes)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.1), head)


def train_and_score(loss_name: str, data, epochs: int, seed: int) -> dict[str, float]:
    x_train, y_train, x_test, y_test, counts = data
    torch.manual_seed(seed)
    # LDAM is designed for a cosine head; LMF's authors used a plain linear head.
    cosine = loss_name in ("ldam", "ldam_drw")
    model = make_model(len(counts), cosine)
    extra = {"total_epochs": epochs} if loss_name == "ldam_drw" else {}
    criterion = ti.build_loss(loss_name, counts.tolist(), **extra)
    optimizer = torch.optim.AdamW(
        [*model.parameters(), *criterion.parameters()], lr=3e-3, weight_decay=1e-4
    )
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        if hasattr(criterion, "set_epoch"):
            criterion.set_epoch(epoch)
        model.train()
        order = torch.randperm(len(y_train), generator=generator)
        for start in range(0, len(order), 64):
            batch = order[start : start + 64]
            optimizer.zero_grad()
            criterion(model(x_train[batch]), y_train[batch]).backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        predictions = model(x_test).argmax(1).numpy()
    return {
        "macro_f1": f1_score(y_test.numpy(), predictions, average="macro"),
        "balanced_accuracy": balanced_accuracy_score(y_test.numpy(), predictions),
        "tail_f1": f1_score(y_test.numpy(), predictions, average=None)[-3:].mean(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--losses", default="ce,lmf", help="comma-separated registry names")
    parser.add_argument(
        "--imbalance", type=float, default=100.0, help="imbalance ratio n_max/n_min"
    )
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    losses = [name.strip() for name in args.losses.split(",") if name.strip()]
    seeds = [int(s) for s in args.seeds.split(",")]
    unknown = sorted(set(losses) - set(ti.available_losses()))
    if unknown:
        parser.error(f"unknown loss(es) {unknown}; available: {', '.join(ti.available_losses())}")

    started = time.perf_counter()
    results: dict[str, list[dict[str, float]]] = {name: [] for name in losses}
    for seed in seeds:
        data = long_tailed_digits(args.imbalance, seed)
        if seed == seeds[0]:
            print(
                f"digits-lt (IR {args.imbalance:g}): train counts per class {data[4].tolist()}, "
                f"balanced test set of {len(data[3])} images"
            )
        for name in losses:
            scores = train_and_score(name, data, args.epochs, seed)
            results[name].append(scores)
            print(f"  seed {seed}  {name:<20} macro F1 {scores['macro_f1']:.4f}")

    print(
        f"\n| loss | macro F1 | balanced accuracy | F1 of the 3 rarest classes |  (mean ± std over "
        f"{len(seeds)} seed(s), {args.epochs} epochs)"
    )
    print("|---|---|---|---|")
    for name, runs in results.items():
        cells = []
        for key in ("macro_f1", "balanced_accuracy", "tail_f1"):
            values = np.array([r[key] for r in runs])
            cells.append(f"{values.mean():.4f} ± {values.std():.4f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"\nfinished in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
