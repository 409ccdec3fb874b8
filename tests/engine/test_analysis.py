"""What a comparison found: statistics read from run folders, Holm, the leader, the answer
sentence, and the race of ``compare`` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from harness_helpers import write_classification_run

from torch_imbalance.engine.analysis import BETTER, UNCLEAR, WORSE, analyse
from torch_imbalance.metrics.classification import frequency_groups

CLASSES = ["a", "b", "c"]
COUNTS = {"a": 400, "b": 60, "c": 9}  # head, medium, tail


def write_run(folder: Path, seed: int, accuracy: float, loss: str) -> Path:
    return write_classification_run(folder, seed, accuracy, loss, COUNTS)


def grid(tmp_path, accuracies: dict[str, list[float]]) -> dict[str, dict[int, Path]]:
    return {
        loss: {
            seed: write_run(tmp_path / loss / f"seed-{seed}", seed, value, loss)
            for seed, value in enumerate(values)
        }
        for loss, values in accuracies.items()
    }


def test_a_clear_winner_is_named_with_what_it_cannot_yet_be_told_from(tmp_path):
    found = analyse(
        grid(
            tmp_path,
            {
                "ce": [0.60, 0.62, 0.61, 0.60, 0.63],
                "lmf": [0.80, 0.83, 0.81, 0.82, 0.80],
                "focal": [0.79, 0.84, 0.80, 0.83, 0.80],
                "bad": [0.35, 0.36, 0.34, 0.35, 0.37],
            },
        ),
        resamples=300,
    )
    assert found.leader in ("lmf", "focal") and found.baseline == "ce"
    assert found.versus_baseline["lmf"]["macro_f1"].verdict == BETTER
    assert found.versus_baseline["bad"]["macro_f1"].verdict == WORSE
    other = "focal" if found.leader == "lmf" else "lmf"
    assert found.versus_leader[other].verdict == UNCLEAR
    assert found.versus_leader["bad"].verdict == WORSE
    assert found.versus_leader["ce"].verdict == WORSE  # the leader against ce, mirrored
    assert set(found.contenders()) == {"lmf", "focal"}
    sentence = found.sentence()
    assert sentence.startswith(f"Use `{found.leader}`: it beats `ce` by +")
    assert f"not yet distinguishable from `{other}` at 5 seeds" in sentence
    # one Holm family of 5 for the primary metric: 3 against ce, 2 more against the leader
    levels = sorted(
        {c.level for c in found.versus_leader.values()}
        | {c["macro_f1"].level for c in found.versus_baseline.values() if c}
    )
    assert levels[-1] == pytest.approx(1 - 0.05 / 5) and levels[0] == pytest.approx(0.95)
    table = found.markdown()
    assert "| `ce` | 5 |" in table and "reference" in table
    assert "F1 head / medium / tail" in table


def test_per_seed_differences_in_the_table_are_the_runs_differences(tmp_path):
    runs = grid(tmp_path, {"ce": [0.6, 0.7, 0.65], "focal": [0.62, 0.69, 0.7]})
    found = analyse(runs, resamples=100)
    comparison = found.versus_baseline["focal"]["macro_f1"]
    expected = [
        json.loads((runs["focal"][s] / "metrics.json").read_text())["test"]["macro_f1"]
        - json.loads((runs["ce"][s] / "metrics.json").read_text())["test"]["macro_f1"]
        for s in range(3)
    ]
    assert comparison.found.per_seed == pytest.approx(expected, abs=1e-9)
    assert " ".join(f"{100 * v:+.1f}" for v in expected) in found.markdown()


def test_nothing_distinguishable_says_so_and_estimates_the_seeds_needed(tmp_path):
    found = analyse(
        grid(tmp_path, {"ce": [0.60, 0.66, 0.62], "ldam": [0.63, 0.64, 0.66]}), resamples=200
    )
    sentence = found.sentence()
    assert sentence.startswith("No loss is distinguishable from `ce` on macro f1 at 3 seeds")
    assert "would need about" in sentence and "seeds to be told apart" in sentence


def test_a_loss_worse_than_ce_and_none_better(tmp_path):
    found = analyse(
        grid(tmp_path, {"ce": [0.80, 0.82, 0.81], "ldam": [0.81, 0.82, 0.80],
                        "bad": [0.40, 0.41, 0.42]}),
        resamples=200,
    )  # fmt: skip
    sentence = found.sentence()
    assert sentence.startswith("No loss beats `ce` on macro f1 at 3 seeds")
    assert sentence.endswith("`bad` is worse than `ce`.")


def test_a_clear_gain_is_named_even_when_a_noisier_loss_leads(tmp_path):
    found = analyse(
        grid(tmp_path, {"ce": [0.60, 0.61, 0.62, 0.60, 0.61],
                        "steady": [0.70, 0.71, 0.72, 0.70, 0.71],
                        "wild": [0.97, 0.45, 0.95, 0.50, 0.93]}),
        resamples=200,
    )  # fmt: skip
    assert found.leader == "wild"
    assert found.versus_baseline["wild"]["macro_f1"].verdict == UNCLEAR
    assert found.sentence().startswith("Use `steady`: it beats `ce` by +")
    assert "`wild` has the higher mean but is not yet distinguishable from `ce`" in found.sentence()


def test_one_seed_cannot_tell(tmp_path):
    found = analyse(grid(tmp_path, {"ce": [0.6], "focal": [0.9]}), resamples=50)
    assert found.versus_baseline["focal"]["macro_f1"].verdict == UNCLEAR
    assert found.sentence().startswith("One seed cannot tell the losses apart")


def test_frequency_groups_follow_the_long_tailed_split():
    assert frequency_groups(COUNTS) == {"head": [0], "medium": [1], "tail": [2]}
    assert frequency_groups({"x": 101, "y": 100, "z": 20, "w": 19}) == {
        "head": [0],
        "medium": [1, 2],
        "tail": [3],
    }


def test_nothing_finished_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no finished run"):
        analyse({"ce": {0: tmp_path / "missing"}})


@pytest.mark.slow
def test_race_stops_adding_seeds_to_a_clearly_worse_loss(tmp_path):
    """End to end: ``skewed`` (class 0 weighted 10,000 times the others: it predicts class 0)
    falls clearly behind after the first three seeds and is dropped; ``ce``, alone in
    contention then, needs no fourth seed either (a race that kept both would run two)."""
    from torch_imbalance.cli.main import main

    out = tmp_path / "race"
    args = ["compare", "--dataset", "digits-lt", "--losses", "ce,skewed=ce:weight=[1" + ",0.0001" * 9 + "]",
            "--seeds", "0,1,2", "--race", "--max-seeds", "4", "--epochs", "3", "--model",
            "test_resnet", "--image-size", "16", "--batch-size", "16", "--lr", "0.003",
            "--no-progress", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    ran = {p.parent.name: sorted(q.name for q in p.parent.glob("seed-*"))
           for p in out.glob("test_resnet/*/seed-0")}  # fmt: skip
    assert ran["skewed"] == ["seed-0", "seed-1", "seed-2"]
    assert ran["ce"] == ["seed-0", "seed-1", "seed-2"]
    summary = json.loads((out / "summary.json").read_text())["models"]["test_resnet"]
    assert summary["versus_leader"]["skewed"]["verdict"] == WORSE
    assert "skewed" not in summary["answer"] or "worse" in summary["answer"]


def test_race_contenders_drop_what_is_behind_the_leader_in_any_model(tmp_path):
    from torch_imbalance.engine.compare import Arm, race_contenders

    arms = [Arm.parse(label) for label in ("ce", "lmf", "focal", "bad")]
    clear = analyse(
        grid(tmp_path / "m1", {"ce": [0.60, 0.62, 0.61], "lmf": [0.80, 0.83, 0.81],
                               "focal": [0.79, 0.84, 0.80], "bad": [0.35, 0.36, 0.34]}),
        resamples=200,
    )  # fmt: skip
    assert [a.label for a in race_contenders([clear], arms)] == ["lmf", "focal"]
    # an arm missing from this round (dropped before) does not come back
    assert [a.label for a in race_contenders([clear], arms[1:2])] == ["lmf"]
