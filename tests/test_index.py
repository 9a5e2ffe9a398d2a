"""Tests for the exact vector index (facetrail.gallery.index)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import faiss
import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from facetrail.gallery.index import MAX_NLIST, CompressedIndex, FaissExactIndex, SearchDepth, choose_nlist, set_search_threads

D = 128
# Squared distances are compared with this absolute tolerance (float32 arithmetic in faiss).
SQ_TOL = 1e-4


def face_like(rng: np.random.Generator, n: int, d: int = D) -> np.ndarray:
    """Gaussian vectors scaled to norm ~1, like face embeddings."""
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_squared(vectors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """(nq, n) squared Euclidean distances in float64."""
    diff = queries[:, None, :].astype(np.float64) - vectors[None, :, :].astype(np.float64)
    return (diff**2).sum(axis=-1)


def assert_exact_top_k(distances, labels, ids, vectors, queries, k) -> None:
    """The result is a correct top-k, whatever the order among tied distances."""
    ids = np.asarray(ids, dtype=np.int64)
    n = len(ids)
    found = min(k, n)
    assert distances.shape == labels.shape == (len(queries), k)
    assert distances.dtype == np.float32 and labels.dtype == np.int64
    assert np.all(distances[:, found:] == np.inf) and np.all(labels[:, found:] == -1)
    if not found:
        return
    exact = brute_squared(vectors, queries)
    row_of = {int(i): r for r, i in enumerate(ids)}
    for q in range(len(queries)):
        got = labels[q, :found]
        assert len(set(got.tolist())) == found, "an id is returned twice"
        assert set(got.tolist()) <= set(row_of), "an unknown id is returned"
        assert np.all(np.diff(distances[q, :found]) >= 0), "not ascending"
        true_sq = exact[q, [row_of[int(i)] for i in got]]
        got_sq = distances[q, :found].astype(np.float64) ** 2
        np.testing.assert_allclose(got_sq, true_sq, atol=SQ_TOL)
        best_sq = np.sort(exact[q])[:found]
        np.testing.assert_allclose(true_sq, best_sq, atol=SQ_TOL)


def filled(n: int, seed: int = 0, first_id: int = 1000):
    """An index of n face-like vectors with consecutive ids; returns (index, ids, vectors)."""
    rng = np.random.default_rng(seed)
    ids = np.arange(first_id, first_id + n, dtype=np.int64)
    vectors = face_like(rng, n)
    index = FaissExactIndex(D)
    index.add(ids, vectors)
    return index, ids, vectors


# --- exactness ----------------------------------------------------------------


@pytest.mark.parametrize("nq", [1, 7, 50])  # faiss switches to a BLAS path from 20 queries
def test_matches_numpy_brute_force_on_face_like_data(nq):
    index, ids, vectors = filled(3000, seed=1)
    queries = face_like(np.random.default_rng(2), nq)
    k = 25
    distances, labels = index.search(queries, k)

    exact = brute_squared(vectors, queries)
    order = np.argsort(exact, axis=1)[:, :k]
    np.testing.assert_array_equal(labels, ids[order])
    np.testing.assert_allclose(
        distances, np.sqrt(np.take_along_axis(exact, order, axis=1)), rtol=1e-5, atol=1e-5
    )


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_matches_brute_force_on_small_random_cases(data):
    d = data.draw(st.integers(1, 8), label="d")
    n = data.draw(st.integers(0, 40), label="n")
    elements = st.floats(-1, 1, width=32)
    vectors = data.draw(hnp.arrays(np.float32, (n, d), elements=elements), label="vectors")
    nq = data.draw(st.integers(1, 5), label="nq")
    queries = data.draw(hnp.arrays(np.float32, (nq, d), elements=elements), label="queries")
    ids = data.draw(st.lists(st.integers(0, 2**63 - 1), min_size=n, max_size=n, unique=True))
    k = data.draw(st.integers(1, 50), label="k")

    index = FaissExactIndex(d)
    index.add(np.array(ids, dtype=np.int64), vectors)
    distances, labels = index.search(queries, k)

    assert_exact_top_k(distances, labels, ids, vectors, queries, k)


def test_distances_are_euclidean_not_squared():
    index = FaissExactIndex(3)
    index.add([1, 2], np.array([[0, 0, 0], [3, 4, 0]], dtype=np.float32))
    distances, labels = index.search(np.zeros((1, 3), dtype=np.float32), 2)
    np.testing.assert_array_equal(labels, [[1, 2]])
    np.testing.assert_allclose(distances, [[0.0, 5.0]])


def test_k_larger_than_index_pads_with_inf_and_minus_one():
    index = FaissExactIndex(2)
    index.add([7, 8, 9], np.array([[0, 0], [1, 0], [3, 0]], dtype=np.float32))
    distances, labels = index.search(np.array([[0, 0], [3, 0]], dtype=np.float32), 5)
    np.testing.assert_array_equal(labels, [[7, 8, 9, -1, -1], [9, 8, 7, -1, -1]])
    np.testing.assert_allclose(distances, [[0, 1, 3, np.inf, np.inf], [0, 2, 3, np.inf, np.inf]])


def test_empty_index_returns_only_padding():
    distances, labels = FaissExactIndex(4).search(np.ones((2, 4), dtype=np.float32), 3)
    assert distances.shape == labels.shape == (2, 3)
    assert np.all(distances == np.inf) and np.all(labels == -1)


def test_float64_input_is_accepted():
    index = FaissExactIndex(2)
    index.add(np.array([1], dtype=np.int32), np.array([[0.5, 0.5]]))
    distances, labels = index.search(np.array([[0.5, 0.5]]), 1)
    assert labels.tolist() == [[1]] and distances.tolist() == [[0.0]]


# --- add / remove -----------------------------------------------------------


def test_remove_returns_count_and_removed_ids_never_come_back():
    index, ids, vectors = filled(20)
    gone = ids[[0, 5, 19]]
    assert index.remove(np.array([gone[0], gone[1], gone[2], gone[1], 424242])) == 3
    assert len(index) == 17
    assert not np.isin(gone, index.ids()).any()
    _, labels = index.search(vectors, 30)  # every vector, including the removed ones, as a query
    assert not np.isin(labels, gone).any()
    assert set(labels[labels >= 0].tolist()) == set(index.ids().tolist())
    assert index.remove(gone) == 0


def test_removed_id_can_be_added_again_with_a_new_vector():
    index = FaissExactIndex(2)
    index.add([1, 2], np.array([[0, 0], [5, 5]], dtype=np.float32))
    index.remove([1])
    index.add([1], np.array([[9, 9]], dtype=np.float32))
    distances, labels = index.search(np.array([[9, 9]], dtype=np.float32), 1)
    assert labels.tolist() == [[1]] and distances.tolist() == [[0.0]]


def test_duplicate_of_present_id_is_refused_and_nothing_changes():
    index = FaissExactIndex(2)
    index.add([1, 2], np.array([[0, 0], [5, 5]], dtype=np.float32))
    with pytest.raises(ValueError, match="already in the index: 2"):
        index.add([3, 2], np.array([[1, 1], [7, 7]], dtype=np.float32))
    assert len(index) == 2 and index.ids().tolist() == [1, 2]
    _, labels = index.search(np.array([[7, 7]], dtype=np.float32), 3)
    assert labels.tolist() == [[2, 1, -1]]


def test_id_repeated_within_one_call_is_refused():
    index = FaissExactIndex(2)
    with pytest.raises(ValueError, match="repeated within the call: 4"):
        index.add([4, 5, 4], np.zeros((3, 2), dtype=np.float32))
    assert len(index) == 0 and index.ids().size == 0


class AddRemoveMachine(RuleBasedStateMachine):
    """Random add/remove sequences agree with a dict model."""

    def __init__(self):
        super().__init__()
        self.index = FaissExactIndex(3)
        self.model: dict[int, np.ndarray] = {}
        self.vector = st.lists(st.floats(-1, 1, width=32), min_size=3, max_size=3)

    @rule(data=st.data(), ids=st.lists(st.integers(0, 60), max_size=6, unique=True))
    def add(self, data, ids):
        vectors = np.array([data.draw(self.vector) for _ in ids], dtype=np.float32).reshape(-1, 3)
        if any(i in self.model for i in ids):
            with pytest.raises(ValueError, match="already in the index"):
                self.index.add(ids, vectors)
        else:
            self.index.add(ids, vectors)
            self.model.update(zip(ids, vectors))

    @rule(ids=st.lists(st.integers(0, 60), max_size=6))
    def remove(self, ids):
        expected = len(set(ids) & set(self.model))
        assert self.index.remove(ids) == expected
        for i in ids:
            self.model.pop(i, None)

    @rule(query=st.lists(st.floats(-1, 1, width=32), min_size=3, max_size=3), k=st.integers(1, 70))
    def search(self, query, k):
        ids = sorted(self.model)
        vectors = np.array([self.model[i] for i in ids], dtype=np.float32).reshape(-1, 3)
        queries = np.array([query], dtype=np.float32)
        assert_exact_top_k(*self.index.search(queries, k), ids, vectors, queries, k)

    @invariant()
    def ids_match(self):
        assert self.index.ids().tolist() == sorted(self.model)
        assert len(self.index) == len(self.model)


AddRemoveMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=25, deadline=None
)
test_add_remove_agrees_with_model = AddRemoveMachine.TestCase


# --- validation -------------------------------------------------------------


def _vec(n, d=D):
    return np.zeros((n, d), dtype=np.float32)


@pytest.mark.parametrize(
    ("ids", "vectors", "message"),
    [
        ([1], _vec(1, 64), "2-D array of 128-d rows"),
        ([1], np.zeros(D, dtype=np.float32), "2-D array of 128-d rows"),
        ([1], np.full((1, D), np.nan, dtype=np.float32), "NaN or infinite"),
        ([1], np.full((1, D), -np.inf, dtype=np.float32), "NaN or infinite"),
        ([1], np.full((1, D), 1e300), "NaN or infinite"),
        ([1], np.zeros((1, D), dtype=np.int64), "floating point"),
        ([1, 2], _vec(1), "2 ids for 1 vectors"),
        ([-1], _vec(1), "between 0 and 2"),
        ([[1]], _vec(1), "1-D array"),
        ([1.0], _vec(1), "integers"),
    ],
)
def test_add_refuses_bad_input(ids, vectors, message):
    index = FaissExactIndex(D)
    with pytest.raises(ValueError, match=message):
        index.add(np.asarray(ids), vectors)
    assert len(index) == 0


@pytest.mark.parametrize(
    ("queries", "k", "message"),
    [
        (_vec(1, 127), 1, "128-d rows"),
        (np.full((1, D), np.nan, dtype=np.float32), 1, "NaN or infinite"),
        (_vec(1), 0, "k must be at least 1"),
        (_vec(1), -3, "k must be at least 1"),
        (_vec(1), 1.5, "k must be an integer"),
    ],
)
def test_search_refuses_bad_input(queries, k, message):
    index, _, _ = filled(3)
    with pytest.raises(ValueError, match=message):
        index.search(queries, k)


def test_dimension_must_be_positive():
    with pytest.raises(ValueError, match="dimension must be at least 1"):
        FaissExactIndex(0)


def test_set_search_threads():
    before = faiss.omp_get_max_threads()
    try:
        faiss.omp_set_num_threads(2)  # not 1 to begin with (opening a data directory sets 1), so setting 1 is seen
        set_search_threads(1)
        assert faiss.omp_get_max_threads() == 1
        set_search_threads(3)
        assert faiss.omp_get_max_threads() == 3
        with pytest.raises(ValueError, match="at least 1"):
            set_search_threads(0)
        assert faiss.omp_get_max_threads() == 3  # a refused count changes nothing
    finally:
        faiss.omp_set_num_threads(before)


SEARCH_ON_THREADS = """
import os, sys
import numpy as np
from facetrail.gallery.index import FaissExactIndex, set_search_threads
rng = np.random.default_rng(0)
index = FaissExactIndex(128)
index.add(np.arange(20_000), rng.standard_normal((20_000, 128)).astype(np.float32))
set_search_threads(int(sys.argv[1]))
before = len(os.listdir("/proc/self/task"))
index.search(rng.standard_normal((8, 128)).astype(np.float32), 5)
print(len(os.listdir("/proc/self/task")) - before)
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads in /proc")
@pytest.mark.parametrize("threads", [1, 3])
def test_a_search_runs_on_the_threads_set(threads):
    """The effect itself: a search in a fresh process starts OpenMP's pool with the count set (the calling thread and
    ``threads - 1`` more), whatever the machine's number of cores."""
    started = subprocess.run([sys.executable, "-c", SEARCH_ON_THREADS, str(threads)], capture_output=True, text=True,
                             timeout=120, check=True)
    assert int(started.stdout) == threads - 1, started.stdout + started.stderr


