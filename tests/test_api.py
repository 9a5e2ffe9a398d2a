"""The HTTP API on real photographs: which role may call which endpoint, the search flow end to end, and the
OpenAPI document. Hostile input, errors, CSRF and rate limits are in test_api_security.py."""

from __future__ import annotations

import importlib
import io
import pkgutil
import subprocess
import sys
import zipfile

from fastapi.routing import APIRoute

from facetrail.api import routes as routes_package
from facetrail.server import create_app
from facetrail.http.settings import ApiSettings
from facetrail.datadir import DataDir
from tests.fixtures.images import jpeg
from tests.fixtures.world import CASE, PASSWORD, SEARCH_FIELDS, V1, auth
from facetrail.accountability.requests import CaseRequest

ROLE_USERS = {"investigator": "ivan", "examiner": "erin", "supervisor": "sam", "auditor": "alma", "admin": "admin"}


# --- who may call what --------------------------------------------------------------------------------------------

ALL = frozenset(ROLE_USERS)
VIEWERS = frozenset({"investigator", "examiner", "supervisor"})
OVERSIGHT = frozenset({"auditor", "supervisor"})
ADMIN = frozenset({"admin"})


def matrix(photos: dict[str, bytes]) -> list[tuple[str, str, dict, frozenset[str]]]:
    """(method, path, request arguments, roles allowed) for every endpoint but login. {lead}, {disputed} and {pending}
    are searches by ivan with a verified lead, a disagreement and no decision yet; {override} is ivan's request that
    a supervisor approve a poor-quality probe. Rows run in order: the subject
    enrolled by one row is expunged by a later one."""
    probe = ("probe.jpg", photos["probe"], "image/jpeg")
    search_form = {"data": SEARCH_FIELDS, "files": {"probe": probe}}
    manifest = "file,subject_id,source\nb.jpg,B-5005,booking\nc.jpg,B-6006,booking\n"
    return [
        ("GET", "/health", {}, ALL),
        ("GET", "/auth/me", {}, ALL),
        ("POST", "/auth/logout", {"spare_token": True}, ALL),
        ("GET", "/users", {}, ADMIN),
        ("POST", "/users", {"json": {"username": "newbie", "password": PASSWORD, "roles": ["investigator"]}}, ADMIN),
        ("GET", "/users/role-requests", {}, frozenset({"admin", "supervisor"})),
        ("PUT", "/users/tina/roles", {"json": {"roles": ["supervisor"]}}, ADMIN),
        ("POST", "/users/tina/disable", {}, ADMIN),
        ("POST", "/users/tina/enable", {}, ADMIN),
        ("POST", "/users/tina/unlock", {}, ADMIN),
        ("GET", "/policy", {}, ALL),
        ("PUT", "/policy", {"policy_edit": True}, ADMIN),
        ("GET", "/policy/history", {}, frozenset({"admin", "auditor"})),
        ("GET", "/galleries", {}, ALL),
        ("POST", "/galleries", {"json": {"name": "city", "allowed_sources": ["booking"]}}, ADMIN),
        ("GET", "/galleries/county", {}, ALL),
        ("POST", "/galleries/county/grants", {"json": {"unit": "Narcotics"}}, ADMIN),
        ("DELETE", "/galleries/county/grants/Vice", {}, ADMIN),
        ("POST", "/galleries/county/calibrations", {"json": {"pairs": 1_000}}, ADMIN),
        # two templates, searched exactly: an admin is refused for the index's sake (400), the others for their role
        ("POST", "/galleries/county/index/retraining", {"json": {"force": True}, "refused": 400}, ADMIN),
        ("POST", "/galleries/county/images", {"data": {"subject_id": "B-4004", "source": "booking"},
                                              "files": {"image": ("a.jpg", photos["enrol"], "image/jpeg")}}, ADMIN),
        ("DELETE", "/galleries/county/subjects/B-4004", {}, ADMIN),
        ("GET", "/galleries/county/duplicates?max_distance=0.5", {}, ADMIN),
        ("POST", "/galleries/county/batches", {"data": {"manifest": manifest}, "files": [
            ("images", ("b.jpg", photos["batch1"], "image/jpeg")), ("images", ("c.jpg", photos["batch2"], "image/jpeg"))]}, ADMIN),
        ("POST", "/faces", {"files": {"image": probe}}, frozenset({"investigator"})),
        ("POST", "/searches", search_form, frozenset({"investigator"})),
        ("GET", "/searches?mine=true", {}, ALL),
        ("GET", "/searches/{lead}", {}, VIEWERS),
        ("GET", "/searches/{lead}/probe", {}, VIEWERS),
        ("GET", "/searches/{lead}/candidates/1/image", {}, VIEWERS),
        ("POST", "/comparisons", {"data": {k: v for k, v in SEARCH_FIELDS.items() if k != "gallery"},
                                  "files": {"first": probe, "second": ("second.jpg", photos["enrol"], "image/jpeg")}},
         frozenset({"investigator"})),
        ("POST", "/overrides", {"data": {**SEARCH_FIELDS, "case_number": "24-000456"},
                                "files": {"probe": ("poor.jpg", photos["poor"], "image/jpeg")}}, frozenset({"investigator"})),
        ("GET", "/overrides", {}, frozenset({"investigator", "supervisor"})),
        ("GET", "/overrides/{override}/probe", {}, frozenset({"investigator", "supervisor"})),
        ("POST", "/overrides/{override}/decision", {"json": {"approve": False, "notes": "get a sharper still"}},
         frozenset({"supervisor"})),
        ("GET", "/reviews/queue", {}, frozenset({"examiner"})),
        ("POST", "/reviews/{pending}/decisions", {"json": {"rank": 1, "decision": "not_a_match"}}, frozenset({"examiner"})),
        ("GET", "/reviews/disputes", {}, frozenset({"supervisor"})),
        ("POST", "/reviews/{disputed}/resolutions", {"json": {"rank": 1, "decision": "not_a_match", "notes": "ears differ"}},
         frozenset({"supervisor"})),
        ("GET", "/leads/{lead}", {}, VIEWERS),
        ("GET", "/reports?format=json", {}, OVERSIGHT),
        ("GET", "/audit/verify", {}, OVERSIGHT),
        ("GET", "/audit/entries?limit=5", {}, OVERSIGHT),
        ("GET", f"/cases/{CASE}", {}, OVERSIGHT),
        ("POST", "/audit/exports", {}, frozenset({"auditor"})),  # the whole trail: not for one unit's supervisor
    ]


