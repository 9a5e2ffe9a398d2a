"""Galleries: authorized collections of subjects, their photographs and templates, and a vector index each.

The SQL store is the source of truth. Each gallery's vector index is kept by the
backend ``index.backend`` names: in encrypted segments under
``indexes/gallery-<id>/`` (``facetrail.gallery.segments``, "faiss") or in a Milvus
collection shared by every process (``facetrail.gallery.milvus_index``, "milvus").
Either records the gallery ``version`` it holds; the version is incremented by
every committed change, and each change is applied to the index in O(change).
An index behind the store (a writer killed between its commit and its index
update) is brought to it from the difference of template ids; a missing one is
rebuilt from the store. Writers hold a per-gallery file lock.

Within one process (a server, say) each gallery is one ``Gallery`` object, so a
faiss index is loaded once and kept in memory; its index guard makes searches on
other threads see the store and the index at the same version while a writer
commits a change and applies it to the index. With Milvus a search also checks,
after searching, that no other process committed a change meanwhile.

Biometric data is encrypted at rest with the data directory's key ring
(``facetrail.crypto``): template embeddings in the store, photographs under
``images/<gallery id>/`` and index files, each bound to what it belongs to.

Why one module: ``Galleries`` and ``Gallery`` share one consistency protocol (the store's version, the index guard,
the writer's file lock, the catch-up of an index behind the store) whose reasoning must be read in one place.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from filelock import FileLock, Timeout
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from facetrail.config import Settings
from facetrail.crypto import KeyRing
from facetrail.datadir import DataDir
from facetrail.config import IndexConfig
from facetrail.errors import ConfigError, DuplicateError, FacetrailError, GalleryError, NotFoundError
from facetrail.gallery.index import SEARCH_THREADS, IndexBackend, VectorIndex, set_search_threads
from facetrail.gallery.segments import SegmentedBackend
from facetrail.gallery.schema import GalleryRecord, ImageRecord, RejectionRecord, SubjectRecord, TemplateRecord
from facetrail.storage import BlobStore
from facetrail.store import Store, erase_deleted_rows

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
SOURCE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")
SUBJECT_ID_MAX = 64
SUBJECT_ID_PATTERN = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.-]{{0,{SUBJECT_ID_MAX - 1}}}")
_REENCRYPT_BATCH = 500
_REBUILD_BATCH = 10_000
WRITER_WAIT_S = 30.0
"""How long a search waits for a writer in another process to bring the index to the store's version."""
SEARCH_ATTEMPTS = 3
"""How often a search of a shared index (Milvus) is tried when another process commits a change during it."""


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
class Hits:
    """A gallery search's ranked candidates and the gallery version they were found in."""

    version: int
    candidates: list[Candidate]


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


@dataclass(frozen=True)
class IndexState:
    """A gallery's vector index: its templates, the inverted lists its quantizers were trained for (None while it is
    searched exactly, or with Milvus, which trains its own) and whether the gallery has outgrown them."""

    templates: int
    inverted_lists: int | None
    outgrown: bool

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Retraining:
    """A retraining of a gallery's index: at which version and size, its inverted lists before and after, how long."""

    gallery: str
    version: int
    templates: int
    lists_before: int
    lists_after: int
    seconds: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Change:
    """A change to a gallery being made in ``session`` (see ``Gallery.change``): the templates it adds to the index
    as (ids, vectors), and the template ids it removes; once committed, how many index entries it removed."""

    session: Session
    add: tuple[np.ndarray, np.ndarray] | None = None
    remove: np.ndarray | None = None
    removed: int = 0


