"""Shared steps of the attack tests: a search by ivan (RHD) and examiners' decisions, over the API."""

from __future__ import annotations

from tests.fixtures.images import jpeg
from tests.fixtures.world import PASSWORD, SEARCH_FIELDS, V1, World, create_confirmed


def run_search(world: World, faces, investigator: str = "ivan") -> int:
    """A completed search of 'county' by ``investigator`` with a photograph of B-1001; its id."""
    probe = ("still.jpg", jpeg(faces["obama3.jpg"], 600), "image/jpeg")
    answer = world.client.post(f"{V1}/searches", headers=world.as_user(investigator), files={"probe": probe},
                               data=SEARCH_FIELDS)
    assert answer.status_code == 201, answer.text
    return answer.json()["search_id"]


def decide(world: World, username: str, search_id: int, decision: str, rank: int = 1, notes: str = ""):
    return world.client.post(f"{V1}/reviews/{search_id}/decisions", headers=world.as_user(username),
                             json={"rank": rank, "decision": decision, "notes": notes})


def add_user(world: World, username: str, roles: list[str], unit: str) -> None:
    """Create an account through the service (asked for by the second admin, confirmed by the admin), and log it in."""
    admin = world.system.auth.authenticate(world.tokens["admin"])
    create_confirmed(world.system, admin, username, roles, unit)
    world.tokens[username] = world.system.auth.login(username, PASSWORD)[1]


def entries(world: World, action: str) -> list[dict]:
    return world.system.audit.entries(action=action)
