"""Issue 17, the High finding: a database administrator could cut or rewrite the audit trail unnoticed, because the
signed checkpoints lived in the same database as the entries. Every signed head now goes to a witness outside the
database (the file witness in ``audit.witness_dir``), and verification checks the database against the heads the
witnesses hold; an outside auditor does the same with ``verify_audit.py --heads``.

The tampering here is done as the database administrator would: SQL on the data directory's database, nothing
else (the signing key, the witness folder and facetrail's code are out of reach)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from facetrail.accountability import verify_audit
from facetrail.accountability.audit import KEY_FILE_ENV, AuditTrail
from facetrail.accountability.service import Facetrail
from facetrail.accountability.witness import FileWitness, WitnessRefused, WitnessUnavailable
from facetrail.cli import app
from facetrail.datadir import DataDir
from facetrail.errors import FacetrailError
from tests.fixtures.datadir import ADMIN_PASSWORD

ENTRIES = 250  # checkpoints at 100 and 200 (audit.checkpoint_every's default)
runner = CliRunner()


def build_trail(datadir: DataDir) -> str:
    """A data directory whose trail has 250 entries (checkpoints at 100 and 200) and an auditor, whose token it
    returns (snapshot builder, tests/fixtures/snapshots.py)."""
    with closing(Facetrail.initialise(datadir, "admin", ADMIN_PASSWORD)) as system:
        admin = system.auth.authenticate(system.auth.login("admin", ADMIN_PASSWORD)[1])
        system.admin.create_user(admin, "audrey", ADMIN_PASSWORD, ["auditor"], "Oversight")
        while system.audit.length() < ENTRIES:
            system.audit.append("ivan", "search.start", f"case-{system.audit.length()}", {"gallery": "county"})
        return system.auth.login("audrey", ADMIN_PASSWORD)[1]


@pytest.fixture
def trail_dir(datadir, snapshots, monkeypatch) -> Iterator[DataDir]:
    """A copy of ``build_trail``'s data directory (its signing key inside it), the auditor acting in the CLI."""
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    with snapshots.rebuilt(build_trail, datadir, monkeypatch) as token:
        monkeypatch.setenv("FACETRAIL_TOKEN", token)
        yield datadir


def _sql(datadir: DataDir, *statements: str) -> None:
    """What the database administrator does: SQL on the database, committed."""
    engine = create_engine(datadir.database_url(datadir.settings()))
    try:
        with engine.begin() as connection:
            for statement in statements:
                connection.execute(text(statement))
    finally:
        engine.dispose()


def _rewrite_actor(datadir: DataDir, seq: int, actor: str) -> None:
    """Edit entry ``seq``'s actor and recompute prev_hash and entry_hash of it and every later entry with the
    documented serialization, then delete every checkpoint: the chain is whole again, and nothing signed is left."""
    engine = create_engine(datadir.database_url(datadir.settings()))
    try:
        with engine.begin() as connection:
            prev_hash = connection.execute(text("SELECT entry_hash FROM audit_entries WHERE seq = :seq"),
                                           {"seq": seq - 1}).scalar_one()
            rows = connection.execute(text(
                "SELECT seq, recorded_at, actor, action, target, details, prev_hash FROM audit_entries "
                "WHERE seq >= :seq ORDER BY seq"), {"seq": seq}).mappings().all()
            for row in rows:
                fields = dict(row)
                if isinstance(fields["details"], str):  # SQLite keeps JSON as text
                    fields["details"] = json.loads(fields["details"])
                fields.update(prev_hash=prev_hash, actor=actor if fields["seq"] == seq else fields["actor"])
                entry_hash = hashlib.sha256(verify_audit.canonical_entry(**fields)).hexdigest()
                connection.execute(text(
                    "UPDATE audit_entries SET actor = :actor, prev_hash = :prev_hash, entry_hash = :entry_hash "
                    "WHERE seq = :seq"), {**fields, "entry_hash": entry_hash, "details": None})
                prev_hash = entry_hash
            connection.execute(text("DELETE FROM audit_checkpoints"))
    finally:
        engine.dispose()


def _witness(datadir: DataDir) -> FileWitness:
    return FileWitness(datadir.keys_dir / "witness")


