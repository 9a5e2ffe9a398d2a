"""Templates for evaluation photo sets: one per image, from the face nearest the centre or the largest face.

An image that yields no template is a failure to enrol (FTE); it is kept, with
its reason, so the protocols can count it as an error instead of dropping it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facetrail.config import EngineConfig
from facetrail.engine.decode import read_image_bytes
from facetrail.engine.parallel import analyse_many
from facetrail.engine.pipeline import FaceChoice, FaceEngine, choose_face
from facetrail.errors import FacetrailError


@dataclass(frozen=True)
class ImageTemplate:
    """The outcome for one evaluation image: an embedding, or the reason there is none."""

    path: Path
    embedding: np.ndarray | None
    reason: str = ""
    detector: str = ""
    faces: int = 0

    @property
    def failed(self) -> bool:
        return self.embedding is None


@dataclass(frozen=True)
class _Job:
    path: Path
    choice: FaceChoice


def _template_job(engine: FaceEngine, job: _Job) -> ImageTemplate:
    try:
        image = engine.decode(read_image_bytes(job.path, engine.config.limits))
        faces = engine.find_faces(image.pixels)
        face = choose_face(faces, job.choice, image.pixels.shape)
        template = engine.template(face)
    except FacetrailError as exc:
        return ImageTemplate(job.path, None, str(exc))
    return ImageTemplate(job.path, template.embedding, "", face.detection.detector, len(faces))


def compute_templates(
    paths: Iterable[Path],
    config: EngineConfig,
    choice: FaceChoice = "centre",
    workers: int = 0,
    on_done: Callable[[ImageTemplate], None] = lambda template: None,
) -> dict[Path, ImageTemplate]:
    """A template (or failure) for every distinct path, computed in parallel."""
    unique = list(dict.fromkeys(paths))
    results = {}
    for job, template in analyse_many((_Job(p, choice) for p in unique), _template_job, config, workers):
        results[job.path] = template
        on_done(template)
    return results


def failure_summary(templates: Iterable[ImageTemplate]) -> dict:
    """Count and list the failures to enrol, and which detector found the faces that were used."""
    templates = list(templates)
    failed = [t for t in templates if t.failed]
    detectors: dict[str, int] = {}
    for t in templates:
        if not t.failed:
            detectors[t.detector] = detectors.get(t.detector, 0) + 1
    return {
        "images": len(templates),
        "failures_to_enrol": len(failed),
        "failed_images": [{"path": str(t.path), "reason": t.reason} for t in failed],
        "faces_found_by": detectors,
        "images_with_several_faces": sum(1 for t in templates if t.faces > 1),
    }
