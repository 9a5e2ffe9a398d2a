"""The administrators' pages on the running application: accounts and roles, galleries and their grants, enrolment
jobs on real photographs, expungement and the policy; and that nobody else reaches them."""

from __future__ import annotations

import io
import re
import time

import pytest
from PIL import Image

from facetrail.errors import AuthenticationError
from tests.fixtures.images import jpeg
from tests.fixtures.web import post_login
from tests.fixtures.world import PASSWORD, World

ADMIN_PAGES = ("/admin/users", "/admin/galleries", "/admin/galleries/county", "/admin/galleries/county/duplicates",
               "/admin/jobs", "/admin/jobs/1", "/admin/jobs/1.json", "/admin/policy")
JOB_TIMEOUT_S = 180


def log_in(world: World, username: str, password: str = PASSWORD) -> None:
    response = post_login(world.client, {"username": username, "password": password})
    assert response.status_code == 200 and response.url.path == "/", response.text


def csrf(world: World, path: str = "/admin/users") -> str:
    """The session's CSRF token, from a page's form."""
    return re.search(r'name="csrf_token" value="([^"]+)"', world.client.get(path).text).group(1)


def accounts(world: World) -> dict[str, dict]:
    """Every account by username, as the service lists them."""
    admin = world.system.auth.authenticate(world.tokens["admin"])
    return {user["username"]: user for user in world.system.admin.list_users(admin)}


def test_admin_creates_an_account_that_can_log_in_and_manages_it(people):
    client = people.client
    log_in(people, "admin")
    token = csrf(people)
    new = {"csrf_token": token, "username": "nina", "display_name": "Nina Reyes", "unit": "RHD",
           "password": "a long enough password", "roles": ["investigator"]}
    created = client.post("/admin/users", data=new)
    assert created.status_code == 200 and created.url.path == "/admin/users"
    assert "wait for a second person" in created.text and "Nina Reyes" in created.text
    assert (accounts(people)["nina"]["roles"], accounts(people)["nina"]["pending_roles"]) == ([], ["investigator"])
    assert "waiting: investigator" in created.text
    own = client.post("/admin/users/nina/confirm", data={"csrf_token": token})  # the admin who asked: not a second person
    assert own.status_code == 403 and "asked for this change" in own.text
    sam = people.system.auth.authenticate(people.tokens["sam"])  # RHD's supervisor is one
    people.system.admin.confirm_roles(sam, "nina")
    assert (accounts(people)["nina"]["roles"], accounts(people)["nina"]["unit"]) == (["investigator"], "RHD")

    forbidden = client.post("/admin/users", data={**new, "username": "omar", "roles": ["investigator", "examiner"]})
    assert forbidden.status_code == 403 and "keeps these duties apart" in forbidden.text
    assert 'value="omar"' in forbidden.text and "a long enough password" not in forbidden.text
    duplicate = client.post("/admin/users", data=new)
    assert duplicate.status_code == 409 and "already exists" in duplicate.text

    changed = client.post("/admin/users/nina/roles", data={"csrf_token": token, "roles": ["auditor"]})
    assert changed.status_code == 200 and "The roles of nina are changed" in changed.text
    assert accounts(people)["nina"]["roles"] == ["auditor"]
    refused = client.post("/admin/users/nina/roles", data={"csrf_token": token, "roles": ["examiner", "auditor"]})
    assert refused.status_code == 403 and accounts(people)["nina"]["roles"] == ["auditor"]
    waiting = client.post("/admin/users/nina/roles", data={"csrf_token": token, "roles": ["examiner"]})
    assert "wait for a second person" in waiting.text and accounts(people)["nina"]["roles"] == ["auditor"]

    client.post("/admin/users/nina/active", data={"csrf_token": token, "active": "false"})
    assert accounts(people)["nina"]["active"] is False
    with pytest.raises(AuthenticationError):
        people.system.auth.login("nina", "a long enough password")
    client.post("/admin/users/nina/active", data={"csrf_token": token, "active": "true"})
    for _ in range(5):
        with pytest.raises(AuthenticationError):
            people.system.auth.login("nina", "the wrong password")
    assert accounts(people)["nina"]["locked"] is True
    assert "Unlock<span" in client.get("/admin/users").text
    unlocked = client.post("/admin/users/nina/unlock", data={"csrf_token": token})
    assert "nina is unlocked." in unlocked.text and accounts(people)["nina"]["locked"] is False

    log_in(people, "nina", "a long enough password")
    home = client.get("/")
    assert "nina" in home.text and "Review queue" not in home.text and "/admin/users" not in home.text