def _key_id(datadir: DataDir) -> str:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key((datadir.keys_dir / "audit-signing-key.pem").read_bytes(), None)
    return verify_audit.public_key_id(key.public_key())


def _verify(datadir: DataDir):
    """``facetrail audit verify`` as the service and as the CLI: (the service's result, the CLI's exit and output)."""
    system = Facetrail.open(datadir)
    try:
        auditor = system.auth.authenticate(system.auth.login("audrey", ADMIN_PASSWORD)[1])
        result = system.oversight.verify_audit(auditor)
    finally:
        system.close()
    cli = runner.invoke(app, ["audit", "verify"])
    return result, cli.exit_code, " ".join(cli.output.split())


# --- the two database-only tamperings --------------------------------------------------------------------------------


def test_cutting_the_trail_and_its_checkpoints_in_the_database_is_caught_by_the_witness(trail_dir):
    _sql(trail_dir, "DELETE FROM audit_entries WHERE seq > 100", "DELETE FROM audit_checkpoints WHERE entry_count > 100")

    result, exit_code, output = _verify(trail_dir)
    assert not result.ok, "the cut trail verified"
    held = _witness(trail_dir).heads(_key_id(trail_dir))
    assert [head["entry_count"] for head in held] == [100, 200]
    witnessed = (f"the head of 200 entries signed at {held[1]['signed_at']} (hash {held[1]['head_hash']}) held by "
                 f"witness file {trail_dir.keys_dir / 'witness' / 'heads.jsonl'}")
    end = result.entries  # 100, and what was appended since (opening the system audits its retention purge)
    assert end < 110 and result.first_bad_seq == end + 1
    assert result.problem == (f"the trail ends at entry {end}, before {witnessed}: entries {end + 1} to 200 have been "
                              "removed")
    assert exit_code == 1 and re.search(  # the CLI's check reads the entries the service's check appended too
        rf"AUDIT TRAIL BROKEN at entry \d+: the trail ends at entry \d+, before {re.escape(witnessed)}: entries \d+ "
        "to 200 have been removed", output), output


def test_a_trail_grown_again_after_a_cut_is_refused_by_the_witness(trail_dir, caplog):
    """New entries after a cut reach a count the witness holds with another hash: it refuses the head, loudly."""
    _sql(trail_dir, "DELETE FROM audit_entries WHERE seq > 150", "DELETE FROM audit_checkpoints WHERE entry_count > 150")
    system = Facetrail.open(trail_dir)
    try:
        with caplog.at_level(logging.ERROR, logger="facetrail.audit"):
            while system.audit.length() < 200:
                system.audit.append("ivan", "search.start")  # the appends themselves go through
        assert system.audit.length() == 200
    finally:
        system.close()
    refusals = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert len(refusals) == 1 and "refused a signed head" in refusals[0], refusals
    assert "so it refuses another hash" in refusals[0] and "for 200 entries: the log was rewritten" in refusals[0]
    assert [h["entry_count"] for h in _witness(trail_dir).heads(_key_id(trail_dir))] == [100, 200]


def test_rewriting_an_entry_rehashing_the_chain_and_deleting_the_checkpoints_is_caught(trail_dir):
    _rewrite_actor(trail_dir, 3, "someone-else")

    result, exit_code, output = _verify(trail_dir)
    assert not result.ok, "the rewritten trail verified"
    held = _witness(trail_dir).heads(_key_id(trail_dir))
    assert (result.ok, result.first_bad_seq) == (False, 100)
    assert result.problem.startswith("entry 100's hash ")
    assert result.problem.endswith(
        f"differs from the head of 100 entries signed at {held[0]['signed_at']} (hash {held[0]['head_hash']}) held by "
        f"witness file {trail_dir.keys_dir / 'witness' / 'heads.jsonl'}: entries up to 100 were rewritten after the "
        "witness received the head")
    assert exit_code == 1 and result.problem in output, output


def test_deleting_checkpoints_alone_is_caught_without_any_witness(trail_dir):
    """Checkpoints are signed at every multiple of audit.checkpoint_every: one missing was deleted."""
    _sql(trail_dir, "DELETE FROM audit_checkpoints WHERE entry_count = 200")
    shutil.rmtree(trail_dir.keys_dir / "witness", ignore_errors=True)  # even with no witness heads at all

    result, exit_code, output = _verify(trail_dir)
    assert (result.ok, result.first_bad_seq) == (False, 200)
    assert result.problem == ("no checkpoint is signed for entries 101 to 200, though one is signed at least every "
                              "100 entries: checkpoints were deleted")
    assert exit_code == 1 and result.problem in output


