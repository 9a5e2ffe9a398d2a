"""The oversight pages on a running app: the transparency report with its filters and downloads, the audit trail
browser, verifying the chain (intact and tampered with), the export, and that auditors never see a photograph."""

from __future__ import annotations

import csv
import html
import io
import json
import re
import zipfile

import pytest
from sqlalchemy import update

from facetrail.accountability.schema import AuditEntryRecord
from tests.fixtures.images import jpeg
from tests.fixtures.web import post_login
from tests.fixtures.world import CASE, PASSWORD, SEARCH_FIELDS, World, actors, create_confirmed
from facetrail.accountability.requests import CaseRequest


def log_in(world: World, username: str) -> str:
    """Log ``username`` in on the test client (its cookies are kept); returns the session's CSRF token."""
    world.client.cookies.clear()
    assert post_login(world.client, {"username": username, "password": PASSWORD}).status_code == 200
    return re.search(r'name="csrf_token" value="([^"]+)"', world.client.get("/").text).group(1)


def search_as(world: World, username: str, photo: bytes) -> int:
    """A search for case CASE run through the service by ``username``; returns its id."""
    system = world.system
    actor = system.auth.authenticate(world.tokens[username])
    return system.searches.search(actor, photo, CaseRequest(gallery=SEARCH_FIELDS["gallery"], case_number=CASE, purpose=SEARCH_FIELDS["purpose"], offence=SEARCH_FIELDS["offence"], note=SEARCH_FIELDS["note"])).search_id


@pytest.fixture
def searched(world, faces) -> int:
    """``world`` after ivan searched 'county' with a photograph of one of its subjects; the search's id."""
    return search_as(world, "ivan", jpeg(faces["obama2.jpg"], 400))


