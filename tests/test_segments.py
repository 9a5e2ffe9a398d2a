"""A gallery's persistent index: the contract every backend keeps (restarts, following another process, expungement,
the audit mode), run against the faiss backend (facetrail.gallery.segments) and Milvus (milvus-lite; restarts,
expungement and exact distances on a Milvus server too); and the faiss backend's files on disk: O(change) commits,
damage, a failed write, kill -9."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import time
import weakref
from pathlib import Path

import numpy as np
import pytest

from facetrail.config import IndexConfig
from facetrail.crypto import KeyRing
from facetrail.datadir import DataDir
from facetrail.errors import IndexFileError
from facetrail.gallery.idmap import IdMap
from facetrail.gallery.index import IndexBackend, VectorIndex, choose_nlist
from facetrail.gallery.milvus_index import MilvusBackend
from facetrail.gallery.segments import MANIFEST_NAME, SegmentedBackend, SegmentedIndex
from tests.fixtures.datadir import milvus_uri
from tests.fixtures.milvus import IN_SERVER_GROUP, SERVER, milvus_collection
from tests.fixtures.segments import LAST, SMALL, D, state_at, step

GALLERY = 7


@pytest.fixture
def keyring(tmp_path) -> KeyRing:
    datadir = DataDir(tmp_path / "data")
    datadir.create()
    return KeyRing.create(datadir)


ALSO_ON_SERVER = pytest.mark.parametrize("backends", ["faiss", "milvus", pytest.param(SERVER, marks=IN_SERVER_GROUP)],
                                         indirect=True)


@pytest.fixture(params=["faiss", "milvus"])
def backends(request, tmp_path, keyring):
    """Makes the index backend under test with a given configuration: faiss with segment files under ``tmp_path``, or
    a collection of its own in the test's milvus-lite database (or, parametrised with "milvus-server", on the test
    process's Milvus server)."""
    made: list[IndexBackend] = []

    def make(config: IndexConfig = SMALL) -> IndexBackend:
        if request.param == "faiss":
            backend = SegmentedBackend(tmp_path / "indexes", keyring, config)
        else:
            uri = milvus_uri(request, request.param)
            backend = MilvusBackend(dataclasses.replace(config, backend="milvus", milvus_uri=uri, milvus_collection=milvus_collection()))
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


def another_process(backend: IndexBackend) -> IndexBackend:
    """A second view of the same indexes, as another process (or a restarted one) opens them."""
    if isinstance(backend, SegmentedBackend):
        return SegmentedBackend(backend.index_dir, backend.keyring, backend.config)
    return MilvusBackend(backend.config)


def reopened(backend: IndexBackend) -> VectorIndex:
    index = another_process(backend).open(GALLERY)
    assert index is not None
    return index


