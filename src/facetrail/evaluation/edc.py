"""Error-versus-Discard Characteristic (ISO/IEC 29794-1): does a quality measurement predict recognition errors?

For each quality component of ``engine.quality`` the genuine pairs are ordered
by **pair quality**, the lower of the two images' values (so discarding the pairs
below a value is the same as refusing every image below it), and FNMR is
recomputed at a **fixed** threshold as the lowest-quality fraction is discarded.
A component that predicts errors makes FNMR fall faster than discarding pairs at
random would (random discarding leaves FNMR where it started); the ideal curve
discards exactly the errors first.

Each component is turned into a "higher is better" utility first: sizes,
sharpness, contrast and detector score as they are, yaw and roll as minus their
absolute value, brightness as minus its distance from mid-grey.

The summary per component is the area under its EDC over discard fractions 0 to
``MAX_DISCARD`` relative to the area under random discarding
(``area_ratio``: 1.0 is no better than chance, lower is better). A component
whose ratio is at most ``PREDICTIVE_AREA_RATIO`` is said to predict errors, and
its suggested threshold is the value below which the lowest ``GATE_DISCARD`` of
genuine pairs fall.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from facetrail.evaluation.datasets import Pair
from facetrail.evaluation.demographics import labelled_set, score_pairs, threshold_at_fmr
from facetrail.evaluation.templates import QUALITY_COMPONENTS, ImageTemplate
from facetrail.evaluation.verification import pair_distances

MAX_DISCARD = 0.2
DISCARD_STEPS = 41
PREDICTIVE_AREA_RATIO = 0.9
GATE_DISCARD = 0.02
"""The share of genuine pairs a suggested threshold refuses (a gate that refuses more costs investigators too much)."""
MID_GREY = 127.5


def utility(component: str, values: np.ndarray) -> np.ndarray:
    """A component's measurements as "higher is better" (see the module docstring)."""
    if component not in QUALITY_COMPONENTS:
        raise ValueError(f"unknown quality component {component!r}")
    values = np.asarray(values, dtype=np.float64)
    if component in ("yaw_deg", "roll_deg"):
        return -np.abs(values)
    if component == "brightness":
        return -np.abs(values - MID_GREY)
    return values


def edc_curve(errors: np.ndarray, pair_quality: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """FNMR of the genuine pairs left after discarding the lowest-quality ``fraction`` of them, for each fraction.

    ``errors[k]``: pair k is a false non-match at the fixed threshold; ``pair_quality[k]``: its pair quality
    (NaN, not measured, counts as lowest). Pairs of equal quality are discarded in their given order.
    """
    errors = np.asarray(errors, dtype=bool)
    if errors.size == 0:
        raise ValueError("no genuine pairs")
    order = np.argsort(np.nan_to_num(pair_quality, nan=-np.inf), kind="stable")
    kept_errors = np.concatenate(([0], np.cumsum(errors[order][::-1])))[::-1]
    # kept_errors[d]: errors among the pairs left after discarding the d lowest.
    discarded = np.minimum(np.rint(np.asarray(fractions) * errors.size).astype(np.int64), errors.size - 1)
    return kept_errors[discarded] / (errors.size - discarded)


def area_ratio(curve: np.ndarray, start: float) -> float:
    """Area under an EDC over its fractions relative to random discarding (FNMR stays at ``start``)."""
    if start == 0:
        return 1.0
    return float(np.trapezoid(curve) / (start * (curve.size - 1)))


def edc_report(
    genuine_distances: np.ndarray, quality: Mapping[str, tuple[np.ndarray, np.ndarray]], threshold: float
) -> tuple[dict, dict[str, np.ndarray], np.ndarray]:
    """Per component (``quality[name]`` = the two images' measurements for every genuine pair): the EDC summary
    (JSON-ready), the curves, and the discard fractions they are sampled at."""
    errors = np.asarray(genuine_distances) > threshold
    fractions = np.linspace(0.0, MAX_DISCARD, DISCARD_STEPS)
    start = float(errors.mean())
    curves = {}
    components = {}
    for name, (first, second) in quality.items():
        pair_quality = np.minimum(utility(name, first), utility(name, second))  # NaN (not measured) stays NaN: lowest
        curve = edc_curve(errors, pair_quality, fractions)
        curves[name] = curve
        ratio = area_ratio(curve, start)
        gate = np.nanquantile(pair_quality, GATE_DISCARD, method="inverted_cdf") if np.isfinite(pair_quality).any() else None
        components[name] = {
            "fnmr_after_discarding": {f"{f:g}": float(curve[k]) for k, f in enumerate(fractions) if k % 10 == 0},
            "area_ratio": ratio,
            "predicts_errors": ratio <= PREDICTIVE_AREA_RATIO,
            "suggested_threshold": None if gate is None else _measurement(name, float(gate)),
        }
    curves["ideal (discard errors first)"] = np.maximum(start - fractions, 0) / (1 - fractions)
    return {
        "protocol": "error_versus_discard",
        "threshold": float(threshold),
        "genuine_pairs": int(errors.size),
        "fnmr_before_discarding": start,
        "max_discard": MAX_DISCARD,
        "predictive_area_ratio": PREDICTIVE_AREA_RATIO,
        "gate_discard": GATE_DISCARD,
        "components": components,
    }, curves, fractions


def _measurement(component: str, gate_utility: float) -> float:
    """A utility threshold back in the component's own units (for yaw and roll: the largest absolute angle; for
    brightness: the distance from mid-grey)."""
    return -gate_utility if component in ("yaw_deg", "roll_deg", "brightness") else gate_utility


def pairs_edc_report(
    pairs: list[Pair], templates: Mapping[Path, ImageTemplate], threshold: float | None = None, fmr: float = 1e-3
) -> tuple[dict, dict[str, np.ndarray], np.ndarray]:
    """``edc_report`` on the same-person pairs of a pairs file, every quality component; the threshold is given, or
    fixed where FMR is ``fmr`` over every impostor pair among the pairs' images (not only the listed ones)."""
    genuine = [pair for pair in pairs if pair.same]
    if not genuine:
        raise ValueError("the pairs file has no same-person pairs")
    distances, _, _ = pair_distances(genuine, templates)
    if threshold is None:
        people: dict[str, set[Path]] = {}
        for pair in pairs:
            people.setdefault(pair.first_identity, set()).add(pair.first)
            people.setdefault(pair.second_identity, set()).add(pair.second)
        identities = {name: sorted(paths) for name, paths in people.items()}
        data, _ = labelled_set(identities, dict.fromkeys(identities, "all"), templates)
        threshold, rule = threshold_at_fmr(score_pairs(data), fmr)
        rule += " among the pairs' images"
    else:
        rule = "given"

    def measured(path: Path, component: int) -> float:
        template = templates[path]
        return np.nan if template.failed else template.quality[component]

    quality = {
        name: (np.array([measured(p.first, k) for p in genuine]), np.array([measured(p.second, k) for p in genuine]))
        for k, name in enumerate(QUALITY_COMPONENTS)
    }
    report, curves, fractions = edc_report(distances, quality, threshold)
    return {**report, "threshold_rule": rule}, curves, fractions
