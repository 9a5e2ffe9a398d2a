"""Several server processes: ``facetrail serve --workers N`` over one PostgreSQL store keeps one linear audit chain,
and with ``index.backend = "milvus"`` they share one index on a Milvus server."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from facetrail.accountability.service import Facetrail
from facetrail.cli import app
from facetrail.gallery.enrol import uploaded
from tests.fixtures.images import jpeg
from tests.fixtures.milvus import IN_SERVER_GROUP, SERVER
from tests.fixtures.servers import start_server, stop
from tests.fixtures.world import SEARCH_FIELDS, create_confirmed

runner = CliRunner()
PASSWORD = "several workers password 1"
GRANTS = 40


@pytest.mark.parametrize("datadir", ["sqlite"], indirect=True)
def test_several_workers_are_refused_on_sqlite(datadir):
    result = runner.invoke(app, ["serve", "--workers", "2"])
    assert result.exit_code == 2
    assert "--workers 2 needs PostgreSQL" in result.output and "serve it with one worker" in result.output
    result = runner.invoke(app, ["serve", "--workers", "0"])
    assert result.exit_code == 2 and "--workers must be at least 1" in result.output


def call(url: str, method: str = "GET", body: dict | None = None, token: str = "",
         files: dict[str, tuple[str, bytes]] | None = None) -> tuple[int, bytes]:
    """One request on a connection of its own: a JSON ``body``, or ``body`` as form fields beside ``files`` (field:
    (file name, JPEG bytes)). Returns (status, body); status 0 when nothing listens."""
    data, content_type = json.dumps(body).encode() if body is not None else None, "application/json"
    if files is not None:
        data, content_type = multipart(body or {}, files)
    request = urllib.request.Request(url, method=method, data=data,
                                     headers={"Content-Type": content_type, "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:  # not listening yet
        return 0, b""


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body and its content type."""
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
             for name, value in fields.items()]
    parts += [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
              f"Content-Type: image/jpeg\r\n\r\n".encode() + content + b"\r\n"
              for name, (filename, content) in files.items()]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def set_up(datadir) -> Facetrail:
    """The first admin, a policy allowing 1000 requests a minute, and a gallery 'county'."""
    system = Facetrail.initialise(datadir, "admin", PASSWORD)
    admin = system.auth.authenticate(system.auth.login("admin", PASSWORD)[1])
    system.admin.load_policy(admin, system.admin.policy_in_force(admin)[1].replace(
        "requests_per_minute_per_user = 60", "requests_per_minute_per_user = 1000"))
    system.admin.create_gallery(admin, "county", ["booking"])
    return system


@contextmanager
def serving(datadir, log: Path) -> Iterator[str]:
    """``facetrail serve --workers 2`` over ``datadir``, both processes started; yields the API's base URL."""
    server, port = start_server(
        lambda port: [sys.executable, "-m", "facetrail", "serve", "--port", str(port), "--workers", "2", "--data",
                      str(datadir.root)],
        log, ready=lambda text: text.count("Application startup complete") >= 2)  # both processes
    try:
        yield f"http://127.0.0.1:{port}/api/v1"
    finally:
        stop(server, timeout=60)


def answered_by(log: Path, path_end: str) -> list[int]:
    """The process (pid) that answered each request whose path ends with ``path_end``, in order."""
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [line["pid"] for line in lines if line["path"].endswith(path_end)]


@pytest.mark.parametrize("datadir", ["postgresql"], indirect=True)
def test_two_server_processes_append_to_one_linear_audit_chain(datadir, tmp_path):
    system = set_up(datadir)
    token = system.auth.login("admin", PASSWORD)[1]
    system.close()

    with serving(datadir, tmp_path / "server.log") as base:
        assert call(f"{base}/health")[0] == 200
        with ThreadPoolExecutor(8) as pool:  # each request a connection of its own, taken by either process
            statuses = list(pool.map(
                lambda n: call(f"{base}/galleries/county/grants", "POST", {"unit": f"unit-{n}"}, token)[0],
                range(GRANTS)))
        assert statuses == [201] * GRANTS
    assert len(set(answered_by(tmp_path / "server.log", "/grants"))) == 2, "one process took every request"

    system = Facetrail.open(datadir, purge=False)
    try:
        entries = system.audit.entries()
        assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
        assert all(e["prev_hash"] == before["entry_hash"] for before, e in zip(entries, entries[1:]))  # no fork
        granted = sorted(e["details"]["unit"] for e in entries if e["action"] == "gallery_granted")
        assert granted == sorted(f"unit-{n}" for n in range(GRANTS))
        verified = system.audit.verify()
        assert verified.ok and verified.entries == len(entries), verified.problem
    finally:
        system.close()


