"""Refused forms on the server's side (tests/test_web_forms.py drives them in a browser): a poor-quality refusal offers
to send the same request to a supervisor, a search refused for want of a face says what to do in the form's words,
the case-number format is an example and a browser-readable pattern, a redirect answering the form script names its
target, and the supervisor sees the poor probe framed on its face."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

from facetrail.web.routes.investigator import browser_pattern
from tests.fixtures.images import jpeg
from tests.fixtures.web import post_login
from tests.fixtures.world import PASSWORD, SEARCH_FIELDS, World, actors, add_user

OVERRIDE_BUTTON = re.compile(r'<button type="submit" form="search-form" name="ask_override" value="true">'
                             r"Send to a supervisor for approval</button>")


def log_in(world: World, username: str) -> str:
    """Log the test client in as ``username`` and return the CSRF token of the session's forms."""
    world.client.cookies.clear()
    response = post_login(world.client, {"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return re.search(r'name="csrf_token" value="([^"]+)"', response.text).group(1)


def search(world: World, csrf: str, photo: bytes, **fields):
    return world.client.post("/search", data={"csrf_token": csrf, **SEARCH_FIELDS, **fields},
                             files={"probe": ("still.jpg", photo, "image/jpeg")})


def test_a_poor_probe_refused_offers_to_send_the_same_request_to_a_supervisor(world, poor):
    refused = search(world, log_in(world, "ivan"), poor, note="the only still")
    assert refused.status_code == 422 and "probe quality is poor" in refused.text
    assert OVERRIDE_BUTTON.search(refused.text) and "the only still" in refused.text
    other = search(world, log_in(world, "ivan"), poor, case_number="no case")
    assert other.status_code == 422 and not OVERRIDE_BUTTON.search(other.text)  # refused for its case number first

    [admin] = actors(world, "admin")
    system = world.system
    system.admin.load_policy(admin, system.admin.policy_in_force(admin)[1].replace(
        'poor_probe = "supervisor_override"', 'poor_probe = "refuse"'))
    refused = search(world, log_in(world, "ivan"), poor)
    assert refused.status_code == 422 and not OVERRIDE_BUTTON.search(refused.text)  # no supervisor may approve it


def test_a_search_without_a_face_says_to_draw_one_on_the_preview(world):
    blank = io.BytesIO()
    Image.fromarray(np.full((300, 300, 3), 128, dtype=np.uint8)).save(blank, format="JPEG")
    refused = search(world, log_in(world, "ivan"), blank.getvalue())
    assert refused.status_code == 422
    alert = re.search(r'<div class="error form-alert" role="alert" tabindex="-1">(.*?)</div>', refused.text, re.S).group(1)
    assert "draw a box around the face on the preview" in alert and "Give the face box by its position" in alert
    assert "--face-box" not in refused.text


def test_the_search_form_shows_the_case_number_format_by_an_example(world):
    log_in(world, "ivan")
    form = world.client.get("/search").text
    assert 'pattern="^[0-9]{2}-[0-9]{6}$"' in form and 'title="A case number like 24-000123"' in form
    hint = re.search(r'id="case-number-hint">(.*?)</span></label>', form, re.S).group(1)
    assert "24-000123" in hint and "[0-9]" not in hint


@pytest.mark.parametrize(("pattern", "readable"), [
    (r"^[0-9]{2}-[0-9]{6}$", True), (r"(CR|PD)-\d{4}", True), (r"(?:CR|PD)/[A-Z]{2,3}\.\d+", True),
    (r"(?i)cr-\d+", False), (r"(?P<year>\d\d)-\d+", False), (r"[A-Z0-9-]+", False), (r"\w+", False), (r"a\-b", False),
])
def test_only_patterns_a_browser_reads_as_python_does_become_the_inputs_pattern(pattern, readable):
    assert (browser_pattern(re.compile(pattern)) == pattern) is readable


def test_a_redirect_answering_the_form_script_names_its_target(world, faces):
    csrf = log_in(world, "ivan")
    photo = jpeg(faces["obama2.jpg"], 500)
    plain = world.client.post("/search", data={"csrf_token": csrf, **SEARCH_FIELDS}, follow_redirects=False,
                              files={"probe": ("still.jpg", photo, "image/jpeg")})
    assert plain.status_code == 303 and re.fullmatch(r"/searches/\d+", plain.headers["location"])
    scripted = world.client.post("/search", data={"csrf_token": csrf, **SEARCH_FIELDS}, follow_redirects=False,
                                 files={"probe": ("still.jpg", photo, "image/jpeg")}, headers={"Facetrail-Form": "1"})
    assert scripted.status_code == 200 and "location" not in scripted.headers
    target = scripted.headers["facetrail-location"]
    assert re.fullmatch(r"/searches/\d+", target) and target != plain.headers["location"]  # a second search, not a replay
    assert world.client.get(target).status_code == 200


def test_the_supervisor_sees_the_poor_probe_framed_on_its_face(world, poor):
    add_user(world, "vic", ["supervisor"], "Vice")
    sent = search(world, log_in(world, "ivan"), poor, ask_override="true")
    request_id = int(re.search(r"request #(\d+)", sent.text).group(1))

    log_in(world, "sam")
    page = world.client.get("/supervision").text
    framed = f"/supervision/overrides/{request_id}/probe/face.jpg"
    assert f'src="{framed}"' in page and 'class="face-frame"' in page
    reasons = re.search(r'<ul class="quality-reasons">(.*?)</ul>', page, re.S).group(1)
    assert "tilted" in reasons  # the reasons beside the picture
    picture = world.client.get(framed)
    assert picture.status_code == 200 and picture.headers["cache-control"] == "private, no-store"
    assert Image.open(io.BytesIO(picture.content)).size == (320, 320)  # the comparison scale (FACE_FRAME_SIDE)
    last = world.system.audit.entries(limit=10_000)[-1]
    assert (last["action"], last["actor"], last["target"]) == ("override_probe_viewed", "sam", f"override:{request_id}")

    log_in(world, "vic")  # another unit's supervisor: as if there were no such request, the refusal audited
    assert world.client.get(framed).status_code == 404
    assert world.system.audit.entries(limit=10_000)[-1]["actor"] == "vic"
