"""Biometric accuracy metrics on comparison distances (ISO/IEC 19795 and NIST FRVT terms).

Conventions used throughout:

* Scores are distances: lower means more alike, and a comparison *matches* at
  threshold ``t`` when ``distance <= t``.
* ``+inf`` marks a failed comparison or search (no template, mate not returned).
  It never matches at any threshold but stays in the denominator, so a failure
  counts as an error instead of disappearing from the statistics.
* NaN and ``-inf`` distances are refused with ``ValueError`` (NaN is allowed
  only for pairs flagged in ``failed``).
* Rates are fractions in [0, 1]; results are plain Python floats.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

@dataclass(frozen=True, eq=False)
class RocCurve:
    """Error trade-off at every distinct score: ``fmr[k]`` and ``fnmr[k]`` hold at ``thresholds[k]``."""

    thresholds: NDArray[np.float64]
    """Ascending: ``-inf`` (nothing matches), then every distinct finite distance."""
    fmr: NDArray[np.float64]
    """False match rate: fraction of impostor distances <= threshold."""
    fnmr: NDArray[np.float64]
    """False non-match rate: fraction of genuine distances > threshold."""

    @property
    def tar(self) -> NDArray[np.float64]:
        """True accept rate, ``1 - fnmr``."""
        return 1.0 - self.fnmr


@dataclass(frozen=True)
class OperatingPoint:
    """A verification operating point chosen by its false accept rate."""

    threshold: float
    tar: float
    far_actual: float


@dataclass(frozen=True)
class EqualErrorRate:
    """Where FMR and FNMR cross: their mean at the threshold minimising ``|FMR - FNMR|``."""

    eer: float
    threshold: float


@dataclass(frozen=True)
class IdentificationPoint:
    """An open-set identification operating point chosen by its false positive identification rate."""

    threshold: float
    fnir: float
    fpir_actual: float


@dataclass(frozen=True)
class KFoldResult:
    """Cross-validated verification accuracy (LFW protocol)."""

    fold_accuracies: list[float]
    mean: float
    std: float
    """Population standard deviation (ddof=0) of the fold accuracies."""
    thresholds: list[float]
    """Threshold chosen on the other folds for each held-out fold."""


@dataclass(frozen=True)
class GroupComparison:
    """Worst and best group for an error rate, and how many times worse the worst is."""

    worst_group: str
    worst: float
    best_group: str
    best: float
    ratio: float


# --- input checks -------------------------------------------------------------


def _vector(name: str, values: ArrayLike) -> NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {array.shape}")
    return array


def _check_distances(name: str, array: NDArray[np.float64]) -> NDArray[np.float64]:
    if np.isnan(array).any() or np.isneginf(array).any():
        raise ValueError(f"{name} contains NaN or -inf; use +inf for a failed comparison")
    return array


def _distances(name: str, values: ArrayLike) -> NDArray[np.float64]:
    return _check_distances(name, _vector(name, values))


def _flags(name: str, values: ArrayLike, size: int) -> NDArray[np.bool_]:
    array = np.asarray(values)
    if array.shape != (size,):
        raise ValueError(f"{name} has shape {array.shape}, expected ({size},) to match distances")
    if array.dtype != np.bool_ and not np.isin(array, (0, 1)).all():
        raise ValueError(f"{name} must hold booleans (or 0/1)")
    return array.astype(bool)


def _pairs(
    distances: ArrayLike, same: ArrayLike, failed: ArrayLike | None
) -> tuple[NDArray[np.float64], NDArray[np.bool_], NDArray[np.bool_]]:
    d = _vector("distances", distances)
    same_ = _flags("same", same, d.size)
    failed_ = np.zeros(d.size, dtype=bool) if failed is None else _flags("failed", failed, d.size)
    _check_distances("distances (of pairs not marked failed)", d[~failed_])
    return d, same_, failed_


def _rate(name: str, value: float) -> float:
    rate = float(value)
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], got {value!r}")
    return rate


# --- verification -------------------------------------------------------------


def _tradeoff(
    genuine: ArrayLike, impostor: ArrayLike, names: tuple[str, str] = ("genuine", "impostor")
) -> RocCurve:
    """The sorted-scores sweep shared by every threshold-based metric (O(n log n))."""
    g = _distances(names[0], genuine)
    i = _distances(names[1], impostor)
    scores = np.concatenate((g, i))
    thresholds = np.concatenate(([-np.inf], np.unique(scores[np.isfinite(scores)])))
    # +inf sorts after every finite threshold, so failed comparisons never count as matches.
    matched_g = np.searchsorted(np.sort(g), thresholds, side="right")
    matched_i = np.searchsorted(np.sort(i), thresholds, side="right")
    return RocCurve(thresholds=thresholds, fmr=matched_i / i.size, fnmr=(g.size - matched_g) / g.size)


def _last_within(rates: NDArray[np.float64], limit: float) -> int:
    """Index of the largest threshold whose (non-decreasing) false-positive rate is <= limit."""
    return int(np.searchsorted(rates, limit, side="right")) - 1


def roc_curve(genuine: ArrayLike, impostor: ArrayLike) -> RocCurve:
    """FMR and FNMR at ``-inf`` and at every distinct finite distance (``+inf`` = failed, never matches)."""
    return _tradeoff(genuine, impostor)


def roc_auc(genuine: ArrayLike, impostor: ArrayLike) -> float:
    """P(random genuine distance < random impostor distance), ties counting 1/2 (Mann-Whitney U via mid-ranks)."""
    g = _distances("genuine", genuine)
    i = _distances("impostor", impostor)
    _, inverse, counts = np.unique(np.concatenate((g, i)), return_inverse=True, return_counts=True)
    mid_ranks = np.cumsum(counts) - (counts - 1) / 2.0
    impostor_u = mid_ranks[inverse[g.size :]].sum() - i.size * (i.size + 1) / 2.0
    return float(impostor_u / (g.size * i.size))


def tar_at_far(genuine: ArrayLike, impostor: ArrayLike, far: float) -> OperatingPoint:
    """TAR at the largest distinct-score threshold whose FMR is <= ``far`` (``-inf`` and TAR 0 if none)."""
    return tar_at_fars(genuine, impostor, (far,))[0]


def tar_at_fars(genuine: ArrayLike, impostor: ArrayLike, fars: tuple[float, ...]) -> list[OperatingPoint]:
    """``tar_at_far`` at each of ``fars``, sorting the scores once."""
    curve = roc_curve(genuine, impostor)
    points = []
    for far in fars:
        k = _last_within(curve.fmr, _rate("far", far))
        points.append(OperatingPoint(threshold=float(curve.thresholds[k]), tar=float(curve.tar[k]), far_actual=float(curve.fmr[k])))
    return points


def equal_error_rate(genuine: ArrayLike, impostor: ArrayLike) -> EqualErrorRate:
    """Mean of FMR and FNMR at the (smallest) threshold minimising ``|FMR - FNMR|``."""
    curve = roc_curve(genuine, impostor)
    k = int(np.argmin(np.abs(curve.fmr - curve.fnmr)))
    return EqualErrorRate(eer=float((curve.fmr[k] + curve.fnmr[k]) / 2), threshold=float(curve.thresholds[k]))


def accuracy_at_threshold(
    distances: ArrayLike, same: ArrayLike, threshold: float, failed: ArrayLike | None = None
) -> float:
    """Fraction of pairs with ``(distance <= threshold) == same``; pairs flagged ``failed`` are always errors."""
    d, same_, failed_ = _pairs(distances, same, failed)
    if math.isnan(float(threshold)):
        raise ValueError("threshold is NaN")
    matched = np.isfinite(d) & (d <= threshold)
    correct = (matched == same_) & ~failed_
    return float(correct.mean())


def best_threshold(distances: ArrayLike, same: ArrayLike, failed: ArrayLike | None = None) -> float:
    """Threshold maximising accuracy on these pairs; the smallest one on ties.

    Candidates are ``-inf`` (accept nothing), the midpoints between consecutive
    distinct finite distances and the largest finite distance (accept all
    finite). Failed pairs are errors at every threshold, so they do not
    influence the choice.
    """
    d, same_, failed_ = _pairs(distances, same, failed)
    usable = ~failed_
    d, same_ = d[usable], same_[usable]
    finite = np.isfinite(d)
    values, inverse = np.unique(d[finite], return_inverse=True)
    same_at = np.bincount(inverse, weights=same_[finite], minlength=values.size)
    different_at = np.bincount(inverse, weights=~same_[finite], minlength=values.size)
    # Candidate j accepts the j smallest distinct distances (j = 0 .. values.size).
    accepted_same = np.concatenate(([0.0], np.cumsum(same_at)))
    accepted_different = np.concatenate(([0.0], np.cumsum(different_at)))
    correct = accepted_same + np.count_nonzero(~same_) - accepted_different
    j = int(np.argmax(correct))
    if j == 0:
        return -math.inf
    if j == values.size:
        return float(values[-1])
    low, high = values[j - 1], values[j]
    midpoint = (low + high) / 2
    # Between adjacent floats the midpoint can round up to ``high``; ``low`` splits the same way.
    return float(midpoint if midpoint < high else low)


def kfold_accuracy(
    distances: ArrayLike,
    same: ArrayLike,
    folds: int = 10,
    seed: int = 0,
    failed: ArrayLike | None = None,
) -> KFoldResult:
    """LFW-style k-fold accuracy: each fold is scored at the best threshold of the other folds.

    Pair indices are shuffled with ``np.random.default_rng(seed).permutation``
    and cut into ``folds`` near-equal parts with ``np.array_split``.
    """
    d, same_, failed_ = _pairs(distances, same, failed)
    if not isinstance(folds, (int, np.integer)) or folds < 2:
        raise ValueError(f"folds must be an integer >= 2, got {folds!r}")
    if folds > d.size:
        raise ValueError(f"folds={folds} exceeds the number of pairs ({d.size})")
    accuracies: list[float] = []
    thresholds: list[float] = []
    for held_out in np.array_split(np.random.default_rng(seed).permutation(d.size), folds):
        train = np.ones(d.size, dtype=bool)
        train[held_out] = False
        threshold = best_threshold(d[train], same_[train], failed_[train])
        thresholds.append(threshold)
        accuracies.append(accuracy_at_threshold(d[held_out], same_[held_out], threshold, failed_[held_out]))
    return KFoldResult(
        fold_accuracies=accuracies,
        mean=float(np.mean(accuracies)),
        std=float(np.std(accuracies)),
        thresholds=thresholds,
    )


# --- identification -----------------------------------------------------------


def cmc_curve(mate_ranks: ArrayLike, max_rank: int) -> NDArray[np.float64]:
    """Entry ``r - 1``: fraction of mated searches with the mate at rank <= r (1-based; 0 or inf = not returned)."""
    ranks = _vector("mate_ranks", mate_ranks)
    if np.isnan(ranks).any() or (ranks < 0).any():
        raise ValueError("mate_ranks must be >= 0 (0 or inf = mate not returned)")
    finite = ranks[np.isfinite(ranks)]
    if (finite != np.round(finite)).any():
        raise ValueError("mate_ranks must be whole numbers (or inf)")
    if not isinstance(max_rank, (int, np.integer)) or max_rank < 1:
        raise ValueError(f"max_rank must be an integer >= 1, got {max_rank!r}")
    found = np.sort(ranks[ranks >= 1])
    return np.searchsorted(found, np.arange(1, max_rank + 1), side="right") / ranks.size


def fnir_at_fpir(mated_distances: ArrayLike, unmated_top1_distances: ArrayLike, fpir: float) -> IdentificationPoint:
    """NIST FRVT open-set operating point: FNIR at the largest threshold whose FPIR is <= ``fpir``.

    FPIR(t) is the fraction of unmated searches whose top-1 distance is <= t;
    FNIR(t) the fraction of mated searches whose mate distance is > t
    (``+inf`` = mate not returned, empty list or failed search).
    """
    fpir = _rate("fpir", fpir)
    # The same sweep as verification: mated searches play "genuine", unmated top-1s "impostor".
    curve = _tradeoff(mated_distances, unmated_top1_distances, names=("mated_distances", "unmated_top1_distances"))
    k = _last_within(curve.fmr, fpir)
    return IdentificationPoint(
        threshold=float(curve.thresholds[k]), fnir=float(curve.fnmr[k]), fpir_actual=float(curve.fmr[k])
    )


# --- demographic differentials ------------------------------------------------


def error_ratio(values_by_group: Mapping[str, float]) -> GroupComparison:
    """Worst/best ratio of an error rate across groups (NaN groups ignored; first group wins ties).

    ``inf`` when the best group has no errors and the worst has some; 1.0 when neither has any.
    """
    rates = {group: float(value) for group, value in values_by_group.items() if not math.isnan(float(value))}
    if not rates:
        raise ValueError("values_by_group has no group with a (non-NaN) value")
    outside = [group for group, rate in rates.items() if not 0.0 <= rate <= 1.0]
    if outside:
        raise ValueError(f"error rates must be in [0, 1]; out of range for {outside}")
    worst_group = max(rates, key=rates.__getitem__)
    best_group = min(rates, key=rates.__getitem__)
    worst, best = rates[worst_group], rates[best_group]
    if best > 0:
        ratio = worst / best
    else:
        ratio = math.inf if worst > 0 else 1.0
    return GroupComparison(worst_group=worst_group, worst=worst, best_group=best_group, best=best, ratio=ratio)


def worst_to_best(by_group: Mapping[str, Any], readers: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """For each named error rate (``readers``: name -> function reading it from a group's figures, None when
    absent), the worst and best group and their ratio; rates known for fewer than two groups are left out."""
    comparisons = {}
    for name, read in readers.items():
        values = {group: (math.nan if read(figures) is None else read(figures)) for group, figures in by_group.items()}
        if sum(not math.isnan(v) for v in values.values()) >= 2:
            c = error_ratio(values)
            comparisons[name] = {"worst_group": c.worst_group, "worst": c.worst, "best_group": c.best_group, "best": c.best, "ratio": c.ratio}
    return comparisons


# --- confidence intervals -----------------------------------------------------


def wilson_interval(errors: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion ``errors / trials``, treating the trials as independent.

    Unlike the normal approximation it stays inside [0, 1] and gives a non-zero
    upper bound when no error was observed. (0, 1) when there are no trials.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if errors < 0 or trials < 0 or errors > trials:
        raise ValueError(f"need 0 <= errors <= trials, got {errors} of {trials}")
    if trials == 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = errors / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z / (1 + z * z / trials) * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    low = 0.0 if errors == 0 else max(0.0, centre - half)
    high = 1.0 if errors == trials else min(1.0, centre + half)
    return low, high
