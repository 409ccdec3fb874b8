"""Tiny synthetic datasets written in the real on-disk formats (a few small images)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, value: int, size: int = 12, mode: str = "RGB") -> Path:
    """A small image whose content depends on ``value`` (so classes are learnable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    pixels = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
    pixels[: size // 2, :, value % 3] += np.uint8(150)
    image = Image.fromarray(pixels)
    image.convert(mode).save(path)
    return path


def write_imagefolder(
    root: Path, counts: dict[str, int], splits: tuple[str, ...] = (), suffix: str = ".png"
) -> Path:
    """``root/<class>/<i>.png`` or, with ``splits``, ``root/<split>/<class>/<i>.png``."""
    for split in splits or ("",):
        for label, (name, count) in enumerate(counts.items()):
            for i in range(count):
                write_image(root / split / name / f"{name}_{i}{suffix}", label * 1000 + i)
    return root


def write_csv(path: Path, header: list, rows: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


ODIR_LABELS = ["N", "D", "G", "C", "A", "H", "M", "O"]


def write_odir(root, patients=40, sheet="csv"):
    rows = []
    rng = np.random.default_rng(0)
    for pid in range(patients):
        hot = np.zeros(8, dtype=int)
        hot[pid % 8] = 1
        if pid % 5 == 0:
            hot[(pid + 3) % 8] = 1  # a few patients with two labels
        left, right = f"{pid}_left.jpg", f"{pid}_right.jpg"
        for name in (left, right):
            write_image(root / "Training Images" / name, pid * 2 + rng.integers(2), size=8)
        rows.append([pid, 60, "Female", left, right, "kw", "kw", *hot.tolist()])
    header = [
        "ID",
        "Patient Age",
        "Patient Sex",
        "Left-Fundus",
        "Right-Fundus",
        "Left-Diagnostic Keywords",
        "Right-Diagnostic Keywords",
        *ODIR_LABELS,
    ]
    if sheet == "xlsx":  # the official download's format: numbers stored as numbers
        import openpyxl

        book = openpyxl.Workbook()
        book.active.append(header)
        for row in rows:
            book.active.append(row)
        book.save(root / "ODIR-5K_Training_Annotations(Updated)_V2.xlsx")
    else:
        write_csv(root / "ODIR-5K_Training_Annotations.csv", header, rows)
    return root


HAM10000_CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]


def write_ham10000(root, lesions_per_class=6, images_per_lesion=2):
    rows, n = [], 0
    for dx in HAM10000_CLASSES:
        for lesion in range(lesions_per_class):
            for _ in range(images_per_lesion):
                image_id = f"ISIC_{n:07d}"
                folder = "HAM10000_images_part_1" if n % 2 else "HAM10000_images_part_2"
                write_image(root / folder / f"{image_id}.jpg", n, size=8)
                rows.append([f"HAM_{dx}_{lesion}", image_id, dx, "histo", 50, "male", "back"])
                n += 1
    write_csv(
        root / "HAM10000_metadata.csv",
        ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"],
        rows,
    )
    return root


ISIC2019_CLASSES = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC"]


def write_isic2019(root: Path, images: int = 48, unknown_row: int | None = None) -> Path:
    """Ground truth (one-hot, UNK column), metadata with lesion ids, ``<image>.jpg`` files."""
    header = ["image", *ISIC2019_CLASSES, "UNK"]
    rows, meta = [], []
    for i in range(images):
        label = i % 8
        name = f"ISIC_{i:07d}"
        write_image(root / "ISIC_2019_Training_Input" / f"{name}.jpg", i, size=8)
        hot = [1.0 if c == label else 0.0 for c in range(8)] + [0.0]
        if i == unknown_row:
            hot = [0.0] * 8 + [1.0]
        rows.append([name, *hot])
        meta.append([name, "anterior torso", f"lesion{i // 2}" if i % 3 else ""])
    write_csv(root / "ISIC_2019_Training_GroundTruth.csv", header, rows)
    write_csv(
        root / "ISIC_2019_Training_Metadata.csv",
        ["image", "anatom_site_general", "lesion_id"],
        meta,
    )
    return root


def write_segfolder(root: Path, count: int = 12, size: int = 24, classes: int = 3) -> Path:
    """``images/<name>.png`` + ``masks/<name>.png``: a bright disc (class 1) with a ring
    (class 2) on background, 255 in one corner (unlabelled)."""
    import numpy as np
    from PIL import Image

    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:size, :size]
    rng = np.random.default_rng(0)
    for i in range(count):
        cy, cx, r = rng.integers(8, size - 8), rng.integers(8, size - 8), rng.integers(4, 7)
        distance = np.hypot(yy - cy, xx - cx)
        mask = np.where(distance < r, 1, 0)
        mask = np.where((distance >= r) & (distance < r + 1.5), classes - 1, mask)
        mask[:2, :2] = 255
        image = (40 + 150 * (mask == 1) + 80 * (mask == classes - 1)).astype(np.uint8)
        image = np.clip(image + rng.integers(0, 30, image.shape), 0, 255).astype(np.uint8)
        Image.fromarray(image).convert("RGB").save(root / "images" / f"img{i:02d}.png")
        Image.fromarray(mask.astype(np.uint8)).save(root / "masks" / f"img{i:02d}.png")
    return root


class Killed(RuntimeError):
    """Raised by :class:`KillAfterEpoch`: a run stopped as if its process had been killed."""


def kill_after_epoch(monkeypatch, epoch: int) -> None:
    """Make every following ``train`` stop with :class:`Killed` at the end of ``epoch`` (after
    that epoch's checkpoints are on disk); undo with ``monkeypatch.undo()``."""
    import lightning.pytorch as pl

    from torch_imbalance.engine import run as run_module

    class KillAfterEpoch(pl.Callback):
        def on_train_epoch_end(self, trainer, module) -> None:
            if trainer.current_epoch == epoch:
                raise Killed(f"killed after epoch {epoch}")

    build = run_module.build_trainer

    def build_and_kill(*args, **kwargs):
        trainer = build(*args, **kwargs)
        trainer.callbacks.append(KillAfterEpoch())
        return trainer

    monkeypatch.setattr(run_module, "build_trainer", build_and_kill)


def write_classification_run(
    folder: Path, seed: int, accuracy: float, loss: str, counts: dict[str, int], items: int = 300
) -> Path:
    """A finished classification run as ``compare`` keeps it: ``metrics.json`` and ``test.csv``,
    each test item right with probability ``accuracy`` (its items drawn by the seed, as a seed's
    split), ``counts`` the training images per class."""
    import json

    classes = list(counts)
    rng = np.random.default_rng([seed, int(1000 * accuracy), len(loss)])
    labels = np.random.default_rng(seed).integers(0, len(classes), items)
    predicted = np.where(rng.random(items) < accuracy, labels, (labels + 1) % len(classes))
    folder.mkdir(parents=True)
    write_csv(
        folder / "test.csv",
        ["id", "label", "predicted"],
        [
            [f"s{seed}-{i}", classes[t], classes[p]]
            for i, (t, p) in enumerate(zip(labels, predicted, strict=True))
        ],
    )
    f1 = [
        2
        * np.sum((labels == c) & (predicted == c))
        / max(1, np.sum(labels == c) + np.sum(predicted == c))
        for c in range(len(classes))
    ]
    metrics = {
        "config": {"task": "classification", "loss": loss, "seed": seed},
        "dataset": {"classes": classes, "counts": {"train": counts}},
        "test": {
            "macro_f1": float(np.mean(f1)),
            "accuracy": float(np.mean(labels == predicted)),
            "per_class": {name: {"f1": float(v)} for name, v in zip(classes, f1, strict=True)},
        },
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "curves.csv").write_text("epoch,val/macro_f1\n0,0.6\n1,0.7\n")
    return folder
