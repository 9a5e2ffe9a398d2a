"""Finding the faces in a photograph, for choosing one before a search."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile

from facetrail.api.deps import CurrentActor, EngineLock, SystemDep
from facetrail.api.errors import COMMON_ERRORS, UPLOAD_ERRORS
from facetrail.api.files import read_upload
from facetrail.api.schemas import FaceOut, FacesOut
from facetrail.engine.decode import DecodedImage
from facetrail.engine.geometry import Box
from facetrail.engine.pipeline import FaceEngine

router = APIRouter(prefix="/faces", tags=["searches"], responses={**COMMON_ERRORS, **UPLOAD_ERRORS})


@router.post("", summary="Find the faces in a photograph", response_model=FacesOut)
def find_faces(
    image: Annotated[UploadFile, File(description="The photograph.")],
    actor: CurrentActor,
    system: SystemDep,
    lock: EngineLock,
    face_box: Annotated[str | None, Form(description="x,y,w,h: measure only the face in this box.")] = None,
) -> FacesOut:
    """The faces found (largest first) with their boxes and quality; nothing is searched or stored (any user)."""
    box = Box.parse(face_box) if face_box else None
    data = read_upload(image)
    with lock:
        return describe_faces(system.face_engine, system.face_engine.decode(data), box)


def describe_faces(engine: FaceEngine, decoded: DecodedImage, face_box: Box | None) -> FacesOut:
    """The faces in a decoded photograph (or the one in ``face_box``), largest first, with boxes and quality."""
    faces = engine.find_faces(decoded.pixels, face_box)
    return FacesOut(
        format=decoded.format, width=decoded.pixels.shape[1], height=decoded.pixels.shape[0],
        faces=[FaceOut(face=number, box=face.detection.box.as_list(), detector=face.detection.detector,
                       score=face.detection.score, quality=face.quality.to_dict())
               for number, face in enumerate(faces, start=1)],
    )
