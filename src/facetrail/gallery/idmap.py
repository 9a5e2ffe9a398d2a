"""Where each template of a gallery's index is on disk: template id → (segment serial, slot), in memory.

An index of N templates commits changes of c templates many times a day; rebuilding one sorted array of N ids per
commit (as before) copied 16 B × N (160 MB at 10 million) for each.  ``IdMap`` is log-structured instead:

- the main part: ids sorted, with their segments and slots (16 B a template); a removed id is marked in place
  (segment -1, a tombstone) and a moved one (a merge of segments, a recoding) is overwritten in place;
- the delta: the ids added since the last merge, sorted, searched too (an id is in one part or the other);
- once the delta and the tombstones together exceed ``DELTA_MIN`` or 1/``DELTA_FRACTION`` of the main part,
  both parts are merged into a new main part (O(N), every ~N/64 templates changed: amortized O(1) a template).

A change of c templates costs O(c log N) binary searches, O(c) writes in place and a copy of the delta (at most
N/64 + 65,536 entries); lookups (a search's re-rank) are two binary searches.
"""

from __future__ import annotations

import numpy as np

_NONE = np.int32(-1)


class IdMap:
    """Template id → (segment, slot) for the templates of an index's open segments.

    ``add`` takes ids that are absent, ``move`` and ``remove`` ids that are present (the caller checks, with
    ``locate``); not thread-safe: the index's guard keeps searches out while it changes."""

    DELTA_MIN = 65_536
    DELTA_FRACTION = 64

    def __init__(self) -> None:
        self._ids = np.empty(0, dtype=np.int64)
        self._segment = np.empty(0, dtype=np.int32)
        self._slot = np.empty(0, dtype=np.int32)
        self._new_ids = np.empty(0, dtype=np.int64)
        self._new_segment = np.empty(0, dtype=np.int32)
        self._new_slot = np.empty(0, dtype=np.int32)
        self._removed = 0
        """Tombstones in the main part."""

    def __len__(self) -> int:
        return len(self._ids) - self._removed + len(self._new_ids)

    def ids(self) -> np.ndarray:
        """Every id present, ascending (a new array)."""
        held = self._ids[self._segment >= 0] if self._removed else self._ids
        return _merged(held, self._new_ids)[0]

    def locate(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(segment, slot, present) of each of ``ids`` (int64); segment -1 and slot 0 where absent."""
        in_main, at_main = _find(self._ids, ids)
        in_delta, at_delta = _find(self._new_ids, ids)
        segment = np.full(len(ids), _NONE, dtype=np.int32)
        slot = np.zeros(len(ids), dtype=np.int32)
        segment[in_main], slot[in_main] = self._segment[at_main], self._slot[at_main]
        segment[in_delta], slot[in_delta] = self._new_segment[at_delta], self._new_slot[at_delta]
        return segment, slot, segment >= 0

    def add(self, ids: np.ndarray, segments: np.ndarray, slots: np.ndarray) -> None:
        """Add absent ``ids`` (distinct) at their segments and slots."""
        if not len(ids):
            return
        order = np.argsort(ids, kind="stable")
        ids, segments, slots = ids[order], segments[order], slots[order]
        if not len(self):  # a load: straight into the main part
            self._ids, self._segment, self._slot = ids, segments.astype(np.int32, copy=False), slots.astype(np.int32, copy=False)
            self._new_ids, self._new_segment, self._new_slot = self._ids[:0], self._segment[:0], self._slot[:0]
            self._removed = 0
            return
        revived, at = _find(self._ids, ids)  # ids removed from the main part and added again take their place back
        if revived.any():
            self._segment[at], self._slot[at] = segments[revived], slots[revived]
            self._removed -= int(revived.sum())
            ids, segments, slots = ids[~revived], segments[~revived], slots[~revived]
        positions = np.searchsorted(self._new_ids, ids)
        self._new_ids = np.insert(self._new_ids, positions, ids)
        self._new_segment = np.insert(self._new_segment, positions, segments)
        self._new_slot = np.insert(self._new_slot, positions, slots)
        self._merge_if_due()

    def move(self, ids: np.ndarray, segments: np.ndarray, slots: np.ndarray) -> None:
        """Give present ``ids`` new segments and slots (in place)."""
        in_main, at_main = _find(self._ids, ids)
        in_delta, at_delta = _find(self._new_ids, ids)
        self._segment[at_main], self._slot[at_main] = segments[in_main], slots[in_main]
        self._new_segment[at_delta], self._new_slot[at_delta] = segments[in_delta], slots[in_delta]

    def remove(self, ids: np.ndarray) -> None:
        """Remove present ``ids``: tombstones in the main part, a smaller delta."""
        if not len(ids):
            return
        _, at_main = _find(self._ids, ids)
        at_main = at_main[self._segment[at_main] >= 0]
        self._segment[at_main] = _NONE
        self._removed += len(at_main)
        in_delta, at_delta = _find(self._new_ids, ids)
        if in_delta.any():
            keep = np.ones(len(self._new_ids), dtype=bool)
            keep[at_delta] = False
            self._new_ids, self._new_segment, self._new_slot = self._new_ids[keep], self._new_segment[keep], self._new_slot[keep]
        self._merge_if_due()

    def _merge_if_due(self) -> None:
        """Merge the delta into the main part, leaving out tombstones, once they outweigh 1/DELTA_FRACTION of it."""
        if len(self._new_ids) + self._removed <= max(self.DELTA_MIN, len(self._ids) // self.DELTA_FRACTION):
            return
        ids, segment, slot = self._ids, self._segment, self._slot
        if self._removed:
            held = segment >= 0
            ids, segment, slot = ids[held], segment[held], slot[held]
        self._ids, positions = _merged(ids, self._new_ids)
        self._segment = np.insert(segment, positions, self._new_segment)
        self._slot = np.insert(slot, positions, self._new_slot)
        self._new_ids, self._new_segment, self._new_slot = self._ids[:0], self._segment[:0], self._slot[:0]
        self._removed = 0


def _find(sorted_ids: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which of ``values`` are in ``sorted_ids`` (a mask) and where those are (positions, one per True)."""
    positions = np.searchsorted(sorted_ids, values)
    found = positions < len(sorted_ids)
    found[found] = sorted_ids[positions[found]] == values[found]
    return found, positions[found]


def _merged(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two sorted, disjoint id arrays as one sorted array, and the insertion positions of ``second`` in ``first``
    (for merging arrays parallel to them the same way)."""
    positions = np.searchsorted(first, second)
    return np.insert(first, positions, second), positions
