"""Examiners: the review queue and the bench: probe and one candidate side by side, the candidates in a side rail
grouped by subject, blind to the algorithm until decided, and the structured comparison recorded with the decision."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from facetrail.accountability.comparison import CONCLUSIONS, FEATURES, FINDINGS
from facetrail.http.deps import Rank, SearchId, SystemDep
from facetrail.errors import FacetrailError
from facetrail.web.pages import error_of, render
from facetrail.web.session import FormActor, WebActor

router = APIRouter(prefix="/reviews")

CONCLUSIONS_BY_DECISION = {counts_as: [(key, words) for key, (words, each) in CONCLUSIONS.items() if each == counts_as]
                           for _, counts_as in CONCLUSIONS.values()}
"""The conclusion scale as the bench shows it, strongest 'same' first: grouped by the decision each counts as."""


@router.get("", response_class=HTMLResponse)
def queue(request: Request, actor: WebActor, system: SystemDep) -> HTMLResponse:
    """Searches waiting for this examiner's independent review, oldest first."""
    return render(request, "review_queue.html", {"queue": system.reviews.review_queue(actor)})


def candidate_called(candidate: dict[str, Any]) -> str:
    """What the bench calls a candidate within a sentence: by its neutral label when the examiner is blind to the
    algorithm ("candidate B2"), else by its rank ("rank 3")."""
    return f"candidate {candidate['label']}" if candidate["label"] else f"rank {candidate['rank']}"


def _subject_rows(search: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """The candidates as rows of photographs, one row per subject, in the order shown (labels A1, A2, ... share a
    row when blind; the same subject id otherwise)."""
    def subject(candidate: dict[str, Any]) -> str:
        return candidate["label"].rstrip("0123456789") if candidate["label"] else candidate["subject_id"]

    rows: dict[str, list[dict[str, Any]]] = {}
    for candidate in search["candidates"]:
        rows.setdefault(subject(candidate), []).append(candidate)
    return list(rows.values())


def _review_page(request: Request, system, actor, search_id: int, chosen: str | None, recorded: str | None = None,
                 error: str | None = None, status: int = 200) -> HTMLResponse:
    system.require(actor, "review")
    search = system.reviews.show_search(actor, search_id, page="review")
    rows = _subject_rows(search)
    candidates = [candidate for row in rows for candidate in row]  # next and previous go row by row
    for candidate in candidates:
        candidate["called"] = candidate_called(candidate)
        candidate["name"] = candidate["called"][0].upper() + candidate["called"][1:]
        candidate["ref"] = candidate["label"] or str(candidate["rank"])
    undecided = [c for c in candidates if not c["decisions"]]
    current = next((c for c in candidates if c["ref"] == chosen), None) or (undecided or candidates or [None])[0]
    position = candidates.index(current) if current else 0
    recorded_candidate = next((c for c in candidates if c["ref"] == recorded), None)
    return render(request, "review.html", {
        "search": search, "current": current, "rows": rows, "undecided": undecided,
        "previous": candidates[position - 1] if current and position > 0 else None,
        "next": candidates[position + 1] if current and position + 1 < len(candidates) else None,
        "examiners_required": system.context.examiners_required(), "error": error,
        "features": FEATURES, "findings": FINDINGS, "conclusions": CONCLUSIONS_BY_DECISION, "all_conclusions": CONCLUSIONS,
        "message": f"Your decision on {recorded_candidate['called']} is recorded." if recorded_candidate else None,
        "own_search": search["investigator"] == actor.username,
    }, status)


@router.get("/{search_id}", response_class=HTMLResponse)
def review(request: Request, search_id: SearchId, actor: WebActor, system: SystemDep,
           candidate: Annotated[str | None, Query(max_length=8)] = None,
           rank: Annotated[int | None, Query(ge=1, le=1000)] = None,
           recorded: Annotated[str | None, Query(max_length=8)] = None) -> HTMLResponse:
    """The bench: probe and one candidate side by side with the image tools, the candidates in a side rail, and the
    structured comparison and decision form. Blind: only this examiner's own decisions are shown, and (by policy) no
    rank, distance, false-match estimate or subject id of a candidate they have not decided on. ``candidate`` is a
    candidate's label (or rank, when not blind); ``rank`` is accepted where the rank is shown anyway."""
    return _review_page(request, system, actor, search_id, candidate or (str(rank) if rank else None), recorded)


async def feature_findings(request: Request) -> dict[str, str]:
    """The findings the decision form answered, from its fields ``feature-<name>`` (one per feature of the list;
    ``comparison.check_comparison`` refuses unknown findings)."""
    form = await request.form()
    return {feature: str(form[f"feature-{feature}"])[:40] for feature in FEATURES if form.get(f"feature-{feature}")}


@router.post("/{search_id}/decisions")
def decide(
    request: Request,
    search_id: SearchId,
    actor: FormActor,
    system: SystemDep,
    rank: Annotated[Rank, Form()],
    findings: Annotated[dict[str, str], Depends(feature_findings)],
    decision: Annotated[str, Form(max_length=40)] = "",
    conclusion: Annotated[str, Form(max_length=40)] = "",
    notes: Annotated[str, Form(max_length=10_000)] = "",
    ref: Annotated[str, Form(max_length=8)] = "",
):
    """Record this examiner's decision on one candidate (final, audited) with their structured comparison: the
    conclusion on the scale (the decision it counts as, unless a decision is given too, which must agree) and the
    findings answered; then go to the next undecided candidate. ``ref`` names the candidate as the page did."""
    comparison = None
    if conclusion:
        decision = decision or CONCLUSIONS.get(conclusion, ("", ""))[1]
        comparison = {"conclusion": conclusion, "features": findings}
    try:
        if findings and not conclusion:
            raise FacetrailError("choose a conclusion on the scale: your findings are recorded with it")
        system.reviews.decide(actor, search_id, rank, decision, notes, comparison)
    except FacetrailError as exc:
        status, message, _ = error_of(exc)
        return _review_page(request, system, actor, search_id, ref or str(rank), error=message, status=status)
    return RedirectResponse(f"/reviews/{search_id}?recorded={ref or rank}", status_code=303)