def route_of(path: str) -> str:
    """The route template a matrix path exercises: '/searches/{lead}/probe' -> '/api/v1/searches/{search_id}/probe'."""
    parts = [part for part in path.split("?")[0].split("/") if part]
    named = {"searches": "search_id", "reviews": "search_id", "leads": "search_id", "users": "username", "galleries": "name",
             "grants": "unit", "subjects": "subject_id", "candidates": "rank", "overrides": "request_id",
             "cases": "case_number"}
    fixed = {"queue", "disputes", "me", "logout", "history", "verify", "entries", "exports", "role-requests"}
    for i in range(1, len(parts)):
        if parts[i - 1] in named and parts[i] not in fixed:
            parts[i] = "{" + named[parts[i - 1]] + "}"
    return V1 + "/" + "/".join(parts)


def test_every_endpoint_by_every_role(world, faces):
    """Each endpoint, called by one user of each role and without credentials: allowed roles get 2xx, the others 403
    (the JSON error shape), anonymous callers 401 (the health check excepted)."""
    system, admin = world.system, world.system.auth.authenticate(world.tokens["admin"])
    ivan, erin, ezra = (system.auth.authenticate(world.tokens[name]) for name in ("ivan", "erin", "ezra"))
    probe = jpeg(faces["obama3.jpg"], 700)
    ids = {key: system.searches.search(ivan, probe, CaseRequest(**SEARCH_FIELDS)).search_id for key in ("lead", "disputed", "pending")}
    for examiner in (erin, ezra):
        system.reviews.decide(examiner, ids["lead"], 1, "possible_lead")
    for candidate in system.reviews.show_search(erin, ids["lead"])["candidates"]:  # erin is done: she reads the lead report
        if candidate["rank"] != 1:
            system.reviews.decide(erin, ids["lead"], candidate["rank"], "not_a_match")
    system.reviews.decide(erin, ids["disputed"], 1, "possible_lead")
    system.reviews.decide(ezra, ids["disputed"], 1, "not_a_match")
    photos = {"probe": probe, "enrol": jpeg(faces["obama.jpg"], 520), "batch1": jpeg(faces["biden.jpg"], 500),
              "batch2": jpeg(faces["obama2.jpg"], 450), "poor": jpeg(faces["obama3.jpg"], 700, rotate=40)}
    ids["override"] = system.overrides.request_override(ivan, photos["poor"], CaseRequest(**SEARCH_FIELDS))
    spare = {role: system.auth.login(user, PASSWORD)[1] for role, user in ROLE_USERS.items()}
    policy_text = system.admin.policy_in_force(admin)[1] + "\n# edited over the API\n"
    mismatches = []
    for method, path, arguments, allowed in matrix(photos):
        arguments = dict(arguments)
        uses_spare = arguments.pop("spare_token", False)
        refused = arguments.pop("refused", "2xx")
        if arguments.pop("policy_edit", False):
            arguments["content"] = policy_text.encode()
        url = V1 + path.format(**ids)
        for role in [*ROLE_USERS, None]:
            token = None if role is None else spare[role] if uses_spare else world.tokens[ROLE_USERS[role]]
            response = world.client.request(method, url, headers=auth(token) if token else {}, **arguments)
            if role is None:
                expected = "2xx" if path == "/health" else 401
            else:
                expected = refused if role in allowed else 403
            got = "2xx" if 200 <= response.status_code < 300 else response.status_code
            if got != expected:
                mismatches.append(f"{method} {path} as {role}: expected {expected}, got {response.status_code} {response.text[:300]}")
            elif expected in (401, 403):
                error = response.json()["error"]
                assert set(error) >= {"type", "message"} and error["type"] in {"authentication", "permission_denied", "refused"}
    assert not mismatches, "\n".join(mismatches)
    assert system.audit.verify().ok


