"""Face detection: dlib's HOG detector at an automatic scale, with a CNN fallback.

HOG scans a copy of the photo resized so that the smallest face wanted
(``min_face_px``, or a fraction of the photo's shorter side) fills its 80-pixel
window, within a pixel budget: small photos grow, large ones shrink, and no
pixel more is scanned than that needs. When HOG
finds nothing, dlib's CNN (MMOD) detector runs on a size-bounded copy.
An examiner may instead give the face box by hand (``detect_in_box``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from facetrail.config import DetectionConfig
from facetrail.engine.geometry import Box
from facetrail.errors import ConfigError

HOG_WINDOW_PX = 80
MAX_ENLARGEMENT = 4.0
MANUAL_BOX_MIN_IOU = 0.3
"""A detector box inside a hand-drawn box replaces it when they overlap at least this much."""


@dataclass(frozen=True)
class Detection:
    """A face found in an image: its box in original pixels, the detector's score and which detector found it."""

    box: Box
    score: float | None
    """HOG: SVM margin (>0 is a face); CNN: MMOD confidence; None for a box drawn by hand."""
    detector: str
    """'hog', 'cnn' or 'manual'."""


class FaceDetector:
    """Finds faces in RGB uint8 images according to a ``DetectionConfig``."""

    def __init__(self, config: DetectionConfig) -> None:
        import dlib
        import face_recognition_models as weights

        from facetrail.engine.model_files import frontal_face_detector

        self.config = config
        self._hog = frontal_face_detector()
        self._cnn = None
        if config.fallback == "cnn":
            self._cnn = dlib.cnn_face_detection_model_v1(weights.cnn_face_detector_model_location())

    def detect(self, pixels: np.ndarray) -> list[Detection]:
        """All faces in the image, largest first; HOG first, the CNN fallback if HOG finds none."""
        found = self.detect_hog(pixels)
        if not found and self._cnn is not None:
            found = self.detect_cnn(pixels)
        return sorted(found, key=lambda d: d.box.area, reverse=True)

    def detect_in_box(self, pixels: np.ndarray, box: Box) -> Detection:
        """Refine a hand-drawn box: the detector's own box where it finds the face there, else the box as drawn.

        The region is scanned at the scale the whole photo is scanned at, so a box drawn around a face the
        automatic pass finds gives that same detection, or larger where the drawn face is smaller than that
        scale can find.
        """
        height, width = pixels.shape[:2]
        margin_x, margin_y = box.width / 2, box.height / 2
        left, top = max(0, int(box.left - margin_x)), max(0, int(box.top - margin_y))
        right, bottom = min(width, int(box.right + margin_x)), min(height, int(box.bottom + margin_y))
        if right <= left or bottom <= top:
            return Detection(box, None, "manual")
        crop = np.ascontiguousarray(pixels[top:bottom, left:right])
        drawn_face = max(8.0, 0.6 * min(box.width, box.height))
        scale = max(self.working_scale(pixels.shape[:2], self.smallest_face(pixels.shape[:2])),
                    self.working_scale(crop.shape[:2], drawn_face))
        best: Detection | None = None
        for found in self._hog_at(crop, scale):
            shifted = Box(found.box.left + left, found.box.top + top, found.box.width, found.box.height)
            if shifted.iou(box) >= MANUAL_BOX_MIN_IOU and (best is None or shifted.iou(box) > best.box.iou(box)):
                best = Detection(shifted, found.score, found.detector)
        return best or Detection(box, None, "manual")

    @property
    def has_fallback(self) -> bool:
        return self._cnn is not None

    def detect_hog(self, pixels: np.ndarray) -> list[Detection]:
        """HOG pass only, at the working scale for the configured smallest face (with ``hog_unenlarged_first``, at
        the photo's own size first when that scale enlarges, and enlarged only if that finds no face scoring
        ``hog_unenlarged_min_score``)."""
        scale = self.working_scale(pixels.shape[:2], self.smallest_face(pixels.shape[:2]))
        if not (self.config.hog_unenlarged_first and scale > 1.0):
            return self._hog_at(pixels, scale)
        found = self._hog_at(pixels, 1.0)
        if any(detection.score >= self.config.hog_unenlarged_min_score for detection in found):
            return found
        return self._hog_at(pixels, scale) or found

    def smallest_face(self, shape: tuple[int, ...]) -> float:
        """Width in original pixels of the smallest face wanted in a photo of this shape."""
        return max(self.config.min_face_px, self.config.min_face_fraction * min(shape[:2]))

    def working_scale(self, shape: tuple[int, ...], min_face_px: float) -> float:
        """The factor HOG's copy of the photo is resized by: a face of ``min_face_px`` fills HOG's 80-pixel
        window, within 4× enlargement and ``max_scanned_pixels`` (scanning cost grows with the copy's area)."""
        wanted = HOG_WINDOW_PX / max(1.0, min_face_px)
        affordable = math.sqrt(self.config.max_scanned_pixels / max(1, shape[0] * shape[1]))
        return min(wanted, affordable, MAX_ENLARGEMENT)

    def _hog_at(self, pixels: np.ndarray, scale: float) -> list[Detection]:
        """HOG on the photo resized by ``scale``: by dlib's own pyramid_up for exactly 2× and 4× (the enlargement
        dlib's HOG is normally run with; on LFW it finds a face that a bilinear 2× misses), by bilinear otherwise."""
        doublings = round(math.log2(scale))
        if doublings in (1, 2) and abs(scale - 2**doublings) < 1e-9:
            rects, scores, _ = self._hog.run(pixels, doublings, self.config.hog_threshold)
            scale = 1.0  # dlib maps its boxes back to the photo
        else:
            rects, scores, _ = self._hog.run(_resize(pixels, scale), 0, self.config.hog_threshold)
        return [Detection(_box(r).scaled(1 / scale), float(s), "hog") for r, s in zip(rects, scores)]

    def detect_cnn(self, pixels: np.ndarray) -> list[Detection]:
        """CNN (MMOD) pass only, on a copy resized into [cnn_min_side, cnn_max_side]. Needs fallback = 'cnn'."""
        if self._cnn is None:
            raise ConfigError("the CNN detector is not loaded (detection.fallback is 'none')")
        longest = max(pixels.shape[:2])
        target = min(self.config.cnn_max_side, max(self.config.cnn_min_side, longest))
        scale = target / longest
        found = self._cnn(_resize(pixels, scale), 0)
        return [Detection(_box(m.rect).scaled(1 / scale), float(m.confidence), "cnn") for m in found]


def _box(rect) -> Box:
    return Box(rect.left(), rect.top(), rect.right() - rect.left(), rect.bottom() - rect.top())


def _resize(pixels: np.ndarray, scale: float) -> np.ndarray:
    if abs(scale - 1.0) < 1e-6:
        return pixels
    height, width = pixels.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR))
