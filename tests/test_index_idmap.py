"""The id map of a gallery's index (facetrail.gallery.idmap) against a plain dict, under random changes: whatever the
order of additions, moves and removals, and whenever its delta is merged, it holds exactly what the dict holds."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facetrail.gallery.idmap import IdMap

UNIVERSE = 300

changes = st.lists(st.tuples(st.sampled_from(["add", "move", "remove"]),
                             st.lists(st.integers(0, UNIVERSE - 1), max_size=40, unique=True),
                             st.integers(0, 1000)), max_size=40)


def assert_same(id_map: IdMap, model: dict[int, tuple[int, int]]) -> None:
    assert len(id_map) == len(model)
    np.testing.assert_array_equal(id_map.ids(), np.array(sorted(model), dtype=np.int64))
    every = np.arange(UNIVERSE + 5, dtype=np.int64)
    segments, slots, present = id_map.locate(every)
    assert present.tolist() == [i in model for i in every.tolist()]
    assert [(int(s), int(t)) for s, t in zip(segments[present], slots[present])] == [model[i] for i in sorted(model)]
    assert np.all(segments[~present] == -1)


@pytest.mark.parametrize("delta_min", [0, 3, 65_536])
@settings(max_examples=150, deadline=None)
@given(start=st.lists(st.integers(0, UNIVERSE - 1), max_size=120, unique=True), history=changes)
def test_the_id_map_holds_what_a_dict_holds(delta_min, start, history):
    """Starting from a load of ``start``, each change adds ids that are absent, moves or removes ids that are present
    (as the index asks of it); the map's delta is merged after every change (0), often (3) or never (65,536)."""
    id_map, model = IdMap(), {}
    id_map.DELTA_MIN, id_map.DELTA_FRACTION = delta_min, 4
    for kind, chosen, serial in [("add", start, 0), *history]:
        ids = np.array([i for i in chosen if (i in model) == (kind != "add")], dtype=np.int64)
        segments = np.full(len(ids), serial, dtype=np.int32)
        slots = np.arange(len(ids), dtype=np.int32)[::-1].copy()
        getattr(id_map, kind)(*((ids,) if kind == "remove" else (ids, segments, slots)))
        for i, segment, slot in zip(ids.tolist(), segments.tolist(), slots.tolist()):
            if kind == "remove":
                del model[i]
            else:
                model[i] = (segment, slot)
        assert_same(id_map, model)


def test_a_change_copies_nothing_the_size_of_the_map():
    """Adding 1,000 ids to a map of a million leaves its main part where it was (no copy of 16 MB)."""
    id_map = IdMap()
    id_map.add(np.arange(1_000_000, dtype=np.int64), np.zeros(1_000_000, np.int32), np.arange(1_000_000, dtype=np.int32))
    main = id_map._ids
    for start in range(1_000_000, 1_020_000, 1_000):
        id_map.add(np.arange(start, start + 1_000, dtype=np.int64), np.ones(1_000, np.int32), np.arange(1_000, dtype=np.int32))
    id_map.remove(np.arange(0, 5_000, 7, dtype=np.int64))
    assert id_map._ids is main and len(id_map) == 1_020_000 - len(range(0, 5_000, 7))
    assert id_map.locate(np.array([7, 8, 1_019_999]))[2].tolist() == [False, True, True]
