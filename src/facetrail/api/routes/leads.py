"""Lead reports."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from facetrail.accountability.leads import lead_report_filename
from facetrail.http.deps import CurrentActor, SearchId, SystemDep
from facetrail.http.errors import COMMON_ERRORS

router = APIRouter(prefix="/leads", tags=["leads"], responses=COMMON_ERRORS)

HTML_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
"""Content-Security-Policy of the self-contained HTML pages: nothing is fetched and no script runs."""


@router.get("/{search_id}", summary="The lead report of a search", response_class=HTMLResponse,
            responses={200: {"content": {"text/html": {}}, "description": "A self-contained HTML file, as a download"}})
def lead_report(search_id: SearchId, actor: CurrentActor, system: SystemDep) -> HTMLResponse:
    """The lead report (HTML) of a search whose candidate two examiners verified (audited; 400 without a lead): for
    its investigator, the supervisors of its unit and the examiners who reviewed it once nothing of it is left for
    them to decide (403 to anyone else, whatever the outcome, audited). Sent as a file to save
    (``lead-report-search-N.html``)."""
    return HTMLResponse(system.reviews.lead_report(actor, search_id), headers={
        "Content-Security-Policy": HTML_POLICY,
        "Content-Disposition": f'attachment; filename="{lead_report_filename(search_id)}"'})
