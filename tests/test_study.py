"""The loss study's statistics and report (benchmarks/study.py): metrics against sklearn and the
harness's segmentation summary, the paired bootstrap interval, the claim verdicts, and a report
written from a small results tree."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from torch_imbalance.metrics.segmentation import summarise_segmentation

SPEC = importlib.util.spec_from_file_location(
    "study", Path(__file__).resolve().parent.parent / "benchmarks" / "study.py"
)
study = importlib.util.module_from_spec(SPEC)
sys.modules["study"] = study  # dataclasses look their module up while the file executes
SPEC.loader.exec_module(study)


@pytest.mark.parametrize("seed", range(5))
def test_macro_f1_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, 200)
    predicted = np.where(rng.random(200) < 0.7, labels, rng.integers(0, 4, 200))
    predicted[predicted == 3] = 0  # a class never predicted scores 0
    expected = f1_score(labels, predicted, average="macro", labels=range(4), zero_division=0)
    assert study.macro_f1(labels, predicted, 4) == pytest.approx(expected, abs=1e-12)


def test_iou_scores_match_the_harness_summary():
    confusion = np.random.default_rng(0).integers(0, 500, (3, 3))
    confusion[2] //= 20  # class 2 is the rarest
    summary = summarise_segmentation(torch.tensor(confusion), ["bg", "a", "b"])
    miou, rarest = study.iou_scores(confusion, 2)
    assert miou == pytest.approx(summary["miou"]) and summary["rarest_class"] == "b"
    assert rarest == pytest.approx(summary["rarest_class_iou"])


def _run(labels, predicted):
    return study.RunResult({}, {}, np.asarray(labels), np.asarray(predicted))


def test_paired_interval_is_zero_for_identical_runs_and_positive_for_a_real_gain():
    rng = np.random.default_rng(1)
    statistic = study.MacroF1Statistic(2)
    base, same, better = {}, {}, {}
    for seed in range(3):
        labels = rng.integers(0, 2, 300)
        predicted = np.where(rng.random(300) < 0.75, labels, 1 - labels)
        fixed = np.where(rng.random(300) < 0.6, labels, predicted)  # 60 % of errors fixed
        base[seed], same[seed], better[seed] = (
            _run(labels, predicted),
            _run(labels, predicted),
            _run(labels, fixed),
        )
    assert study.paired_interval(same, base, statistic) == (0.0, 0.0, 0.0)
    point, low, high = study.paired_interval(better, base, statistic)
    assert 0 < low < point < high
    worse_point, _, worse_high = study.paired_interval(base, better, statistic)
    assert worse_point == pytest.approx(-point) and worse_high < 0
    assert study.paired_interval(better, {}, statistic) is None


def test_claim_verdicts_follow_the_interval():
    gain = {
        "lmf": {"macro_f1": (0.05, 0.03, 0.07)},
        "lmf_official": {"macro_f1": (0.0, -0.01, 0.01)},
    }
    gain["lmf_cosine"] = {"macro_f1": (0.02, -0.01, 0.05)}
    sentences = study.claim_sentences(study.STUDY_NAMES["br35h-lt"], gain)
    assert "`lmf` beats cross-entropy by ≥ 2 macro-F1 points*: **holds**" in sentences[0]
    assert "**does not hold**" in sentences[1]
    assert "**cannot tell**" in sentences[2] and "spans +2" in sentences[2]
    assert "no paired runs yet" in sentences[3]


def test_report_from_a_results_tree(tmp_path, monkeypatch):
    results = tmp_path / "results"
    monkeypatch.setattr(study, "RESULTS", results)
    monkeypatch.setattr(study, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(study, "REPORT", tmp_path / "results.md")
    monkeypatch.setattr(study, "FIGURES", tmp_path / "figures")
    target = study.STUDY_NAMES["br35h-lt"]
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 50)
    for arm, accuracy in (("ce", 0.7), ("lmf", 0.95), ("focal", 0.6), ("ldam_drw", 0.65)):
        folder = results / target.name / arm / "seed-0"
        folder.mkdir(parents=True)
        predicted = np.where(rng.random(50) < accuracy, labels, 1 - labels)
        names = np.array(["no", "yes"])
        rows = ["id,label,predicted,prob_no,prob_yes"] + [
            f"{i},{names[t]},{names[p]},0.5,0.5"
            for i, (t, p) in enumerate(zip(labels, predicted, strict=True))
        ]
        (folder / "test.csv").write_text("\n".join(rows) + "\n")
        test = {name: 0.5 for name in study.CLASSIFICATION_COLUMNS}
        test["macro_f1"] = study.macro_f1(labels, predicted, 2)
        metrics = {"test": test, "dataset": {"classes": ["no", "yes"]}}
        (folder / "metrics.json").write_text(json.dumps(metrics))
        (folder / "curves.csv").write_text("epoch,val/macro_f1\n0,0.6\n1,0.7\n")
    study.write_report()
    report = (tmp_path / "results.md").read_text()
    assert "Runs finished: 4 of 30." in report
    assert "*LMF beats focal and LDAM*: **holds** for `lmf`" in report
    assert "| weighted_ce | 0 | …" in report
    assert "| lmf | 1 |" in report and "`lmf` beats cross-entropy" in report
    assert (tmp_path / "figures" / "study-br35h-lt-seeds.png").is_file()
    assert "No finished runs yet." in report  # the other studies
