"""Saved score calibration: a model's impostor distances, so a candidate's distance can be shown with the
estimated false-match rate at that distance ("about 1 in N unrelated faces score this close")."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from facetrail.datadir import DataDir
from facetrail.errors import FacetrailError
from facetrail.evaluation.metrics import CalibrationTable


def calibration_path(datadir: DataDir, model: str) -> Path:
    """Where the calibration table for ``model`` is kept."""
    return datadir.root / "calibration" / f"{model}.json"


def save_calibration(datadir: DataDir, impostor_distances: np.ndarray, model: str) -> Path:
    """Build a table from finite impostor distances and save it (atomically) in the data directory."""
    if not datadir.exists():
        raise FacetrailError(f"{datadir.root} is not a facetrail data directory; run 'facetrail init' first")
    finite = impostor_distances[np.isfinite(impostor_distances)]
    if finite.size == 0:
        raise FacetrailError("no impostor comparisons to calibrate from")
    table = CalibrationTable.from_impostors(finite, model)
    path = calibration_path(datadir, model)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(table.to_json(), handle)
    os.replace(temp, path)
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
