"""The paired, seed-aware statistics: hand computations, independent references (scikit-learn,
torchmetrics, statsmodels-free textbook Holm) and coverage on simulated two-level studies with a
known truth."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, jaccard_score

from torch_imbalance.metrics.statistics import (
    BELOW_MARGIN,
    CANNOT_TELL,
    DOES_NOT_HOLD,
    HOLDS,
    RunOutcome,
    class_iou,
    classes_f1,
    format_interval,
    holm,
    holm_levels,
    level_verdict,
    macro_f1,
    margin_verdict,
    miou,
    paired_difference,
    read_outcome,
)


def accuracy(counts: np.ndarray) -> np.ndarray:
    """A linear score, so that a simulated study's true difference is known exactly."""
    return np.trace(counts, axis1=-2, axis2=-1) / counts.sum((-2, -1))


def simulated_study(rng, effect, seeds, items, seed_sd, item_sd, shared, run_noise):
    """Two arms × ``seeds`` runs. Item i has a base accuracy b_i and an item-specific advantage
    h_i ~ N(effect, item_sd) for the arm; each run adds its seed's offset (training randomness)
    and re-draws a share ``run_noise`` of its item outcomes. The true difference (over seeds and
    test sets) is ``effect``. ``shared``: every seed tests the same items."""
    base, advantage, draw = (
        rng.uniform(0.3, 0.7, items),
        rng.normal(effect, item_sd, items),
        rng.random(items),
    )
    arm, reference = {}, {}
    for s in range(seeds):
        if not shared:
            base, advantage, draw = (
                rng.uniform(0.3, 0.7, items),
                rng.normal(effect, item_sd, items),
                rng.random(items),
            )
        ids = [f"{'shared' if shared else s}-{i}" for i in range(items)]
        truth = np.zeros(items, dtype=int)
        for side, accuracy_i in (
            (arm, base + advantage + rng.normal(0, seed_sd)),
            (reference, base + rng.normal(0, seed_sd)),
        ):
            own = np.where(rng.random(items) < run_noise, rng.random(items), draw)
            side[s] = RunOutcome.from_labels(ids, truth, (own >= accuracy_i).astype(int), 2)
    return arm, reference


def coverage(studies, **settings):
    rng = np.random.default_rng(7)
    hits = {"seed_aware": 0, "t": 0, "bootstrap": 0}
    for k in range(studies):
        arm, reference = simulated_study(rng, **settings)
        found = paired_difference(arm, reference, accuracy, resamples=300, seed=k)
        for name, (low, high) in (
            ("seed_aware", found.interval()),
            ("t", found.t_interval()),
            ("bootstrap", found.bootstrap_interval()),
        ):
            hits[name] += low <= settings["effect"] <= high
    return {name: count / studies for name, count in hits.items()}


@pytest.mark.slow
@pytest.mark.parametrize("seeds", [3, 5])
@pytest.mark.parametrize(
    ("shared", "seed_sd", "run_noise"),
    [
        (False, 0.03, 0.5),  # every seed its own test set (classification splits)
        (True, 0.03, 0.5),  # one test set, training noise dominates
        (True, 0.02, 0.1),  # one test set whose own composition dominates
    ],
)
def test_seed_aware_interval_covers_the_truth_about_95_percent(seeds, shared, seed_sd, run_noise):
    found = coverage(
        200,
        effect=0.02,
        seeds=seeds,
        items=100,
        seed_sd=seed_sd,
        item_sd=0.3,
        shared=shared,
        run_noise=run_noise,
    )
    assert 0.90 <= found["seed_aware"] <= 0.98, found


@pytest.mark.slow
def test_a_shared_test_set_defeats_the_t_interval_but_not_the_seed_aware_one():
    # the same 100 items for 5 seeds, whose composition is most of the noise: the seeds agree
    # with each other, so their spread alone is far too small
    found = coverage(
        200, effect=0.0, seeds=5, items=100, seed_sd=0.02, item_sd=0.3, shared=True, run_noise=0.1
    )
    assert found["t"] < 0.8, found
    assert found["seed_aware"] >= 0.9, found


