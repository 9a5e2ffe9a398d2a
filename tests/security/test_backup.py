"""Backup and restore: a backup without keys, restored into a fresh directory (and a fresh database on PostgreSQL),
verifies its audit trail and answers a search."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
from contextlib import nullcontext

import pytest
from cryptography.hazmat.primitives import serialization

from facetrail.accountability.service import Facetrail
from facetrail.datadir import DATABASE_URL_ENV, DataDir
from facetrail.errors import FacetrailError
from tests.fixtures.database import fresh_database_url
from tests.security.helpers import run_search
from tests.fixtures.images import jpeg
from tests.fixtures.world import PASSWORD
from facetrail.accountability.requests import CaseRequest


def test_a_backup_restored_into_a_fresh_directory_verifies_and_searches(world, faces, tmp_path, monkeypatch):
    system = world.system
    run_search(world, faces)
    system.audit.checkpoint()  # so the trail has a signed checkpoint the restored copy must verify
    admin = system.auth.authenticate(world.tokens["admin"])
    backup = tmp_path / "backup"
    manifest = system.admin.back_up(admin, backup)
    assert manifest["rows"]["templates"] == 2 and manifest["keys_included"] is False
    assert not any("key" in name for name in manifest["files"])
    backed_up = {path: path.read_bytes() for path in backup.rglob("*") if path.is_file()}
    leaks = [(path.name, form) for form in key_forms(system.datadir.keys_dir) for path, data in backed_up.items() if form in data]
    assert not leaks, leaks

    target = DataDir(tmp_path / "restored")
    with pytest.raises(FacetrailError, match="data key file"):
        _restore(backup, target, monkeypatch)
    assert not target.root.exists()  # refused before anything was written
    target.keys_dir.mkdir(parents=True, mode=0o700)
    for key in system.datadir.keys_dir.iterdir():
        if key.is_file():  # the keys; not the audit witness's folder, which belongs on another volume
            shutil.copy2(key, target.keys_dir / key.name)

    postgres = system.galleries.engine.dialect.name == "postgresql"
    with fresh_database_url() if postgres else nullcontext() as url:
        if url:
            monkeypatch.setenv(DATABASE_URL_ENV, url)
        restored = _restore(backup, target, monkeypatch)
        assert restored == manifest["rows"]
        copy = Facetrail.open(target)
        try:
            verification = copy.audit.verify()
            assert verification.ok, verification.problem
            assert copy.audit.entries(action="restored")
            ivan = copy.auth.authenticate(copy.auth.login("ivan", PASSWORD)[1])
            result = copy.searches.search(ivan, jpeg(faces["obama3.jpg"], 600), CaseRequest(gallery="county", case_number="24-000124", purpose="criminal_investigation", offence="robbery", note="after the restore"))
            assert result.candidates[0].subject_id == "B-1001"
            assert result.search_id == max(manifest["rows"]["searches"], 1) + 1  # ids continue after the restored ones
        finally:
            copy.close()
        with pytest.raises(FacetrailError, match="not empty"):
            _restore(backup, target, monkeypatch)


def test_a_damaged_backup_is_refused(world, tmp_path, monkeypatch):
    admin = world.system.auth.authenticate(world.tokens["admin"])
    backup = tmp_path / "backup"
    world.system.admin.back_up(admin, backup)
    with (backup / "tables" / "subjects.jsonl").open("a") as table:
        table.write('{"id": 999}\n')
    target = DataDir(tmp_path / "restored")
    _keys_for(target, world)
    with pytest.raises(FacetrailError, match="subjects.jsonl is missing or damaged"):
        _restore(backup, target, monkeypatch)
    assert [e for e in world.system.audit.entries(action="backup_created")]


def key_forms(keys_dir) -> list[bytes]:
    """Every form in which a key of ``keys_dir`` could leak: each key file's bytes, and each secret key (the data keys
    and the audit signing key) raw, in base64 (standard and URL-safe, the padding left off so unpadded copies match
    too) and in hex (both cases)."""
    files = {path.name: path.read_bytes() for path in keys_dir.iterdir() if path.is_file() and path.suffix != ".lock"}
    assert {"data-keys.json", "audit-signing-key.pem"} <= set(files), sorted(files)
    secrets = [base64.b64decode(value) for value in json.loads(files["data-keys.json"])["keys"].values()]
    assert secrets and all(len(secret) == 32 for secret in secrets)
    signing = serialization.load_pem_private_key(files["audit-signing-key.pem"], password=None)
    secrets.append(signing.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                         serialization.NoEncryption()))
    assert all(files.values()), sorted(files)
    forms = list(files.values())
    for secret in secrets:
        forms += [secret, base64.b64encode(secret).rstrip(b"="), base64.urlsafe_b64encode(secret).rstrip(b"="),
                  secret.hex().encode(), secret.hex().upper().encode()]
    return forms


def _restore(backup, target, monkeypatch):
    from facetrail.accountability.backup import restore

    monkeypatch.delenv("FACETRAIL_DATA", raising=False)
    assert os.environ.get("FACETRAIL_KEY_FILE") is None
    return restore(backup, target)


def _forged(backup, edit) -> None:
    """Apply ``edit`` to the backup's users table, then recompute that file's SHA-256 in the manifest (as someone
    who can write to the backup, but has no key, would)."""
    users = backup / "tables" / "users.jsonl"
    rows = [json.loads(line) for line in users.read_text().splitlines()]
    users.write_text("".join(json.dumps(edit(row), sort_keys=True) + "\n" for row in rows))
    manifest = json.loads((backup / "manifest.json").read_text())
    manifest["files"]["tables/users.jsonl"] = hashlib.sha256(users.read_bytes()).hexdigest()
    (backup / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))


def _keys_for(target, world) -> None:
    target.keys_dir.mkdir(parents=True, mode=0o700)
    for key in world.system.datadir.keys_dir.iterdir():
        if key.is_file():  # the keys; the audit witness's folder belongs on another volume
            shutil.copy2(key, target.keys_dir / key.name)


def _only_keys_left(target) -> bool:
    return all(target.keys_dir in path.parents for path in target.root.rglob("*") if path.is_file())


def _promoted(row):
    if row["username"] == "ivan":
        return {**row, "roles": ["admin", "investigator"], "unit": "Vice"}
    return row


def _manifest_edit(backup, edit) -> None:
    manifest = json.loads((backup / "manifest.json").read_text())
    edit(manifest)
    (backup / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))


@pytest.mark.parametrize("attack", ["users_table_rehashed", "manifest_entry_deleted", "unlisted_file", "unsigned",
                                    "signed_by_another_key"])
def test_an_edited_backup_is_refused_before_anything_is_restored(world, tmp_path, monkeypatch, attack):
    admin = world.system.auth.authenticate(world.tokens["admin"])
    backup = tmp_path / "backup"
    world.system.admin.back_up(admin, backup)
    if attack == "users_table_rehashed":
        _forged(backup, _promoted)
        expected = "signature does not verify"
    elif attack == "manifest_entry_deleted":
        _forged(backup, _promoted)
        _manifest_edit(backup, lambda manifest: manifest["files"].pop("tables/users.jsonl"))
        expected = "signature does not verify"
    elif attack == "unlisted_file":
        (backup / "images" / "planted.bin").write_bytes(b"not from the backup")
        expected = "planted.bin is not listed in the signed manifest"
    elif attack == "unsigned":
        _forged(backup, _promoted)
        _manifest_edit(backup, lambda manifest: manifest.pop("signature", None))
        expected = "not signed"
    else:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from facetrail.accountability.verify_audit import canonical_json, public_key_id

        _forged(backup, _promoted)
        other = Ed25519PrivateKey.generate()

        def resign(manifest):
            manifest.pop("signature", None)
            digest = hashlib.sha256(canonical_json(manifest)).hexdigest()
            manifest["signature"] = {
                "key_id": public_key_id(other.public_key()),
                "signature": base64.b64encode(other.sign(canonical_json({"purpose": "backup-manifest",
                                                                         "sha256": digest}))).decode()}
        _manifest_edit(backup, resign)
        expected = "signed by another key"
    target = DataDir(tmp_path / "restored")
    _keys_for(target, world)
    with pytest.raises(FacetrailError, match=expected):
        _restore(backup, target, monkeypatch)
    assert _only_keys_left(target)


def test_a_restore_whose_audit_trail_does_not_verify_is_refused_and_undone(world, tmp_path, monkeypatch):
    """A database administrator rewrote an audit entry before the backup: the backup is honestly signed, but the
    trail it restores does not verify, so the restore is refused and leaves only the keys."""
    from sqlalchemy import update

    from facetrail.accountability.schema import AuditEntryRecord

    system = world.system
    system.audit.checkpoint()
    with system.galleries.sessions.begin() as session:
        session.execute(update(AuditEntryRecord).where(AuditEntryRecord.action == "user_created")
                        .values(target="someone-else"))
    admin = system.auth.authenticate(world.tokens["admin"])
    backup = tmp_path / "backup"
    system.admin.back_up(admin, backup)
    target = DataDir(tmp_path / "restored")
    _keys_for(target, world)
    postgres = system.galleries.engine.dialect.name == "postgresql"
    with fresh_database_url() if postgres else nullcontext() as url:
        if url:
            monkeypatch.setenv(DATABASE_URL_ENV, url)
        with pytest.raises(FacetrailError, match="restored audit trail does not verify"):
            _restore(backup, target, monkeypatch)
        assert _only_keys_left(target)
        check = Facetrail.initialise(target, "admin", PASSWORD)  # the database was left empty: it can start afresh
        try:
            assert check.users.count() == 1
        finally:
            check.close()