def test_a_forged_head_at_the_witness_is_reported(trail_dir):
    heads = trail_dir.keys_dir / "witness" / "heads.jsonl"
    running = Facetrail.open(trail_dir)  # a server that has read the witness file already
    assert running.audit.verify().ok
    lines = heads.read_bytes().splitlines(keepends=True)
    forged = {**json.loads(lines[1]), "signed_at": "2020-01-01T00:00:00.000000+00:00"}
    heads.write_bytes(lines[0] + verify_audit.canonical_json(forged) + b"\n")
    try:
        seen = running.audit.verify()  # the file was edited in place: read again, not served from memory
    finally:
        running.close()

    result, exit_code, _ = _verify(trail_dir)
    assert seen.problem == result.problem
    assert (result.ok, result.first_bad_seq) == (False, 200)
    assert result.problem == (
        "the signature of the head of 200 entries signed at 2020-01-01T00:00:00.000000+00:00 (hash "
        f"{forged['head_hash']}) held by witness file {heads} does not verify: the head was forged or edited")


# --- the outside auditor's heads ------------------------------------------------------------------------------------


def _standalone(folder: Path, *heads: Path) -> subprocess.CompletedProcess:
    arguments = [sys.executable, str(folder / "verify_audit.py"), str(folder)]
    for path in heads:
        arguments += ["--heads", str(path)]
    return subprocess.run(arguments, capture_output=True, text=True, timeout=120)


def test_the_standalone_verifier_checks_an_export_against_heads_the_auditor_kept(trail_dir, tmp_path):
    system = Facetrail.open(trail_dir)
    try:
        system.audit.export(tmp_path / "first")
        kept = tmp_path / "kept-heads.jsonl"
        shutil.copy(tmp_path / "first" / "checkpoints.jsonl", kept)
        heads = verify_audit.read_checkpoints(kept)
        assert [head["entry_count"] for head in heads][:2] == [100, 200]  # and the export's own, of every entry
    finally:
        system.close()
    _sql(trail_dir, "DELETE FROM audit_entries WHERE seq > 120", "DELETE FROM audit_checkpoints WHERE entry_count > 120")
    system = Facetrail.open(trail_dir)
    try:
        cut = system.audit.export(tmp_path / "cut")
    finally:
        system.close()
    end = len((cut / "audit.jsonl").read_text().splitlines())
    alone = _standalone(cut)
    assert alone.returncode == 0, alone.stdout + alone.stderr  # on its own the cut export is consistent
    checked = _standalone(cut, kept)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert checked.stdout.strip() == (
        f"FAILED: the trail ends at entry {end}, before the head of 200 entries signed at {heads[1]['signed_at']} "
        f"(hash {heads[1]['head_hash']}) held by witness {kept}: entries {end + 1} to 200 have been removed")
    witness_copy = tmp_path / "witness-copy.jsonl"  # the agency's witness file, as an auditor may be given it
    shutil.copy(trail_dir.keys_dir / "witness" / "heads.jsonl", witness_copy)
    with_witness = _standalone(cut, witness_copy)
    assert with_witness.returncode == 1 and f"entries {end + 1} to 200 have been removed" in with_witness.stdout

    first = tmp_path / "first"
    entries = [json.loads(line) for line in (first / "audit.jsonl").read_text().splitlines()]
    entries[2]["actor"] = "someone-else"
    prev_hash = entries[1]["entry_hash"]
    for entry in entries[2:]:
        entry["prev_hash"] = prev_hash
        entry["entry_hash"] = prev_hash = hashlib.sha256(verify_audit.canonical_entry(
            *(entry[name] for name in verify_audit.ENTRY_FIELDS))).hexdigest()
    (first / "audit.jsonl").write_bytes(b"".join(verify_audit.canonical_json(e) + b"\n" for e in entries))
    (first / "checkpoints.jsonl").write_bytes(b"")
    assert _standalone(first).returncode == 0  # rewritten, and nothing signed left in the export to say so
    rewritten = _standalone(first, kept)
    assert rewritten.returncode == 1
    assert rewritten.stdout.startswith("FAILED: entry 100's hash ") and "were rewritten" in rewritten.stdout
    assert "--checkpoint-every 100" in (first / "README.txt").read_text()  # the agency's setting, for the auditor
    counted = subprocess.run([sys.executable, str(first / "verify_audit.py"), str(first), "--checkpoint-every", "100"],
                             capture_output=True, text=True, timeout=120)
    assert counted.returncode == 1 and counted.stdout.strip() == (
        "FAILED: no checkpoint is signed for entries 1 to 100, though one is signed at least every 100 entries: "
        "checkpoints were deleted")


