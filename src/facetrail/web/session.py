"""Who is using a page: the browser's session cookie, and the CSRF token every form posts back."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import Depends, Form, Request

from facetrail.accountability.service import Actor
from facetrail.http.deps import CSRF_COOKIE, SettingsDep, SystemDep, authenticate_request, check_csrf
from facetrail.errors import AuthenticationError


class LoginRequired(Exception):
    """The page needs a logged-in user; answered with a redirect to the login page."""

    def __init__(self, next_path: str, reason: str = "") -> None:
        super().__init__(reason or "log in first")
        self.next_path, self.reason = next_path, reason


def login_url(next_path: str = "/", reason: str = "") -> str:
    """The login page, returning to ``next_path`` (a local path only) afterwards."""
    query = {"next": safe_next(next_path)}
    if reason:
        query["reason"] = reason
    return "/login?" + urlencode(query)


def safe_next(path: str | None) -> str:
    """``path`` when it is a path on this site, else ``/`` (no open redirects)."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path


def web_actor(request: Request, system: SystemDep, settings: SettingsDep) -> Actor:
    """The logged-in user of a page, from the session cookie, the request counted against their limit; without a
    valid session, off to the login page."""
    return _session_actor(request, system, settings, counted=True)


def picture_actor(request: Request, system: SystemDep, settings: SettingsDep) -> Actor:
    """The logged-in user fetching a page's picture, the request not counted yet: the picture route counts it
    unless a page view covers the picture (``web.routes.photos``)."""
    return _session_actor(request, system, settings, counted=False)


def _session_actor(request: Request, system, settings, counted: bool) -> Actor:
    token = request.cookies.get(settings.session_cookie)
    if not token:
        raise LoginRequired(request.url.path)
    try:
        actor = authenticate_request(request, system, token, counted)
    except AuthenticationError as exc:
        raise LoginRequired(request.url.path, str(exc)) from None
    request.state.actor = actor
    return actor


WebActor = Annotated[Actor, Depends(web_actor)]
PictureActor = Annotated[Actor, Depends(picture_actor)]


def form_actor(request: Request, actor: WebActor,
               csrf_token: Annotated[str, Form(description="The session's CSRF token.")] = "") -> Actor:
    """The user posting a form; the form must carry the session's CSRF token (and the CSRF cookie must match)."""
    check_csrf(request.state.token, csrf_token, request.cookies.get(CSRF_COOKIE, ""),
               "this form is out of date or came from another site: reload the page and try again")
    return actor


FormActor = Annotated[Actor, Depends(form_actor)]
