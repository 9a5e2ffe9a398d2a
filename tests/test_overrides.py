"""Quality overrides on real photographs: an investigator whose probe is of poor quality asks a supervisor of their
unit to approve the search; the supervisor approves (the search runs as the investigator's, marked as overridden) or
declines, once, and everything is audited. Through the service and over the HTTP API."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update

from facetrail.accountability.schema import OverrideRequestRecord, ProbeRecord, SearchRecord
from facetrail.errors import DuplicateError, NotFoundError, PermissionDeniedError, PoorQualityError, RefusedError
from tests.fixtures.images import jpeg
from tests.fixtures.world import CASE, SEARCH_FIELDS, World, actors, add_user
from facetrail.accountability.requests import CaseRequest

V1 = "/api/v1"


def audit_actions(world: World) -> list[tuple[str, str, str]]:
    return [(e["actor"], e["action"], e["target"]) for e in world.system.audit.entries(limit=10_000)]


def test_the_probe_really_is_poor_and_the_search_is_refused(world, poor):
    system = world.system
    [ivan] = actors(world, "ivan")
    with pytest.raises(RefusedError, match="a supervisor must approve") as refused:
        system.searches.search(ivan, poor, CaseRequest(**SEARCH_FIELDS))
    assert isinstance(refused.value.__cause__, PoorQualityError) and "tilted" in str(refused.value)


def test_a_supervisor_of_the_unit_approves_and_the_search_runs_as_the_investigators(world, poor):
    system = world.system
    ivan, sam = actors(world, "ivan", "sam")
    vic = add_user(world, "vic", ["supervisor"], "Vice")
    request_id = system.overrides.request_override(ivan, poor, CaseRequest(**SEARCH_FIELDS))

    assert system.overrides.pending_overrides(vic) == []  # another unit's supervisor neither sees nor decides it
    for look in (lambda: system.overrides.decide_override(vic, request_id, True),
                 lambda: system.overrides.override_probe(vic, request_id)):
        with pytest.raises(NotFoundError, match=f"^no override request {request_id}$"):  # as a missing one would
            look()
    [pending] = system.overrides.pending_overrides(sam)
    assert (pending["request_id"], pending["investigator"], pending["case_number"], pending["status"]) == (
        request_id, "ivan", CASE, "pending")
    assert any("tilted" in reason for reason in pending["quality_reasons"]) and pending["probe_stored"]
    assert [r["status"] for r in system.overrides.my_override_requests(ivan)] == ["pending"]
    data, box = system.overrides.override_probe(sam, request_id)
    assert data == poor and len(box) == 4

    search_id = system.overrides.decide_override(sam, request_id, True, "the still is all there is")
    with system.galleries.sessions() as session:
        search = session.get(SearchRecord, search_id)
        assert (search.status, search.user_id, search.quality_override_by) == ("completed", ivan.id, sam.id)
        assert search.quality["verdict"] == "poor" and search.case_number == CASE
    shown = system.reviews.show_search(ivan, search_id)
    assert shown["investigator"] == "ivan" and shown["candidates"]
    [mine] = system.overrides.my_override_requests(ivan)
    assert (mine["status"], mine["decided_by"], mine["search_id"], mine["decision_notes"]) == (
        "approved", "sam", search_id, "the still is all there is")
    assert system.overrides.pending_overrides(sam) == []
    with pytest.raises(DuplicateError, match="already approved"):
        system.overrides.decide_override(sam, request_id, False)

    trail = audit_actions(world)
    target = f"override:{request_id}"
    assert ("ivan", "override_requested", target) in trail and ("sam", "override_approved", target) in trail
    assert ("sam", "override_probe_viewed", target) in trail
    search_entry = next(e for e in system.audit.entries(limit=10_000) if e["target"] == f"search:{search_id}")
    assert (search_entry["actor"], search_entry["action"], search_entry["details"]["quality_override_by"]) == (
        "ivan", "search", "sam")
    assert system.audit.verify().ok


def test_a_declined_request_runs_no_search(world, poor):
    system = world.system
    ivan, sam = actors(world, "ivan", "sam")
    request_id = system.overrides.request_override(ivan, poor, CaseRequest(**SEARCH_FIELDS))
    with system.galleries.sessions() as session:
        searches_before = len(session.scalars(select(SearchRecord)).all())
    assert system.overrides.decide_override(sam, request_id, False, "get a better still from the bank") is None
    with system.galleries.sessions() as session:
        assert len(session.scalars(select(SearchRecord)).all()) == searches_before
    [mine] = system.overrides.my_override_requests(ivan)
    assert (mine["status"], mine["decided_by"], mine["search_id"]) == ("declined", "sam", None)
    with pytest.raises(DuplicateError, match="already declined"):
        system.overrides.decide_override(sam, request_id, True)
    assert ("sam", "override_declined", f"override:{request_id}") in audit_actions(world)


def test_requests_pass_the_checks_a_search_makes(world, faces, poor):
    system = world.system
    ivan, erin, tina, admin = actors(world, "ivan", "erin", "tina", "admin")
    good = jpeg(faces["obama3.jpg"], 700)
    refusals = [
        (lambda: system.overrides.request_override(ivan, good, CaseRequest(**SEARCH_FIELDS)), "quality is acceptable"),
        (lambda: system.overrides.request_override(ivan, poor, CaseRequest(**{**SEARCH_FIELDS, "case_number": "7"})), "case number"),
        (lambda: system.overrides.request_override(ivan, poor, CaseRequest(**{**SEARCH_FIELDS, "note": "who is at the protest"})), "protest"),
        (lambda: system.overrides.request_override(erin, poor, CaseRequest(**SEARCH_FIELDS)), "may not 'search'"),
        (lambda: system.overrides.request_override(tina, poor, CaseRequest(**{**SEARCH_FIELDS, "gallery": "nowhere"})), "nowhere"),
    ]
    for attempt, reason in refusals:
        with pytest.raises(RefusedError, match=reason):
            attempt()
    first = system.overrides.request_override(ivan, poor, CaseRequest(**SEARCH_FIELDS))
    with pytest.raises(RefusedError, match=f"already waits for a supervisor's approval \\(request {first}\\)"):
        system.overrides.request_override(ivan, poor, CaseRequest(**SEARCH_FIELDS))
    system.admin.load_policy(admin, system.admin.policy_in_force(admin)[1].replace(
        'poor_probe = "supervisor_override"', 'poor_probe = "refuse"'))
    with pytest.raises(RefusedError, match="the policy refuses poor-quality probes"):
        system.overrides.request_override(ivan, poor, CaseRequest(**{**SEARCH_FIELDS, "case_number": "24-000999"}))
    refused = [e for e in system.audit.entries(limit=10_000) if e["action"] == "override_request_refused"]
    assert len(refused) == len(refusals) + 2 and all(e["details"]["reason"] for e in refused)


def test_who_may_decide(world, poor):
    system = world.system
    ivan, sam, erin, alma = actors(world, "ivan", "sam", "erin", "alma")
    both = add_user(world, "bea", ["investigator", "supervisor"], "RHD")
    own = system.overrides.request_override(both, poor, CaseRequest(**SEARCH_FIELDS))
    with pytest.raises(PermissionDeniedError, match="cannot decide their own"):
        system.overrides.decide_override(both, own, True)
    for outsider in (ivan, erin, alma):
        with pytest.raises(PermissionDeniedError):
            system.overrides.decide_override(outsider, own, True)
    with pytest.raises(PermissionDeniedError):
        system.overrides.pending_overrides(ivan)
    with pytest.raises(NotFoundError):
        system.overrides.decide_override(sam, own + 100, True)
    assert system.overrides.decide_override(sam, own, True) is not None


def test_an_approval_under_a_policy_changed_since_leaves_the_request_refused(world, poor):
    system = world.system
    ivan, sam, admin = actors(world, "ivan", "sam", "admin")
    request_id = system.overrides.request_override(ivan, poor, CaseRequest(**SEARCH_FIELDS))
    system.admin.load_policy(admin, system.admin.policy_in_force(admin)[1].replace(
        'poor_probe = "supervisor_override"', 'poor_probe = "refuse"'))
    with pytest.raises(RefusedError, match="the policy refuses poor probes"):
        system.overrides.decide_override(sam, request_id, True)
    [mine] = system.overrides.my_override_requests(ivan)
    assert mine["status"] == "refused" and "refuses poor probes" in mine["refusal_reason"] and mine["search_id"] is None
    with pytest.raises(DuplicateError):
        system.overrides.decide_override(sam, request_id, True)


def test_retention_purges_the_probe_and_later_the_request(world, poor):
    system = world.system
    ivan, sam, admin = actors(world, "ivan", "sam", "admin")
    request_id = system.overrides.request_override(ivan, poor, CaseRequest(**SEARCH_FIELDS))
    long_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=200)
    with system.galleries.sessions() as session:
        probe_id = session.get(OverrideRequestRecord, request_id).probe_id
        session.execute(update(ProbeRecord).where(ProbeRecord.id == probe_id).values(created_at=long_ago))
        session.commit()
    assert system.retention.purge_expired(admin) == {"probe_images": 1, "search_records": 0}
    with pytest.raises(NotFoundError, match="purged"):
        system.overrides.override_probe(sam, request_id)
    with pytest.raises(NotFoundError, match="decline the request"):
        system.overrides.decide_override(sam, request_id, True)
    assert system.overrides.pending_overrides(sam)[0]["probe_stored"] is False
    assert system.overrides.decide_override(sam, request_id, False, "probe gone") is None

    with system.galleries.sessions() as session:
        session.execute(update(OverrideRequestRecord).values(requested_at=long_ago - dt.timedelta(days=2000)))
        session.commit()
    system.retention.purge_expired(admin)
    assert system.overrides.my_override_requests(ivan) == []
    purge = [e for e in system.audit.entries(limit=10_000) if e["action"] == "retention_purge"][-1]
    assert purge["details"]["override_request_ids"] == [request_id]


def test_overrides_over_http(world, poor):
    client = world.client
    probe = {"probe": ("still.jpg", poor, "image/jpeg")}
    refused = client.post(f"{V1}/searches", headers=world.as_user("ivan"), files=probe, data=SEARCH_FIELDS)
    assert refused.status_code == 422 and "supervisor must approve" in refused.json()["error"]["reason"]
    asked = client.post(f"{V1}/overrides", headers=world.as_user("ivan"), files=probe, data=SEARCH_FIELDS)
    assert asked.status_code == 201, asked.text
    request_id = asked.json()["request_id"]
    again = client.post(f"{V1}/overrides", headers=world.as_user("ivan"), files=probe, data=SEARCH_FIELDS)
    assert again.status_code == 422 and "already waits" in again.json()["error"]["reason"]

    pending = client.get(f"{V1}/overrides", headers=world.as_user("sam")).json()
    assert [(p["request_id"], p["investigator"], p["status"]) for p in pending] == [(request_id, "ivan", "pending")]
    assert client.get(f"{V1}/overrides?scope=pending", headers=world.as_user("ivan")).status_code == 403
    assert [p["request_id"] for p in client.get(f"{V1}/overrides", headers=world.as_user("ivan")).json()] == [request_id]
    assert client.get(f"{V1}/overrides", headers=world.as_user("tina")).json() == []
    image = client.get(f"{V1}/overrides/{request_id}/probe", headers=world.as_user("sam"))
    assert image.status_code == 200 and image.content == poor
    assert client.get(f"{V1}/overrides/{request_id}/probe", headers=world.as_user("tina")).status_code == 404

    decision = {"approve": True, "notes": "only still of the robber"}
    decide = f"{V1}/overrides/{request_id}/decision"
    assert client.post(decide, headers=world.as_user("ivan"), json=decision).status_code == 403
    decided = client.post(decide, headers=world.as_user("sam"), json=decision)
    assert decided.status_code == 200, decided.text
    body = decided.json()
    assert (body["request_id"], body["status"]) == (request_id, "approved") and body["search_id"]
    twice = client.post(decide, headers=world.as_user("sam"), json=decision)
    assert twice.status_code == 409 and twice.json()["error"]["type"] == "duplicate"
    shown = client.get(f"{V1}/searches/{body['search_id']}", headers=world.as_user("ivan")).json()
    assert shown["investigator"] == "ivan" and shown["quality"]["verdict"] == "poor"
    [mine] = client.get(f"{V1}/overrides?scope=mine", headers=world.as_user("ivan")).json()
    assert (mine["status"], mine["decided_by"], mine["search_id"]) == ("approved", "sam", body["search_id"])
