"""The policy every search runs under."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from facetrail.http.deps import CurrentActor, SystemDep
from facetrail.http.errors import COMMON_ERRORS
from facetrail.http.schemas import PolicyInForce, PolicyLoaded, PolicyVersion
from facetrail.errors import FacetrailError

router = APIRouter(prefix="/policy", tags=["policy"], responses=COMMON_ERRORS)


async def policy_text(request: Request) -> str:
    """The request body as UTF-8 text."""
    try:
        return (await request.body()).decode("utf-8")
    except UnicodeDecodeError:
        raise FacetrailError("the policy must be UTF-8 text") from None


PolicyText = Annotated[str, Depends(policy_text)]


@router.get("", summary="The policy in force", response_model=PolicyInForce)
def policy_in_force(actor: CurrentActor, system: SystemDep) -> PolicyInForce:
    """The version and text of the policy in force (any user may read the rules they work under)."""
    version, text = system.admin.policy_in_force(actor)
    return PolicyInForce(version=version, text=text)


@router.put(
    "", summary="Load a new policy", response_model=PolicyLoaded,
    openapi_extra={"requestBody": {"required": True, "description": "The policy file (TOML).",
                                   "content": {"text/plain": {"schema": {"type": "string"}},
                                               "application/toml": {"schema": {"type": "string"}}}}},
)
def load_policy(actor: CurrentActor, text: PolicyText, system: SystemDep) -> PolicyLoaded:
    """Load the body (TOML) as the next policy version; an invalid file is refused with every problem and its line,
    and the policy in force stays (both audited). The answer names the accounts that already hold roles the policy
    forbids together: what those roles allow is refused until an admin changes their roles."""
    version = system.admin.load_policy(actor, text)
    return PolicyLoaded(version=version, accounts_holding_forbidden_roles=system.admin.roles_held_apart(actor))


@router.get("/history", summary="Every policy version", response_model=list[PolicyVersion])
def policy_history(actor: CurrentActor, system: SystemDep) -> list[dict]:
    """Every version loaded, oldest first, with its text (admins and auditors)."""
    return system.admin.policy_history(actor)
