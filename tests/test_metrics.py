"""Tests for facetrail.evaluation: biometric metrics, calibration table and plots.

Expected numbers are worked out by hand in the comments. Distances: lower = more
alike, a pair matches when distance <= threshold, +inf = failed (never matches).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from facetrail.engine.calibration import CalibrationTable
from facetrail.evaluation.metrics import (
    accuracy_at_threshold,
    best_threshold,
    cmc_curve,
    equal_error_rate,
    error_ratio,
    fnir_at_fpir,
    kfold_accuracy,
    roc_auc,
    roc_curve,
    tar_at_far,
    wilson_interval,
)
from facetrail.evaluation.plots import plot_cmc, plot_verification

INF = math.inf
NAN = math.nan

# The running example: three genuine and three impostor distances.
GENUINE = [0.1, 0.3, 0.5]
IMPOSTOR = [0.4, 0.7, 0.9]
PAIR_DISTANCES = GENUINE + IMPOSTOR
PAIR_SAME = [True, True, True, False, False, False]

# Coarse values so that hypothesis produces ties; +inf (failed comparison) now and then.
_distance = st.one_of(st.integers(0, 10).map(lambda k: k / 10), st.just(INF))
distances = st.lists(_distance, min_size=1, max_size=12)
finite_distances = st.lists(st.integers(0, 40).map(lambda k: k / 40), min_size=1, max_size=60)


def matches(values, threshold):
    """Brute force: which distances match at threshold (+inf never does)."""
    return [math.isfinite(v) and v <= threshold for v in values]


def brute_fmr(impostor, threshold):
    return sum(matches(impostor, threshold)) / len(impostor)


def brute_fnmr(genuine, threshold):
    return 1 - sum(matches(genuine, threshold)) / len(genuine)


def brute_accuracy(distances_, same, threshold):
    return sum(m == s for m, s in zip(matches(distances_, threshold), same)) / len(same)


# --- roc_curve ----------------------------------------------------------------


def test_roc_curve_hand_example():
    # thresholds: -inf then the six distinct distances.
    # FMR  = #impostors <= t / 3: 0, 0, 0, 1/3 (0.4), 1/3, 2/3 (0.7), 1 (0.9)
    # FNMR = #genuine   >  t / 3: 1, 2/3 (0.1 accepted), 1/3, 1/3, 0 (0.5 accepted), 0, 0
    curve = roc_curve(GENUINE, IMPOSTOR)
    np.testing.assert_array_equal(curve.thresholds, [-INF, 0.1, 0.3, 0.4, 0.5, 0.7, 0.9])
    np.testing.assert_allclose(curve.fmr, [0, 0, 0, 1 / 3, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(curve.fnmr, [1, 2 / 3, 1 / 3, 1 / 3, 0, 0, 0])
    np.testing.assert_allclose(curve.tar, 1 - curve.fnmr)


def test_roc_curve_failed_comparisons_never_match():
    # +inf is not a threshold; the failed genuine stays a non-match (FNMR floor 1/2)
    # and the failed impostor never becomes a false match (FMR ceiling 1/2).
    curve = roc_curve([0.1, INF], [0.4, INF])
    np.testing.assert_array_equal(curve.thresholds, [-INF, 0.1, 0.4])
    np.testing.assert_allclose(curve.fmr, [0, 0, 0.5])
    np.testing.assert_allclose(curve.fnmr, [1, 0.5, 0.5])


@given(distances, distances)
def test_roc_curve_matches_definitions(genuine, impostor):
    curve = roc_curve(genuine, impostor)
    finite = sorted({v for v in genuine + impostor if math.isfinite(v)})
    assert curve.thresholds.tolist() == [-INF, *finite]
    for t, fmr, fnmr in zip(curve.thresholds, curve.fmr, curve.fnmr):
        assert fmr == pytest.approx(brute_fmr(impostor, t))
        assert fnmr == pytest.approx(brute_fnmr(genuine, t))


@pytest.mark.parametrize(
    "genuine, impostor",
    [([], [0.4]), ([0.1], []), ([NAN], [0.4]), ([0.1], [-INF]), ([[0.1, 0.2]], [0.4])],
    ids=["empty genuine", "empty impostor", "nan", "-inf", "2-D"],
)
def test_roc_curve_rejects_bad_input(genuine, impostor):
    with pytest.raises(ValueError):
        roc_curve(genuine, impostor)


# --- roc_auc ------------------------------------------------------------------


def test_roc_auc_hand_example():
    # genuine 0.1 and 0.3 beat all three impostors, 0.5 beats 0.7 and 0.9: 8 of 9 pairs.
    assert roc_auc(GENUINE, IMPOSTOR) == pytest.approx(8 / 9)


def test_roc_auc_ties_count_half():
    # pairs (0.5, 0.5) x2 are ties (1/2 each), (0.5, 1.0) x2 are wins: (1 + 2) / 4.
    assert roc_auc([0.5, 0.5], [0.5, 1.0]) == pytest.approx(3 / 4)
    # Two failures compare as a tie; a failed genuine loses to any finite impostor.
    assert roc_auc([INF], [INF]) == pytest.approx(0.5)
    assert roc_auc([INF], [0.9]) == 0.0


@given(distances, distances)
def test_roc_auc_equals_pairwise_count(genuine, impostor):
    wins = sum((g < i) + 0.5 * (g == i) for g in genuine for i in impostor)
    assert roc_auc(genuine, impostor) == pytest.approx(wins / (len(genuine) * len(impostor)))


def test_roc_auc_rejects_empty():
    with pytest.raises(ValueError, match="impostor"):
        roc_auc([0.1], [])


# --- tar_at_far ---------------------------------------------------------------


@pytest.mark.parametrize(
    "far, threshold, tar, far_actual",
    [
        # FMR <= 1/3 up to 0.5 (0.7 would make it 2/3); at 0.5 all genuine are accepted.
        (1 / 3, 0.5, 1.0, 1 / 3),
        (0.5, 0.5, 1.0, 1 / 3),
        # FMR is 0 up to 0.3; genuine 0.1 and 0.3 accepted: TAR 2/3.
        (0.2, 0.3, 2 / 3, 0.0),
        (1.0, 0.9, 1.0, 1.0),
    ],
)
def test_tar_at_far_hand_example(far, threshold, tar, far_actual):
    point = tar_at_far(GENUINE, IMPOSTOR, far)
    assert point.threshold == pytest.approx(threshold)
    assert point.tar == pytest.approx(tar)
    assert point.far_actual == pytest.approx(far_actual)


def test_tar_at_far_when_even_the_smallest_threshold_is_too_permissive():
    # At 0.1 already half the impostors match (FMR 1/2 > 0.4): nothing may be accepted.
    point = tar_at_far([0.5], [0.1, 0.2], 0.4)
    assert point.threshold == -INF
    assert point.tar == 0.0
    assert point.far_actual == 0.0


@given(distances, distances, st.sampled_from([0.01, 0.1, 0.25, 1 / 3, 0.5, 1.0]))
def test_tar_at_far_picks_the_largest_threshold_within_far(genuine, impostor, far):
    point = tar_at_far(genuine, impostor, far)
    candidates = [-INF, *sorted({v for v in genuine + impostor if math.isfinite(v)})]
    assert point.threshold == max(t for t in candidates if brute_fmr(impostor, t) <= far)
    assert point.far_actual == pytest.approx(brute_fmr(impostor, point.threshold))
    assert point.tar == pytest.approx(1 - brute_fnmr(genuine, point.threshold))


@pytest.mark.parametrize("far", [0.0, -0.1, 1.5, NAN])
def test_tar_at_far_rejects_far_outside_unit_interval(far):
    with pytest.raises(ValueError, match="far"):
        tar_at_far(GENUINE, IMPOSTOR, far)


# --- equal_error_rate ---------------------------------------------------------


def test_equal_error_rate_hand_example():
    # From the ROC table above, FMR = FNMR = 1/3 at 0.4.
    result = equal_error_rate(GENUINE, IMPOSTOR)
    assert result.eer == pytest.approx(1 / 3)
    assert result.threshold == pytest.approx(0.4)


def test_equal_error_rate_without_exact_crossing():
    # genuine 0.1, 0.2, 0.6; impostor 0.3, 0.4, 0.5, 0.9.
    # t    : -inf  0.1  0.2  0.3   0.4  0.5   0.6  0.9
    # FMR  : 0     0    0    1/4   1/2  3/4   3/4  1
    # FNMR : 1     2/3  1/3  1/3   1/3  1/3   0    0
    # |d|  : 1     2/3  1/3  1/12  1/6  5/12  3/4  1   -> 0.3, EER = (1/4 + 1/3) / 2 = 7/24
    result = equal_error_rate([0.1, 0.2, 0.6], [0.3, 0.4, 0.5, 0.9])
    assert result.eer == pytest.approx(7 / 24)
    assert result.threshold == pytest.approx(0.3)


def test_equal_error_rate_separable():
    # FMR = FNMR = 0 at 0.2 (both genuine in, both impostors out).
    result = equal_error_rate([0.1, 0.2], [0.8, 0.9])
    assert result.eer == 0.0
    assert result.threshold == pytest.approx(0.2)


# --- accuracy_at_threshold ----------------------------------------------------


@pytest.mark.parametrize(
    "threshold, expected",
    [
        # 0.45: genuine 0.5 rejected and impostor 0.4 accepted -> 2 errors, 4/6.
        # (The brief's "5/6 at 0.45" miscounts: both 0.4 and 0.5 are on the wrong side.)
        (0.45, 4 / 6),
        # 0.35: only genuine 0.5 is wrong -> 5/6.  0.6: only impostor 0.4 is wrong -> 5/6.
        (0.35, 5 / 6),
        (0.6, 5 / 6),
        # -inf accepts nothing: the three impostors are right.
        (-INF, 3 / 6),
    ],
)
def test_accuracy_at_threshold_hand_example(threshold, expected):
    assert accuracy_at_threshold(PAIR_DISTANCES, PAIR_SAME, threshold) == pytest.approx(expected)


def test_failed_pairs_are_always_errors():
    # Without the flag both pairs are right at 0.6; the failed one (even with a NaN
    # distance, or a distance that would have been right) counts as an error.
    assert accuracy_at_threshold([0.1, 0.9], [True, False], 0.6) == 1.0
    assert accuracy_at_threshold([0.1, 0.9], [True, False], 0.6, failed=[True, False]) == 0.5
    assert accuracy_at_threshold([NAN, 0.9], [True, False], 0.6, failed=[True, False]) == 0.5
    assert accuracy_at_threshold([0.1, 0.9], [True, False], 0.6, failed=[True, True]) == 0.0


def test_infinite_distance_never_matches_even_at_infinite_threshold():
    # A failed comparison (inf) of an impostor pair is a correct rejection; of a genuine pair an error.
    assert accuracy_at_threshold([INF, 0.3], [False, False], INF) == 0.5
    assert accuracy_at_threshold([INF, 0.3], [True, True], INF) == 0.5


@pytest.mark.parametrize(
    "distances_, same, failed",
    [
        ([0.1, 0.2], [True], None),
        ([0.1, 0.2], [True, False], [True]),
        ([], [], None),
        ([NAN, 0.2], [True, False], None),
        ([0.1, 0.2], [2, 0], None),
    ],
    ids=["same length", "failed length", "empty", "nan not failed", "same not boolean"],
)
def test_pair_functions_reject_bad_input(distances_, same, failed):
    with pytest.raises(ValueError):
        accuracy_at_threshold(distances_, same, 0.5, failed=failed)
    with pytest.raises(ValueError):
        best_threshold(distances_, same, failed=failed)


def test_accuracy_rejects_nan_threshold():
    with pytest.raises(ValueError, match="threshold"):
        accuracy_at_threshold([0.1], [True], NAN)


# --- best_threshold -----------------------------------------------------------


def test_best_threshold_hand_example():
    # Candidates and accuracy: -inf 3/6, 0.2 4/6, 0.35 5/6, 0.45 4/6, 0.6 5/6, 0.8 4/6, 0.9 3/6.
    # 0.35 and 0.6 tie at 5/6: the smaller wins.
    assert best_threshold(PAIR_DISTANCES, PAIR_SAME) == pytest.approx(0.35)


def test_best_threshold_ends():
    # Separable: the midpoint of the gap between 0.3 and 0.7.
    assert best_threshold([0.1, 0.3, 0.7, 0.9], [True, True, False, False]) == pytest.approx(0.5)
    # Only impostors: accept nothing.
    assert best_threshold([0.2, 0.4], [False, False]) == -INF
    # Only genuine pairs: accept every finite distance (the failed +inf one is lost anyway).
    assert best_threshold([0.2, 0.4, INF], [True, True, True]) == pytest.approx(0.4)


def test_best_threshold_ignores_failed_pairs():
    # Usable pairs: genuine 0.1, 0.3, impostor 0.9 -> 0.6 separates them (failed pair: always an error).
    # Were the failed impostor at 0.2 used, 0.15 (tied with 0.6 at 3/4) would win as the smaller.
    distances_ = [0.1, 0.2, 0.3, 0.9]
    same = [True, False, True, False]
    assert best_threshold(distances_, same, failed=[False, True, False, False]) == pytest.approx(0.6)
    assert best_threshold(distances_, same) == pytest.approx(0.15)


@given(st.lists(st.tuples(_distance, st.booleans()), min_size=1, max_size=12))
def test_best_threshold_is_the_smallest_optimal_split(pairs):
    distances_ = [d for d, _ in pairs]
    same = [s for _, s in pairs]
    chosen = best_threshold(distances_, same)
    # Every split is "accept distances <= v" for v in {-inf} + distinct finite distances.
    splits = [-INF, *sorted({d for d in distances_ if math.isfinite(d)})]
    scores = [brute_accuracy(distances_, same, v) for v in splits]
    best = max(scores)
    assert brute_accuracy(distances_, same, chosen) == pytest.approx(best)
    first = splits[scores.index(best)]
    # The chosen threshold splits exactly like the first optimal split.
    assert matches(distances_, chosen) == matches(distances_, first)


# --- kfold_accuracy -----------------------------------------------------------


def test_kfold_separable_set_is_perfect():
    genuine = np.linspace(0.1, 0.5, 10)
    impostor = np.linspace(0.7, 1.1, 10)
    result = kfold_accuracy(np.concatenate((genuine, impostor)), [True] * 10 + [False] * 10, folds=10, seed=3)
    assert result.fold_accuracies == [1.0] * 10
    assert result.mean == 1.0
    assert result.std == 0.0
    assert len(result.thresholds) == 10
    assert all(0.5 <= t < 0.7 for t in result.thresholds)


def test_kfold_leave_one_out_by_hand():
    # folds = 6 on the six example pairs: each fold holds one pair, trained on the other five.
    # held out | best threshold on the rest (smallest on ties) | held-out pair right?
    # 0.1 S    | 0.35 (4/5, tied with 0.6)                     | 0.1 <= 0.35 accepted: yes
    # 0.3 S    | 0.25 (4/5, tied with 0.6)                     | 0.3 >  0.25 rejected: no
    # 0.5 S    | 0.35 (5/5)                                    | 0.5 >  0.35 rejected: no
    # 0.4 D    | 0.6  (5/5)                                    | 0.4 <= 0.6  accepted: no
    # 0.7 D    | 0.35 (4/5, tied with 0.7)                     | 0.7 >  0.35 rejected: yes
    # 0.9 D    | 0.35 (4/5, tied with 0.6)                     | 0.9 >  0.35 rejected: yes
    # Folds come in the order of default_rng(seed).permutation(6).
    accuracy_by_pair = [1.0, 0.0, 0.0, 0.0, 1.0, 1.0]
    threshold_by_pair = [0.35, 0.25, 0.35, 0.6, 0.35, 0.35]
    order = np.random.default_rng(7).permutation(6)
    result = kfold_accuracy(PAIR_DISTANCES, PAIR_SAME, folds=6, seed=7)
    assert result.fold_accuracies == [accuracy_by_pair[i] for i in order]
    assert result.thresholds == pytest.approx([threshold_by_pair[i] for i in order])
    assert result.mean == pytest.approx(0.5)
    assert result.std == pytest.approx(0.5)  # population std of three 1s and three 0s


def test_kfold_counts_failed_pairs_as_errors():
    # 20 separable pairs in 10 folds of 2; one failed pair is the only error: (9 * 1 + 0.5) / 10.
    distances_ = np.concatenate((np.linspace(0.1, 0.5, 10), np.linspace(0.7, 1.1, 10)))
    distances_[15] = NAN
    failed = np.zeros(20, dtype=bool)
    failed[15] = True
    result = kfold_accuracy(distances_, [True] * 10 + [False] * 10, folds=10, failed=failed)
    assert sorted(result.fold_accuracies) == [0.5] + [1.0] * 9
    assert result.mean == pytest.approx(0.95)
    assert result.std == pytest.approx(0.15)  # sqrt((0.45^2 + 9 * 0.05^2) / 10)


@pytest.mark.parametrize("folds", [7, 1, 0, 2.5])
def test_kfold_rejects_bad_folds(folds):
    with pytest.raises(ValueError, match="folds"):
        kfold_accuracy(PAIR_DISTANCES, PAIR_SAME, folds=folds)


# --- cmc_curve ----------------------------------------------------------------


def test_cmc_curve_crafted_searches():
    # Six mated searches: mates at rank 1, 2, not returned (0), 5, failed (inf), 1.
    # rank <= 1: 2/6, <= 2: 3/6, <= 3: 3/6, <= 4: 3/6, <= 5: 4/6, and it stays 4/6 beyond.
    ranks = [1, 2, 0, 5, INF, 1]
    np.testing.assert_allclose(cmc_curve(ranks, 5), [2 / 6, 3 / 6, 3 / 6, 3 / 6, 4 / 6])
    np.testing.assert_allclose(cmc_curve(ranks, 7)[-2:], [4 / 6, 4 / 6])
    assert cmc_curve(ranks, 1).shape == (1,)


@pytest.mark.parametrize(
    "ranks, max_rank",
    [([], 3), ([1, -1], 3), ([1, NAN], 3), ([1.5], 3), ([1], 0)],
    ids=["empty", "negative", "nan", "fractional", "max_rank 0"],
)
def test_cmc_curve_rejects_bad_input(ranks, max_rank):
    with pytest.raises(ValueError):
        cmc_curve(ranks, max_rank)


# --- fnir_at_fpir -------------------------------------------------------------

# Mated searches: mate at 0.2, 0.4, missing (inf), 0.55.
# Unmated searches' top-1: 0.3, 0.5, 0.6, empty list (inf), 0.8.
# t    : -inf  0.2  0.3  0.4  0.5  0.55  0.6  0.8
# FPIR : 0     0    1/5  1/5  2/5  2/5   3/5  4/5   (the empty list never counts)
# FNIR : 1     3/4  3/4  1/2  1/2  1/4   1/4  1/4   (the missing mate always counts)
MATED = [0.2, 0.4, INF, 0.55]
UNMATED_TOP1 = [0.3, 0.5, 0.6, INF, 0.8]


@pytest.mark.parametrize(
    "fpir, threshold, fnir, fpir_actual",
    [(0.2, 0.4, 0.5, 0.2), (0.1, 0.2, 0.75, 0.0), (0.5, 0.55, 0.25, 0.4), (1.0, 0.8, 0.25, 0.8)],
)
def test_fnir_at_fpir_crafted_searches(fpir, threshold, fnir, fpir_actual):
    point = fnir_at_fpir(MATED, UNMATED_TOP1, fpir)
    assert point.threshold == pytest.approx(threshold)
    assert point.fnir == pytest.approx(fnir)
    assert point.fpir_actual == pytest.approx(fpir_actual)


def test_fnir_at_fpir_when_no_threshold_is_within_fpir():
    # The only unmated search has a candidate at 0.1: any finite threshold gives FPIR 1.
    point = fnir_at_fpir([0.2], [0.1], 0.5)
    assert (point.threshold, point.fnir, point.fpir_actual) == (-INF, 1.0, 0.0)


def test_fnir_at_fpir_rejects_bad_input():
    with pytest.raises(ValueError, match="fpir"):
        fnir_at_fpir(MATED, UNMATED_TOP1, 0.0)
    with pytest.raises(ValueError, match="unmated_top1_distances"):
        fnir_at_fpir(MATED, [], 0.1)


# --- error_ratio --------------------------------------------------------------


def test_error_ratio_ignores_nan_groups():
    result = error_ratio({"a": 0.02, "b": 0.01, "c": NAN, "d": 0.015})
    assert (result.worst_group, result.best_group) == ("a", "b")
    assert (result.worst, result.best) == (0.02, 0.01)
    assert result.ratio == pytest.approx(2.0)


def test_error_ratio_zero_best():
    assert error_ratio({"a": 0.0, "b": 0.1}).ratio == INF
    both_zero = error_ratio({"a": 0.0, "b": 0.0})
    assert both_zero.ratio == 1.0
    assert (both_zero.worst_group, both_zero.best_group) == ("a", "a")  # first group wins ties


@pytest.mark.parametrize("values", [{}, {"a": NAN}, {"a": 0.1, "b": -0.1}, {"a": 1.5}])
def test_error_ratio_rejects_bad_input(values):
    with pytest.raises(ValueError):
        error_ratio(values)


# --- CalibrationTable ---------------------------------------------------------


def test_calibration_hand_example():
    # Impostors 0.3, 0.5, 0.5, 0.8: FMR(d) = #impostors <= d / 4.
    table = CalibrationTable.from_impostors([0.5, 0.3, 0.8, 0.5], model="dlib-resnet")
    assert table.impostor_count == 4
    assert table.model == "dlib-resnet"
    expected = {0.2: 0.0, 0.3: 0.25, 0.4: 0.25, 0.5: 0.75, 0.6: 0.75, 0.8: 1.0, 2.0: 1.0}
    assert {d: table.false_match_rate(d) for d in expected} == expected


def test_calibration_json_round_trip():
    impostors = np.random.default_rng(1).normal(0.8, 0.1, 5000)
    for max_points in (2000, 50):  # exact and quantised
        table = CalibrationTable.from_impostors(impostors, model="m", max_points=max_points)
        stored = json.loads(json.dumps(table.to_json()))
        loaded = CalibrationTable.from_json(stored)
        assert loaded.to_json() == table.to_json()
        assert loaded.model == "m"
        assert loaded.impostor_count == 5000
        for d in np.linspace(0.3, 1.3, 97):
            assert loaded.false_match_rate(d) == table.false_match_rate(d)


@given(finite_distances, st.lists(st.floats(-0.5, 1.5), max_size=10))
def test_calibration_is_exact_when_every_value_fits(impostors, queries):
    table = CalibrationTable.from_impostors(impostors, model="m")
    for d in impostors + queries:
        assert table.false_match_rate(d) == brute_fmr(impostors, d)


@given(finite_distances, st.integers(2, 8), st.lists(st.floats(-0.5, 1.5), max_size=10))
def test_calibration_quantised_is_conservative(impostors, max_points, queries):
    table = CalibrationTable.from_impostors(impostors, model="m", max_points=max_points)
    grid = table.to_json()["distances"]
    assert len(grid) <= max_points
    for d in impostors + queries:
        assert table.false_match_rate(d) >= brute_fmr(impostors, d)
    for d in grid:
        assert table.false_match_rate(d) == brute_fmr(impostors, d)


def test_calibration_keeps_the_low_fmr_tail_accurate():
    impostors = np.random.default_rng(2).normal(0.8, 0.08, 100_000)
    table = CalibrationTable.from_impostors(impostors, model="m")
    ordered = np.sort(impostors)
    assert len(table.to_json()["distances"]) <= 2000
    # The hundred closest impostors (FMR 1e-5 .. 1e-3) are looked up exactly...
    for rank, d in enumerate(ordered[:100], start=1):
        assert table.false_match_rate(d) == rank / 100_000
    # ...and anywhere else the overestimate stays within 1 % (geometric grid, 100000^(1/1999) ~ 1.006).
    for d in np.random.default_rng(3).uniform(ordered[0], ordered[-1], 500):
        exact = np.count_nonzero(ordered <= d) / 100_000
        assert exact <= table.false_match_rate(d) <= exact * 1.01


@pytest.mark.parametrize(
    "impostors, max_points",
    [([], 2000), ([0.5, INF], 2000), ([0.5, NAN], 2000), ([0.5], 1)],
    ids=["empty", "inf", "nan", "max_points 1"],
)
def test_calibration_rejects_bad_impostors(impostors, max_points):
    with pytest.raises(ValueError):
        CalibrationTable.from_impostors(impostors, model="m", max_points=max_points)


@pytest.mark.parametrize(
    "change",
    [
        {"format": "something-else"},
        {"count_below": [0, 0, 3]},  # fewer impostors below 0.5 than at or below 0.3
        {"distances": [0.3, 0.8, 0.5]},  # not increasing
        {"impostor_count": 5},  # counts do not reach the total
        {"model": ""},
    ],
)
def test_calibration_from_json_rejects_tampered_tables(change):
    stored = CalibrationTable.from_impostors([0.3, 0.5, 0.5, 0.8], model="m").to_json()
    with pytest.raises(ValueError):
        CalibrationTable.from_json(stored | change)


def test_calibration_from_json_rejects_missing_keys():
    stored = CalibrationTable.from_impostors([0.3], model="m").to_json()
    del stored["count_below"]
    with pytest.raises(ValueError, match="count_below"):
        CalibrationTable.from_json(stored)


# --- plots --------------------------------------------------------------------


def test_plot_verification_writes_png_and_svg(tmp_path):
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(4)
    curves = {
        "all": roc_curve(rng.normal(0.4, 0.08, 500), rng.normal(0.8, 0.08, 5000)),
        "group B": roc_curve(rng.normal(0.45, 0.1, 300), np.append(rng.normal(0.75, 0.1, 3000), INF)),
    }
    figures_before = plt.get_fignums()
    png = plot_verification(curves, tmp_path / "verification.png", title="Test")
    svg = plot_verification(curves, str(tmp_path / "verification.svg"))
    assert png == tmp_path / "verification.png"
    assert png.read_bytes().startswith(b"\x89PNG")
    assert png.stat().st_size > 10_000
    assert b"<svg" in svg.read_bytes()[:1000]
    assert plt.get_fignums() == figures_before  # no pyplot global state


def test_plot_cmc_writes_png(tmp_path):
    curves = {"gallery A": cmc_curve([1, 2, 0, 5, INF, 1], 10), "gallery B": np.linspace(0.5, 0.9, 50)}
    path = plot_cmc(curves, tmp_path / "cmc.png")
    assert path.read_bytes().startswith(b"\x89PNG")
    assert path.stat().st_size > 5_000


def test_plots_reject_bad_arguments(tmp_path):
    curve = roc_curve(GENUINE, IMPOSTOR)
    with pytest.raises(ValueError, match="suffix|end in"):
        plot_verification({"all": curve}, tmp_path / "plot.jpgx")
    with pytest.raises(ValueError, match="no curves"):
        plot_cmc({}, tmp_path / "cmc.png")
    with pytest.raises(ValueError, match="non-empty"):
        plot_cmc({"x": []}, tmp_path / "cmc.png")
    assert list(tmp_path.iterdir()) == []


# --- Wilson interval ------------------------------------------------------------


def test_wilson_interval_known_values():
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)  # no error seen, still a real upper bound
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(10, 10)[1] == 1.0 and wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="errors <= trials"):
        wilson_interval(3, 2)
