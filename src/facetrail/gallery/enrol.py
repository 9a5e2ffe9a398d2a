"""Batch enrolment of photographs into a gallery.

Items come from a folder (one subfolder per subject), a CSV manifest
(``facetrail.gallery.manifest``) or uploads, whose bytes they hold in memory
(never written to disk in plaintext). Each image is read and hashed here;
images already enrolled or already rejected in this gallery are skipped, so a
rerun adds nothing twice and, after an interruption (even ``kill -9``),
finishes only the rest. The face work runs in worker processes, or Ray actors
across a cluster (``enrolment.ray_address``); this process alone commits the
results, in batches, each batch one transaction that also bumps the gallery's
version (``Gallery.change``). One bad image never stops the batch: its reason
is recorded and reported.
"""

from __future__ import annotations


import csv
import datetime as dt
import hashlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from facetrail.config import EngineConfig, EnrolmentConfig
from facetrail.csvcells import safe_cell
from facetrail.engine.decode import check_size, read_image_bytes
from facetrail.engine.parallel import analyse_many
from facetrail.engine.scheduling import Workforce
from facetrail.errors import FacetrailError, ImageError, WorkersLostError
from facetrail.gallery.analysis import Analysis, Photograph, Refusal, analyse
from facetrail.gallery.gallery import Gallery
from facetrail.gallery.schema import ImageRecord, RejectionRecord, SubjectRecord, TemplateRecord


@dataclass(frozen=True)
class EnrolItem:
    """One photograph to enrol and its provenance: a file, or bytes uploaded under a name."""

    path: Path
    """The file to read, or the name ``data`` was uploaded under."""
    subject_id: str
    source: str
    capture_date: dt.date | None = None
    extra: dict[str, str] = field(default_factory=dict)
    data: bytes | None = field(default=None, repr=False)
    """The uploaded photograph's bytes, held in memory; None to read the file at ``path``."""


def uploaded(file_name: str, data: bytes, subject_id: str, source: str, capture_date: dt.date | None = None) -> EnrolItem:
    """The item of a photograph uploaded as ``file_name``, its bytes held in memory."""
    return EnrolItem(Path(file_name), subject_id, source, capture_date, data=data)


@dataclass(frozen=True)
class EnrolOutcome:
    """What happened to one item: 'enrolled', 'duplicate', 'rejected' or 'previously-rejected'."""

    item: EnrolItem
    status: str
    reason: str = ""
    image_id: int | None = None
    quality: str = ""

    def to_row(self) -> dict[str, str]:
        """A row of the enrolment report CSV."""
        return {
            "path": str(self.item.path),
            "subject_id": self.item.subject_id,
            "source": self.item.source,
            "status": self.status,
            "reason": self.reason,
            "image_id": "" if self.image_id is None else str(self.image_id),
            "quality": self.quality,
        }


REPORT_COLUMNS = ("path", "subject_id", "source", "status", "reason", "image_id", "quality")


@dataclass
class EnrolSummary:
    """Counts of an enrolment run, by status, the arithmetic its templates were computed in, and who did its face work
    on a Ray cluster."""

    outcomes: list[EnrolOutcome] = field(default_factory=list)
    precisions: set[str] = field(default_factory=set)
    """The network's arithmetic over the templates this run enrolled ("int8", "float32"; both where workers differ)."""
    workforce: Workforce | None = None
    """The Ray nodes and workers at the end of the run, those lost and the photographs analysed again; None when
    the face work ran in local processes."""

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    def to_dict(self) -> dict[str, Any]:
        statuses = ("enrolled", "duplicate", "rejected", "previously-rejected")
        return {"items": len(self.outcomes), **{s: self.count(s) for s in statuses}, "precision": sorted(self.precisions)}


def items_from_folder(root: Path, source: str) -> list[EnrolItem]:
    """One item per file in each subfolder of ``root``; the subfolder's name is the subject id."""
    if not root.is_dir():
        raise FacetrailError(f"{root}: not a folder")
    items = []
    for subject_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(p for p in subject_dir.iterdir() if p.is_file() and not p.name.startswith(".")):
            items.append(EnrolItem(path, subject_dir.name, source))
    if not items:
        raise FacetrailError(f"{root}: no images found (expected one subfolder per subject)")
    return items


@dataclass
class _Pending:
    """An item whose bytes were read and found new, waiting for face analysis (of ``photograph``, in a worker)."""

    item: EnrolItem
    content_hash: str
    photograph: Photograph


# --- coordinator side ----------------------------------------------------------------


