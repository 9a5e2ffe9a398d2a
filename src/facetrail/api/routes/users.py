"""User accounts (admins)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from facetrail.http.deps import CurrentActor, SystemDep
from facetrail.http.errors import COMMON_ERRORS, documented
from facetrail.accountability.service import RoleChange
from facetrail.http.schemas import Account, RoleRequest, RolesChanged, RolesUpdate, UserCreate, UserSummary

router = APIRouter(prefix="/users", tags=["users"], responses=COMMON_ERRORS)


@router.get("", summary="List users", response_model=list[UserSummary])
def list_users(actor: CurrentActor, system: SystemDep) -> list[dict]:
    """Every account with its roles, unit and state (no password hashes)."""
    return system.admin.list_users(actor)


PENDING = {202: {"model": RolesChanged, "description": "Recorded; the roles that see photographs wait for a second person"}}


def _changed(change: RoleChange, response: Response) -> RolesChanged:
    """The account after a change, answered 202 when roles asked for wait for a second person."""
    if change.pending:
        response.status_code = status.HTTP_202_ACCEPTED
    return RolesChanged(**Account.of(change.user).model_dump(), pending_second_admin=change.pending,
                        requested_roles=sorted(change.requested))


@router.post("", summary="Create a user", response_model=RolesChanged, status_code=status.HTTP_201_CREATED,
             responses={**documented(409), **PENDING})
def create_user(body: UserCreate, actor: CurrentActor, system: SystemDep, response: Response) -> RolesChanged:
    """Create an account; the role combination must be allowed by the policy (audited). An account given a role
    that sees photographs (investigator, examiner, supervisor) is created without it and answered 202 with
    ``pending_second_admin`` true: it gets those roles when a second person confirms
    (``POST /users/{username}/roles/confirm``) within 24 hours."""
    return _changed(system.admin.create_user(actor, body.username, body.password, list(body.roles), body.unit,
                                             body.display_name), response)


@router.get("/role-requests", summary="Requests for roles waiting for a second person", response_model=list[RoleRequest])
def role_requests(actor: CurrentActor, system: SystemDep) -> list[dict]:
    """The open requests for roles that see photographs: every one for an admin, their unit's for a supervisor."""
    return system.admin.role_requests(actor)


@router.put("/{username}/roles", summary="Replace a user's roles", response_model=RolesChanged, responses=PENDING)
def set_roles(username: str, body: RolesUpdate, actor: CurrentActor, system: SystemDep, response: Response) -> RolesChanged:
    """Replace the roles of another user (effective on the user's next request; audited). No one changes their own
    roles (403). A change that gives a role that sees photographs (or makes such a user an admin), where the policy
    allows the roles, answers 202 with ``pending_second_admin`` true and the roles unchanged: it takes effect when a
    second person confirms it within 24 hours (a different admin making the same change confirms it)."""
    return _changed(system.admin.set_roles(actor, username, list(body.roles)), response)


@router.post("/{username}/roles/confirm", summary="Confirm a request for a user's roles", response_model=RolesChanged)
def confirm_roles(username: str, actor: CurrentActor, system: SystemDep, response: Response) -> RolesChanged:
    """Confirm the open request for the user's roles as the second person: an admin, or a supervisor of the user's
    unit, whose account is older than the request and was not created by the admin who asked (403 otherwise, with
    why; audited)."""
    return _changed(system.admin.confirm_roles(actor, username), response)


@router.post("/{username}/disable", summary="Disable a user", response_model=Account)
def disable(username: str, actor: CurrentActor, system: SystemDep) -> Account:
    """Disable the account and revoke all its tokens (audited)."""
    return Account.of(system.admin.set_active(actor, username, False))


@router.post("/{username}/enable", summary="Enable a user", response_model=Account)
def enable(username: str, actor: CurrentActor, system: SystemDep) -> Account:
    """Enable a disabled account (audited)."""
    return Account.of(system.admin.set_active(actor, username, True))


@router.post("/{username}/unlock", summary="Unlock a user", response_model=Account)
def unlock(username: str, actor: CurrentActor, system: SystemDep) -> Account:
    """Lift a lockout after repeated failed logins (audited)."""
    return Account.of(system.admin.unlock(actor, username))
