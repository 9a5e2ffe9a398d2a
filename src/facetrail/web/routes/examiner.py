"""Examiners: the review queue, the side-by-side comparison of probe and candidate, and blind decisions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from facetrail.accountability.schema import DECISIONS

from facetrail.http.deps import Rank, SearchId, SystemDep
from facetrail.errors import FacetrailError
from facetrail.web.pages import error_of, render
from facetrail.web.session import FormActor, WebActor

router = APIRouter(prefix="/reviews")


@router.get("", response_class=HTMLResponse)
def queue(request: Request, actor: WebActor, system: SystemDep) -> HTMLResponse:
    """Searches waiting for this examiner's independent review, oldest first."""
    return render(request, "review_queue.html", {"queue": system.reviews.review_queue(actor)})


def _review_page(request: Request, system, actor, search_id: int, rank: int | None, recorded: int | None = None,
                 error: str | None = None, status: int = 200) -> HTMLResponse:
    system.require(actor, "review")
    search = system.reviews.show_search(actor, search_id, page="review")
    ranks = [c["rank"] for c in search["candidates"]]
    undecided = [c["rank"] for c in search["candidates"] if not c["decisions"]]
    if rank not in ranks:
        rank = undecided[0] if undecided else (ranks[0] if ranks else None)
    current = next((c for c in search["candidates"] if c["rank"] == rank), None)
    return render(request, "review.html", {
        "search": search, "current": current, "decisions": DECISIONS, "undecided": undecided, "error": error,
        "message": f"Your decision on candidate {recorded} is recorded." if recorded in ranks else None,
        "own_search": search["investigator"] == actor.username,
    }, status)


@router.get("/{search_id}", response_class=HTMLResponse)
def review(request: Request, search_id: SearchId, actor: WebActor, system: SystemDep,
           rank: Annotated[int | None, Query(ge=1, le=1000)] = None,
           recorded: Annotated[int | None, Query(ge=1, le=1000)] = None) -> HTMLResponse:
    """Probe and one candidate side by side, with zoom and the aligned face chips, and the decision form. Blind:
    only this examiner's own decisions are shown."""
    return _review_page(request, system, actor, search_id, rank, recorded)


@router.post("/{search_id}/decisions")
def decide(
    request: Request,
    search_id: SearchId,
    actor: FormActor,
    system: SystemDep,
    rank: Annotated[Rank, Form()],
    decision: Annotated[str, Form(max_length=40)] = "",
    notes: Annotated[str, Form(max_length=10_000)] = "",
):
    """Record this examiner's decision on one candidate (final, audited), then go to the next undecided candidate."""
    try:
        system.reviews.decide(actor, search_id, rank, decision, notes)
    except FacetrailError as exc:
        status, message, _ = error_of(exc)
        return _review_page(request, system, actor, search_id, rank, error=message, status=status)
    return RedirectResponse(f"/reviews/{search_id}?recorded={rank}", status_code=303)
