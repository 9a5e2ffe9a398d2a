"""Transparency reports."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from facetrail.accountability.outcomes import OUTCOMES
from facetrail.accountability.reports import GROUPINGS, NONE_LABEL
from facetrail.http.deps import CurrentActor, SystemDep
from facetrail.http.errors import COMMON_ERRORS
from facetrail.api.routes.leads import HTML_POLICY

router = APIRouter(prefix="/reports", tags=["oversight"], responses=COMMON_ERRORS)

MEDIA_TYPES = {"json": "application/json", "csv": "text/csv; charset=utf-8", "html": "text/html; charset=utf-8"}


@router.get("", summary="Transparency report", response_class=Response,
            responses={200: {"content": {media: {} for media in MEDIA_TYPES.values()},
                             "description": "The report in the format asked for"}})
def transparency_report(
    actor: CurrentActor,
    system: SystemDep,
    since: Annotated[dt.date | None, Query(description="First day (YYYY-MM-DD).")] = None,
    until: Annotated[dt.date | None, Query(description="Last day (YYYY-MM-DD).")] = None,
    by: Annotated[Literal[GROUPINGS], Query(description="The dimension to group by.")] = "month",  # type: ignore[valid-type]
    format: Annotated[Literal["json", "csv", "html"], Query()] = "json",
    unit: Annotated[str | None, Query(max_length=100, description=(
        f"Only requests made for this unit (ignoring case; '{NONE_LABEL}' for none)."))] = None,
    purpose: Annotated[str | None, Query(max_length=100, description=(
        f"Only requests for this purpose (ignoring case; '{NONE_LABEL}' for none)."))] = None,
    outcome: Annotated[Literal[OUTCOMES] | None,  # type: ignore[valid-type]
                       Query(description="Only requests with this outcome.")] = None,
) -> Response:
    """How often face search was used, by whom, for what and with what outcome, with anomaly flags (auditors and
    supervisors; audited). Filtered by unit, purpose or outcome, the report says so in every format. A supervisor
    outside the policy's oversight unit gets their own unit's report (another unit: 403); an account that may still
    decide on a review gets none (403), both refusals audited."""
    text = system.oversight.transparency_report(actor, since, until, by, format, unit, purpose, outcome)
    headers = {"Content-Security-Policy": HTML_POLICY} if format == "html" else None
    return Response(text, media_type=MEDIA_TYPES[format], headers=headers)
