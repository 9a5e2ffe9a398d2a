"""User accounts (admins)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from facetrail.http.deps import CurrentActor, SystemDep
from facetrail.http.errors import COMMON_ERRORS, documented
from facetrail.http.schemas import Account, RolesChanged, RolesUpdate, UserCreate, UserSummary

router = APIRouter(prefix="/users", tags=["users"], responses=COMMON_ERRORS)


@router.get("", summary="List users", response_model=list[UserSummary])
def list_users(actor: CurrentActor, system: SystemDep) -> list[dict]:
    """Every account with its roles, unit and state (no password hashes)."""
    return system.admin.list_users(actor)


@router.post("", summary="Create a user", response_model=Account, status_code=status.HTTP_201_CREATED,
             responses=documented(409))
def create_user(body: UserCreate, actor: CurrentActor, system: SystemDep) -> Account:
    """Create an account; the role combination must be allowed by the policy (audited)."""
    created = system.admin.create_user(actor, body.username, body.password, list(body.roles), body.unit, body.display_name)
    return Account.of(created)


@router.put("/{username}/roles", summary="Replace a user's roles", response_model=RolesChanged,
            responses={202: {"model": RolesChanged, "description": "Recorded; waits for a second admin"}})
def set_roles(username: str, body: RolesUpdate, actor: CurrentActor, system: SystemDep, response: Response) -> RolesChanged:
    """Replace the roles of another user (effective on the user's next request; audited). No one changes their own
    roles (403). A change that makes an admin see photographs, where the policy allows it, answers 202 with
    ``pending_second_admin`` true and the roles unchanged: it takes effect when a different admin makes the same
    change within 24 hours."""
    change = system.admin.set_roles(actor, username, list(body.roles))
    if change.pending:
        response.status_code = status.HTTP_202_ACCEPTED
    return RolesChanged(**Account.of(change.user).model_dump(), pending_second_admin=change.pending)


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
