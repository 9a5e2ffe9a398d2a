"""Nearest-neighbour search over face templates keyed by int64 template ids.

The SQL store is the source of truth; a gallery's index is a cache rebuilt from
it and saved in the data directory.  Distances are Euclidean (not squared):
lower means more alike.

Saved file layout: the faiss serialization of the index followed by a 48-byte
trailer (magic, payload length, SHA-256 of the payload), so that truncation and
corruption anywhere in the file are detected before faiss parses it.
``to_bytes``/``from_bytes`` give the same layout in memory; galleries store it
encrypted (see ``Gallery._save_index``).
"""

from __future__ import annotations

import hashlib
import io
import operator
import os
import struct
from pathlib import Path
from typing import BinaryIO, Protocol

import faiss
import numpy as np

from facetrail.errors import IndexFileError
from facetrail.gallery.blobs import write_atomically

_MAGIC = b"FTVIDX01"
_TRAILER = struct.Struct("<8sQ32s")
_READ_CHUNK = 1 << 20


class VectorIndex(Protocol):
    """Exact or approximate nearest-neighbour search over templates keyed by int64 ids."""

    dimension: int

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    def remove(self, ids: np.ndarray) -> int: ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...

    def __len__(self) -> int: ...

    def ids(self) -> np.ndarray: ...

    def save(self, path: Path) -> None: ...

    def to_bytes(self) -> bytes: ...

    @classmethod
    def load(cls, path: Path) -> VectorIndex: ...

    @classmethod
    def from_bytes(cls, data: bytes, name: str = ...) -> VectorIndex: ...


def set_search_threads(n: int) -> None:
    """Set the number of OpenMP threads faiss uses; this is process-wide.

    With more threads than queries in a call, faiss splits the scan over the
    database instead of over queries; measure single-query latency before
    raising this (see benchmarks/bench_search.py).
    """
    faiss.omp_set_num_threads(_positive_int(n, "number of threads"))


