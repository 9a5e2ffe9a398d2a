"""Face image quality: measurements and an acceptable/poor verdict with reasons.

Measurements are taken from the detection, the five landmarks and the aligned
chip; the thresholds live in ``QualityThresholds`` (configuration). A poor
verdict lists every failed check, so an examiner knows why.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from facetrail.config import QualityThresholds
from facetrail.engine.detect import Detection

NOSE_DEPTH_RATIO = 0.7
"""Base of the nose in front of the eye plane, as a fraction of half the inter-eye distance (average adult face)."""


@dataclass(frozen=True)
class Quality:
    """Quality measurements of one face and the verdict under the configured thresholds."""

    face_px: float
    inter_eye_px: float
    sharpness: float
    brightness: float
    contrast: float
    yaw_deg: float
    roll_deg: float
    detector_score: float | None
    acceptable: bool
    reasons: tuple[str, ...]

    @property
    def verdict(self) -> str:
        return "acceptable" if self.acceptable else "poor"

    def to_dict(self) -> dict:
        """JSON-ready form, rounded for reading."""
        data = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in asdict(self).items()}
        data["reasons"] = list(self.reasons)
        data["verdict"] = self.verdict
        return data


def assess_quality(detection: Detection, landmarks: np.ndarray, chip: np.ndarray, thresholds: QualityThresholds) -> Quality:
    """Measure a face and judge it against ``thresholds``."""
    left_eye, right_eye = _eye_centres(landmarks)
    nose = landmarks[4]
    eye_vector = right_eye - left_eye
    inter_eye = float(np.hypot(*eye_vector))
    roll = math.degrees(math.atan2(eye_vector[1], eye_vector[0]))
    yaw = _approximate_yaw(left_eye, right_eye, nose, inter_eye)
    grey = _grey(chip)
    measured = dict(
        face_px=float(detection.box.width),
        inter_eye_px=inter_eye,
        sharpness=_laplacian_variance(grey),
        brightness=float(grey.mean()),
        contrast=float(grey.std()),
        yaw_deg=yaw,
        roll_deg=roll,
        detector_score=detection.score,
    )
    reasons = _failed_checks(measured, thresholds)
    return Quality(**measured, acceptable=not reasons, reasons=tuple(reasons))


def _failed_checks(m: dict, t: QualityThresholds) -> list[str]:
    checks = [
        (m["face_px"] < t.min_face_px, f"face {m['face_px']:.0f} px wide (minimum {t.min_face_px:g})"),
        (m["inter_eye_px"] < t.min_inter_eye_px, f"eyes {m['inter_eye_px']:.0f} px apart (minimum {t.min_inter_eye_px:g})"),
        (m["sharpness"] < t.min_sharpness, f"blurred (sharpness {m['sharpness']:.1f}, minimum {t.min_sharpness:g})"),
        (m["brightness"] < t.min_brightness, f"too dark (brightness {m['brightness']:.0f}, minimum {t.min_brightness:g})"),
        (m["brightness"] > t.max_brightness, f"too bright (brightness {m['brightness']:.0f}, maximum {t.max_brightness:g})"),
        (m["contrast"] < t.min_contrast, f"low contrast ({m['contrast']:.1f}, minimum {t.min_contrast:g})"),
        (abs(m["yaw_deg"]) > t.max_abs_yaw_deg, f"turned away (yaw about {m['yaw_deg']:.0f}°, limit ±{t.max_abs_yaw_deg:g}°)"),
        (abs(m["roll_deg"]) > t.max_abs_roll_deg, f"tilted (roll {m['roll_deg']:.0f}°, limit ±{t.max_abs_roll_deg:g}°)"),
        (
            m["detector_score"] is not None and m["detector_score"] < t.min_detector_score,
            f"weak detection (score {m['detector_score'] or 0:.2f}, minimum {t.min_detector_score:g})",
        ),
    ]
    return [reason for failed, reason in checks if failed]


def _eye_centres(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two eye centres, the one further left in the image first (dlib's 5-point order: 0-1 one eye, 2-3 the other)."""
    first, second = landmarks[0:2].mean(axis=0), landmarks[2:4].mean(axis=0)
    return (first, second) if first[0] <= second[0] else (second, first)


def _approximate_yaw(left_eye: np.ndarray, right_eye: np.ndarray, nose: np.ndarray, inter_eye: float) -> float:
    """Yaw in degrees from how far the nose base sits off the eyes' midline (weak-perspective model)."""
    if inter_eye <= 0:
        return 0.0
    axis = (right_eye - left_eye) / inter_eye
    offset = float(np.dot(nose - (left_eye + right_eye) / 2, axis))
    return math.degrees(math.atan(offset / (NOSE_DEPTH_RATIO * inter_eye / 2)))


def _grey(chip: np.ndarray) -> np.ndarray:
    return chip.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _laplacian_variance(grey: np.ndarray) -> float:
    lap = -4 * grey[1:-1, 1:-1] + grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:]
    return float(lap.var())