# --- an unreachable witness -------------------------------------------------------------------------------------------


def test_an_unwritable_witness_blocks_no_append_and_the_gap_is_reported_then_filled(trail_dir, caplog):
    blocker = trail_dir.root / "witness-share"
    blocker.write_text("not a folder: the share is not mounted")
    config = trail_dir.config_path.read_text()
    assert 'witness_dir = ""' in config
    trail_dir.config_path.write_text(config.replace('witness_dir = ""', 'witness_dir = "witness-share/heads"'))
    system = Facetrail.open(trail_dir)
    try:
        with caplog.at_level(logging.WARNING, logger="facetrail.audit"):
            while system.audit.length() < 420:
                system.audit.append("ivan", "search.start", "case-x")
        assert system.audit.length() == 420  # every append went through
        assert any("witness-share/heads" in record.getMessage() and "later" in record.getMessage()
                   for record in caplog.records), [record.getMessage() for record in caplog.records]
        result = system.audit.verify()
        name = f"file {blocker / 'heads' / 'heads.jsonl'}"
        assert result.ok, result.problem
        assert result.unreachable[name].startswith(f"cannot read the witness file {blocker / 'heads' / 'heads.jsonl'}")
        verified = runner.invoke(app, ["audit", "verify"])  # entry 421 and a checkpoint of it, not witnessed either
        assert verified.exit_code == 0
        assert f"witness {name} could not be read: cannot read" in " ".join(verified.output.split()), verified.output

        blocker.unlink()  # the share is back, empty: it has every head to catch up on
        result = system.audit.verify()
        assert result.ok and result.unwitnessed == {name: (100, 200, 300, 400, 421)}
        assert result.notes() == [f"witness {name} does not yet hold the heads of 100, 200, 300, 400, 421 entries "
                                  "(signed but not yet delivered: a gap, not tampering)"]
        while system.audit.length() < 500:  # the next checkpoint pushes the missed ones first, in order
            system.audit.append("ivan", "search.start", "case-y")
        counts = [head["entry_count"] for head in FileWitness(blocker / "heads").heads(_key_id(trail_dir))]
        assert counts == [100, 200, 300, 400, 421, 500]
        result = system.audit.verify()
        assert result.ok and result.unwitnessed == {}
    finally:
        system.close()


def test_a_checkpoint_rolled_back_with_its_transaction_is_never_witnessed(trail_dir):
    system = Facetrail.open(trail_dir)
    try:
        with pytest.raises(RuntimeError), system.audit.transaction() as session:
            while system.audit.record(session, "ivan", "search.start").seq < 300:
                pass
            raise RuntimeError("the search failed after its entries were written")
        assert [h["entry_count"] for h in _witness(trail_dir).heads(_key_id(trail_dir))] == [100, 200]
        assert system.audit.verify().ok
    finally:
        system.close()


def test_a_crash_between_commit_and_push_leaves_a_gap_the_next_checkpoint_fills(trail_dir, monkeypatch):
    system = Facetrail.open(trail_dir)
    try:
        monkeypatch.setattr(system.audit, "publish", lambda **_: None)  # the process dies right after its commit
        while system.audit.length() < 300:
            system.audit.append("ivan", "search.start")
        monkeypatch.undo()
        assert system.audit.verify().unwitnessed == {_witness(trail_dir).name: (300,)}
        while system.audit.length() < 400:
            system.audit.append("ivan", "search.start")
        assert [h["entry_count"] for h in _witness(trail_dir).heads(_key_id(trail_dir))] == [100, 200, 300, 400]
    finally:
        system.close()


