"""Issue 17, the second attack: blind review and unit scope through every way of reading decisions (the audit trail,
its export, reports, unit activity, lead reports), override requests that answer like missing ones, and refusals
audited."""

from __future__ import annotations

import json

from tests.fixtures.world import SEARCH_FIELDS, V1
from tests.security.helpers import add_user, allow_roles_together, decide, entries, log_in_web, run_search


def ranks(world, search_id: int) -> list[int]:
    shown = world.client.get(f"{V1}/searches/{search_id}", headers=world.as_user("ivan")).json()
    return [candidate["rank"] for candidate in shown["candidates"]]


def denied(world, username: str, action: str) -> list[dict]:
    return [e for e in entries(world, "access_denied") if e["actor"] == username and e["details"]["action"] == action]


def test_an_examiner_who_supervises_reads_no_decision_through_the_trail_until_they_have_decided(world, faces):
    allow_roles_together(world, "examiner", "supervisor")
    system = world.system
    admin = system.auth.authenticate(world.tokens["admin"])  # esme's unit oversees every unit: only blindness limits her
    system.admin.load_policy(admin, system.admin.policy_in_force(admin)[1].replace('oversight_unit = ""', 'oversight_unit = "RHD"'))
    add_user(world, "esme", ["examiner", "supervisor"], "RHD")
    search_id = run_search(world, faces)
    assert len(ranks(world, search_id)) == 2
    assert decide(world, "erin", search_id, "possible_lead", notes="erin's reasons").status_code == 201
    assert decide(world, "ezra", search_id, "not_a_match", notes="ezra's reasons").status_code == 201  # disputed
    client, esme = world.client, world.as_user("esme")

    listed = client.get(f"{V1}/audit/entries", params={"action": "review_decision"}, headers=esme)
    assert listed.status_code == 200 and [e["actor"] for e in listed.json()] == ["erin", "ezra"]
    assert "reasons" not in listed.text and "possible_lead" not in listed.text and "not_a_match" not in listed.text
    trail = client.get(f"{V1}/audit/entries", params={"limit": 1000}, headers=esme).json()
    assert all(e["entry_hash"] == e["prev_hash"] == "" for e in trail)  # a hash would let the decision be guessed
    assert client.post(f"{V1}/audit/exports", headers=esme).status_code == 403
    assert client.get(f"{V1}/reports", headers=esme).status_code == 403
    assert len(denied(world, "esme", "export_audit")) == 1 and len(denied(world, "esme", "view_reports")) == 1
    esme_actor = world.system.auth.authenticate(world.tokens["esme"])
    assert world.system.oversight.unit_activity(esme_actor)[0]["outcome"] is None  # "disputed" would tell
    log_in_web(world, "esme")
    page = client.get("/oversight/audit", params={"action": "review_decision"})
    assert page.status_code == 200 and "reasons" not in page.text and "possible_lead" not in page.text
    assert "examiners disagree" not in client.get("/supervision").text

    # candidate 1 is settled for examiners (a supervisor resolves it); candidate 2 is still esme's to decide
    third = decide(world, "esme", search_id, "possible_lead", rank=1)
    assert third.status_code == 409 and world.system.reviews.outcome(search_id) == "disputed"
    assert decide(world, "esme", search_id, "not_a_match", rank=2).status_code == 201
    seen = client.get(f"{V1}/audit/entries", params={"action": "review_decision"}, headers=esme).json()
    assert [e["details"].get("notes") for e in seen] == ["erin's reasons", "ezra's reasons", ""]
    assert client.post(f"{V1}/audit/exports", headers=esme).status_code == 200
    assert client.get(f"{V1}/reports", headers=esme).status_code == 200