def assert_holds(index: VectorIndex, state: dict[int, np.ndarray]) -> None:
    """The index holds exactly ``state``: its ids, its float32 vectors, and each is its own nearest neighbour."""
    ids = np.array(sorted(state), dtype=np.int64)
    np.testing.assert_array_equal(index.ids(), ids)
    np.testing.assert_array_equal(index.vectors(ids), np.stack([state[i] for i in ids.tolist()]))
    sample = ids[:: max(1, len(ids) // 25)]
    distances, labels = index.search(np.stack([state[i] for i in sample.tolist()]), 3)
    np.testing.assert_array_equal(labels[:, 0], sample)
    assert np.all(distances[:, 0] < 1e-5)


def grown(backend: IndexBackend, last: int, removals: bool = True) -> VectorIndex:
    """A new index through changes 1..last of the history (without its removals unless ``removals``)."""
    index = backend.create(GALLERY, D, 0)
    for t in range(1, last + 1):
        ids, vectors, removed = step(t)
        index.apply(t, add=(ids, vectors), remove=removed if removals else None)
    return index


def faiss_index(tmp_path: Path, keyring: KeyRing, last: int, removals: bool = True, config: IndexConfig = SMALL):
    """The faiss backend's index through changes 1..last, and the folder of its files."""
    backend = SegmentedBackend(tmp_path / "indexes", keyring, config)
    return grown(backend, last, removals), backend._root(GALLERY)


# --- the contract of every backend ---------------------------------------------------


@ALSO_ON_SERVER
def test_restart_gives_the_same_index(backends):
    """Reopened (in exact and in compressed mode for faiss), an index holds the same templates and gives the same
    results."""
    backend = backends()
    index = backend.create(GALLERY, D, 0)
    assert backend.open(GALLERY + 1) is None
    for t in range(1, 41):
        ids, vectors, removed = step(t)
        index.apply(t, add=(ids, vectors), remove=removed)
        if t in (10, 40):
            if isinstance(index, SegmentedIndex):
                assert index.compressed == (t == 40)  # trained once the gallery reached compress_at
            again = reopened(backend)
            assert again.version == t and type(again) is type(index)
            assert_holds(again, state_at(t))
            queries = np.random.default_rng(t).standard_normal((5, D)).astype(np.float32)
            for got, expected in zip(again.search(queries, 10), index.search(queries, 10)):
                np.testing.assert_array_equal(got, expected)
            again.close()
    assert_holds(index, state_at(40))
    assert len(index) == len(state_at(40))


@ALSO_ON_SERVER
def test_expunged_templates_are_never_found_again(backends):
    backend = backends()
    index = grown(backend, 40, removals=False)
    gone, vectors, _ = step(17)
    assert index.apply(41, remove=gone[:10]) == 10
    assert index.apply(42, remove=np.concatenate([gone, [10**9]])) == 10  # absent ids are ignored
    assert not np.isin(gone, index.ids()).any() and len(index) == 780
    with pytest.raises(KeyError):
        index.vectors(gone[:1])
    for exact in (False, True):  # never found, even by their own templates, in either search mode
        _, labels = index.search(vectors, 50, exact=exact)
        assert not np.isin(labels, gone).any()
    again = reopened(backend)
    assert not np.isin(gone, again.ids()).any() and len(again) == 780
    _, labels = again.search(vectors, 50)
    assert not np.isin(labels, gone).any()


def test_exact_audit_mode_matches_brute_force(backends):
    # a shallow search (one inverted list, five candidates) that the audit mode must not depend on
    index = grown(backends(IndexConfig(compress_at=400, nprobe=1, rerank=5, milvus_nlist=16)), 30)
    state = state_at(30)
    ids = np.array(sorted(state))
    matrix = np.stack([state[i] for i in ids.tolist()])
    queries = np.random.default_rng(99).standard_normal((8, D)).astype(np.float32)
    distances, labels = index.search(queries, 15, exact=True)
    exact = np.linalg.norm(matrix[None] - queries[:, None], axis=2)
    np.testing.assert_array_equal(labels, ids[np.argsort(exact, axis=1, kind="stable")[:, :15]])
    np.testing.assert_allclose(distances, np.sort(exact, axis=1)[:, :15], atol=1e-5)


@ALSO_ON_SERVER
def test_search_distances_are_exact_euclidean(backends):
    """Whatever selected the candidates, the distances are exact Euclidean distances (not squared), nearest first."""
    index = grown(backends(), 12)
    state = state_at(12)
    ids = np.array(sorted(state))
    matrix = np.stack([state[i] for i in ids.tolist()])
    queries = (matrix[:6] + 0.05).astype(np.float32)
    distances, labels = index.search(queries, 4)
    expected = np.linalg.norm(matrix[np.searchsorted(ids, labels)] - queries[:, None], axis=2)
    np.testing.assert_allclose(distances, expected, rtol=1e-6)
    np.testing.assert_array_equal(labels[:, 0], ids[:6])
    assert np.all(np.diff(distances, axis=1) >= 0)
    distances, labels = index.search(queries[:1], len(ids) + 3)  # more than it holds: padded
    assert np.all(labels[0, len(ids):] == -1) and np.all(distances[0, len(ids):] == np.inf)
    with pytest.raises(ValueError, match="ids already in the index"):
        index.apply(13, add=(ids[:2], matrix[:2]))
    assert index.version == 12 and len(index) == len(ids)


def test_another_process_follows_changes(backends):
    backend = backends()
    writer = backend.create(GALLERY, D, 0)
    reader = reopened(backend)
    for t in range(1, 41):
        ids, vectors, removed = step(t)
        writer.apply(t, add=(ids, vectors), remove=removed)
        if t % 7 == 0 or t == 40:
            reader.refresh()
            assert reader.version == t
            assert_holds(reader, state_at(t))
    backend.drop(GALLERY)
    assert another_process(backend).open(GALLERY) is None


# --- the faiss backend's files ---------------------------------------------------------


def test_a_commit_writes_only_new_files_of_the_size_of_the_change(tmp_path, keyring):
    index, root = faiss_index(tmp_path, keyring, 80, removals=False)
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in root.iterdir() if p.name != MANIFEST_NAME}
    slot_bytes = sum(p.stat().st_size for p in index.segment_paths()) / len(index)
    ids, vectors, removed = step(81)
    index.apply(81, add=(ids, vectors), remove=removed)
    after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in root.iterdir() if p.name != MANIFEST_NAME}
    new = [root / name for name in after.keys() - before.keys()]
    assert all(after[name] == before[name] for name in after.keys() & before.keys()), "an existing file was rewritten"
    # one new segment for the 20 added, one rewrite of the segment holding the 7 removed (at most 256 templates)
    assert sum(p.stat().st_size for p in new) <= (20 + SMALL.segment_templates) * slot_bytes
    assert len(index) == 1620 - 7 and len(new) <= 2