JOB_READER = """
import json, sys
from pathlib import Path
from facetrail.web.jobs import EnrolmentJobs
jobs = EnrolmentJobs(Path(sys.argv[1]))
print(json.dumps({"one": jobs.get(int(sys.argv[2])), "all": jobs.all()}))
"""


@pytest.mark.parametrize("datadir", ["sqlite"], indirect=True)
def test_enrolment_jobs_are_seen_by_every_server_process(datadir, faces):
    from facetrail.web.jobs import ORPHANED, EnrolmentJobs

    system = Facetrail.initialise(datadir, "admin", PASSWORD)
    try:
        admin = system.auth.authenticate(system.auth.login("admin", PASSWORD)[1])
        system.admin.create_gallery(admin, "county", ["booking"])
        jobs = EnrolmentJobs(datadir.jobs_dir)
        files = [uploaded(name, faces[name].read_bytes(), subject, "booking")
                 for name, subject in (("obama.jpg", "B-1"), ("biden.jpg", "B-2"))]
        job = jobs.start(system, admin, "county", files)
        deadline = time.monotonic() + 60
        while jobs.get(job.id)["state"] == "running":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        here = jobs.get(job.id)
        assert here["state"] == "finished" and here["counts"]["enrolled"] == 2
    finally:
        system.close()

    def read_elsewhere(number: int) -> dict:
        done = subprocess.run([sys.executable, "-c", JOB_READER, str(datadir.jobs_dir), str(number)],
                              capture_output=True, text=True, timeout=60, check=True)
        return json.loads(done.stdout)

    elsewhere = read_elsewhere(job.id)
    assert elsewhere["one"] == here and elsewhere["all"] == [here]

    gone = subprocess.Popen([sys.executable, "-c", "pass"])  # a server process that has stopped
    gone.wait()
    (datadir.jobs_dir / "2.json").write_text(json.dumps({**here, "id": 2, "state": "running", "finished_at": None,
                                                         "pid": gone.pid}))
    orphan = read_elsewhere(2)["one"]
    assert (orphan["state"], orphan["error"]) == ("failed", ORPHANED)
    assert read_elsewhere(3)["one"] is None


@pytest.mark.parametrize("datadir,index_backend", [pytest.param("postgresql", SERVER, marks=IN_SERVER_GROUP)],
                         indirect=True)
def test_two_server_processes_share_one_milvus_index(datadir, index_backend, tmp_path, faces):
    """An enrolment through either process is found by searches through both; an expunged subject is found by
    neither afterwards; and neither keeps an index of its own."""
    system = set_up(datadir)
    admin = system.auth.authenticate(system.auth.login("admin", PASSWORD)[1])
    system.admin.grant_gallery(admin, "county", "RHD")
    create_confirmed(system, admin, "ivan", ["investigator"], "RHD", PASSWORD)
    tokens = {name: system.auth.login(name, PASSWORD)[1] for name in ("admin", "ivan")}
    system.close()
    log = tmp_path / "server.log"
    probe = {"probe": ("still.jpg", jpeg(faces["obama3.jpg"], 700))}

    def searched_by_both(base: str) -> list[list[str]]:
        """Search until each process has answered at least one search; the subjects each search found."""
        found, before = [], len(answered_by(log, "/searches"))
        while len(set(answered_by(log, "/searches")[before:])) < 2:
            assert len(found) < 20, "one process took every search"
            status, body = call(f"{base}/searches", "POST", SEARCH_FIELDS, tokens["ivan"], probe)
            assert status == 201, body
            found.append([c["subject_id"] for c in json.loads(body)["candidates"]])
        return found

    with serving(datadir, log) as base:
        for subject, name, height in (("B-1001", "obama.jpg", 400), ("B-2002", "biden.jpg", 640)):
            status, body = call(f"{base}/galleries/county/images", "POST", {"subject_id": subject, "source": "booking"},
                                tokens["admin"], {"image": (name, jpeg(faces[name], height))})
            assert status == 201, body
        assert all(subjects[0] == "B-1001" for subjects in searched_by_both(base))
        status, body = call(f"{base}/galleries/county/subjects/B-1001", "DELETE", token=tokens["admin"])
        assert status == 200 and json.loads(body)["index_entries"] == 1, body
        assert all(subjects == ["B-2002"] for subjects in searched_by_both(base))
    # each process searched (searched_by_both), so whichever enrolled, the other found its enrolment
    assert len(set(answered_by(log, "/searches"))) == 2
    assert not any(path.is_file() for path in datadir.index_dir.rglob("*")), "a process wrote an index of its own"
