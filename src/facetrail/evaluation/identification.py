"""1:N identification protocol on a folder-per-identity photo set (NIST FRVT terms).

How the set is split (decided from file names alone, so every pipeline is
measured on the same split):

* An identity with more than ``gallery_per_subject`` images is enrolled with its
  first ``gallery_per_subject`` images (sorted by file name); its other images
  are **mated probes**.
* An identity with ``gallery_per_subject`` images or fewer is not enrolled; its
  images are **unmated probes** (the person is not in the gallery).
* If that leaves no unmated probes (every identity has enough images, as in
  ORL), a seeded random quarter of the identities is held out of the gallery
  and all their images become unmated probes.
* Distractor images (``--distractors``) are enrolled as one extra subject each,
  enlarging the gallery; they are never probes.

A candidate list has ``candidate_list_length`` subjects (default 20), each at its
best distance over its gallery images. A probe or gallery image that fails to
enrol stays in the counts: a failed mated probe misses, a failed unmated probe
returns nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facetrail.engine.score_normalization import normalized
from facetrail.evaluation import metrics
from facetrail.evaluation.templates import ImageTemplate, failure_summary

FPIR_POINTS = (1e-2, 1e-3)
HOLDOUT_FRACTION = 0.25
REPORTED_RANKS = (1, 5, 20)


@dataclass
class Split:
    """Which images are enrolled and which are searched."""

    gallery: dict[str, list[Path]] = field(default_factory=dict)
    mated: list[tuple[str, Path]] = field(default_factory=list)
    unmated: list[tuple[str, Path]] = field(default_factory=list)
    unmated_rule: str = ""


def split_identities(
    identities: Mapping[str, list[Path]],
    gallery_per_subject: int = 1,
    distractors: list[Path] | None = None,
    seed: int = 0,
) -> Split:
    """Split a photo set into gallery, mated and unmated probes (rules in the module docstring)."""
    if gallery_per_subject < 1:
        raise ValueError("gallery_per_subject must be at least 1")
    split = Split()
    held_out: set[str] = {name for name, images in identities.items() if len(images) <= gallery_per_subject}
    split.unmated_rule = f"identities with at most {gallery_per_subject} image(s) are not enrolled; their images are unmated probes"
    if not held_out:
        names = sorted(identities)
        count = max(1, round(HOLDOUT_FRACTION * len(names)))
        held_out = set(np.random.default_rng(seed).choice(names, size=count, replace=False).tolist())
        split.unmated_rule = f"every identity has enough images, so {count} identities (a random quarter, seed {seed}) are held out as unmated probes"
    for name in sorted(identities):
        images = identities[name]
        if name in held_out:
            split.unmated.extend((name, path) for path in images)
        else:
            split.gallery[name] = images[:gallery_per_subject]
            split.mated.extend((name, path) for path in images[gallery_per_subject:])
    for path in distractors or []:
        split.gallery[f"distractor:{path}"] = [path]
    return split


def identification_report(
    split: Split,
    templates: Mapping[Path, ImageTemplate],
    groups: Mapping[str, str] | None = None,
    candidate_list_length: int = 20,
) -> dict:
    """All identification figures as a JSON-ready dict (keys documented in docs/evaluation.md)."""
    mate_ranks, mate_distances, unmated_top1 = search_all(split, templates, candidate_list_length)
    report = {
        "protocol": "identification",
        "gallery_subjects": len(split.gallery),
        "gallery_images": sum(len(v) for v in split.gallery.values()),
        "distractor_subjects": sum(1 for name in split.gallery if name.startswith("distractor:")),
        "mated_probes": len(split.mated),
        "unmated_probes": len(split.unmated),
        "unmated_rule": split.unmated_rule,
        "candidate_list_length": candidate_list_length,
        **_figures(mate_ranks, mate_distances, unmated_top1, candidate_list_length),
        "enrolment": {
            "gallery": failure_summary(templates[p] for images in split.gallery.values() for p in images),
            "probes": failure_summary(templates[p] for _, p in split.mated + split.unmated),
        },
    }
    if groups:
        report["groups"] = _group_figures(split, mate_ranks, mate_distances, unmated_top1, candidate_list_length, groups, report)
    return report


def cmc_curves(split: Split, templates: Mapping[Path, ImageTemplate], groups: Mapping[str, str] | None = None, max_rank: int = 20) -> dict[str, np.ndarray]:
    """CMC curves for the plot: all mated probes, and each group's."""
    ranks, _, _ = search_all(split, templates, max_rank)
    curves = {"all": metrics.cmc_curve(ranks, max_rank)}
    for group in sorted(set((groups or {}).values())):
        mask = np.array([(groups or {}).get(name) == group for name, _ in split.mated], dtype=bool)
        if mask.any():
            curves[group] = metrics.cmc_curve(ranks[mask], max_rank)
    return curves


