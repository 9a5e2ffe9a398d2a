"""Oversight: how often, by whom, for what and with what outcome; the audit trail; the model's measured accuracy.

Supervisors see their unit's activity; auditors and supervisors read and verify the audit trail and generate
transparency reports, auditors and the oversight unit's supervisors for every unit, other supervisors for their own
unit (``Context.audit_unit``); only the former export the whole trail. An account that may still decide on a review
reads it blind (``Context.open_reviews``). Every reading is itself audited, with its filters.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from sqlalchemy import select

from facetrail.accountability.context import Context, listed_searches
from facetrail.accountability.schema import OverrideRequestRecord, SearchRecord, UserRecord
from facetrail.accountability.users import ROLE_ACTIONS, Actor
from facetrail.errors import FacetrailError
from facetrail.evaluation.published import LARGE_DIFFERENCE, PRODUCE_COMMAND, published_figures

READ_BATCH = 500
"""Audit entries read at a time while a page of a supervisor's unit's entries is gathered."""
DECISION_ACTIONS = frozenset({"review_decision", "dispute_resolved", "lead_exported"})
"""Audit actions whose details tell a decision on a search, or its outcome."""
WITHHELD = "a decision on a search you may still decide on (blind review): shown once you have decided"
"""What a withheld entry's details say instead."""
REPORT_FORMATS = ("html", "csv", "json", "fragment")
"""How a transparency report may be written: fragment is the HTML report's body, for a web page."""


