"""Blind review, supervisors scoped to their unit, disputes: the Medium and Low findings about review."""

from __future__ import annotations

import pytest

from facetrail.errors import FacetrailError
from tests.security.helpers import add_user, allow_roles_together, decide, entries, run_search
from tests.fixtures.world import V1


def test_the_default_policy_forbids_examiner_and_supervisor_together(people):
    answer = people.client.post(f"{V1}/users", headers=people.as_user("admin"), json={
        "username": "esme", "password": "correct horse battery staple", "roles": ["examiner", "supervisor"],
        "unit": "Forensics"})
    assert answer.status_code == 403 and "'examiner' and 'supervisor'" in answer.json()["error"]["message"]


def test_an_examiner_who_supervises_still_reviews_blind(world, faces):
    allow_roles_together(world, "examiner", "supervisor")
    add_user(world, "esme", ["examiner", "supervisor"], "RHD")
    search_id = run_search(world, faces)
    assert decide(world, "erin", search_id, "possible_lead", notes="erin's reasons").status_code == 201

    shown = world.client.get(f"{V1}/searches/{search_id}", headers=world.as_user("esme")).json()
    assert 1 in [candidate["rank"] for candidate in shown["candidates"]]  # erin's candidate is shown to esme
    assert all(candidate["decisions"] == [] for candidate in shown["candidates"]) and shown["outcome"] is None
    world.client.cookies.set("ft_session", world.tokens["esme"])
    page = world.client.get(f"/reviews/{search_id}")
    assert page.status_code == 200 and "erin's reasons" not in page.text
    assert world.client.get(f"{V1}/reviews/disputes", headers=world.as_user("esme")).json() == []
    # a supervisor who is not an examiner still sees every decision
    sam_view = world.client.get(f"{V1}/searches/{search_id}", headers=world.as_user("sam")).json()
    assert sam_view["candidates"][0]["decisions"][0]["notes"] == "erin's reasons"


def test_supervisors_see_and_settle_only_their_own_units_searches(world, faces):
    add_user(world, "vic", ["supervisor"], "Vice")
    search_id = run_search(world, faces)  # ivan, RHD
    assert decide(world, "erin", search_id, "possible_lead").status_code == 201
    assert decide(world, "ezra", search_id, "not_a_match").status_code == 201
    vic, client = world.as_user("vic"), world.client

    # another unit's search answers as a search that does not exist would: its id cannot be probed
    for path in ("", "/probe", "/candidates/1/image"):
        for number in (search_id, search_id + 1000):
            answer = client.get(f"{V1}/searches/{number}{path}", headers=vic)
            assert (answer.status_code, answer.json()["error"]["message"]) == (404, f"no search {number}")
    assert client.get(f"{V1}/leads/{search_id}", headers=vic).status_code == 404
    assert client.get(f"{V1}/reviews/disputes", headers=vic).json() == []
    refused = client.post(f"{V1}/reviews/{search_id}/resolutions", headers=vic, json={"rank": 1, "decision": "possible_lead"})
    assert refused.status_code == 404
    assert world.system.reviews.outcome(search_id) == "disputed"
    denied = [e for e in entries(world, "access_denied") if e["actor"] == "vic"]
    assert len(denied) >= 5 and all(e["target"] == f"search:{search_id}" for e in denied)

    sam = world.as_user("sam")  # RHD's supervisor
    assert [d["search_id"] for d in client.get(f"{V1}/reviews/disputes", headers=sam).json()] == [search_id]
    assert client.get(f"{V1}/searches/{search_id}/probe", headers=sam).status_code == 200


def test_the_oversight_unit_may_settle_every_units_disputes(world, faces):
    system = world.system
    admin = system.auth.authenticate(world.tokens["admin"])
    system.admin.load_policy(admin, system.admin.policy_in_force(admin)[1].replace('oversight_unit = ""', 'oversight_unit = "IA"'))
    add_user(world, "ian", ["supervisor"], "IA")
    search_id = run_search(world, faces)
    decide(world, "erin", search_id, "possible_lead")
    decide(world, "ezra", search_id, "not_a_match")
    assert [d["search_id"] for d in world.client.get(f"{V1}/reviews/disputes", headers=world.as_user("ian")).json()] == [search_id]
    resolved = world.client.post(f"{V1}/reviews/{search_id}/resolutions", headers=world.as_user("ian"),
                                 json={"rank": 1, "decision": "not_a_match"})
    assert resolved.status_code == 201
    assert entries(world, "dispute_resolved")[-1]["details"]["unit"] == "RHD"


def test_resolving_twice_is_a_conflict_not_a_crash(world, faces):
    search_id = run_search(world, faces)
    decide(world, "erin", search_id, "possible_lead")
    decide(world, "ezra", search_id, "not_a_match")
    sam = world.as_user("sam")
    assert world.client.post(f"{V1}/reviews/{search_id}/resolutions", headers=sam,
                             json={"rank": 1, "decision": "possible_lead"}).status_code == 201
    again = world.client.post(f"{V1}/reviews/{search_id}/resolutions", headers=sam,
                              json={"rank": 1, "decision": "not_a_match"})
    assert again.status_code == 409 and again.json()["error"]["type"] == "duplicate"


def test_a_disputed_candidate_is_listed_even_when_another_candidate_is_a_lead(world, faces):
    search_id = run_search(world, faces)
    shown = world.client.get(f"{V1}/searches/{search_id}", headers=world.as_user("erin")).json()
    assert len(shown["candidates"]) == 2
    for examiner in ("erin", "ezra"):
        decide(world, examiner, search_id, "possible_lead", rank=1)
    decide(world, "erin", search_id, "possible_lead", rank=2)
    decide(world, "ezra", search_id, "not_a_match", rank=2)
    assert world.system.reviews.outcome(search_id) == "lead"
    disputes = world.client.get(f"{V1}/reviews/disputes", headers=world.as_user("sam")).json()
    assert [(d["search_id"], d["rank"]) for d in disputes] == [(search_id, 2)]


def test_notes_are_limited_on_every_interface(world, faces):
    search_id = run_search(world, faces)
    answer = decide(world, "erin", search_id, "possible_lead", notes="x" * 10_001)
    assert answer.status_code == 422
    erin = world.system.auth.authenticate(world.tokens["erin"])
    with pytest.raises(FacetrailError, match="at most 10,000"):
        world.system.reviews.decide(erin, search_id, 1, "possible_lead", "x" * 5_000_000)
    assert entries(world, "review_decision") == []
