"""Searches: running one, your own list, a search's candidates, and the probe and candidate photographs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Query, Response, UploadFile, status

from facetrail.http.deps import CurrentActor, Rank, SearchId, SystemDep
from facetrail.http.forms import SearchForm
from facetrail.http.errors import COMMON_ERRORS, UPLOAD_ERRORS, ApiError
from facetrail.http.files import IMAGE_RESPONSE, image_response, read_upload
from facetrail.http.schemas import MySearch, SearchDetail, SearchResultOut

router = APIRouter(prefix="/searches", tags=["searches"], responses=COMMON_ERRORS)



@router.post("", summary="Search a gallery", response_model=SearchResultOut, status_code=status.HTTP_201_CREATED,
             responses=UPLOAD_ERRORS)
def search(
    probe: Annotated[UploadFile, File(description="The probe photograph.")],
    request: SearchForm,
    actor: CurrentActor,
    system: SystemDep,
) -> SearchResultOut:
    """Search a gallery with a probe photograph for a case, a permitted purpose and an offence (investigators). The
    result is a ranked list of investigative leads, never an identification. A refused request is audited and
    answered with its reason: 403 (role or grant), 404 (gallery), 413/415/400 (image) or 422 (policy, face)."""
    result = system.searches.search(actor, read_upload(probe), request)
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
    return [MySearch(**search) for search in system.searches.my_searches(actor, limit)]


@router.get("/{search_id}", summary="A search and its candidates", response_model=SearchDetail)
def show_search(search_id: SearchId, actor: CurrentActor, system: SystemDep) -> dict:
    """The search and its ranked candidates (audited). Its investigator sees the outcome; an examiner sees only their
    own decisions (blind review); a supervisor sees every decision."""
    return system.reviews.show_search(actor, search_id)


@router.get("/{search_id}/probe", summary="The probe photograph", response_class=Response, responses=IMAGE_RESPONSE)
def probe_image(search_id: SearchId, actor: CurrentActor, system: SystemDep) -> Response:
    """The search's stored probe (audited; 404 once purged under the retention policy)."""
    return image_response(system.reviews.probe_photo(actor, search_id)[0])


@router.get("/{search_id}/candidates/{rank}/image", summary="A candidate's gallery photograph", response_class=Response,
            responses=IMAGE_RESPONSE)
def candidate_image(search_id: SearchId, rank: Rank, actor: CurrentActor, system: SystemDep) -> Response:
    """A candidate's gallery photograph for side-by-side comparison (audited; never for auditors or admins)."""
    return image_response(system.reviews.candidate_photo(actor, search_id, rank)[0])
