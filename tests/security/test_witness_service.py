"""Issue 17, the High finding, the other office's side: a witness service (``facetrail witness serve``) run by another
office holds the signed heads of the audit trail, so a database administrator who cuts or rewrites the trail, deletes
its checkpoints and wipes the local file witness is still caught by ``facetrail audit verify``.

The witness runs as a real process on a free port with its own directory; the log is a real data directory whose
``audit.witness_urls`` names it. Heads are signed with real Ed25519 keys; nothing is stubbed.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import socket
import sqlite3
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from typer.testing import CliRunner

import facetrail
from facetrail.accountability.remote_witness import TIMEOUT_SECONDS, RemoteWitness
from facetrail.accountability.service import Facetrail
from facetrail.accountability.verify_audit import canonical_checkpoint, canonical_json, public_key_id
from facetrail.cli import app
from facetrail.errors import ConfigError, WitnessRefused, WitnessUnavailable
from tests.fixtures.datadir import ADMIN_PASSWORD
from tests.fixtures.servers import start_server, stop

runner = CliRunner()
SOURCE = Path(facetrail.__file__).resolve().parents[1]
"""The facetrail the tests import, which the witness process runs too."""


class Witness:
    """A ``facetrail witness serve`` process with its own directory (started again on the same port by ``start``)."""

    def __init__(self, tmp_path: Path, *options: str) -> None:
        self.directory = tmp_path / "witness-office"
        self.log = tmp_path / "witness.log"
        self.options = options
        self.port: int | None = None
        self.process = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = lambda port: [sys.executable, "-m", "facetrail", "witness", "serve", "--dir", str(self.directory),
                                "--port", str(port), *self.options]
        self.process, self.port = start_server(command, self.log, port=self.port,
                                               env={**os.environ, "PYTHONPATH": str(SOURCE)})

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            stop(self.process)

    def cli(self, *arguments: str):
        return runner.invoke(app, ["witness", *arguments, "--dir", str(self.directory)])

    def register(self, public_key: Ed25519PublicKey | Path, name: str = "County face search") -> None:
        if isinstance(public_key, Ed25519PublicKey):
            path = self.directory.parent / f"log-{public_key_id(public_key)[:8]}.pem"
            path.write_bytes(public_key.public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
            public_key = path
        result = self.cli("add-log", "--public-key", str(public_key), "--name", name)
        assert result.exit_code == 0, result.output

    def public_key(self) -> Ed25519PublicKey:
        """The witness's key as its operator hands it over: ``facetrail witness key``'s PEM."""
        result = self.cli("key")
        assert result.exit_code == 0, result.output
        pem = result.stdout[: result.stdout.index("-----END PUBLIC KEY-----") + 24]
        return serialization.load_pem_public_key(pem.encode())

    def heads(self, key_id: str) -> list[dict]:
        return call(f"{self.url}/witness/v1/logs/{key_id}/heads")[1]["heads"]


@pytest.fixture
def witness(tmp_path):
    office = Witness(tmp_path)
    office.start()
    yield office
    office.stop()


def call(url: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None) -> tuple[int, dict]:
    """(status, JSON answer) of a plain HTTP request."""
    request = urllib.request.Request(url, data=body, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def signed_head(key: Ed25519PrivateKey, entry_count: int, head_hash: str) -> dict:
    key_id = public_key_id(key.public_key())
    signed_at = f"2026-12-04T10:{entry_count % 60:02d}:00.000000+00:00"
    signature = key.sign(canonical_checkpoint(entry_count, head_hash, signed_at, key_id))
    return {"entry_count": entry_count, "head_hash": head_hash, "signed_at": signed_at, "key_id": key_id,
            "signature": base64.b64encode(signature).decode()}


def countersigned_by(receipt: dict, witness_key: Ed25519PublicKey) -> bool:
    """Whether ``receipt`` is the witness's Ed25519 signature over the canonical JSON of everything else in it."""
    payload = canonical_json({name: value for name, value in receipt.items() if name != "countersignature"})
    try:
        witness_key.verify(base64.b64decode(receipt["countersignature"]), payload)
    except InvalidSignature:
        return False
    return receipt["witness_key_id"] == public_key_id(witness_key)


# --- the witness's own checks ---------------------------------------------------------------------------------------


