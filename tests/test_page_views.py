"""A page and its pictures are one action: a page view of a search is one audit entry naming what it showed, and the
pictures it names, fetched soon after by the same user, are served after the same scope check without entries of
their own and without counting against the user's request limit; every other view of a photograph is audited and
counted on its own. On SQLite and PostgreSQL (the ``world`` fixture); the browser's side is in
test_web_page_views.py."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from facetrail.accountability import reviews
from facetrail.accountability.requests import CaseRequest
from facetrail.accountability.schema import ProbeRecord, SearchRecord
from facetrail.errors import NotFoundError
from facetrail.http.ratelimit import SlidingWindowLimiter
from tests.fixtures.images import jpeg
from tests.fixtures.web import post_login
from tests.fixtures.world import PASSWORD, SEARCH_FIELDS, World, actors

CASE = "24-000418"
PAGE_PICTURES = ("probe/face.jpg", "candidates/1/face.jpg", "candidates/2/face.jpg")
"""The pictures the search result page of a two-candidate search shows."""


@pytest.fixture
def searched(world, faces) -> int:
    """``world`` after ivan (RHD) searched 'county' with a photograph of one of its two subjects; the search's id."""
    (ivan,) = actors(world, "ivan")
    case = CaseRequest(gallery=SEARCH_FIELDS["gallery"], case_number=CASE, purpose=SEARCH_FIELDS["purpose"],
                       offence=SEARCH_FIELDS["offence"], note="page views")
    return world.system.searches.search(ivan, jpeg(faces["obama2.jpg"], 400), case).search_id


def trail(world: World, search_id: int) -> list[dict]:
    """The audit entries about ``search_id``, oldest first."""
    return [entry for entry in world.system.audit.entries() if entry["target"] == f"search:{search_id}"]


def picture_views(world: World, search_id: int) -> list[tuple[str, str, dict]]:
    return [(e["actor"], e["action"], e["details"]) for e in trail(world, search_id)
            if e["action"] in ("probe_viewed", "candidate_image_viewed")]


def fetch_for_page(world: World, username: str, search_id: int, rank: int | None) -> bool:
    """Fetch a picture as a page does, through the service; whether a page view covered it."""
    (actor,) = actors(world, username)
    told: list[bool] = []
    if rank is None:
        world.system.reviews.probe_photo(actor, search_id, told.append)
    else:
        world.system.reviews.candidate_photo(actor, search_id, rank, told.append)
    return told[0]


def test_a_page_view_is_one_entry_naming_the_probe_and_the_candidates_shown(world, searched):
    ivan, erin = actors(world, "ivan", "erin")
    shown = world.system.reviews.show_search(ivan, searched, page="search result")
    with world.system.galleries.sessions() as session:
        sha = session.get(ProbeRecord, session.get(SearchRecord, searched).probe_id).sha256
    views = [e for e in trail(world, searched) if e["action"] == "search_viewed"]
    assert [(e["actor"], e["details"]) for e in views] == [("ivan", {
        "page": "search result", "probe_sha256": sha,
        "candidates": [{"rank": c["rank"], "image_id": c["image_id"]} for c in shown["candidates"]]})]
    assert len(shown["candidates"]) == 2 and all(c["image_id"] for c in shown["candidates"])
    world.system.reviews.show_search(erin, searched)  # the API's and the CLI's view: no page, the same list
    assert trail(world, searched)[-1]["details"] == {"probe_sha256": sha, "candidates": views[0]["details"]["candidates"]}


