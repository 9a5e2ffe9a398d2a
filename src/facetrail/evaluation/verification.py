"""1:1 verification protocol on LFW-format pairs.

Every pair is kept: a pair with an image that failed to enrol counts as an
error in accuracy (whatever its label) and as a non-match (distance +inf) in the
ROC, TAR and EER figures, as NIST does for failures to template.

Per group (when identities carry group labels) only pairs whose two identities
are in the same group are counted; error rates are compared as worst/best.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from facetrail.engine.score_normalization import normalized
from facetrail.evaluation import metrics
from facetrail.evaluation.datasets import Pair
from facetrail.evaluation.templates import ImageTemplate, failure_summary

FAR_POINTS = (1e-2, 1e-3)


def pair_distances(pairs: list[Pair], templates: Mapping[Path, ImageTemplate],
                   offsets: Mapping[Path, float] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(distances, same, failed)`` arrays; failed pairs get distance +inf. ``offsets`` per image normalizes the
    distances (``engine.score_normalization.normalized``)."""
    offsets = offsets or {}
    distances = np.full(len(pairs), np.inf)
    failed = np.zeros(len(pairs), dtype=bool)
    for k, pair in enumerate(pairs):
        a, b = templates[pair.first], templates[pair.second]
        if a.failed or b.failed:
            failed[k] = True
        else:
            distance = float(np.linalg.norm(a.embedding - b.embedding))
            distances[k] = normalized(distance, offsets.get(pair.first, 0.0), offsets.get(pair.second, 0.0))
    same = np.array([p.same for p in pairs], dtype=bool)
    return distances, same, failed


def verification_report(
    pairs: list[Pair],
    templates: Mapping[Path, ImageTemplate],
    default_threshold: float,
    groups: Mapping[str, str] | None = None,
    folds: int = 10,
    offsets: Mapping[Path, float] | None = None,
) -> dict:
    """All verification figures as a JSON-ready dict (keys documented in docs/evaluation.md); ``offsets`` normalizes
    the distances."""
    distances, same, failed = pair_distances(pairs, templates, offsets)
    report = {
        "protocol": "verification",
        **_figures(distances, same, failed, default_threshold, folds),
        "enrolment": failure_summary(templates[p] for p in dict.fromkeys(x for pair in pairs for x in (pair.first, pair.second))),
    }
    if groups:
        report["groups"] = _group_figures(pairs, distances, same, failed, default_threshold, groups)
    return report


def _figures(distances: np.ndarray, same: np.ndarray, failed: np.ndarray, default_threshold: float, folds: int | None) -> dict:
    genuine, impostor = distances[same], distances[~same]
    figures: dict = {
        "pairs": int(len(distances)),
        "genuine_pairs": int(same.sum()),
        "impostor_pairs": int((~same).sum()),
        "failed_pairs": int(failed.sum()),
        "accuracy_at_default_threshold": {
            "threshold": default_threshold,
            "accuracy": metrics.accuracy_at_threshold(distances, same, default_threshold, failed),
            "fnmr": _rate(genuine > default_threshold),
            "fmr": _rate(impostor <= default_threshold),
        },
    }
    if folds:
        kfold = metrics.kfold_accuracy(distances, same, folds=folds, failed=failed)
        figures["accuracy_kfold"] = {
            "folds": folds,
            "mean": kfold.mean,
            "std": kfold.std,
            "fold_accuracies": kfold.fold_accuracies,
            "thresholds": kfold.thresholds,
        }
    if genuine.size and impostor.size:
        eer = metrics.equal_error_rate(genuine, impostor)
        figures["roc_auc"] = metrics.roc_auc(genuine, impostor)
        figures["eer"] = {"eer": eer.eer, "threshold": eer.threshold}
        figures["tar_at_far"] = {}
        for far in FAR_POINTS:
            point = metrics.tar_at_far(genuine, impostor, far)
            figures["tar_at_far"][f"{far:g}"] = {
                "tar": point.tar,
                "threshold": point.threshold,
                "far_actual": point.far_actual,
                "impostors_needed": math.ceil(1 / far),
                "resolvable": bool(impostor.size >= math.ceil(1 / far)),
            }
    return figures


def _rate(errors: np.ndarray) -> float | None:
    return float(errors.mean()) if errors.size else None


def _group_figures(
    pairs: list[Pair],
    distances: np.ndarray,
    same: np.ndarray,
    failed: np.ndarray,
    default_threshold: float,
    groups: Mapping[str, str],
) -> dict:
    labels = np.array(
        [groups.get(p.first_identity) if groups.get(p.first_identity) == groups.get(p.second_identity) else None for p in pairs],
        dtype=object,
    )
    by_group = {}
    for group in sorted({g for g in labels if g is not None}):
        mask = labels == group
        by_group[group] = _figures(distances[mask], same[mask], failed[mask], default_threshold, folds=None)
    comparisons = metrics.worst_to_best(by_group, {
        "error_rate_at_default_threshold": lambda f: 1 - f["accuracy_at_default_threshold"]["accuracy"],
        "fnmr_at_default_threshold": lambda f: f["accuracy_at_default_threshold"]["fnmr"],
        "fmr_at_default_threshold": lambda f: f["accuracy_at_default_threshold"]["fmr"],
    })
    return {
        "rule": "pairs whose two identities share a group; cross-group pairs are left out of per-group figures",
        "unlabelled_or_cross_group_pairs": int(sum(1 for g in labels if g is None)),
        "by_group": by_group,
        "worst_to_best": comparisons,
    }


def roc_curves(pairs: list[Pair], templates: Mapping[Path, ImageTemplate], groups: Mapping[str, str] | None = None) -> dict[str, metrics.RocCurve]:
    """ROC curves for the plot: all pairs, and each group with both genuine and impostor pairs."""
    distances, same, _ = pair_distances(pairs, templates)
    curves = {"all": metrics.roc_curve(distances[same], distances[~same])}
    for group in sorted(set((groups or {}).values())):
        mask = np.array([groups.get(p.first_identity) == group == groups.get(p.second_identity) for p in pairs])
        if (mask & same).any() and (mask & ~same).any():
            curves[group] = metrics.roc_curve(distances[mask & same], distances[mask & ~same])
    return curves
