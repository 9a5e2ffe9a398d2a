"""Backing up a data directory and restoring it into a fresh one, on SQLite or PostgreSQL alike.

A backup is a folder: every table of the store as JSON Lines (``tables/<table>.jsonl``, read in one snapshot), the
encrypted photographs and probes as stored (``images/``, ``probes/``), ``config.toml``, and ``manifest.json`` with the
schema revision, row counts and the SHA-256 of every file. It holds **no keys**: the data key file and the audit
signing key are backed up separately (docs/encryption.md, docs/audit.md), so a stolen backup is ciphertext. Index
files are not copied; they are rebuilt from the store on the first search.

While a backup is taken, every gallery's write lock is held (no enrolment or expungement runs), searches go on.
Restoring needs an empty data directory whose keys are already in place (the backup's data key file and audit
signing key), an empty database (SQLite inside the directory, or ``FACETRAIL_DATABASE_URL``), and checks every file
against the manifest and that the data key decrypts the store before it records ``restored`` in the audit trail.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from sqlalchemy import Date, DateTime, LargeBinary, func, select, text
from sqlalchemy.engine import Connection

from facetrail.accountability.audit import AuditTrail
from facetrail.crypto import key_file_path
from facetrail.datadir import DataDir
from facetrail.errors import FacetrailError
from facetrail.gallery.gallery import Galleries
from facetrail.store import Base, utcnow

MANIFEST = "manifest.json"
FORMAT = "facetrail-backup-1"
BLOB_FOLDERS = ("images", "probes")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _encode(column, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(column.type, LargeBinary):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return value


def _decode(column, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(column.type, LargeBinary):
        return base64.b64decode(value)
    if isinstance(column.type, DateTime):
        return dt.datetime.fromisoformat(value)
    if isinstance(column.type, Date):
        return dt.date.fromisoformat(value)
    return value


def _files(root: Path) -> Iterator[Path]:
    return (path for path in sorted(root.rglob("*")) if path.is_file())


def _snapshot(connection: Connection) -> None:
    """Make the connection's next transaction read one consistent snapshot of the whole store."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
    else:
        connection.execute(text("SELECT 1 FROM sqlite_master LIMIT 1"))  # SQLite (WAL): the first read fixes it


