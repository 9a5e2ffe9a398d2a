"""Shared steps of the attack tests: a search by ivan (RHD) and examiners' decisions, over the API."""

from __future__ import annotations

import re

from tests.fixtures.images import jpeg
from tests.fixtures.web import post_login
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


def allow_roles_together(world: World, *roles: str) -> None:
    """Load the policy in force without its ban on holding ``roles`` together (as the admin)."""
    system = world.system
    admin = system.auth.authenticate(world.tokens["admin"])
    line = "    [" + ", ".join(f'"{role}"' for role in roles) + "],\n"
    text = system.admin.policy_in_force(admin)[1]
    assert line in text
    system.admin.load_policy(admin, text.replace(line, ""))


def log_in_web(world: World, username: str) -> str:
    """Log ``username`` in on the web pages of the test client (its cookies are kept); returns the CSRF token."""
    world.client.cookies.clear()
    assert post_login(world.client, {"username": username, "password": PASSWORD}).status_code == 200
    return re.search(r'name="csrf_token" value="([^"]+)"', world.client.get("/").text).group(1)
