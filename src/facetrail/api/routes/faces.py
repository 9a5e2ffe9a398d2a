"""Finding the faces in a photograph, for choosing one before a search."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile

from facetrail.http.deps import CurrentActor, SystemDep
from facetrail.http.errors import COMMON_ERRORS, UPLOAD_ERRORS, documented
from facetrail.http.files import read_upload
from facetrail.http.schemas import FacesOut, describe_faces

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