def test_the_witness_accepts_only_consistent_heads_signed_by_a_registered_log(tmp_path):
    office = Witness(tmp_path, "--rate-limit", "40")
    office.start()
    try:
        log_key, other_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
        office.register(log_key.public_key())
        remote = RemoteWitness(office.url)
        first = signed_head(log_key, 100, "a" * 64)

        receipt = remote.submit(first)
        assert {name: receipt[name] for name in first} == first
        witness_key_id = public_key_id(office.public_key())
        assert countersigned_by(receipt, office.public_key())
        assert RemoteWitness(f"{office.url}#key={witness_key_id}").submit(first) == receipt
        with pytest.raises(WitnessRefused, match=f"answers with key {witness_key_id}, not the pinned key 0{{64}}"):
            RemoteWitness(f"{office.url}#key={'0' * 64}").submit(first)
        with pytest.raises(ConfigError, match="audit.witness_urls: a witness URL is .* not 'http://127.0.0.1:1#key=3f'"):
            RemoteWitness("http://127.0.0.1:1#key=3f")
        assert call(f"{office.url}/witness/v1/heads", "POST", canonical_json(first)) == (200, receipt)  # the same

        forged = {**signed_head(log_key, 200, "b" * 64), "signature": signed_head(other_key, 200, "b" * 64)["signature"]}
        with pytest.raises(WitnessRefused, match="422 the signature of the head of 200 entries does not verify with "
                                                 "the key of the log County face search"):
            remote.submit(forged)
        with pytest.raises(WitnessUnavailable, match=f"404: no log with key id '{public_key_id(other_key.public_key())}"
                                                     "' is registered with this witness"):
            remote.submit(signed_head(other_key, 100, "a" * 64))  # not yet registered: pushed again later

        assert remote.submit(signed_head(log_key, 200, "b" * 64))["entry_count"] == 200
        with pytest.raises(WitnessRefused, match="409 .*so it refuses a head of 150 entries: the log has shrunk"):
            remote.submit(signed_head(log_key, 150, "c" * 64))
        with pytest.raises(WitnessRefused, match="409 .*so it refuses another hash d{64} for 200 entries: the log was "
                                                 "rewritten"):
            remote.submit(signed_head(log_key, 200, "d" * 64))
        assert [head["entry_count"] for head in office.heads(first["key_id"])] == [100, 200]

        assert call(f"{office.url}/witness/v1/heads", "POST", b'{"entry_count": 3,') == (
            400, {"error": {"type": "malformed_json", "message": "the request body is not JSON: Expecting property "
                                                                 "name enclosed in double quotes: line 1 column 19 (char 18)"}})
        status, answer = call(f"{office.url}/witness/v1/heads", "POST", canonical_json({**first, "entry_count": "100"}))
        assert (status, answer["error"]["type"]) == (400, "malformed_head")
        assert "entry_count must be a whole number" in answer["error"]["message"]
        status, answer = call(f"{office.url}/witness/v1/heads", "POST", b" " * 20_000)
        assert (status, answer["error"]["type"]) == (413, "payload_too_large")
        assert answer["error"]["message"] == "the request body exceeds the limit of 16,384 bytes"
        status, answer = call(f"{office.url}/witness/v1/logs/{'.' * 64}/heads")
        assert (status, answer["error"]["type"]) == (404, "unknown_log")

        statuses = [call(f"{office.url}/witness/v1/key")[0] for _ in range(40)]
        assert statuses[-1] == 429 and statuses.count(200) < 40
    finally:
        office.stop()
    logged = [json.loads(line) for line in office.log.read_text().splitlines() if line.startswith("{")]
    refusals = [(line["status"], line["reason"]) for line in logged if line["event"] == "refused"]
    assert refusals[:8] == [(422, "bad_signature"), (404, "unknown_log"), (409, "inconsistent_head"),
                            (409, "inconsistent_head"), (400, "malformed_json"), (400, "malformed_head"),
                            (413, "payload_too_large"), (404, "unknown_log")]
    assert refusals[-1] == (429, "rate_limited")


