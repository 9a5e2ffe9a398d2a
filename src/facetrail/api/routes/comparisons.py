"""1:1 comparisons of two photographs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, UploadFile, status

from facetrail.http.deps import CurrentActor, SystemDep
from facetrail.http.forms import CaseForm
from facetrail.http.errors import COMMON_ERRORS, UPLOAD_ERRORS
from facetrail.http.files import read_upload
from facetrail.http.schemas import ComparisonOut

router = APIRouter(prefix="/comparisons", tags=["searches"], responses={**COMMON_ERRORS, **UPLOAD_ERRORS})


@router.post("", summary="Compare two photographs", response_model=ComparisonOut, status_code=status.HTTP_201_CREATED)
def compare(
    first: Annotated[UploadFile, File(description="The first photograph (the probe).")],
    second: Annotated[UploadFile, File(description="The second photograph.")],
    request: CaseForm,
    actor: CurrentActor,
    system: SystemDep,
) -> ComparisonOut:
    """Compare two photographs (1:1) under the same rules as a search: role, policy, audit (investigators)."""
    result = system.searches.compare(actor, read_upload(first), read_upload(second), request)
    return ComparisonOut.model_validate(result.to_dict())
