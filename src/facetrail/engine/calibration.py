"""The score calibration table: a model's impostor distances, so a candidate's distance can be shown with the
estimated false-match rate at that distance ("about 1 in N unrelated faces score this close"), how many people in a
gallery would be expected to come that close by chance, and what the estimate rests on: the impostor pairs this
close, few or none of them (a bound), or a fitted tail beyond them (an extrapolation, with its interval).

Tables are made from labelled photographs (``facetrail.evaluation``), from a gallery's own subjects
(``facetrail.gallery.calibration``, which also keeps them) or per group of people; searches record the ones in force.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

CALIBRATION_FORMAT = "facetrail.calibration.v1"


class CalibrationTable:
    """A model's impostor distance distribution, to show "estimated false-match rate at this score".

    The table keeps a grid of impostor distances, each with the exact number of
    impostors at or below it and strictly below it:

    * if the impostors have at most ``max_points`` distinct values, all of them
      are kept and every lookup is exact;
    * otherwise the grid holds the impostors at ranks spaced geometrically from
      the smallest to the largest, so the low-FMR tail stays dense. Lookups are
      exact at grid distances and, between two of them, report the count
      strictly below the upper one: never lower than the true FMR, and higher by
      at most a factor of about ``n ** (1 / (max_points - 1))`` (about 1 % for a
      billion impostors at 2000 points).
    """

    def __init__(
        self,
        *,
        model: str,
        impostor_count: int,
        distances: ArrayLike,
        count_at_or_below: ArrayLike,
        count_below: ArrayLike,
        source: str = "",
        tail: TailFit | None = None,
    ) -> None:
        """Build from stored grid arrays (see ``from_impostors`` and ``from_json``); checks their consistency.
        ``source`` says which comparisons the table was built from, for the people who read its estimates; ``tail``
        is the fitted lower tail that extrapolates below its closest impostors."""
        grid = np.asarray(distances, dtype=np.float64)
        at_or_below = np.asarray(count_at_or_below, dtype=np.int64)
        below = np.asarray(count_below, dtype=np.int64)
        n = int(impostor_count)
        if not isinstance(model, str) or not model:
            raise ValueError("calibration model name must be a non-empty string")
        if n < 1 or grid.ndim != 1 or grid.size == 0 or at_or_below.shape != grid.shape or below.shape != grid.shape:
            raise ValueError("malformed calibration table: counts must match a non-empty distance grid")
        if not np.isfinite(grid).all() or (np.diff(grid) <= 0).any():
            raise ValueError("calibration distances must be finite and strictly increasing")
        consistent = (below < at_or_below).all() and (at_or_below[:-1] <= below[1:]).all()
        if below[0] != 0 or at_or_below[-1] != n or not consistent:
            raise ValueError("calibration counts are inconsistent with the distance grid")
        self.model = model
        self.source = str(source)
        self._n = n
        self._grid = grid
        self._at_or_below = at_or_below
        self._below = below
        self.tail = tail

    @classmethod
    def from_impostors(cls, impostor_distances: ArrayLike, model: str, max_points: int = 2000, source: str = "",
                       seed: int = 0) -> CalibrationTable:
        """Table from finite impostor distances (drop failed, ``inf``, comparisons first), with its lower tail fitted
        when there are enough of them (``TailFit.fit``; ``seed`` seeds its bootstrap)."""
        values = np.sort(np.asarray(impostor_distances, dtype=np.float64), kind="stable")
        if values.ndim != 1 or values.size == 0:
            raise ValueError(f"impostor_distances must be a non-empty 1-D array, got shape {values.shape}")
        if not np.isfinite(values).all():
            raise ValueError("impostor_distances must be finite; drop failed comparisons before calibrating")
        if not isinstance(max_points, (int, np.integer)) or max_points < 2:
            raise ValueError(f"max_points must be an integer >= 2, got {max_points!r}")
        grid = np.unique(values)
        if grid.size > max_points:
            ranks = np.rint(np.geomspace(1, values.size, max_points)).astype(np.int64)
            grid = np.unique(values[ranks - 1])
        return cls(
            model=model,
            impostor_count=values.size,
            distances=grid,
            count_at_or_below=np.searchsorted(values, grid, side="right"),
            count_below=np.searchsorted(values, grid, side="left"),
            source=source,
            tail=TailFit.fit(values, seed),
        )

    @property
    def impostor_count(self) -> int:
        """Number of impostor comparisons the table was built from."""
        return self._n

    def false_match_rate(self, distance: float) -> float:
        """Fraction of impostor distances <= ``distance`` (exact on the grid, an upper bound between grid points)."""
        return self.impostors_this_close(distance) / self._n

    def impostors_this_close(self, distance: float) -> int:
        """Impostor pairs at or below ``distance`` (exact on the grid, an upper bound between grid points)."""
        d = float(distance)
        if math.isnan(d):
            raise ValueError("distance is NaN")
        k = int(np.searchsorted(self._grid, d, side="right"))
        if k > 0 and self._grid[k - 1] == d:
            return int(self._at_or_below[k - 1])
        if k == self._grid.size:
            return self._n
        return int(self._below[k])

    def estimate(self, distance: float, group: str = "") -> Estimate:
        """The estimated false-match rate at ``distance`` and what it rests on: ``FEW_PAIRS`` or more impostor pairs
        this close (observed); fewer, extrapolated from the fitted tail where there is one below its threshold, else
        observed with an exact binomial interval; none and no tail: the bound one in ``impostor_count``."""
        closer = self.impostors_this_close(distance)
        n = self._n
        if closer >= FEW_PAIRS:
            return Estimate(closer / n, None, None, "observed", n, closer, group)
        if self.tail is not None and distance < self.tail.threshold:
            rate, (low, high) = self.tail.rate(distance, n), self.tail.interval(distance, n)
            floor = 1 / (EXTRAPOLATION_LIMIT * n)
            if rate >= floor:
                return Estimate(rate, low, high, "extrapolated", n, closer, group)
            return Estimate(max(high, floor), None, None, "tail bound", n, closer, group)
        if closer == 0:
            return Estimate(1 / n, 0.0, 1 / n, "bound", n, 0, group)
        from scipy import stats  # imported when needed: it costs most of a second

        low = float(stats.beta.ppf(0.025, closer, n - closer + 1))  # Clopper-Pearson
        high = float(stats.beta.ppf(0.975, closer + 1, n - closer)) if closer < n else 1.0
        return Estimate(closer / n, low, high, "few", n, closer, group)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict that ``from_json`` turns back into an identical table."""
        return {
            "format": CALIBRATION_FORMAT,
            "model": self.model,
            "source": self.source,
            "impostor_count": self._n,
            "distances": self._grid.tolist(),
            "count_at_or_below": self._at_or_below.tolist(),
            "count_below": self._below.tolist(),
            "tail": None if self.tail is None else self.tail.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CalibrationTable:
        """Inverse of ``to_json``; refuses other formats and inconsistent tables."""
        if data.get("format") != CALIBRATION_FORMAT:
            raise ValueError(f"not a calibration table in format {CALIBRATION_FORMAT!r}")
        try:
            return cls(
                model=data["model"],
                impostor_count=data["impostor_count"],
                distances=data["distances"],
                count_at_or_below=data["count_at_or_below"],
                count_below=data["count_below"],
                source=data.get("source", ""),
                tail=TailFit.from_json(data["tail"]) if data.get("tail") else None,
            )
        except KeyError as missing:
            raise ValueError(f"calibration table is missing {missing.args[0]!r}") from None



FEW_PAIRS = 10
"""Below this many impostor pairs at or below a distance, an estimate says it rests on few (or none)."""
TAIL_PAIRS = 1_000
"""The closest impostor distances a table's lower tail is fitted on (a hundredth of them in a smaller table)."""
MIN_TAIL_PAIRS = 100
"""Fewer than this many in the tail (tables under 10,000 impostor pairs): no tail is fitted, no extrapolation."""
TAIL_RESAMPLES = 100
"""Bootstrap resamples of the tail behind an extrapolation's 95% interval."""
EXTRAPOLATION_LIMIT = 10
"""An extrapolation reaches at most this factor below a table's resolution (one in its impostor pairs); closer
than that, the estimate is a bound: the 95% upper end of the extrapolation, or that limit."""


@dataclass(frozen=True)
class TailFit:
    """The lower tail of a table's impostor distances, fitted beyond its closest ``count`` (peaks over threshold):
    the distances below ``threshold`` fall short of it by a generalized Pareto distribution (``shape`` ≥ 0, ``scale``),
    so FMR(d) = count/n · S((threshold − d)), S its survival function, for d below the threshold. ``resampled`` holds
    the (shape, scale) fitted to bootstrap resamples of the tail, for an extrapolation's 95% interval."""

    threshold: float
    count: int
    shape: float
    scale: float
    resampled: tuple[tuple[float, float], ...]

    @classmethod
    def fit(cls, sorted_impostors: np.ndarray, seed: int = 0) -> TailFit | None:
        """Fit the tail of sorted impostor distances (maximum likelihood, scipy's ``genpareto``); None for a table
        too small to have one."""
        count = min(TAIL_PAIRS, sorted_impostors.size // 100)
        if count < MIN_TAIL_PAIRS:
            return None
        threshold = float(sorted_impostors[count])
        shortfalls = threshold - sorted_impostors[:count]
        rng = np.random.default_rng(seed)
        resampled = tuple(_fit_tail(rng.choice(shortfalls, count)) for _ in range(TAIL_RESAMPLES))
        return cls(threshold, count, *_fit_tail(shortfalls), resampled)

    def rate(self, distance: float, impostor_count: int) -> float:
        """The extrapolated false-match rate at ``distance`` (below the threshold) of a table of ``impostor_count``."""
        return self._rates(distance, impostor_count, [(self.shape, self.scale)])[0]

    def interval(self, distance: float, impostor_count: int) -> tuple[float, float]:
        """The 95% bootstrap interval of the extrapolated rate at ``distance``."""
        rates = self._rates(distance, impostor_count, self.resampled)
        return float(np.quantile(rates, 0.025)), float(np.quantile(rates, 0.975))

    def _rates(self, distance: float, impostor_count: int, fits: Sequence[tuple[float, float]]) -> np.ndarray:
        shapes, scales = np.array(fits).T
        from scipy import stats

        return self.count / impostor_count * stats.genpareto.sf(self.threshold - distance, shapes, scale=scales)

    def to_json(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "count": self.count, "shape": self.shape, "scale": self.scale,
                "resampled": [list(pair) for pair in self.resampled]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TailFit:
        return cls(float(data["threshold"]), int(data["count"]), float(data["shape"]), float(data["scale"]),
                   tuple((float(a), float(b)) for a, b in data["resampled"]))


def _fit_tail(shortfalls: np.ndarray) -> tuple[float, float]:
    """(shape, scale) of a generalized Pareto distribution fitted to the shortfalls by maximum likelihood with the
    shape held at 0 or above: a negative shape puts an end to the tail (no impostor could ever come closer), which
    the data of one gallery cannot show; at its bound the fit is the exponential one (scale = the mean)."""
    from scipy import stats

    shape, _, scale = stats.genpareto.fit(shortfalls, floc=0)
    return (float(shape), float(scale)) if shape >= 0 else (0.0, float(shortfalls.mean()))


@dataclass(frozen=True)
class Estimate:
    """An estimated false-match rate at one distance and what it rests on (``basis``): 'observed' (``FEW_PAIRS`` or
    more impostor pairs this close), 'few' (fewer: ``low``–``high`` is the exact binomial 95% interval),
    'extrapolated' (from the fitted tail: ``low``–``high`` its bootstrap interval), 'tail bound' (beyond what the
    tail extrapolates to: ``rate`` is an upper bound, see ``EXTRAPOLATION_LIMIT``) or 'bound' (no pair and no tail:
    ``rate`` is the bound one in ``impostor_pairs``). ``group`` names the group whose table gave it, if any;
    ``spread`` holds every table's estimate when there were several (per group)."""

    rate: float
    low: float | None
    high: float | None
    basis: str
    impostor_pairs: int
    pairs_this_close: int
    group: str = ""
    spread: tuple[Estimate, ...] = field(default=(), compare=False)

    @property
    def text(self) -> str:
        """The estimate in words, the one wording of every interface."""
        n, closer = self.impostor_pairs, self.pairs_this_close
        if self.basis == "bound":
            return f"fewer than 1 in {n:,} (no impostor pair came this close)"
        if self.basis == "observed":
            return false_match_rate_text(self.rate, n)
        interval = f"95% interval {_one_in(self.low)} to {_one_in(self.high)}"
        pairs = (f"no impostor pair of {n:,} came this close" if closer == 0 else
                 f"only {closer} impostor pair{'' if closer == 1 else 's'} of {n:,} came this close")
        if self.basis == "tail bound":
            return (f"fewer than {_one_in(self.rate)}, the most the fitted tail of the impostor distances allows "
                    f"this close; {pairs}")
        if self.basis == "few":
            return f"{false_match_rate_text(self.rate, n)}; {pairs} ({interval})"
        return f"about {_one_in(self.rate)}, extrapolated from the fitted tail of the impostor distances ({interval}); {pairs}"

    def look_alikes(self, subjects: int) -> LookAlikes:
        """How many of the other people of a gallery of ``subjects`` would be expected to come this close by chance,
        (subjects − 1) × FMR, and the chance that at least one does."""
        others = max(subjects - 1, 0)

        def chance(rate: float) -> float:
            return float(-np.expm1(others * np.log1p(-min(rate, 1.0)))) if rate < 1 else 1.0

        return LookAlikes(subjects, others * self.rate, None if self.low is None else others * self.low,
                          None if self.high is None else others * self.high, chance(self.rate), self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with the wording."""
        shown = {"rate": self.rate, "low": self.low, "high": self.high, "basis": self.basis,
                 "impostor_pairs": self.impostor_pairs, "pairs_this_close": self.pairs_this_close,
                 "group": self.group or ("all" if self.spread else ""),
                 "text": self.text}
        if self.spread:
            shown["by_group"] = [{"group": e.group or "all", "rate": e.rate, "basis": e.basis, "text": e.text}
                                 for e in self.spread]
        return shown


@dataclass(frozen=True)
class LookAlikes:
    """The expected number of different people in a gallery at least as close as a candidate by chance."""

    subjects: int
    expected: float
    low: float | None
    high: float | None
    chance_any: float
    estimate: Estimate

    @property
    def sentence(self) -> str:
        """'In this gallery of 9,012,344 people, about 2,700 would be expected to come this close by chance ...'."""
        if self.subjects <= 1:
            return "This gallery holds one person: nobody else in it could come this close."
        gallery = f"In this gallery of {self.subjects:,} people, "
        if self.estimate.basis in ("bound", "tail bound"):
            chance = _percent(self.chance_any)
            return (f"{gallery}{self.count_text} would be expected to come this close by chance; the "
                    f"chance that any one does is {chance if chance.startswith('under') else 'under ' + chance}.")
        interval = "" if self.low is None else f" (95% interval {_about(self.low)} to {_about(self.high)})"
        return (f"{gallery}{self.count_text} would be expected to come this close by chance{interval}; "
                f"the chance that at least one does is {_percent(self.chance_any)}.")

    @property
    def count_text(self) -> str:
        """The expected count alone: 'about 2,700', 'fewer than 0.45'."""
        bound = self.estimate.basis in ("bound", "tail bound")
        return f"{'fewer than' if bound else 'about'} {_about(self.expected)}"

    def to_dict(self) -> dict[str, Any]:
        return {"gallery_subjects": self.subjects, "expected": self.expected, "low": self.low, "high": self.high,
                "chance_any": self.chance_any, "count_text": self.count_text, "sentence": self.sentence}


@dataclass(frozen=True)
class CalibrationSet:
    """The tables in force for a search: ``base`` (the gallery's own, else the model's from labelled photographs)
    and any per-group tables. An estimate is the highest of theirs (the conservative one), with the others beside it."""

    base: CalibrationTable
    groups: Mapping[str, CalibrationTable] = field(default_factory=dict)

    def estimate(self, distance: float) -> Estimate:
        """The highest estimate at ``distance`` among the tables (with ``spread`` when there are groups)."""
        estimates = [self.base.estimate(distance)] + [t.estimate(distance, g) for g, t in sorted(self.groups.items())]
        highest = max(estimates, key=lambda e: e.rate)
        return highest if len(estimates) == 1 else Estimate(**{**highest.__dict__, "spread": tuple(estimates)})

    @property
    def source(self) -> str:
        """Which comparisons the estimates rest on, in words."""
        if not self.groups:
            return self.base.source
        return f"{self.base.source}; per group ({', '.join(sorted(self.groups))}), the highest estimate shown"


def false_match_rate_text(rate: float | None, impostor_pairs: int | None = None) -> str:
    """A false-match rate in words: '1 in 2,500 (0.040%)'; below what a calibration of ``impostor_pairs`` impostor
    pairs resolves, 'fewer than 1 in 78,000 (no impostor pair came this close)' ('below the calibration's resolution
    ...' when the count is not given); 'not calibrated' without an estimate (``rate`` None). ``Estimate.text`` words
    an estimate with what it rests on; this words a bare rate (searches recorded before estimates were)."""
    if rate is None:
        return "not calibrated"
    if rate <= 0 or (impostor_pairs and rate * impostor_pairs < 0.5):
        if not impostor_pairs:
            return "below the calibration's resolution (no impostor pair came this close)"
        return f"fewer than 1 in {impostor_pairs:,} (no impostor pair came this close)"
    if rate >= 0.5:
        return f"{rate:.0%}"
    percent = rate * 100
    decimals = max(0, 1 - math.floor(math.log10(percent)))
    return f"1 in {round(1 / rate):,} ({percent:.{decimals}f}%)"


def _one_in(rate: float | None) -> str:
    """'1 in 4,100,000' to two significant figures; 'below 1 in 10^12' for a rate that small (or zero)."""
    if rate is None or rate < 1e-12:
        return "below 1 in 1,000,000,000,000"
    if rate >= 0.5:
        return f"{rate:.0%}"
    return f"1 in {_significant(1 / rate):,.0f}"


def _about(count: float) -> str:
    """A count of people to two significant figures: '2,700', '3.4', '0.0031'."""
    if count <= 0:
        return "0"
    if count >= 10:
        return f"{_significant(count):,.0f}"
    decimals = max(1, 1 - math.floor(math.log10(count)))
    return f"{count:.{decimals}f}"


def _significant(value: float, digits: int = 2) -> float:
    return round(value, digits - 1 - math.floor(math.log10(value)))


def _percent(chance: float) -> str:
    if chance > 0.999:
        return "over 99.9%"
    if chance < 0.001:
        return "under 0.1%"
    return f"{chance:.1%}"
