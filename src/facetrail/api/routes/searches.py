"""Searches: running one, your own list, a search's candidates, and the probe and candidate photographs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Response, UploadFile, status

from facetrail.api.deps import CurrentActor, EngineLock, Rank, SearchId, SystemDep
from facetrail.api.errors import COMMON_ERRORS, UPLOAD_ERRORS, ApiError
from facetrail.api.files import IMAGE_RESPONSE, image_response, read_upload
from facetrail.api.schemas import MySearch, SearchDetail, SearchResultOut

router = APIRouter(prefix="/searches", tags=["searches"], responses=COMMON_ERRORS)

CaseNumber = Annotated[str, Form(max_length=100, description="Case number, in the format the policy sets.")]
Purpose = Annotated[str, Form(max_length=100, description="A permitted purpose, e.g. criminal_investigation.")]
Offence = Annotated[str, Form(max_length=100, description="An offence category from the policy, e.g. robbery.")]
AuthorizationRef = Annotated[str, Form(max_length=200, description="Authorization reference, where the policy requires one.")]
Note = Annotated[str, Form(max_length=10_000, description="Why this search is needed.")]


@router.post("", summary="Search a gallery", response_model=SearchResultOut, status_code=status.HTTP_201_CREATED,
             responses=UPLOAD_ERRORS)
def search(
    probe: Annotated[UploadFile, File(description="The probe photograph.")],
    gallery: Annotated[str, Form(max_length=100, description="The gallery; your unit must hold a grant for it.")],
    case_number: CaseNumber,
    purpose: Purpose,
    offence: Offence,
    actor: CurrentActor,
    system: SystemDep,
    lock: EngineLock,
    authorization_ref: AuthorizationRef = "",
    note: Note = "",
    face_box: Annotated[str | None, Form(max_length=100, description="x,y,w,h of the face, drawn by hand.")] = None,
    face: Annotated[int | None, Form(ge=1, le=1000, description="Which face (1 = largest) when the probe shows several.")] = None,
) -> SearchResultOut:
    """Search a gallery with a probe photograph for a case, a permitted purpose and an offence (investigators). The
    result is a ranked list of investigative leads, never an identification. A refused request is audited and
    answered with its reason: 403 (role or grant), 404 (gallery), 413/415/400 (image) or 422 (policy, face)."""
    data = read_upload(probe)
    with lock:
        result = system.search(actor, data, gallery, case_number, purpose, offence, authorization_ref, note,
                               face_box or None, face)
    return SearchResultOut.model_validate(result.to_dict())


@router.get("", summary="Your searches", response_model=list[MySearch])
def my_searches(
    actor: CurrentActor,
    system: SystemDep,
    mine: Annotated[bool, Query(description="Only your own searches (the only listing offered here).")] = True,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[MySearch]:
    """Your own searches and comparisons, newest first, completed or refused, with each search's outcome."""
    if not mine:
        raise ApiError(400, "bad_request", "only your own searches are listed here (mine=true); "
                                           "oversight uses the transparency report")
    return [MySearch(**search) for search in system.my_searches(actor, limit)]


@router.get("/{search_id}", summary="A search and its candidates", response_model=SearchDetail)
def show_search(search_id: SearchId, actor: CurrentActor, system: SystemDep) -> dict:
    """The search and its ranked candidates (audited). Its investigator sees the outcome; an examiner sees only their
    own decisions (blind review); a supervisor sees every decision."""
    return system.show_search(actor, search_id)


@router.get("/{search_id}/probe", summary="The probe photograph", response_class=Response, responses=IMAGE_RESPONSE)
def probe_image(search_id: SearchId, actor: CurrentActor, system: SystemDep) -> Response:
    """The search's stored probe (audited; 404 once purged under the retention policy)."""
    return image_response(system.probe_image(actor, search_id))


@router.get("/{search_id}/candidates/{rank}/image", summary="A candidate's gallery photograph", response_class=Response,
            responses=IMAGE_RESPONSE)
def candidate_image(search_id: SearchId, rank: Rank, actor: CurrentActor, system: SystemDep) -> Response:
    """A candidate's gallery photograph for side-by-side comparison (audited; never for auditors or admins)."""
    return image_response(system.candidate_image(actor, search_id, rank))
