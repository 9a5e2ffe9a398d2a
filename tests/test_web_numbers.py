"""Honest numbers in a real browser: the result page marks the lead and offers its report as a file; the report has
local times, the notice once, both examiners' structured comparisons and the faces side by side at one scale; an
estimate below the calibration's resolution is worded as such everywhere; the case view for the unit's supervisor
and an auditor, refused to an investigator; per-group accuracy on the auditor's page with its chart.

The lead is made through the API with the examiners' tokens (the review page is not what is tested here)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.fixtures.browser import Visit, needs_chromium, playwright

pytestmark = [needs_chromium, pytest.mark.xdist_group("browser")]

CASE = "24-000818"
API = "/api/v1"
BELOW = "fewer than 1 in 3 (no impostor pair came this close)"  # the sample's calibration: 3 impostor pairs
SCIENTIFIC = re.compile(r"\d\.\d+e[+-]\d\d")


class Api:
    """One user's API client, with a browser context of its own (its login cookies touch no one's page)."""

    def __init__(self, browser, base: str, username: str, password: str) -> None:
        self.context = browser.new_context()
        self.base = base
        response = self.context.request.post(f"{base}{API}/auth/login", data={"username": username, "password": password})
        assert response.ok, response.text()
        self.bearer = {"Authorization": f"Bearer {response.json()['token']}"}

    def post(self, path: str, **arguments):
        return self.context.request.post(self.base + API + path, headers=self.bearer, **arguments)


def lead_with_comparisons(browser, base: str, passwords: dict, probe: str) -> int:
    """ivan's search of the sample probe under CASE, its first candidate verified by erin (with a structured
    comparison) and ezra (without one)."""
    found = Api(browser, base, "ivan", passwords["ivan"]).post("/searches", multipart={
        "probe": {"name": "probe.jpg", "mimeType": "image/jpeg", "buffer": Path(probe).read_bytes()},
        "gallery": "sample", "case_number": CASE, "purpose": "criminal_investigation", "offence": "robbery",
        "note": "still from the shop camera"})
    assert found.status == 201, found.text()
    search_id = found.json()["search_id"]
    comparisons = {"erin": {"features": {"eyes": "similar", "nose": "similar", "ears": "not_visible"},
                            "conclusion": "strong_support_same"}, "ezra": None}
    for examiner, comparison in comparisons.items():
        decided = Api(browser, base, examiner, passwords[examiner]).post(
            f"/reviews/{search_id}/decisions",
            data={"rank": 1, "decision": "possible_lead", "notes": f"{examiner}: ears and hairline", "comparison": comparison})
        assert decided.status == 201, decided.text()
    assert decided.json()["outcome"] == "lead"
    return search_id


def fits_a_phone(page) -> bool:
    page.set_viewport_size({"width": 390, "height": 844})
    fits = page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    return fits


def test_the_lead_is_marked_and_its_report_downloaded_with_honest_numbers(site, browser, tmp_path):
    base, passwords, probe = site
    ivan = Visit(browser, base, "ivan", passwords["ivan"])
    search_id = lead_with_comparisons(browser, base, passwords, probe)
    page = ivan.go(f"/searches/{search_id}")
    lead = page.locator("ol.candidates > li.lead-card")
    playwright.expect(lead).to_have_count(1)
    playwright.expect(lead).to_contain_text("Rank 1 verified lead")
    playwright.expect(lead).to_contain_text("erin: possible lead Strong support for the same person")
    playwright.expect(lead).to_contain_text("ezra: possible lead")
    playwright.expect(lead).to_contain_text(f"False-match rate {BELOW}")
    assert not SCIENTIFIC.search(page.locator("main").inner_text())
    ivan.shot("numbers-01-result-lead")

    link = lead.get_by_role("link", name="Download the lead report")
    link.focus()  # a keyboard user: the link takes focus and Enter downloads
    with page.expect_download() as download:
        page.keyboard.press("Enter")
    assert download.value.suggested_filename == f"lead-report-search-{search_id}.html"
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    report = saved.read_text(encoding="utf-8")
    assert report.count("It is not an identification and not probable cause") == 1  # the notice once
    assert re.search(r"Searched at</th><td>\d{1,2} [A-Z][a-z]+ 20\d\d, \d\d:\d\d \w+ \(UTC[+-]\d\d:\d\d\)</td>", report)
    assert "Structured comparisons, feature by feature" in report and "Strong support for the same person" in report
    assert "ezra recorded the decision without a structured comparison." in report
    assert f"estimated false-match rate at this distance: {BELOW}" in report and not SCIENTIFIC.search(report)

    page.goto(saved.as_uri())  # the file as its reader opens it
    pictures = page.locator(".pair img")
    playwright.expect(pictures).to_have_count(2)
    sizes = pictures.evaluate_all("pictures => pictures.map(p => [p.naturalWidth, p.naturalHeight, p.getBoundingClientRect().top])")
    assert sizes[0][:2] == sizes[1][:2] and abs(sizes[0][2] - sizes[1][2]) < 1  # one scale, side by side
    ivan.shot("numbers-02-lead-report")
    assert fits_a_phone(page)
    ivan.shot("numbers-02-lead-report-phone")
    page.set_viewport_size({"width": 1280, "height": 900})

    page = ivan.go(f"/searches/{search_id}")
    assert fits_a_phone(page)
    ivan.shot("numbers-01-result-lead-phone")
    page.set_viewport_size({"width": 1280, "height": 900})
    assert page.get_by_role("link", name=CASE).count() == 0  # no case view for an investigator
    response = page.request.get(f"{base}/cases/{CASE}")
    assert response.status == 403
    ivan.log_out()

    sam = Visit(browser, base, "sam", passwords["sam"])
    page = sam.go(f"/searches/{search_id}")
    page.get_by_role("link", name=CASE).click()  # the result page's case number leads to the case
    page.wait_for_url(f"{base}/cases/{CASE}")
    main = page.locator("main")
    playwright.expect(main.get_by_role("heading", name=f"Case {CASE}")).to_be_visible()
    playwright.expect(main).to_contain_text(f"#{search_id}")
    playwright.expect(main.locator("section", has_text="Reviews")).to_contain_text("Strong support for the same person")
    playwright.expect(main.locator("section", has_text="Reviews")).to_contain_text("no structured comparison")
    trail = main.locator("table.case-trail")
    playwright.expect(trail).to_contain_text("sam")  # sam's own look at the search, a moment ago
    playwright.expect(trail).to_contain_text("lead exported")  # ivan's download
    sam.shot("numbers-03-case-supervisor")
    assert fits_a_phone(page)
    sam.shot("numbers-03-case-supervisor-phone")
    page.set_viewport_size({"width": 1280, "height": 900})
    sam.log_out()

    alma = Visit(browser, base, "alma", passwords["alma"])
    page = alma.go("/cases")
    page.get_by_label("Case number").focus()
    page.keyboard.type(CASE)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}/cases/{CASE}")
    playwright.expect(page.locator("main")).to_contain_text("by every unit")
    playwright.expect(page.locator("table.case-trail")).to_contain_text("case viewed")  # sam's view of the case
    assert page.locator("img").count() == 0  # oversight sees what was done, not whom to
    alma.shot("numbers-04-case-auditor")
    alma.log_out()


def test_the_auditors_page_shows_per_group_accuracy_with_its_chart_or_how_to_measure_it(site, browser):
    base, passwords, _ = site
    alma = Visit(browser, base, "alma", passwords["alma"])
    page = alma.go("/oversight/report")
    accuracy = page.locator("section.accuracy")
    playwright.expect(accuracy).to_contain_text("This installation's own figures: not measured yet")
    playwright.expect(accuracy.locator("code", has_text="facetrail evaluate demographics --images")).to_contain_text("--publish")
    flagged = accuracy.locator("li.flagged")
    playwright.expect(flagged.first).to_contain_text("Large difference in the false non-match rate: for female")
    charts = flagged.locator("svg.chart")
    assert charts.count() == flagged.count() > 0  # each large difference with its chart
    assert charts.first.locator("rect").count() == 2  # one bar per group
    charts.first.scroll_into_view_if_needed()
    alma.shot("numbers-05-accuracy")
    assert fits_a_phone(page)
    alma.shot("numbers-05-accuracy-phone")
    alma.log_out()
