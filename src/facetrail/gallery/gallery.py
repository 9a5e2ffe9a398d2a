"""Galleries: authorized collections of subjects, their photographs and templates, and a vector index each.

The SQL store is the source of truth. Each gallery's vector index is a cache
saved as ``indexes/gallery-<id>-v<version>.faiss``; the gallery's ``version``
is incremented by every committed change, so an index file that does not match
the store's version (after a crash, say) is never used: it is rebuilt from the
store instead. Writers hold a per-gallery file lock.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from filelock import FileLock
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from facetrail.config import Settings
from facetrail.datadir import DataDir
from facetrail.errors import DuplicateError, FacetrailError, GalleryError, NotFoundError
from facetrail.gallery.blobs import BlobStore
from facetrail.gallery.index import FaissExactIndex, VectorIndex, set_search_threads
from facetrail.gallery.schema import GalleryRecord, ImageRecord, RejectionRecord, SubjectRecord, TemplateRecord
from facetrail.store import check_schema, create_store_engine, erase_deleted_rows, migrate, session_factory

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
SOURCE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")


@dataclass(frozen=True)
class Candidate:
    """One entry of a ranked candidate list: an investigative lead, never an identification."""

    rank: int
    subject_id: str
    """The subject's external id (e.g. booking number)."""
    image_id: int
    template_id: int
    distance: float
    """Euclidean distance between templates: lower is more alike."""


@dataclass(frozen=True)
class GalleryInfo:
    """A gallery's description and counts."""

    id: int
    name: str
    description: str
    allowed_sources: list[str]
    version: int
    subjects: int
    images: int
    templates: int
    rejections: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class RemovalReport:
    """What expunging a subject removed."""

    gallery: str
    subject_id: str
    images: int
    templates: int
    image_files: int
    index_entries: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class Galleries:
    """Every gallery in one data directory's store."""

    def __init__(self, datadir: DataDir, settings: Settings) -> None:
        self.datadir = datadir
        self.settings = settings
        self.engine = create_store_engine(datadir.database_url(settings))
        self.sessions = session_factory(self.engine)
        set_search_threads(1)  # one query at a time: faiss is slower splitting a single query across threads

    @classmethod
    def open(cls, datadir: DataDir) -> Galleries:
        """Open an initialised data directory (refuses one whose schema is out of date)."""
        galleries = cls(datadir, datadir.settings())
        check_schema(galleries.engine)
        return galleries

    @classmethod
    def initialise(cls, datadir: DataDir) -> Galleries:
        """Create the data directory if needed and bring the store's schema up to date."""
        datadir.create()
        galleries = cls(datadir, datadir.settings())
        migrate(galleries.engine)
        return galleries

    def close(self) -> None:
        self.engine.dispose()

    def create(self, name: str, allowed_sources: list[str], description: str = "") -> GalleryInfo:
        """Create a gallery accepting images only from ``allowed_sources``."""
        if not NAME_PATTERN.match(name):
            raise GalleryError(f"gallery name {name!r}: use letters, digits, '.', '_' or '-' (at most 100)")
        sources = sorted(set(allowed_sources))
        if not sources:
            raise GalleryError("a gallery needs at least one allowed source (e.g. --allowed-source booking)")
        for source in sources:
            _check_source_name(source)
            if source in self.settings.enrolment.prohibited_sources:
                raise GalleryError(
                    f"source {source!r} is prohibited for every gallery (enrolment.prohibited_sources in config.toml)"
                )
        with self.sessions() as session:
            session.add(GalleryRecord(name=name, description=description, allowed_sources=sources))
            try:
                session.commit()
            except IntegrityError:
                raise DuplicateError(f"a gallery named {name!r} already exists") from None
        return self.get(name).info()

    def get(self, name: str) -> Gallery:
        """The gallery called ``name``."""
        with self.sessions() as session:
            record = session.scalar(select(GalleryRecord).where(GalleryRecord.name == name))
            if record is None:
                raise NotFoundError(f"no gallery named {name!r}")
            return Gallery(self, record.id, record.name)

    def list(self) -> list[GalleryInfo]:
        """All galleries, by name."""
        with self.sessions() as session:
            names = session.scalars(select(GalleryRecord.name).order_by(GalleryRecord.name)).all()
        return [self.get(name).info() for name in names]


