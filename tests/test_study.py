"""The loss study (benchmarks/study.py): its definitions follow the protocol (five seeds, one
primary arm per claim, rotating folds, deterministic runs, γ with its own learning rate), and
the report with its claims is written from a small results tree."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from harness_helpers import write_classification_run

SPEC = importlib.util.spec_from_file_location(
    "study", Path(__file__).resolve().parent.parent / "benchmarks" / "study.py"
)
study = importlib.util.module_from_spec(SPEC)
sys.modules["study"] = study  # dataclasses look their module up while the file executes
SPEC.loader.exec_module(study)


def test_the_protocol():
    assert len(study.SEEDS) >= 5
    for s in study.STUDIES:
        roles = [a.role for a in s.arms]
        assert roles.count("primary") == 1 and roles.count("baseline") == 1
        assert s.settings["deterministic"] is True
        if s.task == "segmentation":
            assert s.settings["folds"] == len(study.SEEDS)
        for arm in s.arms:
            learnable = arm.params.get("learnable_gamma") or arm.loss == "dual_focal_adaptive"
            assert bool(learnable) == ("gamma_lr" in arm.settings), arm.label
    lowdata = study.STUDY_NAMES["br35h-lt-lowdata"].settings
    assert lowdata["val_keep_fraction"] == lowdata["train_fraction"]


def test_study_arms_are_compare_arms():
    from torch_imbalance.engine.compare import Arm, check_grid

    arms = study.STUDY_NAMES["dsb2018-nuclei"].arms
    assert all(isinstance(a, Arm) for a in arms)
    check_grid(list(arms), [0], race=False)  # known losses, labels unique


@pytest.fixture
def tree(tmp_path, monkeypatch):
    results = tmp_path / "results"
    monkeypatch.setattr(study, "RESULTS", results)
    monkeypatch.setattr(study, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(study, "REPORT", tmp_path / "results.md")
    monkeypatch.setattr(study, "FIGURES", tmp_path / "figures")
    return results


def test_report_from_a_results_tree(tree, tmp_path):
    counts = {"p=0": 1055, "p=1/3": 207, "p=2/3": 74, "p=1": 500}
    accuracies = {"ce": 0.6, "lmf_official": 0.9, "focal": 0.55, "ldam_drw": 0.62, "lmf": 0.61}
    for arm, accuracy in accuracies.items():
        for seed in range(3):
            write_classification_run(
                tree / "elpv" / arm / f"seed-{seed}",
                seed,
                accuracy + 0.01 * seed,
                arm,
                counts,
            )
    study.write_report()
    report = (tmp_path / "results.md").read_text()
    assert "Runs finished: 15 of 45." in report
    # the primary arm's claims, at a glance and in the section
    glance = report.split("## br35h-lt")[0]
    assert (
        "| elpv | LMF beats cross-entropy by 2 to 10 points of macro F1 (`lmf_official` vs `ce`"
        in glance
    )
    assert "**holds**" in glance
    assert "fewer than 90 training images LMF still reaches about 80 % F1 (F1 of `p=2/3`)" in report
    assert "*LMF beats Focal* (secondary; margin 0): `lmf` − `focal`" in report
    assert "| `ce` | 3 |" in report and "Use `lmf_official`" in report
    assert "p=2/3 (74, < 90)" in report  # the per-class table names the low-data class
    assert (tmp_path / "figures" / "study-elpv-summary.png").is_file()
    assert "No finished `ce` run yet." in report  # the other studies


def test_claims_are_holm_adjusted_per_family(tree):
    counts = {"no": 84, "yes": 8}
    for arm, accuracy in {"ce": 0.6, "lmf_official": 0.7, "lmf": 0.6, "focal": 0.6}.items():
        for seed in range(4):
            write_classification_run(
                tree / "br35h-lt-lowdata" / arm / f"seed-{seed}", seed, accuracy, arm, counts
            )
    target = study.STUDY_NAMES["br35h-lt-lowdata"]
    loaded = {target.name: study.load_study(target)}
    claims = study.claims_for(target, loaded[target.name])
    # both classes have fewer than 90 training images: the low-data claims cover them
    assert {c.metric for c in claims} == {"macro_f1", "f1:no,yes"}
    assert not any(c.reference == "ldam_drw" for c in claims)  # no such runs
    tested = study.test_claims(claims, loaded)
    for family in ("primary", "secondary"):
        levels = sorted(t.level for t in tested if t.claim.family == family)
        members = len(levels)
        assert levels[-1] == pytest.approx(1 - 0.05 / members)
        assert levels[0] == pytest.approx(0.95)
    level_claim = next(t for t in tested if t.claim.kind == "level" and t.claim.family == "primary")
    assert level_claim.found.per_seed == pytest.approx(
        [np.mean([json.loads((tree / "br35h-lt-lowdata" / "lmf_official" / f"seed-{s}" /
                              "metrics.json").read_text())["test"]["per_class"][c]["f1"]
                  for c in ("no", "yes")]) for s in range(4)]
    )  # fmt: skip


def test_a_level_interval_stays_inside_the_score_range():
    class Found:  # a t-interval over few, spread seeds overshoots [0, 1]
        def interval(self, level):
            return (-0.2, 1.3)

    level = study.Claim("elpv", "about 80 %", "lmf_official", None, "f1:p=2/3", 0.75, "level")
    margin = study.Claim("elpv", "beats", "lmf_official", "ce", "macro_f1", 0.02)
    assert study.Tested(level, Found()).interval == (0.0, 1.0)
    assert study.Tested(margin, Found()).interval == (-0.2, 1.3)  # a difference is not clipped
