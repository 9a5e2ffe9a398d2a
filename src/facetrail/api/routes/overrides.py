"""Quality overrides: an investigator asks a supervisor of their unit to approve a search whose probe is of poor
quality; the supervisor sees the probe and approves (the search then runs) or declines."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Path, Query, Response, UploadFile, status

from facetrail.http.deps import MAX_ID, CurrentActor, SystemDep
from facetrail.http.forms import SearchForm
from facetrail.http.errors import COMMON_ERRORS, UPLOAD_ERRORS, documented
from facetrail.http.files import IMAGE_RESPONSE, image_response, read_upload
from facetrail.http.schemas import OverrideDecided, OverrideDecisionIn, OverrideRequested, OverrideRequestOut

router = APIRouter(prefix="/overrides", tags=["overrides"], responses=COMMON_ERRORS)

RequestId = Annotated[int, Path(ge=1, le=MAX_ID, description="The override request's id.")]


@router.post("", summary="Ask a supervisor to approve a poor-quality probe", response_model=OverrideRequested,
             status_code=status.HTTP_201_CREATED, responses=UPLOAD_ERRORS)
def request_override(
    probe: Annotated[UploadFile, File(description="The probe photograph.")],
    request: SearchForm,
    actor: CurrentActor,
    system: SystemDep,
) -> OverrideRequested:
    """The same fields as a search, for a probe whose quality is poor, when the policy lets a supervisor approve such
    a search (investigators). The request must pass every other check a search makes; it waits for a supervisor of
    your unit. Refused (422) for an acceptable probe, under a policy that refuses poor probes, or while the same
    probe already waits."""
    request_id = system.overrides.request_override(actor, read_upload(probe), request)
    return OverrideRequested(request_id=request_id)


@router.get("", summary="Override requests", response_model=list[OverrideRequestOut])
def list_overrides(
    actor: CurrentActor,
    system: SystemDep,
    scope: Annotated[Literal["pending", "mine"] | None, Query(
        description="pending: your unit's requests waiting for a decision (supervisors); mine: your own requests "
                    "(investigators). Default: pending for supervisors, else mine.")] = None,
) -> list[dict]:
    """Supervisors: the requests of their unit waiting for a decision, oldest first. Investigators: their own
    requests, newest first, with each decision and the search it ran."""
    if (scope or ("pending" if actor.has("supervisor") else "mine")) == "pending":
        return system.overrides.pending_overrides(actor)
    return system.overrides.my_override_requests(actor)


@router.get("/{request_id}/probe", summary="The probe of an override request", response_class=Response,
            responses=IMAGE_RESPONSE)
def override_probe(request_id: RequestId, actor: CurrentActor, system: SystemDep) -> Response:
    """The probe as uploaded, for its investigator and the supervisors of their unit (audited; 404 once purged under
    the retention policy). Another unit's request answers 404 as a missing one does (the refusal audited)."""
    return image_response(system.overrides.override_probe(actor, request_id)[0])


@router.post("/{request_id}/decision", summary="Approve or decline an override request", response_model=OverrideDecided,
             responses=documented(409))
def decide_override(request_id: RequestId, body: OverrideDecisionIn, actor: CurrentActor, system: SystemDep) -> OverrideDecided:
    """A supervisor of the investigator's unit, not the investigator, decides once (audited). Approved, the search
    runs at once as the investigator's, marked as overridden by you, under the policy in force now; a refusal then is
    answered as a refused search. 409 when the request was already decided."""
    search_id = system.overrides.decide_override(actor, request_id, body.approve, body.notes)
    return OverrideDecided(request_id=request_id, status="approved" if body.approve else "declined", search_id=search_id)