def test_nobody_but_an_admin_reaches_the_admin_pages(people):
    client = people.client
    for path in ADMIN_PAGES:
        anonymous = client.get(path, follow_redirects=False)
        assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login?"), path
    for username in ("ivan", "erin", "sam", "alma"):
        log_in(people, username)
        for path in ADMIN_PAGES:
            assert client.get(path).status_code == 403, (username, path)
        token = csrf(people, "/")
        posted = client.post("/admin/users", data={"csrf_token": token, "username": "intruder", "password": PASSWORD,
                                                   "roles": ["admin"]})
        assert posted.status_code == 403
        assert client.post("/admin/policy", data={"csrf_token": token, "text": "x = 1"}).status_code == 403
    assert "intruder" not in accounts(people)


def test_forms_without_the_csrf_token_are_refused(people):
    client = people.client
    log_in(people, "admin")
    fields = {"username": "nina", "password": "a long enough password", "roles": ["investigator"]}
    assert client.post("/admin/users", data=fields).status_code == 403
    assert client.post("/admin/users", data={**fields, "csrf_token": "0" * 64}).status_code == 403
    assert client.post("/admin/galleries", data={"name": "county", "allowed_sources": "booking"}).status_code == 403
    assert "nina" not in accounts(people)
    assert people.system.galleries.list() == []


def test_galleries_grants_enrolment_job_and_expungement(people, faces):
    client, system = people.client, people.system
    log_in(people, "admin")
    token = csrf(people, "/admin/galleries")
    created = client.post("/admin/galleries", data={"csrf_token": token, "name": "county", "description": "Bookings",
                                                    "allowed_sources": "booking, mugshot"})
    assert created.status_code == 200 and created.url.path == "/admin/galleries/county"
    assert "The gallery is created" in created.text
    assert system.galleries.get("county").info().allowed_sources == ["booking", "mugshot"]
    again = client.post("/admin/galleries", data={"csrf_token": token, "name": "county", "allowed_sources": "booking"})
    assert again.status_code == 409 and "already exists" in again.text

    for unit in ("RHD", "Vice"):
        client.post("/admin/galleries/county/grants", data={"csrf_token": token, "unit": unit})
    revoked = client.post("/admin/galleries/county/revocations", data={"csrf_token": token, "unit": "Vice"})
    assert "The grant is withdrawn." in revoked.text
    gallery_id = system.galleries.get("county").id
    assert [g["unit"] for g in system.users.grants(gallery_id)] == ["RHD"]
    listing = client.get("/admin/galleries").text
    assert "booking, mugshot" in listing and "RHD" in listing and "/admin/jobs" in listing

    photos = [("images", ("obama.jpg", jpeg(faces["obama.jpg"], 400), "image/jpeg")),
              ("images", ("biden.jpg", jpeg(faces["biden.jpg"], 500), "image/jpeg")),
              ("images", ("notes.txt", b"minutes of the meeting, not a photograph", "text/plain"))]
    manifest = "file,subject_id,capture_date\nobama.jpg,B-1001,2019-05-01\nbiden.jpg,B-2002,\nnotes.txt,B-3003,\n"
    started = client.post("/admin/galleries/county/enrolments",
                          files=[*photos, ("manifest", ("manifest.csv", manifest.encode(), "text/csv"))],
                          data={"csrf_token": token, "source": "booking"})
    assert started.status_code == 200 and re.fullmatch(r"/admin/jobs/\d+", started.url.path)
    assert "<progress" in started.text
    job_path = started.url.path
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while (job := client.get(job_path + ".json").json())["state"] == "running":
        assert time.monotonic() < deadline, job
        time.sleep(0.5)
    assert job["state"] == "finished" and (job["done"], job["total"]) == (3, 3)
    assert job["counts"] == {"enrolled": 2, "duplicate": 0, "rejected": 1, "previously-rejected": 0}
    rejected = next(o for o in job["outcomes"] if o["status"] == "rejected")
    assert (rejected["file"], rejected["subject_id"]) == ("notes.txt", "B-3003") and rejected["reason"]
    page = client.get(job_path).text
    assert "<progress" in page and "finished" in page and rejected["reason"] in page and "notes.txt" in page
    assert rejected["thumbnail"] is None and "no thumbnail: not readable as an image" in page  # text, not an image
    assert job_path in client.get("/admin/jobs").text
    info = system.galleries.get("county").info()
    assert (info.subjects, info.images, info.rejections) == (2, 2, 1)

    other_manifest = ("manifest", ("m.csv", b"file,subject_id\nx.jpg,B-9\n", "text/csv"))
    mismatch = client.post("/admin/galleries/county/enrolments", files=[photos[0], other_manifest],
                           data={"csrf_token": token, "source": "booking"})
    assert mismatch.status_code == 400 and "the manifest and the files differ" in mismatch.text
    one_subject = client.post("/admin/galleries/county/enrolments", files=[photos[0]],
                              data={"csrf_token": token, "subject_id": "B-1001", "source": "booking"})
    while (job := client.get(one_subject.url.path + ".json").json())["state"] == "running":
        assert time.monotonic() < deadline, job
        time.sleep(0.5)
    assert job["counts"]["duplicate"] == 1

    unconfirmed = client.post("/admin/galleries/county/expungements", data={"csrf_token": token, "subject_id": "B-2002"})
    assert unconfirmed.status_code == 400 and system.galleries.get("county").info().subjects == 2
    expunged = client.post("/admin/galleries/county/expungements",
                           data={"csrf_token": token, "subject_id": "B-2002", "confirm": "true"})
    assert expunged.status_code == 200 and "The subject is expunged" in expunged.text
    assert system.galleries.get("county").info().subjects == 1
    actions = [e["action"] for e in system.audit.entries(limit=1000)]
    assert actions.count("enrolment") == 2 and "subject_removed" in actions and "gallery_grant_revoked" in actions