# --- the search flow ----------------------------------------------------------------------------------------------


def test_search_review_lead_report_and_audit_over_http(world, faces, tmp_path):
    client = world.client
    probe = ("still.jpg", jpeg(faces["obama3.jpg"], 700), "image/jpeg")
    found = client.post(f"{V1}/faces", headers=world.as_user("ivan"), files={"image": probe})
    assert found.status_code == 200 and len(found.json()["faces"]) == 1
    box = ",".join(map(str, found.json()["faces"][0]["box"]))
    response = client.post(f"{V1}/searches", headers=world.as_user("ivan"), files={"probe": probe},
                           data={**SEARCH_FIELDS, "face_box": box})
    assert response.status_code == 201, response.text
    result = response.json()
    assert result["candidates"][0]["subject_id"] == "B-1001" and "not identifications" in result["notice"]
    search_id = result["search_id"]
    refused = client.post(f"{V1}/searches", headers=world.as_user("ivan"), files={"probe": probe},
                          data={**SEARCH_FIELDS, "case_number": "7"})
    assert refused.status_code == 422 and refused.json()["error"]["type"] == "refused"
    assert "case number" in refused.json()["error"]["reason"]

    for examiner, expected in (("erin", "pending_review"), ("ezra", "lead")):
        headers = world.as_user(examiner)
        assert [q["search_id"] for q in client.get(f"{V1}/reviews/queue", headers=headers).json()] == [search_id]
        shown = client.get(f"{V1}/searches/{search_id}", headers=headers).json()
        assert 1 in [c["rank"] for c in shown["candidates"]]  # the candidate decided on is shown, so the next line checks it
        assert shown["outcome"] is None and all(c["decisions"] == [] for c in shown["candidates"])  # blind review
        assert shown["blind_to_algorithm"] and all(  # and blind to the algorithm until deciding
            c["withheld"] and c["label"] and (c["subject_id"], c["image_id"], c["distance"], c["false_match_rate"]) == (None,) * 4
            for c in shown["candidates"])
        image = client.get(f"{V1}/searches/{search_id}/candidates/1/image", headers=headers)
        assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
        decided = client.post(f"{V1}/reviews/{search_id}/decisions", headers=headers,
                              json={"rank": 1, "decision": "possible_lead", "notes": "same ear shape"})
        assert decided.status_code == 201 and decided.json()["outcome"] == expected
        after = client.get(f"{V1}/searches/{search_id}", headers=headers).json()["candidates"]
        assert [(c["subject_id"], c["distance"] > 0, c["withheld"]) for c in after if c["rank"] == 1] == [("B-1001", True, False)]
    again = client.post(f"{V1}/reviews/{search_id}/decisions", headers=world.as_user("erin"),
                        json={"rank": 1, "decision": "not_a_match"})
    assert again.status_code == 409 and again.json()["error"]["type"] == "duplicate"

    for path in ("", "/probe", "/candidates/1/image"):  # another unit's investigator sees none of it, not even that it exists
        assert client.get(f"{V1}/searches/{search_id}{path}", headers=world.as_user("tina")).status_code == 404
    assert client.get(f"{V1}/leads/{search_id}", headers=world.as_user("tina")).status_code == 404
    assert client.get(f"{V1}/searches?mine=true", headers=world.as_user("tina")).json() == []
    mine = client.get(f"{V1}/searches?mine=true", headers=world.as_user("ivan")).json()
    assert [(s["search_id"], s["status"], s["outcome"]) for s in mine][-1] == (search_id, "completed", "lead")
    assert mine[0]["status"] == "refused" and "case number" in mine[0]["refusal_reason"]
    lead = client.get(f"{V1}/leads/{search_id}", headers=world.as_user("ivan"))
    assert lead.status_code == 200 and lead.headers["content-type"].startswith("text/html")
    assert "not probable cause" in lead.text and CASE in lead.text and "default-src 'none'" in lead.headers["content-security-policy"]

    report = client.get(f"{V1}/reports", params={"since": "2009-01-01", "format": "json"}, headers=world.as_user("alma")).json()
    assert (report["totals"]["searches"], report["totals"]["refused"], report["totals"]["lead"]) == (2, 1, 1)
    csv_report = client.get(f"{V1}/reports", params={"format": "csv", "by": "outcome"}, headers=world.as_user("alma"))
    assert csv_report.headers["content-type"].startswith("text/csv") and "lead" in csv_report.text
    assert client.get(f"{V1}/audit/verify", headers=world.as_user("alma")).json()["ok"] is True
    exported = client.post(f"{V1}/audit/exports", headers=world.as_user("alma"))
    assert exported.status_code == 200 and exported.headers["content-type"] == "application/zip"
    zipfile.ZipFile(io.BytesIO(exported.content)).extractall(tmp_path / "export")
    verified = subprocess.run([sys.executable, "verify_audit.py"], cwd=tmp_path / "export", capture_output=True, text=True)
    assert verified.returncode == 0 and "OK" in verified.stdout
    actions = {e["action"] for e in client.get(f"{V1}/audit/entries", params={"limit": 1000}, headers=world.as_user("alma")).json()}
    assert {"search", "search_refused", "search_viewed", "candidate_image_viewed", "review_decision", "lead_exported",
            "report_generated", "audit_verified", "audit_exported"} <= actions


