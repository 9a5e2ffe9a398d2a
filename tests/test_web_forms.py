"""Work is never lost, in a real browser: a refused form stays as typed, with the server's reason beside it, the chosen
photograph still attached (static/forms.js); a poor-quality probe goes to a supervisor from the refusal without
choosing the photograph again, and the supervisor sees it framed on its face with the quality reasons beside it; the
search form checks the case number against the policy's format, shown by an example; a face box can be typed; a small
still is previewed at 320 px or more; "Use the detected faces again" is hidden until a box is drawn. Screenshots:
test-artifacts/screenshots/forms-*.png."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request

import pytest
from PIL import Image

from tests.fixtures.browser import Visit, assert_faces_in_view, needs_chromium, playwright

pytestmark = [needs_chromium, pytest.mark.xdist_group("browser")]

SMALL_STILL_WIDTH = 80
"""The sample probe shrunk to this width: its face is found, but under 40 px wide, so its quality is poor."""
FILES_CHOSEN = "document.getElementById('probe').files.length"


def small_still(probe: str, folder) -> str:
    """The sample probe shrunk to SMALL_STILL_WIDTH pixels across, as a JPEG in ``folder``."""
    image = Image.open(probe).convert("RGB")
    path = folder / "small-still.jpg"
    image.resize((SMALL_STILL_WIDTH, round(image.height * SMALL_STILL_WIDTH / image.width))).save(path, quality=95)
    return str(path)


def fill_request(page, case_number: str, note: str) -> None:
    page.get_by_label("Case number").fill(case_number)
    page.get_by_label("Purpose", exact=True).select_option("criminal_investigation")
    page.get_by_label("Offence", exact=True).select_option("robbery")
    page.get_by_label("Why this search is needed").fill(note)


def assert_kept(page, case_number: str, note: str) -> None:
    """The form is as it was typed, with the photograph still chosen."""
    assert page.url.endswith("/search")
    assert page.evaluate(FILES_CHOSEN) == 1
    playwright.expect(page.get_by_label("Case number")).to_have_value(case_number)
    playwright.expect(page.get_by_label("Purpose", exact=True)).to_have_value("criminal_investigation")
    playwright.expect(page.get_by_label("Offence", exact=True)).to_have_value("robbery")
    playwright.expect(page.get_by_label("Why this search is needed")).to_have_value(note)


def test_a_refused_search_comes_back_filled_in_and_goes_to_a_supervisor(site, browser, tmp_path):
    base, passwords, probe = site
    ivan = Visit(browser, base, "ivan", passwords["ivan"])
    page = ivan.go("/search")
    playwright.expect(page.locator("#clear-box")).to_be_hidden()  # hidden until a box is drawn by hand
    page.get_by_label("Probe photograph").set_input_files(small_still(probe, tmp_path))
    playwright.expect(page.locator("#faces-status")).to_have_text("Face 1 of 1 chosen.", timeout=60_000)
    playwright.expect(page.locator("#faces")).to_contain_text("quality poor")
    assert page.locator("#probe-canvas").evaluate("c => c.getBoundingClientRect().width") >= 320  # not 80 px
    playwright.expect(page.locator("#clear-box")).to_be_hidden()

    # the face box by keyboard alone: open the fields, they hold the chosen face's box; Enter uses a changed one
    page.locator("#box-by-keys summary").focus()
    page.keyboard.press("Enter")
    x, y, w, h = (int(page.locator(f"#box-{side}").input_value()) for side in "xywh")
    assert w >= 20 and h >= 20
    page.locator("#box-w").fill(str(w + 2))
    page.locator("#box-h").focus()
    page.keyboard.press("Enter")
    playwright.expect(page.locator("#faces-status")).to_have_text("The face in the box you drew will be searched.")
    assert page.locator("input[name=face_box]").input_value() == f"{x},{y},{w + 2},{h}"
    assert page.url.endswith("/search")  # Enter in the box's fields did not submit the search
    playwright.expect(page.locator("#clear-box")).to_be_visible()
    ivan.shot("forms-search-box-by-keys")
    page.locator("#clear-box").click()
    playwright.expect(page.locator("#clear-box")).to_be_hidden()
    playwright.expect(page.locator("#faces-status")).to_have_text("Face 1 of 1 chosen.")

    # the case number, checked in the browser against the policy's format, which is shown by an example
    playwright.expect(page.locator("#case-number-hint")).to_have_text("(like 24-000123)")
    fill_request(page, "24/931", "still from the pharmacy camera")
    page.get_by_role("button", name="Search", exact=True).click()
    message = page.get_by_label("Case number").evaluate("field => field.validationMessage")
    assert "24-000123" in message and "[0-9]" not in message
    assert_kept(page, "24/931", "still from the pharmacy camera")
    assert page.locator(".form-alert").count() == 0  # the browser stopped it: nothing was sent

    # refused by the server (as a browser that cannot check the pattern would send it): the reason beside the form
    page.get_by_label("Case number").evaluate("field => { field.removeAttribute('pattern'); field.setCustomValidity(''); }")
    page.get_by_role("button", name="Search", exact=True).click()
    alert = page.locator(".form-alert")
    playwright.expect(alert).to_contain_text("does not match the required format (like 24-000123)")
    assert_kept(page, "24/931", "still from the pharmacy camera")

    # refused as a prohibited use
    fill_request(page, "24-000931", "find who organised the protest")
    page.get_by_role("button", name="Search", exact=True).click()
    playwright.expect(alert).to_contain_text("prohibited use")
    assert_kept(page, "24-000931", "find who organised the protest")

    # refused for the probe's poor quality: the same request, the photograph attached, goes to a supervisor
    page.get_by_label("Why this search is needed").fill("the only still from the pharmacy camera")
    page.get_by_role("button", name="Search", exact=True).click()
    playwright.expect(alert).to_contain_text("probe quality is poor")
    playwright.expect(alert).to_contain_text("px wide (minimum 40)")
    assert_kept(page, "24-000931", "the only still from the pharmacy camera")
    playwright.expect(page.locator("input[name=face]")).to_have_value("1")  # the chosen face survives too
    ivan.shot("forms-search-refused-poor-quality")
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    ivan.shot("forms-search-refused-poor-quality-phone")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.get_by_role("button", name="Send to a supervisor for approval").click()
    page.wait_for_url(re.compile(r"/searches\?override_requested=\d+$"), timeout=60_000)
    request_id = int(page.url.rsplit("=", 1)[1])
    playwright.expect(page.locator("p.flash")).to_have_text(f"Sent to a supervisor for approval (request #{request_id}).")
    ivan.log_out()

    sam = Visit(browser, base, "sam", passwords["sam"])
    page = sam.go("/supervision")
    request = page.locator("article.override", has=page.locator(f"#override-{request_id}"))
    playwright.expect(request.locator(".quality-reasons")).to_contain_text("px wide (minimum 40)")
    assert_faces_in_view(page, f"article.override:has(#override-{request_id}) img.face-frame", min_side=150)
    picture = request.locator("img.face-frame").bounding_box()
    reasons = request.locator(".quality-reasons").bounding_box()
    assert reasons["x"] >= picture["x"] + picture["width"] and reasons["y"] < picture["y"] + picture["height"]  # beside it
    sam.shot("forms-supervision-poor-probe")
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    sam.shot("forms-supervision-poor-probe-phone")
    page.set_viewport_size({"width": 1280, "height": 900})
    request.get_by_label("Notes").fill("ask the pharmacy for the full recording")
    request.get_by_role("button", name="Decline").click()
    playwright.expect(page.locator("p.flash")).to_have_text(f"Override request #{request_id} declined.")
    sam.log_out()


def test_the_search_forms_dropdowns_show_their_longest_option_whole(site, browser):
    base, passwords, _ = site
    ivan = Visit(browser, base, "ivan", passwords["ivan"])
    page = ivan.go("/search")
    widths = page.locator("#search-form select").evaluate_all("""selects => selects.map(select => {
      const natural = select.cloneNode(true);  // the width a select takes for its longest option
      natural.style.maxWidth = "none";
      natural.style.position = "absolute";
      document.body.append(natural);
      const wanted = natural.getBoundingClientRect().width;
      natural.remove();
      return [select.id, select.getBoundingClientRect().width, wanted];
    })""")
    assert len(widths) == 3
    for name, width, wanted in widths:
        assert width >= wanted - 1, (name, width, wanted)
    ivan.shot("forms-search-form")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: the option chosen is written out whole beneath
    page.get_by_label("Purpose", exact=True).select_option("imminent_threat_to_life")
    chosen = page.locator("#purpose-chosen")
    playwright.expect(chosen).to_have_text("imminent_threat_to_life: Identify a person to prevent an imminent threat to "
                                           "someone's life or of serious bodily harm")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    ivan.shot("forms-search-form-phone")
    page.set_viewport_size({"width": 1280, "height": 900})
    playwright.expect(chosen).to_be_hidden()  # wide enough to show it in the dropdown itself
    ivan.log_out()


def api(base: str, method: str, path: str, token: str | None = None, body: bytes | None = None,
        content_type: str = "application/json") -> tuple[int, dict]:
    request = urllib.request.Request(base + "/api/v1" + path, data=body, method=method,
                                     headers={"Content-Type": content_type,
                                              **({"Authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as refused:
        return refused.code, {"retry_after": float(refused.headers.get("Retry-After") or 1)}


def load_policy(base: str, token: str, text: str) -> None:
    """Load ``text`` as the policy, waiting out the admin's own rate limit if need be."""
    for _ in range(3):
        status, answer = api(base, "PUT", "/policy", token, text.encode(), "text/plain")
        if status != 429:
            assert status == 200, (status, answer)
            return
        time.sleep(answer["retry_after"])
    raise AssertionError("the policy could not be loaded")


