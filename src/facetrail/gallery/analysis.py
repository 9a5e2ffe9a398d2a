"""The face work of enrolment, run in worker processes or Ray actors: one photograph in, its template or the reason
it gives none out.

It is kept apart from ``gallery.enrol`` so a worker imports only the engine, not the store, the index or their
libraries (most of a second of each worker's start-up).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from facetrail.config import EnrolmentConfig
from facetrail.engine.detect import Detection
from facetrail.engine.pipeline import FaceEngine, Template, gallery_face
from facetrail.engine.quality import Quality
from facetrail.errors import FacetrailError

logger = logging.getLogger("facetrail.enrol")


@dataclass(frozen=True)
class Photograph:
    """What a worker needs of one photograph: its bytes, its name (for the log) and the enrolment rules."""

    name: str
    data: bytes
    rules: EnrolmentConfig


@dataclass(frozen=True)
class Analysis:
    """The template of a photograph's one gallery face, how that face was found, and the photograph's size."""

    width: int
    height: int
    detection: Detection
    quality: Quality
    template: Template


@dataclass(frozen=True)
class Refusal:
    """Why a photograph gives no template."""

    reason: str


def analyse(engine: FaceEngine, photograph: Photograph) -> Analysis | Refusal:
    """Decode, find the one gallery face and embed it."""
    try:
        image = engine.decode(photograph.data)
        face = gallery_face(engine.find_faces(image.pixels), photograph.rules)
        template = engine.template(face)
    except FacetrailError as exc:
        return Refusal(str(exc))
    except Exception as exc:  # noqa: BLE001 - one image's unexpected failure must not stop the batch
        # its text may name the server's files (a model, a temporary file): the log has it, the uploader its kind
        logger.exception("internal error while analysing %s", photograph.name)
        return Refusal(f"internal error while analysing the image ({type(exc).__name__}); the server's log has the "
                       "details")
    return Analysis(image.pixels.shape[1], image.pixels.shape[0], face.detection, face.quality, template)
