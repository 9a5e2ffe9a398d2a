"""Logging in and out, and the start page."""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from facetrail.http.deps import SettingsDep, SystemDep, clear_session_cookies, log_in, set_session_cookies
from facetrail.errors import FacetrailError
from facetrail.web.pages import error_of, may, render
from facetrail.web.session import FormActor, WebActor, safe_next

router = APIRouter()


LOGIN_CSRF_COOKIE = "facetrail_login_csrf"
"""A random value set with the login form and sent back in it: a login posted from another site is refused, so no
one can log a victim's browser into an account of theirs (login CSRF)."""
LOGIN_FORM_SECONDS = 3600


def _login_page(request: Request, settings: SettingsDep, context: dict[str, Any], status: int = 200) -> HTMLResponse:
    """The login form with a fresh anti-forgery value, in the form and in a cookie only this site's pages send."""
    value = secrets.token_urlsafe(32)
    response = render(request, "login.html", {**context, "login_csrf": value}, status)
    response.set_cookie(LOGIN_CSRF_COOKIE, value, max_age=LOGIN_FORM_SECONDS, path="/login",
                        secure=settings.cookie_secure, httponly=True, samesite="strict")
    return response


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, settings: SettingsDep, next: str = "/", reason: str = "") -> HTMLResponse:
    """The login form; ``reason`` says why the user was sent here (e.g. an expired session)."""
    return _login_page(request, settings, {"next": safe_next(next), "error": reason[:300] or None})


@router.post("/login")
def login(
    request: Request,
    system: SystemDep,
    settings: SettingsDep,
    username: Annotated[str, Form(max_length=100)],
    password: Annotated[str, Form(max_length=1000)],
    next: Annotated[str, Form(max_length=2000)] = "/",
    login_csrf: Annotated[str, Form(max_length=100)] = "",
):
    """Check the form's anti-forgery value and the password (failures are audited and throttled), then start a
    session."""
    context = {"next": safe_next(next), "username": username}
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not (login_csrf and expected and hmac.compare_digest(login_csrf.encode(), expected.encode())):
        message = "This login form has expired or was not sent from this site's login page: log in again here."
        return _login_page(request, settings, {**context, "error": message}, 403)
    try:
        actor, token = log_in(request, system, username, password, "web")
    except FacetrailError as exc:
        status, message, _ = error_of(exc)
        return _login_page(request, settings, {**context, "error": message}, status)
    response = RedirectResponse(safe_next(next), status_code=303)
    set_session_cookies(response, token, settings, int(system.auth.token_lifetime.total_seconds()))
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login", secure=settings.cookie_secure, samesite="strict")
    return response


@router.post("/logout")
def logout(request: Request, actor: FormActor, system: SystemDep, settings: SettingsDep) -> RedirectResponse:
    """End the session (the token is revoked, audited) and clear the cookies."""
    system.auth.logout(request.state.token)
    response = RedirectResponse("/login", status_code=303)
    clear_session_cookies(response, settings)
    return response


@router.get("/", response_class=HTMLResponse)
def home(request: Request, actor: WebActor, system: SystemDep) -> HTMLResponse:
    """The start page: what this user may do, with what is waiting for them."""
    counts = {
        "mine": len(system.searches.my_searches(actor, limit=500)) if may(actor, "search") else 0,
        "queue": len(system.reviews.review_queue(actor)) if may(actor, "review") else 0,
        "disputes": len(system.reviews.disputes(actor)) if may(actor, "resolve_dispute") else 0,
    }
    return render(request, "home.html", {"counts": counts})
