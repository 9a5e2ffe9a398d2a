"""Backup and restore: a backup without keys, restored into a fresh directory (and a fresh database on PostgreSQL),
verifies its audit trail and answers a search."""

from __future__ import annotations

import base64
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
    with pytest.raises(FacetrailError, match="subjects.jsonl is missing or damaged"):
        _restore(backup, DataDir(tmp_path / "restored"), monkeypatch)
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
