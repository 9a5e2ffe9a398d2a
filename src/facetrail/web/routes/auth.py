"""Logging in and out, and the start page."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from facetrail.api.deps import SettingsDep, SystemDep, clear_session_cookies, log_in, set_session_cookies
from facetrail.errors import FacetrailError
from facetrail.web.pages import error_of, may, render
from facetrail.web.session import FormActor, WebActor, safe_next

router = APIRouter()


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/", reason: str = "") -> HTMLResponse:
    """The login form; ``reason`` says why the user was sent here (e.g. an expired session)."""
    return render(request, "login.html", {"next": safe_next(next), "error": reason[:300] or None})


@router.post("/login")
def login(
    request: Request,
    system: SystemDep,
    settings: SettingsDep,
    username: Annotated[str, Form(max_length=100)],
    password: Annotated[str, Form(max_length=1000)],
    next: Annotated[str, Form(max_length=2000)] = "/",
):
    """Check the password (failures are audited and lock the account after repeated tries), then start a session."""
    try:
        actor, token = log_in(request, system, username, password, "web")
    except FacetrailError as exc:
        status, message, _ = error_of(exc)
        return render(request, "login.html", {"next": safe_next(next), "username": username, "error": message}, status)
    response = RedirectResponse(safe_next(next), status_code=303)
    set_session_cookies(response, token, settings, int(system.users.token_lifetime.total_seconds()))
    return response


@router.post("/logout")
def logout(request: Request, actor: FormActor, system: SystemDep, settings: SettingsDep) -> RedirectResponse:
    """End the session (the token is revoked, audited) and clear the cookies."""
    system.logout(request.state.token)
    response = RedirectResponse("/login", status_code=303)
    clear_session_cookies(response, settings)
    return response


@router.get("/", response_class=HTMLResponse)
def home(request: Request, actor: WebActor, system: SystemDep) -> HTMLResponse:
    """The start page: what this user may do, with what is waiting for them."""
    counts = {
        "mine": len(system.my_searches(actor, limit=500)) if may(actor, "search") else 0,
        "queue": len(system.review_queue(actor)) if may(actor, "review") else 0,
        "disputes": len(system.disputes(actor)) if may(actor, "resolve_dispute") else 0,
    }
    return render(request, "home.html", {"counts": counts})