class Oversight:
    """Reports, the audit trail, unit activity and the model's published accuracy."""

    def __init__(self, context: Context) -> None:
        self.context = context

    def unit_activity(self, supervisor: Actor, limit: int = 100) -> list[dict[str, Any]]:
        """Recent searches and comparisons run by members of the supervisor's unit, newest first, completed or
        refused, each with who ran it, any quality override and its outcome (None for a search the supervisor, as an
        examiner too, may still decide on: blind review)."""
        self.context.require(supervisor, "view_unit_activity")
        with self.context.galleries.sessions() as session:
            activity = listed_searches(session, SearchRecord.unit == supervisor.unit, limit,
                                       self.context.examiners_required())
            blind = self.context.open_reviews(session, supervisor, [row["search_id"] for row in activity])
        return [{**row, "outcome": None} if row["search_id"] in blind else row for row in activity]

    def units(self, actor: Actor) -> list[str]:
        """The units whose requests the actor's reports may count, by name (for filtering reports): every unit that
        has members for auditors and the oversight unit's supervisors, a supervisor's own unit otherwise."""
        self.context.require(actor, "view_reports")
        unit = self.context.audit_unit(actor)
        if unit is not None:
            return [unit] if unit else []
        return sorted({user["unit"] for user in self.context.users.list_users() if user["unit"]})

    def model_accuracy(self, actor: Actor) -> dict[str, Any]:
        """The model in use, the calibration behind its estimated false-match rates, and its published accuracy and
        demographic differentials (this installation's own evaluation, then facetrail's), each with its differences
        between groups (``published.differences``); the command that measures this installation's own."""
        self.context.require(actor, "view_reports")
        model = self.context.engines.model_name
        with self.context.galleries.sessions() as session:
            calibration = self.context.calibration_in_force(session, model, None)
        return {"model": model, "calibration": calibration.tables.source if calibration else None,
                "figures": published_figures(self.context.datadir, model),
                "produce_command": PRODUCE_COMMAND, "large_difference": LARGE_DIFFERENCE}

    def transparency_report(self, actor: Actor, since: dt.date | None, until: dt.date | None, by: str = "month",
                            fmt: str = "html", unit: str | None = None, purpose: str | None = None,
                            outcome: str | None = None) -> str:
        """The transparency report for a period, grouped ``by`` a dimension and narrowed to a unit, purpose and/or
        outcome when given (see ``reports.build_report``), in one of REPORT_FORMATS. Audited, with its filters. A
        supervisor outside the oversight unit reports on their own unit only (asking for another is refused); an
        account that may still decide on a review gets none (blind review)."""
        from facetrail.accountability import reports  # matplotlib: loaded only when a report is made

        context = self.context
        context.require(actor, "view_reports")
        unit = self._report_unit(actor, unit)
        self._refuse_if_blind(actor, "view_reports", "transparency", "a report counts the outcomes of searches")
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
        """Export the audit trail with what an outside party needs to verify it (audited first, so it is included).
        The export is the whole trail, every unit's entries with their hashes: refused (audited) to a supervisor
        outside the oversight unit, and to an account that may still decide on a review (blind review)."""
        context = self.context
        context.require(actor, "export_audit")
        unit = context.audit_unit(actor)
        if unit is not None:
            context.deny(actor, "export_audit", "audit", (
                f"the export is the whole trail, every unit's entries: auditors and the oversight unit's supervisors "
                f"export it; a supervisor of unit {unit or '(none)'!r} reads their unit's entries"))
        self._refuse_if_blind(actor, "export_audit", "audit", "the export holds every examiner's decisions")
        self.context.audit.append(actor.username, "audit_exported", str(folder))
        return self.context.audit.export(folder)

    def last_audit_verification(self, actor: Actor) -> tuple[dict[str, Any] | None, int]:
        """The newest ``audit_verified`` entry (None if the trail was never verified), and the trail's length now."""
        self.context.require(actor, "view_audit")
        newest = self.context.audit.entries(action="audit_verified", limit=1, newest_first=True)
        return (newest[0] if newest else None), self.context.audit.length()

    def audit_entries(self, actor: Actor, since_seq: int = 0, limit: int = 50, who: str | None = None,
                      action: str | None = None, newest_first: bool = False,
                      before_seq: int | None = None) -> list[dict]:
        """A page of audit entries after ``since_seq`` (and before ``before_seq``), oldest or newest first (auditors
        and supervisors); reading the trail is audited too, with the filters. Auditors and the oversight unit's
        supervisors read every entry; another supervisor only the entries about their unit's searches and override
        requests, and their unit's members' other entries. An account that may still decide on a review reads other
        people's decisions on those searches withheld, and no entry's hashes (they would let a withheld decision be
        guessed; ``verify_audit`` checks the chain)."""
        context = self.context
        context.require(actor, "view_audit")
        unit = context.audit_unit(actor)
        entries: list[dict] = []
        since, before, size = since_seq, before_seq, limit if unit is None else max(limit, READ_BATCH)
        while len(entries) < limit:
            batch = context.audit.entries(since_seq=since, limit=size, actor=who, action=action,
                                          newest_first=newest_first, before_seq=before)
            entries += batch if unit is None else self._of_unit(batch, unit)
            if len(batch) < size:
                break
            if newest_first:
                before = batch[-1]["seq"]
            else:
                since = batch[-1]["seq"]
        entries = self._blind(actor, entries[:limit])
        context.audit.append(actor.username, "audit_viewed", "audit", {
            "since_seq": since_seq, "limit": limit, "actor": who, "action": action, "entries": len(entries),
            "unit": "(every unit)" if unit is None else unit,
            **({"newest_first": True} if newest_first else {}),
            **({"before_seq": before_seq} if before_seq is not None else {})})
        return entries

    def audit_actions(self, actor: Actor) -> list[str]:
        """The actions the audit trail holds entries of, for choosing among (auditors and supervisors)."""
        self.context.require(actor, "view_audit")
        return self.context.audit.actions()

    def trail_scope(self, actor: Actor) -> dict[str, Any]:
        """What of the audit trail ``actor`` reads, for a page to say so: ``unit`` (None: every unit, see
        ``audit_entries``), ``open_reviews`` (the searches whose other decisions are withheld from them) and
        ``exports`` (whether they may export the whole trail)."""
        self.context.require(actor, "view_audit")
        unit = self.context.audit_unit(actor)
        with self.context.galleries.sessions() as session:
            waiting = len(self.context.open_reviews(session, actor))
        return {"unit": unit, "open_reviews": waiting,
                "exports": unit is None and not waiting and bool(actor.roles & ROLE_ACTIONS["export_audit"])}

    def _of_unit(self, entries: list[dict], unit: str) -> list[dict]:
        """The ``entries`` about ``unit``: those about its searches and override requests, and its members' entries
        about nothing of another unit."""
        ids = {kind: {number for entry in entries if (number := _target_id(entry["target"], kind)) is not None}
               for kind in ("search", "override")}
        with self.context.galleries.sessions() as session:
            units = {kind: {number: record_unit for number, record_unit in session.execute(
                         select(record.id, record.unit).where(record.id.in_(sorted(ids[kind]))))}
                     for kind, record in (("search", SearchRecord), ("override", OverrideRequestRecord))}
            members = {name: member_unit for name, member_unit in session.execute(
                select(UserRecord.username, UserRecord.unit))}

        def about(entry: dict) -> str | None:
            for kind, of_kind in units.items():
                number = _target_id(entry["target"], kind)
                if number is not None and number in of_kind:
                    return of_kind[number]
            return members.get(entry["actor"])

        return [entry for entry in entries if about(entry) == unit]

    def _blind(self, actor: Actor, entries: list[dict]) -> list[dict]:
        """``entries`` as an account that may still decide on reviews may read them: other people's decisions on
        those searches withheld, and no hashes; unchanged for anyone else."""
        with self.context.galleries.sessions() as session:
            blind = self.context.open_reviews(session, actor)
        if not blind:
            return entries
        return [{**entry, "prev_hash": "", "entry_hash": "",
                 **({"details": {"withheld": WITHHELD}} if entry["action"] in DECISION_ACTIONS
                    and entry["actor"] != actor.username and _target_id(entry["target"], "search") in blind else {})}
                for entry in entries]

    def _report_unit(self, actor: Actor, asked: str | None) -> str | None:
        """The unit a report for ``actor`` counts: ``asked`` for auditors and the oversight unit's supervisors; a
        supervisor's own unit otherwise, another unit asked for being refused (audited)."""
        from facetrail.accountability.reports import NONE_LABEL

        unit = self.context.audit_unit(actor)
        if unit is None:
            return asked
        own = unit or NONE_LABEL
        if asked and asked.strip() and asked.strip().casefold() != own.casefold():
            self.context.deny(actor, "view_reports", "transparency",
                              f"a supervisor of unit {own!r} reports on their own unit only, not {asked.strip()!r}")
        return own

    def _refuse_if_blind(self, actor: Actor, action: str, target: str, why: str) -> None:
        """Refuse (audited) an account that may still decide on a review: ``why`` says what it would see."""
        with self.context.galleries.sessions() as session:
            waiting = len(self.context.open_reviews(session, actor))
        if waiting:
            self.context.deny(actor, action, target, (
                f"{why}: decide the {waiting} search(es) still open to you as an examiner first (blind review), "
                "or use an account without the examiner role"))


def _target_id(target: str, kind: str) -> int | None:
    """N of an audit entry's target ``kind:N`` (e.g. 'search:12'); None for a target of another kind."""
    prefix, _, number = target.partition(":")
    return int(number) if prefix == kind and number.isdigit() else None
