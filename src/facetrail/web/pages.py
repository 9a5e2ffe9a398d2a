"""Rendering pages: the templates, the navigation each role sees, and error pages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates

from facetrail.accountability.comparison import CONCLUSIONS
from facetrail.accountability.service import NOTICE
from facetrail.accountability.service import ROLE_ACTIONS, Actor
from facetrail.http.deps import csrf_token_for
from facetrail.http.errors import facetrail_error_response
from facetrail.http.files import FACE_FRAME_SIDE, face_frame_box
from facetrail.errors import FacetrailError
from facetrail.store import readable_time as moment
from facetrail.web.charts import group_rates_chart

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")

OUTCOME_LABELS = {
    "lead": ("lead: verified by two examiners", "good"),
    "disputed": ("examiners disagree", "warn"),
    "no_lead": ("no lead", ""),
    "pending_review": ("waiting for review", "warn"),
    "no_candidates": ("no candidates", ""),
    "refused": ("refused", "bad"),
}
"""Outcome -> (words shown, badge style)."""


def rate_with_interval(figure: dict | None) -> str:
    """An error rate from an evaluation report with its bootstrap 95% interval: '0.12% (0.08–0.17%), 31 of 25,000';
    an identity-weighted one says over how many people: '7.39% (4.61–10.31%), averaged over 223 people'."""
    if not figure or figure.get("rate") is None:
        return "—"
    interval = figure.get("ci95_bootstrap")
    shown = f"{figure['rate']:.3%}"
    if interval and None not in interval:
        shown += f" ({interval[0]:.3%}–{interval[1]:.3%})"
    if "people" in figure:
        return f"{shown}, averaged over {figure['people']:,} people"
    return f"{shown}, {figure['errors']:,} of {figure['trials']:,}"


def ratio(comparison: dict | None) -> str:
    """A worst/best ratio with its 95% interval: '×1.8 (1.2–2.9), female worst'."""
    if not comparison:
        return "—"
    if comparison.get("ratio") is None:
        return f"{comparison['best_group']} made no error, {comparison['worst_group']} did"

    def number(value: float | None) -> str:
        return "∞" if value is None else f"{value:.2f}"

    interval = comparison.get("ratio_ci95_bootstrap")
    shown = f"×{comparison['ratio']:.2f}"
    if interval:
        shown += f" ({number(interval[0])}–{number(interval[1])})"
    return f"{shown}, {comparison['worst_group']} worst"


def conclusion(key: str) -> str:
    """An examiner's conclusion (``comparison.CONCLUSIONS``) in words."""
    return CONCLUSIONS[key][0]


TEMPLATES.env.filters.update(conclusion=conclusion, group_rates_chart=group_rates_chart, moment=moment, rate_with_interval=rate_with_interval, ratio=ratio)
TEMPLATES.env.globals.update(OUTCOME_LABELS=OUTCOME_LABELS, FACE_FRAME_SIDE=FACE_FRAME_SIDE, FACE_FRAME_BOX=",".join(map(str, face_frame_box())))

NAVIGATION = (
    ("search", "New search", "/search"),
    ("search", "My searches", "/searches"),
    ("review", "Review queue", "/reviews"),
    ("view_unit_activity", "Supervision", "/supervision"),
    ("view_reports", "Transparency report", "/oversight/report"),
    ("view_audit", "Audit trail", "/oversight/audit"),
    ("manage_users", "Users", "/admin/users"),
    ("manage_galleries", "Galleries", "/admin/galleries"),
    ("enrol", "Enrolment jobs", "/admin/jobs"),
    ("manage_policy", "Policy", "/admin/policy"),
    ("view_audit", "Cases", "/cases"),
)
"""(action, label, path): a link is shown to users whose roles may perform the action."""


def may(actor: Actor | None, action: str) -> bool:
    """Whether ``actor`` holds a role that may perform ``action`` (for showing links and buttons; the service
    enforces it)."""
    return actor is not None and bool(actor.roles & ROLE_ACTIONS[action])


def render(request: Request, template: str, context: dict[str, Any] | None = None, status: int = 200,
           headers: dict[str, str] | None = None) -> HTMLResponse:
    """A page from ``template`` with the user, their navigation, the CSRF token for forms and the standing notice."""
    actor: Actor | None = getattr(request.state, "actor", None)
    token: str | None = getattr(request.state, "token", None)
    base = {
        "actor": actor,
        "csrf_token": csrf_token_for(token) if token else "",
        "nav": [(label, path) for action, label, path in NAVIGATION if may(actor, action)],
        "may": lambda action: may(actor, action),
        "notice": NOTICE,
        "path": request.url.path,
    }
    return TEMPLATES.TemplateResponse(request, template, {**base, **(context or {})}, status_code=status, headers=headers)


def error_of(exc: FacetrailError) -> tuple[int, str, list[dict]]:
    """The status, message and itemised problems the API would answer ``exc`` with."""
    response = facetrail_error_response(exc)
    error = json.loads(response.body)["error"]
    return response.status_code, error.get("reason") or error["message"], error.get("problems", [])


def problem_page(request: Request, json_response: Response) -> HTMLResponse:
    """The HTML page for an error the API would answer with ``json_response``. Its text goes in ``reason``: the
    base page shows a ``message`` as a success."""
    error = json.loads(json_response.body)["error"]
    retry = {"Retry-After": json_response.headers["Retry-After"]} if "Retry-After" in json_response.headers else None
    return render(request, "error.html", {"status": json_response.status_code, "reason": error["message"],
                                          "problems": error.get("problems", [])}, json_response.status_code, retry)