def back_up(galleries: Galleries, audit: AuditTrail, folder: Path) -> dict[str, Any]:
    """Write a backup of the data directory to ``folder`` (new or empty); returns the manifest. See the module."""
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise FacetrailError(f"{folder} is not empty: back up into a new folder")
    datadir = galleries.datadir
    with ExitStack() as locks:
        for info in galleries.list():
            locks.enter_context(galleries.get(info.name).write_lock())
        (folder / "tables").mkdir(parents=True)
        counts: dict[str, int] = {}
        with galleries.engine.connect() as connection:
            with connection.begin():
                _snapshot(connection)
                revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
                for table in Base.metadata.sorted_tables:
                    with (folder / "tables" / f"{table.name}.jsonl").open("w", encoding="utf-8") as out:
                        count = 0
                        for row in connection.execute(select(table).order_by(*table.primary_key.columns)):
                            record = {column.name: _encode(column, row._mapping[column.name]) for column in table.columns}
                            out.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
                            count += 1
                    counts[table.name] = count
        for name in BLOB_FOLDERS:
            source = datadir.root / name
            if source.is_dir():
                shutil.copytree(source, folder / name)
    shutil.copy2(datadir.config_path, folder / "config.toml")
    manifest = {
        "format": FORMAT, "created_at": utcnow().isoformat(), "schema_revision": revision,
        "database": galleries.engine.dialect.name, "rows": counts, "keys_included": False,
        "files": {str(path.relative_to(folder)): _sha256(path) for path in _files(folder)},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
    return manifest


def check_backup(folder: Path) -> dict[str, Any]:
    """The backup's manifest, after checking that every file it lists is there with its SHA-256 (FacetrailError
    naming the first that is not)."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FacetrailError(f"{folder} is not a facetrail backup: cannot read {MANIFEST}: {exc}") from None
    if manifest.get("format") != FORMAT:
        raise FacetrailError(f"{folder}: unknown backup format {manifest.get('format')!r}")
    for name, digest in manifest["files"].items():
        path = folder / name
        if not path.is_file() or _sha256(path) != digest:
            raise FacetrailError(f"backup file {name} is missing or damaged (SHA-256 differs from the manifest)")
    return manifest


def restore(folder: Path, datadir: DataDir) -> dict[str, int]:
    """Restore a backup into ``datadir``, which must hold nothing but its keys; returns the rows restored per table.
    See the module docstring for what it checks."""
    folder = Path(folder)
    manifest = check_backup(folder)
    leftovers = [path for path in _files(datadir.root) if datadir.keys_dir not in path.parents] if datadir.root.exists() else []
    if leftovers:
        raise FacetrailError(f"{datadir.root} is not empty (it holds {leftovers[0]}): restore into a fresh directory "
                             "holding only its keys")
    key_file = key_file_path(datadir)
    if not key_file.is_file():
        raise FacetrailError(f"the data key file {key_file} is missing: put the backed-up key file there (or set "
                             "FACETRAIL_KEY_FILE) before restoring; backups never contain keys")
    datadir.root.mkdir(parents=True, exist_ok=True)
    shutil.copy2(folder / "config.toml", datadir.config_path)
    galleries = Galleries.initialise(datadir)
    try:
        audit = AuditTrail(galleries.engine, galleries.sessions, datadir)
        if manifest["rows"].get("audit_checkpoints") and not audit.key_path.is_file():
            raise FacetrailError(f"the audit signing key {audit.key_path} is missing: put the backed-up key there (or "
                                 "set FACETRAIL_AUDIT_KEY_FILE) before restoring")
        restored = _insert_rows(galleries, folder, manifest)
        for name in BLOB_FOLDERS:
            if (folder / name).is_dir():
                shutil.copytree(folder / name, datadir.root / name, dirs_exist_ok=True)
        _check_key(galleries)
        audit.append("system", "restored", str(datadir.root)[:200], {
            "backup_created_at": manifest["created_at"], "from_database": manifest["database"], "rows": restored})
        return restored
    finally:
        galleries.close()


def _insert_rows(galleries: Galleries, folder: Path, manifest: dict[str, Any]) -> dict[str, int]:
    """Insert every table's rows into the freshly migrated store, which must be empty and at the backup's revision."""
    counts: dict[str, int] = {}
    with galleries.engine.begin() as connection:
        revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        if revision != manifest["schema_revision"]:
            raise FacetrailError(f"the backup's schema revision is {manifest['schema_revision']}, this facetrail's is "
                                 f"{revision}: restore with the facetrail version that made the backup, then upgrade")
        for table in Base.metadata.sorted_tables:
            if connection.execute(select(func.count()).select_from(table)).scalar_one():
                raise FacetrailError(f"the database already holds rows in {table.name}: restore into an empty database")
        for table in Base.metadata.sorted_tables:
            rows = []
            with (folder / "tables" / f"{table.name}.jsonl").open(encoding="utf-8") as lines:
                for line in lines:
                    raw = json.loads(line)
                    rows.append({column.name: _decode(column, raw[column.name]) for column in table.columns})
            if rows:
                connection.execute(table.insert(), rows)
            counts[table.name] = len(rows)
            if connection.dialect.name == "postgresql" and "id" in table.columns:
                connection.execute(text(f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                                        f"COALESCE(MAX(id), 1), MAX(id) IS NOT NULL) FROM {table.name}"))
    if counts != manifest["rows"]:
        raise FacetrailError("the rows restored differ from the backup's manifest")
    return counts


def _check_key(galleries: Galleries) -> None:
    """Decrypt one stored template per gallery: a wrong data key file is reported now, not at the first search."""
    from facetrail.gallery.schema import TemplateRecord

    for info in galleries.list():
        gallery = galleries.get(info.name)
        with gallery.session() as session:
            template = session.scalars(select(TemplateRecord).where(TemplateRecord.gallery_id == gallery.id).limit(1)).first()
            if template is not None:
                gallery.template_vector(template)
