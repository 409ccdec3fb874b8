"""Splits: stratified, grouped, deterministic; training-set limits; long-tail profile."""

from __future__ import annotations

import numpy as np
import pytest

from torch_imbalance.data.records import DatasetError, ImageSet
from torch_imbalance.data.splits import (
    limit_training_set,
    long_tail,
    long_tail_counts,
    split_dataset,
    strata,
)


def make_set(labels, groups=None) -> ImageSet:
    labels = np.asarray(labels)
    return ImageSet(
        list(range(len(labels))),
        labels,
        [f"item{i}" for i in range(len(labels))],
        None if groups is None else np.asarray(groups),
    )


def test_split_is_stratified_deterministic_and_disjoint():
    data = make_set([0] * 200 + [1] * 40 + [2] * 20)
    first = split_dataset(data, 0.15, 0.15, seed=3)
    again = split_dataset(data, 0.15, 0.15, seed=3)
    other = split_dataset(data, 0.15, 0.15, seed=4)
    assert [p.ids for p in first] == [p.ids for p in again]
    assert [p.ids for p in first] != [p.ids for p in other]
    ids = [set(p.ids) for p in first]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert sum(map(len, ids)) == len(data)
    _train, val, test = first
    assert test.counts(3) == [30, 6, 3]  # stratified: each class in proportion
    assert val.counts(3) == [30, 6, 3]


def test_grouped_split_keeps_each_group_in_one_part():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(120), 3)  # three images per lesion
    labels = np.repeat(rng.integers(0, 3, 120), 3)
    parts = split_dataset(make_set(labels, groups), 0.2, 0.2, seed=0)
    seen = [set(p.groups.tolist()) for p in parts]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    assert all(len(p) > 0 for p in parts)


@pytest.mark.parametrize(("val", "test"), [(-0.1, 0.1), (0.5, 0.5), (0.2, 1.0)])
def test_bad_fractions_are_rejected(val, test):
    with pytest.raises(DatasetError, match="fraction"):
        split_dataset(make_set([0, 1] * 10), val, test, seed=0)


def test_limit_training_set_fraction_and_max_per_class():
    data = make_set([0] * 100 + [1] * 30 + [2] * 5)
    assert limit_training_set(data, 0, fraction=0.5).counts(3) == [50, 15, 2]
    assert limit_training_set(data, 0, max_per_class=10).counts(3) == [10, 10, 5]
    assert limit_training_set(data, 0, 0.5, 10).counts(3) == [10, 10, 2]
    with pytest.raises(DatasetError, match="train_fraction"):
        limit_training_set(data, 0, fraction=0.0)
    with pytest.raises(DatasetError, match="max_per_class"):
        limit_training_set(data, 0, max_per_class=0)


def test_long_tail_profile_and_subsampling():
    assert long_tail_counts(100, 3, 100.0) == [100, 10, 1]
    assert long_tail_counts(50, 1, 10.0) == [50]
    with pytest.raises(DatasetError, match="at least 1"):
        long_tail_counts(10, 3, 0.5)
    data = make_set([0] * 20 + [1] * 20 + [2] * 20)
    assert long_tail(data, [20, 5, 1], seed=0).counts(3) == [20, 5, 1]


def test_multilabel_strata_use_the_rarest_positive_label():
    labels = np.array([[1, 0, 1], [1, 0, 0], [0, 0, 0], [1, 1, 0]])
    # frequencies: label0 3, label1 1, label2 1
    assert strata(labels).tolist() == [2, 0, -1, 1]