@pytest.mark.slow
def test_no_effect_declares_few_differences_after_holm():
    # five arms that equal the baseline, 5 seeds: Holm keeps the family-wise error near 5 %
    rng = np.random.default_rng(3)
    studies, declared_any, declared = 100, 0, 0
    for _ in range(studies):
        p_values = []
        for arm_number in range(5):
            arm, reference = simulated_study(
                rng, 0.0, 5, 80, seed_sd=0.03, item_sd=0.2, shared=False, run_noise=0.5
            )
            found = paired_difference(arm, reference, accuracy, resamples=200, seed=arm_number)
            p_values.append(found.p_value())
        rejected = [p < 0.05 for p in holm(p_values)]
        declared_any += any(rejected)
        declared += sum(rejected)
    assert declared_any / studies <= 0.1
    assert declared / (5 * studies) <= 0.03


def test_a_real_difference_is_found_with_enough_seeds():
    rng = np.random.default_rng(11)
    arm, reference = simulated_study(
        rng, 0.15, 5, 200, seed_sd=0.01, item_sd=0.1, shared=False, run_noise=0.5
    )
    found = paired_difference(arm, reference, accuracy, resamples=500)
    low, high = found.interval()
    assert 0 < low < 0.15 < high
    assert found.p_value() < 0.01


# ----------------------------------------------------------------------- hand computations
def outcome_from(labels, predicted, classes, prefix="i"):
    return RunOutcome.from_labels(
        [f"{prefix}{i}" for i in range(len(labels))], labels, predicted, classes
    )


def test_per_seed_differences_equal_scikit_learn_macro_f1_by_hand():
    rng = np.random.default_rng(0)
    arm, reference, expected = {}, {}, []
    for s in range(4):
        labels = rng.integers(0, 3, 60)
        a = np.where(rng.random(60) < 0.8, labels, rng.integers(0, 3, 60))
        r = np.where(rng.random(60) < 0.6, labels, rng.integers(0, 3, 60))
        arm[s] = outcome_from(labels, a, 3, f"s{s}-")
        reference[s] = outcome_from(labels, r, 3, f"s{s}-")
        expected.append(
            f1_score(labels, a, average="macro", zero_division=0)
            - f1_score(labels, r, average="macro", zero_division=0)
        )
    found = paired_difference(arm, reference, macro_f1, resamples=50)
    assert found.per_seed == pytest.approx(expected, abs=1e-12)
    assert found.mean == pytest.approx(np.mean(expected))
    assert found.seed_std == pytest.approx(np.std(expected, ddof=1))
    t = {2: 4.302652729911275, 3: 3.182446305284263}[len(expected) - 1]  # t_{0.975}
    half = t * np.std(expected, ddof=1) / math.sqrt(len(expected))
    assert found.t_interval() == pytest.approx((np.mean(expected) - half, np.mean(expected) + half))
    # own test set per seed: the seed-aware interval is the t-interval
    assert not found.shared_test_set
    assert found.interval() == pytest.approx(found.t_interval())


def test_macro_f1_matches_torchmetrics_including_absent_classes():
    from torchmetrics.classification import MulticlassF1Score

    rng = np.random.default_rng(1)
    for _ in range(20):
        labels = rng.integers(0, 5, 30)
        predicted = rng.integers(0, 4, 30)  # class 4 never predicted
        labels[labels == 3] = 0  # class 3 never occurs (but may be predicted)
        expected = MulticlassF1Score(num_classes=5, average="macro")(
            torch.from_numpy(predicted), torch.from_numpy(labels)
        )
        found = macro_f1(outcome_from(labels, predicted, 5).total)
        assert float(found) == pytest.approx(float(expected), abs=1e-6)


def test_class_scores_against_scikit_learn():
    rng = np.random.default_rng(2)
    labels, predicted = rng.integers(0, 4, 80), rng.integers(0, 4, 80)
    total = outcome_from(labels, predicted, 4).total
    per_class = f1_score(labels, predicted, average=None)
    assert float(classes_f1([2])(total)) == pytest.approx(per_class[2])
    assert float(classes_f1([1, 3])(total)) == pytest.approx(per_class[[1, 3]].mean())
    iou = jaccard_score(labels, predicted, average=None)
    assert float(class_iou(3)(total)) == pytest.approx(iou[3])
    assert float(miou(total)) == pytest.approx(iou.mean())


