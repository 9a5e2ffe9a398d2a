"""The score calibration table: a model's impostor distances, so a candidate's distance can be shown with the
estimated false-match rate at that distance ("about 1 in N unrelated faces score this close"), and which
comparisons that estimate rests on. Searches read it; ``facetrail.evaluation.calibration`` computes it from photographs.

The table of a model is kept in ``DATA/calibration/<model>.json``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from facetrail.datadir import DataDir
from facetrail.errors import FacetrailError
from facetrail.storage import write_atomically

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
    ) -> None:
        """Build from stored grid arrays (see ``from_impostors`` and ``from_json``); checks their consistency.
        ``source`` says which comparisons the table was built from, for the people who read its estimates."""
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

    @classmethod
    def from_impostors(cls, impostor_distances: ArrayLike, model: str, max_points: int = 2000, source: str = "") -> CalibrationTable:
        """Table from finite impostor distances (drop failed, ``inf``, comparisons first)."""
        values = np.sort(np.asarray(impostor_distances, dtype=np.float64))
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
        )

    @property
    def impostor_count(self) -> int:
        """Number of impostor comparisons the table was built from."""
        return self._n

    def false_match_rate(self, distance: float) -> float:
        """Fraction of impostor distances <= ``distance`` (exact on the grid, an upper bound between grid points)."""
        d = float(distance)
        if math.isnan(d):
            raise ValueError("distance is NaN")
        k = int(np.searchsorted(self._grid, d, side="right"))
        if k > 0 and self._grid[k - 1] == d:
            count = self._at_or_below[k - 1]
        elif k == self._grid.size:
            count = self._n
        else:
            count = self._below[k]
        return int(count) / self._n

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
            )
        except KeyError as missing:
            raise ValueError(f"calibration table is missing {missing.args[0]!r}") from None


def false_match_rate_text(rate: float | None, impostor_pairs: int | None = None) -> str:
    """An estimated false-match rate in words, the one wording of every interface: '1 in 2,500 (0.040%)'; below what
    a calibration of ``impostor_pairs`` impostor pairs resolves, 'fewer than 1 in 78,000 (no impostor pair came this
    close)' ('below the calibration's resolution ...' when the count is not given); 'not calibrated' without an
    estimate (``rate`` None)."""
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


def calibration_path(datadir: DataDir, model: str) -> Path:
    """Where the calibration table for ``model`` is kept."""
    return datadir.root / "calibration" / f"{model}.json"


def save_calibration(datadir: DataDir, impostor_distances: np.ndarray, model: str, source: str) -> Path:
    """Build a table from finite impostor distances and save it (atomically) in the data directory; ``source``
    describes the photographs the impostors came from ("lfw-dev: all 26,000,000 impostor pairs ...")."""
    if not datadir.exists():
        raise FacetrailError(f"{datadir.root} is not a facetrail data directory; run 'facetrail init' first")
    finite = impostor_distances[np.isfinite(impostor_distances)]
    if finite.size == 0:
        raise FacetrailError("no impostor comparisons to calibrate from")
    table = CalibrationTable.from_impostors(finite, model, source=source)
    path = calibration_path(datadir, model)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(table.to_json()).encode("utf-8")
    write_atomically(path, lambda handle: handle.write(data))
    return path


def load_calibration(datadir: DataDir, model: str) -> CalibrationTable | None:
    """The saved table for ``model``, or None when no evaluation has saved one."""
    path = calibration_path(datadir, model)
    if not path.exists():
        return None
    try:
        return CalibrationTable.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError) as exc:
        raise FacetrailError(f"{path}: not a valid calibration table: {exc}") from exc