class Galleries:
    """Every gallery in one data directory's store."""

    def __init__(self, datadir: DataDir, settings: Settings, keyring: KeyRing, store: Store) -> None:
        """The galleries of ``store``, their photographs and indexes under ``datadir``, encrypted with ``keyring``
        (built by the composition root, ``facetrail.accountability.service.Facetrail``, or by ``open`` and
        ``initialise`` for the gallery layer on its own)."""
        self.datadir = datadir
        self.settings = settings
        self.keyring = keyring
        self.store = store
        self.engine = store.engine
        self.sessions = store.sessions
        self.index_backend = open_index_backend(settings.index, datadir, keyring)
        self._opened: dict[tuple[int, str], Gallery] = {}
        self._opened_lock = threading.Lock()
        delete_whole_index_files(datadir.index_dir)

    @classmethod
    def open(cls, datadir: DataDir) -> Galleries:
        """The galleries of an initialised data directory on their own (refuses one whose schema is out of date or
        whose key file is missing)."""
        settings = datadir.settings()
        set_search_threads(SEARCH_THREADS)
        return cls(datadir, settings, KeyRing.load(datadir), Store.open(datadir.database_url(settings)))

    @classmethod
    def initialise(cls, datadir: DataDir) -> Galleries:
        """Create the data directory and its data key file if needed (``KeyRing.create``), bring the store's schema
        up to date, and open its galleries."""
        datadir.create()
        settings = datadir.settings()
        keyring = KeyRing.create(datadir)
        set_search_threads(SEARCH_THREADS)
        return cls(datadir, settings, keyring, Store.open(datadir.database_url(settings), upgrade=True))

    def close(self) -> None:
        self.index_backend.close()
        self.store.close()

    def create(self, name: str, allowed_sources: list[str], description: str = "",
               session: Session | None = None) -> GalleryInfo:
        """Create a gallery accepting images only from ``allowed_sources``; in ``session``'s transaction when given
        (which its owner commits), else in one of its own."""
        if not NAME_PATTERN.fullmatch(name):  # match() would let a trailing newline through
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
        with nullcontext(session) if session is not None else self.sessions.begin() as writing:
            record = GalleryRecord(name=name, description=description, allowed_sources=sources)
            writing.add(record)
            try:
                writing.flush()
            except IntegrityError:
                raise DuplicateError(f"a gallery named {name!r} already exists") from None
            return GalleryInfo(record.id, name, description, sources, record.version, 0, 0, 0, 0)

    def get(self, name: str) -> Gallery:
        """The gallery called ``name``."""
        with self.sessions() as session:
            record = session.scalar(select(GalleryRecord).where(GalleryRecord.name == name))
            if record is None:
                raise NotFoundError(f"no gallery named {name!r}")
            key = (record.id, record.name)
        with self._opened_lock:
            if key not in self._opened:
                self._opened[key] = Gallery(self, *key)
            return self._opened[key]

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
        self.blobs = BlobStore(galleries.datadir.images_dir / str(gallery_id), galleries.keyring, f"image:{gallery_id}")
        self._index: VectorIndex | None = None
        self._subjects = (-1, 0)
        """(store version, subjects then): the count ``subject_count`` last made."""
        self._index_version = -1
        """The store version last seen by a gallery with no index (one that has never held a template)."""
        self.index_guard = threading.RLock()
        """Held, inside the write lock, from committing a change to the store until ``apply_to_index`` has brought
        the in-memory index to it, and by each search: searches never see the two at different versions."""
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

    def subject_count(self) -> int:
        """Subjects in the gallery now: the people a search's candidates could come from (counted once per version)."""
        with self.session() as session:
            version = self.record(session).version
            if self._subjects[0] != version:
                count = session.scalar(select(func.count()).select_from(SubjectRecord).where(SubjectRecord.gallery_id == self.id))
                self._subjects = (version, count)
        return self._subjects[1]

    @contextmanager
    def write_lock(self) -> Iterator[None]:
        """Exclusive right to change this gallery (held across processes; re-entrant within this object)."""
        with self._lock:
            yield

    # --- templates ---------------------------------------------------------------

    def encrypt_template(self, embedding: bytes, content_hash: str) -> bytes:
        """A template's embedding (float32 bytes) encrypted for storage, bound to this gallery and its image."""
        return self.galleries.keyring.encrypt(embedding, self._template_context(content_hash))

    def template_vector(self, record: TemplateRecord) -> np.ndarray:
        """The decrypted embedding of a stored template (``record.image`` is loaded, so keep its session open)."""
        return self._decrypt_template(record.embedding, record.image.content_hash)

    def _decrypt_template(self, embedding: bytes, content_hash: str) -> np.ndarray:
        return np.frombuffer(self.galleries.keyring.decrypt(embedding, self._template_context(content_hash)), dtype=np.float32)

    def _template_context(self, content_hash: str) -> bytes:
        return f"template:{self.id}:{content_hash}".encode()

    def _template_rows(self):
        """Select (id, embedding, content_hash) of this gallery's templates, by id."""
        return (
            select(TemplateRecord.id, TemplateRecord.embedding, ImageRecord.content_hash)
            .join(ImageRecord, ImageRecord.id == TemplateRecord.image_id)
            .where(TemplateRecord.gallery_id == self.id)
            .order_by(TemplateRecord.id)
        )

    # --- search ---------------------------------------------------------------

    def search(self, embedding: np.ndarray, k: int, exact: bool = False) -> Hits:
        """The ``k`` nearest templates as a ranked candidate list (rank 1 = smallest distance), with the version
        searched. ``exact`` (the audit mode) scans every template even in a compressed index (seconds at 1M)."""
        if k < 1:
            raise FacetrailError("the candidate list length k must be at least 1")
        query = np.asarray(embedding, dtype=np.float32).reshape(1, -1)
        for attempt in range(SEARCH_ATTEMPTS):
            with self.index_guard:
                index = self.index()
                if index is None:
                    return Hits(self._index_version, [])
                version = index.version
                distances, ids = index.search(query, k, exact=exact)
            # a shared index may have changed under the search: it searched ``version`` only if the store is still there
            if not self.galleries.index_backend.shared or self._store_version() == version:
                break
        else:
            raise GalleryError(f"gallery {self.name!r} changed during each of {SEARCH_ATTEMPTS} searches; try again")
        found = [(int(i), float(d)) for i, d in zip(ids[0], distances[0]) if i >= 0]
        if not found:
            return Hits(version, [])
        with self.session() as session:
            rows = session.execute(
                select(TemplateRecord.id, TemplateRecord.image_id, SubjectRecord.external_id)
                .join(ImageRecord, ImageRecord.id == TemplateRecord.image_id)
                .join(SubjectRecord, SubjectRecord.id == ImageRecord.subject_id)
                .where(TemplateRecord.id.in_([i for i, _ in found]))
            ).all()
        by_template = {row.id: row for row in rows}
        return Hits(version, [
            Candidate(rank, by_template[tid].external_id, by_template[tid].image_id, tid, distance)
            for rank, (tid, distance) in enumerate((f for f in found if f[0] in by_template), start=1)
        ])

    # --- index ------------------------------------------------------------------

    def index(self) -> VectorIndex | None:
        """The vector index at the store's current version (None while the gallery has never held a template).

        The one in memory, brought up to date from its segments if another process changed them; else loaded from
        its segments; else, holding the write lock when no writer is at work, brought to the store from the
        difference of template ids (a writer was killed between its commit and its index update) or rebuilt from
        the store (the index folder is missing). While a writer in another process is at work, waits up to
        ``WRITER_WAIT_S`` for it to bring the index to the store's version. A damaged index raises IndexFileError.
        """
        with self.index_guard:
            deadline = time.monotonic() + WRITER_WAIT_S
            while True:
                version = self._store_version()
                if self._index is None and self._index_version == version:
                    return None
                if self._index is None:
                    self._index = self._backend().open(self.id)
                elif self._index.version != version:
                    self._index.refresh()
                if self._index is not None and self._index.version == version:
                    return self._index
                try:
                    with self._lock.acquire(timeout=0):
                        return self._bring_index_to_store()
                except Timeout:
                    if self._index is None and not self._stored_template_count():
                        self._index_version = version  # nothing to index yet: a first enrolment is at work
                        return None
                    if time.monotonic() > deadline:
                        raise GalleryError(
                            f"gallery {self.name!r}: the index is not at the store's version {version} and the writer at "
                            f"work has not brought it there in {WRITER_WAIT_S:.0f} s; try again"
                        ) from None
                    time.sleep(0.02)

    def rebuild_index(self) -> VectorIndex | None:
        """Rebuild the index from the store (new segments, encrypted with the active key), and sweep leftovers of
        interrupted writes. Hold the write lock."""
        if self._index is not None:
            self._index.close()
        self._index = None
        self._backend().drop(self.id)
        return self._bring_index_to_store()

    def _bring_index_to_store(self) -> VectorIndex | None:
        """Apply to the index (creating it if missing) the difference between its template ids and the store's, at
        the store's version; sweep photographs left by interrupted writes. Hold the write lock."""
        with self.session() as session:
            version = self.record(session).version
            stored = np.array(session.scalars(
                select(TemplateRecord.id).where(TemplateRecord.gallery_id == self.id).order_by(TemplateRecord.id)
            ).all(), dtype=np.int64)
            hashes = set(session.scalars(select(ImageRecord.content_hash).where(ImageRecord.gallery_id == self.id)))
        for orphan in self.blobs.keys() - hashes:
            self.blobs.delete(orphan)
        index = self._index
        rebuilt = index is None
        held = index.ids() if index is not None else np.empty(0, dtype=np.int64)
        missing = np.setdiff1d(stored, held)
        if index is None:
            if not len(missing):
                self._index_version = version
                return None
            dimension = len(self._stored_vectors(missing[:1])[1][0])
            index = self._backend().create(self.id, dimension, version)
            self._index = index
        # large rebuilds are applied in steps, to bound memory; a step interrupted is picked up by the id difference
        steps = [missing[start : start + _REBUILD_BATCH] for start in range(0, len(missing), _REBUILD_BATCH)] or [missing]
        for step in steps[:-1]:
            index.apply(index.version, add=self._stored_vectors(step))
        index.apply(version, add=self._stored_vectors(steps[-1]), remove=np.setdiff1d(held, stored))
        if rebuilt:  # its quantizers were trained at index.compress_at: whatever index.retrain, a rebuild retrains
            self._retrain(force=False)
        else:
            self.retrain_index_if_outgrown()
        return self._index

    def _stored_vectors(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ids, decrypted embeddings) of these stored templates, by id."""
        with self.session() as session:
            rows = session.execute(self._template_rows().where(TemplateRecord.id.in_(ids.tolist()))).all()
        vectors = [self._decrypt_template(r.embedding, r.content_hash) for r in rows]
        return np.array([r.id for r in rows], dtype=np.int64), np.stack(vectors) if vectors else np.empty((0, 0), np.float32)

    def subject_templates(self, batch: int = 50_000) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """Every stored template of this gallery, decrypted: (template ids, subject record ids, embeddings as an
        n×d float32 array, the store version read), by template id. Memory: 4·d bytes a template (512 MB at 1M)."""
        rows = (select(TemplateRecord.id, ImageRecord.subject_id, TemplateRecord.embedding, ImageRecord.content_hash)
                .join(ImageRecord, ImageRecord.id == TemplateRecord.image_id)
                .where(TemplateRecord.gallery_id == self.id).order_by(TemplateRecord.id))
        ids, subjects, vectors = [], [], []
        with self.session() as session:
            version = self.record(session).version
            for part in session.execute(rows.execution_options(yield_per=batch)).partitions():
                ids.extend(r.id for r in part)
                subjects.extend(r.subject_id for r in part)
                vectors.extend(self._decrypt_template(r.embedding, r.content_hash) for r in part)
        embeddings = np.stack(vectors) if vectors else np.empty((0, 0), np.float32)
        return np.array(ids, dtype=np.int64), np.array(subjects, dtype=np.int64), embeddings, version

    def apply_to_index(self, version: int, add: tuple[np.ndarray, np.ndarray] | None = None, remove: np.ndarray | None = None) -> int:
        """Bring the index from ``version - 1`` to ``version`` with a committed change; returns the entries removed.

        Brings it to the store from the difference of ids instead when the loaded index is not at ``version - 1``.
        Hold the write lock and the index guard (taken before the change was committed).
        """
        if self._index is None and add is not None and len(add[0]):
            self._index = self._backend().create(self.id, np.asarray(add[1]).shape[1], version - 1)
        if self._index is None or self._index.version != version - 1:
            self._bring_index_to_store()
            return 0 if remove is None else len(remove)
        return self._index.apply(version, add, remove)

    def index_state(self) -> IndexState | None:
        """The index at the store's version (see ``index``): its size, lists and whether the gallery has outgrown them;
        None while the gallery has never held a template."""
        index = self.index()
        return None if index is None else IndexState(len(index), index.inverted_lists, index.outgrown)

    def retrain_index(self, force: bool = False, before: Callable[[IndexState], None] = lambda state: None) -> Retraining:
        """Retrain the index's quantizers for the gallery's size now (see ``_retrain``): when it has outgrown them, or,
        ``force``, whenever it has some; else GalleryError saying why not.  ``before`` is called with the index's
        state, holding the write lock, once the retraining is sure to start (to audit it).  Takes the write lock."""
        with self.write_lock():
            index = self.index()
            if index is not None:
                with self.index_guard:
                    index.refresh()  # another process may have retrained it at this version: a full load
            problem = self._nothing_to_retrain(force)
            if problem:
                raise GalleryError(f"gallery {self.name!r}: {problem}")
            before(IndexState(len(self._index), self._index.inverted_lists, self._index.outgrown))
            return self._retrain(force)

    def _nothing_to_retrain(self, force: bool) -> str:
        """Why the index (at the store's version) has nothing to retrain, or "" when it has."""
        index = self._index
        if index is None:
            return "it holds no templates, so it has no index"
        if self.galleries.settings.index.backend == "milvus":
            return "Milvus trains its own indexes (index.backend)"
        if index.inverted_lists is None:
            return (f"its {len(index):,} templates are searched exactly (below index.compress_at, "
                    f"{self.galleries.settings.index.compress_at:,}): there are no quantizers to retrain")
        if not force and not index.outgrown:
            return (f"its {index.inverted_lists:,} inverted lists still suit its {len(index):,} templates (outgrown when its "
                    f"size calls for {2 * index.inverted_lists:,}); force retrains them anyway")
        return ""

    def retrain_index_if_outgrown(self) -> None:
        """After an enrolment (or a catch-up with the store): retrain the index now if the gallery has outgrown it and
        ``index.retrain`` is "after_enrolment" (else the server's quiet hour or ``facetrail index retrain`` does it).
        Hold the write lock."""
        if self.galleries.settings.index.retrain == "after_enrolment":
            self._retrain(force=False)

    def _retrain(self, force: bool) -> Retraining | None:
        """Retrain the index's quantizers (the vector index's ``retrained``), or None when it returns none: the new
        files are written at the same version while searches go on with the index in memory, which is then swapped
        for the retrained one.  Takes minutes at millions of templates, a few times in a gallery's life.  Hold the
        write lock, with the index at the store's version."""
        index = self._index
        began = time.perf_counter()
        retrained = index.retrained(force) if index is not None else None
        if retrained is None:
            return None
        with self.index_guard:
            self._index = retrained
        lists_before = index.inverted_lists
        index.close()
        return Retraining(self.name, retrained.version, len(retrained), lists_before, retrained.inverted_lists,
                          round(time.perf_counter() - began, 1))

    def _store_version(self) -> int:
        with self.session() as session:
            return self.record(session).version

    def _stored_template_count(self) -> int:
        with self.session() as session:
            return session.scalar(select(func.count()).select_from(TemplateRecord).where(TemplateRecord.gallery_id == self.id))

    def _backend(self) -> IndexBackend:
        return self.galleries.index_backend

    @contextmanager
    def change(self, transaction: Callable[[], AbstractContextManager[Session]] | None = None) -> Iterator[Change]:
        """Change this gallery: the block changes its rows in the session of the ``Change`` it is given (from
        ``transaction``, default a plain one) and names the templates it adds or removes; then the gallery's version
        is bumped in the same transaction, which commits, and the index is brought to the new version.

        The index guard is held from the commit until the index has the change. Hold the write lock, with the index
        at the store's version (``index()``).
        """
        with ExitStack() as guarded:
            with (transaction or self._transaction)() as session:
                change = Change(session)
                yield change
                record = self.record(session)
                record.version += 1
                version = record.version
                guarded.enter_context(self.index_guard)
            change.removed = self.apply_to_index(version, add=change.add, remove=change.remove)

    # --- key rotation ----------------------------------------------------------------

    def reencrypt(self) -> tuple[int, int]:
        """Re-encrypt this gallery's templates and photographs with the active data key and rewrite its index (when
        the index backend encrypts with the data key: the faiss backend's segment files; Milvus's is only checked).

        Returns (templates, photographs) re-encrypted; what the active key already encrypts is left as it is,
        so a run after an interruption only does the rest. Part of ``facetrail.accountability.keys.rotate_data_key``.
        """
        with self.write_lock():
            templates = self._reencrypt_templates()
            # both also sweep orphaned photographs, which need no re-encryption
            if self._backend().uses_data_key:
                self.rebuild_index()
            else:
                self._bring_index_to_store()
            photographs = sum(self.blobs.reencrypt(key) for key in sorted(self.blobs.keys()))
        return templates, photographs

    def _reencrypt_templates(self) -> int:
        """Re-encrypt stored embeddings in batches, one transaction each; returns how many were rewritten."""
        keyring, rewritten, last_id = self.galleries.keyring, 0, -1
        while True:
            with self.session() as session:
                rows = session.execute(self._template_rows().where(TemplateRecord.id > last_id).limit(_REENCRYPT_BATCH)).all()
                if not rows:
                    return rewritten
                for row in rows:
                    sealed = keyring.reencrypt(row.embedding, self._template_context(row.content_hash))
                    if sealed is not None:
                        session.execute(update(TemplateRecord).where(TemplateRecord.id == row.id).values(embedding=sealed))
                        rewritten += 1
                session.commit()
                last_id = rows[-1].id

    # --- expungement --------------------------------------------------------------

    def remove_subject(self, external_id: str, transaction: Callable[[], AbstractContextManager[Session]] | None = None,
                       before_commit: Callable[[Session, RemovalReport], None] | None = None) -> RemovalReport:
        """Expunge a subject: its images, templates, stored photographs and index entries.

        The rows are deleted in a session from ``transaction`` (default: a plain one), which commits when it ends;
        ``before_commit`` is called in it with what will be removed (to audit the change in the same transaction: if
        it raises, nothing is removed). The stored photographs and index entries go once the deletion is committed.
        """
        with self.write_lock():
            self.index()  # bring the in-memory index to the current version before changing it
            with self.change(transaction) as change:
                session = change.session
                subject = session.scalar(
                    select(SubjectRecord).where(SubjectRecord.gallery_id == self.id, SubjectRecord.external_id == external_id)
                )
                if subject is None:
                    raise NotFoundError(f"no subject {external_id!r} in gallery {self.name!r}")
                images = session.execute(
                    select(ImageRecord.id, ImageRecord.content_hash).where(ImageRecord.subject_id == subject.id)
                ).all()
                change.remove = np.array(
                    session.scalars(select(TemplateRecord.id).where(TemplateRecord.image_id.in_([i.id for i in images]))).all(),
                    dtype=np.int64,
                )
                session.execute(delete(TemplateRecord).where(TemplateRecord.id.in_(change.remove.tolist())))
                session.execute(delete(ImageRecord).where(ImageRecord.subject_id == subject.id))
                session.delete(subject)
                if before_commit is not None:
                    session.flush()
                    before_commit(session, RemovalReport(self.name, external_id, len(images), len(change.remove),
                                                         len(images), len(change.remove)))
            files = sum(self.blobs.delete(image.content_hash) for image in images)
            erase_deleted_rows(self.galleries.engine)
        return RemovalReport(self.name, external_id, len(images), len(change.remove), files, change.removed)

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        """A session whose transaction commits when the block ends (rolls back on an exception)."""
        with self.session() as session, session.begin():
            yield session


def check_subject_id(subject_id: str) -> str:
    """A subject's external id (a booking number, say) as enrolment accepts it: 1 to SUBJECT_ID_MAX letters, digits,
    '.', '_' or '-', starting with a letter or digit; otherwise GalleryError naming the problem."""
    if not isinstance(subject_id, str) or not SUBJECT_ID_PATTERN.fullmatch(subject_id):
        shown = subject_id if len(subject_id) <= 80 else subject_id[:80] + f"... ({len(subject_id)} characters)"
        raise GalleryError(f"subject id {shown!r}: use 1 to {SUBJECT_ID_MAX} letters, digits, '.', '_' or '-', "
                           "starting with a letter or digit")
    return subject_id


def delete_whole_index_files(index_dir: Path) -> None:
    """Delete the whole-index files (``gallery-<id>-v<version>.faiss``) of the index format before segments: done
    once when the galleries are opened, since nothing writes them any more."""
    for legacy in index_dir.glob("gallery-*-v*.faiss"):
        legacy.unlink()


def open_index_backend(config: IndexConfig, datadir: DataDir, keyring: KeyRing) -> IndexBackend:
    """The index backend ``index.backend`` names (Milvus connects on first use)."""
    if config.backend == "milvus":
        try:
            from facetrail.gallery.milvus_index import MilvusBackend
        except ModuleNotFoundError as exc:
            raise ConfigError(f'index.backend = "milvus" needs the {exc.name} package: pip install "facetrail[milvus]"') from None
        return MilvusBackend(config, datadir.root)
    return SegmentedBackend(datadir.index_dir, keyring, config)


def _check_source_name(source: str) -> None:
    if not SOURCE_PATTERN.fullmatch(source):
        raise GalleryError(f"source {source!r}: use lower-case letters, digits, '.', '_' or '-'")
