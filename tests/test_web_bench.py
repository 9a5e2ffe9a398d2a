"""The examiner's bench in a real browser (Chromium), at 1440×900: probe and candidate side by side above the fold with
the decision's start, blind to the algorithm until the examiner decides (or from the start, by policy), a structured
comparison recorded with keyboard shortcuts only, the image tools, candidates of one subject in one row, and badges
that are not clipped. Searches are made over the API as the sample investigator; each test has case numbers of its
own."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright import sync_api as playwright

from tests.fixtures.browser import Visit, assert_faces_in_view, needs_chromium

pytestmark = [needs_chromium, pytest.mark.xdist_group("browser")]

DESK = {"width": 1440, "height": 900}
FIGURES = re.compile(r"Rank \d|distance \d|subject (obama|biden)|\bobama\b|\bbiden\b|false-match rate \d|1 in \d", re.IGNORECASE)
"""Any of the algorithm's figures for a candidate (rank, distance, false-match estimate) or its subject id."""
GROUP_GALLERY = "sample-bench-groups"


class Api:
    """The HTTP API for the sample users this module needs, each logged in once."""

    def __init__(self, browser, site) -> None:
        self.base, passwords, self.probe = site
        self.context = browser.new_context()
        self.headers = {}
        for username in ("admin", "ivan", "erin", "ezra"):
            response = self.context.request.post(f"{self.base}/api/v1/auth/login",
                                                 data={"username": username, "password": passwords[username]})
            assert response.ok, response.text()
            self.headers[username] = {"Authorization": f"Bearer {response.json()['token']}"}

    def call(self, method: str, username: str, path: str, **arguments):
        """``method`` on ``/api/v1{path}`` as ``username``."""
        return self.context.request.fetch(f"{self.base}/api/v1{path}", method=method, headers=self.headers[username], **arguments)

    def load_policy(self, text: str) -> None:
        """Load ``text`` as the policy in force (as the sample admin)."""
        loaded = self.context.request.put(f"{self.base}/api/v1/policy", data=text,
                                          headers={**self.headers["admin"], "Content-Type": "text/plain"})
        assert loaded.ok, loaded.text()

    def search_as_ivan(self, case: str, gallery: str = "sample") -> int:
        """A search of the sample probe by the sample investigator; its id."""
        response = self.call("POST", "ivan", "/searches", multipart={
            "probe": {"name": "probe.jpg", "mimeType": "image/jpeg", "buffer": Path(self.probe).read_bytes()},
            "gallery": gallery, "case_number": case, "purpose": "criminal_investigation", "offence": "robbery",
            "note": "bench test"})
        assert response.status == 201, response.text()
        return response.json()["search_id"]


@pytest.fixture(scope="module")
def api(site, browser):
    """The module's ``Api`` (its calls count against the sample users' request limits like any client's; a bench
    page with its photographs counts once)."""
    calls = Api(browser, site)
    yield calls
    calls.context.close()


def at_desk(visit: Visit, path: str):
    """``path`` at 1440×900, once its pictures have loaded."""
    page = visit.go(path)
    page.set_viewport_size(DESK)
    return loaded(page)


def loaded(page):
    """``page`` once every picture of the bench has loaded (the rail's are lazy: scrolled into view first)."""
    for picture in page.locator(".bench img:visible").all():
        picture.scroll_into_view_if_needed()
        playwright.expect(picture).not_to_have_js_property("naturalWidth", 0)
    page.evaluate("window.scrollTo(0, 0)")
    return page


