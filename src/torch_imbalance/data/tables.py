"""Reading the annotation sheets of the formats (CSV, or XLSX with openpyxl) with clear errors."""

from __future__ import annotations

import csv
from pathlib import Path

from torch_imbalance.data.records import DatasetError


def read_table(path: Path, required: list[str]) -> list[dict[str, str]]:
    """Rows of a ``.csv`` or ``.xlsx`` sheet as ``{column: text}``; every ``required`` column
    must be present (the error names the file, the missing columns and the ones found)."""
    if not path.is_file():
        raise DatasetError(f"annotation file not found: {path}")
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        rows = _read_xlsx(path)
    else:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = [dict(row) for row in csv.DictReader(handle)]
    columns = list(rows[0]) if rows else _header(path)
    missing = [c for c in required if c not in columns]
    if missing:
        raise DatasetError(
            f"{path}: missing column(s) {missing}; expected {required}, found {columns}"
        )
    if not rows:
        raise DatasetError(f"{path}: no rows")
    return rows


def _header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        return next(csv.reader(handle), [])


def _read_xlsx(path: Path) -> list[dict[str, str]]:
    try:
        import openpyxl
    except ImportError as error:
        raise DatasetError(
            f"reading {path} needs openpyxl: run `pip install openpyxl` (or save it as .csv)"
        ) from error
    book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    sheet = book.worksheets[0]
    values = [
        ["" if v is None else str(v) for v in row] for row in sheet.iter_rows(values_only=True)
    ]
    book.close()
    if not values:
        return []
    header = [h.strip() for h in values[0]]
    return [dict(zip(header, row, strict=False)) for row in values[1:] if any(row)]


def index_images(
    root: Path, suffixes: tuple[str, ...] = (".jpg", ".jpeg", ".png")
) -> dict[str, Path]:
    """``{file stem: path}`` of every image below ``root`` (images may sit in several folders)."""
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in suffixes and path.is_file():
            found.setdefault(path.stem, path)
            found.setdefault(path.name, path)
    return found


def resolve_images(names: list[str], images: dict[str, Path], root: Path, what: str) -> list[Path]:
    """The image paths for ``names`` (stems or file names); all must exist."""
    missing = [n for n in names if n not in images]
    if missing:
        raise DatasetError(
            f"{what}: {len(missing)} image(s) listed in the annotations are not under {root} "
            f"(first: {missing[:5]})"
        )
    return [images[n] for n in names]
