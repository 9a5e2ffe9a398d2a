"""Likely duplicates: photographs of two different subjects of one gallery so close that they are probably one person
under two ids (an alias, a re-booking), for the agency to resolve.

Every stored template (decrypted from the store, ``Gallery.subject_templates``) is looked up among all the others in
an index of its own, built for the scan and dropped after it: up to ``EXACT_UP_TO`` templates a flat one (every pair
compared), above that an inverted file of float32 templates (IVF-Flat, ``NPROBE`` lists searched per photograph),
where a pair is missed only when neither photograph's nearest lists hold the other (docs/scaling.md measures how
rarely). Distances are exact either way. Not the gallery's own index: at its search depth a million lookups take
over an hour, and each batch would hold the index guard that investigators' searches wait for.

Each photograph asks for its ``NEIGHBOURS`` nearest, and for four times as many while the farthest of them is still
within the distance, so a subject with many photographs close together hides no pair (up to ``MOST_NEIGHBOURS``).
Memory while it runs: the templates twice, 8·d bytes each (1 GiB at a million); so a process runs one scan at a
time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import faiss
import numpy as np
from sqlalchemy import select

from facetrail.errors import BusyError, GalleryError
from facetrail.gallery.gallery import Gallery
from facetrail.gallery.index import choose_nlist
from facetrail.gallery.schema import ImageRecord, SubjectRecord, TemplateRecord

MAX_PAIRS = 10_000
"""Most pairs one listing returns."""
HOW_TO_RESOLVE = ("Settle each pair from the agency's own records (booking numbers, fingerprints): if the two subjects "
                  "are one person, enrol the alias's photographs under the id kept and expunge the alias; if they are "
                  "two people, keep both (nothing records that yet, so the pair stays listed).")
"""What the agency does with a pair, as every interface says it."""
EXACT_UP_TO = 20_000
"""Up to this many templates every pair is compared (seconds); above, an IVF-Flat index narrows the comparisons."""
NPROBE = 8
"""Inverted lists searched for each photograph in an IVF-Flat scan."""
TRAINING_PER_LIST = 40
"""Templates sampled per inverted list to train the IVF-Flat scan's lists (just over faiss's minimum of 39)."""
NEIGHBOURS = 8
"""Nearest templates first asked for each photograph (itself among them)."""
MOST_NEIGHBOURS = 1024
"""Most neighbours asked for one photograph; more within the distance refuses the scan (see ``find_duplicates``)."""
BATCH = 4096
"""Photographs looked up at a time."""
_SLACK = 1e-4
"""Added to the distance faiss's figures are compared with, so that rounding never drops a pair whose exact distance
(computed as a re-rank computes it) is within it."""
_SCANNING = threading.Lock()
"""Held by the scan this process is running."""


@dataclass(frozen=True)
class DuplicatePair:
    """Photographs of two different subjects close enough to be one person under two ids; the first is the one
    enrolled first."""

    subject_id: str
    image_id: int
    other_subject_id: str
    other_image_id: int
    distance: float
    """Euclidean distance between the two templates: lower is more alike."""

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Duplicates:
    """What ``find_duplicates`` found among the templates of a gallery at ``version``: the closest pairs first, and
    whether more pairs are within ``max_distance`` than the listing's limit let through (``more``)."""

    gallery: str
    version: int
    templates: int
    max_distance: float
    pairs: list[DuplicatePair]
    more: bool

    def to_dict(self) -> dict:
        return {**self.__dict__, "pairs": [pair.to_dict() for pair in self.pairs]}


def find_duplicates(gallery: Gallery, max_distance: float, limit: int = 1000) -> Duplicates:
    """The pairs of photographs of different subjects of ``gallery`` at most ``max_distance`` apart (0 < it < 2),
    closest first (ties by enrolment order), each unordered pair once, at most ``limit`` (1 to MAX_PAIRS) of them.

    GalleryError when an argument is out of range, or when a photograph has more than MOST_NEIGHBOURS - 1 others
    within ``max_distance`` (a distance that calls most of a gallery alike); BusyError while this process runs
    another scan. Pairs whose templates are expunged while the scan runs are left out; templates enrolled meanwhile
    are not compared.
    """
    if not 0 < max_distance < 2:
        raise GalleryError(f"the distance must be above 0 and below 2 (got {max_distance})")
    if not 1 <= limit <= MAX_PAIRS:
        raise GalleryError(f"at most {MAX_PAIRS:,} pairs may be listed at once, and at least 1 (got {limit})")
    if not _SCANNING.acquire(blocking=False):
        raise BusyError("another search for likely duplicates is running; try again when it is done")
    try:
        return _scan(gallery, max_distance, limit)
    finally:
        _SCANNING.release()


