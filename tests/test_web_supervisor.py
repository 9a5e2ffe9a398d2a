"""The supervisor's pages on real photographs: the unit's activity, resolving examiners' disagreements, and approving
or declining a search with a poor-quality probe that an investigator sent from the search form."""

from __future__ import annotations

import re

import pytest

from facetrail.errors import RefusedError
from tests.fixtures.images import jpeg
from tests.fixtures.web import post_login
from tests.fixtures.world import CASE, PASSWORD, SEARCH_FIELDS, World, add_user
from facetrail.accountability.requests import CaseRequest


def log_in(world: World, username: str) -> str:
    """Log the test client in as ``username`` and return the CSRF token of the session's forms."""
    world.client.cookies.clear()
    response = post_login(world.client, {"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return re.search(r'name="csrf_token" value="([^"]+)"', response.text).group(1)


def ask_for_override(world: World, photo: bytes, ask: bool = True):
    """Ivan submits the search form with ``photo``, ticking 'send to a supervisor' when ``ask``."""
    csrf = log_in(world, "ivan")
    form = {**SEARCH_FIELDS, "csrf_token": csrf, **({"ask_override": "true"} if ask else {})}
    return world.client.post("/search", data=form, files={"probe": ("still.jpg", photo, "image/jpeg")})


def test_the_search_form_offers_to_ask_a_supervisor_only_when_the_policy_allows_it(world):
    log_in(world, "ivan")
    assert 'name="ask_override"' in world.client.get("/search").text
    system, [admin] = world.system, [world.system.auth.authenticate(world.tokens["admin"])]
    system.admin.load_policy(admin, system.admin.policy_in_force(admin)[1].replace(
        'poor_probe = "supervisor_override"', 'poor_probe = "refuse"'))
    assert 'name="ask_override"' not in world.client.get("/search").text


def test_a_poor_probe_goes_to_a_supervisor_who_approves_it(world, poor):
    refused = ask_for_override(world, poor, ask=False)
    assert refused.status_code == 422 and "a supervisor must approve the search" in refused.text
    sent = ask_for_override(world, poor)
    assert sent.status_code == 200 and sent.url.path == "/searches", sent.text
    request_id = int(re.search(r"Sent to a supervisor for approval \(request #(\d+)\)", sent.text).group(1))
    assert "waiting for a supervisor" in sent.text

    csrf = log_in(world, "sam")
    page = world.client.get("/supervision")
    assert page.status_code == 200
    assert f"Request #{request_id} from ivan" in page.text and "tilted" in page.text and CASE in page.text
    image = world.client.get(f"/supervision/overrides/{request_id}/probe.jpg")
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert image.headers["cache-control"] == "private, no-store"
    assert world.system.audit.entries(limit=10_000)[-1]["action"] == "override_probe_viewed"

    no_csrf = world.client.post(f"/supervision/overrides/{request_id}", data={"decision": "approve"})
    assert no_csrf.status_code == 403
    approved = world.client.post(f"/supervision/overrides/{request_id}",
                                 data={"decision": "approve", "notes": "only still we have", "csrf_token": csrf})
    assert approved.status_code == 200 and approved.url.path == "/supervision"
    search_id = int(re.search(rf"Override request #{request_id} approved: search #(\d+) ran", approved.text).group(1))
    assert "No request is waiting." in approved.text
    assert "poor probe, approved by sam" in approved.text  # in the unit's activity
    again = world.client.post(f"/supervision/overrides/{request_id}",
                              data={"decision": "decline", "csrf_token": csrf})
    assert again.status_code == 409 and "already approved" in again.text

    log_in(world, "ivan")
    mine = world.client.get("/searches").text
    assert "approved by sam" in mine and f'href="/searches/{search_id}"' in mine
    assert world.client.get(f"/searches/{search_id}").status_code == 200
    actions = [e["action"] for e in world.system.audit.entries(limit=10_000)]
    assert {"override_requested", "override_approved", "override_probe_viewed"} <= set(actions)


def test_a_supervisor_declines_and_another_units_supervisor_sees_nothing(world, poor):
    add_user(world, "vic", ["supervisor"], "Vice")
    sent = ask_for_override(world, poor)
    request_id = int(re.search(r"request #(\d+)", sent.text).group(1))

    csrf = log_in(world, "vic")
    assert "No request is waiting." in world.client.get("/supervision").text
    assert world.client.get(f"/supervision/overrides/{request_id}/probe.jpg").status_code == 404
    foreign = world.client.post(f"/supervision/overrides/{request_id}", data={"decision": "approve", "csrf_token": csrf})
    assert foreign.status_code == 404 and f"no override request {request_id}" in foreign.text

    csrf = log_in(world, "sam")
    declined = world.client.post(f"/supervision/overrides/{request_id}", data={
        "decision": "decline", "notes": "ask the bank for a better still", "csrf_token": csrf})
    assert declined.status_code == 200 and f"Override request #{request_id} declined." in declined.text
    log_in(world, "ivan")
    mine = world.client.get("/searches").text
    assert "declined by sam" in mine and "ask the bank for a better still" in mine


@pytest.mark.parametrize("username", ["ivan", "erin", "alma", "admin"])
def test_only_supervisors_see_the_supervision_page(world, username):
    log_in(world, username)
    page = world.client.get("/supervision")
    assert page.status_code == 403 and "view_unit_activity" in page.text
    assert 'href="/supervision"' not in world.client.get("/").text


def test_unit_activity_and_resolving_a_disagreement(world, faces):
    system = world.system
    ivan, tina, erin, ezra = (system.auth.authenticate(world.tokens[name]) for name in ("ivan", "tina", "erin", "ezra"))
    probe = jpeg(faces["obama3.jpg"], 700)
    disputed = system.searches.search(ivan, probe, CaseRequest(**SEARCH_FIELDS)).search_id
    system.reviews.decide(erin, disputed, 1, "possible_lead", "same ear shape")
    system.reviews.decide(ezra, disputed, 1, "not_a_match", "nose differs")
    elsewhere = system.searches.search(tina, probe, CaseRequest(**{**SEARCH_FIELDS, "case_number": "24-000777"})).search_id
    with pytest.raises(RefusedError):
        system.searches.search(ivan, probe, CaseRequest(**{**SEARCH_FIELDS, "purpose": "curiosity"}))

    csrf = log_in(world, "sam")
    page = world.client.get("/supervision").text
    activity = page.split('id="activity-heading"')[1]
    assert f'href="/searches/{disputed}"' in activity and "examiners disagree" in activity
    assert "refused" in activity and "curiosity" in activity
    assert f"#{elsewhere}<" not in activity  # tina is in Vice, not sam's unit
    disputes = page.split('id="disputes-heading"')[1].split('id="activity-heading"')[0]
    assert "erin: <strong>possible lead</strong> (same ear shape)" in disputes
    assert "ezra: <strong>not a match</strong> (nose differs)" in disputes
    side_by_side = world.client.get(f"/supervision/disputes/{disputed}/1")
    assert side_by_side.status_code == 200
    assert f'src="/searches/{disputed}/candidates/1/face.jpg"' in side_by_side.text and 'id="zoom"' in side_by_side.text
    assert f'href="/searches/{disputed}/photos/1">full photograph' in side_by_side.text
    assert world.client.get(f"/supervision/disputes/{disputed}/2").status_code == 404

    invalid = world.client.post(f"/supervision/disputes/{disputed}/1", data={"decision": "match", "csrf_token": csrf})
    assert invalid.status_code == 400 and "decision must be one of" in invalid.text
    resolved = world.client.post(f"/supervision/disputes/{disputed}/1",
                                 data={"decision": "possible_lead", "notes": "ears and jaw agree", "csrf_token": csrf})
    assert resolved.status_code == 200 and f"candidate 1 of search #{disputed} is recorded" in resolved.text
    assert "No disagreement is waiting." in resolved.text
    assert system.reviews.outcome(disputed) == "lead"
    entry = [e for e in system.audit.entries(limit=10_000) if e["action"] == "dispute_resolved"][-1]
    assert (entry["actor"], entry["details"]["decision"], entry["details"]["notes"]) == (
        "sam", "possible_lead", "ears and jaw agree")
