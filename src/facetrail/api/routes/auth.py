"""Logging in and out."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from facetrail.http.deps import (
    CurrentActor,
    SessionToken,
    SettingsDep,
    SystemDep,
    clear_session_cookies,
    log_in,
    set_session_cookies,
)
from facetrail.http.errors import COMMON_ERRORS, documented
from facetrail.http.schemas import Account, LoginRequest, LoginResponse

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/login", summary="Log in", response_model=LoginResponse, responses=documented(400, 401, 422, 429))
def login(body: LoginRequest, request: Request, response: Response, system: SystemDep, settings: SettingsDep) -> LoginResponse:
    """Check the password (failures are audited; repeated failures lock the account) and return a new token. The
    token is also set as an HttpOnly session cookie, with a CSRF cookie for browser clients. More than 20 attempts a
    minute from one address, or 10 for one username, get 429; five failures for one username from one address lock
    that username for that address for 15 minutes (the same answer whether the account exists or not)."""
    actor, token = log_in(request, system, body.username, body.password, "api")
    csrf = set_session_cookies(response, token, settings, int(system.auth.token_lifetime.total_seconds()))
    return LoginResponse(token=token, csrf_token=csrf, user=Account.of(actor))


@router.post("/logout", summary="Log out", status_code=status.HTTP_204_NO_CONTENT,
             responses=COMMON_ERRORS)
def logout(token: SessionToken, system: SystemDep, settings: SettingsDep) -> Response:
    """Revoke the token the request was made with (audited) and clear the cookies."""
    system.auth.logout(token)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    clear_session_cookies(response, settings)
    return response


@router.get("/me", summary="Who am I", response_model=Account, responses=COMMON_ERRORS)
def me(actor: CurrentActor) -> Account:
    """The calling user: username, unit and roles."""
    return Account.of(actor)