def _scan(gallery: Gallery, max_distance: float, limit: int) -> Duplicates:
    """``find_duplicates``'s listing, its arguments checked."""
    ids, subjects, vectors, version = gallery.subject_templates()
    n = len(ids)
    keys, distances, more = np.empty(0, np.int64), np.empty(0, np.float32), False
    if n > 1:
        index = _scan_index(vectors)
        for start in range(0, n, BATCH):
            rows = np.arange(start, min(start + BATCH, n))
            for queries, found in _close_neighbours(index, vectors, rows, max_distance):
                keep = subjects[queries] != subjects[found]
                first, second = np.minimum(queries, found)[keep], np.maximum(queries, found)[keep]
                apart = np.linalg.norm(vectors[first] - vectors[second], axis=1).astype(np.float32)
                close = apart <= max_distance
                keys, distances, cut = _closest(np.concatenate([keys, first[close] * n + second[close]]),
                                                np.concatenate([distances, apart[close]]), limit)
                more |= cut
    pairs = _described(gallery, ids, keys // n, keys % n, distances) if len(keys) else []
    return Duplicates(gallery.name, version, n, max_distance, pairs, more)


def _scan_index(vectors: np.ndarray) -> faiss.Index:
    """A flat index of ``vectors`` up to EXACT_UP_TO of them, else an IVF-Flat one trained on a seeded sample."""
    if len(vectors) <= EXACT_UP_TO:
        index = faiss.IndexFlatL2(vectors.shape[1])
    else:
        nlist = choose_nlist(len(vectors))
        index = faiss.index_factory(vectors.shape[1], f"IVF{nlist},Flat")
        index.cp.seed = 0
        index.cp.max_points_per_centroid = TRAINING_PER_LIST
        sample = np.random.default_rng(0).choice(len(vectors), min(len(vectors), TRAINING_PER_LIST * nlist), replace=False)
        index.train(vectors[np.sort(sample)])
        faiss.extract_index_ivf(index).nprobe = NPROBE
    index.add(vectors)
    return index


def _close_neighbours(index: faiss.Index, vectors: np.ndarray, rows: np.ndarray,
                      max_distance: float) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(photograph, neighbour) positions of the neighbours of ``rows`` within ``max_distance`` by faiss's figures
    (each photograph its own among them), asking four times as many again for the rows whose farthest is still within
    it."""
    neighbours, radius = NEIGHBOURS, max_distance + _SLACK
    while len(rows):
        squared, found = index.search(vectors[rows], min(neighbours, index.ntotal))
        within = (found >= 0) & (squared <= radius * radius)
        crowded = within[:, -1] & (found.shape[1] < index.ntotal)
        queries = np.broadcast_to(rows[:, None], found.shape)
        yield queries[~crowded][within[~crowded]], found[~crowded][within[~crowded]]
        rows = rows[crowded]
        if len(rows) and neighbours >= MOST_NEIGHBOURS:
            raise GalleryError(f"a photograph has more than {MOST_NEIGHBOURS - 1} others within {max_distance} of "
                               "it: at that distance a crowd looks alike and the list would tell nothing; lower it")
        neighbours = min(4 * neighbours, MOST_NEIGHBOURS)


def _closest(keys: np.ndarray, distances: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """The ``limit`` closest distinct pairs (by key) of those given, closest first (ties by key), and whether others
    were left out. A pair left out once is never among the closest later: the limit's farthest only comes closer."""
    keys, first = np.unique(keys, return_index=True)
    distances = distances[first]
    order = np.lexsort((keys, distances))
    return keys[order[:limit]], distances[order[:limit]], len(order) > limit


def _described(gallery: Gallery, ids: np.ndarray, first: np.ndarray, second: np.ndarray,
               distances: np.ndarray) -> list[DuplicatePair]:
    """The pairs at template positions ``first`` and ``second`` with their subjects' external ids and image ids (a
    pair whose template has since been expunged is left out)."""
    wanted = np.unique(np.concatenate([ids[first], ids[second]])).tolist()
    with gallery.session() as session:
        rows = session.execute(
            select(TemplateRecord.id, TemplateRecord.image_id, SubjectRecord.external_id)
            .join(ImageRecord, ImageRecord.id == TemplateRecord.image_id)
            .join(SubjectRecord, SubjectRecord.id == ImageRecord.subject_id)
            .where(TemplateRecord.id.in_(wanted))
        ).all()
    held = {row.id: row for row in rows}
    pairs = []
    for a, b, distance in zip(ids[first].tolist(), ids[second].tolist(), distances.tolist()):
        if a in held and b in held:
            pairs.append(DuplicatePair(held[a].external_id, held[a].image_id, held[b].external_id, held[b].image_id,
                                       distance))
    return pairs
