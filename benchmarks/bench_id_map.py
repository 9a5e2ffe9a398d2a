"""The id map of a gallery's index (template id → segment, slot) under enrolment commits, in isolation.

An id map of N ids (in segments of 262,144, as a built index holds them) takes 20 (``--commits``) commits of 1,000
new ids, as enrolments add them: each commit a new segment, every eighth merged with the seven before it (their ids
move). Timed for ``facetrail.gallery.idmap.IdMap`` (log-structured: a sorted main part with tombstones, a small
sorted delta merged into it now and then) and for the id map it replaced (three sorted arrays, ids inserted into them
and the leaving segments' ids found by a scan at each commit; ``before_commit`` below is that code). For each: ms a
commit (min and median over the repeats of the mean of their commits), the slowest single commit, and the most
memory a commit allocated beyond what the map held (tracemalloc's peak, in a separate run: tracing slows numpy).

    python benchmarks/bench_id_map.py --ids 1000000 10000000 --repeats 5
    python benchmarks/bench_id_map.py --ids 1000000 10000000 --repeats 3 --commits 400   # with IdMap's merges
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import tracemalloc

import numpy as np

from facetrail.gallery.idmap import IdMap

BATCH = 1_000
SEGMENT = 262_144
FANOUT = 8


def built(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, segments, slots) of an index of n ids 1..n in full segments, as a restart loads them."""
    ids = np.arange(1, n + 1, dtype=np.int64)
    return ids, (ids - 1) // SEGMENT, (ids - 1) % SEGMENT


def commits(n: int, count: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]]:
    """``count`` commits: (arriving ids, their segments, their slots, leaving segments) of each, as the index's
    manifests change: a segment of the commit's ids, or, once eight such are the last ones, the seven committed
    before merged with the commit's into one (their ids arrive again, the seven leave)."""
    serial, tail, out = n // SEGMENT + 1, [], []
    for number in range(count):
        ids = np.arange(n + 1 + number * BATCH, n + 1 + (number + 1) * BATCH, dtype=np.int64)
        tail.append((serial, ids))
        leaving = []
        if len(tail) == FANOUT:
            leaving, ids, tail = [s for s, _ in tail[:-1]], np.concatenate([ids for _, ids in tail]), []
        out.append((ids, np.full(len(ids), serial, dtype=np.int32), np.arange(len(ids), dtype=np.int32), leaving))
        serial += 1
    return out


class Before:
    """The id map before IdMap: three sorted arrays, copied whole at each commit."""

    def __init__(self, n: int) -> None:
        self.ids, segments, slots = built(n)
        self.segment_of, self.slot_of = segments.astype(np.int32), slots.astype(np.int32)

    def commit(self, arriving_ids: np.ndarray, arriving_segments: np.ndarray, arriving_slots: np.ndarray,
               leaving: list[int]) -> None:
        before_commit(self, arriving_ids, arriving_segments, arriving_slots, leaving)


def before_commit(self: Before, arriving_ids, arriving_segments, arriving_slots, leaving) -> None:
    """What ``SegmentedIndex._take_segments`` did to the id map until IdMap replaced it."""
    gone = np.empty(0, dtype=np.int64)
    if leaving:
        leaving_ids = self.ids[np.isin(self.segment_of, leaving)]
        gone = leaving_ids[~np.isin(leaving_ids, arriving_ids)]
    positions = np.searchsorted(self.ids, arriving_ids)
    inside = positions < len(self.ids)
    new = np.ones(len(arriving_ids), dtype=bool)
    new[inside] = self.ids[positions[inside]] != arriving_ids[inside]
    order = np.argsort(arriving_ids[new], kind="stable")
    added = arriving_ids[new][order]
    ids, segment_of, slot_of = self.ids, self.segment_of, self.slot_of
    if len(gone):
        keep = np.ones(len(ids), dtype=bool)
        keep[np.searchsorted(ids, gone)] = False
        ids, segment_of, slot_of = ids[keep], segment_of[keep], slot_of[keep]
    if len(added):
        positions = np.searchsorted(ids, added)
        ids = np.insert(ids, positions, added)
        segment_of = np.insert(segment_of, positions, arriving_segments[new][order])
        slot_of = np.insert(slot_of, positions, arriving_slots[new][order])
    self.ids, self.segment_of, self.slot_of = ids, segment_of, slot_of
    moved = arriving_ids[~new]
    if len(moved):
        positions = np.searchsorted(self.ids, moved)
        self.segment_of[positions], self.slot_of[positions] = arriving_segments[~new], arriving_slots[~new]


class After:
    """IdMap, as ``SegmentedIndex._take_segments`` uses it (a merge's leaving segments all arrive again: nothing gone)."""

    def __init__(self, n: int) -> None:
        self.map = IdMap()
        self.map.add(*built(n))

    def commit(self, arriving_ids: np.ndarray, arriving_segments: np.ndarray, arriving_slots: np.ndarray,
               leaving: list[int]) -> None:
        _, _, present = self.map.locate(arriving_ids)
        self.map.move(arriving_ids[present], arriving_segments[present], arriving_slots[present])
        self.map.add(arriving_ids[~present], arriving_segments[~present], arriving_slots[~present])


def measure(kind: type, n: int, count: int, traced: bool) -> list[float]:
    """ms of each of ``count`` commits (or, ``traced``, the most bytes one commit allocated beyond the map)."""
    changes = commits(n, count)
    state = kind(n)
    if traced:
        tracemalloc.start()
        peak = 0
        for change in changes:
            tracemalloc.reset_peak()
            held = tracemalloc.get_traced_memory()[0]
            state.commit(*change)
            peak = max(peak, tracemalloc.get_traced_memory()[1] - held)
        tracemalloc.stop()
        return [peak]
    times = []
    for change in changes:
        start = time.perf_counter()
        state.commit(*change)
        times.append((time.perf_counter() - start) * 1000)
    return times


def check(n: int, count: int) -> None:
    """Both maps end with the same ids at the same places."""
    before, after = Before(n), After(n)
    for change in commits(n, count):
        before.commit(*change)
        after.commit(*change)
    segments, slots, present = after.map.locate(before.ids)
    assert present.all() and len(after.map) == len(before.ids)
    assert np.array_equal(segments, before.segment_of) and np.array_equal(slots, before.slot_of)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--commits", type=int, default=20, help="commits of 1,000 ids (IdMap merges its delta every "
                        "max(65,536, N/64) ids: give more commits to include merges)")
    args = parser.parse_args()
    report = {"benchmark": "id_map", "commits": args.commits, "batch": BATCH, "sizes": []}
    for n in args.ids:
        check(n, args.commits)
        figures = {"ids": n}
        for name, kind in (("before", Before), ("after", After)):
            runs = [measure(kind, n, args.commits, traced=False) for _ in range(args.repeats)]
            means = [statistics.fmean(run) for run in runs]
            slowest = max(max(run) for run in runs)
            peak = measure(kind, n, args.commits, traced=True)[0]
            figures[name] = {"ms_min": round(min(means), 3), "ms_median": round(statistics.median(means), 3),
                             "slowest_commit_ms": round(slowest, 1), "peak_allocated_bytes": int(peak)}
            print(f"{n:>12,} ids, {args.commits} commits, {name:>6}: {min(means):8.3f} ms a commit (min), "
                  f"{statistics.median(means):8.3f} (median) of {args.repeats}; slowest commit {slowest:6.1f} ms; "
                  f"at most {peak / 2**20:8.2f} MiB allocated by a commit")
        report["sizes"].append(figures)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