def test_the_bench_is_blind_until_the_examiner_decides_with_keyboard_shortcuts_only(site, browser, api):
    base, passwords, _ = site
    search_id = api.search_as_ivan("24-001801")
    erin = Visit(browser, base, "erin", passwords["erin"])
    page = at_desk(erin, f"/reviews/{search_id}")
    main = page.locator("main")
    assert not FIGURES.search(main.inner_text()), main.inner_text()  # blind to the algorithm: no figure, no subject
    assert page.locator(".figures").count() == 0
    playwright.expect(page.locator(".rule")).to_contain_text("2 of 2 candidates left for you.")
    playwright.expect(page.locator(".rule")).to_contain_text("You need not decide on every candidate")

    assert_faces_in_view(page, ".compare .zoom img", min_side=150)  # both faces, whole, side by side ...
    boxes = page.locator(".compare .zoom img").evaluate_all("ps => ps.map(p => p.getBoundingClientRect().toJSON())")
    assert boxes[0]["width"] == boxes[1]["width"] and boxes[0]["top"] == boxes[1]["top"] and boxes[0]["right"] <= boxes[1]["left"]
    assert all(box["bottom"] <= DESK["height"] for box in boxes)  # ... above the fold at 1440×900
    first_conclusion = page.locator("input[name=conclusion]").first.bounding_box()
    assert first_conclusion["y"] + first_conclusion["height"] <= DESK["height"]  # with the decision's start
    rail = page.locator(".bench-rail").bounding_box()
    assert rail["x"] + rail["width"] <= boxes[0]["left"]  # the candidate strip in a side rail
    erin.shot("bench-blind-1440")

    candidate_src = page.locator('.compare img[data-side="candidate"]').get_attribute("src")
    page.keyboard.press("n")  # next candidate, and back
    playwright.expect(page.locator('.compare img[data-side="candidate"]')).not_to_have_attribute("src", candidate_src)
    page.wait_for_load_state("load")
    page.keyboard.press("p")
    playwright.expect(page.locator('.compare img[data-side="candidate"]')).to_have_attribute("src", candidate_src)
    page.wait_for_load_state("load")
    name = page.locator("#current-name").inner_text()  # e.g. "Candidate B"
    rank = int(re.search(r"/candidates/(\d+)/", candidate_src)[1])
    for key in ("2", "s", "s", "d", "v"):  # strong support for the same person; outline, hair line similar, ...
        page.keyboard.press(key)
    page.keyboard.press("t")
    page.keyboard.type("ear shape and hair line consistent")
    page.keyboard.press("s")  # typing: no shortcut fires
    assert page.locator("#notes").input_value() == "ear shape and hair line consistents"
    page.keyboard.press("Control+Enter")
    playwright.expect(page.locator("p.flash")).to_have_text(f"Your decision on c{name[1:]} is recorded.")

    page = loaded(erin.go(f"/reviews/{search_id}?candidate={name.split()[-1]}"))
    decided = page.locator(".bench-decide").inner_text()
    assert "strong support for the same person" in decided.lower() and "possible lead" in decided
    assert "Face and head outline: similar" in decided and "Forehead: dissimilar" in decided and "Eyebrows: not visible" in decided
    figures = page.locator(".figures").inner_text()  # once decided, the figures appear
    assert re.search(rf"Rank {rank} · subject \w+ · distance \d\.\d{{3}} · estimated false-match rate", figures), figures
    erin.shot("bench-decided-1440")
    audit_view = page.request.get(f"{base}/api/v1/searches/{search_id}").json()  # the service agrees, over the API
    mine = next(c for c in audit_view["candidates"] if c["rank"] == rank)
    assert mine["decisions"][0]["comparison"] == {"conclusion": "strong_support_same", "features": {
        "face_head_outline": "similar", "hairline": "similar", "forehead": "dissimilar", "eyebrows": "not_visible"}}
    assert all(c["withheld"] for c in audit_view["candidates"] if c["rank"] != rank)
    erin.log_out()


def test_the_policy_switch_shows_the_algorithm_from_the_start(site, browser, api):
    base, passwords, _ = site
    search_id = api.search_as_ivan("24-001802")
    text = api.call("GET", "admin", "/policy").json()["text"]
    assert "examiners_blind_to_algorithm = true" in text
    try:
        api.load_policy(text.replace("examiners_blind_to_algorithm = true", "examiners_blind_to_algorithm = false"))
        ezra = Visit(browser, base, "ezra", passwords["ezra"])
        page = at_desk(ezra, f"/reviews/{search_id}")
        playwright.expect(page.locator(".figures")).to_contain_text(re.compile(r"Rank 1 · subject obama · distance \d"))
        playwright.expect(page.locator(".bench-rail")).to_contain_text("1")
        ezra.shot("bench-policy-open-1440")
        ezra.log_out()
    finally:
        api.load_policy(text)


def test_the_image_tools_change_the_rendered_faces(site, browser, api):
    base, passwords, _ = site
    search_id = api.search_as_ivan("24-001803")
    erin = Visit(browser, base, "erin", passwords["erin"])
    page = at_desk(erin, f"/reviews/{search_id}")
    probe, candidate = page.locator('.compare img[data-side="probe"]'), page.locator('.compare img[data-side="candidate"]')
    page.get_by_label("Brightness").first.fill("150")
    page.locator("#probe-contrast").fill("80")
    playwright.expect(probe).to_have_css("filter", "brightness(1.5) contrast(0.8)")
    playwright.expect(candidate).to_have_css("filter", "brightness(1) contrast(1)")  # each side its own
    page.locator("#candidate-rotate").fill("10")
    playwright.expect(candidate).to_have_css("transform", re.compile(r"matrix\(0\.98\d*, 0\.17"))  # 10° (after the transition)
    playwright.expect(probe).to_have_css("transform", "matrix(1, 0, 0, 1, 0, 0)")
    page.locator('.side-tools[data-side="probe"]').get_by_label("Mirror").check()
    playwright.expect(probe).to_have_css("transform", "matrix(-1, 0, 0, 1, 0, 0)")
    page.get_by_label("Zoom").fill("2")  # one zoom for both, kept with each side's own tools
    playwright.expect(probe).to_have_css("transform", "matrix(-2, 0, 0, 2, 0, 0)")
    page.locator("main").click(position={"x": 5, "y": 5})
    page.keyboard.press("o")  # the overlay of the aligned faces
    overlay = page.locator(".overlay img.over")
    playwright.expect(overlay).to_be_visible()
    for chip in page.locator(".overlay img").all():
        playwright.expect(chip).to_have_js_property("naturalWidth", 150)  # the aligned chips, as the model saw them
    page.get_by_label(re.compile("over the probe")).fill("30")
    playwright.expect(overlay).to_have_css("opacity", "0.3")
    erin.shot("bench-tools-1440")
    page.keyboard.press("f")  # flicker: the candidate's chip comes and goes
    playwright.expect(overlay).to_have_css("opacity", "1")
    playwright.expect(overlay).to_have_css("opacity", "0")
    page.keyboard.press("f")
    playwright.expect(overlay).to_have_css("opacity", "0.3")
    page.locator('.side-tools[data-side="probe"]').get_by_role("button", name="Reset").click()
    playwright.expect(probe).to_have_css("filter", "brightness(1) contrast(1)")
    erin.log_out()