def test_a_page_view_covers_only_its_own_users_pictures_that_it_named_for_a_while(world, searched, monkeypatch):
    ivan, erin = actors(world, "ivan", "erin")
    assert not fetch_for_page(world, "ivan", searched, 1)  # no page view yet: audited on its own
    assert picture_views(world, searched)[-1][:2] == ("ivan", "candidate_image_viewed")

    world.system.reviews.show_search(erin, searched)  # not a page: covers nothing
    world.system.reviews.show_photograph(erin, searched, 2)  # erin's page of candidate 2 alone
    before = len(picture_views(world, searched))
    assert fetch_for_page(world, "erin", searched, 2)
    assert not fetch_for_page(world, "erin", searched, 1)  # not on erin's page
    assert not fetch_for_page(world, "erin", searched, None)
    assert not fetch_for_page(world, "ivan", searched, 2)  # another user's page view covers nothing
    assert [view[:2] for view in picture_views(world, searched)[before:]] == [
        ("erin", "candidate_image_viewed"), ("erin", "probe_viewed"), ("ivan", "candidate_image_viewed")]

    world.system.reviews.show_search(ivan, searched, page="search result")
    seq = trail(world, searched)[-1]["seq"]
    assert world.system.reviews.covering_page_view(ivan, searched, trail(world, searched)[-1]["details"]["candidates"][1]) == seq
    assert fetch_for_page(world, "ivan", searched, None) and fetch_for_page(world, "ivan", searched, 1)
    later = dt.datetime.now(dt.timezone.utc)
    monkeypatch.setattr(reviews, "utcnow", lambda: later + reviews.PAGE_VIEW_COVERS - dt.timedelta(seconds=30))
    assert fetch_for_page(world, "ivan", searched, 2)
    monkeypatch.setattr(reviews, "utcnow", lambda: later + reviews.PAGE_VIEW_COVERS + dt.timedelta(seconds=1))
    assert not fetch_for_page(world, "ivan", searched, 2)  # the page view is too old
    assert picture_views(world, searched)[-1][:2] == ("ivan", "candidate_image_viewed")
    # a fetch outside a page (the API's, the CLI's) is audited whatever page view there was
    monkeypatch.undo()
    count = len(picture_views(world, searched))
    world.system.reviews.candidate_photo(ivan, searched, 1)
    assert len(picture_views(world, searched)) == count + 1


def test_a_page_view_never_widens_who_may_see_a_picture(world, searched):
    (tina,) = actors(world, "tina")  # an investigator of another unit
    # even with an entry that reads like a page view of hers, the search stays out of her scope, the refusal audited
    world.system.audit.append("tina", "search_viewed", f"search:{searched}",
                              {"page": "search result", "candidates": [{"rank": 1, "image_id": 1}]})
    told: list[bool] = []
    with pytest.raises(NotFoundError):
        world.system.reviews.candidate_photo(tina, searched, 1, told.append)
    assert told == []  # refused before coverage is even looked at
    assert trail(world, searched)[-1]["actor"] == "tina" and trail(world, searched)[-1]["action"] == "access_denied"
    with pytest.raises(NotFoundError):
        world.system.reviews.show_photograph(tina, searched, 1)
    assert trail(world, searched)[-1]["action"] == "access_denied"


# --- the web: page loads counted, covered pictures not ----------------------------------------------------------


def log_in(world: World, username: str) -> None:
    world.client.cookies.clear()
    assert post_login(world.client, {"username": username, "password": PASSWORD}).status_code == 200


def limit_requests(world: World, per_minute: int) -> None:
    """The policy allows ``per_minute`` requests a minute per user; every count starts afresh."""
    (admin,) = actors(world, "admin")
    policy = world.system.admin.policy_in_force(admin)[1]
    world.system.admin.load_policy(admin, re.sub(r"requests_per_minute_per_user = \d+",
                                                 f"requests_per_minute_per_user = {per_minute}", policy))
    world.client.app.state.limiter = SlidingWindowLimiter()


def test_the_request_limit_counts_page_loads_not_the_pictures_they_show(world, searched):
    log_in(world, "ivan")
    limit_requests(world, 5)
    for _ in range(5):
        page = world.client.get(f"/searches/{searched}")
        assert page.status_code == 200
        for picture in PAGE_PICTURES:
            assert world.client.get(f"/searches/{searched}/{picture}").status_code == 200, picture
        assert world.client.get("/static/facetrail.css").status_code == 200  # static files never count
    refused = world.client.get(f"/searches/{searched}")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    text = " ".join(re.sub(r"<[^>]+>", " ", refused.text).split())
    assert text.count("more than 5 requests in a minute") == 1  # said once, as an error
    assert 'class="flash"' not in refused.text and "<h1>Too many requests</h1>" in refused.text
    # the page loads are in the trail, the pictures they showed not one by one
    assert [e["details"]["page"] for e in trail(world, searched) if e["action"] == "search_viewed"] == ["search result"] * 5
    assert picture_views(world, searched) == []


def test_covered_pictures_have_a_ceiling_of_their_own(world, searched, monkeypatch):
    from facetrail.web.routes import photos

    monkeypatch.setattr(photos, "COVERED_PICTURES_PER_PAGE_LOAD", 4)
    log_in(world, "ivan")
    limit_requests(world, 2)
    assert world.client.get(f"/searches/{searched}").status_code == 200
    answers = [world.client.get(f"/searches/{searched}/candidates/1/face.jpg").status_code for _ in range(9)]
    assert answers == [200] * 8 + [429]  # 2 page loads a minute x 4
    assert world.client.get(f"/searches/{searched}").status_code == 200  # page loads are counted apart
    assert picture_views(world, searched) == []