# --- compressed index with exact re-rank ---------------------------------------------


def compressed(vectors: np.ndarray, ids: np.ndarray, depth: SearchDepth) -> CompressedIndex:
    """A CompressedIndex trained on and holding ``vectors``; re-rank fetches them from a dict."""
    by_id = dict(zip(ids.tolist(), vectors))
    index = CompressedIndex.train(vectors, lambda wanted: np.stack([by_id[i] for i in wanted.tolist()]), depth)
    index.add_codes(ids, index.encode(vectors))
    return index


def test_compressed_search_returns_exact_distances_and_agrees_with_brute_force_on_near_neighbours():
    rng = np.random.default_rng(7)
    centres = face_like(rng, 200)
    vectors = (centres[rng.integers(0, 200, 6000)] + rng.normal(0, 0.04, (6000, D))).astype(np.float32)
    ids = np.arange(10, 6010, dtype=np.int64)
    index = compressed(vectors, ids, SearchDepth(nprobe=16, rerank=100))
    queries = (vectors[:40] + rng.normal(0, 0.02, (40, D))).astype(np.float32)
    distances, labels = index.search(queries, 10)
    assert_exact_top_k(distances, labels, ids, vectors, queries, 10)  # exact distances, and the exact top 10


def test_compressed_codes_round_trip_through_bytes():
    rng = np.random.default_rng(8)
    vectors, ids = face_like(rng, 3000), np.arange(3000, dtype=np.int64)
    index = compressed(vectors, ids, SearchDepth(nprobe=8, rerank=50))
    fetch = dict(zip(ids.tolist(), vectors))
    again = CompressedIndex.from_bytes(index.trained_bytes(), lambda wanted: np.stack([fetch[i] for i in wanted.tolist()]), index.depth)
    again.add_codes(ids, again.encode(vectors))
    np.testing.assert_array_equal(again.encode(vectors), index.encode(vectors))
    for got, expected in zip(again.search(vectors[:5], 7), index.search(vectors[:5], 7)):
        np.testing.assert_array_equal(got, expected)
    with pytest.raises(ValueError, match="could not read"):
        CompressedIndex.from_bytes(b"not an index", lambda wanted: vectors[:0], index.depth)


