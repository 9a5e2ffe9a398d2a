"""The face pipeline: decode → detect → landmarks → aligned chip → quality → template.

``FaceEngine.find_faces`` does everything up to quality for every face in an
image (cheap); ``FaceEngine.template`` runs the recognition model on the one
face a caller chose (expensive). The rules for choosing a face live here too:
a probe's face is the only one or the one chosen by number; gallery images need
exactly one (or one dominant) acceptable face; evaluation on photo sets takes
the face nearest the centre or the largest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from facetrail.config import EngineConfig, EnrolmentConfig
from facetrail.engine.decode import DecodedImage, decode_image
from facetrail.engine.detect import Detection, FaceDetector
from facetrail.engine.geometry import Box
from facetrail.engine.models import FaceModel, load_model
from facetrail.engine.quality import Quality, assess_quality
from facetrail.errors import MultipleFacesError, NoFaceError, NoSuchFaceError, PoorQualityError, SeveralFacesError

FaceChoice = Literal["centre", "largest"]

EMBEDDING_PASSES = {"none": 1, "mirror": 2, "mirror+context": 3}
"""Model passes per face for each ``embedding.augmentation``."""


@dataclass(frozen=True, eq=False)
class FoundFace:
    """One face in an image, measured but not yet embedded."""

    detection: Detection
    landmarks: np.ndarray
    chip: np.ndarray
    quality: Quality
    context_chip: np.ndarray | None = None
    """The wider-margin chip, when the configured augmentation uses it."""


@dataclass(frozen=True)
class Template:
    """A face embedding and what produced it."""

    embedding: np.ndarray
    model_name: str
    model_version: str
    augmentation: str
    passes: int
    precision: str
    """The arithmetic the network ran in ("float32" or "int8")."""


class FaceEngine:
    """Decodes images, finds and measures faces, and computes templates under one ``EngineConfig``."""

    def __init__(self, config: EngineConfig | None = None, model: FaceModel | None = None) -> None:
        self.config = config or EngineConfig()
        embedding = self.config.embedding
        self.model = model or load_model(backend=embedding.backend, threads=embedding.threads,
                                        precision=embedding.precision)
        self.detector = FaceDetector(self.config.detection)

    def decode(self, data: bytes) -> DecodedImage:
        """Decode untrusted image bytes under the configured limits."""
        return decode_image(data, self.config.limits)

    def find_faces(self, pixels: np.ndarray, face_box: Box | None = None) -> list[FoundFace]:
        """Every face in the image (largest first), or just the one in ``face_box`` when given."""
        if face_box is not None:
            detections = [self.detector.detect_in_box(pixels, face_box)]
        else:
            detections = self.detector.detect(pixels)
        return [self.measure(pixels, detection) for detection in detections]

    def model_chips(self, face: FoundFace) -> list[np.ndarray]:
        """The chips the configured test-time augmentation embeds for one face: the aligned chip, its mirror image
        ('mirror'), the wider-context chip ('mirror+context')."""
        augmentation = self.config.embedding.augmentation
        chips = [face.chip]
        if augmentation in ("mirror", "mirror+context"):
            chips.append(np.ascontiguousarray(face.chip[:, ::-1]))
        if augmentation == "mirror+context":
            if face.context_chip is None:
                raise ValueError("this face was measured without the wider chip that 'mirror+context' needs")
            chips.append(face.context_chip)
        return chips

    def template(self, face: FoundFace) -> Template:
        """Embed one face, averaging over the configured test-time augmentation (its chips as one batch)."""
        chips = self.model_chips(face)
        embedding = self.model.embed(chips).mean(axis=0).astype(np.float32)
        return Template(
            embedding=embedding,
            model_name=self.model.name,
            model_version=self.model.version,
            augmentation=self.config.embedding.augmentation,
            passes=len(chips),
            precision=self.model.precision,
        )

    def aligned_chip(self, pixels: np.ndarray, box: Box) -> np.ndarray:
        """The aligned chip the model embeds for the face in ``box`` (a box recorded at search or enrolment time)."""
        return self.measure(pixels, Detection(box, None, "recorded")).chip

    def measure(self, pixels: np.ndarray, detection: Detection) -> FoundFace:
        """Landmarks, aligned chip(s) and quality for one detection."""
        landmarks = self.model.landmarks(pixels, detection.box)
        chip = self.model.align(pixels, landmarks)
        quality = assess_quality(detection, landmarks, chip, self.config.quality)
        context_chip = None
        if self.config.embedding.augmentation == "mirror+context":
            context_chip = self.model.align(pixels, landmarks, self.config.embedding.context_padding)
        return FoundFace(detection, landmarks, chip, quality, context_chip)


def choose_face(faces: list[FoundFace], rule: FaceChoice, image_shape: tuple[int, ...]) -> FoundFace:
    """Pick the face nearest the image centre or the largest face (for photo sets such as LFW)."""
    if not faces:
        raise NoFaceError("no face found")
    if rule == "largest":
        return max(faces, key=lambda f: f.detection.box.area)
    cy, cx = image_shape[0] / 2, image_shape[1] / 2

    def distance_to_centre(face: FoundFace) -> float:
        fx, fy = face.detection.box.centre
        return (fx - cx) ** 2 + (fy - cy) ** 2

    return min(faces, key=distance_to_centre)


def probe_face(faces: list[FoundFace], number: int | None = None) -> FoundFace:
    """The face a probe is searched with: face ``number`` (1 = the first of ``faces``, the largest), or the only one.

    NoFaceError when there is none, SeveralFacesError (with their boxes) when there are several and no number,
    NoSuchFaceError when there is no face ``number``.
    """
    if not faces:
        raise NoFaceError("no face found in the probe; draw the face box by hand")
    if number is None and len(faces) > 1:
        raise SeveralFacesError([face.detection.box.as_list() for face in faces])
    if number is not None and not 1 <= number <= len(faces):
        raise NoSuchFaceError(f"face {number} does not exist: {len(faces)} face(s) found")
    return faces[(number or 1) - 1]


def gallery_face(faces: list[FoundFace], rules: EnrolmentConfig) -> FoundFace:
    """The one face a gallery image may contribute, or the reason the image is refused."""
    if not faces:
        raise NoFaceError("no face found")
    ordered = sorted(faces, key=lambda f: f.detection.box.area, reverse=True)
    if len(ordered) > 1:
        ratio = ordered[0].detection.box.area / max(ordered[1].detection.box.area, 1e-9)
        dominant = rules.dominant_face_ratio > 0 and ratio >= rules.dominant_face_ratio
        if not dominant:
            raise MultipleFacesError(
                f"{len(ordered)} faces found; a gallery image must show one person"
                + (f" (largest is only {ratio:.1f}× the next, {rules.dominant_face_ratio:g}× required)" if rules.dominant_face_ratio > 0 else "")
            )
    face = ordered[0]
    if rules.require_acceptable_quality and not face.quality.acceptable:
        raise PoorQualityError("poor quality: " + "; ".join(face.quality.reasons))
    return face