def test_supervisors_read_only_their_own_units_trail_and_report(world, faces):
    system = world.system
    add_user(world, "vic", ["supervisor"], "Vice")
    rhd = run_search(world, faces)
    vice = run_search(world, faces, investigator="tina")
    decide(world, "erin", rhd, "possible_lead", notes="erin on the RHD search")
    client, vic = world.client, world.as_user("vic")

    trail = client.get(f"{V1}/audit/entries", params={"limit": 1000}, headers=vic)
    targets = {e["target"] for e in trail.json()}
    assert f"search:{vice}" in targets and f"search:{rhd}" not in targets
    assert "erin on the RHD search" not in trail.text and "ivan" not in {e["actor"] for e in trail.json()}
    assert client.get(f"{V1}/audit/entries", params={"actor": "ivan"}, headers=vic).json() == []
    log_in_web(world, "vic")
    page = client.get("/oversight/audit", params={"limit": 500}).text
    assert f"search:{rhd}" not in page and f"search:{vice}" in page and "/oversight/audit/export" not in page
    web_report = client.get("/oversight/report")
    assert web_report.status_code == 200 and "1 search by 1 person" in web_report.text and "unit “Vice”" in web_report.text

    report = client.get(f"{V1}/reports", headers=vic).json()
    assert report["filters"] == {"unit": "Vice"} and report["totals"]["total"] == 1
    other = client.get(f"{V1}/reports", params={"unit": "RHD"}, headers=vic)
    assert other.status_code == 403 and "Vice" in other.json()["error"]["message"]
    assert client.post(f"{V1}/audit/exports", headers=vic).status_code == 403
    assert len(denied(world, "vic", "view_reports")) == 1 and len(denied(world, "vic", "export_audit")) == 1

    # the auditor and the oversight unit's supervisors read everything
    admin = system.auth.authenticate(world.tokens["admin"])
    system.admin.load_policy(admin, system.admin.policy_in_force(admin)[1].replace('oversight_unit = ""', 'oversight_unit = "IA"'))
    add_user(world, "ian", ["supervisor"], "IA")
    for reader in ("alma", "ian"):
        read = client.get(f"{V1}/audit/entries", params={"limit": 1000}, headers=world.as_user(reader))
        assert {f"search:{rhd}", f"search:{vice}"} <= {e["target"] for e in read.json()}
        assert "erin on the RHD search" in read.text
        assert client.get(f"{V1}/reports", headers=world.as_user(reader)).json()["totals"]["total"] == 2
        assert client.post(f"{V1}/audit/exports", headers=world.as_user(reader)).status_code == 200


def test_override_requests_out_of_scope_answer_as_missing_ones_and_are_audited(world, poor):
    client = world.client
    add_user(world, "vic", ["supervisor"], "Vice")
    asked = client.post(f"{V1}/overrides", headers=world.as_user("ivan"),
                        files={"probe": ("still.jpg", poor, "image/jpeg")}, data=SEARCH_FIELDS)
    request_id = asked.json()["request_id"]
    vic = world.as_user("vic")
    for number in (request_id, request_id + 1000):
        probe = client.get(f"{V1}/overrides/{number}/probe", headers=vic)
        decided = client.post(f"{V1}/overrides/{number}/decision", headers=vic, json={"approve": True})
        for answer in (probe, decided):
            assert (answer.status_code, answer.json()["error"]["message"]) == (404, f"no override request {number}")
    csrf = log_in_web(world, "vic")
    for number in (request_id, request_id + 1000):
        assert client.get(f"/supervision/overrides/{number}/probe.jpg").status_code == 404
        page = client.post(f"/supervision/overrides/{number}", data={"decision": "approve", "csrf_token": csrf})
        assert page.status_code == 404 and f"no override request {number}" in page.text
    refusals = [e for e in entries(world, "access_denied") if e["actor"] == "vic"]
    assert [e["target"] for e in refusals] == [f"override:{request_id}"] * 4
    assert "unit 'RHD'" in refusals[0]["details"]["reason"]
    assert world.system.overrides.pending_overrides(world.system.auth.authenticate(world.tokens["sam"]))[0]["status"] == "pending"