def rows(page: str) -> list[list[str]]:
    """The text of the cells of every body row of the page's tables."""
    bodies = "".join(re.findall(r"<tbody>(.*?)</tbody>", page, re.S))
    cells = r"<t[hd][^>]*>(.*?)</t[hd]>"
    return [[html.unescape(re.sub(r"<[^>]+>", "", cell)).strip() for cell in re.findall(cells, row, re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", bodies, re.S)]


def downloads(page: str) -> dict[str, str]:
    """Format -> the page's download link for the report in that format."""
    links = re.findall(r'<a href="([^"]+)" download="transparency-report\.(\w+)"', page)
    return {fmt: html.unescape(href) for href, fmt in links}


def audit_actions(world: World, action: str) -> list[dict]:
    alma = world.system.auth.authenticate(world.tokens["alma"])
    return world.system.oversight.audit_entries(alma, 0, 1000, None, action)


# --- the transparency report ----------------------------------------------------------------------------------------


def test_auditor_sees_the_report_with_the_search_counted(world, searched):
    log_in(world, "alma")
    page = world.client.get("/oversight/report")
    assert page.status_code == 200
    assert '<p class="headline">1 search by 1 person between' in page.text
    assert 'class="filtered"' not in page.text
    assert len(re.findall(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]+" alt="Bar chart', page.text)) == 3
    assert ["Requests (all)", "1"] in rows(page.text) and ["1:N searches", "1"] in rows(page.text)
    assert '<a href="/oversight/report" aria-current="page">Transparency report</a>' in page.text
    assert not re.search(r"<script(?![^>]*\bsrc=)", page.text) and "style=" not in page.text  # no inline script or style
    assert audit_actions(world, "report_generated")[-1]["details"] == {
        "since": None, "until": None, "by": "month", "format": "fragment", "filters": {}}

    links = downloads(page.text)
    assert set(links) == {"csv", "json", "html"}
    table = list(csv.DictReader(io.StringIO(world.client.get(links["csv"]).text)))  # the session cookie will do
    assert (table[-1]["month"], table[-1]["total"], table[-1]["searches"]) == ("(all)", "1", "1")
    assert world.client.get(links["json"]).json()["totals"]["total"] == 1
    standalone = world.client.get(links["html"])
    assert standalone.headers["content-type"].startswith("text/html")
    assert "<h1>Face search transparency report" in standalone.text

    log_in(world, "sam")  # supervisors may see it too
    assert world.client.get("/oversight/report").status_code == 200


def test_filters_change_the_counts_and_follow_the_downloads(world, searched):
    log_in(world, "alma")
    client = world.client

    def headline(**query) -> str:
        page = client.get("/oversight/report", params=query)
        assert page.status_code == 200
        return html.unescape(re.search(r'<p class="headline">(.*?)</p>', page.text).group(1))

    assert headline(purpose="imminent_threat_to_life").startswith("0 searches by 0 people")
    assert headline(purpose="criminal_investigation").startswith("1 search by 1 person")
    assert headline(unit="rhd").startswith("1 search")
    assert headline(unit="Vice").startswith("0 searches")
    assert headline(outcome="refused").startswith("0 searches")
    assert headline(outcome="pending_review").startswith("1 search")
    assert headline(unit="Vice", outcome="pending_review").endswith(
        ", counting only requests with unit “Vice” and outcome “pending_review”.")

    page = client.get("/oversight/report", params={"unit": "Vice", "by": "unit", "since": "2020-01-01"}).text
    assert '<p class="filtered" role="note"><strong>Filtered report.</strong>' in page
    assert re.search(r'<input id="unit"[^>]* value="Vice"', page) and '<option value="unit" selected>' in page
    assert re.search(r'<input type="date" id="since" name="since" value="2020-01-01"', page)
    table = list(csv.DictReader(io.StringIO(client.get(downloads(page)["csv"]).text)))
    assert table == [{"unit": "(all)", **{name: "0" for name in table[0] if name not in ("unit", "filter_unit")},
                      "filter_unit": "Vice"}]
    assert client.get(downloads(page)["json"]).json()["filters"] == {"unit": "Vice"}
    assert audit_actions(world, "report_generated")[-1]["details"]["filters"] == {"unit": "Vice"}


@pytest.mark.parametrize(("query", "status", "message"), [
    ({"since": "2024-03-01", "until": "2024-02-01"}, 400, "since (2024-03-01) is after until (2024-02-01)"),
    ({"since": "yesterday"}, 400, "since must be a date as YYYY-MM-DD, not 'yesterday'"),
    ({"outcome": "match"}, 400, "outcome must be one of lead, disputed"),
    ({"by": "weekday"}, 400, "--by must be one of month, user"),
    ({"unit": "x" * 101}, 422, "at most 100 characters"),
])
def test_report_errors_are_shown_not_crashed_on(world, query, status, message):
    log_in(world, "alma")
    page = world.client.get("/oversight/report", params=query)
    assert page.status_code == status
    assert 'role="alert"' in page.text and message in html.unescape(page.text)
    if status == 400:  # the form is shown again, as filled in, without a report
        assert 'action="/oversight/report"' in page.text and 'class="headline"' not in page.text
        assert all(re.search(rf'<input [^>]*id="{name}"[^>]* value="{value}"', page.text)
                   for name, value in query.items() if name not in ("by", "outcome"))


def test_a_case_used_by_three_people_is_flagged(world, faces):
    system = world.system
    admin = system.auth.authenticate(world.tokens["admin"])
    create_confirmed(system, admin, "ida", ["investigator"], "RHD")
    world.tokens["ida"] = system.auth.login("ida", PASSWORD)[1]
    photo = jpeg(faces["obama2.jpg"], 400)
    search_as(world, "ivan", photo)
    search_as(world, "tina", photo)
    log_in(world, "alma")
    assert not case_anomalies(world.client.get("/oversight/report").text)
    flagged = search_as(world, "ida", photo)

    [anomaly] = case_anomalies(world.client.get("/oversight/report").text)
    assert "used by 3 different people (ida, ivan, tina)" in anomaly and str(flagged) in anomaly
    # narrowed to one unit, the case is no longer used by three people
    assert not case_anomalies(world.client.get("/oversight/report", params={"unit": "RHD"}).text)


def case_anomalies(page: str) -> list[str]:
    """The report's flags of a case number used by many people (other flags, such as out of hours, depend on the
    time of day the test runs)."""
    sections = re.findall(r'<section class="anomaly">(.*?)</section>', html.unescape(page), re.S)
    return [s for s in sections if f"A case number used by many different people: {CASE}" in s]


def test_investigators_get_no_oversight_page(world):
    csrf = log_in(world, "ivan")
    client = world.client
    assert client.get("/oversight/report").status_code == 403
    assert client.get("/oversight/audit").status_code == 403
    assert client.post("/oversight/audit/verify", data={"csrf_token": csrf}).status_code == 403
    assert client.post("/oversight/audit/export", data={"csrf_token": csrf}).status_code == 403
    assert audit_actions(world, "audit_verified") == [] and audit_actions(world, "audit_exported") == []
    assert "/oversight/" not in client.get("/").text


# --- the audit trail ------------------------------------------------------------------------------------------------


def test_audit_page_lists_entries_newest_first_filters_by_listed_actions_and_pages(world, searched):
    log_in(world, "alma")
    client = world.client
    newest = client.get("/oversight/audit")
    entries = rows(newest.text)
    assert [int(row[0]) for row in entries] == sorted((int(row[0]) for row in entries), reverse=True)
    assert int(entries[0][0]) == world.system.audit.length() - 1  # its own audit_viewed entry comes after it
    assert ["ivan", "search"] in [row[2:4] for row in entries]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", row[1]) for row in entries)
    assert '<td class="when">' in newest.text  # kept on one line (facetrail.css)
    # the actions to filter on are the trail's, in a list: no free text to guess
    listed = re.search(r'<select id="action" name="action">(.*?)</select>', newest.text, re.S).group(1)
    options = re.findall(r'<option value="([^"]*)"', listed)
    assert options == ["", *world.system.audit.actions()] and "search" in options and "user_created" in options

    searches = rows(client.get("/oversight/audit", params={"action": "search"}).text)
    assert [row[2:4] for row in searches] == [["ivan", "search"]]
    details = client.get("/oversight/audit", params={"action": "search"}).text
    assert "<dt>case number</dt><dd>" + CASE + "</dd>" in details and "<dt>gallery</dt><dd>county</dd>" in details
    assert '<pre class="json">' not in details and "{&#34;" not in details  # words, not JSON
    assert {row[2] for row in rows(client.get("/oversight/audit", params={"actor": "admin"}).text)} == {"admin"}
    assert "No entry matches" in client.get("/oversight/audit", params={"action": "no_such_action"}).text

    oldest = client.get("/oversight/audit", params={"limit": 2, "order": "oldest"})
    assert [row[0] for row in rows(oldest.text)] == ["1", "2"] and "First page" not in oldest.text
    following = re.search(r'<a href="([^"]+)">Next page \(newer entries\)</a>', oldest.text).group(1)
    assert html.unescape(following) == "/oversight/audit?limit=2&order=oldest&since_seq=2"
    second = client.get(html.unescape(following))
    assert [row[0] for row in rows(second.text)] == ["3", "4"] and "First page" in second.text

    first = client.get("/oversight/audit", params={"limit": 2})
    top = [int(row[0]) for row in rows(first.text)]
    older = re.search(r'<a href="([^"]+)">Next page \(older entries\)</a>', first.text).group(1)
    assert html.unescape(older) == f"/oversight/audit?limit=2&order=newest&before_seq={top[1]}"
    assert [int(row[0]) for row in rows(client.get(html.unescape(older)).text)] == [top[1] - 1, top[1] - 2]
    for page in (newest, first, oldest, second):
        assert 'src="/searches' not in page.text and 'href="/searches' not in page.text


def test_audit_details_read_as_words():
    from facetrail.web.routes.oversight import readable_details

    assert readable_details({"page": "review", "probe_sha256": "ab12", "candidates": [
        {"rank": 1, "image_id": 7}, {"rank": 2, "image_id": None}]}) == [
        ("page", "review"), ("probe (SHA-256)", "ab12"), ("candidates", "1 (gallery image 7), 2 (gallery image —)")]
    assert readable_details({"ok": False, "filters": {"unit": "Vice", "since": None}, "roles": ["admin"], "shown": []}) == [
        ("ok", "no"), ("filters", "unit: Vice; since: —"), ("roles", "admin"), ("shown", "none")]


def test_verify_shows_an_intact_chain(world, searched):
    csrf = log_in(world, "alma")
    assert world.client.post("/oversight/audit/verify", data={}).status_code == 403  # no CSRF token
    unverified = world.client.get("/oversight/audit")
    entries = len(world.system.audit.entries())
    page = world.client.post("/oversight/audit/verify", data={"csrf_token": csrf})
    assert page.status_code == 200
    assert re.search(r'<div class="flash verification" role="status">\s*<p><strong>The audit trail is intact.</strong> '
                     rf"{entries} entries checked; (\d+ signed checkpoints valid|no signed checkpoint was due yet)", page.text)
    assert audit_actions(world, "audit_verified")[-1]["details"] == {"ok": True, "entries": entries,
                                                                    "first_bad_seq": None}
    # each look at the trail is itself audited (audit_viewed), so the unverified page counted its own entry
    assert f"The trail has not been verified yet.</strong> It has {entries} entries." in unverified.text
    status = " ".join(world.client.get("/oversight/audit").text.split())
    assert re.search(r"Last verified \d{4}-\d\d-\d\d \d\d:\d\d UTC by alma: intact</strong> "
                     rf"\({entries} entries checked\)\. The trail now has {len(world.system.audit.entries())} entries",
                     status)


def test_verify_names_the_first_tampered_entry(world, searched):
    csrf = log_in(world, "alma")
    [search_entry] = audit_actions(world, "search")
    with world.system.audit.sessions() as session, session.begin():
        session.execute(update(AuditEntryRecord).where(AuditEntryRecord.seq == search_entry["seq"])
                        .values(details={**search_entry["details"], "case_number": "99-999999"}))
    page = world.client.post("/oversight/audit/verify", data={"csrf_token": csrf})
    assert page.status_code == 200 and "The audit trail is intact" not in page.text
    seq = search_entry["seq"]
    alert = re.search(r'<div class="error verification" role="alert">(.*?)</div>', page.text, re.S).group(1)
    assert f"The audit trail has been altered or damaged, first at entry #{seq}." in alert
    assert f"entry {seq} has been altered" in alert and f"{seq - 1} entries were found sound before it" in alert
    assert f'<a href="/oversight/audit?order=oldest&amp;since_seq={seq - 1}">Show the entries from #{seq}</a>' in alert
    assert audit_actions(world, "audit_verified")[-1]["details"] == {"ok": False, "entries": seq - 1,
                                                                    "first_bad_seq": seq}
    status = " ".join(world.client.get("/oversight/audit").text.split())
    assert f"by alma: altered or damaged, first at entry #{seq}</strong>" in status


def test_export_is_a_zip_of_the_trail(world, searched):
    csrf = log_in(world, "alma")
    assert world.client.post("/oversight/audit/export", data={"csrf_token": "forged"}).status_code == 403
    exported = world.client.post("/oversight/audit/export", data={"csrf_token": csrf})
    assert exported.status_code == 200 and exported.headers["content-type"] == "application/zip"
    assert 'filename="facetrail-audit-export.zip"' in exported.headers["content-disposition"]
    archive = zipfile.ZipFile(io.BytesIO(exported.content))
    assert set(archive.namelist()) >= {"audit.jsonl", "checkpoints.jsonl", "audit-public-key.pem", "verify_audit.py",
                                       "README.txt"}
    trail = [json.loads(line) for line in archive.read("audit.jsonl").decode().splitlines()]
    assert [entry["seq"] for entry in trail] == list(range(1, len(trail) + 1))
    assert ("ivan", "search") in {(entry["actor"], entry["action"]) for entry in trail}
    assert (trail[-1]["actor"], trail[-1]["action"]) == ("alma", "audit_exported")


# --- no photographs for oversight -----------------------------------------------------------------------------------


def test_auditors_never_see_photographs(world, searched):
    log_in(world, "ivan")
    assert world.client.get(f"/searches/{searched}/candidates/1.jpg").status_code == 200  # there is one to see
    log_in(world, "alma")
    for photo in ("candidates/1.jpg", "probe.jpg", "probe/chip.png", "candidates/1/chip.png", "probe/face.jpg", "candidates/1/face.jpg"):
        assert world.client.get(f"/searches/{searched}/{photo}").status_code == 403, photo
    for page in ("/oversight/report", "/oversight/audit", "/"):
        text = world.client.get(page).text
        assert not re.search(r'(src|href)="/searches', text), page


# --- accuracy and differentials of the model in use ------------------------------------------------------------------


def test_the_published_differentials_are_identity_weighted_beside_the_model_limits_and_the_normalization_tried(world):
    log_in(world, "alma")
    section = html.unescape(world.client.get("/oversight/report").text).split('id="accuracy"')[1]
    assert "Published by facetrail: lfw-dev" in section and "Each rate is <strong>identity-weighted</strong>" in section
    worst_to_best = re.search(r"<tr><th>Worst / best</th><td></td>\s*<td>(.*?)</td>", section, re.S).group(1)
    assert worst_to_best.startswith("×1.5") and "pairs: ×5.6" in worst_to_best  # per person first, pair-weighted beneath
    assert "averaged over 223 people" in section
    assert "<h4>The model's limits</h4>" in section and "<td>1 in 1,000</td>" in section and "<td>1 in 100,000</td>" in section
    assert re.search(r'<td class="num">10,000,000</td><td>\d+\.\d%</td><td>100\.0%</td>', section)
    assert "Score normalization evaluated: not adopted" in section and "<th scope=\"row\">Normalized</th>" in section


def test_report_page_shows_the_models_differentials_and_where_its_calibration_came_from(world, monkeypatch, tmp_path):
    from facetrail.cli.common import json_ready
    from facetrail.evaluation import published
    from facetrail.evaluation.demographics import demographic_report
    from tests.fixtures.demographics import labelled_people

    monkeypatch.setattr(published, "SHIPPED", tmp_path / "none-shipped")
    log_in(world, "alma")
    page = world.client.get("/oversight/report").text
    assert "Accuracy and differentials of the model in use" in page and "<strong>not calibrated</strong>" in page
    assert "No accuracy figures have been published for this model" in page
    assert "not measured yet" in page and f"<code>{published.PRODUCE_COMMAND}</code>" in page  # how to produce them

    identities, templates = labelled_people({"Ann": [(0.0, 0.0), (0.4, 0.0)], "Amy": [(0.0, 0.2), (0.0, 1.1)],
                                             "Bob": [(9.0, 0.0), (9.1, 0.0)], "Ben": [(0.0, 9.0), (0.0, 9.2)]})
    report, _, impostors = demographic_report(identities, {"Ann": "f", "Amy": "f", "Bob": "m", "Ben": "m"}, templates,
                                              threshold=0.5, resamples=20)
    model = world.system.context.engines.model_name
    published.publish(world.system.datadir, json_ready({"pipeline": {"model": model}, **report}), "tiny-set")
    world.system.calibrations.save_calibration(*actors(world, "admin"), model, impostors.everyone, "tiny-set: 24 impostor pairs")
    page = html.unescape(world.client.get("/oversight/report").text)
    section = page.split('id="accuracy"')[1]
    assert "calibrated on tiny-set: 24 impostor pairs" in section
    assert "Measured by this installation: tiny-set" in section
    rows = re.findall(r"<tr><td class=\"text\">(\w+)</td>.*?</tr>", section, re.S)
    assert rows == ["f", "m"]
    assert "50.000%" in section and "1 of 2" in section  # f: Amy's genuine pair misses, Ann-Amy impostors match 2 of 4
    assert "m made no error, f did" in section  # the worst/best ratio when the best group made none
    assert "not measured yet" not in section
    flagged = re.findall(r'<li class="flagged"><strong>(.*?)</strong>\s*<figure><svg class="chart" role="img"', section, re.S)
    assert "Large difference in the false non-match rate: f made errors (two photographs of the same person were judged " \
           "different), m made none (50.00% against 0.00%)." in flagged  # in a plain sentence, with its chart