def test_one_seed_cannot_tell_and_a_missing_pairing_is_refused():
    one = {0: outcome_from([0, 1, 1, 0], [0, 1, 0, 0], 2)}
    other = {0: outcome_from([0, 1, 1, 0], [1, 1, 1, 0], 2)}
    found = paired_difference(one, other, macro_f1, resamples=100)
    assert found.interval() == (-math.inf, math.inf)
    assert found.p_value() == 1.0
    assert margin_verdict(found.interval(), 0.02) == CANNOT_TELL
    with pytest.raises(ValueError, match="no seed in common"):
        paired_difference(one, {1: other[0]}, macro_f1)
    with pytest.raises(ValueError, match="different items"):
        paired_difference(one, {0: outcome_from([0, 1, 1], [0, 1, 1], 2)}, macro_f1)


def test_test_outcome_checks_its_inputs():
    with pytest.raises(ValueError, match="outside the 2 classes"):
        RunOutcome.from_labels(["a", "b"], [0, 2], [0, 1], 2)
    with pytest.raises(ValueError, match="one label and one prediction per item"):
        RunOutcome.from_labels(["a", "b"], [0], [0, 1], 2)
    with pytest.raises(ValueError, match=r"\(n_items, C, C\)"):
        RunOutcome(("a",), np.zeros((2, 3, 3)))


# --------------------------------------------------------------- the segmentation (shared) case
def image_confusions(rng, images, advantage):
    """Per-image 3-class pixel confusions; ``advantage`` moves pixels of the rare class 2 from
    wrong to right, image by image."""
    counts = rng.integers(20, 60, (images, 3, 3))
    counts[:, np.arange(3), np.arange(3)] += 400
    better = counts.copy()
    moved = np.minimum(counts[:, 2, 0], advantage)
    better[:, 2, 0] -= moved
    better[:, 2, 2] += moved
    return counts, better


def test_segmentation_seeds_sharing_a_test_set_are_resampled_jointly():
    rng = np.random.default_rng(5)
    ids = tuple(f"z{i:03d}" for i in range(30))
    base, better = image_confusions(rng, 30, rng.integers(0, 40, 30))
    # three seeds with the same models' outcomes on the same 30 images: the per-seed Δ agree
    # exactly, so only the shared test set's own noise is left
    arm = {s: RunOutcome(ids, better) for s in range(3)}
    reference = {s: RunOutcome(ids, base) for s in range(3)}
    found = paired_difference(arm, reference, class_iou(2), resamples=2000, seed=1)
    assert found.shared_test_set and found.seed_std == 0
    assert found.t_interval()[0] == found.t_interval()[1]  # blind to the test set's noise
    # the test set's variance, by resampling the 30 images of one seed (all seeds agree)
    single = paired_difference({0: arm[0]}, {0: reference[0]}, class_iou(2), 2000, seed=1)
    assert found.shared_variance == pytest.approx(np.var(single.replicates), rel=0.25)
    low, high = found.interval()
    assert low < found.mean < high and high - low > 0.5 * (
        single.bootstrap_interval()[1] - single.bootstrap_interval()[0]
    )


def test_rotating_folds_are_resampled_independently():
    rng = np.random.default_rng(6)
    arm, reference = {}, {}
    for s in range(3):
        ids = tuple(f"fold{s}-{i}" for i in range(20))
        base, better = image_confusions(rng, 20, rng.integers(0, 30, 20))
        arm[s], reference[s] = RunOutcome(ids, better), RunOutcome(ids, base)
    found = paired_difference(arm, reference, miou, resamples=300)
    assert not found.shared_test_set and found.shared_variance == 0
    assert found.interval() == pytest.approx(found.t_interval())


def test_read_outcome_from_kept_results(tmp_path):
    (tmp_path / "test.csv").write_text(
        "id,label,predicted,prob_no,prob_yes\na.jpg,no,no,0.9,0.1\nb.jpg,yes,no,0.6,0.4\n"
    )
    found = read_outcome(tmp_path, ["no", "yes"])
    assert found.items == ("a.jpg", "b.jpg")
    assert found.total.tolist() == [[1, 0], [1, 0]]
    segmentation = tmp_path / "seg" / "predictions"
    segmentation.mkdir(parents=True)
    np.savez(segmentation / "test_confusion.npz", ids=np.array(["t1"]), confusion=np.eye(2)[None])
    assert read_outcome(tmp_path / "seg", ["a", "b"]).items == ("t1",)
    assert read_outcome(tmp_path / "nothing", ["a"]) is None
    (tmp_path / "multilabel").mkdir()
    (tmp_path / "multilabel" / "test.csv").write_text(
        "id,true_a,true_b,prob_a,prob_b\nx,1,0,.9,.2\n"
    )
    assert read_outcome(tmp_path / "multilabel", ["a", "b"]) is None
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "test.csv").write_text("id,truth\na,no\n")
    with pytest.raises(ValueError, match="missing column"):
        read_outcome(tmp_path / "bad", ["no"])


