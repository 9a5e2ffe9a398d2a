"""The case view: everything under one case number, for the supervisors of its units and oversight (audited).

Like the other oversight pages it shows no photograph: what was done under the case, by whom and when.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from facetrail.http.deps import SystemDep
from facetrail.web.pages import render
from facetrail.web.session import WebActor

router = APIRouter(prefix="/cases")


@router.get("", response_class=HTMLResponse)
def find_case(request: Request, actor: WebActor, system: SystemDep,
              case_number: Annotated[str, Query(max_length=100)] = ""):
    """A box to type a case number in; with one, its case view."""
    system.require(actor, "view_audit")
    if case_number.strip():
        return RedirectResponse(f"/cases/{quote(case_number.strip(), safe='')}", status_code=303)
    return render(request, "case.html", {"case": None})


@router.get("/{case_number}", response_class=HTMLResponse)
def case_view(request: Request, case_number: Annotated[str, Path(max_length=100)], actor: WebActor,
              system: SystemDep) -> HTMLResponse:
    """The case's searches, refusals, override requests, decisions, leads and who looked at what (audited)."""
    return render(request, "case.html", {"case": system.cases.case_view(actor, case_number)})
