"""The HTTP API under hostile or mistaken use: bad uploads, every error status in one JSON shape, CSRF on cookie
sessions, the per-user rate limit, what is logged, the health check and the settings."""

from __future__ import annotations

import json
import logging

import pytest
from fastapi.testclient import TestClient

from facetrail.server import create_app
from facetrail.http.deps import CSRF_COOKIE
from facetrail.http.ratelimit import SlidingWindowLimiter
from facetrail.http.settings import ApiSettings
from facetrail.datadir import DataDir
from facetrail.errors import ConfigError
from tests.fixtures.images import jpeg, png_claiming
from tests.fixtures.world import PASSWORD, SEARCH_FIELDS, UPLOAD_LIMIT, V1, World, auth


def error_of(response, status: int, kind: str) -> dict:
    """The error body, checked for the API's shape, status and type."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["type"] == kind and error["message"], error
    return error


@pytest.fixture
def searchable(people) -> World:
    """``people`` and an empty gallery 'county' that RHD may search."""
    admin = people.system.auth.authenticate(people.tokens["admin"])
    people.system.admin.create_gallery(admin, "county", ["booking"])
    people.system.admin.grant_gallery(admin, "county", "RHD")
    return people


def test_hostile_uploads(searchable, faces):
    client, headers = searchable.client, searchable.as_user("ivan")
    photo = jpeg(faces["obama.jpg"], 400)
    cases = [
        ("empty.jpg", b"", 415, "empty_image"),
        ("notes.jpg", b"this is a shopping list, not a photograph\n" * 20, 415, "unsupported_image"),
        ("cut.jpg", photo[: len(photo) // 2], 400, "corrupt_image"),
        ("huge.png", png_claiming(30000, 30000), 413, "image_too_large"),
    ]
    for name, data, status, kind in cases:
        error_of(client.post(f"{V1}/faces", headers=headers, files={"image": (name, data, "image/jpeg")}), status, kind)
        refused = client.post(f"{V1}/searches", headers=headers, files={"probe": (name, data, "image/jpeg")}, data=SEARCH_FIELDS)
        assert error_of(refused, status, "refused")["reason"]
    refusals = [e for e in searchable.system.audit.entries(limit=1000) if e["action"] == "search_refused"]
    assert len(refusals) == len(cases)  # each refused search is audited by the service

    oversized = b"\xff\xd8\xff" + bytes(UPLOAD_LIMIT)
    error_of(client.post(f"{V1}/faces", headers=headers, files={"image": ("big.jpg", oversized, "image/jpeg")}),
             413, "payload_too_large")
    streamed = client.post(f"{V1}/faces", headers={**headers, "Content-Type": "multipart/form-data; boundary=x"},
                           content=(bytes(64 * 1024) for _ in range(UPLOAD_LIMIT // (64 * 1024) + 2)))
    assert "content-length" not in streamed.request.headers
    error_of(streamed, 413, "payload_too_large")
    # an upload refused at the door never reaches the service, so it is not a search and is not audited
    client.post(f"{V1}/searches", headers=headers, files={"probe": ("big.jpg", oversized, "image/jpeg")}, data=SEARCH_FIELDS)
    assert len([e for e in searchable.system.audit.entries(limit=1000) if e["action"] == "search_refused"]) == len(cases)

    rejected = client.post(f"{V1}/galleries/county/images", headers=searchable.as_user("admin"),
                           files={"image": ("notes.jpg", cases[1][1], "image/jpeg")}, data={"subject_id": "B-1", "source": "booking"})
    assert "not a recognised image" in error_of(rejected, 422, "enrolment_rejected")["message"]


def test_every_error_status_has_the_same_shape(searchable, faces):
    client, ivan, admin = searchable.client, searchable.as_user("ivan"), searchable.as_user("admin")
    photo = ("probe.jpg", jpeg(faces["obama3.jpg"], 500), "image/jpeg")
    error_of(client.post(f"{V1}/faces", headers=ivan, files={"image": photo}, data={"face_box": "1,2"}), 400, "bad_request")
    assert "no verified lead" not in error_of(client.get(f"{V1}/auth/me"), 401, "authentication")["message"]
    error_of(client.get(f"{V1}/auth/me", headers=auth("ft_not-a-token")), 401, "authentication")
    error_of(client.post(f"{V1}/auth/login", json={"username": "admin", "password": "wrong password!"}), 401, "authentication")
    error_of(client.get(f"{V1}/users", headers=searchable.as_user("erin")), 403, "permission_denied")
    error_of(client.get(f"{V1}/galleries/nowhere", headers=ivan), 404, "not_found")
    error_of(client.get(f"{V1}/searches/999", headers=ivan), 404, "not_found")
    error_of(client.get(f"{V1}/no-such-thing", headers=ivan), 404, "not_found")
    error_of(client.delete(f"{V1}/auth/me", headers=ivan), 405, "method_not_allowed")
    error_of(client.post(f"{V1}/users", headers=admin, json={"username": "ivan", "password": PASSWORD, "roles": ["examiner"]}),
             409, "duplicate")
    error_of(client.post(f"{V1}/galleries/county/grants", headers=admin, json={"unit": "RHD"}), 409, "duplicate")
    refused = client.post(f"{V1}/searches", headers=ivan, files={"probe": photo}, data={**SEARCH_FIELDS, "gallery": "nowhere"})
    assert "nowhere" in error_of(refused, 404, "refused")["reason"]

    for response in (client.post(f"{V1}/auth/login", json={"username": "ivan\x00", "password": PASSWORD}),
                     client.post(f"{V1}/users/ivan%00/disable", headers=admin),
                     client.post(f"{V1}/searches", headers=ivan, files={"probe": photo}, data={**SEARCH_FIELDS, "note": "a\x00"})):
        assert "NUL" in error_of(response, 422, "validation")["message"]  # PostgreSQL cannot store them
    invalid = error_of(client.post(f"{V1}/users", headers=admin, json={"roles": ["wizard"]}), 422, "validation")
    assert {"body.username", "body.password", "body.roles.0"} <= {p["field"] for p in invalid["problems"]}
    error_of(client.post(f"{V1}/reviews/1/decisions", headers=searchable.as_user("erin"), json={"rank": 1, "decision": "yes"}),
             422, "validation")
    version = client.get(f"{V1}/policy", headers=admin).json()["version"]
    policy = error_of(client.put(f"{V1}/policy", headers=admin, content=b"[results]\nmax_candidates = 0\n[bogus\n"), 422, "policy")
    assert policy["problems"] and all(set(p) >= {"line", "message"} for p in policy["problems"])
    assert client.get(f"{V1}/policy", headers=admin).json()["version"] == version
    refused = client.post(f"{V1}/searches", headers=ivan, files={"probe": photo}, data={**SEARCH_FIELDS, "purpose": "curiosity"})
    assert "purpose" in error_of(refused, 422, "refused")["reason"]
    refused = client.post(f"{V1}/searches", headers=searchable.as_user("erin"), files={"probe": photo}, data=SEARCH_FIELDS)
    assert "search" in error_of(refused, 403, "refused")["reason"]
    actions = [e["action"] for e in searchable.system.audit.entries(limit=1000)]
    assert actions.count("search_refused") == 3 and "policy_refused" in actions and "login_failed" in actions


def test_rate_limit_per_user_from_the_policy(searchable):
    client, system = searchable.client, searchable.system
    admin = system.auth.authenticate(searchable.tokens["admin"])
    text = system.admin.policy_in_force(admin)[1].replace("requests_per_minute_per_user = 1000", "requests_per_minute_per_user = 3")
    assert client.put(f"{V1}/policy", headers=searchable.as_user("admin"), content=text.encode()).status_code == 200
    for _ in range(3):
        assert client.get(f"{V1}/auth/me", headers=searchable.as_user("ivan")).status_code == 200
    limited = client.get(f"{V1}/auth/me", headers=searchable.as_user("ivan"))
    assert "3 requests" in error_of(limited, 429, "rate_limited")["message"]
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert client.get(f"{V1}/auth/me", headers=searchable.as_user("erin")).status_code == 200  # per user


def test_sliding_window_limiter():
    now = [0.0]
    limiter = SlidingWindowLimiter(window=60, clock=lambda: now[0])
    assert limiter.hit("ivan", 2) == 0.0
    now[0] = 5.0
    assert limiter.hit("ivan", 2) == 0.0
    now[0] = 10.0
    assert limiter.hit("ivan", 2) == 50.0 and limiter.hit("erin", 2) == 0.0  # refused until the first request is 60 s old
    assert limiter.hit("ivan", 1) == 55.0  # under a lower limit, until only one request is left in the window
    now[0] = 60.5
    assert limiter.hit("ivan", 2) == 0.0


def test_cookie_sessions_need_the_csrf_header_and_bearer_requests_do_not(client, caplog):
    caplog.set_level(logging.INFO, logger="facetrail.api")
    login = client.post(f"{V1}/auth/login", json={"username": "admin", "password": PASSWORD})
    assert login.status_code == 200
    token, csrf = login.json()["token"], login.json()["csrf_token"]
    session_cookie, csrf_cookie = login.headers.get_list("set-cookie")
    assert all(flag in session_cookie.lower() for flag in ("httponly", "secure", "samesite=strict"))
    assert csrf_cookie.startswith(f"{CSRF_COOKIE}={csrf}") and "httponly" not in csrf_cookie.lower()
    assert client.get(f"{V1}/auth/me").json()["username"] == "admin"  # the cookie alone, on a safe method

    def new_user(name: str, headers: dict) -> int:
        return client.post(f"{V1}/users", headers=headers, json={"username": name, "password": PASSWORD, "roles": ["auditor"]}).status_code

    def cookies(csrf_value: str) -> None:
        client.cookies.clear()
        client.cookies.set("ft_session", token)
        client.cookies.set(CSRF_COOKIE, csrf_value)

    assert new_user("eve", {}) == 403
    assert new_user("eve", {"X-CSRF-Token": "guess"}) == 403
    cookies("planted")
    assert new_user("eve", {"X-CSRF-Token": "planted"}) == 403  # the token is bound to the session
    cookies(csrf)
    assert new_user("eve", {"X-CSRF-Token": csrf}) == 201
    client.cookies.clear()
    assert new_user("eric", auth(token)) == 201  # bearer requests need no CSRF token
    cookies(csrf)
    logout = client.post(f"{V1}/auth/logout", headers={"X-CSRF-Token": csrf})
    assert logout.status_code == 204
    assert all("max-age=0" in cookie.lower() for cookie in logout.headers.get_list("set-cookie"))  # both cleared
    cookies(csrf)
    assert error_of(client.get(f"{V1}/auth/me"), 401, "authentication")["message"] == "token revoked"

    lines = [json.loads(record.getMessage()) for record in caplog.records if record.name == "facetrail.api"]
    assert {"method": "GET", "path": f"{V1}/auth/me", "status": 200, "user": "admin"}.items() <= lines[1].items()
    assert all(isinstance(line["duration_ms"], float) for line in lines) and len(lines) == 9
    assert not any(secret in record.getMessage() for record in caplog.records for secret in (token, csrf, PASSWORD))


def test_health_check(client):
    health = client.get(f"{V1}/health")
    assert health.status_code == 200 and health.json() == {"status": "ok", "database": True, "audit_key": "not_created_yet"}
    assert {"x-content-type-options": "nosniff", "cache-control": "no-store", "x-frame-options": "DENY"}.items() <= health.headers.items()
    system = client.app.state.system
    system.audit.checkpoint()
    assert client.get(f"{V1}/health").json()["audit_key"] == "present"
    system.audit.key_path.unlink()
    missing = client.get(f"{V1}/health")
    assert missing.status_code == 503 and missing.json()["audit_key"] == "missing"


def test_settings_from_the_environment(tmp_path):
    settings = ApiSettings.from_env({"FACETRAIL_DATA": str(tmp_path), "FACETRAIL_API_MAX_UPLOAD_BYTES": "1024",
                                     "FACETRAIL_API_COOKIE_SECURE": "false", "FACETRAIL_API_ALLOWED_HOSTS": "api.example, 127.0.0.1"})
    assert (settings.data_dir, settings.max_upload_bytes, settings.cookie_secure) == (tmp_path, 1024, False)
    assert settings.allowed_hosts == ("api.example", "127.0.0.1") and settings.session_cookie == "ft_session"
    with pytest.raises(ConfigError, match="MAX_UPLOAD_BYTES"):
        ApiSettings.from_env({"FACETRAIL_API_MAX_UPLOAD_BYTES": "lots"})
    app = create_app(DataDir(tmp_path), settings.model_copy(update={"allowed_hosts": ("api.example", "*.agency.example")}))
    refused = TestClient(app, base_url="https://elsewhere.example").get(f"{V1}/health")
    assert refused.status_code == 400 and refused.json()["error"]["type"] == "invalid_host"
    assert "'elsewhere.example'" in refused.json()["error"]["message"]
    client = TestClient(app, base_url="https://api.example:8443")  # past the host check, an unknown path is a 404
    assert client.get(f"{V1}/nothing").status_code == 404
    assert client.get(f"{V1}/nothing", headers={"host": "search.agency.example"}).status_code == 404
    assert client.get(f"{V1}/nothing", headers={"host": "agency.example.evil"}).status_code == 400
    # by default the server answers only to this machine's names (a DNS-rebinding page's Host is refused)
    local = TestClient(create_app(DataDir(tmp_path), ApiSettings.from_env({"FACETRAIL_DATA": str(tmp_path)})),
                       base_url="http://127.0.0.1:8000")
    assert local.get(f"{V1}/nothing").status_code == 404
    assert local.get(f"{V1}/nothing", headers={"host": "localhost:8000"}).status_code == 404
    assert local.get(f"{V1}/nothing", headers={"host": "rebound.example"}).json()["error"]["type"] == "invalid_host"
