"""End to end in a real browser: Debian's Chromium, driven by Playwright, against `facetrail serve` on a data
directory set up exactly as `make run` sets it up on first start (scripts/sample_gallery.py, with the
face_recognition sample photographs).

An investigator searches the sample probe, two examiners review it blind and both verify the top candidate, the
investigator sees the lead, and an auditor finds the search counted in the transparency report and the audit trail
intact. Screenshots of the main pages go to test-artifacts/screenshots/. `make test` installs Chromium
(apt-get install chromium); without it these tests skip.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.fixtures.browser import Visit, assert_faces_in_view, needs_chromium, playwright

pytestmark = [needs_chromium, pytest.mark.xdist_group("browser")]

CASE = "24-000777"


def test_search_review_lead_report_audit(site, browser):
    base, passwords, probe = site

    ivan = Visit(browser, base, "ivan", passwords["ivan"])
    ivan.shot("01-home-investigator")
    page = ivan.go("/search")
    page.get_by_label("Probe photograph").set_input_files(probe)
    playwright.expect(page.locator("#faces-status")).to_have_text("Face 1 of 1 chosen.", timeout=60_000)
    playwright.expect(page.locator("#faces")).to_contain_text("quality acceptable")
    page.get_by_label("Case number").fill(CASE)
    page.get_by_label("Purpose", exact=True).select_option("criminal_investigation")
    page.get_by_label("Offence", exact=True).select_option("robbery")
    page.get_by_label("Why this search is needed").fill("still from the pharmacy camera")
    ivan.shot("02-search-form")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url(re.compile(r"/searches/\d+$"), timeout=60_000)
    search_id = int(page.url.rsplit("/", 1)[1])
    playwright.expect(page.get_by_role("note")).to_contain_text("not identifications")
    cards = page.locator("ol.candidates > li")
    playwright.expect(cards.first).to_contain_text("Rank 1")
    assert cards.count() == 2  # both sample subjects, ranked
    playwright.expect(cards.first).to_contain_text("Subject obama")
    playwright.expect(page.locator("ol.candidates img").first).not_to_have_js_property("naturalWidth", 0)
    assert_faces_in_view(page, "ol.candidates img, .probe-face img", min_side=60)  # faces, not torsos
    full = page.locator("ol.candidates li").first.locator("a:has(img)")  # the full photograph is one click away
    assert full.get_attribute("href") == f"/searches/{search_id}/photos/1"  # a page of its own (test_web_page_views.py)
    assert page.get_by_text("as measured on face_recognition-photographs").count() == 1  # where the estimate comes from
    ivan.shot("03-candidates")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: the grid reflows, nothing scrolls sideways
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    ivan.shot("03-candidates-phone")
    page.set_viewport_size({"width": 1280, "height": 900})
    ivan.log_out()

    for number, examiner in enumerate(("erin", "ezra"), start=1):
        visit = Visit(browser, base, examiner, passwords[examiner])
        page = visit.go("/reviews")
        page.locator(f"a[href='/reviews/{search_id}']").click()
        playwright.expect(page.get_by_role("heading", name=re.compile(r"^Candidate [AB]$"))).to_be_visible()
        # blind to the algorithm: no rank, distance or subject until deciding; go to the top candidate by its photograph
        page.locator(f".bench-rail a:has(img[src='/searches/{search_id}/candidates/1/face.jpg'])").click()
        playwright.expect(page.locator('.compare img[data-side="candidate"]')).to_have_attribute(
            "src", f"/searches/{search_id}/candidates/1/face.jpg")
        assert page.locator(".figures").count() == 0 and "obama" not in page.locator("main").inner_text()
        playwright.expect(page.locator("text=you:")).to_have_count(0)  # blind: no one else's decision is shown
        assert_faces_in_view(page, ".compare .zoom img", min_side=100)
        sides = page.locator(".compare .zoom img").evaluate_all("ps => ps.map(p => p.getBoundingClientRect().width)")
        assert sides[0] == sides[1]  # probe and candidate side by side at the same scale
        assert page.get_by_role("link", name="full photograph").count() == 2
        page.get_by_text("Overlay of the aligned faces").click()
        for chip in page.locator(".overlay img").all():
            playwright.expect(chip).to_have_js_property("naturalWidth", 150)  # the aligned chips, as the model saw them
        page.get_by_label("Zoom").fill("2")
        for photo in page.locator(".compare .zoom img").all():  # one slider zooms both photographs
            playwright.expect(photo).to_have_css("transform", "matrix(2, 0, 0, 2, 0, 0)")
        visit.shot(f"04-review-examiner-{number}")
        page.get_by_label(re.compile(r"^\d Support for the same person$")).check()
        page.get_by_label("Notes").fill(f"{examiner}: ear shape and hairline consistent")
        page.get_by_role("button", name="Record decision").click()
        playwright.expect(page.locator("p.flash")).to_contain_text(re.compile(r"Your decision on candidate [AB] is recorded\."))
        visit.log_out()

    ivan = Visit(browser, base, "ivan", passwords["ivan"])
    page = ivan.go("/searches")
    row = page.locator("tr", has=page.locator(f"a[href='/searches/{search_id}']"))
    playwright.expect(row).to_contain_text("lead: verified by two examiners")
    ivan.shot("05-my-searches")
    page = ivan.go(f"/searches/{search_id}")
    with page.expect_download() as download:  # the lead report is a file to keep
        page.get_by_role("link", name="Download the lead report").first.click()
    assert CASE in Path(download.value.path()).read_text(encoding="utf-8")
    ivan.go("/")
    ivan.log_out()

    alma = Visit(browser, base, "alma", passwords["alma"])
    page = alma.go("/oversight/report")
    report = page.locator("main")
    playwright.expect(report).to_contain_text(re.compile(r"\d+ searches by"))
    searches = int(re.search(r"(\d+) searches by", report.inner_text()).group(1))
    assert searches >= 2  # the sample search and this one (other tests sharing the site add theirs)
    accuracy = page.locator("section.accuracy")
    playwright.expect(accuracy.get_by_role("heading", name="Accuracy and differentials of the model in use")).to_be_visible()
    playwright.expect(accuracy).to_contain_text("calibrated on face_recognition-photographs: 3 impostor pairs")
    playwright.expect(accuracy.get_by_role("heading", name=re.compile("Published by facetrail: lfw-dev"))).to_be_visible()
    assert accuracy.locator("table").first.locator("tbody tr").count() == 3  # women, men, and the worst/best ratios
    playwright.expect(accuracy.get_by_role("heading", name="Score normalization evaluated: not adopted")).to_be_visible()
    alma.shot("06-transparency-report")
    assert page.locator("img[src*='/candidates/']").count() == 0
    page = alma.go("/oversight/audit")
    page.get_by_role("button", name="Verify the chain").click()
    playwright.expect(page.get_by_role("status")).to_contain_text("intact")
    alma.shot("07-audit-trail")
    response = page.request.get(f"{base}/searches/{search_id}/candidates/1.jpg")
    assert response.status == 403  # auditors never see candidate photographs
    alma.log_out()

    admin = Visit(browser, base, "admin", passwords["admin"])
    admin.go("/admin/users")
    admin.shot("08-admin-users")
    admin.go("/admin/galleries")
    admin.shot("09-admin-galleries")
    admin.go("/admin/policy")
    admin.shot("10-admin-policy")
    admin.log_out()

    sam = Visit(browser, base, "sam", passwords["sam"])
    sam.go("/supervision")
    sam.shot("11-supervision")
    sam.log_out()