def enrolment_engine_config(engine_config: EngineConfig, rules: EnrolmentConfig) -> EngineConfig:
    """The engine configuration for gallery photographs: faces smaller than ``rules.min_face_fraction`` of the
    photo's shorter side are not looked for, HOG scans small photos unenlarged first (``rules.hog_unenlarged_first``),
    and the network runs in ``rules.precision``."""
    detection = engine_config.detection
    fraction = max(detection.min_face_fraction, rules.min_face_fraction)
    unenlarged_first = detection.hog_unenlarged_first or rules.hog_unenlarged_first
    embedding = engine_config.embedding
    if embedding.backend != "onnx" and rules.precision == "int8":
        precision = embedding.precision  # dlib computes in float32 only
    else:
        precision = rules.precision
    detection = replace(detection, min_face_fraction=fraction, hog_unenlarged_first=unenlarged_first,
                        hog_unenlarged_min_score=engine_config.quality.min_detector_score)
    return replace(engine_config, detection=detection,
                   embedding=replace(embedding, precision=precision))


def enrol(
    gallery: Gallery,
    items: Iterable[EnrolItem],
    engine_config: EngineConfig,
    rules: EnrolmentConfig,
    on_outcome: Callable[[EnrolOutcome], None] = lambda outcome: None,
    retry_rejected: bool = False,
    on_workforce: Callable[[Workforce], None] = lambda workforce: None,
) -> EnrolSummary:
    """Enrol ``items`` into ``gallery``; every item gets exactly one outcome, passed to ``on_outcome`` as it is known.
    On a Ray cluster ``on_workforce`` hears how many nodes and workers are working, at the start and after a loss."""
    summary = EnrolSummary()

    def workforce(now: Workforce) -> None:
        summary.workforce = now
        on_workforce(now)

    def report(outcome: EnrolOutcome) -> None:
        summary.outcomes.append(outcome)
        on_outcome(outcome)

    with gallery.write_lock():
        gallery.index()  # the index must match the store before this run changes it
        allowed, enrolled, rejected = _known_hashes(gallery)
        seen: set[str] = set()

        def screened() -> Iterator[_Pending]:
            for item in items:
                checked = _screen(item, allowed, enrolled, rejected, seen, retry_rejected, engine_config, rules)
                if isinstance(checked, EnrolOutcome):
                    report(checked)
                else:
                    yield checked

        waiting: deque[_Pending] = deque()  # the workers get the photographs only; results come in their order

        def photographs() -> Iterator[Photograph]:
            for entry in screened():
                waiting.append(entry)
                yield entry.photograph

        batch: list[tuple[_Pending, Analysis]] = []
        try:
            for photograph, result in analyse_many(photographs(), analyse, enrolment_engine_config(engine_config, rules),
                                                   rules.workers, rules.ray_address, workforce):
                entry = waiting.popleft()
                assert entry.photograph is photograph
                if isinstance(result, Refusal):
                    _record_rejection(gallery, entry, result.reason)
                    report(EnrolOutcome(entry.item, "rejected", result.reason))
                    continue
                batch.append((entry, result))
                summary.precisions.add(result.template.precision)
                if len(batch) >= rules.commit_every:
                    for outcome in _commit(gallery, batch):
                        report(outcome)
                    batch = []
        except WorkersLostError as exc:
            raise WorkersLostError(f"{exc}; the {summary.count('enrolled')} photograph(s) this run enrolled until then "
                                   "are stored: run the enrolment again to enrol the rest (those enrolled are "
                                   "skipped)", summary) from None
        if batch:
            for outcome in _commit(gallery, batch):
                report(outcome)
        gallery.retrain_index_if_outgrown()
    return summary


def _known_hashes(gallery: Gallery) -> tuple[set[str], dict[str, str], dict[str, str]]:
    with gallery.session() as session:
        allowed = set(gallery.record(session).allowed_sources)
        enrolled = {
            content_hash: subject
            for content_hash, subject in session.execute(
                select(ImageRecord.content_hash, SubjectRecord.external_id)
                .join(SubjectRecord, SubjectRecord.id == ImageRecord.subject_id)
                .where(ImageRecord.gallery_id == gallery.id)
            )
        }
        rejected = {
            content_hash: reason
            for content_hash, reason in session.execute(
                select(RejectionRecord.content_hash, RejectionRecord.reason).where(RejectionRecord.gallery_id == gallery.id)
            )
        }
    return allowed, enrolled, rejected


