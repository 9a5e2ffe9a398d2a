"""The case view: everything done under one case number, for the supervisors of the units concerned and oversight.

Its searches and comparisons (completed or refused, with their outcome), the requests for a supervisor's approval
of a poor-quality probe, the examiners' decisions and supervisors' rulings, the leads, and the audit entries about
any of these and about the case itself: who looked at what, and when. An auditor, and a supervisor of the policy's
oversight unit, see every unit's part of a case; another supervisor their own unit's (a case wholly outside it is
answered as if it did not exist, the refusal audited); no one else sees it (audited). An account that may still
decide on a review of the case reads other people's decisions there withheld (blind review). Each view is audited.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from facetrail.accountability.context import Context, listed_searches, user_names
from facetrail.accountability.oversight import DECISION_ACTIONS, WITHHELD
from facetrail.accountability.schema import (
    AuditEntryRecord,
    OverrideRequestRecord,
    ResolutionRecord,
    ReviewRecord,
    SearchRecord,
)
from facetrail.accountability.users import Actor
from facetrail.errors import FacetrailError, NotFoundError
from facetrail.store import as_utc

MAX_CASE_SEARCHES = 500
"""Searches and requests shown of one case, newest first (a case with more is shown in part, and says so)."""


class Cases:
    """The case view (``case_view``)."""

    def __init__(self, context: Context) -> None:
        self.context = context

    def case_view(self, actor: Actor, case_number: str) -> dict[str, Any]:
        """Everything under ``case_number`` that ``actor`` may see (see the module docstring), audited."""
        context = self.context
        case_number = case_number.strip()
        target = f"case:{case_number}"[:200]
        context.require(actor, "view_audit", target)
        if not case_number or len(case_number) > 100:
            raise FacetrailError("a case number is required (at most 100 characters)")
        unit = context.audit_unit(actor)
        with context.galleries.sessions() as session:
            of_case = SearchRecord.case_number == case_number
            searches = listed_searches(session, of_case if unit is None else of_case & (SearchRecord.unit == unit),
                                       MAX_CASE_SEARCHES, context.examiners_required())
            requests = select(OverrideRequestRecord).where(OverrideRequestRecord.case_number == case_number)
            if unit is not None:
                requests = requests.where(OverrideRequestRecord.unit == unit)
            overrides = session.scalars(requests.order_by(OverrideRequestRecord.requested_at.desc())
                                        .limit(MAX_CASE_SEARCHES)).all()
            if not searches and not overrides:
                elsewhere = session.scalar(select(SearchRecord.id).where(of_case).limit(1)) or session.scalar(
                    select(OverrideRequestRecord.id).where(OverrideRequestRecord.case_number == case_number).limit(1))
                if elsewhere is not None:
                    raise context.hidden(actor, "view_audit", target,
                                         f"case {case_number!r} has no search or request of unit {unit or '(none)'!r}",
                                         f"no case {case_number}")
                raise NotFoundError(f"no case {case_number}: no search, comparison or request was made under it")
            search_ids = [row["search_id"] for row in searches]
            blind = context.open_reviews(session, actor, search_ids)
            for row in searches:
                row["started_at"] = row["started_at"].isoformat()
                if row["search_id"] in blind:
                    row["outcome"] = None
            names = user_names(session)
            decisions = self._decisions(session, search_ids, blind, actor, names)
            targets = [target] + [f"search:{n}" for n in search_ids] + [f"override:{o.id}" for o in overrides]
            entries = [dict(row) for row in session.execute(
                select(AuditEntryRecord.seq, AuditEntryRecord.recorded_at, AuditEntryRecord.actor,
                       AuditEntryRecord.action, AuditEntryRecord.target, AuditEntryRecord.details)
                .where(AuditEntryRecord.target.in_(targets)).order_by(AuditEntryRecord.seq)).mappings()]
            shown = {
                "case_number": case_number,
                "unit": unit,
                "partial": len(searches) == MAX_CASE_SEARCHES or len(overrides) == MAX_CASE_SEARCHES,
                "searches": searches,
                "refusals": [row for row in searches if row["status"] == "refused"],
                "leads": [row["search_id"] for row in searches if row["outcome"] == "lead"],
                "overrides": [
                    {"request_id": o.id, "investigator": names.get(o.user_id, ""), "status": o.status,
                     "requested_at": as_utc(o.requested_at).isoformat(), "decided_by": names.get(o.decided_by),
                     "decided_at": as_utc(o.decided_at).isoformat() if o.decided_at else None,
                     "decision_notes": o.decision_notes, "search_id": o.search_id, "refusal_reason": o.refusal_reason}
                    for o in overrides],
                "decisions": decisions,
                "audit": [
                    {**entry, "details": {"withheld": WITHHELD}}
                    if entry["action"] in DECISION_ACTIONS and entry["actor"] != actor.username
                    and entry["target"] in {f"search:{n}" for n in blind} else entry
                    for entry in entries],
            }
        context.audit.append(actor.username, "case_viewed", target, {
            "searches": len(searches), "overrides": len(overrides), "unit": "(every unit)" if unit is None else unit})
        return shown

    def _decisions(self, session, search_ids: list[int], blind: set[int], actor: Actor,
                   names: dict[int, str]) -> list[dict[str, Any]]:
        """The examiners' decisions and supervisors' rulings on the searches, oldest first; on a search the actor may
        still decide on, only their own."""
        reviews = session.scalars(select(ReviewRecord).where(ReviewRecord.search_id.in_(search_ids))
                                  .order_by(ReviewRecord.decided_at, ReviewRecord.id)).all()
        candidates = {c.id: (s.id, c.rank) for s in session.scalars(select(SearchRecord).where(SearchRecord.id.in_(search_ids)))
                      for c in s.candidates}
        found = [
            {"search_id": r.search_id, "rank": candidates[r.candidate_id][1], "by": names.get(r.examiner_id, ""),
             "role": "examiner", "decision": r.decision, "comparison": r.comparison, "notes": r.notes,
             "decided_at": as_utc(r.decided_at).isoformat()}
            for r in reviews if r.search_id not in blind or r.examiner_id == actor.id
        ]
        rulings = session.scalars(select(ResolutionRecord).where(ResolutionRecord.candidate_id.in_(sorted(candidates)))).all()
        found += [
            {"search_id": candidates[r.candidate_id][0], "rank": candidates[r.candidate_id][1],
             "by": names.get(r.supervisor_id, ""), "role": "supervisor", "decision": r.decision, "comparison": None,
             "notes": r.notes, "decided_at": as_utc(r.decided_at).isoformat()}
            for r in rulings if candidates[r.candidate_id][0] not in blind
        ]
        return sorted(found, key=lambda decision: decision["decided_at"])
