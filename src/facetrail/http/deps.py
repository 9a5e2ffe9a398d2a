"""Dependencies shared by the routes: the system, the settings, and who is calling."""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, Path, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from facetrail.accountability.service import Facetrail
from facetrail.accountability.service import Actor
from facetrail.http.errors import ApiError, csrf_failed, rate_limited
from facetrail.http.ratelimit import SlidingWindowLimiter
from facetrail.http.settings import ApiSettings
from facetrail.errors import AuthenticationError

CSRF_COOKIE = "ft_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

MAX_ID = 2**31 - 1
"""The largest id the store's integer columns hold."""

bearer = HTTPBearer(auto_error=False, description="A token from POST /api/v1/auth/login.")


def get_system(request: Request) -> Facetrail:
    return request.app.state.system


def get_settings(request: Request) -> ApiSettings:
    return request.app.state.settings


async def reject_nul_text(request: Request) -> None:
    """Refuse NUL characters in any text a request carries (path, query, form fields, JSON or text body): PostgreSQL
    cannot store them, and no legitimate name, case number or note holds one. Uploaded files are not text."""
    texts = [*request.path_params.values(), *(value for _, value in request.query_params.multi_items())]
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        texts += [value for _, value in (await request.form()).multi_items() if isinstance(value, str)]
    elif content_type.startswith(("application/json", "application/toml", "text/")) or not content_type:
        body = await request.body()
        texts += [body.decode("latin-1").replace("\\u0000", "\x00")]
    if any("\x00" in str(text) for text in texts):
        raise ApiError(422, "validation", "text may not contain NUL characters")


SystemDep = Annotated[Facetrail, Depends(get_system)]
SettingsDep = Annotated[ApiSettings, Depends(get_settings)]


def csrf_token_for(session_token: str) -> str:
    """The CSRF token of a session: bound to its token, so a cookie planted by another site cannot match."""
    return hmac.new(session_token.encode(), b"facetrail csrf", hashlib.sha256).hexdigest()


def client_address(request: Request) -> str:
    """The client's address as the server saw the connection: a proxy's X-Forwarded-For is believed only when the
    connection comes from one of FACETRAIL_API_TRUSTED_PROXIES (uvicorn applies it; see ``server_config``)."""
    return request.client.host if request.client else "unknown"


def log_in(request: Request, system: Facetrail, username: str, password: str, label: str) -> tuple[Actor, str]:
    """Count a login attempt against the client's address and against the username tried (429 over either limit in
    the settings, before the password is checked), then log in through the service, which counts failures per
    username and address."""
    limiter: SlidingWindowLimiter = request.app.state.limiter
    settings: ApiSettings = request.app.state.settings
    address = client_address(request)
    for key, limit in ((("login", address), settings.login_attempts_per_address),
                       (("login-account", username.casefold()[:100]), settings.login_attempts_per_account)):
        retry_after = limiter.hit(key, limit)
        if retry_after:
            raise rate_limited(retry_after, limit)
    actor, token = system.auth.login(username, password, label, address)
    request.state.username = actor.username
    return actor, token


def authenticate_request(request: Request, system: Facetrail, token: str, counted: bool = True) -> Actor:
    """The user a session token belongs to (raises AuthenticationError); the call counts against their requests per
    minute (``count_request``) unless ``counted`` is False: a page's picture, counted only when no page view covers
    it (``web.routes.photos``)."""
    actor = system.auth.authenticate(token)
    request.state.username = actor.username
    if counted:
        count_request(request, system, actor)
    request.state.token = token
    return actor


def count_request(request: Request, system: Facetrail, actor: Actor, kind: str = "", times: int = 1) -> None:
    """Count one request of ``actor`` against their requests per minute under the policy in force (ApiError 429
    over the limit, counting nothing); a ``kind`` of request counted apart is allowed ``times`` that many."""
    limiter: SlidingWindowLimiter = request.app.state.limiter
    limit = system.auth.requests_per_minute() * times
    retry_after = limiter.hit((kind, actor.id) if kind else actor.id, limit)
    if retry_after:
        raise rate_limited(retry_after, limit)


def get_current_actor(
    request: Request,
    system: SystemDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Actor:
    """The caller, from ``Authorization: Bearer`` or the session cookie (which needs the CSRF header on every unsafe
    method)."""
    from_cookie = credentials is None
    token = request.cookies.get(settings.session_cookie) if from_cookie else credentials.credentials
    if not token:
        raise AuthenticationError("not logged in: send 'Authorization: Bearer <token>' or log in for a session cookie")
    actor = authenticate_request(request, system, token)
    if from_cookie and request.method not in SAFE_METHODS:
        check_csrf(token, request.headers.get(CSRF_HEADER, ""), request.cookies.get(CSRF_COOKIE, ""),
                   f"a cookie session must send the {CSRF_COOKIE} cookie's value in the {CSRF_HEADER} header")
    return actor


def check_csrf(session_token: str, sent: str, cookie: str, problem: str) -> None:
    """Raise 403 unless both the value sent with the request and the CSRF cookie match the session's CSRF token."""
    expected = csrf_token_for(session_token).encode()
    if not (hmac.compare_digest(sent.encode(), expected) and hmac.compare_digest(cookie.encode(), expected)):
        raise csrf_failed(problem)


def set_session_cookies(response: Response, token: str, settings: ApiSettings, lifetime_seconds: int) -> str:
    """Set the HttpOnly session cookie and the script-readable CSRF cookie; returns the CSRF token."""
    csrf = csrf_token_for(token)
    response.set_cookie(settings.session_cookie, token, max_age=lifetime_seconds, path="/", secure=settings.cookie_secure,
                        httponly=True, samesite="strict")
    response.set_cookie(CSRF_COOKIE, csrf, max_age=lifetime_seconds, path="/", secure=settings.cookie_secure,
                        httponly=False, samesite="strict")
    return csrf


def clear_session_cookies(response: Response, settings: ApiSettings) -> None:
    for name in (settings.session_cookie, CSRF_COOKIE):
        response.delete_cookie(name, path="/", secure=settings.cookie_secure, samesite="strict")


CurrentActor = Annotated[Actor, Depends(get_current_actor)]


def get_session_token(actor: CurrentActor, request: Request) -> str:
    """The token the caller authenticated with."""
    return request.state.token


SessionToken = Annotated[str, Depends(get_session_token)]


SearchId = Annotated[int, Path(ge=1, le=MAX_ID, description="The search's id.")]
Rank = Annotated[int, Path(ge=1, le=1000, description="The candidate's rank, 1 = nearest.")]
