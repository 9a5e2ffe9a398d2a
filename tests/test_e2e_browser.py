"""End to end in a real browser: Debian's Chromium, driven by Playwright, against `facetrail serve` on a data
directory set up exactly as `make run` sets it up on first start (scripts/sample_gallery.py, with the
face_recognition sample photographs).

An investigator searches the sample probe, two examiners review it blind and both verify the top candidate, the
investigator sees the lead, and an auditor finds the search counted in the transparency report and the audit trail
intact. Screenshots of the main pages go to test-artifacts/screenshots/. `make test` installs Chromium
(apt-get install chromium); without it these tests skip.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.fixtures.servers import start_server, stop

playwright = pytest.importorskip("playwright.sync_api")

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("FACETRAIL_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
CASE = "24-000777"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is absent (make test installs it)")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """(base URL, sample passwords, sample probe): the sample system served on a free loopback port."""
    data = tmp_path_factory.mktemp("e2e") / "data"
    setup = subprocess.run([sys.executable, str(ROOT / "scripts" / "sample_gallery.py"), "--data", str(data),
                            "--shared-faces", str(data / "no-shared-faces"), "--no-serve"], capture_output=True, text=True)
    assert setup.returncode == 0, setup.stdout[-3000:] + setup.stderr[-3000:]
    server, port = start_server(
        lambda port: [str(Path(sys.executable).parent / "facetrail"), "serve", "--port", str(port), "--data", str(data)],
        data.parent / "server.log", env={**os.environ, "FACETRAIL_API_COOKIE_SECURE": "false"})
    base = f"http://127.0.0.1:{port}"
    try:
        with urllib.request.urlopen(base + "/api/v1/health", timeout=30) as health:
            assert health.status == 200
        probe = (data / ".sample-ready").read_text().split(": ", 1)[1].strip()
        yield base, json.loads((data / "sample-passwords.json").read_text()), probe
    finally:
        stop(server, timeout=30)


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


FACE_BOX_ON_PAGE = """pictures => pictures.map(picture => {
  // The picture's face box (data-face-box, in the picture's own pixels) where it is drawn on the page, and the part of
  // the picture that is not clipped away by any container that hides overflow.
  const [x, y, w, h] = picture.dataset.faceBox.split(",").map(Number);
  const drawn = picture.getBoundingClientRect();
  const scale = Math.min(drawn.width / picture.naturalWidth, drawn.height / picture.naturalHeight);  // object-fit: contain
  const left = drawn.left + (drawn.width - picture.naturalWidth * scale) / 2, top = drawn.top + (drawn.height - picture.naturalHeight * scale) / 2;
  let visible = {left: drawn.left, top: drawn.top, right: drawn.right, bottom: drawn.bottom};
  for (let box = picture.parentElement; box; box = box.parentElement) {
    if (getComputedStyle(box).overflow === "visible") continue;
    const clip = box.getBoundingClientRect();
    visible = {left: Math.max(visible.left, clip.left), top: Math.max(visible.top, clip.top),
               right: Math.min(visible.right, clip.right), bottom: Math.min(visible.bottom, clip.bottom)};
  }
  return {loaded: picture.complete && picture.naturalWidth > 0, visible,
          face: {left: left + x * scale, top: top + y * scale, right: left + (x + w) * scale, bottom: top + (y + h) * scale}};
})"""


def assert_faces_in_view(page, selector: str, min_side: float) -> None:
    """Every picture matched by ``selector`` is loaded and shows its whole face box, at least ``min_side`` CSS pixels
    wide, inside the part of the picture that its containers leave visible."""
    pictures = page.locator(selector)
    assert pictures.count() > 0
    for picture in pictures.all():
        picture.scroll_into_view_if_needed()
        playwright.expect(picture).not_to_have_js_property("naturalWidth", 0)
    for found in page.locator(selector).evaluate_all(FACE_BOX_ON_PAGE):
        face, visible = found["face"], found["visible"]
        assert found["loaded"], found
        assert face["right"] - face["left"] >= min_side, found
        assert visible["left"] - 1 <= face["left"] and face["right"] <= visible["right"] + 1, found
        assert visible["top"] - 1 <= face["top"] and face["bottom"] <= visible["bottom"] + 1, found


class Visit:
    """One user's browser session on the site."""

    def __init__(self, browser, base: str, username: str, password: str) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.base = base
        self.page.goto(base + "/")
        self.page.get_by_label("Username").fill(username)
        self.page.get_by_label("Password").fill(password)
        self.page.get_by_role("button", name="Log in").click()
        playwright.expect(self.page.get_by_role("heading", name=f"Welcome, {username}")).to_be_visible()

    def go(self, path: str):
        self.page.goto(self.base + path)
        return self.page

    def shot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

    def log_out(self) -> None:
        self.page.get_by_role("button", name="Log out").click()
        playwright.expect(self.page.get_by_role("heading", name="Log in")).to_be_visible()
        self.context.close()


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
    assert full.get_attribute("href") == f"/searches/{search_id}/candidates/1.jpg"
    assert page.request.get(base + full.get_attribute("href")).headers["content-type"] == "image/jpeg"
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
        playwright.expect(page.get_by_role("heading", name="Candidate 1: subject obama")).to_be_visible()
        playwright.expect(page.locator("text=you:")).to_have_count(0)  # blind: no one else's decision is shown
        assert_faces_in_view(page, ".compare .zoom img", min_side=100)
        sides = page.locator(".compare .zoom img").evaluate_all("ps => ps.map(p => p.getBoundingClientRect().width)")
        assert sides[0] == sides[1]  # probe and candidate side by side at the same scale
        assert page.get_by_role("link", name="full photograph").count() == 2
        for chip in page.locator(".chips img").all():
            playwright.expect(chip).to_have_js_property("naturalWidth", 150)  # the aligned chips, as the model saw them
        page.get_by_label("Zoom").fill("2")
        for photo in page.locator(".compare .zoom img").all():  # one slider zooms both photographs
            playwright.expect(photo).to_have_css("transform", "matrix(2, 0, 0, 2, 0, 0)")
        visit.shot(f"04-review-examiner-{number}")
        page.get_by_label("possible lead").check()
        page.get_by_label("Notes").fill(f"{examiner}: ear shape and hairline consistent")
        page.get_by_role("button", name="Record decision").click()
        playwright.expect(page.locator("p.flash")).to_contain_text("Your decision on candidate 1 is recorded.")
        visit.log_out()

    ivan = Visit(browser, base, "ivan", passwords["ivan"])
    page = ivan.go("/searches")
    row = page.locator("tr", has=page.locator(f"a[href='/searches/{search_id}']"))
    playwright.expect(row).to_contain_text("lead: verified by two examiners")
    ivan.shot("05-my-searches")
    page = ivan.go(f"/searches/{search_id}")
    page.get_by_role("link", name="Lead report").click()
    playwright.expect(page.locator("body")).to_contain_text(CASE)
    ivan.go("/")
    ivan.log_out()

    alma = Visit(browser, base, "alma", passwords["alma"])
    page = alma.go("/oversight/report")
    report = page.locator("main")
    playwright.expect(report).to_contain_text("2 search")  # the sample search and this one
    accuracy = page.locator("section.accuracy")
    playwright.expect(accuracy.get_by_role("heading", name="Accuracy and differentials of the model in use")).to_be_visible()
    playwright.expect(accuracy).to_contain_text("calibrated on face_recognition-photographs: 3 impostor pairs")
    playwright.expect(accuracy.get_by_role("heading", name=re.compile("Published by facetrail: lfw-dev"))).to_be_visible()
    assert accuracy.locator("tbody tr").count() == 3  # women, men, and the worst/best ratios
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