def test_a_lead_report_is_for_the_investigator_oversight_and_the_examiners_who_are_done(world, faces):
    add_user(world, "eve", ["examiner"], "Forensics")
    search_id = run_search(world, faces)
    assert decide(world, "erin", search_id, "possible_lead", notes="erin: same scar").status_code == 201
    assert decide(world, "ezra", search_id, "possible_lead", notes="ezra: agrees").status_code == 201
    assert decide(world, "ezra", search_id, "not_a_match", rank=2).status_code == 201
    client = world.client

    for reader in ("eve", "erin"):  # eve never reviewed it; erin still has candidate 2 to decide
        refused = client.get(f"{V1}/leads/{search_id}", headers=world.as_user(reader))
        assert refused.status_code == 403 and "erin: same scar" not in refused.text, reader
        assert len(denied(world, reader, "export_lead")) == 1
    late = decide(world, "eve", search_id, "not_a_match", rank=1)  # a third examiner on a verified lead
    assert late.status_code == 409 and "no longer open" in late.json()["error"]["message"]
    assert [e["actor"] for e in entries(world, "review_decision")] == ["erin", "ezra", "ezra"]
    assert decide(world, "erin", search_id, "not_a_match", rank=2).status_code == 201
    for reader in ("ivan", "sam", "erin", "ezra"):
        report = client.get(f"{V1}/leads/{search_id}", headers=world.as_user(reader))
        assert report.status_code == 200 and "erin: same scar" in report.text, reader

    for outsider in ("alma", "admin"):
        assert client.get(f"{V1}/leads/{search_id}", headers=world.as_user(outsider)).status_code == 403
        assert len(denied(world, outsider, "export_lead")) == 1, outsider


def test_refusals_of_ones_own_work_are_audited(world, faces, poor):
    system = world.system
    allow_roles_together(world, "investigator", "examiner")
    add_user(world, "iris", ["investigator", "examiner"], "RHD")
    add_user(world, "bea", ["investigator", "supervisor"], "RHD")
    own_search = run_search(world, faces, investigator="iris")
    assert decide(world, "iris", own_search, "possible_lead").status_code == 403
    assert len(denied(world, "iris", "review")) == 1

    request_id = world.client.post(f"{V1}/overrides", headers=world.as_user("bea"),
                                   files={"probe": ("still.jpg", poor, "image/jpeg")}, data=SEARCH_FIELDS).json()["request_id"]
    own = world.client.post(f"{V1}/overrides/{request_id}/decision", headers=world.as_user("bea"), json={"approve": True})
    assert own.status_code == 403 and len(denied(world, "bea", "override_quality")) == 1

    bea_search = run_search(world, faces, investigator="bea")
    decide(world, "erin", bea_search, "possible_lead")
    decide(world, "ezra", bea_search, "not_a_match")
    refused = world.client.post(f"{V1}/reviews/{bea_search}/resolutions", headers=world.as_user("bea"),
                                json={"rank": 1, "decision": "possible_lead"})
    assert refused.status_code == 403 and len(denied(world, "bea", "resolve_dispute")) == 1
    assert system.reviews.outcome(bea_search) == "disputed"
    assert json.dumps(denied(world, "bea", "resolve_dispute")[0]["details"]).count("ran or reviewed") == 1


def test_another_units_refused_search_answers_a_resolution_as_a_missing_one(world, faces):
    add_user(world, "vic", ["supervisor"], "Vice")
    refused = world.client.post(f"{V1}/searches", headers=world.as_user("ivan"), data={**SEARCH_FIELDS, "purpose": "curiosity"},
                                files={"probe": ("still.jpg", b"not a photograph", "image/jpeg")})
    assert refused.status_code in (415, 422)
    search_id = int(entries(world, "search_refused")[-1]["target"].split(":")[1])
    for number in (search_id, search_id + 1000):
        answer = world.client.post(f"{V1}/reviews/{number}/resolutions", headers=world.as_user("vic"),
                                   json={"rank": 1, "decision": "not_a_match"})
        assert (answer.status_code, answer.json()["error"]["message"]) == (404, f"no search {number}")
    assert [e["target"] for e in denied(world, "vic", "resolve_dispute")] == [f"search:{search_id}"]