class FaissExactIndex:
    """Exact search with faiss ``IndexIDMap2(IndexFlatL2(d))``.

    A search scans every template: O(n·d) per query.  Removal is O(n) too: the
    flat storage is compacted and the id map rebuilt.  Concurrent searches are
    safe; mutation (add, remove) must not run concurrently with anything else.
    """

    def __init__(self, dimension: int = 128) -> None:
        self.dimension = _positive_int(dimension, "dimension")
        self._index = faiss.IndexIDMap2(faiss.IndexFlatL2(self.dimension))
        # Sorted copy of the ids in the index, for duplicate checks and ids().
        self._ids = np.empty(0, dtype=np.int64)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add ``vectors`` (n, d) under ``ids`` (n,); a present or repeated id refuses it all."""
        ids = _as_ids(ids)
        vectors = self._as_vectors(vectors, "vectors")
        if len(ids) != len(vectors):
            raise ValueError(f"got {len(ids)} ids for {len(vectors)} vectors")
        new = np.sort(ids)
        repeated = new[1:][new[1:] == new[:-1]]
        if repeated.size:
            raise ValueError(f"ids repeated within the call: {_sample(np.unique(repeated))}")
        positions, present = _lookup(self._ids, new)
        if present.any():
            raise ValueError(f"ids already in the index: {_sample(new[present])}")
        self._index.add_with_ids(vectors, ids)
        self._ids = np.insert(self._ids, positions, new)

    def remove(self, ids: np.ndarray) -> int:
        """Remove ``ids`` that are present and return how many were removed (O(n))."""
        wanted = np.unique(_as_ids(ids))
        positions, present = _lookup(self._ids, wanted)
        if not present.any():
            return 0
        removed = self._index.remove_ids(faiss.IDSelectorBatch(wanted[present]))
        self._ids = np.delete(self._ids, positions[present])
        return int(removed)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (distances, ids), each (nq, k), nearest first, padded with +inf / -1."""
        queries = self._as_vectors(queries, "queries")
        k = _positive_int(k, "k")
        distances = np.full((len(queries), k), np.inf, dtype=np.float32)
        labels = np.full((len(queries), k), -1, dtype=np.int64)
        found = min(k, self._index.ntotal)
        if found and len(queries):
            squared, nearest = self._index.search(queries, found)
            distances[:, :found] = np.sqrt(np.maximum(squared, 0.0))
            labels[:, :found] = nearest
        return distances, labels

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def ids(self) -> np.ndarray:
        """All ids present, ascending."""
        return self._ids.copy()

    def save(self, path: Path) -> None:
        """Write to ``path`` (unencrypted) atomically: temp file in the same directory, fsync, os.replace."""
        write_atomically(Path(path), self._write)

    def to_bytes(self) -> bytes:
        """The index in the same checksummed format as :meth:`save` writes."""
        buffer = io.BytesIO()
        self._write(buffer)
        return buffer.getvalue()

    @classmethod
    def load(cls, path: Path) -> FaissExactIndex:
        """Load an index written by :meth:`save`.

        A missing file raises FileNotFoundError; a corrupt, truncated or foreign
        file raises IndexFileError.
        """
        path = Path(path)
        with path.open("rb") as f:
            return cls._read(f, os.fstat(f.fileno()).st_size, str(path))

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "index data") -> FaissExactIndex:
        """Load an index from :meth:`to_bytes` output; IndexFileError (naming ``name``) if it is damaged."""
        return cls._read(io.BytesIO(data), len(data), name)

    def _write(self, f: BinaryIO) -> None:
        """Write the faiss serialization and the trailer to ``f``, starting at its position 0."""
        digest = hashlib.sha256()

        def write(chunk: bytes) -> None:
            digest.update(chunk)
            f.write(chunk)

        faiss.write_index(self._index, faiss.PyCallbackIOWriter(write))
        f.write(_TRAILER.pack(_MAGIC, f.tell(), digest.digest()))

    @classmethod
    def _read(cls, f: BinaryIO, size: int, name: str) -> FaissExactIndex:
        """Check the trailer and checksum of ``size`` bytes from ``f``, then parse them; errors name ``name``."""
        if size < _TRAILER.size:
            raise IndexFileError(f"{name}: too short to be an index file ({size} bytes)")
        f.seek(size - _TRAILER.size)
        magic, length, expected = _TRAILER.unpack(f.read(_TRAILER.size))
        if magic != _MAGIC or length != size - _TRAILER.size:
            raise IndexFileError(f"{name}: not a facetrail index file, or truncated")
        f.seek(0)
        if _sha256_prefix(f, length, name) != expected:
            raise IndexFileError(f"{name}: checksum mismatch, the file is corrupt")
        f.seek(0)
        try:
            index = faiss.read_index(faiss.PyCallbackIOReader(f.read))
        except RuntimeError as exc:
            raise IndexFileError(f"{name}: faiss could not read the index: {exc}") from exc
        if not isinstance(index, faiss.IndexIDMap2) or not isinstance(
            faiss.downcast_index(index.index), faiss.IndexFlatL2
        ):
            raise IndexFileError(f"{name}: holds a {type(index).__name__}, not an exact L2 index")
        self = cls.__new__(cls)
        self.dimension = int(index.d)
        self._index = index
        self._ids = np.sort(faiss.vector_to_array(index.id_map))
        return self

    def _as_vectors(self, array: np.ndarray, what: str) -> np.ndarray:
        array = np.asarray(array)
        if array.ndim != 2 or array.shape[1] != self.dimension:
            raise ValueError(
                f"{what} must be a 2-D array of {self.dimension}-d rows, got shape {array.shape}"
            )
        if not np.issubdtype(array.dtype, np.floating):
            raise ValueError(f"{what} must be floating point, got dtype {array.dtype}")
        with np.errstate(over="ignore"):
            array = np.ascontiguousarray(array, dtype=np.float32)
        # min/max propagate NaN and expose ±inf without a full-size temporary.
        if array.size and not (np.isfinite(array.min()) and np.isfinite(array.max())):
            raise ValueError(f"{what} contain NaN or infinite values (or overflow float32)")
        return array


def _as_ids(ids: np.ndarray) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"ids must be a 1-D array, got shape {ids.shape}")
    if ids.size == 0:
        return np.empty(0, dtype=np.int64)
    if ids.dtype.kind not in "iu":
        raise ValueError(f"ids must be integers, got dtype {ids.dtype}")
    if ids.min() < 0 or ids.max() > np.iinfo(np.int64).max:
        raise ValueError("ids must be between 0 and 2**63 - 1 (-1 marks padding in results)")
    return np.ascontiguousarray(ids, dtype=np.int64)


def _lookup(sorted_ids: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Insertion positions of ``values`` in ``sorted_ids`` and whether each is present."""
    positions = np.searchsorted(sorted_ids, values)
    present = np.zeros(len(values), dtype=bool)
    inside = positions < len(sorted_ids)
    present[inside] = sorted_ids[positions[inside]] == values[inside]
    return positions, present


def _positive_int(value: int, name: str) -> int:
    try:
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
    return value


def _sample(ids: np.ndarray, limit: int = 5) -> str:
    shown = ", ".join(str(i) for i in ids[:limit])
    return f"{shown}, ... ({len(ids)} in all)" if len(ids) > limit else shown


def _sha256_prefix(f: BinaryIO, length: int, name: str) -> bytes:
    """SHA-256 of the next ``length`` bytes of ``f``; IndexFileError if the data ends early."""
    digest = hashlib.sha256()
    remaining = length
    while remaining:
        chunk = f.read(min(_READ_CHUNK, remaining))
        if not chunk:
            raise IndexFileError(f"{name}: file ended early while reading")
        digest.update(chunk)
        remaining -= len(chunk)
    return digest.digest()