def test_the_id_map_follows_merges_and_expungements_in_the_writer_and_a_reader(tmp_path, keyring, monkeypatch):
    """With the id map merging its delta every few changes, a writer and a reader following it (which learns what
    was expunged from the segments that leave) hold exactly each version's templates."""
    monkeypatch.setattr(IdMap, "DELTA_MIN", 30)
    backend = SegmentedBackend(tmp_path / "indexes", keyring, SMALL)
    writer = backend.create(GALLERY, D, 0)
    reader = reopened(backend)
    merged = 0
    for t in range(1, 61):
        ids, vectors, removed = step(t)
        main = writer._map._ids
        writer.apply(t, add=(ids, vectors), remove=removed)
        merged += writer._map._ids is not main
        if t % 3 == 0:
            reader.refresh()
            assert_holds(reader, state_at(t))
        assert_holds(writer, state_at(t))
    assert merged >= 10


def test_quantizers_are_retrained_at_the_same_version_once_the_gallery_outgrows_them(tmp_path, keyring):
    index, root = faiss_index(tmp_path, keyring, 60)
    first = index.inverted_lists
    assert first == choose_nlist(SMALL.compress_at + 8)  # trained at change 38, 508 templates
    assert index.retrained() is None
    for t in range(61, 81):  # past 1,014 templates the lists hold 4x what they were trained for
        ids, vectors, removed = step(t)
        index.apply(t, add=(ids, vectors), remove=removed)
    assert index.inverted_lists == first  # a commit does not retrain
    retrained = index.retrained()
    assert retrained is not None and retrained.version == 80
    assert retrained.inverted_lists is not None and retrained.inverted_lists >= 2 * first
    assert retrained.retrained() is None
    assert len(list(root.glob("quantizer-*"))) == 1
    assert_holds(index, state_at(80))  # the replaced index still serves from its open files until closed
    index.close()
    replaced = weakref.ref(index)
    del index
    assert replaced() is None  # its memory is freed at once, not at the garbage collector's next run
    assert_holds(retrained, state_at(80))
    again = reopened(SegmentedBackend(tmp_path / "indexes", keyring, SMALL))
    assert again.inverted_lists == retrained.inverted_lists
    assert_holds(again, state_at(80))


def test_expunged_templates_leave_the_segment_files(tmp_path, keyring):
    index, root = faiss_index(tmp_path, keyring, 40, removals=False)
    assert index.compressed
    gone = step(17)[0]
    stored = b"".join(p.read_bytes() for p in root.iterdir())
    slots = [_slot_bytes(index, i) for i in gone.tolist()]
    assert all(slot in stored for slot in slots)
    index.apply(41, remove=gone[:10])
    index.apply(42, remove=gone[10:])
    stored = b"".join(p.read_bytes() for p in root.iterdir())
    assert not any(slot in stored for slot in slots), "an expunged template's encrypted slot is still on disk"