def _figures(mate_ranks: np.ndarray, mate_distances: np.ndarray, unmated_top1: np.ndarray, length: int) -> dict:
    figures: dict = {}
    if mate_ranks.size:
        curve = metrics.cmc_curve(mate_ranks, max(REPORTED_RANKS))
        figures["cmc"] = {f"rank_{r}": float(curve[r - 1]) for r in REPORTED_RANKS if r <= length}
    if mate_ranks.size and unmated_top1.size:
        figures["fnir_at_fpir"] = {}
        for fpir in FPIR_POINTS:
            point = metrics.fnir_at_fpir(mate_distances, unmated_top1, fpir)
            figures["fnir_at_fpir"][f"{fpir:g}"] = {
                "fnir": point.fnir,
                "threshold": point.threshold,
                "fpir_actual": point.fpir_actual,
                "resolvable": bool(unmated_top1.size >= math.ceil(1 / fpir)),
            }
    return figures


def _group_figures(split, mate_ranks, mate_distances, unmated_top1, length, groups, overall) -> dict:
    mated_groups = np.array([groups.get(name) for name, _ in split.mated], dtype=object)
    unmated_groups = np.array([groups.get(name) for name, _ in split.unmated], dtype=object)
    threshold = overall.get("fnir_at_fpir", {}).get(f"{FPIR_POINTS[0]:g}", {}).get("threshold")
    by_group = {}
    for group in sorted(set(groups.values())):
        mated, unmated = mated_groups == group, unmated_groups == group
        entry: dict = {"mated_probes": int(mated.sum()), "unmated_probes": int(unmated.sum())}
        if mated.any():
            entry["rank_1"] = float(metrics.cmc_curve(mate_ranks[mated], 1)[0])
            entry["fnir_at_overall_threshold"] = None if threshold is None else float((mate_distances[mated] > threshold).mean())
        if unmated.any() and threshold is not None:
            entry["fpir_at_overall_threshold"] = float((unmated_top1[unmated] <= threshold).mean())
        by_group[group] = entry
    comparisons = metrics.worst_to_best(by_group, {
        "rank_1_miss_rate": lambda e: 1 - e["rank_1"] if "rank_1" in e else None,
        "fnir_at_overall_threshold": lambda e: e.get("fnir_at_overall_threshold"),
        "fpir_at_overall_threshold": lambda e: e.get("fpir_at_overall_threshold"),
    })
    return {
        "overall_threshold": threshold,
        "overall_threshold_rule": f"the threshold giving FPIR {FPIR_POINTS[0]:g} over all unmated probes",
        "by_group": by_group,
        "worst_to_best": comparisons,
    }


def search_all(split: Split, templates: Mapping[Path, ImageTemplate], candidate_list_length: int,
               offsets: Mapping[Path, float] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mate rank (0: not found) and mate distance (+inf unless the mate is within the top ``candidate_list_length``)
    per mated probe; top-1 distance per unmated probe. ``offsets`` per image normalizes the distances
    (``engine.score_normalization.normalized``)."""
    offsets = offsets or {}
    subjects = sorted(split.gallery)
    rows, owners, shifts = [], [], []
    for position, name in enumerate(subjects):
        for path in split.gallery[name]:
            if not templates[path].failed:
                rows.append(templates[path].embedding)
                owners.append(position)
                shifts.append(offsets.get(path, 0.0))
    gallery = np.array(rows, dtype=np.float32).reshape(len(rows), -1)
    owner = np.array(owners, dtype=np.int64)
    gallery_offsets = np.array(shifts)
    subject_index = {name: k for k, name in enumerate(subjects)}

    def best_per_subject(path: Path) -> np.ndarray:
        best = np.full(len(subjects), np.inf)
        if len(gallery):
            distances = np.linalg.norm(gallery - templates[path].embedding, axis=1)
            np.minimum.at(best, owner, normalized(distances, offsets.get(path, 0.0), gallery_offsets))
        return best

    ranks = np.zeros(len(split.mated))
    distances = np.full(len(split.mated), np.inf)
    for k, (name, path) in enumerate(split.mated):
        if templates[path].failed:
            continue
        best = best_per_subject(path)
        mate = best[subject_index[name]]
        if np.isfinite(mate):
            rank = int((best < mate).sum()) + 1
            ranks[k] = rank
            if rank <= candidate_list_length:
                distances[k] = mate
    top1 = np.full(len(split.unmated), np.inf)
    for k, (_, path) in enumerate(split.unmated):
        if not templates[path].failed:
            top1[k] = float(best_per_subject(path).min())
    return ranks, distances, top1
