"""A gallery's vector index on disk: encrypted, immutable segment files named by a manifest.

Layout of ``DATA/indexes/gallery-<id>/``::

    MANIFEST           encrypted JSON: the gallery version held, the segments in order, the trained quantizer
    seg-<n>.bin        header | encrypted codes section (ids, IVF+SQ8 codes) | one encrypted float32 template
                       per fixed-size slot (the re-rank store, read by position at search time)
    quantizer-<n>.bin  encrypted faiss serialization of the trained, empty IVF + SQ8 quantizers

A change (``SegmentedIndex.apply``) writes new files only, then replaces ``MANIFEST`` atomically (the commit
point), then deletes the files it no longer names; memory is then brought to the manifest
(``refresh``, the same path a process uses to follow another process's changes).  A ``kill -9`` anywhere leaves
the previous or the new manifest, both naming complete files; files named by neither are swept by the next writer.

Cost per change: an enrolment batch writes one new segment (O(batch)); the last segments are merged eight at a time
while their sizes are alike (each template is rewritten O(log n) times in all, slots copied without re-encryption);
an expungement rewrites only the segments holding the removed templates (at most ``segment_templates`` each) and
removes them from memory.  The quantizers are trained on the gallery's own templates when the gallery reaches
``index.compress_at`` (below that it is searched exactly with every float32 template in memory), and retrained by
``retrained`` (at the same version, without holding up searches; ``index.retrain`` chooses when) when it has
outgrown them.  In memory, where each template's slot is is kept by ``facetrail.gallery.idmap.IdMap``: a commit
costs O(change) there too.

Encryption (``facetrail.crypto``): each slot is bound to its template id (``index-vector:<gallery>:<id>``), each
codes section to its file name and header, the manifest and the quantizer file to the gallery.

Why one module: the file layout, the manifest that commits it and the in-memory index that follows it are one
format; its crash-safety argument (above) has to be read, and kept true, in one place.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import struct
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facetrail.config import IndexConfig
from facetrail.crypto import KeyRing, sealed_size
from facetrail.errors import CryptoError, IndexFileError
from facetrail.storage import write_atomically
from facetrail.gallery.idmap import IdMap
from facetrail.gallery.index import (TRAINING_SAMPLE, CompressedIndex, ExactScan, FaissExactIndex, SearchDepth, _as_float_rows,
                                    _as_ids, _positive_int, _sample, checked_addition, choose_nlist)

MANIFEST_NAME = "MANIFEST"
MANIFEST_FORMAT = "facetrail.index.v1"
_MAGIC = b"FTSEG001"
_HEADER = struct.Struct("<8sIIIQ")  # magic, dimension, templates, code size, length of the sealed codes section
_MERGE_FANOUT = 8
_OPEN_RETRIES = 5
_EXACT_SCAN_SLOTS = 65_536


@dataclass
class _Segment:
    """An open segment file (its templates' locations are in the index's id map)."""

    serial: int
    path: Path
    fd: int
    templates: int
    code_size: int
    slots_at: int
    """File offset of the first slot."""


@dataclass(frozen=True)
class _Manifest:
    version: int
    dimension: int
    segments: tuple[int, ...]
    quantizer: int | None
    next_serial: int


class SegmentedIndex:
    """A gallery's vector index: in memory for searching, in encrypted segment files for restarts.

    ``version`` is the gallery version whose templates it holds.  Writers (one at a time: the caller holds the
    gallery's write lock) call :meth:`apply`; other processes call :meth:`refresh` to follow.  Searches may run
    on other threads except during ``apply``/``refresh`` (the gallery's index guard serialises them).
    """

    def __init__(self, root: Path, keyring: KeyRing, gallery_id: int, config: IndexConfig, manifest: _Manifest) -> None:
        """Use :meth:`open` or :meth:`create`."""
        self.root = root
        self.keyring = keyring
        self.gallery_id = gallery_id
        self.config = config
        self.dimension = manifest.dimension
        self._slot_size = sealed_size(4 * self.dimension)
        self._segments: dict[int, _Segment] = {}
        self._load(manifest)

    def _load(self, manifest: _Manifest) -> None:
        """Set memory to ``manifest`` from scratch: a searcher of the right kind, then every segment."""
        self.close()
        self._manifest = _Manifest(-1, manifest.dimension, (), manifest.quantizer, manifest.next_serial)
        self._map = IdMap()
        """Where each template's float32 slot is (segment serial, slot)."""
        self._searcher: FaissExactIndex | CompressedIndex = (
            self._load_quantizer(manifest.quantizer) if manifest.quantizer is not None else FaissExactIndex(self.dimension)
        )
        self._adopt(manifest)

    # --- opening ------------------------------------------------------------------------

    @classmethod
    def open(cls, root: Path, keyring: KeyRing, gallery_id: int, config: IndexConfig) -> SegmentedIndex | None:
        """The index saved under ``root``, or None when there is none; IndexFileError if it is damaged."""
        for attempt in range(_OPEN_RETRIES):
            manifest = _read_manifest(root, keyring, gallery_id)
            if manifest is None:
                return None
            try:
                return cls(root, keyring, gallery_id, config, manifest)
            except FileNotFoundError:
                if attempt == _OPEN_RETRIES - 1:  # a writer replaced the files named by the manifest just read
                    raise
                time.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    @classmethod
    def create(cls, root: Path, keyring: KeyRing, gallery_id: int, config: IndexConfig, dimension: int,
               version: int) -> SegmentedIndex:
        """A new, empty index at ``version``, replacing whatever ``root`` held (hold the gallery's write lock)."""
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        manifest = _Manifest(version, dimension, (), None, 1)
        _write_manifest(root, keyring, gallery_id, manifest)
        return cls(root, keyring, gallery_id, config, manifest)

    def close(self) -> None:
        """Close the segment files."""
        for segment in self._segments.values():
            os.close(segment.fd)
        self._segments.clear()

    # --- reading ------------------------------------------------------------------------

    @property
    def version(self) -> int:
        return self._manifest.version

    @property
    def compressed(self) -> bool:
        """True once the quantizers are trained (IVF + SQ8 in memory, float32 on disk)."""
        return isinstance(self._searcher, CompressedIndex)

    @property
    def inverted_lists(self) -> int | None:
        """Inverted lists of the trained quantizers; None while the index is exact."""
        return self._searcher.nlist if isinstance(self._searcher, CompressedIndex) else None

    @property
    def outgrown(self) -> bool:
        """True when the gallery has outgrown the trained quantizers (``CompressedIndex.outgrown``)."""
        return isinstance(self._searcher, CompressedIndex) and self._searcher.outgrown(len(self))

    def __len__(self) -> int:
        return len(self._map)

    def ids(self) -> np.ndarray:
        """All template ids present, ascending."""
        return self._map.ids()

    def segment_paths(self) -> list[Path]:
        """The segment files in use, in manifest order."""
        return [self._segments[s].path for s in self._manifest.segments]

    def search(self, queries: np.ndarray, k: int, exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(distances, ids), each (nq, k), nearest first, padded with +inf / -1.

        Distances are exact either way; ``exact`` (the audit mode) also makes the candidate set exact by scanning
        every float32 template on disk, which takes seconds at a million templates.
        """
        if exact and self.compressed:
            return self._scan(_as_float_rows(queries, self.dimension, "queries"), _positive_int(k, "k"))
        return self._searcher.search(queries, k)

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The float32 templates of ``ids`` (all present), read from their segments' slots and decrypted."""
        ids = _as_ids(ids)
        serials, slots, present = self._map.locate(ids)
        if not present.all():
            raise KeyError("asked for the template of an id that is not in the index")
        out = np.empty((len(ids), self.dimension), dtype=np.float32)
        for row, (template_id, serial, slot) in enumerate(zip(ids.tolist(), serials.tolist(), slots.tolist())):
            segment = self._segments[serial]
            offset = segment.slots_at + slot * self._slot_size
            out[row] = self._open_slot(os.pread(segment.fd, self._slot_size, offset), template_id, segment)
        return out

    # --- writing ------------------------------------------------------------------------

    def apply(self, version: int, add: tuple[np.ndarray, np.ndarray] | None = None, remove: np.ndarray | None = None) -> int:
        """Make a committed change durable and hold ``version``; returns how many of ``remove`` were present.

        ``add`` is (ids, vectors) of new templates (an id already present refuses the whole change); ``remove``
        lists ids to expunge (absent ones are ignored).  Hold the gallery's write lock.
        """
        add_ids, add_vectors = checked_addition(add, self.dimension)
        already = add_ids[self._map.locate(add_ids)[2]]
        if len(already):
            raise ValueError(f"ids already in the index: {_sample(already)}")
        removing = np.unique(_as_ids(remove if remove is not None else np.empty(0, dtype=np.int64)))
        removing = removing[self._map.locate(removing)[2]]
        try:
            manifest = self._write_change(version, add_ids, add_vectors, removing)
            _write_manifest(self.root, self.keyring, self.gallery_id, manifest)
        finally:
            self.sweep()
        self._adopt(manifest)
        return len(removing)

    def retrained(self, force: bool = False) -> SegmentedIndex | None:
        """When the gallery has ``outgrown`` its quantizers (or, ``force``, whenever it has some), a new index at the
        same version with quantizers trained for its size and every segment recoded; else None.  Hold the gallery's
        write lock, not its index guard: this takes minutes at millions of templates, while this index (whose open
        files stay readable) goes on serving searches until the caller swaps it for the new one and closes it."""
        if not (self.outgrown or (force and self.compressed)):
            return None
        current = self._manifest
        try:
            _, quantizer, order, serial = self._write_trained(list(current.segments), current.next_serial,
                                                              np.empty((0, self.dimension), dtype=np.float32), len(self))
            manifest = _Manifest(current.version, self.dimension, tuple(order), quantizer, serial)
            _write_manifest(self.root, self.keyring, self.gallery_id, manifest)
        finally:
            self.sweep()
        return SegmentedIndex(self.root, self.keyring, self.gallery_id, self.config, manifest)

    def refresh(self) -> None:
        """Bring memory to the manifest on disk (another process's changes); IndexFileError if it is gone."""
        for attempt in range(_OPEN_RETRIES):
            manifest = _read_manifest(self.root, self.keyring, self.gallery_id)
            if manifest is None:
                raise IndexFileError(f"{self.root / MANIFEST_NAME}: the index manifest has disappeared")
            if manifest == self._manifest:
                return
            try:
                self._adopt(manifest)
                return
            except FileNotFoundError:
                if attempt == _OPEN_RETRIES - 1:
                    raise
                time.sleep(0.01 * (attempt + 1))

    def sweep(self) -> None:
        """Delete files the manifest does not name (left by an interrupted or finished change). Hold the write lock."""
        manifest = _read_manifest(self.root, self.keyring, self.gallery_id)
        if manifest is None:
            return
        keep = {MANIFEST_NAME, *(_segment_name(s) for s in manifest.segments)}
        if manifest.quantizer is not None:
            keep.add(_quantizer_name(manifest.quantizer))
        for path in self.root.iterdir():
            if path.name not in keep:
                path.unlink(missing_ok=True)

    # --- internals: changes -----------------------------------------------------------

    def _write_change(self, version: int, add_ids: np.ndarray, add_vectors: np.ndarray, removing: np.ndarray) -> _Manifest:
        """Write the files of a change and return the manifest naming them (not yet written)."""
        serial = self._manifest.next_serial
        order = list(self._manifest.segments)
        quantizer = self._manifest.quantizer
        searcher = self._searcher
        if len(removing):
            for old in np.unique(self._map.locate(removing)[0]).tolist():
                ids, codes, slots = self._read_segment_by_serial(old)
                keep = ~np.isin(ids, removing)
                index = order.index(old)
                if keep.any():
                    self._write_segment(serial, ids[keep], codes[keep], slots[keep])
                    order[index], serial = serial, serial + 1
                else:
                    del order[index]
        total = len(self) + len(add_ids) - len(removing)
        if not self.compressed and total >= self.config.compress_at:
            searcher, quantizer, order, serial = self._write_trained(order, serial, add_vectors, total)
        cap = self.config.segment_templates
        for start in range(0, len(add_ids), cap):
            ids, vectors = add_ids[start : start + cap], add_vectors[start : start + cap]
            codes = searcher.encode(vectors) if isinstance(searcher, CompressedIndex) else np.empty((len(ids), 0), np.uint8)
            self._write_segment(serial, ids, codes, self._seal_slots(ids, vectors))
            order.append(serial)
            serial += 1
        order, serial = self._merge_tail(order, serial)
        return _Manifest(version, self.dimension, tuple(order), quantizer, serial)

    def _merge_tail(self, order: list[int], serial: int) -> tuple[list[int], int]:
        """Merge the last eight segments into one while they are of one size class and fit in a segment."""
        sizes = {s: self._segment_size(s) for s in order}
        while len(order) >= _MERGE_FANOUT:
            tail = order[-_MERGE_FANOUT:]
            classes = {_size_class(sizes[s]) for s in tail}
            total = sum(sizes[s] for s in tail)
            if len(classes) != 1 or total > self.config.segment_templates:
                break
            parts = [self._read_segment_by_serial(s) for s in tail]
            self._write_segment(serial, *(np.concatenate(column) for column in zip(*parts)))
            order = order[:-_MERGE_FANOUT] + [serial]
            sizes[serial] = total
            serial += 1
        return order, serial

    def _segment_size(self, serial: int) -> int:
        if serial in self._segments:
            return self._segments[serial].templates
        with (self.root / _segment_name(serial)).open("rb") as f:
            return _HEADER.unpack(f.read(_HEADER.size))[2]

    def _read_segment_by_serial(self, serial: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if serial in self._segments:
            return self._read_segment(self._segments[serial])
        segment = self._open_segment(serial)
        try:
            return self._read_segment(segment)
        finally:
            os.close(segment.fd)

    def _write_trained(self, order: list[int], serial: int, add_vectors: np.ndarray,
                       total: int) -> tuple[CompressedIndex, int, list[int], int]:
        """Train quantizers for ``total`` templates (those of the segments in ``order`` and ``add_vectors``), write
        them and every segment of ``order`` recoded with them (new files, from ``serial``); return the searcher, the
        quantizer's serial, the recoded segments in order and the next serial."""
        searcher = self._train(order, add_vectors, total)
        quantizer, serial = serial, serial + 1
        self._write_file(_quantizer_name(quantizer), searcher.trained_bytes(), self._quantizer_context())
        recoded = []
        for old in order:
            ids, _, slots = self._read_segment_by_serial(old)
            self._write_segment(serial, ids, searcher.encode(self._decrypt_slots(ids, slots, _segment_name(old))), slots)
            recoded.append(serial)
            serial += 1
        return searcher, quantizer, recoded, serial

    def _train(self, order: list[int], add_vectors: np.ndarray, total: int) -> CompressedIndex:
        """Quantizers for ``total`` templates, trained on a random sample (at most ``TRAINING_SAMPLE``) of the
        templates of the segments in ``order`` and the vectors being added."""
        rng = np.random.default_rng(total)
        share = min(1.0, TRAINING_SAMPLE / total)
        parts = [add_vectors[rng.random(len(add_vectors)) < share]]
        for serial in order:
            ids, _, slots = self._read_segment_by_serial(serial)
            chosen = rng.random(len(ids)) < share
            parts.append(self._decrypt_slots(ids[chosen], slots[chosen], _segment_name(serial)))
        return CompressedIndex.train(np.concatenate(parts), self._fetcher(), self._depth(), nlist=choose_nlist(total))

    # --- internals: memory follows the manifest ------------------------------------------

    def _adopt(self, manifest: _Manifest) -> None:
        """Bring memory (searcher, id map, open segments) from the current manifest to ``manifest``."""
        if manifest.quantizer != self._manifest.quantizer:
            self._load(manifest)
        else:
            self._take_segments(manifest)
            _return_freed_memory()  # once the temporaries of the change are gone

    def _take_segments(self, manifest: _Manifest) -> None:
        """Open the segments ``manifest`` adds to the current one (adding their new templates to the searcher and
        the id map) and drop those it no longer names (removing their templates that are not in it)."""
        wanted = set(manifest.segments)
        leaving = [s for s in self._segments if s not in wanted]
        arriving = {s: self._open_segment(s) for s in manifest.segments if s not in self._segments}
        try:
            contents = {s: self._read_segment(segment, slots=not self.compressed) for s, segment in arriving.items()}
            located = [(c[0], np.full(len(c[0]), s, dtype=np.int32), np.arange(len(c[0]), dtype=np.int32))
                       for s, c in contents.items()]
            empty = (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int32), np.empty(0, dtype=np.int32))
            ids, serials, slots = (np.concatenate(column) for column in zip(empty, *located))
            held_in, _, moved = self._map.locate(ids)  # binary searches: nothing the size of the index is copied
            gone = self._gone(leaving, ids, held_in[moved])
        except BaseException:
            for segment in arriving.values():
                os.close(segment.fd)
            raise
        if len(gone):
            self._searcher.remove(gone)
        self._add_to_searcher(contents, ids, ~moved)
        self._map.remove(gone)
        self._map.move(ids[moved], serials[moved], slots[moved])
        self._map.add(ids[~moved], serials[~moved], slots[~moved])
        for s in leaving:
            os.close(self._segments.pop(s).fd)
        self._segments.update(arriving)
        self._manifest = manifest

    def _gone(self, leaving: list[int], arriving_ids: np.ndarray, moved_from: np.ndarray) -> np.ndarray:
        """The ids of the ``leaving`` segments that arrive in none (expunged), given where the arriving ids that are
        present now are (``moved_from``).  When as many moved out of the leaving segments as they hold, none is gone
        (a merge, a recoding); else the leaving segments' ids are read (from their open files) and compared."""
        if not leaving or np.isin(moved_from, leaving).sum() == sum(self._segments[s].templates for s in leaving):
            return np.empty(0, dtype=np.int64)
        leaving_ids = np.concatenate([self._read_segment(self._segments[s], slots=False)[0] for s in leaving])
        return leaving_ids[~np.isin(leaving_ids, arriving_ids)]

    def _add_to_searcher(self, contents: dict, arriving_ids: np.ndarray, new: np.ndarray) -> None:
        """Add the arriving templates that are new to the searcher: their codes in one call, or their decrypted
        vectors when exact."""
        offset = 0
        if isinstance(self._searcher, CompressedIndex):
            batches = []
            for ids, codes, _ in contents.values():
                fresh = new[offset : offset + len(ids)]
                offset += len(ids)
                batches.append((ids, codes) if fresh.all() else (ids[fresh], codes[fresh]))
            self._searcher.add_code_batches(batches)
            return
        for serial, (ids, _, slots) in contents.items():
            fresh = new[offset : offset + len(ids)]
            offset += len(ids)
            if fresh.any():
                self._searcher.add(ids[fresh], self._decrypt_slots(ids[fresh], slots[fresh], _segment_name(serial)))

    def _scan(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k over every float32 template on disk, a block of slots at a time."""
        scan = ExactScan(queries, k)
        for serial in self._manifest.segments:
            ids, _, slots = self._read_segment(self._segments[serial])
            for start in range(0, len(ids), _EXACT_SCAN_SLOTS):
                block_ids = ids[start : start + _EXACT_SCAN_SLOTS]
                scan.add(block_ids, self._decrypt_slots(block_ids, slots[start : start + _EXACT_SCAN_SLOTS], _segment_name(serial)))
        return scan.result()

    # --- internals: files -------------------------------------------------------------

    def _fetcher(self) -> Callable[[np.ndarray], np.ndarray]:
        """:meth:`vectors` for the searcher's re-rank, held weakly: a searcher holding this index would make a cycle
        that keeps a replaced index's memory (1.4 GiB at 10 million templates) until the garbage collector runs."""
        vectors = weakref.WeakMethod(self.vectors)
        return lambda ids: vectors()(ids)

    def _depth(self) -> SearchDepth:
        return SearchDepth(self.config.nprobe, self.config.rerank)

    def _load_quantizer(self, serial: int) -> CompressedIndex:
        path = self.root / _quantizer_name(serial)
        data = self._decrypt(path.read_bytes(), self._quantizer_context(), path)
        try:
            return CompressedIndex.from_bytes(data, self._fetcher(), self._depth())
        except ValueError as exc:
            raise IndexFileError(f"{path}: {exc}") from exc

    def _quantizer_context(self) -> bytes:
        return f"index-quantizer:{self.gallery_id}".encode()

    def _write_file(self, name: str, plaintext: bytes, context: bytes) -> None:
        sealed = self.keyring.encrypt(plaintext, context)
        write_atomically(self.root / name, lambda handle: handle.write(sealed))

    def _write_segment(self, serial: int, ids: np.ndarray, codes: np.ndarray, slots: np.ndarray) -> None:
        """Write a segment file (atomically): header, sealed ids + codes, then the slots as given."""
        name = _segment_name(serial)
        codes = np.ascontiguousarray(codes, dtype=np.uint8).reshape(len(ids), -1)
        plaintext = np.ascontiguousarray(ids, dtype=np.int64).tobytes() + codes.tobytes()
        length = sealed_size(len(plaintext))
        header = _HEADER.pack(_MAGIC, self.dimension, len(ids), codes.shape[1], length)
        sealed = self.keyring.encrypt(plaintext, self._codes_context(name, header))

        def write(handle) -> None:
            handle.write(header)
            handle.write(sealed)
            handle.write(np.ascontiguousarray(slots).tobytes())

        write_atomically(self.root / name, write)

    def _open_segment(self, serial: int) -> _Segment:
        path = self.root / _segment_name(serial)
        fd = os.open(path, os.O_RDONLY)
        try:
            header = os.pread(fd, _HEADER.size, 0)
            if len(header) != _HEADER.size:
                raise IndexFileError(f"{path}: too short to be an index segment")
            magic, dimension, templates, code_size, sealed_length = _HEADER.unpack(header)
            if magic != _MAGIC or dimension != self.dimension:
                raise IndexFileError(f"{path}: not a facetrail index segment of {self.dimension}-d templates")
            slots_at = _HEADER.size + sealed_length
            if os.fstat(fd).st_size != slots_at + templates * self._slot_size:
                raise IndexFileError(f"{path}: truncated or extended (its size does not match its header)")
        except BaseException:
            os.close(fd)
            raise
        return _Segment(serial, path, fd, templates, code_size, slots_at)

    def _read_segment(self, segment: _Segment, slots: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(ids, codes, slots as an (n, slot size) uint8 array, or None unless ``slots``) of a segment, the codes
        section decrypted."""
        header = os.pread(segment.fd, segment.slots_at, 0)
        plaintext = self._decrypt(header[_HEADER.size :], self._codes_context(segment.path.name, header[: _HEADER.size]), segment.path)
        n = segment.templates
        if len(plaintext) != n * (8 + segment.code_size):
            raise IndexFileError(f"{segment.path}: the codes section does not match the header")
        ids = np.frombuffer(plaintext, dtype=np.int64, count=n)
        codes = np.frombuffer(plaintext, dtype=np.uint8, offset=8 * n).reshape(n, segment.code_size)
        if not slots:
            return ids, codes, None
        stored = np.frombuffer(os.pread(segment.fd, n * self._slot_size, segment.slots_at), dtype=np.uint8)
        if len(stored) != n * self._slot_size:
            raise IndexFileError(f"{segment.path}: file ended early while reading")
        return ids, codes, stored.reshape(n, self._slot_size)

    def _codes_context(self, name: str, header: bytes) -> bytes:
        return f"index-codes:{self.gallery_id}:{name}:".encode() + header

    def _vector_context(self, template_id: int) -> bytes:
        return f"index-vector:{self.gallery_id}:{template_id}".encode()

    def _seal_slots(self, ids: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        sealed = b"".join(self.keyring.encrypt(v.tobytes(), self._vector_context(i)) for i, v in zip(ids.tolist(), vectors))
        return np.frombuffer(sealed, dtype=np.uint8).reshape(len(ids), self._slot_size)

    def _decrypt_slots(self, ids: np.ndarray, slots: np.ndarray, name: str) -> np.ndarray:
        out = np.empty((len(ids), self.dimension), dtype=np.float32)
        for row, (template_id, slot) in enumerate(zip(ids.tolist(), slots)):
            out[row] = np.frombuffer(self._decrypt(slot.tobytes(), self._vector_context(template_id), self.root / name), dtype=np.float32)
        return out

    def _open_slot(self, slot: bytes, template_id: int, segment: _Segment) -> np.ndarray:
        if len(slot) != self._slot_size:
            raise IndexFileError(f"{segment.path}: file ended early while reading a template")
        return np.frombuffer(self._decrypt(slot, self._vector_context(template_id), segment.path), dtype=np.float32)

    def _decrypt(self, sealed: bytes, context: bytes, path: Path) -> bytes:
        try:
            return self.keyring.decrypt(sealed, context)
        except CryptoError as exc:
            raise IndexFileError(f"{path}: {exc}") from exc


class SegmentedBackend:
    """``index.backend = "faiss"``: each gallery's index in memory, kept in encrypted segment files under
    ``DATA/indexes/gallery-<id>/`` (every process that searches a gallery loads its index)."""

    uses_data_key = True
    shared = False

    def __init__(self, index_dir: Path, keyring: KeyRing, config: IndexConfig) -> None:
        self.index_dir, self.keyring, self.config = index_dir, keyring, config

    def open(self, gallery_id: int) -> SegmentedIndex | None:
        return SegmentedIndex.open(self._root(gallery_id), self.keyring, gallery_id, self.config)

    def create(self, gallery_id: int, dimension: int, version: int) -> SegmentedIndex:
        return SegmentedIndex.create(self._root(gallery_id), self.keyring, gallery_id, self.config, dimension, version)

    def drop(self, gallery_id: int) -> None:
        shutil.rmtree(self._root(gallery_id), ignore_errors=True)

    def close(self) -> None:
        """Nothing to release: each gallery's index closes its own files."""

    def _root(self, gallery_id: int) -> Path:
        return self.index_dir / f"gallery-{gallery_id}"


def _segment_name(serial: int) -> str:
    return f"seg-{serial:08d}.bin"


def _quantizer_name(serial: int) -> str:
    return f"quantizer-{serial:08d}.bin"


def _return_freed_memory() -> None:
    """Ask glibc to give freed heap memory back to the system after the index changed in memory.  The temporaries
    of a load or of a change stay resident otherwise (a load at a million templates: RSS 243 MiB instead of 151;
    20 commits of 1,000 then add 76 MiB instead of 10).  A no-op elsewhere."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _size_class(templates: int) -> int:
    """Segments of one class differ in size by less than the merge fan-out."""
    return int(np.log(max(templates, 1)) / np.log(_MERGE_FANOUT))


def _manifest_context(gallery_id: int) -> bytes:
    return f"index-manifest:{gallery_id}".encode()


def _read_manifest(root: Path, keyring: KeyRing, gallery_id: int) -> _Manifest | None:
    """The manifest under ``root``, or None if there is none; IndexFileError if it is damaged."""
    path = root / MANIFEST_NAME
    try:
        sealed = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        document = json.loads(keyring.decrypt(sealed, _manifest_context(gallery_id)))
        if document.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"not a {MANIFEST_FORMAT} manifest")
        quantizer = document["quantizer"]
        return _Manifest(int(document["version"]), int(document["dimension"]), tuple(int(s) for s in document["segments"]),
                         None if quantizer is None else int(quantizer), int(document["next_serial"]))
    except CryptoError as exc:
        raise IndexFileError(f"{path}: {exc}") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise IndexFileError(f"{path}: malformed index manifest: {exc}") from exc


def _write_manifest(root: Path, keyring: KeyRing, gallery_id: int, manifest: _Manifest) -> None:
    document = {
        "format": MANIFEST_FORMAT,
        "version": manifest.version,
        "dimension": manifest.dimension,
        "segments": list(manifest.segments),
        "quantizer": manifest.quantizer,
        "next_serial": manifest.next_serial,
    }
    sealed = keyring.encrypt(json.dumps(document).encode(), _manifest_context(gallery_id))
    write_atomically(root / MANIFEST_NAME, lambda handle: handle.write(sealed))