# --- checkpoints bounded in time ------------------------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


def test_a_checkpoint_is_signed_when_the_last_is_older_than_checkpoint_minutes(galleries_trail, monkeypatch):
    trail, witness = galleries_trail
    clock = _Clock()
    monkeypatch.setattr("facetrail.accountability.audit.utcnow", clock)
    for _ in range(3):
        trail.append("ivan", "search.start")
    assert trail.verify().checkpoints == 0  # 3 entries, nothing due yet
    clock.now += dt.timedelta(minutes=6)
    trail.append("ivan", "search.start")  # the first entry is 6 minutes unsigned: signed with this append
    assert [h["entry_count"] for h in witness.heads(trail.key_id())] == [4]
    trail.append("ivan", "search.start")
    clock.now += dt.timedelta(minutes=4)
    assert trail.checkpoint_if_due() is None  # the last checkpoint is 4 minutes old
    clock.now += dt.timedelta(minutes=2)
    trail.append("ivan", "search.start")
    assert [h["entry_count"] for h in witness.heads(trail.key_id())] == [4, 6]

    trail.append("ivan", "search.start")  # an idle server: nothing appended after entry 7
    clock.now += dt.timedelta(minutes=5, seconds=1)
    timer = trail.start_timer(interval=0.01)
    try:
        deadline = time.monotonic() + 10
        while len(witness.heads(trail.key_id())) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        timer.stop()
    assert not timer.is_alive()
    assert [h["entry_count"] for h in witness.heads(trail.key_id())] == [4, 6, 7]
    clock.now += dt.timedelta(minutes=10)
    assert trail.checkpoint_if_due() is None  # nothing new since entry 7 was signed
    assert trail.verify().ok


def test_an_idle_server_signs_and_witnesses_its_last_entries(trail_dir, monkeypatch):
    from fastapi.testclient import TestClient

    from facetrail.server import create_app

    clock = _Clock()
    monkeypatch.setattr("facetrail.accountability.audit.utcnow", clock)
    monkeypatch.setattr("facetrail.accountability.audit.TIMER_SECONDS", 0.01)
    witness = _witness(trail_dir)
    with TestClient(create_app(trail_dir)) as client:
        system = client.app.state.system
        length = system.audit.length()
        assert [h["entry_count"] for h in witness.heads(system.audit.key_id())] == [100, 200]
        clock.now += dt.timedelta(minutes=5)  # nobody appends: the server's timer signs the entries after 200
        deadline = time.monotonic() + 10
        while len(witness.heads(system.audit.key_id())) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [h["entry_count"] for h in witness.heads(system.audit.key_id())] == [100, 200, length]
    assert not [thread for thread in threading.enumerate() if thread.name == "facetrail-audit-checkpoints"]


@pytest.fixture
def galleries_trail(datadir, tmp_path, monkeypatch):
    from facetrail.gallery.gallery import Galleries

    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    galleries = Galleries.open(datadir)
    witness = FileWitness(tmp_path / "witness")
    yield AuditTrail(galleries.engine, galleries.sessions, datadir, checkpoint_every=100, checkpoint_minutes=5,
                     witnesses=[witness]), witness
    galleries.close()


# --- the file witness -----------------------------------------------------------------------------------------------


def _head(count: int, head_hash: str = "a" * 64, key_id: str = "b" * 64) -> dict:
    return {"entry_count": count, "head_hash": head_hash, "signed_at": f"2026-01-01T00:00:{count % 60:02d}.000000+00:00",
            "key_id": key_id, "signature": "c2lnbmVk"}


def test_the_file_witness_refuses_a_head_inconsistent_with_those_it_holds(tmp_path):
    witness = FileWitness(tmp_path / "witness")
    assert witness.submit(_head(100)) is None
    witness.submit(_head(100))  # the same head again: held once
    witness.submit({**_head(100), "signed_at": "2026-01-02T00:00:00.000000+00:00"})  # the same count and hash, later
    with pytest.raises(WitnessRefused, match="refuses another hash " + "d" * 64 + " for 100 entries: the log was rewritten"):
        witness.submit(_head(100, "d" * 64))
    witness.submit(_head(200))
    with pytest.raises(WitnessRefused, match="refuses a head of 150 entries: the log has shrunk"):
        witness.submit(_head(150))
    with pytest.raises(WitnessRefused, match="not a signed head"):
        witness.submit({"entry_count": 300})
    witness.submit(_head(50, key_id="e" * 64))  # another log's heads are its own
    assert [h["entry_count"] for h in witness.heads("b" * 64)] == [100, 200]
    assert FileWitness(tmp_path / "witness").heads("b" * 64) == [_head(100), _head(200)]  # as stored