def test_policy_page_refuses_an_invalid_policy_line_by_line_and_loads_a_valid_one(people):
    client, system = people.client, people.system
    admin = system.auth.authenticate(people.tokens["admin"])
    version, text = system.admin.policy_in_force(admin)
    log_in(people, "admin")
    page = client.get("/admin/policy")
    assert page.status_code == 200 and f"Version {version} in force" in page.text and "<pre" in page.text
    token = csrf(people, "/admin/policy")

    broken = text.replace("requests_per_minute_per_user = 1000", "requests_per_minute_per_user = 0\nno_such_rule = 1")
    refused = client.post("/admin/policy", data={"csrf_token": token, "text": broken})
    assert refused.status_code == 422 and "the one in force is unchanged" in refused.text
    problems = re.findall(r"<li>line (\d+): ([^<]+)</li>", refused.text)
    lines = broken.splitlines()
    assert len(problems) >= 2 and all(1 <= int(line) <= len(lines) for line, _ in problems)
    assert any("no_such_rule" in lines[int(line) - 1] for line, _ in problems)
    assert "no_such_rule = 1" in refused.text  # the text stays in the form to be corrected
    assert system.admin.policy_in_force(admin)[0] == version

    changed = text.replace("requests_per_minute_per_user = 1000", "requests_per_minute_per_user = 900")
    loaded = client.post("/admin/policy", data={"csrf_token": token, "text": changed.replace("\n", "\r\n")})
    assert loaded.status_code == 200 and f"Policy version {version + 1} is now in force." in loaded.text
    assert system.admin.policy_in_force(admin) == (version + 1, changed)
    same = client.post("/admin/policy", data={"csrf_token": token},
                       files={"policy_file": ("policy.toml", changed.encode(), "application/toml")})
    assert f"version {version + 1} stays in force" in same.text
    history = client.get("/admin/policy").text
    assert all(entry["sha256"] in history for entry in system.admin.policy_history(admin))