def open_index(root: Path, keyring: KeyRing) -> SegmentedIndex:
    index = SegmentedIndex.open(root, keyring, GALLERY, SMALL)
    assert index is not None
    return index


def _slot_bytes(index: SegmentedIndex, template_id: int) -> bytes:
    """The encrypted slot of ``template_id`` as stored in its segment file."""
    serials, slots, _ = index._map.locate(np.array([template_id], dtype=np.int64))
    segment = index._segments[int(serials[0])]
    return os.pread(segment.fd, index._slot_size, segment.slots_at + int(slots[0]) * index._slot_size)


def test_damaged_segment_or_manifest_is_reported_with_its_file(tmp_path, keyring):
    index, root = faiss_index(tmp_path, keyring, 4, removals=False)
    segment = index.segment_paths()[0]
    data = segment.read_bytes()
    for damaged in (data[:-1], data[:60] + bytes([data[60] ^ 1]) + data[61:]):
        segment.write_bytes(damaged)
        with pytest.raises(IndexFileError, match=segment.name):
            SegmentedIndex.open(root, keyring, GALLERY, SMALL)
    segment.write_bytes(data)
    assert len(open_index(root, keyring)) == 80
    (root / MANIFEST_NAME).write_bytes(b"garbage")
    with pytest.raises(IndexFileError, match=MANIFEST_NAME):
        SegmentedIndex.open(root, keyring, GALLERY, SMALL)


def test_a_failed_commit_leaves_the_previous_version(tmp_path, keyring, monkeypatch):
    index, root = faiss_index(tmp_path, keyring, 3)
    files = sorted(p.name for p in root.iterdir())

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    ids, vectors, removed = step(4)
    with pytest.raises(OSError, match="No space left"):
        index.apply(4, add=(ids, vectors), remove=removed)
    monkeypatch.undo()
    assert index.version == 3 and sorted(p.name for p in root.iterdir()) == files
    assert_holds(index, state_at(3))
    assert_holds(open_index(root, keyring), state_at(3))


CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from facetrail.crypto import KeyRing
    from facetrail.gallery.segments import SegmentedIndex
    from tests.fixtures.segments import LAST, SMALL, D, step

    root, key_file = Path(sys.argv[1]), Path(sys.argv[2])
    keyring = KeyRing(key_file)
    index = SegmentedIndex.open(root, keyring, 7, SMALL) or SegmentedIndex.create(root, keyring, 7, SMALL, D, 0)
    print("ready", flush=True)
    for t in range(index.version + 1, LAST + 1):
        ids, vectors, removed = step(t)
        index.apply(t, add=(ids, vectors), remove=removed)
        index = index.retrained() or index  # as an enrolment does after its commits (from change 77 on)
        print(t, flush=True)
""")


def test_kill_9_at_any_point_leaves_a_whole_version(tmp_path, keyring):
    """A writer process is killed at random moments (during segment writes, merges, training, retraining,
    expungements);
    each time the index on disk opens at some version v and holds exactly the templates of version v."""
    root = tmp_path / "index"
    rng = np.random.default_rng(5)
    repository = Path(__file__).resolve().parents[1]
    versions = []
    for round in range(11):  # ten kills, then a run left to finish
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(root), str(keyring.path)], cwd=repository,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        child.stdout.readline()  # opened (or created) the index: from here on it writes
        if round < 10:
            # once the writer has committed a random version, kill it a random moment into the changes after it
            # (however fast the machine: a fixed delay let a quick writer finish before the first kill)
            target = int(rng.integers(1, LAST))
            for line in child.stdout:
                if int(line) >= target:
                    break
            time.sleep(rng.uniform(0.0, 0.03))
            child.send_signal(signal.SIGKILL)
        child.wait()
        assert round < 10 or child.returncode == 0, child.stderr.read().decode()
        index = SegmentedIndex.open(root, keyring, 7, SMALL)
        if index is None:
            continue  # killed before its first manifest
        versions.append(index.version)
        assert_holds(index, state_at(index.version))
        index.close()
    assert versions[-1] == LAST, f"the writer never finished: versions reached {versions}"
    assert len(set(versions)) >= 3, f"the kills did not land at different points: {versions}"