def _screen(
    item: EnrolItem,
    allowed: set[str],
    enrolled: dict[str, str],
    rejected: dict[str, str],
    seen: set[str],
    retry_rejected: bool,
    engine_config: EngineConfig,
    rules: EnrolmentConfig,
) -> EnrolOutcome | _Pending:
    """Checks that need no face work: provenance, readability, and whether the bytes are already known."""
    if item.source not in allowed:
        return EnrolOutcome(item, "rejected", f"source {item.source!r} is not allowed for this gallery (allowed: {', '.join(sorted(allowed))})")
    limits = engine_config.limits
    try:
        data = read_image_bytes(item.path, limits) if item.data is None else check_size(item.data, limits)
    except ImageError as exc:
        return EnrolOutcome(item, "rejected", str(exc))
    content_hash = hashlib.sha256(data).hexdigest()
    if content_hash in enrolled:
        return EnrolOutcome(item, "duplicate", f"already enrolled for subject {enrolled[content_hash]!r}")
    if content_hash in seen:
        return EnrolOutcome(item, "duplicate", "the same image appears earlier in this batch")
    if content_hash in rejected and not retry_rejected:
        return EnrolOutcome(item, "previously-rejected", rejected[content_hash])
    seen.add(content_hash)
    return _Pending(item, content_hash, Photograph(item.path.name, data, rules))


def _record_rejection(gallery: Gallery, entry: _Pending, reason: str) -> None:
    with gallery.session() as session:
        existing = session.scalar(
            select(RejectionRecord).where(RejectionRecord.gallery_id == gallery.id, RejectionRecord.content_hash == entry.content_hash)
        )
        if existing is None:
            session.add(RejectionRecord(gallery_id=gallery.id, content_hash=entry.content_hash, original_name=str(entry.item.path), reason=reason))
        else:
            existing.reason = reason
        session.commit()


def _commit(gallery: Gallery, batch: list[tuple[_Pending, Analysis]]) -> list[EnrolOutcome]:
    """Store one batch: photographs to blobs, then records and a version bump in one transaction, then the index
    (``Gallery.change``).

    Photographs and embeddings are stored encrypted; the index gets the plaintext vectors in memory.
    """
    for entry, _ in batch:
        gallery.blobs.put(entry.content_hash, entry.photograph.data)
    with gallery.change() as change:
        session = change.session
        subjects: dict[str, SubjectRecord] = {}
        added: list[tuple[_Pending, Analysis, TemplateRecord]] = []
        for entry, analysis in batch:
            subject = subjects.get(entry.item.subject_id) or session.scalar(
                select(SubjectRecord).where(SubjectRecord.gallery_id == gallery.id, SubjectRecord.external_id == entry.item.subject_id)
            )
            if subject is None:
                subject = SubjectRecord(gallery_id=gallery.id, external_id=entry.item.subject_id, extra={})
                session.add(subject)
            subjects[entry.item.subject_id] = subject
            image = ImageRecord(
                gallery_id=gallery.id,
                subject=subject,
                content_hash=entry.content_hash,
                original_name=str(entry.item.path),
                source=entry.item.source,
                capture_date=entry.item.capture_date,
                width=analysis.width,
                height=analysis.height,
                extra=entry.item.extra,
            )
            template = TemplateRecord(
                gallery_id=gallery.id,
                image=image,
                embedding=gallery.encrypt_template(analysis.template.embedding.tobytes(), entry.content_hash),
                model_name=analysis.template.model_name,
                model_version=analysis.template.model_version,
                augmentation=analysis.template.augmentation,
                precision=analysis.template.precision,
                face_box=analysis.detection.box.as_list(),
                detector=analysis.detection.detector,
                quality=analysis.quality.to_dict(),
            )
            session.add_all([image, template])
            added.append((entry, analysis, template))
        session.execute(
            RejectionRecord.__table__.delete().where(
                RejectionRecord.gallery_id == gallery.id,
                RejectionRecord.content_hash.in_([entry.content_hash for entry, _ in batch]),
            )
        )
        session.flush()
        ids = np.array([template.id for _, _, template in added], dtype=np.int64)
        change.add = (ids, np.stack([analysis.template.embedding for _, analysis, _ in added]))
    return [
        EnrolOutcome(entry.item, "enrolled", "", template.image_id, analysis.quality.verdict)
        for entry, analysis, template in added
    ]


def write_report(path: Path, outcomes: Iterable[EnrolOutcome]) -> None:
    """Write every outcome to a CSV report (one row per item, with its reason; formula-like text marked as text)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=REPORT_COLUMNS)
        writer.writeheader()
        for outcome in outcomes:
            writer.writerow({column: safe_cell(value) for column, value in outcome.to_row().items()})
