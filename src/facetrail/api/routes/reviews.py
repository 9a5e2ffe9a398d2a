"""The examiners' blind two-person review and supervisors' resolution of disagreements."""

from __future__ import annotations

from fastapi import APIRouter, status

from facetrail.http.deps import CurrentActor, SearchId, SystemDep
from facetrail.http.errors import COMMON_ERRORS, documented
from facetrail.http.schemas import DecisionIn, DecisionRecorded, Dispute, QueueItem

router = APIRouter(prefix="/reviews", tags=["reviews"], responses=COMMON_ERRORS)


@router.get("/queue", summary="Searches waiting for your review", response_model=list[QueueItem])
def review_queue(actor: CurrentActor, system: SystemDep) -> list[dict]:
    """Completed searches you did not run and have not decided on yet, still open (examiners)."""
    return system.reviews.review_queue(actor)


@router.post("/{search_id}/decisions", summary="Decide on a candidate", response_model=DecisionRecorded,
             status_code=status.HTTP_201_CREATED, responses=documented(409))
def decide(search_id: SearchId, body: DecisionIn, actor: CurrentActor, system: SystemDep) -> DecisionRecorded:
    """Record your decision on one candidate (examiners; final; blind to other examiners; audited)."""
    comparison = body.comparison.model_dump() if body.comparison else None
    outcome = system.reviews.decide(actor, search_id, body.rank, body.decision, body.notes, comparison)
    return DecisionRecorded(search_id=search_id, rank=body.rank, decision=body.decision, outcome=outcome)


@router.get("/disputes", summary="Candidates examiners disagree on", response_model=list[Dispute])
def disputes(actor: CurrentActor, system: SystemDep) -> list[dict]:
    """Candidates on which examiners disagree, waiting for a supervisor (supervisors)."""
    return system.reviews.disputes(actor)


@router.post("/{search_id}/resolutions", summary="Resolve a disagreement", response_model=DecisionRecorded,
             status_code=status.HTTP_201_CREATED)
def resolve(search_id: SearchId, body: DecisionIn, actor: CurrentActor, system: SystemDep) -> DecisionRecorded:
    """Settle examiners' disagreement on a candidate (a supervisor who neither ran nor reviewed the search; audited)."""
    outcome = system.reviews.resolve(actor, search_id, body.rank, body.decision, body.notes)
    return DecisionRecorded(search_id=search_id, rank=body.rank, decision=body.decision, outcome=outcome)
