"""What the engine writes: atomic JSON and CSV files, and the prediction writers (per-image
class probabilities, challenge submission files, segmentation masks and overlays).

A module of its own so that the task objects (``tasks.py``) and ``predict.py`` both use it
without importing each other.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from torch_imbalance.data.dermoscopy import ISIC2019_CLASSES
from torch_imbalance.data.odir import ODIR_LABELS, ODIR_NAMES

if TYPE_CHECKING:
    from torch_imbalance.engine.module import ImbalanceModule


def write_json(path: Path, payload: dict) -> None:
    """Atomically (temporary file, then rename)."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(payload, indent=1))
    os.replace(temporary, path)


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    """Atomically, like :func:`write_json`."""
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(temporary, path)


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
