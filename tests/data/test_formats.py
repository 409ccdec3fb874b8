"""The dermoscopy and fundus formats, written as tiny synthetic files in their real layouts."""

from __future__ import annotations

import pytest
from harness_helpers import write_csv, write_ham10000, write_isic2019, write_odir

from torch_imbalance.data import DatasetError, load_dataset
from torch_imbalance.data.dermoscopy import HAM10000_CLASSES, ISIC2019_CLASSES


def test_ham10000_is_grouped_by_lesion(tmp_path):
    bundle = load_dataset(
        "ham10000", write_ham10000(tmp_path), seed=0, val_fraction=0.2, test_fraction=0.2
    )
    assert bundle.classes == HAM10000_CLASSES
    lesions = [set(p.groups.tolist()) for p in (bundle.train, bundle.val, bundle.test)]
    assert not (lesions[0] & lesions[1] or lesions[0] & lesions[2] or lesions[1] & lesions[2])
    assert sum(len(p) for p in (bundle.train, bundle.val, bundle.test)) == 7 * 6 * 2


def test_ham10000_errors_name_the_problem(tmp_path):
    write_csv(tmp_path / "HAM10000_metadata.csv", ["lesion_id", "image_id"], [["a", "b"]])
    with pytest.raises(DatasetError, match=r"missing column\(s\) \['dx'\]"):
        load_dataset("ham10000", tmp_path)
    write_csv(
        tmp_path / "HAM10000_metadata.csv",
        ["lesion_id", "image_id", "dx"],
        [["L1", "ISIC_0000001", "nv"]],
    )
    with pytest.raises(DatasetError, match=r"1 image\(s\) listed .* not under"):
        load_dataset("ham10000", tmp_path)
    with pytest.raises(DatasetError, match="HAM10000_metadata.csv not found"):
        load_dataset("ham10000", tmp_path / "x")


def test_isic2019_one_hot_and_lesion_groups(tmp_path):
    write_isic2019(tmp_path)
    bundle = load_dataset("isic2019", tmp_path, val_fraction=0.25, test_fraction=0.25)
    assert bundle.classes == ISIC2019_CLASSES
    assert bundle.train.groups is not None
    write_isic2019(tmp_path, unknown_row=3)
    with pytest.raises(DatasetError, match="line 5 .*UNK is not a training class"):
        load_dataset("isic2019", tmp_path)


def test_odir5k_multilabel_and_single_label_subset(tmp_path):
    root = write_odir(tmp_path)
    multi = load_dataset("odir5k", root, val_fraction=0.2, test_fraction=0.2)
    assert multi.task == "multilabel" and multi.train.labels.shape[1] == 8
    patients = [set(p.groups.tolist()) for p in (multi.train, multi.val, multi.test)]
    assert not (patients[0] & patients[1] or patients[0] & patients[2])
    assert sum(len(p) for p in (multi.train, multi.val, multi.test)) == 80
    single = load_dataset("odir5k", root, label_mode="single", val_fraction=0.2, test_fraction=0.2)
    assert single.task == "multiclass" and single.train.labels.ndim == 1
    assert sum(len(p) for p in (single.train, single.val, single.test)) == 2 * 32
    with pytest.raises(DatasetError, match="label_mode must be one of"):
        load_dataset("odir5k", root, label_mode="both")


def test_odir5k_reads_the_official_xlsx_sheet(tmp_path):
    """The download's annotation sheet is an .xlsx (openpyxl is in the data extra): it gives
    the same dataset as the same rows in a .csv."""
    from_csv = load_dataset("odir5k", write_odir(tmp_path / "csv"), seed=0)
    from_xlsx = load_dataset("odir5k", write_odir(tmp_path / "xlsx", sheet="xlsx"), seed=0)
    assert not list((tmp_path / "xlsx").glob("*.csv"))
    for a, b in zip(
        (from_csv.train, from_csv.val, from_csv.test),
        (from_xlsx.train, from_xlsx.val, from_xlsx.test),
        strict=True,
    ):
        assert a.ids == b.ids
        assert (a.labels == b.labels).all()


def test_xlsx_sheets_need_openpyxl_and_say_so(tmp_path, monkeypatch):
    import sys

    from torch_imbalance.data.tables import read_table

    sheet = tmp_path / "ODIR-5K_Training_Annotations.xlsx"
    sheet.write_bytes(b"PK not really a workbook")
    monkeypatch.setitem(sys.modules, "openpyxl", None)  # as if not installed
    with pytest.raises(DatasetError, match="needs openpyxl: run `pip install openpyxl`"):
        read_table(sheet, ["ID"])


def test_empty_annotation_sheet_is_an_error(tmp_path):
    from torch_imbalance.data.tables import read_table

    sheet = tmp_path / "HAM10000_metadata.csv"
    sheet.write_text("lesion_id,image_id,dx\n")
    with pytest.raises(DatasetError, match="no rows"):
        read_table(sheet, ["lesion_id", "image_id", "dx"])
    sheet.write_text("lesion_id,image_id\n")
    with pytest.raises(DatasetError, match=r"missing column\(s\) \['dx'\]"):
        read_table(sheet, ["lesion_id", "image_id", "dx"])
