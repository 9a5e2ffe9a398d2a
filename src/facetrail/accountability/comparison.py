"""An examiner's structured facial comparison, stored with their decision on a candidate.

Modelled on the Facial Identification Scientific Working Group's guidance: a morphological comparison goes feature by
feature (FISWG, "Facial Image Comparison Feature List for Morphological Analysis", v2.0, 2018-09-11, lists the
components from the top of the head down; this is its top level, with marks and tattoos as one row), each feature
found similar, dissimilar or not visible in one of the images, and ends in a conclusion on a stated scale (after
FISWG, "Facial Comparison Overview and Methodology Guidelines", v1.0, 2019-10-25, and OSAC 2022-S-0007). The
two-person rule counts the decision (possible lead / not a match / inconclusive); the conclusion must agree with it.
"""

from __future__ import annotations

from typing import Any

from facetrail.errors import FacetrailError

FEATURES: dict[str, str] = {
    "face_head_outline": "Face and head outline",
    "hairline": "Hair line",
    "forehead": "Forehead",
    "eyebrows": "Eyebrows",
    "eyes": "Eyes",
    "nose": "Nose",
    "ears": "Ears",
    "mouth": "Mouth",
    "chin": "Chin and jaw line",
    "cheeks": "Cheeks",
    "facial_hair": "Facial hair",
    "marks": "Scars, marks and tattoos",
}
"""Feature key -> name shown, from the top of the head down."""

FINDINGS: dict[str, str] = {"similar": "similar", "dissimilar": "dissimilar", "not_visible": "not visible"}
"""What an examiner found of one feature -> words shown."""

CONCLUSIONS: dict[str, tuple[str, str]] = {
    "identification": ("Identification: the same person", "possible_lead"),
    "strong_support_same": ("Strong support for the same person", "possible_lead"),
    "support_same": ("Support for the same person", "possible_lead"),
    "inconclusive": ("Lacks support either way (inconclusive)", "inconclusive"),
    "support_different": ("Support for different people", "not_a_match"),
    "strong_support_different": ("Strong support for different people", "not_a_match"),
    "exclusion": ("Exclusion: different people", "not_a_match"),
}
"""Conclusion key -> (words shown, the decision it counts as under the two-person rule), strongest 'same' first."""


def check_comparison(decision: str, comparison: dict[str, Any] | None) -> dict[str, Any] | None:
    """The comparison as stored ({"features": {feature: finding}, "conclusion": key}), or None without one; refused
    (naming the problem) for an unknown feature, finding or conclusion, or a conclusion that does not agree with the
    decision."""
    if comparison is None:
        return None
    if not isinstance(comparison, dict) or set(comparison) - {"features", "conclusion"}:
        raise FacetrailError("comparison: expected an object with 'features' and 'conclusion'")
    features = comparison.get("features") or {}
    if not isinstance(features, dict):
        raise FacetrailError("comparison features: expected an object mapping a feature to its finding")
    for feature, finding in features.items():
        if feature not in FEATURES:
            raise FacetrailError(f"comparison feature {str(feature)[:40]!r}: expected one of {', '.join(FEATURES)}")
        if finding not in FINDINGS:
            raise FacetrailError(f"comparison feature {feature}: the finding must be one of {', '.join(FINDINGS)}")
    conclusion = comparison.get("conclusion")
    if conclusion not in CONCLUSIONS:
        raise FacetrailError(f"comparison conclusion: expected one of {', '.join(CONCLUSIONS)}")
    counts_as = CONCLUSIONS[conclusion][1]
    if counts_as != decision:
        raise FacetrailError(f"the conclusion {CONCLUSIONS[conclusion][0]!r} counts as {counts_as.replace('_', ' ')}, "
                             f"not {decision.replace('_', ' ')}: choose a conclusion that agrees with the decision")
    return {"features": {feature: features[feature] for feature in FEATURES if feature in features}, "conclusion": conclusion}