class Gallery:
    """One gallery: its records, its blobs and its vector index."""

    def __init__(self, galleries: Galleries, gallery_id: int, name: str) -> None:
        self.galleries = galleries
        self.id = gallery_id
        self.name = name
        self.blobs = BlobStore(galleries.datadir.images_dir / str(gallery_id))
        self._index: VectorIndex | None = None
        self._index_version = -1
        galleries.datadir.locks_dir.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(galleries.datadir.locks_dir / f"gallery-{gallery_id}.lock"))

    def session(self) -> Session:
        return self.galleries.sessions()

    def record(self, session: Session) -> GalleryRecord:
        return session.get_one(GalleryRecord, self.id)

    def info(self) -> GalleryInfo:
        """Description and counts."""
        with self.session() as session:
            record = self.record(session)

            def count(model) -> int:
                return session.scalar(select(func.count()).select_from(model).where(model.gallery_id == self.id))

            return GalleryInfo(
                id=record.id,
                name=record.name,
                description=record.description,
                allowed_sources=list(record.allowed_sources),
                version=record.version,
                subjects=count(SubjectRecord),
                images=count(ImageRecord),
                templates=count(TemplateRecord),
                rejections=count(RejectionRecord),
            )

    @contextmanager
    def write_lock(self) -> Iterator[None]:
        """Exclusive right to change this gallery (held across processes; re-entrant within this object)."""
        with self._lock:
            yield

    # --- search ---------------------------------------------------------------

    def search(self, embedding: np.ndarray, k: int) -> list[Candidate]:
        """The ``k`` nearest templates as a ranked candidate list (rank 1 = smallest distance)."""
        if k < 1:
            raise FacetrailError("the candidate list length k must be at least 1")
        query = np.asarray(embedding, dtype=np.float32).reshape(1, -1)
        distances, ids = self.index().search(query, k)
        found = [(int(i), float(d)) for i, d in zip(ids[0], distances[0]) if i >= 0]
        if not found:
            return []
        with self.session() as session:
            rows = session.execute(
                select(TemplateRecord.id, TemplateRecord.image_id, SubjectRecord.external_id)
                .join(ImageRecord, ImageRecord.id == TemplateRecord.image_id)
                .join(SubjectRecord, SubjectRecord.id == ImageRecord.subject_id)
                .where(TemplateRecord.id.in_([i for i, _ in found]))
            ).all()
        by_template = {row.id: row for row in rows}
        return [
            Candidate(rank, by_template[tid].external_id, by_template[tid].image_id, tid, distance)
            for rank, (tid, distance) in enumerate((f for f in found if f[0] in by_template), start=1)
        ]

    # --- index ------------------------------------------------------------------

    def index(self) -> VectorIndex:
        """The vector index matching the store's current version (loaded, or rebuilt and saved)."""
        with self.session() as session:
            version = self.record(session).version
        if self._index is not None and self._index_version == version:
            return self._index
        path = self._index_path(version)
        if path.exists():
            self._index, self._index_version = FaissExactIndex.load(path), version
            return self._index
        with self.write_lock():
            return self.rebuild_index()

    def rebuild_index(self) -> VectorIndex:
        """Rebuild the index from the store, save it, and sweep leftovers of interrupted writes. Hold the write lock."""
        with self.session() as session:
            version = self.record(session).version
            rows = session.execute(
                select(TemplateRecord.id, TemplateRecord.embedding).where(TemplateRecord.gallery_id == self.id)
            ).all()
            hashes = set(session.scalars(select(ImageRecord.content_hash).where(ImageRecord.gallery_id == self.id)))
        index = FaissExactIndex()
        if rows:
            index.add(
                np.array([r.id for r in rows], dtype=np.int64),
                np.stack([np.frombuffer(r.embedding, dtype=np.float32) for r in rows]),
            )
        for orphan in self.blobs.keys() - hashes:
            self.blobs.delete(orphan)
        self._save_index(index, version)
        return index

    def apply_to_index(self, version: int, add: tuple[np.ndarray, np.ndarray] | None = None, remove: np.ndarray | None = None) -> int:
        """Bring the index from ``version - 1`` to ``version`` with a committed change; returns the entries removed.

        Rebuilds from the store instead when the loaded index is not at ``version - 1``. Hold the write lock.
        """
        if self._index is None or self._index_version != version - 1:
            self.rebuild_index()
            return 0 if remove is None else len(remove)
        removed = 0
        if add is not None and len(add[0]):
            self._index.add(*add)
        if remove is not None and len(remove):
            removed = self._index.remove(remove)
        self._save_index(self._index, version)
        return removed

    def _index_path(self, version: int):
        return self.galleries.datadir.index_dir / f"gallery-{self.id}-v{version}.faiss"

    def _save_index(self, index: VectorIndex, version: int) -> None:
        index.save(self._index_path(version))
        for stale in self.galleries.datadir.index_dir.glob(f"gallery-{self.id}-v*.faiss"):
            if stale != self._index_path(version):
                stale.unlink(missing_ok=True)
        self._index, self._index_version = index, version

    # --- expungement --------------------------------------------------------------

    def remove_subject(self, external_id: str) -> RemovalReport:
        """Expunge a subject: its images, templates, stored photographs and index entries."""
        with self.write_lock():
            self.index()  # bring the in-memory index to the current version before changing it
            with self.session() as session:
                subject = session.scalar(
                    select(SubjectRecord).where(SubjectRecord.gallery_id == self.id, SubjectRecord.external_id == external_id)
                )
                if subject is None:
                    raise NotFoundError(f"no subject {external_id!r} in gallery {self.name!r}")
                images = session.execute(
                    select(ImageRecord.id, ImageRecord.content_hash).where(ImageRecord.subject_id == subject.id)
                ).all()
                template_ids = np.array(
                    session.scalars(select(TemplateRecord.id).where(TemplateRecord.image_id.in_([i.id for i in images]))).all(),
                    dtype=np.int64,
                )
                session.execute(delete(TemplateRecord).where(TemplateRecord.id.in_(template_ids.tolist())))
                session.execute(delete(ImageRecord).where(ImageRecord.subject_id == subject.id))
                session.delete(subject)
                record = self.record(session)
                record.version += 1
                version = record.version
                session.commit()
            files = sum(self.blobs.delete(image.content_hash) for image in images)
            removed = self.apply_to_index(version, remove=template_ids)
            erase_deleted_rows(self.galleries.engine)
        return RemovalReport(self.name, external_id, len(images), len(template_ids), files, removed)


def _check_source_name(source: str) -> None:
    if not SOURCE_PATTERN.match(source):
        raise GalleryError(f"source {source!r}: use lower-case letters, digits, '.', '_' or '-'")