# ------------------------------------------------------------------------------- Holm, verdicts
def test_holm_by_hand():
    # sorted 0.01, 0.02, 0.04, 0.30 -> 4·0.01, 3·0.02, 2·0.04, 1·0.30 (running maximum)
    assert holm([0.04, 0.01, 0.30, 0.02]) == pytest.approx([0.08, 0.04, 0.30, 0.06])
    assert holm([0.5, 0.6]) == [1.0, 1.0]
    levels = holm_levels([0.04, 0.01, 0.30, 0.02])
    assert levels == pytest.approx([1 - 0.05 / 2, 1 - 0.05 / 4, 1 - 0.05, 1 - 0.05 / 3])


def test_holm_level_interval_excludes_zero_as_the_adjusted_p_value_says():
    rng = np.random.default_rng(9)
    found = []
    for effect in (0.0, 0.04, 0.08, 0.15):
        arm, reference = simulated_study(rng, effect, 5, 150, 0.02, 0.1, False, 0.5)
        found.append(paired_difference(arm, reference, accuracy, resamples=200))
    p_values = [f.p_value() for f in found]
    adjusted, levels = holm(p_values), holm_levels(p_values)
    for f, p, level in zip(found, adjusted, levels, strict=True):
        low, high = f.interval(level)
        # Holm's step-down can keep a later p-value from rejecting; never the other way round
        if not (low > 0 or high < 0):
            assert p >= 0.05


@pytest.mark.parametrize(
    ("interval", "expected"),
    [
        ((0.03, 0.05), HOLDS),
        ((0.005, 0.015), BELOW_MARGIN),
        ((-0.01, 0.015), DOES_NOT_HOLD),
        ((-0.05, -0.01), DOES_NOT_HOLD),
        ((-0.01, 0.03), CANNOT_TELL),
        ((0.01, 0.03), CANNOT_TELL),  # a gain; whether it reaches the margin is open
    ],
)
def test_margin_verdicts(interval, expected):
    assert margin_verdict(interval, 0.02) == expected


@pytest.mark.parametrize(
    ("interval", "expected"),
    [
        ((0.0, 0.0), DOES_NOT_HOLD),  # identical on every seed: no gain
        ((-0.03, 0.0), DOES_NOT_HOLD),
        ((0.0, 0.02), CANNOT_TELL),
        ((0.001, 0.02), HOLDS),
        ((-0.01, 0.02), CANNOT_TELL),
    ],
)
def test_a_claim_without_margin_needs_a_gain_above_zero(interval, expected):
    assert margin_verdict(interval, 0.0) == expected


def test_level_verdicts_and_interval_text():
    assert level_verdict((0.8, 0.9), 0.75) == HOLDS
    assert level_verdict((0.6, 0.7), 0.75) == DOES_NOT_HOLD
    assert level_verdict((0.7, 0.8), 0.75) == CANNOT_TELL
    assert format_interval((-0.0123, 0.05)) == "[-1.2, +5.0]"
    assert format_interval((-math.inf, math.inf)) == "[−∞, +∞]"


def test_seeds_needed_grows_as_the_effect_shrinks():
    rng = np.random.default_rng(4)
    per_seed = rng.normal(0.01, 0.02, 5)

    def needed(shift):
        values = per_seed - per_seed.mean() + shift
        found = paired_difference(
            {s: outcome_from([0, 1], [0, 1], 2, f"{s}") for s in range(5)},
            {s: outcome_from([0, 1], [0, 1], 2, f"{s}") for s in range(5)},
            macro_f1,
            resamples=10,
        )
        return type(found)(found.seeds, tuple(values), found.replicates).seeds_needed()

    assert needed(0.04) < needed(0.02) < needed(0.01)
    # two-sided 5 %, 80 % power: n ≈ ((t_α/2 + t_β) σ / δ)², about 10 seeds for δ = σ
    assert 9 <= needed(float(np.std(per_seed, ddof=1))) <= 11
    assert needed(0.0) is None