def test_the_file_witness_survives_a_torn_last_line(tmp_path):
    witness = FileWitness(tmp_path / "witness")
    witness.submit(_head(100))
    path = tmp_path / "witness" / "heads.jsonl"
    with path.open("ab") as stream:
        stream.write(verify_audit.canonical_json(_head(200))[:40])  # the writer died mid-line
    assert FileWitness(tmp_path / "witness").heads("b" * 64) == [_head(100)]
    FileWitness(tmp_path / "witness").submit(_head(300))
    assert [json.loads(line)["entry_count"] for line in path.read_text().splitlines()] == [100, 300]
    path.write_bytes(path.read_bytes() + b"damaged\n")
    with pytest.raises(WitnessUnavailable, match="line 3 is not JSON"):
        FileWitness(tmp_path / "witness").heads("b" * 64)


WITNESS_WRITER = """
import sys
from pathlib import Path
from facetrail.accountability.witness import FileWitness
witness, key_id = FileWitness(Path(sys.argv[1])), sys.argv[2]
print("ready", flush=True)
sys.stdin.readline()
for count in range(1, 101):
    witness.submit({"entry_count": count, "head_hash": key_id[0] * 64, "signed_at": "t", "key_id": key_id,
                    "signature": "c2lnbmVk"})
"""


