"""Auditors and supervisors: the transparency report with its filters, and the audit trail (browse, verify, export).

No page here shows or links to a photograph: oversight sees what was done, by whom and why, not whom it was done to.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, HTMLResponse

from facetrail.accountability.outcomes import OUTCOMES
from facetrail.accountability.reports import GROUPINGS
from facetrail.accountability.service import AuditVerification, Facetrail
from facetrail.accountability.service import Actor
from facetrail.http.deps import MAX_ID, SystemDep
from facetrail.http import API_PREFIX
from facetrail.http.files import export_response
from facetrail.errors import FacetrailError
from facetrail.web.pages import error_of, render
from facetrail.web.session import FormActor, WebActor

router = APIRouter(prefix="/oversight")

DOWNLOADS = {"csv": "CSV (the grouped table)", "json": "JSON (the whole report)",
             "html": "HTML (a self-contained page to file or publish)"}
"""Format -> link text of the report's download links."""
PAGE_SIZES = (50, 100, 200, 500)
"""Audit entries per page the audit trail page offers."""


def _day(name: str, text: str) -> dt.date | None:
    """A date typed as YYYY-MM-DD (as date inputs send it); None when empty."""
    if not text.strip():
        return None
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise FacetrailError(f"{name} must be a date as YYYY-MM-DD, not {text!r}") from None


@router.get("/report", response_class=HTMLResponse)
def report(
    request: Request,
    actor: WebActor,
    system: SystemDep,
    since: Annotated[str, Query(max_length=40)] = "",
    until: Annotated[str, Query(max_length=40)] = "",
    by: Annotated[str, Query(max_length=40)] = "month",
    unit: Annotated[str, Query(max_length=100)] = "",
    purpose: Annotated[str, Query(max_length=100)] = "",
    outcome: Annotated[str, Query(max_length=40)] = "",
) -> HTMLResponse:
    """The transparency report for a period, narrowed by unit, purpose or outcome, with download links for the same
    report as CSV, JSON or a self-contained HTML page (generating it is audited)."""
    system.require(actor, "view_reports")
    chosen = {"since": since, "until": until, "by": by, "unit": unit, "purpose": purpose, "outcome": outcome}
    fragment, error, status = None, None, 200
    try:
        fragment = system.oversight.transparency_report(actor, _day("since", since), _day("until", until), by, "fragment",
                                              unit, purpose, outcome)
    except FacetrailError as exc:
        status, error, _ = error_of(exc)
    query = {name: value for name, value in chosen.items() if value}
    return render(request, "oversight_report.html", {
        "chosen": chosen, "report": fragment, "error": error, "accuracy": system.oversight.model_accuracy(actor),
        "groupings": GROUPINGS, "outcomes": OUTCOMES, "purposes": system.admin.policy_rules(actor).purpose_ids,
        "units": system.oversight.units(actor),
        "downloads": [(f"{API_PREFIX}/reports?{urlencode({**query, 'format': fmt})}", fmt, label)
                      for fmt, label in DOWNLOADS.items()],
    }, status)


ORDERS = {"newest": "Newest first", "oldest": "Oldest first"}
"""The orders the audit trail page reads entries in, the first by default."""
DETAIL_LABELS = {"probe_sha256": "probe (SHA-256)", "image_id": "gallery image", "since_seq": "after entry",
                 "before_seq": "before entry"}
"""Names of audit details that read better otherwise than with their underscores made spaces."""


def _audit_page(request: Request, system: Facetrail, actor: Actor, who: str = "", action: str = "",
                since_seq: int = 0, limit: int = PAGE_SIZES[0], verification: AuditVerification | None = None,
                order: str = "newest", before_seq: int | None = None) -> HTMLResponse:
    """The audit trail page: a page of entries after ``since_seq`` (before ``before_seq``), newest or oldest first,
    only ``who``'s and/or of ``action`` if given, each entry's details in words; the result of a verification just
    run, if any, else the last one recorded in the trail."""
    newest_first = order == "newest"
    entries = system.oversight.audit_entries(actor, since_seq, limit, who or None, action or None, newest_first, before_seq)
    last_verification, length = system.oversight.last_audit_verification(actor)
    chosen: dict[str, Any] = {"actor": who, "action": action, "limit": limit, "order": order}
    query = {name: value for name, value in chosen.items() if value}
    onward = "before_seq" if newest_first else "since_seq"
    return render(request, "oversight_audit.html", {
        "entries": [{**entry, "readable": readable_details(entry["details"])} for entry in entries],
        "chosen": {**chosen, "since_seq": since_seq},
        "page_sizes": PAGE_SIZES,
        "orders": ORDERS,
        "actions": sorted({*system.oversight.audit_actions(actor), *([action] if action else [])}),
        "first_page": f"/oversight/audit?{urlencode(query)}" if since_seq or before_seq else None,
        "next_page": (f"/oversight/audit?{urlencode({**query, onward: entries[-1]['seq']})}"
                      if len(entries) == limit else None),
        "scope": system.oversight.trail_scope(actor),
        "verification": verification,
        "last_verification": last_verification,
        "length": length,
    })


def readable_details(details: dict[str, Any]) -> list[tuple[str, str]]:
    """An audit entry's details as (name, words) pairs for a definition list: 'candidates' → '1 (gallery image 12),
    2 (gallery image 14)', nested records as 'name: value; …', yes/no, and '—' for nothing."""
    return [(_label(name), _words(value)) for name, value in details.items()]


def _label(name: str) -> str:
    return DETAIL_LABELS.get(name, name.replace("_", " "))


def _words(value: Any) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        if set(value) == {"rank", "image_id"}:
            return f"{value['rank']} ({_label('image_id')} {_words(value['image_id'])})"
        return "; ".join(f"{_label(name)}: {_words(inner)}" for name, inner in value.items())
    if isinstance(value, list):
        return ", ".join(_words(item) for item in value) if value else "none"
    return str(value)


@router.get("/audit", response_class=HTMLResponse)
def audit(
    request: Request,
    actor: WebActor,
    system: SystemDep,
    who: Annotated[str, Query(alias="actor", max_length=100)] = "",
    action: Annotated[str, Query(max_length=60)] = "",
    since_seq: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    before_seq: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    limit: Annotated[int, Query(ge=1, le=PAGE_SIZES[-1])] = PAGE_SIZES[0],
    order: Annotated[Literal["newest", "oldest"], Query()] = "newest",
) -> HTMLResponse:
    """The audit trail, newest first (or oldest first), a page at a time, filtered by who acted and what they did
    (chosen from the actions the trail holds); with buttons to verify the chain and to export it."""
    return _audit_page(request, system, actor, who.strip(), action.strip(), since_seq, limit, order=order,
                       before_seq=before_seq)


@router.post("/audit/verify", response_class=HTMLResponse)
def verify(request: Request, actor: FormActor, system: SystemDep) -> HTMLResponse:
    """Recompute the hash chain and check the signed checkpoints (audited), and show the result over the trail's
    first page."""
    return _audit_page(request, system, actor, verification=system.oversight.verify_audit(actor))


@router.post("/audit/export")
def export(actor: FormActor, system: SystemDep) -> FileResponse:
    """Download the audit trail as a zip with what an outside party needs to verify it (the API's export)."""
    return export_response(system, actor)
