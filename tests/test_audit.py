"""The tamper-evident audit trail: chain, checkpoints, tampering of every kind, export and its standalone verifier,
concurrent appends from several processes, and where the signing key lives. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import ast
import hashlib
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import delete, inspect, select, text, update

from facetrail.accountability import verify_audit
from facetrail.accountability.audit import KEY_FILE_ENV, AuditTrail, canonical_entry
from facetrail.accountability.schema import AuditCheckpointRecord, AuditEntryRecord
from facetrail.errors import AuditError
from facetrail.gallery.gallery import Galleries

ENTRIES = 25
EVERY = 10  # checkpoints at 10 and 20


@pytest.fixture
def galleries(datadir, monkeypatch):
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    galleries = Galleries.open(datadir)
    yield galleries
    galleries.close()


@pytest.fixture
def trail(galleries, datadir) -> AuditTrail:
    return AuditTrail(galleries.engine, galleries.sessions, datadir, checkpoint_every=EVERY)


@pytest.fixture
def filled(trail) -> AuditTrail:
    """A trail of 25 entries with checkpoints at 10 and 20, verified intact."""
    for i in range(1, ENTRIES + 1):
        trail.append(f"user{i % 3}", "search.start", f"case-{i}", {"gallery": "mugshots", "version": i, "score": 0.25})
    assert trail.verify().ok
    return trail


def _entry(trail: AuditTrail, seq: int) -> dict:
    return trail.entries(since_seq=seq - 1, limit=1)[0]


def _rehash(entry: dict) -> str:
    fields = {name: entry[name] for name in verify_audit.ENTRY_FIELDS}
    return hashlib.sha256(canonical_entry(**fields)).hexdigest()


# --- the chain ----------------------------------------------------------------------------------------------------


def test_entries_form_a_verifiable_chain_with_checkpoints(filled):
    entries = filled.entries()
    assert [e["seq"] for e in entries] == list(range(1, ENTRIES + 1))
    assert entries[0]["prev_hash"] == "0" * 64
    for before, after in zip(entries, entries[1:]):
        assert after["prev_hash"] == before["entry_hash"]
    for entry in entries:
        assert entry["entry_hash"] == _rehash(entry)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", entry["recorded_at"])
    assert entries[6]["details"] == {"gallery": "mugshots", "version": 7, "score": 0.25}
    result = filled.verify()
    assert result == verify_audit.AuditVerification(ok=True, entries=25, checkpoints=2, first_bad_seq=None, problem="")

    with filled.sessions() as session:
        counts = session.scalars(select(AuditCheckpointRecord.entry_count).order_by(AuditCheckpointRecord.id)).all()
    assert counts == [10, 20]
    checkpoint = filled.checkpoint()
    assert (checkpoint.entry_count, checkpoint.head_hash) == (25, entries[-1]["entry_hash"])
    assert filled.verify().checkpoints == 3

    assert [e["seq"] for e in filled.entries(actor="user1")] == [i for i in range(1, 26) if i % 3 == 1]
    assert [e["seq"] for e in filled.entries(since_seq=20, limit=3)] == [21, 22, 23]
    assert [e["seq"] for e in filled.entries(since_seq=20, action="search.start", actor="user0")] == [21, 24]
    assert filled.entries(action="login.failure") == []


def test_entries_roll_back_with_their_transaction_and_need_one(trail):
    assert trail.verify() == verify_audit.AuditVerification(True, 0, 0, None, "")
    trail.checkpoint()  # of the empty trail
    trail.append("alice", "login.success")
    with pytest.raises(RuntimeError), trail.transaction() as session:
        trail.record(session, "alice", "search.start", "case-1")
        raise RuntimeError("the search failed")
    with trail.sessions() as session:
        with pytest.raises(AuditError, match="transaction"):
            trail.record(session, "alice", "search.start")
    with trail.transaction() as session:
        assert [trail.record(session, "alice", a).seq for a in ("search.start", "search.end")] == [2, 3]
    assert trail.verify() == verify_audit.AuditVerification(True, 3, 1, None, "")


BAD_ENTRIES = [
    ("alice", "x", "", {"score": float("nan")}),
    ("alice", "x", "", {"score": float("inf")}),
    ("alice", "x", "", {"when": object()}),
    ("alice", "x", "", ["not", "a", "dict"]),
    ("alice", "x", "", {1: "one", "1": "uno"}),
    ("alice", "x", "", {"bad": "\ud800"}),
    ("", "x", "", None),
    ("alice", "a" * 61, "", None),
    ("alice", "x", "t" * 201, None),
    ("alice", "x", "nul\x00", None),
]


def test_entry_content_is_checked_and_stored_as_hashed(trail):
    for actor, action, target, details in BAD_ENTRIES:
        with pytest.raises(AuditError):
            trail.append(actor, action, target, details)
    assert trail.entries() == []
    trail.append("a" * 100, "b" * 60, "c" * 200, {"candidates": ({"rank": 1, "distance": 0.1 + 0.2},), 7: "nul\x00"})
    details = trail.entries()[0]["details"]
    assert details == {"candidates": [{"rank": 1, "distance": 0.30000000000000004}], "7": "nul\x00"}
    assert trail.verify().ok


def test_both_serializations_agree():
    fields = dict(seq=3, recorded_at="2026-01-02T03:04:05.000006+00:00", actor="ö", action="a", target="t",
                  details={"b": [1, 2.5, None, True], "a": "\u2028"}, prev_hash="f" * 64)
    assert canonical_entry(**fields) == verify_audit.canonical_entry(**fields)
    expected_start = b'{"action":"a","actor":"\xc3\xb6","details":{"a":"\xe2\x80\xa8","b":[1,2.5,null'
    assert canonical_entry(**fields).startswith(expected_start)


# --- tampering ------------------------------------------------------------------------------------------------------


def _update_entry(trail: AuditTrail, seq: int, /, **values) -> None:
    with trail.sessions() as session, session.begin():
        session.execute(update(AuditEntryRecord).where(AuditEntryRecord.seq == seq).values(**values))


def edit_details(trail):
    _update_entry(trail, 7, details={"gallery": "mugshots", "version": 7, "score": 0.99})
    return 7, "entry 7 has been altered: its content does not match its entry_hash"


def edit_actor(trail):
    _update_entry(trail, 12, actor="someone-else")
    return 12, "entry 12 has been altered"


def delete_middle_entry(trail):
    with trail.sessions() as session, session.begin():
        session.execute(delete(AuditEntryRecord).where(AuditEntryRecord.seq == 9))
    return 9, "entry 9 is missing: entry 8 is followed by entry 10"


def insert_forged_entry(trail):
    """Make room after entry 10 and put in a well-formed entry chained to it."""
    for seq in range(ENTRIES, 10, -1):
        _update_entry(trail, seq, seq=seq + 1)
    forged = dict(seq=11, recorded_at=_entry(trail, 10)["recorded_at"], actor="user0", action="search.start",
                  target="case-x", details={}, prev_hash=_entry(trail, 10)["entry_hash"])
    with trail.sessions() as session, session.begin():
        session.add(AuditEntryRecord(**forged, entry_hash=_rehash(forged)))
    _update_entry(trail, 12, entry_hash=_rehash({**_entry(trail, 12), "seq": 12}))  # re-hashed for its new seq, too
    return 12, "entry 12 does not follow entry 11"


def swap_two_entries(trail):
    fifth, eighth = _entry(trail, 5), _entry(trail, 8)
    content = [name for name in fifth if name != "seq"]
    _update_entry(trail, 5, entry_hash="x" * 64)
    _update_entry(trail, 8, **{name: fifth[name] for name in content})
    _update_entry(trail, 5, **{name: eighth[name] for name in content})
    return 5, "entry 5 does not follow entry 4"


def truncate_after_checkpoint(trail):
    with trail.sessions() as session, session.begin():
        session.execute(delete(AuditEntryRecord).where(AuditEntryRecord.seq > 15))
    return 16, "the trail ends at entry 15 but the checkpoint of 20 entries signed at"


def rewrite_chain(trail):
    """Edit entry 13 and recompute every hash and link after it: only the checkpoint at 20 can tell."""
    prev_hash = _entry(trail, 12)["entry_hash"]
    for seq in range(13, ENTRIES + 1):
        entry = {**_entry(trail, seq), "prev_hash": prev_hash}
        if seq == 13:
            entry["target"] = "case-other"
        prev_hash = _rehash(entry)
        _update_entry(trail, seq, target=entry["target"], prev_hash=entry["prev_hash"], entry_hash=prev_hash)
    return 20, "entries 11 to 20 were rewritten after signing"


def edit_checkpoint_head(trail):
    with trail.sessions() as session, session.begin():
        session.execute(
            update(AuditCheckpointRecord)
            .where(AuditCheckpointRecord.entry_count == 20)
            .values(head_hash=_entry(trail, 19)["entry_hash"])
        )
    return 20, "the signature of the checkpoint of 20 entries signed at"


def replace_signing_key(trail):
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    trail.key_path.write_bytes(pem)
    return 10, "the checkpoint was forged or the signing key was replaced"


TAMPERINGS = [
    edit_details,
    edit_actor,
    delete_middle_entry,
    insert_forged_entry,
    swap_two_entries,
    truncate_after_checkpoint,
    rewrite_chain,
    edit_checkpoint_head,
    replace_signing_key,
]


def _snapshot(trail: AuditTrail) -> tuple[list[dict], list[dict], bytes]:
    with trail.sessions() as session:
        checkpoints = [dict(row) for row in session.execute(select(AuditCheckpointRecord.__table__)).mappings()]
    return trail.entries(), checkpoints, trail.key_path.read_bytes()


def _restore(trail: AuditTrail, snapshot: tuple[list[dict], list[dict], bytes]) -> None:
    entries, checkpoints, key = snapshot
    with trail.sessions() as session, session.begin():
        session.execute(delete(AuditEntryRecord))
        session.execute(delete(AuditCheckpointRecord))
        session.execute(AuditEntryRecord.__table__.insert(), entries)
        session.execute(AuditCheckpointRecord.__table__.insert(), checkpoints)
    trail.key_path.write_bytes(key)


def test_every_kind_of_tampering_is_detected_at_the_right_entry(filled, tmp_path):
    """Each tampering, on a fresh copy of the trail: verify() names the right seq, and the standalone verifier
    finds the same first problem in an export of the tampered trail (export signs a checkpoint of the tampered
    head first; the earlier checkpoints still give it away)."""
    pristine = _snapshot(filled)
    wrong = []
    for tamper in TAMPERINGS:
        seq, message = tamper(filled)
        result = filled.verify()
        if result.ok or result.first_bad_seq != seq or message not in result.problem:
            wrong.append(f"{tamper.__name__}: expected seq {seq} and {message!r}, got {result}")
        else:
            folder = filled.export(tmp_path / tamper.__name__)
            exported = verify_audit.verify_folder(folder, verify_audit.read_public_key(folder / "audit-public-key.pem"))
            if exported != filled.verify() or exported.problem != result.problem:
                wrong.append(f"{tamper.__name__}: the export verifies as {exported}, the store as {result}")
        _restore(filled, pristine)
        assert filled.verify().ok
    assert not wrong, "\n".join(wrong)


# --- export and the standalone verifier ------------------------------------------------------------------------------


def _run_verifier(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "verify_audit.py"], cwd=folder, capture_output=True, text=True, timeout=60, check=False
    )


def test_export_verifies_standalone_and_catches_an_edited_line(filled, tmp_path):
    filled.append("ämtsrichter", "policy.change", "policy-2", {"note": "line\nbreak \u2028 separator"})
    folder = filled.export(tmp_path / "export")
    names = {"audit.jsonl", "checkpoints.jsonl", "audit-public-key.pem", "verify_audit.py", "README.txt"}
    assert {p.name for p in folder.iterdir()} == names
    assert len((folder / "audit.jsonl").read_bytes().split(b"\n")) == ENTRIES + 2
    assert "python3 verify_audit.py" in (folder / "README.txt").read_text(encoding="utf-8")

    done = _run_verifier(folder)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("OK: 26 entries and 3 checkpoints verified")

    lines = (folder / "audit.jsonl").read_text(encoding="utf-8").split("\n")
    lines[4] = lines[4].replace('"action":"search.start"', '"action":"search.end"')
    (folder / "audit.jsonl").write_text("\n".join(lines), encoding="utf-8")
    done = _run_verifier(folder)
    assert done.returncode == 1
    assert done.stdout == "FAILED: entry 5 has been altered: its content does not match its entry_hash\n"


def test_standalone_verifier_needs_only_the_standard_library_and_cryptography():
    source = Path(verify_audit.__file__).read_text(encoding="utf-8")
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    assert imported - set(sys.stdlib_module_names) == {"cryptography"}


# --- concurrency -----------------------------------------------------------------------------------------------------


WORKER = """
import sys
from pathlib import Path
from facetrail.accountability.audit import AuditTrail
from facetrail.datadir import DataDir
from facetrail.store import create_store_engine, session_factory

