"""The metric collections against scikit-learn on random predictions."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from torch_imbalance.metrics import build_classification_metrics, summarise_classification


def expected_calibration_error(probs: np.ndarray, target: np.ndarray, bins: int = 15) -> float:
    confidence = probs.max(1)
    correct = probs.argmax(1) == target
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for low, high in itertools.pairwise(edges):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return total


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multiclass_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    classes = 5
    target = rng.choice(classes, 400, p=[0.6, 0.2, 0.1, 0.07, 0.03])
    logits = rng.normal(size=(400, classes)) + 1.5 * np.eye(classes)[target]
    probs = torch.softmax(torch.as_tensor(logits), 1).float()
    collection = build_classification_metrics(classes)
    for chunk in range(4):  # several updates, as batches
        part = slice(chunk * 100, (chunk + 1) * 100)
        collection.update(probs[part], torch.as_tensor(target[part]))
    names = [f"c{i}" for i in range(classes)]
    got = summarise_classification(collection.compute(), names)
    predicted = probs.numpy().argmax(1)
    kw = {"zero_division": 0}
    assert got["macro_f1"] == pytest.approx(
        skm.f1_score(target, predicted, average="macro", **kw), abs=1e-6
    )
    assert got["balanced_accuracy"] == pytest.approx(
        skm.balanced_accuracy_score(target, predicted), abs=1e-6
    )
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(target, predicted), abs=1e-6)
    assert got["macro_precision"] == pytest.approx(
        skm.precision_score(target, predicted, average="macro", **kw), abs=1e-6
    )
    assert got["macro_recall"] == pytest.approx(
        skm.recall_score(target, predicted, average="macro", **kw), abs=1e-6
    )
    assert got["auroc"] == pytest.approx(
        skm.roc_auc_score(target, probs.numpy(), multi_class="ovr", average="macro"), abs=1e-4
    )
    assert got["ece"] == pytest.approx(expected_calibration_error(probs.numpy(), target), abs=1e-5)
    assert got["confusion_matrix"] == skm.confusion_matrix(target, predicted).tolist()
    f1 = skm.f1_score(target, predicted, average=None, **kw)
    support = np.bincount(target, minlength=classes)
    for i, name in enumerate(names):
        assert got["per_class"][name]["f1"] == pytest.approx(f1[i], abs=1e-6)
        assert got["per_class"][name]["support"] == support[i]


def test_balanced_accuracy_skips_a_class_that_never_occurs():
    """A class predicted but absent from the truth: sklearn's balanced_accuracy_score (and the
    ISIC scorer) average recall over the classes that occur; a plain macro recall would count
    the absent class as 0."""
    target = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])  # class 3 never occurs
    predicted = torch.tensor([0, 0, 3, 1, 3, 2, 2, 1])
    probs = torch.nn.functional.one_hot(predicted, 4).float() * 0.9 + 0.025
    collection = build_classification_metrics(4)
    collection.update(probs, target)
    got = summarise_classification(collection.compute(), ["a", "b", "c", "d"])
    with pytest.warns(UserWarning, match="y_pred contains classes not in y_true"):
        expected = skm.balanced_accuracy_score(target.numpy(), predicted.numpy())
    assert got["balanced_accuracy"] == pytest.approx(expected, abs=1e-12)
    assert got["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 2 / 3) / 3)


def test_multilabel_metrics_match_sklearn():
    rng = np.random.default_rng(7)
    labels = 4
    target = (rng.random((300, labels)) < [0.5, 0.2, 0.1, 0.05]).astype(int)
    scores = rng.normal(size=(300, labels)) + 2.0 * target
    probs = torch.sigmoid(torch.as_tensor(scores)).float()
    collection = build_classification_metrics(labels, task="multilabel")
    collection.update(probs, torch.as_tensor(target))
    got = summarise_classification(collection.compute(), list("abcd"))
    predicted = (probs.numpy() > 0.5).astype(int)
    assert got["macro_f1"] == pytest.approx(
        skm.f1_score(target, predicted, average="macro", zero_division=0), abs=1e-6
    )
    assert got["map"] == pytest.approx(
        skm.average_precision_score(target, probs.numpy(), average="macro"), abs=1e-4
    )
    assert got["auroc"] == pytest.approx(
        skm.roc_auc_score(target, probs.numpy(), average="macro"), abs=1e-4
    )
    assert [got["per_class"][k]["support"] for k in "abcd"] == target.sum(0).tolist()
