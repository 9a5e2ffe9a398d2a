"""Quality overrides: a supervisor's approval of a search whose probe is of poor quality.

Under a policy whose ``poor_probe`` is ``supervisor_override``, an investigator whose probe is refused for its
quality may ask a supervisor of their unit to approve the search. The request passes every check a search makes
first; its probe is kept encrypted under the probe retention period; an approval runs the search at once as the
investigator's, marked as overridden by that supervisor. Every step is audited, refusals too.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
from sqlalchemy import select

from facetrail.accountability.context import Context, check_notes, user_names
from facetrail.accountability.requests import CaseRequest
from facetrail.accountability.schema import OverrideRequestRecord, ProbeRecord
from facetrail.accountability.searches import Searches
from facetrail.accountability.users import ROLE_ACTIONS, Actor
from facetrail.engine.geometry import Box
from facetrail.errors import DuplicateError, FacetrailError, NotFoundError, RefusedError
from facetrail.store import as_utc, utcnow


class Overrides:
    """Asking for, listing, viewing and deciding quality-override requests."""

    def __init__(self, context: Context, searches: Searches) -> None:
        self.context = context
        self.searches = searches

    def request_override(self, actor: Actor, probe_bytes: bytes, request: CaseRequest) -> int:
        """Ask a supervisor of the actor's unit to approve a search whose probe is of poor quality; returns the
        request's id. Only under a policy whose ``poor_probe`` is ``supervisor_override``, only for a probe that is
        really poor, and only for a request that passes every other check a search makes."""
        context = self.context
        policy_version, policy = context.policy()
        try:
            context.check(actor, "search")
            if policy.poor_probe != "supervisor_override":
                raise FacetrailError("the policy refuses poor-quality probes: a supervisor cannot approve them")
            self.searches.searchable(actor, request.gallery)
            self.searches.check_request(policy, "search", actor, request)
            face_box = request.box()
            with context.engines.searching() as engine:
                probe = self.searches.chosen_face(engine, probe_bytes, face_box, request.face_number)
            if probe.face.quality.acceptable:
                raise FacetrailError("the probe's quality is acceptable: run the search itself, no approval is needed")
            self._check_not_pending(actor, probe.sha256, request)
        except Exception as exc:
            context.audit.append(actor.username, "override_request_refused", request.gallery[:200], {
                "reason": str(exc), "policy_version": policy_version, "case_number": request.case_number,
                "purpose": request.purpose, "offence": request.offence,
                "probe_sha256": hashlib.sha256(probe_bytes).hexdigest()})
            if not isinstance(exc, (FacetrailError, ValueError)):
                raise
            raise RefusedError(f"override request refused: {exc}") from exc
        quality = probe.face.quality
        with context.audit.transaction() as session:
            probe_record = context.store_probe(session, probe)
            record = OverrideRequestRecord(
                user_id=actor.id, unit=actor.unit, status="pending", gallery_name=request.gallery,
                policy_version=policy_version, **request.case_fields(), probe_id=probe_record.id,
                requested_box=face_box.as_list() if face_box else None, face_number=request.face_number,
                face_box=probe.face.detection.box.as_list(), quality=quality.to_dict(),
            )
            session.add(record)
            session.flush()
            context.audit.record(session, actor.username, "override_requested", f"override:{record.id}", {
                "gallery": request.gallery, "policy_version": policy_version, "case_number": request.case_number,
                "purpose": request.purpose, "offence": request.offence, "authorization_ref": request.authorization_ref,
                "probe_sha256": probe.sha256, "face_box": record.face_box, "quality_reasons": list(quality.reasons),
            })
            return record.id

    def _check_not_pending(self, actor: Actor, probe_sha: str, request: CaseRequest) -> None:
        """Refuse asking twice for the same probe, gallery and case while the first request waits."""
        with self.context.galleries.sessions() as session:
            waiting = session.scalar(
                select(OverrideRequestRecord.id).join(ProbeRecord, ProbeRecord.id == OverrideRequestRecord.probe_id).where(
                    OverrideRequestRecord.user_id == actor.id, OverrideRequestRecord.status == "pending",
                    OverrideRequestRecord.gallery_name == request.gallery,
                    OverrideRequestRecord.case_number == request.case_number, ProbeRecord.sha256 == probe_sha)
            )
        if waiting is not None:
            raise DuplicateError(f"this probe already waits for a supervisor's approval (request {waiting})")

    def pending_overrides(self, supervisor: Actor) -> list[dict[str, Any]]:
        """Override requests from the supervisor's unit still waiting for a decision, oldest first, with the
        reasons the probe's quality is poor."""
        self.context.require(supervisor, "override_quality")
        with self.context.galleries.sessions() as session:
            return _listed_overrides(session, (OverrideRequestRecord.unit == supervisor.unit,
                                               OverrideRequestRecord.status == "pending"), newest_first=False)

    def my_override_requests(self, actor: Actor, limit: int = 50) -> list[dict[str, Any]]:
        """The actor's own override requests, newest first, with each one's decision and the search it ran."""
        self.context.require(actor, "search")
        with self.context.galleries.sessions() as session:
            return _listed_overrides(session, (OverrideRequestRecord.user_id == actor.id,), limit=limit)

    def override_probe(self, actor: Actor, request_id: int) -> tuple[bytes, list[int]]:
        """The probe of an override request and the face box that would be searched (audited as a view): for the
        investigator who asked and the supervisors of their unit."""
        context = self.context
        if not actor.roles & (ROLE_ACTIONS["search"] | ROLE_ACTIONS["override_quality"]):
            context.deny(actor, "view_override_probe", f"override:{request_id}",
                         "only investigators and supervisors see the probes of override requests")
        with context.galleries.sessions() as session:
            record = self._visible(session, actor, request_id, "view_override_probe")
            probe = session.get(ProbeRecord, record.probe_id)
            if not probe.stored:
                raise NotFoundError(f"the probe of override request {request_id} was purged under the retention policy")
            sha, box = probe.sha256, record.face_box
        data = context.probes.get(sha)
        context.audit.append(actor.username, "override_probe_viewed", f"override:{request_id}", {"probe_sha256": sha})
        return data, box

    def override_probe_pixels(self, actor: Actor, request_id: int) -> tuple[np.ndarray, list[int]]:
        """The probe of an override request decoded to RGB pixels, and the face box (audited as a view)."""
        data, box = self.override_probe(actor, request_id)
        return self.context.pixels(data), box

    def decide_override(self, supervisor: Actor, request_id: int, approve: bool, notes: str = "") -> int | None:
        """A supervisor of the requester's unit, other than the requester, approves or declines an override request,
        once (audited). Approved, the search runs at once as the investigator's, marked as overridden by this
        supervisor, under the policy in force now, and its id is returned; declined, None. A search refused at that
        point leaves the request 'refused', with the reason, and raises the refusal."""
        context = self.context
        context.require(supervisor, "override_quality", f"override:{request_id}")
        check_notes(notes)
        with context.galleries.sessions() as session:
            if self._visible(session, supervisor, request_id, "override_quality").user_id == supervisor.id:
                context.deny(supervisor, "override_quality", f"override:{request_id}",
                             "a supervisor cannot decide their own override request")
        with context.audit.transaction() as session:
            record = session.get(OverrideRequestRecord, request_id)
            if record is None:  # purged under the retention policy a moment ago
                raise NotFoundError(f"no override request {request_id}")
            if record.status != "pending":
                raise DuplicateError(f"override request {request_id} is already {record.status}; decisions are final")
            probe = session.get(ProbeRecord, record.probe_id)
            probe_sha = probe.sha256
            investigator = context.users.active_actor(record.user_id) if approve else None
            if approve and not probe.stored:
                raise NotFoundError(f"the probe of override request {request_id} was purged under the retention policy; "
                                    "decline the request")
            record.status = "approved" if approve else "declined"
            record.decided_by, record.decided_at, record.decision_notes = supervisor.id, utcnow(), notes
            context.audit.record(session, supervisor.username, f"override_{record.status}", f"override:{request_id}", {
                "requested_by": user_names(session).get(record.user_id, ""), "case_number": record.case_number,
                "gallery": record.gallery_name, "probe_sha256": probe_sha,
                "quality_reasons": record.quality.get("reasons", []), "notes": notes,
            })
            request = CaseRequest(record.case_number, record.purpose, record.offence, record.authorization_ref,
                                  record.note, record.gallery_name,
                                  Box(*record.requested_box) if record.requested_box else None, record.face_number)
        if investigator is None:
            return None
        try:
            result = self.searches.search(investigator, context.probes.get(probe_sha), request, quality_override=supervisor)
        except Exception as exc:
            self._settle(request_id, refusal_reason=str(exc))
            raise
        self._settle(request_id, search_id=result.search_id)
        return result.search_id

    def _visible(self, session, actor: Actor, request_id: int, action: str) -> OverrideRequestRecord:
        """An override request the actor may see: their own, or any from their unit for its supervisors. One the
        actor may not see is refused as a missing one is (the same NotFoundError), the refusal audited."""
        record = session.get(OverrideRequestRecord, request_id)
        answer = f"no override request {request_id}"
        if record is None:
            raise NotFoundError(answer)
        if record.user_id != actor.id and not (actor.has("supervisor") and record.unit == actor.unit):
            raise self.context.hidden(actor, action, f"override:{request_id}", (
                f"override request {request_id} is for its investigator and the supervisors of unit "
                f"{record.unit or '(none)'!r}"), answer)
        return record

    def _settle(self, request_id: int, search_id: int | None = None, refusal_reason: str = "") -> None:
        """Link an approved request to the search it ran (audited as that search), or mark it refused with why."""
        with self.context.galleries.sessions() as session:
            record = session.get(OverrideRequestRecord, request_id)
            record.search_id = search_id
            if search_id is None:
                record.status, record.refusal_reason = "refused", refusal_reason
            session.commit()