def test_a_picture_fetched_without_a_page_view_is_audited_and_counted_on_its_own(world, searched):
    log_in(world, "erin")
    limit_requests(world, 3)
    for number in range(3):
        assert world.client.get(f"/searches/{searched}/candidates/1.jpg").status_code == 200
    assert [(actor, action, details["rank"]) for actor, action, details in picture_views(world, searched)] == [
        ("erin", "candidate_image_viewed", 1)] * 3
    assert world.client.get(f"/searches/{searched}/candidates/1.jpg").status_code == 429
    assert len(picture_views(world, searched)) == 3  # refused before it was read or recorded
    log_in(world, "alma")  # a fetch refused (an auditor sees no photograph) counts too
    world.client.app.state.limiter = SlidingWindowLimiter()
    assert [world.client.get(f"/searches/{searched}/probe.jpg").status_code for _ in range(4)] == [403] * 3 + [429]
    log_in(world, "erin")
    # the API's pictures are audited one by one, after a page view too
    limit_requests(world, 1000)
    world.client.get(f"/reviews/{searched}")
    world.client.get(f"/api/v1/searches/{searched}/candidates/1/image", headers=world.as_user("erin"))
    assert picture_views(world, searched)[-1][:2] == ("erin", "candidate_image_viewed")
    assert len(picture_views(world, searched)) == 4


def test_the_full_photograph_is_a_page_of_its_own_covering_its_picture(world, searched):
    log_in(world, "ivan")
    page = world.client.get(f"/searches/{searched}/photos/1")
    assert page.status_code == 200
    assert CASE in page.text and "Candidate 1, subject B-1001" in page.text
    assert f'<img src="/searches/{searched}/candidates/1.jpg"' in page.text
    assert f'<a href="/searches/{searched}">Back to the search</a>' in page.text
    [view] = [e for e in trail(world, searched) if e["action"] == "search_viewed"]
    assert view["details"] == {"page": "photograph", "candidates": [{"rank": 1, "image_id": view["details"]["candidates"][0]["image_id"]}]}
    assert view["details"]["candidates"][0]["image_id"]
    assert world.client.get(f"/searches/{searched}/candidates/1.jpg").status_code == 200
    assert picture_views(world, searched) == []  # covered by the page
    assert world.client.get(f"/searches/{searched}/candidates/2.jpg").status_code == 200
    assert [view[:2] for view in picture_views(world, searched)] == [("ivan", "candidate_image_viewed")]  # not on it
    result = world.client.get(f"/searches/{searched}").text  # the result page's links lead to these pages
    assert f'href="/searches/{searched}/photos/probe"' in result and f'href="/searches/{searched}/photos/2"' in result

    log_in(world, "erin")
    probe = world.client.get(f"/searches/{searched}/photos/probe")
    assert "Probe: the full photograph" in probe.text and f'<img src="/searches/{searched}/probe.jpg"' in probe.text
    assert f'<a href="/reviews/{searched}">Back to the review</a>' in probe.text
    candidate = world.client.get(f"/searches/{searched}/photos/1").text  # blind to the algorithm: no rank, no subject
    assert "A candidate: the full photograph" in candidate and "B-1001" not in candidate and "Candidate 1" not in candidate
    sent_on = world.client.get(f"/searches/{searched}", follow_redirects=False)  # the ranked page: to the bench,
    assert (sent_on.status_code, sent_on.headers["location"]) == (303, f"/reviews/{searched}")  # no view recorded
    review = world.client.get(f"/reviews/{searched}").text  # the bench's links lead to these pages
    assert f'href="/searches/{searched}/photos/probe">full photograph</a>' in review
    assert re.search(rf'href="/searches/{searched}/photos/[12]">full photograph</a>', review)

    log_in(world, "alma")  # auditors see no photograph, on a page or not
    assert world.client.get(f"/searches/{searched}/photos/1").status_code == 403


def test_the_too_many_requests_page_says_so_once_and_not_as_a_success(world):
    log_in(world, "ivan")
    limit_requests(world, 1)
    assert world.client.get("/searches").status_code == 200
    refused = world.client.get("/searches")
    assert refused.status_code == 429
    assert refused.text.count("more than 1 requests in a minute") == 1
    assert 'class="flash"' not in refused.text and re.search(r'<div class="error" role="alert">\s*<p>more than 1 requests', refused.text)