def test_a_form_refused_for_too_many_requests_keeps_what_was_typed(site, browser):
    base, passwords, probe = site
    ivan = Visit(browser, base, "ivan", passwords["ivan"])
    page = ivan.go("/search")
    page.get_by_label("Probe photograph").set_input_files(probe)
    playwright.expect(page.locator("#faces-status")).to_have_text("Face 1 of 1 chosen.", timeout=60_000)
    note = "still from the parking garage camera, frame 1412"
    fill_request(page, "24-000932", note)

    status, login = api(base, "POST", "/auth/login", body=json.dumps(  # the second admin: idle so far, so the lowered
        {"username": "root", "password": passwords["root"]}).encode())   # limit leaves room to restore the policy
    assert status == 200, login
    token = login["token"]
    status, policy = api(base, "GET", "/policy", token)
    assert status == 200
    in_force = policy["text"]
    assert in_force.count("requests_per_minute_per_user = 60") == 1
    try:
        load_policy(base, token, in_force.replace("requests_per_minute_per_user = 60", "requests_per_minute_per_user = 5"))
        for _ in range(10):  # ivan uses up his requests for this minute
            if page.request.get(base + "/api/v1/auth/me").status == 429:
                break
        else:
            raise AssertionError("the lowered limit never answered 429")
        page.get_by_role("button", name="Search", exact=True).click()
        playwright.expect(page.locator(".form-alert")).to_contain_text("more than 5 requests in a minute; try again in")
        assert_kept(page, "24-000932", note)
        ivan.shot("forms-search-too-many-requests")
    finally:
        load_policy(base, token, in_force)
    page.get_by_role("button", name="Search", exact=True).click()  # the same form, nothing chosen again, now goes
    page.wait_for_url(re.compile(r"/searches/\d+$"), timeout=60_000)
    playwright.expect(page.locator("main")).to_contain_text("24-000932")
    ivan.log_out()


def test_forms_answered_with_a_page_or_a_file_still_work(site, browser):
    base, passwords, _ = site
    alma = Visit(browser, base, "alma", passwords["alma"])
    page = alma.go("/oversight/audit")
    page.get_by_role("button", name="Verify the chain").click()  # answered with a page: it is shown
    playwright.expect(page.get_by_role("status")).to_contain_text("intact")
    with page.expect_download() as saved:  # answered with a file: it is saved
        page.get_by_role("button", name=re.compile("Export")).click()
    assert saved.value.suggested_filename == "facetrail-audit-export.zip"
    assert saved.value.path().read_bytes()[:2] == b"PK"
    alma.log_out()
