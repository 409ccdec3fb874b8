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

import numpy as np
import torch
from PIL import Image

from torch_imbalance.data.dermoscopy import ISIC2019_CLASSES
from torch_imbalance.data.errors import DatasetError
from torch_imbalance.data.io import IMAGE_SUFFIXES, read_image
from torch_imbalance.data.odir import ODIR_LABELS, ODIR_NAMES
from torch_imbalance.engine.evaluate import load_module
from torch_imbalance.engine.module import ImbalanceModule
from torch_imbalance.engine.run import RunFolderError
from torch_imbalance.engine.tasks import write_csv

#: ISIC 2019 task 1 submission columns (the official scorer's categories).
ISIC2019_COLUMNS = [*ISIC2019_CLASSES, "UNK"]
#: Our class names that are an ISIC column under another name (HAM10000's ``dx`` codes).
ISIC2019_ALIASES = {
    "mel": "MEL",
    "nv": "NV",
    "bcc": "BCC",
    "akiec": "AK",
    "bkl": "BKL",
    "df": "DF",
    "vasc": "VASC",
}
FORMATS = ("csv", "isic2019", "odir5k")


class PredictError(ValueError):
    """A prediction that cannot be made as asked (inputs, checkpoint, format)."""


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
    summary = PredictSummary(out)
    module.eval()
    size = batch_size or module.config.batch_size
    with progress_bar(progress, len(paths)) as advance, torch.no_grad():
        for chunk in batches(paths, size):
            images, kept, originals = [], [], []
            for path in chunk:
                try:
                    image = read_image(path, module.hparams["channels"])
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


# ------------------------------------------------------------------------------- writers
class ClassificationWriter:
    """Rows of class probabilities; ``close`` writes the CSV in the chosen format."""

    def __init__(self, out: Path, module: ImbalanceModule, output_format: str) -> None:
        self.out, self.format = out, output_format
        self.classes = list(module.classes)
        self.probabilities = module.probabilities
        self.multilabel = module.task_spec.labels == "multilabel"
        self.paths: list[Path] = []
        self.rows: list[np.ndarray] = []
        if output_format == "isic2019":
            self.columns = isic2019_columns(self.classes, self.multilabel)
        elif output_format == "odir5k":
            self.columns = odir5k_columns(self.classes)

    def add(self, paths: list[Path], logits: torch.Tensor, images: list[Image.Image]) -> None:
        self.paths += paths
        self.rows += list(self.probabilities(logits).numpy().astype(np.float64))

    def close(self) -> None:
        probabilities = np.stack(self.rows)
        if self.format == "isic2019":
            header = ["image", *ISIC2019_COLUMNS]
            table = np.zeros((len(self.paths), len(ISIC2019_COLUMNS)))
            table[:, self.columns] = probabilities
            rows: list[list[Any]] = [
                [p.stem, *map(_number, r)] for p, r in zip(self.paths, table, strict=True)
            ]
        elif self.format == "odir5k":
            header = ["ID", *ODIR_LABELS]
            rows = odir5k_rows(self.paths, probabilities[:, self.columns])
        elif self.multilabel:
            header = [
                "path",
                *(f"prob_{c}" for c in self.classes),
                *(f"label_{c}" for c in self.classes),
            ]
            rows = [
                [str(p), *map(_number, r), *(int(v >= 0.5) for v in r)]
                for p, r in zip(self.paths, probabilities, strict=True)
            ]
        else:
            header = ["path", "predicted", *(f"prob_{c}" for c in self.classes)]
            rows = [
                [str(p), self.classes[int(r.argmax())], *map(_number, r)]
                for p, r in zip(self.paths, probabilities, strict=True)
            ]
        self.out.parent.mkdir(parents=True, exist_ok=True)
        write_csv(self.out, header, rows)


def _number(value: float) -> str:
    """Six significant digits, always read back as a float (the ISIC scorer rejects a column
    of bare integers such as an all-zero ``UNK``)."""
    text = f"{value:.6g}"
    return text if any(c in text for c in ".en") else f"{text}.0"


