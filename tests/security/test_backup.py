"""Backup and restore: a backup without keys, restored into a fresh directory (and a fresh database on PostgreSQL),
verifies its audit trail and answers a search."""

from __future__ import annotations

import os
import shutil
from contextlib import nullcontext

import pytest

from facetrail.accountability.service import Facetrail
from facetrail.datadir import DATABASE_URL_ENV, DataDir
from facetrail.errors import FacetrailError
from tests.fixtures.database import fresh_database_url
from tests.security.helpers import run_search
from tests.fixtures.images import jpeg
from tests.fixtures.world import PASSWORD


def test_a_backup_restored_into_a_fresh_directory_verifies_and_searches(world, faces, tmp_path, monkeypatch):
    system = world.system
    run_search(world, faces)
    system.audit.checkpoint()  # so the trail has a signed checkpoint the restored copy must verify
    admin = system.authenticate(world.tokens["admin"])
    backup = tmp_path / "backup"
    manifest = system.back_up(admin, backup)
    assert manifest["rows"]["templates"] == 2 and manifest["keys_included"] is False
    assert not any("key" in name for name in manifest["files"])
    data_key = (system.datadir.keys_dir / "data-keys.json").read_bytes()
    assert all(data_key not in path.read_bytes() for path in backup.rglob("*") if path.is_file())

    target = DataDir(tmp_path / "restored")
    with pytest.raises(FacetrailError, match="data key file"):
        _restore(backup, target, monkeypatch)
    assert not target.root.exists()  # refused before anything was written
    target.keys_dir.mkdir(parents=True, mode=0o700)
    for key in system.datadir.keys_dir.iterdir():
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
            ivan = copy.authenticate(copy.login("ivan", PASSWORD)[1])
            result = copy.search(ivan, jpeg(faces["obama3.jpg"], 600), "county", "24-000124", "criminal_investigation",
                                 "robbery", note="after the restore")
            assert result.candidates[0].subject_id == "B-1001"
            assert result.search_id == max(manifest["rows"]["searches"], 1) + 1  # ids continue after the restored ones
        finally:
            copy.close()
        with pytest.raises(FacetrailError, match="not empty"):
            _restore(backup, target, monkeypatch)


def test_a_damaged_backup_is_refused(world, tmp_path, monkeypatch):
    admin = world.system.authenticate(world.tokens["admin"])
    backup = tmp_path / "backup"
    world.system.back_up(admin, backup)
    with (backup / "tables" / "subjects.jsonl").open("a") as table:
        table.write('{"id": 999}\n')
    with pytest.raises(FacetrailError, match="subjects.jsonl is missing or damaged"):
        _restore(backup, DataDir(tmp_path / "restored"), monkeypatch)
    assert [e for e in world.system.audit.entries(action="backup_created")]


def _restore(backup, target, monkeypatch):
    from facetrail.accountability.backup import restore

    monkeypatch.delenv("FACETRAIL_DATA", raising=False)
    assert os.environ.get("FACETRAIL_KEY_FILE") is None
    return restore(backup, target)
