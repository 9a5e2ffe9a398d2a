"""Nearest-neighbour search over face templates keyed by int64 template ids, in memory.

Distances are Euclidean (not squared): lower means more alike.  Two searchers:

- ``FaissExactIndex``: exact, every float32 template in memory (small galleries, and the audit mode);
- ``CompressedIndex``: faiss IVF with 8-bit scalar quantisation in memory (~140 B per template) selecting
  ``rerank`` candidates, re-scored exactly against float32 templates fetched by id from wherever they are kept
  (for a gallery: its encrypted segments on disk, see ``facetrail.gallery.segments``).

Persistence is not theirs: ``facetrail.gallery.segments.SegmentedIndex`` keeps a gallery's index on disk, and
``facetrail.gallery.milvus_index.MilvusIndex`` keeps it in a Milvus server instead; both implement ``VectorIndex``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import faiss
import numpy as np


class VectorIndex(Protocol):
    """A gallery's persistent nearest-neighbour index: ``facetrail.gallery.segments.SegmentedIndex`` (faiss in
    memory, encrypted segment files on disk) or ``facetrail.gallery.milvus_index.MilvusIndex`` (a Milvus server).

    ``version`` is the gallery version (in the SQL store) whose templates it holds; ``apply`` makes a committed
    change durable and moves it to the next version; ``refresh`` follows another process's changes; ``retrained``
    returns a replacement at the same version whose quantizers suit the gallery's size, when it has ``outgrown``
    them (or, ``force``, whenever it has some: ``inverted_lists`` is None when it has none).  Distances
    returned are exact Euclidean distances between float32 templates, whichever backend selected the candidates.
    """

    dimension: int
    version: int
    inverted_lists: int | None
    outgrown: bool

    def apply(self, version: int, add: tuple[np.ndarray, np.ndarray] | None = None, remove: np.ndarray | None = None) -> int: ...

    def refresh(self) -> None: ...

    def retrained(self, force: bool = False) -> VectorIndex | None: ...

    def search(self, queries: np.ndarray, k: int, exact: bool = False) -> tuple[np.ndarray, np.ndarray]: ...

    def vectors(self, ids: np.ndarray) -> np.ndarray: ...

    def __len__(self) -> int: ...

    def ids(self) -> np.ndarray: ...

    def close(self) -> None: ...


class IndexBackend(Protocol):
    """Where the galleries' indexes are kept (``index.backend``): one object per process, shared by its galleries.

    ``open`` returns a gallery's index or None when it has none; ``create`` replaces whatever a gallery had with an
    empty index at ``version``; ``drop`` deletes it.  ``uses_data_key`` says whether the backend's copies of the
    templates are encrypted with the data directory's key (so a key rotation must rewrite them); ``shared`` says
    whether a search reads data that writers in other processes change under it (a server), rather than a copy in
    this process's memory.
    """

    uses_data_key: bool
    shared: bool

    def open(self, gallery_id: int) -> VectorIndex | None: ...

    def create(self, gallery_id: int, dimension: int, version: int) -> VectorIndex: ...

    def drop(self, gallery_id: int) -> None: ...

    def close(self) -> None: ...


SEARCH_THREADS = 1
"""faiss's threads, set where a process opens its galleries: one query at a time is faster on one thread than split
across several (benchmarks/bench_search.py)."""


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
        distances, labels = empty_results(len(queries), k)
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

    def _as_vectors(self, array: np.ndarray, what: str) -> np.ndarray:
        return _as_float_rows(array, self.dimension, what)


def _as_float_rows(array: np.ndarray, dimension: int, what: str) -> np.ndarray:
    """``array`` as contiguous float32 (n, dimension) rows; ValueError naming ``what`` if it is not finite floats."""
    array = np.asarray(array)
    if array.ndim != 2 or array.shape[1] != dimension:
        raise ValueError(f"{what} must be a 2-D array of {dimension}-d rows, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{what} must be floating point, got dtype {array.dtype}")
    with np.errstate(over="ignore"):
        array = np.ascontiguousarray(array, dtype=np.float32)
    # min/max propagate NaN and expose ±inf without a full-size temporary.
    if array.size and not (np.isfinite(array.min()) and np.isfinite(array.max())):
        raise ValueError(f"{what} contain NaN or infinite values (or overflow float32)")
    return array


@dataclass(frozen=True)
class SearchDepth:
    """How hard a ``CompressedIndex`` searches: inverted lists scanned, candidates re-scored exactly."""

    nprobe: int
    rerank: int


MAX_NLIST = 8192
"""Most inverted lists a gallery's quantizer is trained with (reached at ~2.1 million templates; ~1,200 a list at
10 million).  More lists would make retraining take many more minutes on a small server (k-means cost grows with
lists × sample: ~80 s for 8,192 on two cores)."""

TRAINING_SAMPLE = 40 * MAX_NLIST
"""Most templates the quantizers are trained on (a random sample of the gallery): k-means takes 64 a list up to
4,096 lists, then 40 (just over faiss's minimum of 39)."""


def choose_nlist(templates: int) -> int:
    """Inverted lists for training on ``templates``: the power of two nearest 4·√n, at most ``MAX_NLIST``, and no
    more than one per 39 templates (faiss's k-means minimum)."""
    target = 2 ** round(np.log2(4 * max(templates, 1) ** 0.5))
    return int(max(1, min(MAX_NLIST, target, templates // 39)))


class CompressedIndex:
    """faiss IVF + 8-bit scalar quantisation in memory, with exact re-rank.

    A search scans ``nprobe`` inverted lists of SQ8 codes (by residual), keeps the best ``rerank`` candidates and
    re-scores them exactly against their float32 templates, which ``fetch(ids)`` returns (one row per id, in
    order).  Returned distances are therefore exact; only a true neighbour that the compressed pass ranks below
    ``rerank`` can be missed.  Codes can be computed (``encode``) and added (``add_codes``) separately, so a caller
    can persist exactly what is in memory.  Concurrent searches are safe; mutation must not run concurrently with
    anything else.

    Memory: the codes are held in two IVFs sharing the trained quantizers.  The first batch added (a restart's
    load) fills the main one, each list allocated at its exact size; later additions go to a small delta IVF,
    searched alongside, which is packed into a new exact-size main one once it holds a sixteenth as many
    templates.  (Appending to the main lists directly would let each list's vector double its capacity: up to
    twice the memory in a process that takes in enrolments for months.)
    """

    DELTA_FRACTION = 16
    """The delta is packed into the main IVF when it holds more than 1/DELTA_FRACTION of the main's templates."""

    def __init__(self, trained: faiss.Index, fetch: Callable[[np.ndarray], np.ndarray], depth: SearchDepth) -> None:
        ivf = faiss.downcast_index(trained)
        if not isinstance(ivf, faiss.IndexIVFScalarQuantizer) or not ivf.is_trained:
            raise ValueError(f"expected a trained IVF scalar-quantizer index, got {type(ivf).__name__}")
        if ivf.ntotal:
            raise ValueError("the trained quantizer must hold no templates")
        self.dimension = int(ivf.d)
        self._owners = (trained, faiss.clone_index(ivf))  # the downcast views do not own their C++ objects
        self._ivf = ivf
        self._delta = faiss.downcast_index(self._owners[1])
        self._fetch = fetch
        self.depth = SearchDepth(_positive_int(depth.nprobe, "nprobe"), _positive_int(depth.rerank, "rerank"))

    @classmethod
    def train(cls, vectors: np.ndarray, fetch: Callable[[np.ndarray], np.ndarray], depth: SearchDepth,
              nlist: int | None = None, seed: int = 1234) -> CompressedIndex:
        """An empty index whose coarse quantizer (k-means) and scalar quantizer are trained on ``vectors`` (give
        at most ``TRAINING_SAMPLE`` of them, and ``nlist`` when they are a sample of a larger gallery)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        nlist = nlist or choose_nlist(len(vectors))
        if len(vectors) < nlist:
            raise ValueError(f"training {nlist} inverted lists needs at least {nlist} vectors, got {len(vectors)}")
        ivf = faiss.index_factory(vectors.shape[1], f"IVF{nlist},SQ8")
        ivf.cp.seed = seed
        ivf.cp.max_points_per_centroid = min(64, TRAINING_SAMPLE // nlist)  # enough, and 4x quicker than faiss's 256
        ivf.train(vectors)
        return cls(ivf, fetch, depth)

    @classmethod
    def from_bytes(cls, data: bytes, fetch: Callable[[np.ndarray], np.ndarray], depth: SearchDepth) -> CompressedIndex:
        """An empty index from :meth:`trained_bytes` (ValueError if the bytes are not one)."""
        try:
            trained = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        except RuntimeError as exc:
            raise ValueError(f"faiss could not read the trained quantizer: {exc}") from exc
        return cls(trained, fetch, depth)

    def trained_bytes(self) -> bytes:
        """The trained quantizers, without any template (what :meth:`from_bytes` takes)."""
        empty = faiss.clone_index(self._delta)  # the delta is small; the main IVF may hold millions
        empty.reset()
        return faiss.serialize_index(empty).tobytes()

    @property
    def nlist(self) -> int:
        return int(self._ivf.nlist)

    def outgrown(self, templates: int) -> bool:
        """True when a gallery of ``templates`` should have at least twice the inverted lists trained here (its
        lists hold 4x the templates they were trained for, so a search scans 4x as many codes)."""
        return choose_nlist(templates) >= 2 * self.nlist

    @property
    def code_size(self) -> int:
        """Bytes per template of :meth:`encode` output (inverted list number + SQ8 code)."""
        return int(self._ivf.sa_code_size())

    def encode(self, vectors: np.ndarray) -> np.ndarray:
        """(n, code_size) uint8 codes of ``vectors``: their inverted list and quantized residual."""
        vectors = _as_float_rows(vectors, self.dimension, "vectors")
        return self._ivf.sa_encode(vectors) if len(vectors) else np.empty((0, self.code_size), dtype=np.uint8)

    def add_codes(self, ids: np.ndarray, codes: np.ndarray) -> None:
        """Add templates by their :meth:`encode` codes (the caller checks that ids are new)."""
        self.add_code_batches([(ids, codes)])

    def add_code_batches(self, batches: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """Add templates by (ids, :meth:`encode` codes) batches, such as the segments of a restart.

        Into an empty index they go straight to the main IVF, each inverted list allocated once at its size; into
        a filled one, to the delta, which is packed into the main one when it has grown to a sixteenth of it.
        """
        batches = [listed for listed in (self._as_listed(ids, codes) for ids, codes in batches) if len(listed[0])]
        if not batches:
            return
        target = self._ivf if not self._ivf.ntotal else self._delta
        lists = target.invlists
        arriving = sum(np.bincount(numbers, minlength=self.nlist) for _, numbers, _ in batches)
        filled = np.zeros(self.nlist, dtype=np.int64)  # entries already in each list that receives some
        for number in np.flatnonzero(arriving).tolist():
            filled[number] = lists.list_size(number)
            lists.resize(number, int(filled[number] + arriving[number]))  # one allocation a call: exact if it was empty
        for ids, numbers, residuals in batches:
            order = np.argsort(numbers, kind="stable")
            ids, numbers, residuals = ids[order], numbers[order], np.ascontiguousarray(residuals[order])
            bounds = np.flatnonzero(np.diff(numbers)) + 1
            for start, end in zip([0, *bounds], [*bounds, len(numbers)]):
                if end > start:
                    number = int(numbers[start])
                    lists.update_entries(number, int(filled[number]), int(end - start), faiss.swig_ptr(ids[start:end]), faiss.swig_ptr(residuals[start:end]))
                    filled[number] += end - start
            target.ntotal += len(ids)
        if self._delta.ntotal * self.DELTA_FRACTION > self._ivf.ntotal:
            self._pack_delta()

    def _as_listed(self, ids: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, inverted list numbers, SQ8 residual codes) of a batch of :meth:`encode` codes; ValueError if the
        codes are not of this index."""
        ids = _as_ids(ids)
        codes = np.asarray(codes, dtype=np.uint8)
        if codes.shape != (len(ids), self.code_size):
            raise ValueError(f"expected codes of shape {(len(ids), self.code_size)}, got {codes.shape}")
        coarse = self.code_size - int(self._ivf.code_size)
        numbers = np.zeros(len(codes), dtype=np.int64 if coarse > 2 else np.uint16)  # one list: no list number
        for byte in range(coarse):  # little-endian list numbers
            numbers |= codes[:, byte].astype(numbers.dtype) << (8 * byte)
        if len(numbers) and numbers.max() >= self.nlist:
            raise ValueError(f"codes name an inverted list beyond the {self.nlist} trained")
        return ids, numbers, codes[:, coarse:]

    def _pack_delta(self) -> None:
        """Replace the main IVF's lists by exact-size lists holding the main and the delta entries; empty the delta.
        Needs memory for a second copy of the codes while it runs."""
        main, delta = self._ivf.invlists, self._delta.invlists
        packed = faiss.ArrayInvertedLists(self.nlist, main.code_size)
        for number in range(self.nlist):
            held, arriving = main.list_size(number), delta.list_size(number)
            if held + arriving:
                packed.resize(number, held + arriving)  # from empty: allocated at exactly this size
                if held:
                    packed.update_entries(number, 0, held, main.get_ids(number), main.get_codes(number))
                if arriving:
                    packed.update_entries(number, held, arriving, delta.get_ids(number), delta.get_codes(number))
        self._ivf.replace_invlists(packed, True)
        packed.this.disown()  # the index owns it now
        self._ivf.ntotal += self._delta.ntotal
        self._delta.reset()

    def remove(self, ids: np.ndarray) -> int:
        """Remove ``ids`` that are present (a scan of every inverted list) and return how many were removed."""
        wanted = np.unique(_as_ids(ids))
        if not len(wanted):
            return 0
        selector = faiss.IDSelectorBatch(wanted)
        return int(self._ivf.remove_ids(selector)) + (int(self._delta.remove_ids(selector)) if self._delta.ntotal else 0)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (exact distances, ids), each (nq, k), nearest first, padded with +inf / -1."""
        queries = _as_float_rows(queries, self.dimension, "queries")
        k = _positive_int(k, "k")
        distances, labels = empty_results(len(queries), k)
        if not len(self) or not len(queries):
            return distances, labels
        params = faiss.SearchParametersIVF(nprobe=min(self.depth.nprobe, self.nlist))
        depth = max(k, self.depth.rerank)
        approximate, candidates = self._ivf.search(queries, depth, params=params)
        if self._delta.ntotal:
            more_approximate, more = self._delta.search(queries, depth, params=params)
            approximate, candidates = np.hstack([approximate, more_approximate]), np.hstack([candidates, more])
            best = np.argsort(approximate, axis=1, kind="stable")[:, :depth]
            candidates = np.take_along_axis(candidates, best, axis=1)
        for row, (query, found) in enumerate(zip(queries, candidates)):
            found = found[found >= 0]
            if len(found):
                rerank_into(distances[row], labels[row], query, found, self._fetch(found))
        return distances, labels

    def __len__(self) -> int:
        return int(self._ivf.ntotal + self._delta.ntotal)


def empty_results(queries: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(distances, ids) of ``queries`` searches that found nothing: +inf and -1, each (queries, k)."""
    return np.full((queries, k), np.inf, dtype=np.float32), np.full((queries, k), -1, dtype=np.int64)


def rerank_into(distances: np.ndarray, labels: np.ndarray, query: np.ndarray, candidates: np.ndarray,
                vectors: np.ndarray) -> None:
    """Re-score ``candidates`` (ids, with their float32 ``vectors``) exactly against ``query`` and write the best
    ``len(distances)`` into the row ``distances``/``labels``, nearest first (ties by id)."""
    exact = np.linalg.norm(vectors - query, axis=1).astype(np.float32)
    best = np.lexsort((candidates, exact))[: len(distances)]
    distances[: len(best)], labels[: len(best)] = exact[best], candidates[best]


class ExactScan:
    """The exact top ``k`` of ``queries`` over templates seen block by block (the audit mode of a compressed or
    server index, which reads every float32 template once).  The distances returned are computed as a re-rank
    computes them (``rerank_into``), so both modes give the same figure for the same template."""

    def __init__(self, queries: np.ndarray, k: int) -> None:
        self.queries, self.k = queries, k
        self._distances = np.full((len(queries), 0), np.inf, dtype=np.float32)
        self._ids = np.empty((len(queries), 0), dtype=np.int64)
        self._vectors = np.empty((len(queries), 0, queries.shape[1]), dtype=np.float32)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Take a block of templates into account."""
        if not len(ids):
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        squared, rows = faiss.knn(self.queries, vectors, min(self.k, len(ids)))
        distances = np.concatenate([self._distances, np.sqrt(np.maximum(squared, 0))], axis=1)
        found = np.concatenate([self._ids, ids[rows]], axis=1)
        kept = np.concatenate([self._vectors, vectors[rows]], axis=1)
        order = np.lexsort((found, distances))[:, : self.k]
        self._distances, self._ids = np.take_along_axis(distances, order, 1), np.take_along_axis(found, order, 1)
        self._vectors = np.take_along_axis(kept, order[:, :, None], 1)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(distances, ids), each (nq, k), nearest first, padded with +inf / -1."""
        distances, labels = empty_results(len(self.queries), self.k)
        for row, query in enumerate(self.queries):
            rerank_into(distances[row], labels[row], query, self._ids[row], self._vectors[row])
        return distances, labels


def checked_addition(add: tuple[np.ndarray, np.ndarray] | None, dimension: int) -> tuple[np.ndarray, np.ndarray]:
    """``add`` = (ids, vectors) of a change as int64 ids and float32 rows (empty when None); ValueError if the
    lengths differ, an id repeats or the vectors are not finite ``dimension``-d rows."""
    if add is None or not len(add[0]):
        return np.empty(0, dtype=np.int64), np.empty((0, dimension), dtype=np.float32)
    ids, vectors = _as_ids(add[0]), _as_float_rows(add[1], dimension, "vectors")
    if len(ids) != len(vectors):
        raise ValueError(f"got {len(ids)} ids for {len(vectors)} vectors")
    if len(np.unique(ids)) != len(ids):
        raise ValueError("ids repeated within the change")
    return ids, vectors


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
