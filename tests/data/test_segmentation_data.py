"""Segmentation data: segfolder, the built-in datasets, joint transforms, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from harness_helpers import write_segfolder
from PIL import Image

from torch_imbalance.data import DatasetError, is_installed, load_dataset
from torch_imbalance.data.builtin import instance_to_semantic
from torch_imbalance.data.dataset import SegmentationDataset
from torch_imbalance.data.transforms import build_segmentation_transform


def test_segfolder_loads_counts_pixels_and_infers_classes(tmp_path):
    bundle = load_dataset("segfolder", write_segfolder(tmp_path), seed=0)
    assert bundle.num_classes == 3 and bundle.ignore_index == 255
    counts = bundle.class_counts()
    assert all(c > 0 for c in counts) and counts[0] > counts[1]
    assert sum(len(p) for p in (bundle.train, bundle.val, bundle.test)) == 12


def test_mask_values_beyond_the_classes_are_an_error(tmp_path):
    root = write_segfolder(tmp_path)
    mask = np.asarray(Image.open(root / "masks" / "img03.png")).copy()
    mask[5, 5] = 7
    Image.fromarray(mask).save(root / "masks" / "img03.png")
    with pytest.raises(DatasetError, match=r"mask of 'img03' holds value\(s\) \[7\] outside the 3"):
        load_dataset("segfolder", root, num_classes=3)


def test_missing_masks_and_size_mismatch_are_errors(tmp_path):
    root = write_segfolder(tmp_path)
    (root / "masks" / "img05.png").unlink()
    with pytest.raises(DatasetError, match=r"1 image\(s\) have no mask .*img05.png"):
        load_dataset("segfolder", root)
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(root / "masks" / "img05.png")
    bundle = load_dataset("segfolder", root, num_classes=3)
    part = next(p for p in (bundle.train, bundle.val, bundle.test) if "img05" in p.ids)
    data = SegmentationDataset(part, 3, build_segmentation_transform(16, 3, False, 255))
    with pytest.raises(DatasetError, match="'img05': mask is 10×10 but the image is 24×24"):
        data[part.ids.index("img05")]
    with pytest.raises(DatasetError, match="images/ and masks/"):
        load_dataset("segfolder", tmp_path / "nothing")


def test_joint_transform_keeps_image_and_mask_aligned(tmp_path):
    bundle = load_dataset("segfolder", write_segfolder(tmp_path), seed=0)
    data = SegmentationDataset(bundle.train, 1, build_segmentation_transform(24, 1, True, 255))
    for draw in range(5):
        image, mask = data[(0, draw)]
        assert image.shape == (1, 24, 24) and mask.shape == (24, 24) and mask.dtype == torch.int64
        inside = mask == 1
        if inside.any() and (mask == 0).any():  # the disc stays brighter than the background
            assert image[0][inside].mean() > image[0][mask == 0].mean()
        assert set(mask.unique().tolist()) <= {0, 1, 2, 255}
    assert torch.equal(data[(0, 3)][1], data[(0, 3)][1])  # same draw, same augmentation


def test_instance_to_semantic_marks_boundaries():
    instances = np.zeros((6, 6), int)
    instances[1:5, 1:3] = 1
    instances[1:5, 3:5] = 2  # touching nuclei: the contact pixels are boundary
    classes = instance_to_semantic(instances)
    assert classes[0].tolist() == [0] * 6
    assert classes[2].tolist() == [0, 2, 2, 2, 2, 0]
    assert classes[1].tolist() == [0, 2, 2, 2, 2, 0]


@pytest.mark.parametrize(
    ("name", "sizes", "fractions"),
    [
        ("dsb2018-nuclei", (48, 8, 8), (0.801, 0.168, 0.031)),
        ("mni152-tissue", None, (0.741, 0.163, 0.096)),
    ],
)
def test_builtin_segmentation_datasets_match_the_spec(name, sizes, fractions):
    if not is_installed(name):
        pytest.skip(f"{name}'s package is not installed")
    bundle = load_dataset(name)
    if sizes is not None:
        assert (len(bundle.train), len(bundle.val), len(bundle.test)) == sizes
    else:
        assert len(bundle.train) + len(bundle.val) + len(bundle.test) == 144
    totals = np.sum([list(v.values()) for v in bundle.summary().values()], axis=0)
    assert (totals / totals.sum()) == pytest.approx(fractions, abs=0.002)


@pytest.mark.parametrize(("name", "positions"), [("dsb2018-nuclei", 8), ("mni152-tissue", 144)])
def test_rotating_folds_test_every_position_once_over_the_seeds(name, positions):
    if not is_installed(name):
        pytest.skip(f"{name}'s package is not installed")
    tested = []
    for seed in range(5):
        bundle = load_dataset(name, seed=seed, folds=5)
        parts = [set(bundle.train.ids), set(bundle.val.ids), set(bundle.test.ids)]
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
        tested += bundle.test.ids
        # the validation fold is the next seed's test fold
        assert set(bundle.val.ids) == set(load_dataset(name, seed=seed + 1, folds=5).test.ids)
    everything = len(load_dataset(name).train) + len(load_dataset(name).val)
    everything += len(load_dataset(name).test)
    assert sorted(tested) == sorted(set(tested)) and len(tested) == everything
    assert (
        load_dataset(name, seed=5, folds=5).test.ids == load_dataset(name, seed=0, folds=5).test.ids
    )


def test_rotating_folds_are_contiguous_blocks_and_checked():
    from torch_imbalance.data.builtin import rotating_folds

    assert rotating_folds(8, 5, 0) == ["test"] * 2 + ["val"] * 2 + ["train"] * 4
    assert rotating_folds(8, 5, 3) == ["train"] * 6 + ["test", "val"]
    with pytest.raises(DatasetError, match=r"folds must lie in \[3, 8\]"):
        rotating_folds(8, 9, 0)
    with pytest.raises(DatasetError, match=r"does not take option\(s\) \['folds'\]"):
        load_dataset("digits-lt", folds=5)
