"""Calibrating scores from photographs: the impostor distances of a photo set, for the engine's calibration table
(``facetrail.engine.calibration``; the store keeps it)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from facetrail.config import EngineConfig
from facetrail.engine.calibration import CalibrationTable
from facetrail.errors import FacetrailError
from facetrail.evaluation.demographics import labelled_set, score_pairs
from facetrail.evaluation.templates import ImageTemplate, compute_templates


def calibrate_from_photos(
    identities: dict[str, list[Path]],
    name: str,
    config: EngineConfig,
    model: str,
    workers: int = 0,
    on_done: Callable[[ImageTemplate], None] = lambda template: None,
) -> CalibrationTable:
    """The calibration table of every impostor pair of a folder-per-identity photo set called ``name`` (the face
    nearest each image's centre); photographs without a face are left out."""
    templates = compute_templates([p for paths in identities.values() for p in paths], config, "centre", workers, on_done)
    if len(identities) < 2:
        raise FacetrailError(f"{name}: calibration needs photographs of at least two people")
    data, _ = labelled_set(identities, dict.fromkeys(identities, "all"), templates)
    impostors = score_pairs(data).all_impostors()
    usable = sum(not t.failed for t in templates.values())
    source = (f"{name}: {int(np.isfinite(impostors).sum()):,} impostor pairs among {usable:,} photographs "
              f"of {len(identities):,} people")
    return CalibrationTable.from_impostors(impostors[np.isfinite(impostors)], model, source=source)