def isic2019_columns(classes: list[str], multilabel: bool) -> list[int]:
    """The ISIC column of each of our classes (ISIC names or HAM10000 ``dx`` codes)."""
    if multilabel:
        raise PredictError("--format isic2019 is single-label; this checkpoint is multi-label")
    columns = []
    for name in classes:
        column = name if name in ISIC2019_COLUMNS else ISIC2019_ALIASES.get(name.lower())
        if column is None:
            raise PredictError(
                f"--format isic2019: the checkpoint's class {name!r} is not an ISIC 2019 "
                f"category ({', '.join(ISIC2019_COLUMNS)}) or a HAM10000 code "
                f"({', '.join(ISIC2019_ALIASES)}); classes: {classes}"
            )
        columns.append(ISIC2019_COLUMNS.index(column))
    return columns


def odir5k_columns(classes: list[str]) -> list[int]:
    """Our class order -> ODIR column order (names as ``data/odir.py`` or the letters)."""
    if sorted(classes) == sorted(ODIR_NAMES):
        return [classes.index(name) for name in ODIR_NAMES]
    if sorted(classes) == sorted(ODIR_LABELS):
        return [classes.index(name) for name in ODIR_LABELS]
    raise PredictError(
        f"--format odir5k needs a checkpoint trained on the 8 ODIR-5K classes "
        f"({', '.join(ODIR_NAMES)}); this one has {classes}"
    )


def odir_patient(path: Path) -> str:
    """``0_left.jpg`` -> ``"0"`` (ODIR-5K names both fundus images after the patient)."""
    stem = path.stem
    for side in ("_left", "_right"):
        if stem.lower().endswith(side):
            return stem[: -len(side)]
    raise PredictError(
        f"--format odir5k: cannot tell the patient of {path.name}; ODIR-5K images are named "
        "<patient>_left.<ext> and <patient>_right.<ext>"
    )


def odir5k_rows(paths: list[Path], probabilities: np.ndarray) -> list[list[Any]]:
    """One row per patient from its eyes: a disease's probability is the larger of the two
    eyes' (the patient has it if either eye shows it); Normal's the smaller (normal only if
    both eyes are)."""
    patients: dict[str, list[np.ndarray]] = {}
    for path, row in zip(paths, probabilities, strict=True):
        patients.setdefault(odir_patient(path), []).append(row)
    rows = []
    for patient in sorted(patients, key=lambda p: (len(p), p)):
        eyes = np.stack(patients[patient])
        combined = eyes.max(0)
        combined[0] = eyes[:, 0].min()
        rows.append([patient, *map(_number, combined)])
    return rows


class SegmentationWriter:
    """A mask PNG per image (class indices, the input's size) and, on request, an overlay."""

    def __init__(
        self, out: Path, module: ImbalanceModule, output_format: str, overlays: bool
    ) -> None:
        if output_format != "csv":
            raise PredictError(f"--format {output_format} is for classification checkpoints")
        self.out, self.overlays = out, overlays
        self.classes = len(module.classes)
        self.names: dict[str, Path] = {}

    def add(self, paths: list[Path], logits: torch.Tensor, images: list[Image.Image]) -> None:
        from torch.nn.functional import interpolate

        from torch_imbalance.metrics.plots import colour_mask

        (self.out / "masks").mkdir(parents=True, exist_ok=True)
        for path, scores, image in zip(paths, logits, images, strict=True):
            size = (image.height, image.width)
            if tuple(scores.shape[1:]) != size:  # back to the input's size, then the argmax
                scores = interpolate(scores[None], size=size, mode="bilinear")[0]
            mask = scores.argmax(0).numpy().astype(np.uint8)
            name = self._name(path)
            Image.fromarray(mask).save(self.out / "masks" / f"{name}.png")
            if self.overlays:
                (self.out / "overlays").mkdir(exist_ok=True)
                grey = np.asarray(image.convert("RGB"), dtype=np.float64)
                colours = colour_mask(mask, self.classes).astype(np.float64)
                blend = np.where(mask[..., None] > 0, 0.5 * grey + 0.5 * colours, grey)
                Image.fromarray(blend.round().astype(np.uint8)).save(
                    self.out / "overlays" / f"{name}.png"
                )

    def _name(self, path: Path) -> str:
        """The file's stem; a second file with the same stem gets its parent folder's name."""
        name = path.stem
        if name in self.names and self.names[name] != path:
            name = f"{path.parent.name}_{path.stem}"
        self.names[name] = path
        return name

    def close(self) -> None:
        return None