datadir, worker, count = DataDir(Path(sys.argv[1])), sys.argv[2], int(sys.argv[3])
engine = create_store_engine(datadir.database_url(datadir.settings()))
trail = AuditTrail(engine, session_factory(engine), datadir, checkpoint_every=10)
print("ready", flush=True)
sys.stdin.readline()
for i in range(count):
    trail.append("worker-" + worker, "test.append", details={"i": i})
"""


def test_concurrent_appends_from_several_processes_stay_linear(trail, datadir):
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(datadir.root), str(w), "25"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for w in range(4)
    ]
    for process in workers:  # all set up, then all started at once
        assert process.stdout.readline() == "ready\n", process.communicate()[1]
    for process in workers:
        process.stdin.write("go\n")
        process.stdin.flush()
    errors = [process.communicate(timeout=120)[1] for process in workers]
    assert [process.returncode for process in workers] == [0, 0, 0, 0], "\n".join(errors)
    entries = trail.entries()
    assert [e["seq"] for e in entries] == list(range(1, 101))
    for w in range(4):  # each process's entries are all there, in its order
        assert [e["details"]["i"] for e in entries if e["actor"] == f"worker-{w}"] == list(range(25))
    result = trail.verify()
    assert (result.ok, result.entries, result.checkpoints) == (True, 100, 10), result.problem


# --- the signing key -------------------------------------------------------------------------------------------------


def test_signing_key_is_private_and_not_in_the_database(filled, datadir, galleries):
    key_path = datadir.keys_dir / "audit-signing-key.pem"
    assert filled.key_path == key_path
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    pem_body = "".join(key_path.read_text().splitlines()[1:-1])
    secrets = [raw.hex(), pem_body, pem_body[:20]]
    engine = galleries.engine
    with engine.connect() as connection:
        for table in inspect(engine).get_table_names():
            dump = repr(connection.execute(text(f'SELECT * FROM "{table}"')).all())
            assert not any(secret in dump for secret in secrets), table
    if engine.dialect.name == "sqlite":
        for path in datadir.root.glob("facetrail.db*"):
            content = path.read_bytes()
            assert raw not in content and pem_body[:20].encode() not in content


def test_signing_key_file_can_be_named_and_must_stay_private(galleries, datadir, tmp_path, monkeypatch):
    key_path = tmp_path / "elsewhere" / "audit.pem"
    monkeypatch.setenv(KEY_FILE_ENV, str(key_path))
    trail = AuditTrail(galleries.engine, galleries.sessions, datadir, checkpoint_every=2)
    trail.append("alice", "login.success")
    assert not key_path.exists()  # created on first use: the first checkpoint
    trail.append("alice", "login.success")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert not (datadir.keys_dir / "audit-signing-key.pem").exists()
    os.chmod(key_path, 0o644)
    with pytest.raises(AuditError, match="open to other users"):
        trail.checkpoint()
    assert "open to other users" in trail.verify().problem
    key_path.unlink()
    result = trail.verify()
    assert (result.ok, result.first_bad_seq) == (False, 2)
    assert result.problem.endswith(f"cannot be checked: the audit signing key {key_path} does not exist")
