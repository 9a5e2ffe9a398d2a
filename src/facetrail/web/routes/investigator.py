"""Investigators: the search form (with the faces found in the still), the candidate list, and their own searches."""

from __future__ import annotations

import base64
import re
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from facetrail.accountability.service import Actor, CaseRequest, Facetrail
from facetrail.http import forms
from facetrail.http.deps import MAX_ID, SearchId, SystemDep
from facetrail.http.files import picture_bytes, read_upload
from facetrail.http.schemas import describe_faces
from facetrail.errors import FacetrailError, NoFaceError, PoorQualityError
from facetrail.web.pages import error_of, render
from facetrail.web.session import FormActor, WebActor

router = APIRouter()

PREVIEW_SIDE = 1600
"""Longest side of the probe preview the search form draws faces on."""

NO_FACE = ("search refused: no face was found in the photograph: draw a box around the face on the preview (drag "
           "across it, or give the box's position under 'Give the face box by its position'), then search again")
"""A search refused for want of a face, in the form's own words (the CLI names its --face-box option instead)."""

BROWSER_READABLE_PATTERN = re.compile(r"""(?x) ^ (?:
      [A-Za-z0-9 _:/\#,-]                               # characters that stand for themselves
    | \\[d.^$\\*+?()\[\]{}|/]                           # \d and escaped syntax characters
    | \[ (?: [A-Za-z0-9] (?: -[A-Za-z0-9] )? | \\d )+ \]   # classes of letters, digits and ranges
    | \(\?: | \((?!\?) | [)|^$.?*+] | \{ \d+ (?: ,\d* )? \}   # groups, alternatives, anchors, repeats
)* $""")
"""The regular expressions a browser's ``pattern`` attribute (JavaScript, ``v`` flag) reads as Python does."""


def browser_pattern(pattern: re.Pattern[str]) -> str | None:
    """The case-number pattern for the input's ``pattern`` attribute, when the browser reads it as the service does
    (``BROWSER_READABLE_PATTERN``); else None, and only the service checks it."""
    return pattern.pattern if BROWSER_READABLE_PATTERN.fullmatch(pattern.pattern) else None


def _form(request: Request, system: Facetrail, actor: Actor, values: dict[str, Any] | None = None,
          refusal: str | None = None, status: int = 200, offer_override: bool = False) -> HTMLResponse:
    """The search form, with the galleries the actor's unit may search and the policy's purposes and offences; a
    refused search's reason above it, with the button that sends a poor-quality probe to a supervisor when
    ``offer_override``."""
    policy = system.admin.policy_rules(actor)
    return render(request, "search_new.html", {
        "galleries": system.searches.searchable_galleries(actor), "policy": policy, "values": values or {},
        "refusal": refusal, "offer_override": offer_override,
        "case_number_pattern": browser_pattern(policy.requests.case_number_pattern),
    }, status)


@router.get("/search", response_class=HTMLResponse)
def search_form(request: Request, actor: WebActor, system: SystemDep) -> HTMLResponse:
    """A new search: upload a still, choose the face, give case, purpose and offence."""
    system.require(actor, "search")
    return _form(request, system, actor)


@router.post("/search/faces")
def faces(
    actor: FormActor,
    system: SystemDep,
    image: Annotated[UploadFile, File()],
    face_box: Annotated[str, Form(max_length=100)] = "",
) -> JSONResponse:
    """For the search form's script: the faces in the chosen still with their quality, and a JPEG preview of the still
    as decoded (any format facetrail reads, turned the way its EXIF says) to draw them on. Nothing is stored; the
    inspection is audited and runs on its own engine (``Facetrail.inspect_faces``)."""
    decoded, faces = system.searches.inspect_faces(actor, read_upload(image), face_box or None)
    found = describe_faces(decoded, faces)
    preview = "data:image/jpeg;base64," + base64.b64encode(picture_bytes(decoded.pixels, max_side=PREVIEW_SIDE)).decode()
    return JSONResponse({**found.model_dump(), "preview": preview})


@router.post("/search")
def search(
    request: Request,
    actor: FormActor,
    system: SystemDep,
    probe: Annotated[UploadFile, File()],
    gallery: forms.Gallery = "",
    case_number: forms.CaseNumber = "",
    purpose: forms.Purpose = "",
    offence: forms.Offence = "",
    authorization_ref: forms.AuthorizationRef = "",
    note: forms.Note = "",
    face: Annotated[str, Form(max_length=10)] = "",
    face_box: Annotated[str, Form(max_length=100)] = "",
    ask_override: Annotated[bool, Form()] = False,
):
    """Run the search; a refusal (audited by the service) shows the form again with the reason. Refused for the
    probe's poor quality with ``ask_override`` ticked, the request goes to a supervisor of the unit for approval."""
    values = {"gallery": gallery, "case_number": case_number, "purpose": purpose, "offence": offence,
              "authorization_ref": authorization_ref, "note": note, "ask_override": ask_override}
    try:
        if face.strip() and not face.strip().isdigit():
            raise FacetrailError(f"face {face!r}: expected the number of a face found in the photograph")
        case = CaseRequest(case_number, purpose, offence, authorization_ref, note, gallery, face_box.strip() or None,
                           int(face) if face.strip() else None)
        data = read_upload(probe)
        result = system.searches.search(actor, data, case)
        return RedirectResponse(f"/searches/{result.search_id}", status_code=303)
    except FacetrailError as exc:
        refusal = exc
    poor_quality = isinstance(refusal.__cause__, PoorQualityError)
    if ask_override and poor_quality:
        try:
            request_id = system.overrides.request_override(actor, data, case)
            return RedirectResponse(f"/searches?override_requested={request_id}", status_code=303)
        except FacetrailError as exc:
            refusal, poor_quality = exc, False
    status, message, _ = error_of(refusal)
    if isinstance(refusal.__cause__, NoFaceError):
        message = NO_FACE
    offer_override = poor_quality and system.admin.policy_rules(actor).probe_quality.poor_probe == "supervisor_override"
    return _form(request, system, actor, values, message, status, offer_override)


@router.get("/searches", response_class=HTMLResponse)
def my_searches(request: Request, actor: WebActor, system: SystemDep,
                override_requested: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None) -> HTMLResponse:
    """The user's own searches, newest first, with each one's review status, and their requests for a supervisor's
    approval of a poor-quality probe."""
    system.require(actor, "search")
    message = f"Sent to a supervisor for approval (request #{override_requested})." if override_requested else None
    return render(request, "my_searches.html", {"searches": system.searches.my_searches(actor, limit=200),
                                                "overrides": system.overrides.my_override_requests(actor), "message": message})


@router.get("/searches/{search_id}", response_class=HTMLResponse)
def search_result(request: Request, search_id: SearchId, actor: WebActor, system: SystemDep) -> HTMLResponse:
    """A search's ranked candidates: gallery photographs with rank, distance and estimated false-match rate; an
    examiner blind to the algorithm is sent to the review bench instead."""
    if system.reviews.blind_to_algorithm(actor, search_id):
        return RedirectResponse(f"/reviews/{search_id}", status_code=303)
    return render(request, "search_result.html", {"search": system.reviews.show_search(actor, search_id, page="search result")})
