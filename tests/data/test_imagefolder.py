"""The imagefolder format, its splits and its errors; image decoding errors."""

from __future__ import annotations

import numpy as np
import pytest
from harness_helpers import write_imagefolder

from torch_imbalance.data import DatasetError, load_dataset
from torch_imbalance.data.dataset import ImageDataset, read_image
from torch_imbalance.data.transforms import build_transform


def test_flat_folder_is_split_and_classes_are_sorted(tmp_path):
    write_imagefolder(tmp_path, {"zeta": 20, "alpha": 10})
    bundle = load_dataset("imagefolder", tmp_path, seed=0)
    assert bundle.classes == ["alpha", "zeta"]
    assert bundle.class_counts() == [6, 14]  # 5 of 30 to test, 5 to val, stratified
    total = sum(len(p) for p in (bundle.train, bundle.val, bundle.test))
    assert total == 30
    bundle.save_splits(tmp_path / "out")
    lines = (tmp_path / "out" / "test.csv").read_text().splitlines()
    assert lines[0] == "id,label" and len(lines) == len(bundle.test) + 1


def test_predefined_splits_are_used_as_given(tmp_path):
    write_imagefolder(tmp_path, {"a": 4, "b": 3}, splits=("train", "val", "test"))
    bundle = load_dataset("imagefolder", tmp_path)
    assert [len(bundle.train), len(bundle.val), len(bundle.test)] == [7, 7, 7]
    assert bundle.train.ids[0].startswith("train/")


def test_missing_val_is_split_off_train(tmp_path):
    write_imagefolder(tmp_path, {"a": 20, "b": 20}, splits=("train", "test"))
    bundle = load_dataset("imagefolder", tmp_path, val_fraction=0.25)
    assert len(bundle.test) == 40
    assert len(bundle.val) == 10 and len(bundle.train) == 30


def test_errors_name_what_was_expected(tmp_path):
    with pytest.raises(DatasetError, match="is not a folder"):
        load_dataset("imagefolder", tmp_path / "absent")
    with pytest.raises(DatasetError, match="no images found"):
        load_dataset("imagefolder", tmp_path)
    with pytest.raises(DatasetError, match="needs --root"):
        load_dataset("imagefolder")
    with pytest.raises(DatasetError, match="unknown dataset 'nope'"):
        load_dataset("nope")
    (tmp_path / "val" / "a").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no train/ folder"):
        load_dataset("imagefolder", tmp_path)


def test_class_absent_from_training_split_is_an_error(tmp_path):
    write_imagefolder(tmp_path / "d", {"a": 3}, splits=("train",))
    write_imagefolder(tmp_path / "d", {"a": 2, "b": 2}, splits=("val", "test"))
    bundle = load_dataset("imagefolder", tmp_path / "d")
    with pytest.raises(DatasetError, match=r"no training examples of class\(es\) \['b'\]"):
        bundle.class_counts()


def test_corrupt_and_missing_images_are_reported_with_their_path(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg at all")
    with pytest.raises(DatasetError, match="cannot decode image .*broken.jpg"):
        read_image(bad, 3)
    with pytest.raises(DatasetError, match="not found: .*gone.png"):
        read_image(tmp_path / "gone.png", 1)


def test_dataset_items_are_normalised_tensors(tmp_path):
    write_imagefolder(tmp_path, {"a": 5, "b": 5})
    bundle = load_dataset("imagefolder", tmp_path)
    for channels in (1, 3):
        data = ImageDataset(bundle.train, channels, build_transform(16, channels, train=True))
        image, label = data[0]
        assert image.shape == (channels, 16, 16)
        assert -1.0 <= float(image.min()) and float(image.max()) <= 1.0
        assert label.dtype.is_floating_point is False
    array_item = np.zeros((8, 8), dtype=np.uint8)
    assert read_image(array_item, 3).mode == "RGB"
