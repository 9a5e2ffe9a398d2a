"""The two-person rule: what examiners' decisions and supervisors' resolutions make of a candidate and a search.

A candidate is a **lead** when two different examiners each recorded
``possible_lead`` for it, or a supervisor resolved it as ``possible_lead``. It
is **disputed** when one examiner said ``possible_lead``, another said
something else, and no supervisor has resolved it; a resolution with
``not_a_match`` or ``inconclusive`` settles it as not a lead.

A search's outcome is one of ``OUTCOMES``: ``refused``; ``no_candidates`` (a
completed search with an empty candidate list); ``lead`` (some candidate is a
lead); ``disputed`` (else, some candidate is disputed); ``pending_review``
(else, some candidate has a single ``possible_lead`` waiting for a second
examiner); ``no_lead`` (else, at least two different examiners have recorded
decisions on the search); otherwise ``pending_review``.

When the policy turns two-person verification off (``examiners_required=1``),
one examiner's ``possible_lead`` makes a lead and one examiner's decisions can
close a search; disagreements, if a second examiner reviews anyway, are still
disputes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from facetrail.accountability.schema import CandidateRecord, ResolutionRecord, ReviewRecord, SearchRecord

POSSIBLE_LEAD = "possible_lead"
CANDIDATE_STATUSES = ("lead", "disputed", "not_lead", "undecided")
OUTCOMES = ("lead", "disputed", "no_lead", "pending_review", "no_candidates", "refused")

_CHUNK = 500
"""Search ids per IN (...) list: well under SQLite's and PostgreSQL's bound-parameter limits."""


def candidate_status(reviews: list[ReviewRecord], resolution: ResolutionRecord | None, examiners_required: int = 2) -> str:
    """'lead', 'disputed', 'not_lead' or 'undecided' for one candidate, from its reviews and any resolution."""
    if resolution is not None:
        return "lead" if resolution.decision == POSSIBLE_LEAD else "not_lead"
    for_lead = {review.examiner_id for review in reviews if review.decision == POSSIBLE_LEAD}
    against = {review.examiner_id for review in reviews if review.decision != POSSIBLE_LEAD} - for_lead
    if len(for_lead) >= max(examiners_required, 2 if against else 1):
        return "lead"  # two agreeing examiners make a lead even if a third disagrees
    if for_lead and against:
        return "disputed"
    if not for_lead and len(against) >= examiners_required:
        return "not_lead"
    return "undecided"


def search_outcome(
    search: SearchRecord,
    reviews_by_candidate: dict[int, list[ReviewRecord]],
    resolutions: dict[int, ResolutionRecord],
    examiners_required: int = 2,
) -> str:
    """The search's outcome (one of ``OUTCOMES``).

    ``reviews_by_candidate`` must hold every candidate of the search (candidate id -> its reviews, possibly
    empty); ``resolutions`` maps candidate ids to their resolution, where there is one.
    """
    if search.status == "refused":
        return "refused"
    if not reviews_by_candidate:
        return "no_candidates"
    statuses = {
        candidate_id: candidate_status(reviews, resolutions.get(candidate_id), examiners_required)
        for candidate_id, reviews in reviews_by_candidate.items()
    }
    if "lead" in statuses.values():
        return "lead"
    if "disputed" in statuses.values():
        return "disputed"
    awaiting_second = any(
        status == "undecided" and any(review.decision == POSSIBLE_LEAD for review in reviews_by_candidate[candidate_id])
        for candidate_id, status in statuses.items()
    )
    examiners = {review.examiner_id for reviews in reviews_by_candidate.values() for review in reviews}
    if not awaiting_second and len(examiners) >= examiners_required:
        return "no_lead"
    return "pending_review"


def outcomes_of(session: Session, searches: Sequence[SearchRecord], examiners_required: int = 2) -> dict[int, str]:
    """The outcome of each of ``searches`` (already loaded), by search id: three queries per 500 searches."""
    outcomes: dict[int, str] = {}
    for start in range(0, len(searches), _CHUNK):
        chunk = searches[start : start + _CHUNK]
        ids = [search.id for search in chunk]
        candidates_by_search: dict[int, dict[int, list[ReviewRecord]]] = defaultdict(dict)
        for candidate_id, search_id in session.execute(
            select(CandidateRecord.id, CandidateRecord.search_id).where(CandidateRecord.search_id.in_(ids))
        ):
            candidates_by_search[search_id][candidate_id] = []
        for review in session.scalars(select(ReviewRecord).where(ReviewRecord.search_id.in_(ids))):
            candidates_by_search[review.search_id].setdefault(review.candidate_id, []).append(review)
        resolutions = {
            resolution.candidate_id: resolution
            for resolution in session.scalars(
                select(ResolutionRecord)
                .join(CandidateRecord, CandidateRecord.id == ResolutionRecord.candidate_id)
                .where(CandidateRecord.search_id.in_(ids))
            )
        }
        for search in chunk:
            outcomes[search.id] = search_outcome(search, candidates_by_search.get(search.id, {}), resolutions, examiners_required)
    return outcomes


def outcomes_for(session: Session, search_ids: Iterable[int], examiners_required: int = 2) -> dict[int, str]:
    """The outcome of each search in ``search_ids`` that exists, by search id (four queries per 500 searches)."""
    ids = sorted(set(search_ids))
    searches: list[SearchRecord] = []
    for start in range(0, len(ids), _CHUNK):
        searches.extend(session.scalars(select(SearchRecord).where(SearchRecord.id.in_(ids[start : start + _CHUNK]))))
    return outcomes_of(session, searches, examiners_required)