def _listed_overrides(session, conditions, newest_first: bool = True, limit: int | None = None) -> list[dict[str, Any]]:
    """The override requests meeting ``conditions``, with who asked, who decided, and whether the probe is kept."""
    order = [OverrideRequestRecord.requested_at, OverrideRequestRecord.id]
    if newest_first:
        order = [column.desc() for column in order]
    records = session.scalars(select(OverrideRequestRecord).where(*conditions).order_by(*order).limit(limit)).all()
    names = user_names(session)
    stored = set(session.scalars(select(ProbeRecord.id).where(
        ProbeRecord.id.in_([r.probe_id for r in records]), ProbeRecord.stored.is_(True))))
    return [
        {"request_id": r.id, "status": r.status, "investigator": names.get(r.user_id, ""), "unit": r.unit,
         "gallery": r.gallery_name, "case_number": r.case_number, "purpose": r.purpose, "offence": r.offence,
         "authorization_ref": r.authorization_ref, "note": r.note, "policy_version": r.policy_version,
         "face_box": r.face_box, "quality": r.quality, "quality_reasons": r.quality.get("reasons", []),
         "requested_at": as_utc(r.requested_at), "probe_stored": r.probe_id in stored,
         "decided_by": names.get(r.decided_by), "decided_at": as_utc(r.decided_at) if r.decided_at else None,
         "decision_notes": r.decision_notes, "search_id": r.search_id, "refusal_reason": r.refusal_reason}
        for r in records
    ]