def test_one_subjects_photographs_share_a_row_and_badges_are_not_clipped(site, browser, api):
    base, passwords, probe = site
    if api.call("GET", "admin", f"/galleries/{GROUP_GALLERY}").status == 404:  # its own gallery: obama twice, biden once
        created = api.call("POST", "admin", "/galleries", data={
            "name": GROUP_GALLERY, "allowed_sources": ["research-sample"], "description": "bench test: grouping"})
        assert created.ok, created.text()
        assert api.call("POST", "admin", f"/galleries/{GROUP_GALLERY}/grants", data={"unit": "RHD"}).ok
        for subject, name in (("obama", "obama.jpg"), ("obama", "obama3.jpg"), ("biden", "biden.jpg")):
            enrolled = api.call("POST", "admin", f"/galleries/{GROUP_GALLERY}/images", multipart={
                "image": {"name": name, "mimeType": "image/jpeg", "buffer": (Path(probe).parent / name).read_bytes()},
                "subject_id": subject, "source": "research-sample"})
            assert enrolled.status == 201, enrolled.text()
    search_id = api.search_as_ivan("24-001804", gallery=GROUP_GALLERY)
    erin = Visit(browser, base, "erin", passwords["erin"])
    page = at_desk(erin, f"/reviews/{search_id}")
    rows = page.locator(".subject-rows > li")
    assert sorted(row.locator(".subject-row > li").count() for row in rows.all()) == [1, 2]  # obama's two in one row
    two = next(row for row in rows.all() if row.locator(".subject-row > li").count() == 2)
    labels = [item.inner_text().strip() for item in two.locator(".meta").all()]
    assert labels[0][:-1] == labels[1][:-1] and sorted(label[-1] for label in labels) == ["1", "2"], labels
    assert not FIGURES.search(page.locator("main").inner_text())
    playwright.expect(page.locator(".rule")).to_contain_text("3 of 3 candidates left for you.")
    page.keyboard.press("1")
    page.keyboard.press("r")
    playwright.expect(page.locator("p.flash")).to_contain_text("is recorded")
    badge = page.locator(".subject-row .badge")
    playwright.expect(badge).to_have_text("you: possible lead")
    assert badge.evaluate("b => b.scrollWidth <= b.clientWidth && b.getBoundingClientRect().right <= b.closest('li').getBoundingClientRect().right + 0.5")
    playwright.expect(page.locator(".rule")).to_contain_text("2 of 3 candidates left for you.")
    loaded(page)
    erin.shot("bench-groups-1440")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: one column, nothing scrolls sideways
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    loaded(page)
    erin.shot("bench-phone")
    erin.log_out()


def test_the_supervisor_settling_a_dispute_has_the_same_image_tools_and_every_figure(site, browser, api):
    base, passwords, _ = site
    search_id = api.search_as_ivan("24-001805")
    for examiner, conclusion, decision in (("erin", "support_same", "possible_lead"), ("ezra", "exclusion", "not_a_match")):
        decided = api.call("POST", examiner, f"/reviews/{search_id}/decisions", data={
            "rank": 1, "decision": decision, "comparison": {"conclusion": conclusion, "features": {"ears": "similar"}}})
        assert decided.status == 201, decided.text()
    sam = Visit(browser, base, "sam", passwords["sam"])
    page = loaded(sam.go(f"/supervision/disputes/{search_id}/1"))
    page.set_viewport_size(DESK)
    playwright.expect(page.locator(".figures")).to_contain_text(re.compile(r"Rank 1 · subject obama · distance \d"))
    probe = page.locator('.compare img[data-side="probe"]')
    page.locator("#probe-brightness").fill("60")
    playwright.expect(probe).to_have_css("filter", "brightness(0.6) contrast(1)")
    sam.shot("bench-dispute-supervisor")
    sam.log_out()