def test_compressed_removal_is_final():
    rng = np.random.default_rng(9)
    vectors, ids = face_like(rng, 3000), np.arange(1, 3001, dtype=np.int64)
    index = compressed(vectors, ids, SearchDepth(nprobe=64, rerank=100))
    assert index.remove(ids[:100]) == 100 and index.remove(ids[:100]) == 0
    assert len(index) == 2900
    _, labels = index.search(vectors[:100], 20)
    assert not np.isin(labels, ids[:100]).any()


def test_additions_after_the_first_are_searched_from_a_delta_then_packed_with_the_same_results():
    rng = np.random.default_rng(10)
    vectors, ids = face_like(rng, 4000), np.arange(1, 4001, dtype=np.int64)
    by_id = dict(zip(ids.tolist(), vectors))
    depth = SearchDepth(nprobe=8, rerank=50)
    index = CompressedIndex.train(vectors[:3000], lambda wanted: np.stack([by_id[i] for i in wanted.tolist()]), depth)
    queries = (vectors[::40] + rng.normal(0, 0.02, (100, D))).astype(np.float32)

    def assert_same_as_one_batch(held: np.ndarray) -> None:
        reference = CompressedIndex.from_bytes(index.trained_bytes(), lambda wanted: np.stack([by_id[i] for i in wanted.tolist()]), depth)
        reference.add_codes(ids[held], reference.encode(vectors[held]))
        assert len(index) == len(reference) == held.sum()
        for got, expected in zip(index.search(queries, 10), reference.search(queries, 10)):
            np.testing.assert_array_equal(got, expected)

    held = np.zeros(4000, dtype=bool)
    for batch in (slice(0, 3000), slice(3000, 3100), slice(3100, 3150)):  # the main lists, then the delta (< 1/16)
        index.add_codes(ids[batch], index.encode(vectors[batch]))
        held[batch] = True
        assert_same_as_one_batch(held)
    assert index.remove(ids[3000:3010]) == 10 and index.remove(ids[:10]) == 10  # from the delta and from the main lists
    held[3000:3010] = held[:10] = False
    assert_same_as_one_batch(held)
    index.add_codes(ids[3150:4000], index.encode(vectors[3150:4000]))  # past 1/16: packed into the main lists
    held[3150:] = True
    assert_same_as_one_batch(held)


@pytest.mark.parametrize(("templates", "nlist"), [(100, 2), (10_000, 256), (1_000_000, 4096), (3_000_000, MAX_NLIST), (10**9, MAX_NLIST)])
def test_choose_nlist(templates, nlist):
    assert choose_nlist(templates) == nlist
