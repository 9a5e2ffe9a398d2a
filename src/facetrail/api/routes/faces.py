"""Finding the faces in a photograph, for choosing one before a search."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile

from facetrail.api.deps import CurrentActor, SystemDep
from facetrail.api.errors import COMMON_ERRORS, UPLOAD_ERRORS, documented
from facetrail.api.files import read_upload
from facetrail.api.schemas import FaceOut, FacesOut
from facetrail.engine.decode import DecodedImage
from facetrail.engine.pipeline import FoundFace

router = APIRouter(prefix="/faces", tags=["searches"], responses={**COMMON_ERRORS, **UPLOAD_ERRORS, **documented(503)})


@router.post("", summary="Find the faces in a photograph", response_model=FacesOut)
def find_faces(
    image: Annotated[UploadFile, File(description="The photograph.")],
    actor: CurrentActor,
    system: SystemDep,
    face_box: Annotated[str | None, Form(max_length=100, description="x,y,w,h: measure only the face in this box.")] = None,
) -> FacesOut:
    """The faces found (largest first) with their boxes and quality; nothing is searched or stored (investigators;
    audited). Photographs over ``limits.max_interactive_pixels`` are refused (413). It runs on an engine of its own,
    one photograph at a time, so it never delays a search; 503 when others' photographs keep it busy."""
    return describe_faces(*system.searches.inspect_faces(actor, read_upload(image), face_box or None))


def describe_faces(decoded: DecodedImage, faces: list[FoundFace]) -> FacesOut:
    """The faces found in a decoded photograph, largest first, with boxes and quality."""
    return FacesOut(
        format=decoded.format, width=decoded.pixels.shape[1], height=decoded.pixels.shape[0],
        faces=[FaceOut(face=number, box=face.detection.box.as_list(), detector=face.detection.detector,
                       score=face.detection.score, quality=face.quality.to_dict())
               for number, face in enumerate(faces, start=1)],
    )