def test_two_processes_appending_to_one_witness_file_are_serialized(tmp_path):
    folder = tmp_path / "witness"
    writers = [subprocess.Popen([sys.executable, "-c", WITNESS_WRITER, str(folder), letter * 64], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for letter in "ab"]
    for process in writers:
        assert process.stdout.readline() == "ready\n", process.communicate()[1]
    for process in writers:
        process.stdin.write("go\n")
        process.stdin.flush()
    errors = [process.communicate(timeout=120)[1] for process in writers]
    assert [process.returncode for process in writers] == [0, 0], errors
    witness = FileWitness(folder)
    for letter in "ab":
        assert [h["entry_count"] for h in witness.heads(letter * 64)] == list(range(1, 101))
    assert len((folder / "heads.jsonl").read_bytes().splitlines()) == 200


def test_the_auditors_page_shows_a_witness_gap(world, tmp_path):
    """Checkpoints a witness lacks are a gap, not tampering: shown on the auditor's page, with the verdict intact."""
    from tests.fixtures.web import post_login
    from tests.fixtures.world import PASSWORD, V1

    system = world.system
    system.audit.checkpoint()
    late = FileWitness(tmp_path / "new-witness")  # a witness added after the trail began: it holds nothing yet
    system.audit.witnesses.append(late)
    signed = sorted({head["entry_count"] for head in _witness(system.datadir).heads(system.audit.key_id())})
    world.client.cookies.clear()
    assert post_login(world.client, {"username": "alma", "password": PASSWORD}).status_code == 200
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', world.client.get("/").text).group(1)
    page = " ".join(world.client.post("/oversight/audit/verify", data={"csrf_token": csrf}).text.split())
    gap = (f"Witness gap: witness {late.name} does not yet hold the heads of {', '.join(map(str, signed))} entries "
           "(signed but not yet delivered: a gap, not tampering)")
    assert "The audit trail is intact." in page and gap in page, page
    assert gap in " ".join(world.client.get("/oversight/audit").text.split())  # the last verification's, as audited
    assert [h["entry_count"] for h in late.heads(system.audit.key_id())][:len(signed)] == signed  # then caught up

    later = FileWitness(tmp_path / "newer-witness")  # the API reports the gap too
    system.audit.witnesses.append(later)
    held = sorted({head["entry_count"] for head in late.heads(system.audit.key_id())})
    answer = world.client.get(f"{V1}/audit/verify", headers=world.as_user("alma")).json()
    assert answer["ok"] is True and answer["unwitnessed"] == {later.name: held} and answer["unreachable"] == {}


@pytest.mark.parametrize("section, message", [
    ({"checkpoint_every": 0}, "audit.checkpoint_every: must be at least 1, got 0"),
    ({"checkpoint_minutes": 0}, "audit.checkpoint_minutes: must be more than 0, got 0.0"),
    ({"checkpoint_minutes": "5"}, "audit.checkpoint_minutes: expected float, got '5'"),
    ({"witness_urls": ["witness.example.org"]}, "audit.witness_urls: expected http(s)://host[:port]/..., got "
                                                "'witness.example.org'"),
    ({"witness_dir": 3}, "audit.witness_dir: expected str, got 3"),
])
def test_the_audit_settings_refuse_bad_values_by_name(section, message):
    from facetrail.config import settings_from_dict
    from facetrail.errors import ConfigError

    assert settings_from_dict({"audit": {"witness_dir": "/mnt/witness", "checkpoint_minutes": 1}}).audit.checkpoint_minutes == 1.0
    with pytest.raises(ConfigError) as refused:
        settings_from_dict({"audit": section}, source="config.toml")
    assert str(refused.value) == f"config.toml: {message}"


# --- restoring a backup: the restored trail is checked against the witnesses' heads ---------------------------------


def _backed_up(datadir: DataDir, folder: Path) -> None:
    system = Facetrail.open(datadir)
    try:
        system.admin.back_up(system.auth.authenticate(system.auth.login("admin", ADMIN_PASSWORD)[1]), folder)
    finally:
        system.close()


def _restore_target(datadir: DataDir, tmp_path: Path) -> DataDir:
    """A fresh directory holding the keys and, as an operator mounts its share there, the file witness's folder."""
    target = DataDir(tmp_path / "restored")
    shutil.copytree(datadir.keys_dir, target.keys_dir)
    return target


@pytest.mark.parametrize("datadir", ["sqlite"], indirect=True)
def test_a_backup_of_a_rewritten_trail_is_refused_by_the_witnessed_heads(trail_dir, tmp_path, monkeypatch):
    """Someone rewrote entry 3 (re-hashing the chain, deleting the checkpoints) before the backup was taken: the
    backup is honestly signed, its trail consistent in itself, but the witnessed heads disagree."""
    from facetrail.accountability.backup import restore

    _rewrite_actor(trail_dir, 3, "someone-else")
    _backed_up(trail_dir, tmp_path / "backup")
    target = _restore_target(trail_dir, tmp_path)
    monkeypatch.delenv("FACETRAIL_DATA", raising=False)
    with pytest.raises(FacetrailError, match=r"differs from the head of 100 entries .* held by witness file"):
        restore(tmp_path / "backup", target, accept_lost_entries=True)
    assert all(target.keys_dir in path.parents for path in target.root.rglob("*") if path.is_file())


@pytest.mark.parametrize("datadir", ["sqlite"], indirect=True)
def test_restoring_a_backup_older_than_the_witnessed_heads_loses_entries_only_when_accepted(
        trail_dir, tmp_path, monkeypatch):
    from facetrail.accountability.backup import restore

    _backed_up(trail_dir, tmp_path / "backup")  # at entry 252 or so
    system = Facetrail.open(trail_dir)
    try:
        while system.audit.length() < 320:  # entries signed (300) and witnessed after the backup
            system.audit.append("ivan", "search.start", f"case-{system.audit.length()}", {"gallery": "county"})
    finally:
        system.close()
    target = _restore_target(trail_dir, tmp_path)
    monkeypatch.delenv("FACETRAIL_DATA", raising=False)
    with pytest.raises(FacetrailError, match=r"loses audit entries .* entries 2\d\d to 300 have been removed"):
        restore(tmp_path / "backup", target)
    assert all(target.keys_dir in path.parents for path in target.root.rglob("*") if path.is_file())

    restore(tmp_path / "backup", target, accept_lost_entries=True)
    copy = Facetrail.open(target)
    try:
        [restored] = copy.audit.entries(action="restored")
        assert "entries" in restored["details"]["lost_entries"] and "300" in restored["details"]["lost_entries"]
        verification = copy.audit.verify()
        assert not verification.ok and "have been removed" in verification.problem  # the truth, from then on
    finally:
        copy.close()
