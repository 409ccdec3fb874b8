"""Run a trained checkpoint on new images: ``torch-imbalance predict``.

Images are read and preprocessed as the checkpoint's evaluation did (size, channels,
normalisation), in batches; an unreadable file is skipped with one line naming it. What is
written depends on the checkpoint's task: a CSV of class probabilities (or a challenge's
submission file) for classification, a mask PNG per image (and overlays on request) for
segmentation.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from torch_imbalance.data.errors import DatasetError
from torch_imbalance.data.io import IMAGE_SUFFIXES, read_image
from torch_imbalance.engine.evaluate import load_module
from torch_imbalance.engine.outputs import (  # noqa: F401 (the writers' public home was here)
    FORMATS,
    ISIC2019_ALIASES,
    ISIC2019_COLUMNS,
    ClassificationWriter,
    PredictError,
    SegmentationWriter,
    isic2019_columns,
    odir5k_columns,
    odir5k_rows,
    odir_patient,
)
from torch_imbalance.engine.run import RunFolderError


@dataclass
class PredictSummary:
    """What a prediction run did."""

    out: Path
    images: int = 0
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def find_images(inputs: list[str | Path]) -> list[Path]:
    """Files as given, and every image file (by suffix) in folders, recursively; sorted per
    folder, duplicates dropped.

    Raises:
        PredictError: an input that does not exist, or no image at all.
    """
    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found += sorted(
                p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
        elif item.is_file():
            found.append(item)
        else:
            raise PredictError(f"input not found: {item}")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise PredictError(
            f"no images in {', '.join(map(str, inputs))} (suffixes {', '.join(IMAGE_SUFFIXES)})"
        )
    return unique


def batches(paths: list[Path], size: int) -> Iterator[list[Path]]:
    for start in range(0, len(paths), size):
        yield paths[start : start + size]


def predict(
    checkpoint: Path,
    inputs: list[str | Path],
    out: Path,
    output_format: str = "csv",
    overlays: bool = False,
    batch_size: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    report: Any = print,
) -> PredictSummary:
    """Predict every image of ``inputs`` with ``checkpoint`` into ``out``.

    Args:
        checkpoint: a ``.ckpt`` written by ``train``.
        inputs: image files and folders (searched recursively).
        out: classification: the CSV to write; segmentation: the folder of mask PNGs.
        output_format: ``"csv"`` (one row per image), ``"isic2019"`` or ``"odir5k"``
            (the challenges' submission files; classification only).
        overlays: segmentation: also write ``overlays/<name>.png``.
        batch_size: images per forward pass (default: the run's batch size).
        overwrite: replace an existing ``out``.
        progress: show a progress bar.
        report: called with one line per skipped file.

    Returns:
        What was written and what was skipped.
    """
    if output_format not in FORMATS:
        raise PredictError(f"--format must be one of {FORMATS}, got {output_format!r}")
    if out.exists() and not overwrite:
        raise RunFolderError(f"{out} already exists; pass --overwrite to replace it")
    module = load_module(checkpoint)
    paths = find_images(inputs)
    task = module.task_spec
    writer = task.prediction_writer(out, module, output_format, overlays)
    transform = task.prediction_transform(
        module.config, module.hparams["channels"], module.ignore_index
    )
    decode_size = task.decode_size(module.config)  # as the evaluation splits were read
    summary = PredictSummary(out)
    module.eval()
    size = batch_size or module.config.batch_size
    with progress_bar(progress, len(paths)) as advance, torch.no_grad():
        for chunk in batches(paths, size):
            images, kept, originals = [], [], []
            for path in chunk:
                try:
                    image = read_image(path, module.hparams["channels"], decode_size)
                except DatasetError as error:
                    summary.skipped.append((path, str(error)))
                    report(f"skipped {path}: {error}")
                    continue
                images.append(transform(image))
                kept.append(path)
                originals.append(image)
            if kept:
                logits = module(torch.stack(images).to(module.device)).float().cpu()
                writer.add(kept, logits, originals)
                summary.images += len(kept)
            advance(len(chunk))
    if summary.images == 0:
        raise PredictError(f"none of the {len(paths)} input file(s) could be read")
    writer.close()
    return summary


class progress_bar:
    """A rich progress bar over the images (a no-op when off)."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled, self.total = enabled, total

    def __enter__(self):
        if not self.enabled:
            return lambda count: None
        from rich.progress import Progress

        self.progress = Progress(transient=True)
        self.progress.start()
        task = self.progress.add_task("predicting", total=self.total)
        return lambda count: self.progress.advance(task, count)

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self.progress.stop()
