"""Logging in and out."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from facetrail.api.deps import CSRF_COOKIE, CurrentActor, SessionToken, SettingsDep, SystemDep, csrf_token_for
from facetrail.api.errors import COMMON_ERRORS, documented
from facetrail.api.schemas import Account, LoginRequest, LoginResponse

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/login", summary="Log in", response_model=LoginResponse, responses=documented(400, 401, 422))
def login(body: LoginRequest, request: Request, response: Response, system: SystemDep, settings: SettingsDep) -> LoginResponse:
    """Check the password (failures are audited; repeated failures lock the account) and return a new token. The
    token is also set as an HttpOnly session cookie, with a CSRF cookie for browser clients."""
    actor, token = system.login(body.username, body.password, label="api")
    request.state.username = actor.username
    csrf = csrf_token_for(token)
    lifetime = int(system.users.token_lifetime.total_seconds())
    response.set_cookie(settings.session_cookie, token, max_age=lifetime, path="/", secure=settings.cookie_secure,
                        httponly=True, samesite="strict")
    response.set_cookie(CSRF_COOKIE, csrf, max_age=lifetime, path="/", secure=settings.cookie_secure,
                        httponly=False, samesite="strict")
    return LoginResponse(token=token, csrf_token=csrf, user=Account.of(actor))


@router.post("/logout", summary="Log out", status_code=status.HTTP_204_NO_CONTENT,
             responses=COMMON_ERRORS)
def logout(token: SessionToken, system: SystemDep, settings: SettingsDep) -> Response:
    """Revoke the token the request was made with (audited) and clear the cookies."""
    system.logout(token)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    for name in (settings.session_cookie, CSRF_COOKIE):
        response.delete_cookie(name, path="/", secure=settings.cookie_secure, samesite="strict")
    return response


@router.get("/me", summary="Who am I", response_model=Account, responses=COMMON_ERRORS)
def me(actor: CurrentActor) -> Account:
    """The calling user: username, unit and roles."""
    return Account.of(actor)
