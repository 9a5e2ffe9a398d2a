"""Retention: the policy's limits on how long probe photographs and search records are kept."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, func, select

from facetrail.accountability.context import Context
from facetrail.accountability.schema import (
    CandidateRecord,
    OverrideRequestRecord,
    ProbeRecord,
    ResolutionRecord,
    ReviewRecord,
    SearchRecord,
)
from facetrail.accountability.users import Actor
from facetrail.store import utcnow


class Retention:
    """Purging what the policy no longer lets the system keep (the audit trail keeps its entries about it)."""

    def __init__(self, context: Context) -> None:
        self.context = context

    def purge_expired(self, by: Actor | None) -> dict[str, int]:
        """Apply the policy's retention periods: delete probe images (keeping their hashes), and search records with
        their candidates and reviews and quality-override requests. ``by`` None is the system itself (on start)."""
        context = self.context
        if by is not None:
            context.require(by, "purge")
        _, policy = context.policy()
        now = utcnow()
        probe_cutoff = now - dt.timedelta(days=policy.retention.probe_images_days)
        search_cutoff = now - dt.timedelta(days=policy.retention.search_records_days)
        expired_probes = select(ProbeRecord).where(ProbeRecord.stored.is_(True), ProbeRecord.created_at < probe_cutoff)
        expired_searches = select(SearchRecord.id).where(SearchRecord.started_at < search_cutoff)
        expired_requests = select(OverrideRequestRecord.id).where(OverrideRequestRecord.requested_at < search_cutoff)
        with context.galleries.sessions() as session:
            if all(session.scalar(select(func.count()).select_from(expired.subquery())) == 0
                   for expired in (expired_probes, expired_searches, expired_requests)):
                return {"probe_images": 0, "search_records": 0}
        with context.audit.transaction() as session:
            purged = []
            for probe in session.scalars(expired_probes):
                still_used = session.scalar(select(func.count()).select_from(ProbeRecord).where(
                    ProbeRecord.sha256 == probe.sha256, ProbeRecord.stored.is_(True), ProbeRecord.created_at >= probe_cutoff))
                if not still_used:
                    context.probes.delete(probe.sha256)
                probe.stored, probe.purged_at = False, now
                purged.append(probe.sha256)
            request_ids = list(session.scalars(expired_requests))
            session.execute(delete(OverrideRequestRecord).where(OverrideRequestRecord.id.in_(request_ids)))
            search_ids = list(session.scalars(expired_searches))
            candidate_ids = select(CandidateRecord.id).where(CandidateRecord.search_id.in_(search_ids))
            session.execute(delete(ResolutionRecord).where(ResolutionRecord.candidate_id.in_(candidate_ids)))
            session.execute(delete(ReviewRecord).where(ReviewRecord.search_id.in_(search_ids)))
            session.execute(delete(CandidateRecord).where(CandidateRecord.search_id.in_(search_ids)))
            session.execute(delete(SearchRecord).where(SearchRecord.id.in_(search_ids)))
            context.audit.record(session, by.username if by else "system", "retention_purge", "probes+searches", {
                "probe_images": len(purged), "probe_retention_days": policy.retention.probe_images_days, "sha256": purged,
                "search_records": len(search_ids), "search_retention_days": policy.retention.search_records_days,
                "search_ids": search_ids, "override_request_ids": request_ids,
            })
        return {"probe_images": len(purged), "search_records": len(search_ids)}