def test_enrolment_over_http(people, faces):
    client, headers = people.client, people.as_user("admin")
    admin = people.system.auth.authenticate(people.tokens["admin"])
    people.system.admin.create_gallery(admin, "county", ["booking"])
    photo = ("front.jpg", jpeg(faces["obama.jpg"], 400), "image/jpeg")
    form = {"subject_id": "B-1001", "source": "booking", "capture_date": "2019-05-01"}
    first = client.post(f"{V1}/galleries/county/images", headers=headers, files={"image": photo}, data=form)
    assert first.status_code == 201 and first.json()["status"] == "enrolled" and first.json()["file"] == "front.jpg"
    again = client.post(f"{V1}/galleries/county/images", headers=headers, files={"image": photo}, data=form)
    assert again.status_code == 200 and again.json()["status"] == "duplicate"

    manifest = "file,subject_id,booking_no\nbiden.jpg,B-2002,77\nnotes.jpg,B-3003,78\n"
    files = [("images", ("biden.jpg", jpeg(faces["biden.jpg"], 500), "image/jpeg")),
             ("images", ("../../notes.jpg", b"not a photograph", "image/jpeg"))]
    batch = client.post(f"{V1}/galleries/county/batches", headers=headers, files=files,
                        data={"manifest": manifest, "source": "booking"})
    assert batch.status_code == 200, batch.text
    body = batch.json()
    assert (body["items"], body["enrolled"], body["rejected"], body["previously-rejected"]) == (2, 1, 1, 0)
    assert [(o["file"], o["subject_id"], o["status"]) for o in body["outcomes"]] == [
        ("biden.jpg", "B-2002", "enrolled"), ("notes.jpg", "B-3003", "rejected")]
    mismatch = client.post(f"{V1}/galleries/county/batches", headers=headers, files=files[:1],
                           data={"manifest": manifest, "source": "booking"})
    assert mismatch.status_code == 400 and "no file uploaded for notes.jpg" in mismatch.json()["error"]["message"]

    shown = client.get(f"{V1}/galleries/county", headers=people.as_user("ivan")).json()
    assert (shown["subjects"], shown["images"], shown["rejections"]) == (2, 2, 1)
    removed = client.delete(f"{V1}/galleries/county/subjects/B-2002", headers=headers)
    assert removed.status_code == 200 and (removed.json()["images"], removed.json()["image_files"]) == (1, 1)
    actions = [e["action"] for e in people.system.audit.entries(limit=1000)]
    assert actions.count("enrolment") == 3 and "subject_removed" in actions


