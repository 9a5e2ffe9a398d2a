"""Saved score calibration: a model's impostor distances, so a candidate's distance can be shown with the
estimated false-match rate at that distance ("about 1 in N unrelated faces score this close"), and which
comparisons that estimate rests on."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from facetrail.config import EngineConfig
from facetrail.datadir import DataDir
from facetrail.errors import FacetrailError
from facetrail.evaluation.demographics import labelled_set, score_pairs
from facetrail.evaluation.metrics import CalibrationTable
from facetrail.evaluation.templates import ImageTemplate, compute_templates


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


def calibrate_from_photos(
    datadir: DataDir,
    identities: dict[str, list[Path]],
    name: str,
    config: EngineConfig,
    model: str,
    workers: int = 0,
    on_done: Callable[[ImageTemplate], None] = lambda template: None,
) -> tuple[Path, CalibrationTable]:
    """Calibrate from every impostor pair of a folder-per-identity photo set called ``name`` (the face nearest each
    image's centre) and save the table; photographs without a face are left out."""
    templates = compute_templates([p for paths in identities.values() for p in paths], config, "centre", workers, on_done)
    if len(identities) < 2:
        raise FacetrailError(f"{name}: calibration needs photographs of at least two people")
    data, _ = labelled_set(identities, dict.fromkeys(identities, "all"), templates)
    impostors = score_pairs(data).all_impostors()
    usable = sum(not t.failed for t in templates.values())
    source = (f"{name}: {int(np.isfinite(impostors).sum()):,} impostor pairs among {usable:,} photographs "
              f"of {len(identities):,} people")
    path = save_calibration(datadir, impostors, model, source)
    return path, load_calibration(datadir, model)
