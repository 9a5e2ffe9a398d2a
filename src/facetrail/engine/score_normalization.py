"""Fair score normalization (Terhörst et al. 2020, "Post-comparison mitigation of demographic bias in face
recognition using fair score normalization"): no group label is needed, at fitting or at search time.

Fitting, on templates whose identities are known:

* the templates are clustered by k-means (seeded);
* the global threshold is the distance at which the false match rate over every impostor pair is the target;
* each cluster's threshold is the distance at which the false match rate over the impostor pairs with at least one
  template in that cluster is the target, and its offset is that threshold minus the global one (a cluster with
  fewer impostor pairs than one over the target cannot resolve it and gets offset 0).

A comparison's distance is then ``d - (offset(cluster of a) + offset(cluster of b)) / 2``: in a cluster whose
impostors come closer than elsewhere the offset is negative and its distances grow, so at the global threshold every
cluster's false match rate is near the target. Lower still means more alike.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

FORMAT = "facetrail.score_normalization.fsn.v1"
KMEANS_ITERATIONS = 25


@dataclass(frozen=True, eq=False)
class FairScoreNormalization:
    """A fitted normalization: the cluster centres and each cluster's offset (distance units)."""

    centroids: np.ndarray
    offsets: np.ndarray
    global_threshold: float
    fmr: float

    def template_offsets(self, templates: ArrayLike) -> np.ndarray:
        """The offset of each template's nearest cluster (0 for a NaN row: a template that failed)."""
        templates = np.asarray(templates, dtype=np.float64)
        found = ~np.isnan(templates).any(axis=1)
        result = np.zeros(len(templates))
        result[found] = self.offsets[nearest_centroid(templates[found], self.centroids)]
        return result

    def apply(self, distances: ArrayLike, probe_templates: ArrayLike, gallery_templates: ArrayLike) -> np.ndarray:
        """Normalized distances of a probes × gallery distance matrix."""
        return normalized(np.asarray(distances, dtype=np.float64), self.template_offsets(probe_templates)[:, None],
                          self.template_offsets(gallery_templates)[None, :])

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "fmr": self.fmr, "global_threshold": self.global_threshold,
                           "centroids": self.centroids.tolist(), "offsets": self.offsets.tolist()})

    @classmethod
    def from_json(cls, text: str) -> FairScoreNormalization:
        document = json.loads(text)
        if document.get("format") != FORMAT:
            raise ValueError(f"not a fair score normalization in format {FORMAT!r}")
        return cls(np.array(document["centroids"], dtype=np.float64), np.array(document["offsets"], dtype=np.float64),
                   float(document["global_threshold"]), float(document["fmr"]))


def normalized(distances: np.ndarray | float, first_offsets: np.ndarray | float, second_offsets: np.ndarray | float) -> np.ndarray | float:
    """``distances - (first_offsets + second_offsets) / 2``, broadcast (pairs side by side, or rows × columns)."""
    return distances - 0.5 * (first_offsets + second_offsets)


def fit(templates: ArrayLike, identity: ArrayLike, fmr: float = 1e-3, clusters: int = 100, seed: int = 0) -> FairScoreNormalization:
    """Fit on templates (no NaN rows) and their identity labels (module docstring)."""
    templates = np.asarray(templates, dtype=np.float64)
    identity = np.asarray(identity)
    if len(templates) < 2 or np.isnan(templates).any():
        raise ValueError("fitting needs at least two templates and no failed (NaN) one")
    if not 0 < fmr < 1:
        raise ValueError("fmr must be between 0 and 1")
    centroids = kmeans(templates, min(clusters, len(templates)), seed)
    cluster = nearest_centroid(templates, centroids)
    everyone = np.arange(len(templates))
    global_threshold = threshold_at(_impostor_distances(templates, identity, everyone, np.ones(len(templates), bool)), fmr)
    offsets = np.zeros(len(centroids))
    for c in range(len(centroids)):
        members = np.flatnonzero(cluster == c)
        threshold = threshold_at(_impostor_distances(templates, identity, members, cluster == c), fmr)
        if math.isfinite(threshold):
            offsets[c] = threshold - global_threshold
    return FairScoreNormalization(centroids, offsets, global_threshold, fmr)


def threshold_at(impostors: np.ndarray, fmr: float) -> float:
    """The largest impostor distance with at most a fraction ``fmr`` of the impostors at or below it (the
    floor(fmr·n)-th smallest, as ``evaluation.metrics.tar_at_far`` chooses barring ties); NaN when there are fewer
    than 1/fmr impostors."""
    if impostors.size < 1 / fmr:
        return math.nan
    allowed = math.floor(fmr * impostors.size + 1e-9)
    return float(np.partition(impostors, allowed - 1)[allowed - 1])


def _impostor_distances(templates: np.ndarray, identity: np.ndarray, rows: np.ndarray, in_rows: np.ndarray) -> np.ndarray:
    """Distances of every impostor pair with at least one template among ``rows`` (each pair once)."""
    squared = np.einsum("ij,ij->i", templates, templates)
    found = []
    for start in range(0, rows.size, 256):
        chunk = rows[start:start + 256]
        block = np.sqrt(np.maximum(squared[chunk, None] + squared[None, :] - 2.0 * templates[chunk] @ templates.T, 0.0))
        # a pair inside ``rows`` appears twice, from each end: keep it where the column comes later
        keep = (identity[chunk, None] != identity[None, :]) & (~in_rows[None, :] | (np.arange(len(templates))[None, :] > chunk[:, None]))
        found.append(block[keep])
    return np.concatenate(found) if found else np.empty(0)


def kmeans(points: np.ndarray, k: int, seed: int = 0, iterations: int = KMEANS_ITERATIONS) -> np.ndarray:
    """Lloyd's k-means from ``k`` distinct points drawn with ``seed``; a cluster left empty keeps its centre."""
    centroids = points[np.random.default_rng(seed).choice(len(points), size=k, replace=False)].copy()
    for _ in range(iterations):
        cluster = nearest_centroid(points, centroids)
        counts = np.bincount(cluster, minlength=k)
        sums = np.zeros_like(centroids)
        np.add.at(sums, cluster, points)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None]
    return centroids


def nearest_centroid(points: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of each point's nearest centre."""
    return np.argmin(np.einsum("ij,ij->i", centroids, centroids)[None, :] - 2.0 * points @ centroids.T, axis=1)