# --- the OpenAPI document -----------------------------------------------------------------------------------------


def test_openapi_describes_every_route_and_the_matrix_covers_them(tmp_path):
    document = create_app(DataDir(tmp_path / "unused"), ApiSettings()).openapi()
    modules = [importlib.import_module(f"{routes_package.__name__}.{info.name}") for info in pkgutil.iter_modules(routes_package.__path__)]
    routes = {(method, V1 + route.path_format) for module in modules for route in module.router.routes
              if isinstance(route, APIRoute) for method in route.methods}
    documented = {(method.upper(), path) for path, operations in document["paths"].items() for method in operations}
    assert routes == documented and len(routes) == 47
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert operation.get("summary") and operation.get("tags") and operation.get("description"), (method, path)
            assert any(code.startswith("2") for code in operation["responses"]), (method, path)
            if path not in (f"{V1}/auth/login", f"{V1}/health"):
                assert {"HTTPBearer": []} in operation["security"] and "401" in operation["responses"], (method, path)
    assert {"HTTPBearer", "SessionCookie"} <= set(document["components"]["securitySchemes"])
    assert "ErrorResponse" in document["components"]["schemas"]
    tested = {(method, route_of(path)) for method, path, _, _ in matrix(dict.fromkeys(("probe", "enrol", "batch1", "batch2", "poor"), b""))}
    # login is exercised in test_api_security.py; confirming roles, whose answer depends on who asked for them and
    # who created whom, in tests/security/test_accounts_and_logins.py
    assert routes - tested == {("POST", f"{V1}/auth/login"), ("POST", f"{V1}/users/{{username}}/roles/confirm")}