@pytest.mark.parametrize("datadir", ["sqlite"], indirect=True)
def test_a_log_is_registered_once_by_its_key_and_the_witness_keeps_a_directory_of_its_own(tmp_path, datadir):
    office = Witness(tmp_path)
    key = Ed25519PrivateKey.generate()
    office.register(key.public_key(), "County")
    again = office.cli("add-log", "--public-key", str(next(tmp_path.glob("log-*.pem"))))
    assert again.exit_code == 2
    assert f"the log with key id {public_key_id(key.public_key())} is already registered as 'County'" in again.output
    not_a_key = tmp_path / "not-a-key.pem"
    not_a_key.write_text("hello")
    refused = office.cli("add-log", "--public-key", str(not_a_key))
    assert refused.exit_code == 2 and f"{not_a_key} is not a PEM public key" in refused.output
    inside = runner.invoke(app, ["witness", "key", "--dir", str(datadir.root)])
    assert inside.exit_code == 2 and "is a facetrail data directory; a witness keeps a directory of its own" in inside.output
    assert oct((office.directory / "witness-key.pem").stat().st_mode & 0o777) == "0o600"
    listed = office.cli("logs", "--json")
    assert json.loads(listed.stdout)[0]["name"] == "County" and json.loads(listed.stdout)[0]["heads"] == 0


# --- a real log, its heads pushed through audit.witness_urls ---------------------------------------------------------


def _log_with_remote_witness(datadir, office: Witness, tmp_path: Path) -> str:
    """Initialise the data directory, register its audit key with the witness (from an export's
    audit-public-key.pem), and name the witness in ``audit.witness_urls``; returns the log's key id."""
    system = Facetrail.initialise(datadir, "admin", ADMIN_PASSWORD)
    admin = system.auth.authenticate(system.auth.login("admin", ADMIN_PASSWORD)[1])
    system.admin.create_user(admin, "audrey", ADMIN_PASSWORD, ["auditor"], "Oversight")
    exported = system.audit.export(tmp_path / "export")
    system.close()
    office.register(exported / "audit-public-key.pem")
    config = datadir.config_path.read_text()
    datadir.config_path.write_text(config.replace("witness_urls = []", f'witness_urls = ["{office.url}"]'))
    key = serialization.load_pem_public_key((exported / "audit-public-key.pem").read_bytes())
    return public_key_id(key)


def _append_until(datadir, count: int, server: bool = False) -> list[float]:
    """Append entries until the trail has ``count`` (in a server process, whose checkpoint timer runs, when
    ``server``); the seconds each append took."""
    system = Facetrail.open(datadir)
    timer = system.audit.start_timer() if server else None
    took = []
    try:
        while system.audit.length() < count:
            started = time.monotonic()
            system.audit.append("ivan", "search.start", f"case-{system.audit.length()}", {"gallery": "county"})
            took.append(time.monotonic() - started)
    finally:
        if timer is not None:
            timer.stop()
        system.close()
    return took


def _checkpoints(datadir) -> list[tuple[int, str]]:
    with sqlite3.connect(datadir.root / "facetrail.db") as database:
        return database.execute("SELECT entry_count, head_hash FROM audit_checkpoints ORDER BY entry_count").fetchall()


@pytest.mark.parametrize("datadir", ["sqlite"], indirect=True)
def test_the_log_pushes_its_heads_and_keeps_the_witness_s_countersignatures(datadir, witness, tmp_path):
    key_id = _log_with_remote_witness(datadir, witness, tmp_path)
    _append_until(datadir, 250)

    held = witness.heads(key_id)
    assert [(head["entry_count"], head["head_hash"]) for head in held] == _checkpoints(datadir)  # the export's too
    assert [head["entry_count"] for head in held][-2:] == [100, 200]
    receipts_file = datadir.keys_dir / "witness" / "receipts" / f"127.0.0.1_{witness.port}.jsonl"
    receipts = [json.loads(line) for line in receipts_file.read_text().splitlines()]
    assert [{name: r[name] for name in held[0]} for r in receipts] == held
    witness_key = witness.public_key()
    assert all(countersigned_by(receipt, witness_key) for receipt in receipts)


