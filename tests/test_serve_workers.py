"""Several server processes: ``facetrail serve --workers N`` over one PostgreSQL store keeps one linear audit chain."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from typer.testing import CliRunner

from facetrail.accountability.service import Facetrail
from facetrail.cli import app
from facetrail.gallery.enrol import uploaded
from tests.fixtures.servers import start_server, stop

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


def call(url: str, method: str = "GET", body: dict | None = None, token: str = "") -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:  # not listening yet
        return 0, b""


@pytest.mark.parametrize("datadir", ["postgresql"], indirect=True)
def test_two_server_processes_append_to_one_linear_audit_chain(datadir, tmp_path):
    system = Facetrail.initialise(datadir, "admin", PASSWORD)
    admin = system.auth.authenticate(system.auth.login("admin", PASSWORD)[1])
    system.admin.load_policy(admin, system.admin.policy_in_force(admin)[1].replace(
        "requests_per_minute_per_user = 60", "requests_per_minute_per_user = 1000"))
    system.admin.create_gallery(admin, "county", ["booking"])
    token = system.auth.login("admin", PASSWORD)[1]
    system.close()

    server, port = start_server(
        lambda port: [sys.executable, "-m", "facetrail", "serve", "--port", str(port), "--workers", "2", "--data",
                      str(datadir.root)],
        tmp_path / "server.log", ready=lambda log: log.count("Application startup complete") >= 2)  # both processes
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        assert call(f"{base}/health")[0] == 200
        with ThreadPoolExecutor(8) as pool:  # each request a connection of its own, taken by either process
            statuses = list(pool.map(
                lambda n: call(f"{base}/galleries/county/grants", "POST", {"unit": f"unit-{n}"}, token)[0],
                range(GRANTS)))
        assert statuses == [201] * GRANTS
    finally:
        stop(server, timeout=60)
    lines = [json.loads(line) for line in (tmp_path / "server.log").read_text().splitlines() if line.startswith("{")]
    assert len({line["pid"] for line in lines if line["path"].endswith("/grants")}) == 2, "one process took every request"

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
