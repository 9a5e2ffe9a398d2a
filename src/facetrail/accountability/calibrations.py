"""Calibrations: what the estimated false-match rates and look-alike counts of searches rest on.

A calibration is kept in the store with its audit entry, in one transaction, and never changed; the latest of each
kind is in force (``gallery.calibration.in_force``) and searches record the ones they used. They come from labelled
photographs (``facetrail init --calibrate-from``, ``evaluate ... --save-calibration``, per group with
``evaluate demographics``) or from a gallery's own subjects (``gallery calibrate``, and after an enrolment that grows
it enough).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from facetrail.accountability.context import Context
from facetrail.accountability.users import Actor
from facetrail.engine.calibration import CalibrationTable
from facetrail.errors import GalleryError
from facetrail.evaluation.calibration import calibrate_from_photos
from facetrail.evaluation.datasets import identity_folders
from facetrail.gallery.calibration import calibrate_gallery, record_calibration, subjects_at_last_calibration
from facetrail.gallery.gallery import Gallery
from facetrail.gallery.schema import CalibrationRecord
from facetrail.store import as_utc, utcnow


class Calibrations:
    """Making calibrations (admins; from labelled photographs also auditors, who evaluate) and reading the one in
    force for a gallery (any user)."""

    def __init__(self, context: Context) -> None:
        self.context = context

    def in_force(self, by: Actor, name: str) -> dict[str, Any] | None:
        """The calibration a search of gallery ``name`` would use now (the gallery's own, else the model's from
        labelled photographs): what it rests on, when and by whom; None when uncalibrated (any user)."""
        context = self.context
        context.require(by, "view_galleries", name)
        gallery = context.galleries.get(name)
        with context.galleries.sessions() as session:
            calibration = context.calibration_in_force(session, context.engines.model_name, gallery.id)
            if calibration is None:
                return None
            record = session.get_one(CalibrationRecord, calibration.base_id)
            return {"calibration_id": record.id, "scope": record.scope, "source": calibration.tables.source,
                    "impostor_pairs": record.impostor_pairs, "created_at": as_utc(record.created_at).isoformat(),
                    "created_by": record.created_by}

    def after_enrolment(self, by: Actor, gallery: Gallery) -> None:
        """Calibrate the gallery again from its own subjects (as ``by``) when an enrolment has made it large enough
        for its first own calibration, or grown it enough since its last (``calibration.recalibrate_growth``)."""
        config = self.context.settings.calibration
        if not config.recalibrate_growth:
            return
        with self.context.galleries.sessions() as session:
            before = subjects_at_last_calibration(session, gallery)
        subjects = gallery.subject_count()
        if subjects >= (config.recalibrate_from_subjects if before is None else before * (1 + config.recalibrate_growth)):
            self.calibrate_gallery(by, gallery.name)

    def calibrate(self, folder: Path, workers: int = 0, on_done: Callable[[Any], None] = lambda template: None) -> str:
        """Calibrate the estimated false-match rate of the model in use from every pair of different people in a
        folder with one subfolder of photographs per person (set-up, run by ``facetrail init``; kept and audited in
        one transaction). Returns the description of the data that the candidates' estimates will name."""
        context = self.context
        table = calibrate_from_photos(identity_folders(folder), folder.name, context.settings.engine,
                                      context.engines.model_name, workers, on_done)
        self._keep_calibrations("system", {"": table})
        return table.source

    def keep_calibration_files(self) -> list[str]:
        """Keep in the store the calibration tables earlier versions saved as files (``DATA/calibration/*.json``),
        audited, and remove the files (``facetrail init`` on an existing data directory). Returns their sources."""
        sources = []
        for path in sorted((self.context.datadir.root / "calibration").glob("*.json")):
            try:
                table = CalibrationTable.from_json(json.loads(path.read_text(encoding="utf-8")))
            except (ValueError, KeyError, TypeError) as exc:
                raise GalleryError(f"{path}: not a valid calibration table: {exc}") from exc
            self._keep_calibrations("system", {"": table})
            path.unlink()
            sources.append(table.source)
        return sources

    def calibrate_gallery(self, by: Actor, name: str, pairs: int | None = None) -> dict[str, Any]:
        """Calibrate the estimated false-match rates of searches in gallery ``name`` from its own subjects
        (``gallery.calibration``: ``pairs`` impostor pairs, else ``calibration.pairs``), kept and audited in one
        transaction; from then on its searches use it. Admins. Returns what it rests on, its resolution and time."""
        context = self.context
        context.require(by, "manage_galleries")
        config = context.settings.calibration if pairs is None else replace(context.settings.calibration, pairs=pairs)
        gallery = context.galleries.get(name)
        started = time.perf_counter()
        found = calibrate_gallery(gallery, config)
        if found.distances.size == 0:
            raise GalleryError(f"gallery {name!r}: every sampled pair is closer than the duplicate distance; nothing to calibrate from")
        table = CalibrationTable.from_impostors(found.distances, context.engines.model_name,
                                                source=found.source(name, config.seed), seed=config.seed)
        summary = {"gallery": name, "gallery_version": found.version, "subjects": found.subjects,
                   "impostor_pairs": table.impostor_count, "excluded_pairs": found.excluded_pairs,
                   "all_pairs": found.all_pairs, "seed": config.seed, "duplicate_distance": config.duplicate_distance,
                   "resolution": 1 / table.impostor_count, "tail_fitted": table.tail is not None}
        with context.audit.transaction() as session:
            record = record_calibration(session, table, "gallery", by.username, gallery=gallery,
                                        subjects=found.subjects, excluded_pairs=found.excluded_pairs)
            context.audit.record(session, by.username, "calibration_saved", name, {
                "calibration_id": record.id, "scope": "gallery", **summary, "source": table.source})
        return {"calibration_id": record.id, **summary, "source": table.source,
                "seconds": round(time.perf_counter() - started, 1)}

    def save_calibration(self, by: Actor, model: str, impostor_distances: np.ndarray, source: str,
                         groups: dict[str, np.ndarray] | None = None) -> str:
        """Keep the false-match-rate table an evaluation measured for the model (labelled photographs), and one per
        group when ``groups`` gives each group's impostor distances: an estimate is then the highest of the groups'
        (conservative). Kept and audited in one transaction (admins and auditors). Returns what it was kept as."""
        self.context.require(by, "evaluate")
        tables = {"": CalibrationTable.from_impostors(_finite(impostor_distances), model, source=source)}
        for group, distances in (groups or {}).items():
            if not np.isfinite(distances).any():
                continue  # a group of one person, or whose photographs all failed: no pair of its own
            tables[group] = CalibrationTable.from_impostors(_finite(distances), model,
                                                            source=f"{source}: pairs of two people of group {group}")
        ids = self._keep_calibrations(by.username, tables)
        return f"calibration {ids[0]}" + (f" with per-group calibrations {', '.join(map(str, ids[1:]))}" if ids[1:] else "")

    def _keep_calibrations(self, by: str, tables: dict[str, CalibrationTable]) -> list[int]:
        """Keep tables from labelled photographs ('' the model's, others per group) and audit them, in one transaction."""
        with self.context.audit.transaction() as session:
            made_at = utcnow()
            records = [record_calibration(session, table, "group" if group else "photographs", by, group=group,
                                          made_at=made_at) for group, table in tables.items()]
            for record in records:
                self.context.audit.record(session, by, "calibration_saved", record.model_name, {
                    "calibration_id": record.id, "scope": record.scope, "group": record.group_name,
                    "impostor_pairs": record.impostor_pairs, "source": record.source})
        return [record.id for record in records]



def _finite(distances: np.ndarray) -> np.ndarray:
    """The distances of comparisons that did not fail (finite)."""
    distances = np.asarray(distances, dtype=np.float64)
    finite = distances[np.isfinite(distances)]
    if finite.size == 0:
        raise GalleryError("no impostor comparisons to calibrate from")
    return finite