@pytest.mark.parametrize("datadir", ["sqlite"], indirect=True)
def test_a_witness_that_is_down_blocks_no_append_and_gets_the_missed_heads_when_back(datadir, witness, tmp_path):
    key_id = _log_with_remote_witness(datadir, witness, tmp_path)
    _append_until(datadir, 150)
    assert 100 in {head["entry_count"] for head in witness.heads(key_id)}

    witness.stop()
    took = _append_until(datadir, 350)  # checkpoints 200 and 300 signed while the witness is down
    assert len(took) == 200 and max(took) < 3, max(took)
    system = Facetrail.open(datadir)
    try:
        checked = system.audit.verify()
    finally:
        system.close()
    assert checked.ok and checked.unreachable[witness.url].startswith(f"the witness {witness.url} (GET /witness/v1/"
                                                                      f"logs/{key_id}/heads) cannot be reached")

    witness.start()  # on the same port
    _append_until(datadir, 450)
    held = [(head["entry_count"], head["head_hash"]) for head in witness.heads(key_id)]
    assert held == _checkpoints(datadir)
    assert [count for count, _ in held][-4:] == [100, 200, 300, 400]


@pytest.mark.parametrize("datadir", ["sqlite"], indirect=True)
def test_a_witness_that_never_answers_costs_only_the_checkpoint_s_append_the_timeout(datadir, tmp_path, caplog):
    with socket.socket() as silent:  # takes connections (the kernel's backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(WitnessUnavailable, match=f"the witness {url} .* cannot be reached: timed out"):
            RemoteWitness(url).submit(signed_head(Ed25519PrivateKey.generate(), 1, "a" * 64))
        assert time.monotonic() - started < TIMEOUT_SECONDS + 1

        Facetrail.initialise(datadir, "admin", ADMIN_PASSWORD).close()
        config = datadir.config_path.read_text()
        datadir.config_path.write_text(config.replace("witness_urls = []", f'witness_urls = ["{url}"]'))
        with caplog.at_level(logging.WARNING, logger="facetrail.audit"):
            took = _append_until(datadir, 120)
    assert max(took) < TIMEOUT_SECONDS + 1 and sum(took) < 2 * TIMEOUT_SECONDS + 10, (max(took), sum(took))
    assert any(f"audit witness {url} is unavailable" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("datadir", ["sqlite"], indirect=True)
def test_in_a_server_a_witness_that_never_answers_holds_up_no_request(datadir, caplog):
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        Facetrail.initialise(datadir, "admin", ADMIN_PASSWORD).close()
        config = datadir.config_path.read_text()
        datadir.config_path.write_text(config.replace("witness_urls = []", f'witness_urls = ["{url}"]'))
        with caplog.at_level(logging.WARNING, logger="facetrail.audit"):
            took = _append_until(datadir, 120, server=True)
    # the append that signed checkpoint 100 did not wait the remote witness's timeout: the timer thread did
    assert max(took) < TIMEOUT_SECONDS / 2, max(took)
    local = [json.loads(line)["entry_count"] for line in (datadir.keys_dir / "witness" / "heads.jsonl").open()]
    assert 100 in local  # the file witness was written before the append returned
    assert any(f"audit witness {url} is unavailable" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("datadir", ["sqlite"], indirect=True)
def test_the_dba_cutting_the_trail_is_caught_through_the_remote_witness_when_the_local_one_is_wiped(
        datadir, witness, tmp_path):
    key_id = _log_with_remote_witness(datadir, witness, tmp_path)
    system = Facetrail.open(datadir)
    token = system.auth.login("audrey", ADMIN_PASSWORD)[1]  # the auditor, logged in before the tampering
    system.close()
    _append_until(datadir, 250)
    head_200 = next(head for head in witness.heads(key_id) if head["entry_count"] == 200)

    with sqlite3.connect(datadir.root / "facetrail.db") as database:  # the database administrator
        database.execute("DELETE FROM audit_entries WHERE seq > 100")
        database.execute("DELETE FROM audit_checkpoints WHERE entry_count > 100")
    shutil.rmtree(datadir.keys_dir / "witness")  # and the local file witness with it

    system = Facetrail.open(datadir)
    try:
        result = system.oversight.verify_audit(system.auth.authenticate(token))
    finally:
        system.close()
    assert (result.ok, result.first_bad_seq) == (False, 101)
    assert result.problem == (
        f"the trail ends at entry 100, before the head of 200 entries signed at {head_200['signed_at']} (hash "
        f"{head_200['head_hash']}) held by witness {witness.url}: entries 101 to 200 have been removed")
    cli = runner.invoke(app, ["audit", "verify"], env={"FACETRAIL_TOKEN": token})
    assert cli.exit_code == 1  # the service's check appended entry 101 since
    assert (f"the trail ends at entry 101, before the head of 200 entries signed at {head_200['signed_at']}"
            in " ".join(cli.output.split())), cli.output
