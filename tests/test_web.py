"""The web application's investigator and examiner pages on real photographs, who may open which page, and the
session, CSRF and error handling common to every page. Admin, oversight and supervisor pages have their own files;
the whole flow in a real browser is in test_e2e_browser.py."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

from tests.fixtures.images import jpeg
from tests.fixtures.web import post_login
from tests.fixtures.world import CASE, PASSWORD, SEARCH_FIELDS, World
from facetrail.accountability.requests import CaseRequest

PAGES = {
    "/": {"investigator", "examiner", "supervisor", "auditor", "admin"},
    "/search": {"investigator"},
    "/searches": {"investigator"},
    "/reviews": {"examiner"},
    "/supervision": {"supervisor"},
    "/oversight/report": {"auditor", "supervisor"},
    "/oversight/audit": {"auditor", "supervisor"},
    "/admin/users": {"admin"},
    "/admin/galleries": {"admin"},
    "/admin/policy": {"admin"},
    "/cases": {"auditor", "supervisor"},
}
ROLE_USERS = {"investigator": "ivan", "examiner": "erin", "supervisor": "sam", "auditor": "alma", "admin": "admin"}


def log_in(world: World, username: str) -> str:
    """Log the test client in through the login form; the CSRF token of the new session."""
    world.client.cookies.clear()
    page = post_login(world.client, {"username": username, "password": PASSWORD})
    assert page.status_code == 200, page.text
    return csrf_of(page.text)


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def alert_of(html: str) -> str:
    return re.sub(r"<[^>]+>", " ", re.search(r'role="alert"[^>]*>(.*?)</div>', html, re.S).group(1)).strip()


def web_search(world: World, csrf: str, photo: bytes, follow_redirects: bool = True, **fields):
    """Submit the search form with ``photo`` and the usual fields (``fields`` override them)."""
    return world.client.post("/search", data={"csrf_token": csrf, **SEARCH_FIELDS, **fields},
                             files={"probe": ("still.jpg", photo, "image/jpeg")}, follow_redirects=follow_redirects)


def two_faces(faces) -> tuple[bytes, int]:
    """Biden (left) and Obama (right, at half size) side by side in one JPEG, and the x where Obama's part starts."""
    left, right = Image.open(faces["biden.jpg"]).convert("RGB"), Image.open(faces["obama.jpg"]).convert("RGB")
    right = right.resize((right.width * left.height // right.height // 2, left.height // 2))
    canvas = Image.new("RGB", (left.width + right.width, left.height), "grey")
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width, left.height // 4))
    out = io.BytesIO()
    canvas.save(out, format="JPEG", quality=92)
    return out.getvalue(), left.width


def test_every_page_admits_exactly_the_roles_it_serves(people):
    for role, username in ROLE_USERS.items():
        log_in(people, username)
        for path, roles in PAGES.items():
            page = people.client.get(path)
            assert page.status_code == (200 if role in roles else 403), (role, path, page.text[:300])
            assert page.headers["content-type"].startswith("text/html")
            if page.status_code == 403:
                assert "may not" in alert_of(page.text)
        # the navigation offers what the role may open, and nothing else
        home = people.client.get("/").text
        for path, roles in PAGES.items():
            if path != "/":
                assert (f'href="{path}"' in home) == (role in roles), (role, path)


def test_pages_send_visitors_without_a_session_to_the_login_page(client):
    for path in PAGES:
        page = client.get(path, follow_redirects=False)
        assert page.status_code == 303
        assert page.headers["location"].startswith("/login?next=")
    assert client.get("/api/v1/auth/me").status_code == 401  # the API answers in JSON instead
    assert client.get("/api/v1/auth/me").json()["error"]["type"] == "authentication"


def test_a_login_not_posted_from_the_login_form_is_refused(people):
    """Login CSRF: another site's page cannot log a visitor's browser into an account of its choosing."""
    client = people.client
    for data in ({}, {"login_csrf": "forged"}):
        client.cookies.clear()
        page = client.post("/login", data={"username": "ivan", "password": PASSWORD, **data}, follow_redirects=False)
        assert page.status_code == 403 and "expired or was not sent from this site" in alert_of(page.text)
        assert "ft_session" not in page.cookies
    # the refusal serves a fresh form, which then works
    value = re.search(r'name="login_csrf" value="([^"]+)"', page.text).group(1)
    page = client.post("/login", data={"username": "ivan", "password": PASSWORD, "login_csrf": value}, follow_redirects=False)
    assert page.status_code == 303


def test_login_failures_are_explained_and_next_never_leaves_the_site(people):
    page = post_login(people.client, {"username": "ivan", "password": "wrong"})
    assert page.status_code == 401
    assert "password" in alert_of(page.text).lower()
    page = post_login(people.client, {"username": "ivan", "password": PASSWORD, "next": "//evil.example/x"},
                              follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/"
    page = post_login(people.client, {"username": "ivan", "password": PASSWORD, "next": "/searches"},
                              follow_redirects=False)
    assert page.headers["location"] == "/searches"


def test_logging_out_ends_the_session_for_good(people):
    csrf = log_in(people, "ivan")
    session = people.client.cookies.get("ft_session")
    assert people.client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False).status_code == 303
    people.client.cookies.set("ft_session", session)  # the old cookie, replayed
    page = people.client.get("/searches", follow_redirects=False)
    assert page.status_code == 303 and "reason=" in page.headers["location"]


def test_forms_without_the_session_csrf_token_are_refused(world, faces):
    log_in(world, "ivan")
    page = web_search(world, "forged", jpeg(faces["obama2.jpg"], 500))
    assert page.status_code == 403
    assert "reload the page" in alert_of(page.text)
    assert world.system.searches.my_searches(world.system.auth.authenticate(world.tokens["ivan"])) == []  # nothing ran


def test_investigator_searches_from_the_form_and_sees_ranked_candidates(world, faces):
    csrf = log_in(world, "ivan")
    form = world.client.get("/search").text
    assert 'value="county"' in form and "criminal_investigation" in form and "robbery" in form
    page = web_search(world, csrf, jpeg(faces["obama2.jpg"], 600), follow_redirects=False)
    assert page.status_code == 303
    search_id = int(page.headers["location"].rsplit("/", 1)[1])
    result = world.client.get(page.headers["location"]).text
    assert "not identifications" in result
    ranks = re.findall(r'<div class="rank">Rank (\d+)</div>\s*<div>Subject ([^<]+)</div>', result)
    assert ranks == [("1", "B-1001"), ("2", "B-2002")]  # Obama's booking photograph first
    probe = world.client.get(f"/searches/{search_id}/probe.jpg")
    assert probe.headers["content-type"] == "image/jpeg" and Image.open(io.BytesIO(probe.content)).height == 600
    chip = Image.open(io.BytesIO(world.client.get(f"/searches/{search_id}/candidates/1/chip.png").content))
    assert chip.size == (150, 150)
    candidate = world.client.get(f"/searches/{search_id}/candidates/1.jpg")
    assert Image.open(io.BytesIO(candidate.content)).format == "JPEG"
    history = world.client.get("/searches").text
    assert f'href="/searches/{search_id}"' in history and "waiting for review" in history
    views = [e["action"] for e in world.system.oversight.audit_entries(world.system.auth.authenticate(world.tokens["alma"]), limit=1000)]
    assert {"search", "search_viewed"} <= set(views)  # the pictures the result page showed are covered by its entry
    assert not {"probe_viewed", "candidate_image_viewed"} & set(views)


def test_probe_and_candidates_are_framed_on_their_faces_at_one_scale(world, faces, engine):
    from facetrail.http.files import FACE_FRAME_SIDE, face_frame_box

    csrf = log_in(world, "ivan")
    page = web_search(world, csrf, jpeg(faces["obama2.jpg"], 600), follow_redirects=False)
    search_id = int(page.headers["location"].rsplit("/", 1)[1])
    result = world.client.get(page.headers["location"]).text
    assert f'href="/searches/{search_id}/photos/1"><img src="/searches/{search_id}/candidates/1/face.jpg"' in result
    expected_side = face_frame_box()[2]
    widths = []
    for path in ("probe/face.jpg", "candidates/1/face.jpg", "candidates/2/face.jpg"):
        picture = world.client.get(f"/searches/{search_id}/{path}")
        assert picture.headers["content-type"] == "image/jpeg" and picture.headers["cache-control"] == "private, no-store"
        pixels = engine.decode(picture.content).pixels
        assert pixels.shape[:2] == (FACE_FRAME_SIDE, FACE_FRAME_SIDE)
        (face,) = engine.find_faces(pixels)  # the detector finds the face again, in the middle of the frame
        (cx, cy), box = face.detection.box.centre, face.detection.box
        assert abs(cx - FACE_FRAME_SIDE / 2) < 0.1 * FACE_FRAME_SIDE and abs(cy - FACE_FRAME_SIDE / 2) < 0.1 * FACE_FRAME_SIDE, path
        widths.append(box.width)
    assert max(widths) / min(widths) < 1.3 and abs(widths[0] - expected_side) < 0.3 * expected_side  # one scale
    views = [e["details"] for e in world.system.oversight.audit_entries(world.system.auth.authenticate(world.tokens["alma"]), limit=1000)
             if e["action"] == "search_viewed"]
    assert [c["rank"] for c in views[-1]["candidates"]] == [1, 2]  # framed views are covered by the page view


def test_a_face_frame_centres_the_box_and_pads_beyond_the_edge():
    from facetrail.http.files import face_frame, face_frame_box

    pixels = np.full((100, 200, 3), 40, dtype=np.uint8)
    pixels[0:20, 180:200] = 255  # the face box, in the top right corner
    frame = face_frame(pixels, [180, 0, 20, 20], side=80, scale=2.0)
    x, y, w, h = face_frame_box(side=80, scale=2.0)
    assert (x, y, w, h) == (20, 20, 40, 40)
    assert frame[y + 3:y + h - 3, x + 3:x + w - 3].min() > 230  # the box fills the middle half (Lanczos rings at its edge)
    assert frame[:10, :].max() == 0 and frame[:, -10:].max() == 0  # past the photograph's edges: black
    assert 30 <= frame[70, 10].mean() <= 50  # the rest of the photograph around it


def test_a_refused_search_keeps_the_form_and_says_why(world, faces):
    csrf = log_in(world, "ivan")
    page = web_search(world, csrf, jpeg(faces["obama2.jpg"], 500), case_number="last tuesday", note="kept text")
    assert page.status_code == 422
    assert "case number" in alert_of(page.text)
    assert "kept text" in page.text and 'value="last tuesday"' in page.text
    page = web_search(world, csrf, b"GIF89a not really")
    assert page.status_code == 415
    history = world.client.get("/searches").text
    assert history.count("refused") >= 2  # refusals are recorded and shown


def test_choosing_among_faces_or_drawing_a_box(world, faces):
    csrf = log_in(world, "ivan")
    photo, obama_from_x = two_faces(faces)
    found = world.client.post("/search/faces", data={"csrf_token": csrf}, headers={"Accept": "application/json"},
                              files={"image": ("two.jpg", photo, "image/jpeg")}).json()
    assert len(found["faces"]) == 2 and found["preview"].startswith("data:image/jpeg;base64,")
    page = web_search(world, csrf, photo)
    assert page.status_code == 422 and "2 faces found" in alert_of(page.text)
    obama = next(f for f in found["faces"] if f["box"][0] >= obama_from_x)
    page = web_search(world, csrf, photo, face=str(obama["face"]))
    assert page.status_code == 200 and "<div>Subject B-1001</div>" in page.text.split('class="rank">Rank 2')[0]
    x, y, w, h = obama["box"]
    page = web_search(world, csrf, photo, face_box=f"{x - 10},{y - 10},{w + 20},{h + 20}", case_number="24-000124")
    assert page.status_code == 200 and "<div>Subject B-1001</div>" in page.text.split('class="rank">Rank 2')[0]
    bad = world.client.post("/search/faces", data={"csrf_token": csrf}, headers={"Accept": "application/json"},
                            files={"image": ("x.jpg", b"\xff\xd8\xff truncated", "image/jpeg")})
    assert bad.status_code == 400 and bad.json()["error"]["message"]


def test_examiners_review_blind_and_decisions_are_final(world, faces):
    ivan = world.system.auth.authenticate(world.tokens["ivan"])
    search_id = world.system.searches.search(ivan, jpeg(faces["obama2.jpg"], 500), CaseRequest(gallery="county", case_number=CASE, purpose="criminal_investigation", offence="robbery", note="web review")).search_id
    csrf = log_in(world, "erin")
    assert f'href="/reviews/{search_id}"' in world.client.get("/reviews").text
    page = world.client.get(f"/reviews/{search_id}").text
    assert f"/searches/{search_id}/probe/chip.png" in page
    assert "B-1001" not in page and "Distance" not in page and "Rank " not in page  # blind to the algorithm
    ranked = world.client.get(f"/searches/{search_id}", follow_redirects=False)  # the ranked page sends her to the bench
    assert ranked.status_code == 303 and ranked.headers["location"] == f"/reviews/{search_id}"
    label = re.search(rf'\?candidate=(\w+)"[^>]*>\s*<img src="/searches/{search_id}/candidates/1/face.jpg"', page)[1]
    for refused, problem in (({"decision": "not_a_match", "conclusion": "support_same"}, "counts as possible lead, not not a match"),
                             ({"feature-ears": "similar"}, "choose a conclusion on the scale"),
                             ({"conclusion": "support_same", "feature-ears": "same"}, "the finding must be one of")):
        answer = world.client.post(f"/reviews/{search_id}/decisions", data={"csrf_token": csrf, "rank": "1", "ref": label, **refused})
        assert answer.status_code == 400 and problem in alert_of(answer.text), refused
    decided = world.client.post(f"/reviews/{search_id}/decisions",
                                data={"csrf_token": csrf, "rank": "1", "ref": label, "conclusion": "support_same",
                                      "feature-ears": "similar", "feature-marks": "not_visible", "notes": "erin: ears"})
    assert f"Your decision on candidate {label} is recorded." in decided.text
    shown = world.client.get(f"/reviews/{search_id}?candidate={label}").text
    assert "Rank 1 · subject B-1001 · distance" in shown and "Support for the same person" in shown  # once decided
    assert "Ears: similar" in shown and "<strong>possible lead</strong>" in shown
    again = world.client.post(f"/reviews/{search_id}/decisions",
                              data={"csrf_token": csrf, "rank": "1", "decision": "not_a_match"})
    assert again.status_code == 409 and "decisions are final" in alert_of(again.text)

    csrf = log_in(world, "ezra")
    page = world.client.get(f"/reviews/{search_id}?rank=1").text
    assert "erin" not in page and "you: possible lead" not in page  # blind to erin's decision
    world.client.post(f"/reviews/{search_id}/decisions",
                      data={"csrf_token": csrf, "rank": "1", "decision": "possible_lead", "notes": "ezra: agrees"})
    log_in(world, "ivan")
    assert "lead: verified by two examiners" in world.client.get(f"/searches/{search_id}").text
    assert CASE in world.client.get(f"/api/v1/leads/{search_id}").text  # the lead report, with the cookie session


def test_pages_and_api_answer_errors_in_their_own_form(people):
    log_in(people, "ivan")
    page = people.client.get("/searches/424242")
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "no search 424242" in alert_of(page.text)
    api = people.client.get("/api/v1/searches/424242")
    assert api.status_code == 404 and api.json()["error"]["message"] == "no search 424242"
    page = people.client.get("/no/such/page")
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy


@pytest.mark.parametrize("path", ["/static/facetrail.css", "/static/probe.js", "/static/compare.js"])
def test_static_files_are_served_from_the_package(client, path):
    assert client.get(path).status_code == 200


def test_one_address_cannot_try_passwords_without_limit(people):
    for attempt in range(20):
        username = ("ivan", "erin", "ezra", "sam")[attempt % 4]  # spread over accounts: no single lockout stops it
        assert post_login(people.client, {"username": username, "password": f"guess {attempt}"}).status_code == 401
    page = post_login(people.client, {"username": "alma", "password": PASSWORD})
    assert page.status_code == 429 and "Retry-After" in page.headers
    api = people.client.post("/api/v1/auth/login", json={"username": "alma", "password": PASSWORD})
    assert api.status_code == 429 and api.json()["error"]["type"] == "rate_limited"
