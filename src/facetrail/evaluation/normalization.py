"""Score normalization measured without fitting on what is measured, and the rule for adopting it.

Cross-fitting: the identities are split at random (seeded) into two halves (``datasets.identity_halves``); a fair score normalization
(``engine.score_normalization``) is fitted on each half, and every image of the other half takes its offset from it.
So no image is normalized by a fit that saw its person, and every pair of the set can still be compared.

Adoption rule (issue 19): a normalization becomes the default only if, on the development set, it lowers both the
worst/best FNMR ratio and the worst/best FMR ratio between groups (identity-weighted, the published ones), does not
raise the overall FNMR at FMR 1e-3, and does not lower the 10-fold verification accuracy.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from facetrail.engine import score_normalization
from facetrail.evaluation.datasets import identity_halves
from facetrail.evaluation.templates import ImageTemplate

CLUSTERS = 100
"""k of the k-means, as in Terhörst et al. (2020)."""
FSN_METHOD = ("fair score normalization (Terhörst et al. 2020): k-means of the templates, each cluster's offset its "
              "threshold at the target FMR minus the global one; cross-fitted on two random halves of the identities")


def fit(identities: Mapping[str, list[Path]], templates: Mapping[Path, ImageTemplate], fmr: float = 1e-3,
        clusters: int = CLUSTERS, seed: int = 0) -> score_normalization.FairScoreNormalization:
    """A fair score normalization fitted on the templates of ``identities`` (failures to enrol left out)."""
    rows = [(k, templates[path].embedding) for k, name in enumerate(sorted(identities)) for path in identities[name]
            if not templates[path].failed]
    if len(rows) < 2:
        raise ValueError("fitting a normalization needs at least two templates")
    return score_normalization.fit(np.array([embedding for _, embedding in rows]), np.array([k for k, _ in rows]),
                                   fmr, clusters, seed)


def cross_fitted_offsets(identities: Mapping[str, list[Path]], templates: Mapping[Path, ImageTemplate],
                         fmr: float = 1e-3, clusters: int = CLUSTERS, seed: int = 0) -> dict[Path, float]:
    """The normalization offset of every image that gave a template, from the fit on the other half of the people
    (``datasets.identity_halves``)."""
    first, second = identity_halves(identities, seed)
    offsets: dict[Path, float] = {}
    for fitting, applying in ((first, second), (second, first)):
        fitted = fit(fitting, templates, fmr, clusters, seed)
        paths = [path for photographs in applying.values() for path in photographs if not templates[path].failed]
        if paths:
            values = fitted.template_offsets(np.array([templates[path].embedding for path in paths]))
            offsets.update(zip(paths, values.tolist()))
    return offsets


def summary(demographics: dict, verification: dict) -> dict:
    """The figures the adoption rule looks at, from a demographics report and a verification report."""
    at_fmr = demographics["overall"]["fnmr_at_fmr"]["0.001"]
    compared = demographics["verification"]["worst_to_best"]
    return {
        "threshold": demographics["threshold"]["value"],
        "ratios": {name: compared.get(name) for name in ("fnmr_identity_weighted", "fmr_identity_weighted", "fnmr", "fmr")},
        "fnmr_at_fmr_0.001": at_fmr["fnmr"],
        "fnmr_identity_weighted_at_fmr_0.001": at_fmr["fnmr_identity_weighted"],
        "accuracy_kfold": {name: verification["accuracy_kfold"][name] for name in ("folds", "mean", "std")},
    }


def adoption(before: dict, after: dict) -> dict:
    """Whether the normalization passes the adoption rule (module docstring), and each of its tests."""
    def ratio(figures: dict, name: str) -> float:
        comparison = figures["ratios"][name]
        return float("inf") if comparison is None or comparison["ratio"] is None else comparison["ratio"]

    tests = {
        "lowers the FNMR ratio (identity-weighted)": ratio(after, "fnmr_identity_weighted") < ratio(before, "fnmr_identity_weighted"),
        "lowers the FMR ratio (identity-weighted)": ratio(after, "fmr_identity_weighted") < ratio(before, "fmr_identity_weighted"),
        "does not raise the FNMR at FMR 0.001": after["fnmr_at_fmr_0.001"] <= before["fnmr_at_fmr_0.001"],
        "does not lower the 10-fold accuracy": after["accuracy_kfold"]["mean"] >= before["accuracy_kfold"]["mean"],
    }
    return {"adopt": all(tests.values()), "tests": tests}
