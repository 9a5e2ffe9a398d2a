"""Oversight: how often, by whom, for what and with what outcome; the audit trail; the model's measured accuracy.

Supervisors see their unit's activity; auditors and supervisors read, verify and export the audit trail and generate
transparency reports. Every reading is itself audited, with its filters.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from facetrail.accountability.context import Context, listed_searches
from facetrail.accountability.schema import SearchRecord
from facetrail.accountability.users import Actor
from facetrail.errors import FacetrailError
from facetrail.evaluation.published import published_figures

REPORT_FORMATS = ("html", "csv", "json", "fragment")
"""How a transparency report may be written: fragment is the HTML report's body, for a web page."""


class Oversight:
    """Reports, the audit trail, unit activity and the model's published accuracy."""

    def __init__(self, context: Context) -> None:
        self.context = context

    def unit_activity(self, supervisor: Actor, limit: int = 100) -> list[dict[str, Any]]:
        """Recent searches and comparisons run by members of the supervisor's unit, newest first, completed or
        refused, each with who ran it, any quality override and its outcome."""
        self.context.require(supervisor, "view_unit_activity")
        with self.context.galleries.sessions() as session:
            return listed_searches(session, SearchRecord.unit == supervisor.unit, limit,
                                   self.context.examiners_required())

    def units(self, actor: Actor) -> list[str]:
        """Every unit that has members, by name (for filtering reports; auditors and supervisors)."""
        self.context.require(actor, "view_reports")
        return sorted({user["unit"] for user in self.context.users.list_users() if user["unit"]})

    def model_accuracy(self, actor: Actor) -> dict[str, Any]:
        """The model in use, the calibration behind its estimated false-match rates, and its published accuracy and
        demographic differentials (this installation's own evaluation, then facetrail's)."""
        self.context.require(actor, "view_reports")
        model = self.context.engines.model_name
        return {"model": model, "calibration": self.context.calibration_source(model),
                "figures": published_figures(self.context.datadir, model)}

    def transparency_report(self, actor: Actor, since: dt.date | None, until: dt.date | None, by: str = "month",
                            fmt: str = "html", unit: str | None = None, purpose: str | None = None,
                            outcome: str | None = None) -> str:
        """The transparency report for a period, grouped ``by`` a dimension and narrowed to a unit, purpose and/or
        outcome when given (see ``reports.build_report``), in one of REPORT_FORMATS. Audited, with its filters."""
        from facetrail.accountability import reports  # matplotlib: loaded only when a report is made

        context = self.context
        context.require(actor, "view_reports")
        if by not in reports.GROUPINGS:
            raise FacetrailError(f"--by must be one of {', '.join(reports.GROUPINGS)}")
        if fmt not in REPORT_FORMATS:
            raise FacetrailError(f"--format must be one of {', '.join(REPORT_FORMATS)}")
        with context.galleries.sessions() as session:
            report = reports.build_report(session, since, until, by, unit=unit, purpose=purpose, outcome=outcome,
                                          examiners_required=context.examiners_required())
        context.audit.append(actor.username, "report_generated", "transparency", {
            "since": since.isoformat() if since else None, "until": until.isoformat() if until else None, "by": by,
            "format": fmt, "filters": report.filters})
        renderers = {"html": reports.render_html, "csv": reports.render_csv, "json": reports.render_json,
                     "fragment": reports.render_html_fragment}
        return renderers[fmt](report)

    def verify_audit(self, actor: Actor):
        """Recompute the audit chain and check the signed checkpoints and the witnesses' heads (the check itself is
        audited, with the witnesses' gaps if any)."""
        audit = self.context.audit
        self.context.require(actor, "verify_audit")
        result = audit.verify()
        notes = {"notes": result.notes()} if result.notes() else {}
        audit.append(actor.username, "audit_verified", "audit", {"ok": result.ok, "entries": result.entries,
                                                                  "first_bad_seq": result.first_bad_seq, **notes})
        if result.ok:
            audit.checkpoint()  # sign what was just verified: later truncation below this point is detectable
        return result

    def export_audit(self, actor: Actor, folder: Path):
        """Export the audit trail with what an outside party needs to verify it (audited first, so it is included)."""
        self.context.require(actor, "export_audit")
        self.context.audit.append(actor.username, "audit_exported", str(folder))
        return self.context.audit.export(folder)

    def last_audit_verification(self, actor: Actor) -> tuple[dict[str, Any] | None, int]:
        """The newest ``audit_verified`` entry (None if the trail was never verified), and the trail's length now."""
        self.context.require(actor, "view_audit")
        newest = self.context.audit.entries(action="audit_verified", limit=1, newest_first=True)
        return (newest[0] if newest else None), self.context.audit.length()

    def audit_entries(self, actor: Actor, since_seq: int = 0, limit: int = 50, who: str | None = None,
                      action: str | None = None) -> list[dict]:
        """A page of audit entries (auditors and supervisors); reading the trail is audited too, with the filters."""
        audit = self.context.audit
        self.context.require(actor, "view_audit")
        entries = audit.entries(since_seq=since_seq, limit=limit, actor=who, action=action)
        audit.append(actor.username, "audit_viewed", "audit", {
            "since_seq": since_seq, "limit": limit, "actor": who, "action": action, "entries": len(entries)})
        return entries
