"""A page and its pictures are one action, in a real browser against the sample site: an investigator's result page
and an examiner's review page are one audit entry each, naming the candidates they showed, with no entry per
picture; loading a page again and again counts page loads, not the pictures on them; a picture opened by its URL
alone is audited on its own; the full photograph is a page of its own; the audit trail page reads newest first, with
the actions to choose from and the details in words. The rule itself, on both databases, is in test_page_views.py.

The investigator is an account of this module's own (vera, RHD), so that its page loads count against no other
test's limit."""

from __future__ import annotations

import json
import re
import secrets
import urllib.request

import pytest

from tests.fixtures.browser import Visit, needs_chromium, playwright

pytestmark = [needs_chromium, pytest.mark.xdist_group("browser")]

CASE = "24-000518"
INVESTIGATOR = "vera"


def api(base: str, method: str, path: str, token: str | None = None, body: dict | None = None):
    """A call to the site's API: the decoded JSON answer, or the bytes of any other."""
    request = urllib.request.Request(base + "/api/v1" + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": f"Bearer {token}"} if token else {})})
    with urllib.request.urlopen(request, timeout=60) as answer:
        content = answer.read()
        return json.loads(content) if answer.headers.get_content_type() == "application/json" else content


def token_of(base: str, username: str, password: str) -> str:
    return api(base, "POST", "/auth/login", body={"username": username, "password": password})["token"]


def about(base: str, auditor_token: str, search_id: int) -> list[dict]:
    """Every audit entry about ``search_id``, oldest first, as the auditor reads them."""
    entries, since = [], 0
    while True:
        batch = api(base, "GET", f"/audit/entries?since_seq={since}&limit=1000", auditor_token)
        entries += [entry for entry in batch if entry["target"] == f"search:{search_id}"]
        if len(batch) < 1000:
            return entries
        since = batch[-1]["seq"]


def pictures_loaded(page) -> None:
    for picture in page.locator("main img:visible").all():  # not those of a closed <details>
        picture.scroll_into_view_if_needed()
        playwright.expect(picture).not_to_have_js_property("naturalWidth", 0)


def test_a_page_and_its_pictures_are_one_audited_action(site, browser):
    base, passwords, probe = site
    password = secrets.token_urlsafe(12)
    api(base, "POST", "/users", token_of(base, "root", passwords["root"]),
        {"username": INVESTIGATOR, "password": password, "roles": ["investigator"], "unit": "RHD"})
    api(base, "POST", f"/users/{INVESTIGATOR}/roles/confirm", token_of(base, "admin", passwords["admin"]))
    alma = token_of(base, "alma", passwords["alma"])

    vera = Visit(browser, base, INVESTIGATOR, password)
    page = vera.go("/search")
    page.get_by_label("Probe photograph").set_input_files(probe)
    playwright.expect(page.locator("#faces-status")).to_have_text("Face 1 of 1 chosen.", timeout=60_000)
    page.get_by_label("Case number").fill(CASE)
    page.get_by_label("Purpose", exact=True).select_option("criminal_investigation")
    page.get_by_label("Offence", exact=True).select_option("robbery")
    page.get_by_label("Why this search is needed").fill("page views: one entry a page")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url(re.compile(r"/searches/\d+$"), timeout=60_000)
    search_id = int(page.url.rsplit("/", 1)[1])
    pictures_loaded(page)
    ranks = [{"rank": c["rank"], "image_id": c["image_id"]}
             for c in api(base, "GET", f"/searches/{search_id}", token_of(base, INVESTIGATOR, password))["candidates"]]
    assert len(ranks) == 2

    # 20 loads of the result page in a minute, each with its pictures: more than the policy's 60 requests if every
    # picture counted, far fewer page loads
    for _ in range(20):
        page.reload()
        pictures_loaded(page)
        assert "Too many requests" not in page.content()
    vera.shot("views-result-page")

    # the full photograph is a page of its own, covering its picture
    page.locator(f"a[href='/searches/{search_id}/photos/1']").first.click()
    page.wait_for_url(f"{base}/searches/{search_id}/photos/1")
    playwright.expect(page.get_by_role("heading", name=re.compile("Candidate 1, subject .*: the full photograph"))).to_be_visible()
    playwright.expect(page.locator("main")).to_contain_text(CASE)
    pictures_loaded(page)
    vera.shot("views-full-photograph")
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    vera.shot("views-full-photograph-phone")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.keyboard.press("Tab")  # keyboard only: the way back is reachable
    back = page.get_by_role("link", name="Back to the search")
    for _ in range(30):
        if back.evaluate("link => link === document.activeElement"):
            break
        page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}/searches/{search_id}")

    # a picture opened by its URL alone, after the page view's window or without one, is its own entry: here the
    # probe by the API (the web's page views cover only the web's own pictures)
    assert api(base, "GET", f"/searches/{search_id}/probe", token_of(base, INVESTIGATOR, password))[:2] == b"\xff\xd8"
    vera.log_out()

    erin = Visit(browser, base, "erin", passwords["erin"])
    for rank in (1, 2):  # stepping through the candidates
        page = erin.go(f"/reviews/{search_id}?rank={rank}")
        pictures_loaded(page)
    erin.shot("views-review-page")
    erin.log_out()

    entries = about(base, alma, search_id)
    views = [(e["actor"], e["details"].get("page")) for e in entries if e["action"] == "search_viewed"]
    assert views == [(INVESTIGATOR, "search result"), (INVESTIGATOR, None), *[(INVESTIGATOR, "search result")] * 20,
                     (INVESTIGATOR, "photograph"), (INVESTIGATOR, "search result"), ("erin", "review"), ("erin", "review")]
    for entry in entries:
        if entry["action"] == "search_viewed" and entry["details"].get("page") in ("search result", "review"):
            assert entry["details"]["candidates"] == ranks and len(entry["details"]["probe_sha256"]) == 64
    assert [(e["actor"], e["action"]) for e in entries if e["action"] in ("probe_viewed", "candidate_image_viewed")] == [
        (INVESTIGATOR, "probe_viewed")]  # only the one fetched through the API

    auditor = Visit(browser, base, "alma", passwords["alma"])
    page = auditor.go("/oversight/audit")
    seqs = [int(text) for text in page.locator("table.audit tbody th").all_inner_texts()]
    assert seqs == sorted(seqs, reverse=True)  # newest first
    page.get_by_label("Action").select_option("search_viewed")
    page.get_by_role("button", name="Show").click()
    row = page.locator("table.audit tbody tr", has=page.get_by_role("cell", name="erin", exact=True)).first
    playwright.expect(row).to_contain_text(f"search:{search_id}")
    playwright.expect(row.locator("dl.details")).to_contain_text("review")
    playwright.expect(row.locator("dl.details")).to_contain_text(
        ", ".join(f"{r['rank']} (gallery image {r['image_id']})" for r in ranks))
    when = row.locator("td.when")
    lines = "cell => { const text = document.createRange(); text.selectNodeContents(cell); return text.getClientRects().length; }"
    assert when.evaluate(lines) == 1  # the date on one line
    auditor.shot("views-audit-page")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: the table scrolls in its box, rows stay rows
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert row.bounding_box()["height"] < 250
    auditor.shot("views-audit-page-phone")
    auditor.log_out()
