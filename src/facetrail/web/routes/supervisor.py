"""Supervisors: their unit's searching, examiners' disagreements to resolve, and requests to approve a search with a
poor-quality probe."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Form, Path, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from facetrail.accountability.schema import DECISIONS
from facetrail.accountability.service import Facetrail
from facetrail.accountability.service import Actor
from facetrail.http.deps import MAX_ID, Rank, SearchId, SystemDep
from facetrail.http.files import face_frame, picture_bytes
from facetrail.errors import FacetrailError
from facetrail.web.pages import error_of, may, render
from facetrail.web.routes.photos import SHOWN_SIDE, picture_response
from facetrail.web.session import FormActor, WebActor

router = APIRouter(prefix="/supervision")

ACTIVITY_ROWS = 100
"""How many of the unit's most recent searches the page lists."""

RequestId = Annotated[int, Path(ge=1, le=MAX_ID, description="The override request's id.")]
Notes = Annotated[str, Form(max_length=10_000)]


def _page(request: Request, system: Facetrail, actor: Actor, message: str | None = None, error: str | None = None,
          status: int = 200) -> HTMLResponse:
    """The supervision page: override requests waiting, disagreements to resolve, and the unit's recent activity."""
    system.require(actor, "view_unit_activity")
    return render(request, "supervision.html", {
        "overrides": system.overrides.pending_overrides(actor) if may(actor, "override_quality") else [],
        "disputes": system.reviews.disputes(actor) if may(actor, "resolve_dispute") else [],
        "activity": system.oversight.unit_activity(actor, ACTIVITY_ROWS),
        "decisions": DECISIONS, "message": message, "error": error,
    }, status)


@router.get("", response_class=HTMLResponse)
def supervision(
    request: Request,
    actor: WebActor,
    system: SystemDep,
    approved: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    search: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    declined: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    resolved: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    rank: Annotated[int | None, Query(ge=1, le=1000)] = None,
) -> HTMLResponse:
    """What waits for this supervisor, and what their unit has been searching for."""
    message = None
    if approved and search:
        message = f"Override request #{approved} approved: search #{search} ran for its investigator."
    elif declined:
        message = f"Override request #{declined} declined."
    elif resolved and rank:
        message = f"Your resolution of candidate {rank} of search #{resolved} is recorded."
    return _page(request, system, actor, message)


@router.get("/disputes/{search_id}/{rank}", response_class=HTMLResponse)
def dispute(request: Request, search_id: SearchId, rank: Rank, actor: WebActor, system: SystemDep) -> HTMLResponse:
    """One disputed candidate beside the probe, with every examiner's decision and the form to resolve it."""
    system.require(actor, "resolve_dispute")
    found = next((d for d in system.reviews.disputes(actor) if (d["search_id"], d["rank"]) == (search_id, rank)), None)
    if found is None:
        return _page(request, system, actor, error=f"candidate {rank} of search #{search_id} is not in dispute",
                     status=404)
    return render(request, "supervision_dispute.html", {
        "dispute": found, "search": system.reviews.show_search(actor, search_id, page="dispute"), "decisions": DECISIONS})


@router.post("/disputes/{search_id}/{rank}")
def resolve(request: Request, search_id: SearchId, rank: Rank, actor: FormActor, system: SystemDep,
            decision: Annotated[str, Form(max_length=40)] = "", notes: Notes = ""):
    """Settle the examiners' disagreement on one candidate (final, audited)."""
    try:
        system.reviews.resolve(actor, search_id, rank, decision, notes)
    except FacetrailError as exc:
        status, message, _ = error_of(exc)
        return _page(request, system, actor, error=message, status=status)
    return RedirectResponse(f"/supervision?resolved={search_id}&rank={rank}", status_code=303)


@router.get("/overrides/{request_id}/probe.jpg")
def override_probe(request_id: RequestId, actor: WebActor, system: SystemDep) -> Response:
    """The probe of an override request, with the face that would be searched outlined (audited as a view)."""
    pixels, box = system.overrides.override_probe_pixels(actor, request_id)
    return picture_response(picture_bytes(pixels, max_side=SHOWN_SIDE, outline=box))


@router.get("/overrides/{request_id}/probe/face.jpg")
def override_probe_face(request_id: RequestId, actor: WebActor, system: SystemDep) -> Response:
    """The probe of an override request framed on the face that would be searched, at the scale every face is
    compared at (for its investigator and the supervisors of their unit; audited as a view)."""
    pixels, box = system.overrides.override_probe_pixels(actor, request_id)
    return picture_response(picture_bytes(face_frame(pixels, box)))


@router.post("/overrides/{request_id}")
def decide_override(request: Request, request_id: RequestId, actor: FormActor, system: SystemDep,
                    decision: Annotated[Literal["approve", "decline"], Form()], notes: Notes = ""):
    """Approve (the search runs at once, as the investigator's) or decline an override request (final, audited)."""
    try:
        search_id = system.overrides.decide_override(actor, request_id, decision == "approve", notes)
    except FacetrailError as exc:
        status, message, _ = error_of(exc)
        return _page(request, system, actor, error=message, status=status)
    if search_id is None:
        return RedirectResponse(f"/supervision?declined={request_id}", status_code=303)
    return RedirectResponse(f"/supervision?approved={request_id}&search={search_id}", status_code=303)
