"""1:1 comparisons of two photographs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, UploadFile, status

from facetrail.api.deps import CurrentActor, EngineLock, SystemDep
from facetrail.api.errors import COMMON_ERRORS, UPLOAD_ERRORS
from facetrail.api.files import read_upload
from facetrail.api.routes.searches import AuthorizationRef, CaseNumber, Note, Offence, Purpose
from facetrail.api.schemas import ComparisonOut

router = APIRouter(prefix="/comparisons", tags=["searches"], responses={**COMMON_ERRORS, **UPLOAD_ERRORS})


@router.post("", summary="Compare two photographs", response_model=ComparisonOut, status_code=status.HTTP_201_CREATED)
def compare(
    first: Annotated[UploadFile, File(description="The first photograph (the probe).")],
    second: Annotated[UploadFile, File(description="The second photograph.")],
    case_number: CaseNumber,
    purpose: Purpose,
    offence: Offence,
    actor: CurrentActor,
    system: SystemDep,
    lock: EngineLock,
    authorization_ref: AuthorizationRef = "",
    note: Note = "",
) -> ComparisonOut:
    """Compare two photographs (1:1) under the same rules as a search: role, policy, audit (investigators)."""
    first_data, second_data = read_upload(first), read_upload(second)
    with lock:
        result = system.compare(actor, first_data, second_data, case_number, purpose, offence, authorization_ref, note)
    return ComparisonOut.model_validate(result.to_dict())
