"""Calibrations kept in the store, and a gallery's own calibration from its subjects.

With one photograph per person, any two subjects of a booking gallery are different people, so their distances are
impostor pairs of exactly the population searched: ``calibrate_gallery`` samples up to ``calibration.pairs`` of
them (10⁸ resolves false-match rates of 1e-7) in disjoint blocks, by matrix products, and leaves out pairs closer
than ``calibration.duplicate_distance``, likely one person under two ids (``facetrail gallery duplicates`` lists
them). Calibration records are never changed: the latest of each kind is in force (``in_force``), and a search
records the ones it used, so what a search showed can be told again later (``calibration_set``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from dataclasses import dataclass

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from facetrail.config import CalibrationConfig
from facetrail.engine.calibration import CalibrationSet, CalibrationTable
from facetrail.errors import FacetrailError
from facetrail.gallery.gallery import Gallery
from facetrail.gallery.schema import CalibrationRecord
from facetrail.store import utcnow

SCOPES = ("photographs", "gallery", "group")
"""What a calibration was made from: labelled photographs (a model's), a gallery's own subjects, one group's pairs."""
BLOCK_DISTANCES = 16_000_000
"""Distances computed per matrix product batch (64 MB of float32)."""


@dataclass(frozen=True)
class GalleryCalibration:
    """A gallery's own impostor distances, sampled: what ``calibrate_gallery`` found."""

    distances: np.ndarray
    subjects: int
    """Subjects with a template, one photograph each."""
    excluded_pairs: int
    """Sampled pairs closer than the duplicate distance, left out."""
    all_pairs: bool
    """Whether every pair of subjects was compared (a small gallery) rather than a sample."""
    version: int
    """The gallery's store version read."""

    def source(self, gallery: str, seed: int) -> str:
        """What the table rests on, in words."""
        how = "every pair" if self.all_pairs else f"a sample (seed {seed}) of the pairs"
        excluded = (f"; {self.excluded_pairs:,} pairs closer than the duplicate distance left out as likely one person "
                    "under two ids" if self.excluded_pairs else "")
        return (f"gallery {gallery} (version {self.version}): {self.distances.size:,} impostor pairs, {how} of its "
                f"{self.subjects:,} subjects, one photograph each{excluded}")


def calibrate_gallery(gallery: Gallery, config: CalibrationConfig) -> GalleryCalibration:
    """Impostor distances between different subjects of ``gallery`` (one photograph each, chosen at random): every
    pair when there are no more than twice ``config.pairs``, else ``config.pairs`` of them in disjoint random blocks;
    pairs closer than ``config.duplicate_distance`` are counted and left out."""
    _, subjects, vectors, version = gallery.subject_templates()
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(len(subjects))
    _, first = np.unique(subjects[order], return_index=True)
    people = vectors[order[first]]
    m = len(people)
    if m < 2:
        raise FacetrailError(f"gallery {gallery.name!r} has {m} subject(s) with a template: calibration needs pairs of different people")
    all_pairs = m * (m - 1) // 2 <= 2 * config.pairs
    distances = _all_pair_distances(people) if all_pairs else _sampled_distances(people, config.pairs, rng)
    kept = distances[distances >= config.duplicate_distance]
    return GalleryCalibration(kept, m, int(distances.size - kept.size), all_pairs, version)


def _all_pair_distances(vectors: np.ndarray) -> np.ndarray:
    """Distances of every pair i < j, in row blocks."""
    m = len(vectors)
    norms = np.einsum("ij,ij->i", vectors, vectors)
    rows = max(1, BLOCK_DISTANCES // m)
    parts = []
    for start in range(0, m - 1, rows):
        block = vectors[start : start + rows]
        squared = norms[start : start + rows, None] + norms[None, :] - 2 * block @ vectors.T
        upper = np.arange(m)[None, :] > np.arange(start, start + len(block))[:, None]
        parts.append(np.sqrt(np.maximum(squared[upper], 0)))
    return np.concatenate(parts).astype(np.float32)


def _sampled_distances(vectors: np.ndarray, pairs: int, rng: np.random.Generator) -> np.ndarray:
    """``pairs`` distances between different rows: each round splits a random permutation into pairs of disjoint
    blocks of ``side`` rows and compares each block with its partner (side² pairs a block, by one matrix product)."""
    m = len(vectors)
    side = max(1, min(math.ceil(2 * pairs / m), m // 2))
    blocks = m // (2 * side)
    per_batch = max(1, BLOCK_DISTANCES // (side * side))
    out = np.empty(pairs, dtype=np.float32)
    filled = 0
    while filled < pairs:
        order = rng.permutation(m)[: 2 * blocks * side].reshape(2, blocks, side)
        for start in range(0, blocks, per_batch):
            left, right = vectors[order[0, start : start + per_batch]], vectors[order[1, start : start + per_batch]]
            squared = (np.einsum("bij,bij->bi", left, left)[:, :, None] + np.einsum("bij,bij->bi", right, right)[:, None, :]
                       - 2 * left @ right.transpose(0, 2, 1))
            found = np.sqrt(np.maximum(squared, 0)).ravel()[: pairs - filled]
            out[filled : filled + found.size] = found
            filled += found.size
            if filled == pairs:
                break
    return out


def record_calibration(session: Session, table: CalibrationTable, scope: str, created_by: str, *,
                       gallery: Gallery | None = None, group: str = "", subjects: int | None = None,
                       excluded_pairs: int = 0, made_at: dt.datetime | None = None) -> CalibrationRecord:
    """Keep ``table`` as a calibration of ``scope`` (in ``session``'s transaction, which audits it); the per-group
    calibrations of one evaluation share ``made_at``, which makes them one set."""
    if scope not in SCOPES:
        raise ValueError(f"calibration scope must be one of {SCOPES}, got {scope!r}")
    data = table.to_json()
    record = CalibrationRecord(
        model_name=table.model, scope=scope, gallery_id=gallery.id if gallery else None,
        gallery_name=gallery.name if gallery else "", group_name=group, impostor_pairs=table.impostor_count,
        subjects=subjects, excluded_pairs=excluded_pairs, source=table.source, table=data, created_by=created_by,
        table_sha256=hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest(), created_at=made_at or utcnow())
    session.add(record)
    session.flush()
    return record


@dataclass(frozen=True)
class CalibrationInForce:
    """The calibrations a search uses: ``base_id`` (the gallery's own, else the model's from photographs) and
    ``group_ids``, with their tables."""

    base_id: int
    group_ids: tuple[int, ...]
    tables: CalibrationSet


def subjects_at_last_calibration(session: Session, gallery: Gallery) -> int | None:
    """The subjects the gallery's latest own calibration compared; None when it has none."""
    return session.scalar(select(CalibrationRecord.subjects).where(
        CalibrationRecord.scope == "gallery", CalibrationRecord.gallery_id == gallery.id).order_by(
        CalibrationRecord.created_at.desc(), CalibrationRecord.id.desc()).limit(1))


def in_force(session: Session, model: str, gallery_id: int | None) -> CalibrationInForce | None:
    """The calibrations in force for searches of ``gallery_id`` (None: a 1:1 comparison) with ``model``: the latest
    of the gallery's own, else the latest from photographs; with the latest per-group set. None when uncalibrated."""
    latest = select(CalibrationRecord.id).where(CalibrationRecord.model_name == model).order_by(
        CalibrationRecord.created_at.desc(), CalibrationRecord.id.desc()).limit(1)
    base = None
    if gallery_id is not None:
        base = session.scalar(latest.where(CalibrationRecord.scope == "gallery", CalibrationRecord.gallery_id == gallery_id))
    base = base or session.scalar(latest.where(CalibrationRecord.scope == "photographs"))
    if base is None:
        return None
    newest_groups = session.scalar(select(func.max(CalibrationRecord.created_at)).where(
        CalibrationRecord.model_name == model, CalibrationRecord.scope == "group"))
    groups = tuple(session.scalars(select(CalibrationRecord.id).where(
        CalibrationRecord.model_name == model, CalibrationRecord.scope == "group",
        CalibrationRecord.created_at == newest_groups).order_by(CalibrationRecord.id))) if newest_groups else ()
    return CalibrationInForce(base, groups, calibration_set(session, base, groups))


_TABLES: dict[str, CalibrationTable] = {}
"""Tables read, by the SHA-256 of their contents (records never change, and contents name them across stores)."""


def calibration_set(session: Session, base_id: int, group_ids: tuple[int, ...] | list[int] = ()) -> CalibrationSet:
    """The tables of recorded calibrations (a search's), read once per process."""
    ids = [base_id, *group_ids]
    rows = {r.id: r for r in session.execute(select(CalibrationRecord.id, CalibrationRecord.table_sha256,
                                                    CalibrationRecord.group_name).where(CalibrationRecord.id.in_(ids)))}
    missing = [i for i in ids if i in rows and rows[i].table_sha256 not in _TABLES]
    for record in session.scalars(select(CalibrationRecord).where(CalibrationRecord.id.in_(missing))):
        _TABLES[record.table_sha256] = CalibrationTable.from_json(record.table)
    if base_id not in rows:
        raise FacetrailError(f"calibration {base_id} is not in the store")
    return CalibrationSet(_TABLES[rows[base_id].table_sha256],
                          {rows[i].group_name: _TABLES[rows[i].table_sha256] for i in group_ids if i in rows})
