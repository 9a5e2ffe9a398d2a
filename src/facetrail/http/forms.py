"""The form of a search, comparison or override request: its fields declared once, parsed into one CaseRequest."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Form

from facetrail.accountability.service import CaseRequest

CaseNumber = Annotated[str, Form(max_length=100, description="Case number, in the format the policy sets.")]
Purpose = Annotated[str, Form(max_length=100, description="A permitted purpose, e.g. criminal_investigation.")]
Offence = Annotated[str, Form(max_length=100, description="An offence category from the policy, e.g. robbery.")]
AuthorizationRef = Annotated[str, Form(max_length=200, description="Authorization reference, where the policy requires one.")]
Note = Annotated[str, Form(max_length=10_000, description="Why this search is needed.")]
Gallery = Annotated[str, Form(max_length=100, description="The gallery; your unit must hold a grant for it.")]
FaceBox = Annotated[str | None, Form(max_length=100, description="x,y,w,h of the face, drawn by hand.")]
FaceNumber = Annotated[int | None, Form(ge=1, le=1000, description="Which face (1 = largest) when the probe shows several.")]


def case_request(case_number: CaseNumber, purpose: Purpose, offence: Offence, authorization_ref: AuthorizationRef = "",
                 note: Note = "") -> CaseRequest:
    """The case fields of a comparison."""
    return CaseRequest(case_number, purpose, offence, authorization_ref, note)


def search_request(gallery: Gallery, case_number: CaseNumber, purpose: Purpose, offence: Offence,
                   authorization_ref: AuthorizationRef = "", note: Note = "", face_box: FaceBox = None,
                   face: FaceNumber = None) -> CaseRequest:
    """The fields of a search or of a request for a supervisor's approval of one."""
    return CaseRequest(case_number, purpose, offence, authorization_ref, note, gallery, face_box or None, face)


CaseForm = Annotated[CaseRequest, Depends(case_request)]
SearchForm = Annotated[CaseRequest, Depends(search_request)]