def test_policy_page_names_the_accounts_holding_roles_it_forbids_together(people):
    client, system = people.client, people.system
    admin = system.auth.authenticate(people.tokens["admin"])
    text = system.admin.policy_in_force(admin)[1]
    log_in(people, "admin")
    token = csrf(people, "/admin/policy")
    system.users.set_roles("sam", ["investigator", "supervisor"])  # given before a policy forbidding the pair
    loaded = client.post("/admin/policy", data={"csrf_token": token,
                                                "text": text.replace('    ["auditor", "admin"],\n',
                                                                     '    ["auditor", "admin"],\n    ["investigator", "supervisor"],\n')})
    assert loaded.status_code == 200 and "1 account(s) hold roles this policy forbids together" in loaded.text
    assert ("sam (investigator, supervisor): a user may not hold both &#39;investigator&#39; and &#39;supervisor&#39;"
            in loaded.text)


def test_a_jobs_rejected_photographs_are_kept_encrypted_as_thumbnails_that_only_admins_see(people, faces, monkeypatch):
    client, system = people.client, people.system
    log_in(people, "admin")
    token = csrf(people, "/admin/galleries")
    client.post("/admin/galleries", data={"csrf_token": token, "name": "county", "allowed_sources": "booking"})
    scenery = io.BytesIO()
    Image.linear_gradient("L").resize((400, 300)).convert("RGB").save(scenery, format="JPEG")
    photos = [("images", ("obama.jpg", jpeg(faces["obama.jpg"], 400), "image/jpeg")),
              ("images", ("scenery.jpg", scenery.getvalue(), "image/jpeg")),  # an image without a face
              ("images", ("broken.jpg", b"\xff\xd8\xff not really a JPEG", "image/jpeg"))]
    started = client.post("/admin/galleries/county/enrolments", files=photos,
                          data={"csrf_token": token, "subject_id": "B-1001", "source": "booking"})
    job = wait_for(client, started.url.path)
    outcome = {o["file"]: o for o in job["outcomes"]}
    assert [outcome[name]["status"] for name in ("obama.jpg", "scenery.jpg", "broken.jpg")] == ["enrolled", "rejected",
                                                                                                "rejected"]
    assert outcome["obama.jpg"]["thumbnail"] is None and outcome["broken.jpg"]["thumbnail"] is None
    key = outcome["scenery.jpg"]["thumbnail"]
    thumbnail_url = f"{started.url.path}/rejected/{key}.jpg"
    page = client.get(started.url.path).text
    assert f'src="{thumbnail_url}"' in page and "no thumbnail: not readable as an image" in page

    stored = list((system.datadir.jobs_dir / f"{job['id']}.rejected").glob("??/*"))
    assert len(stored) == 1 and not stored[0].read_bytes().startswith(b"\xff\xd8")  # encrypted at rest
    shown = client.get(thumbnail_url)
    assert shown.status_code == 200 and shown.headers["content-type"] == "image/jpeg"
    assert shown.headers["cache-control"] == "private, no-store"
    assert max(Image.open(io.BytesIO(shown.content)).size) <= 160
    assert client.get(f"{started.url.path}/rejected/{'0' * 64}.jpg").status_code == 404
    views = [e for e in system.audit.entries(limit=1000) if e["action"] == "rejected_photo_viewed"]
    assert [(e["actor"], e["target"], e["details"]) for e in views] == [("admin", "county", {"job": job["id"], "sha256": key})]
    assert [e["details"]["sha256"] for e in system.audit.entries(action="rejected_photo_kept")] == [key]

    for username in ("ivan", "erin", "sam", "alma"):
        log_in(people, username)
        assert client.get(thumbnail_url).status_code == 403, username
    assert len(system.audit.entries(action="rejected_photo_viewed")) == 1

    monkeypatch.setattr("facetrail.web.jobs.KEPT_JOBS", 0)  # the next job forgets this one, and its thumbnails
    log_in(people, "admin")
    wait_for(client, client.post("/admin/galleries/county/enrolments", files=photos[:1],
                                 data={"csrf_token": csrf(people, "/admin/galleries"), "subject_id": "B-1001",
                                       "source": "booking"}).url.path)
    assert not (system.datadir.jobs_dir / f"{job['id']}.rejected").exists()
    assert [e["details"] for e in system.audit.entries(action="rejected_photos_deleted")] == [{"job": job["id"], "thumbnails": 1}]
    assert client.get(thumbnail_url).status_code == 404


def wait_for(client, job_path: str) -> dict:
    """The enrolment job's snapshot once it has ended."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while (job := client.get(job_path + ".json").json())["state"] == "running":
        assert time.monotonic() < deadline, job
        time.sleep(0.5)
    return job
