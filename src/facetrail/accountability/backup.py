"""Backing up a data directory and restoring it into a fresh one, on SQLite or PostgreSQL alike.

A backup is a folder: every table of the store as JSON Lines (``tables/<table>.jsonl``, read in one snapshot), the
encrypted photographs and probes as stored (``images/``, ``probes/``), ``config.toml``, and ``manifest.json`` with the
schema revision, row counts and the SHA-256 of every file, signed with the audit signing key
(``AuditTrail.sign_document``). It holds **no keys**: the data key file and the audit signing key are backed up
separately (docs/encryption.md, docs/audit.md), so a stolen backup is ciphertext. Index files are not copied; they
are rebuilt from the store on the first search.

While a backup is taken, every gallery's write lock is held (no enrolment or expungement runs), searches go on.
Restoring needs an empty data directory whose keys are already in place (the backup's data key file and audit
signing key), an empty database (SQLite inside the directory, or ``FACETRAIL_DATABASE_URL``). Before it writes
anything it checks that the manifest is signed by that audit signing key and that the folder holds exactly the files
the manifest lists, each with its SHA-256; after inserting the rows, that the data key decrypts the store and that
the restored audit trail verifies (``AuditTrail.verify``). A restore refused after it began writing is undone (the
rows deleted, the files removed), so the directory holds only its keys again; a restore that succeeds records
``restored`` in the audit trail.
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

from facetrail.accountability.audit import KEY_FILE_ENV, AuditTrail, signing_key_path
from facetrail.accountability.verify_audit import AuditVerification, canonical_json
from facetrail.accountability.witness import open_witnesses
from facetrail.crypto import key_file_path
from facetrail.datadir import DataDir
from facetrail.errors import FacetrailError
from facetrail.gallery.gallery import Galleries
from facetrail.store import Base, utcnow

MANIFEST = "manifest.json"
FORMAT = "facetrail-backup-2"
UNSIGNED_FORMATS = ("facetrail-backup-1",)
"""Formats of backups made before manifests were signed: refused, since nothing shows they were not edited."""
SIGNED_AS = "backup-manifest"
"""The purpose a manifest's signature names (``AuditTrail.sign_document``)."""
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
    manifest["signature"] = audit.sign_document(SIGNED_AS, _signed_part(manifest))
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
    return manifest


def _signed_part(manifest: dict[str, Any]) -> bytes:
    """The bytes a manifest's signature covers: its canonical JSON without the signature."""
    return canonical_json({key: value for key, value in manifest.items() if key != "signature"})


def _read_manifest(folder: Path) -> dict[str, Any]:
    """The backup's manifest, as written (FacetrailError when there is none, or it is of an unknown or unsigned
    format); ``check_backup`` checks it."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FacetrailError(f"{folder} is not a facetrail backup: cannot read {MANIFEST}: {exc}") from None
    found = manifest.get("format") if isinstance(manifest, dict) else None
    if found in UNSIGNED_FORMATS:
        raise FacetrailError(f"{folder}: the backup is unsigned (format {found!r}, made before facetrail signed its "
                             "backups), so nothing shows it was not edited: refused")
    if found != FORMAT:
        raise FacetrailError(f"{folder}: unknown backup format {found!r}")
    return manifest


def check_backup(folder: Path, audit_key: Path) -> dict[str, Any]:
    """The backup's manifest, after checking that the audit signing key in ``audit_key`` signed it and that the
    folder holds exactly the files it lists, each with its SHA-256 (FacetrailError naming the first problem)."""
    folder = Path(folder)
    manifest = _read_manifest(folder)
    problem = AuditTrail.document_problem(audit_key, SIGNED_AS, _signed_part(manifest), manifest.get("signature"))
    if problem:
        raise FacetrailError(f"{folder}/{MANIFEST} is not to be trusted, so the backup is refused: {problem}")
    listed = manifest["files"]
    unlisted = [name for name in (str(path.relative_to(folder)) for path in _files(folder))
                if name != MANIFEST and name not in listed]
    if unlisted:
        raise FacetrailError(f"backup file {unlisted[0]} is not listed in the signed manifest: refused (a backup holds "
                             "only the files it was written with)")
    for name, digest in listed.items():
        path = folder / name
        if not path.is_file() or _sha256(path) != digest:
            raise FacetrailError(f"backup file {name} is missing or damaged (SHA-256 differs from the manifest)")
    return manifest


def restore(folder: Path, datadir: DataDir, accept_lost_entries: bool = False) -> dict[str, int]:
    """Restore a backup into ``datadir``, which must hold nothing but its keys; returns the rows restored per table.
    See the module docstring for what it checks; a refusal leaves the directory holding only its keys.

    The restored trail is checked against the heads its witnesses hold (``audit.witness_dir``, ``witness_urls`` of
    the backup's config): a witnessed head that disagrees with the restored entries refuses the restore. Heads
    signed after the backup was taken mean those entries are lost with the restore: refused unless
    ``accept_lost_entries``, and then recorded in the ``restored`` entry (verification reports them removed from
    then on, which is the truth)."""
    folder = Path(folder)
    manifest = _read_manifest(folder)
    leftovers = [path for path in _files(datadir.root) if datadir.keys_dir not in path.parents] if datadir.root.exists() else []
    if leftovers:
        raise FacetrailError(f"{datadir.root} is not empty (it holds {leftovers[0]}): restore into a fresh directory "
                             "holding only its keys")
    key_file = key_file_path(datadir)
    if not key_file.is_file():
        raise FacetrailError(f"the data key file {key_file} is missing: put the backed-up key file there (or set "
                             "FACETRAIL_KEY_FILE) before restoring; backups never contain keys")
    audit_key = signing_key_path(datadir)
    if not audit_key.is_file():
        raise FacetrailError(f"the audit signing key {audit_key} is missing: put the backed-up key there (or set "
                             f"{KEY_FILE_ENV}) before restoring; it checks the backup's signature")
    check_backup(folder, audit_key)
    datadir.root.mkdir(parents=True, exist_ok=True)
    try:
        shutil.copy2(folder / "config.toml", datadir.config_path)
        galleries = Galleries.initialise(datadir)
    except BaseException:
        _remove_files(datadir)
        raise
    inserted = restored = False
    try:
        settings = galleries.settings.audit
        audit = AuditTrail(galleries.engine, galleries.sessions, datadir, settings.checkpoint_every,
                           settings.checkpoint_minutes, open_witnesses(settings, datadir))
        counts = _insert_rows(galleries, folder, manifest)
        inserted = True
        for name in BLOB_FOLDERS:
            if (folder / name).is_dir():
                shutil.copytree(folder / name, datadir.root / name, dirs_exist_ok=True)
        _check_key(galleries)
        verification = audit.verify()
        lost = _lost_with_the_restore(verification, audit.length())
        if not verification.ok and not lost:
            raise FacetrailError(f"the restored audit trail does not verify (entry {verification.first_bad_seq}: "
                                 f"{verification.problem}): the restore is undone")
        if lost and not accept_lost_entries:
            raise FacetrailError(f"restoring this backup loses audit entries its witnesses hold heads for: "
                                 f"{verification.problem}; the restore is undone. To restore it all the same, accept "
                                 "the loss (facetrail restore --accept-lost-entries): it is recorded, and 'audit verify' "
                                 "reports those entries removed from then on")
        audit.append("system", "restored", str(datadir.root)[:200], {
            "backup_created_at": manifest["created_at"], "from_database": manifest["database"], "rows": counts,
            **({"lost_entries": verification.problem} if lost else {})})
        restored = True
        return counts
    finally:
        if inserted and not restored:
            _delete_rows(galleries)
        galleries.close()
        if not restored:
            _remove_files(datadir)


def _lost_with_the_restore(verification: AuditVerification, length: int) -> bool:
    """Whether the only problem of a restored trail is that witnesses hold heads beyond its end: every entry and
    every head up to the end agree, the entries signed after the backup are what is missing."""
    return not verification.ok and verification.entries == length and verification.first_bad_seq == length + 1


def _delete_rows(galleries: Galleries) -> None:
    """Empty every table of a refused restore's store, so the database is empty again."""
    with galleries.engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())


def _remove_files(datadir: DataDir) -> None:
    """Remove every file a refused restore wrote into ``datadir``, keeping its keys."""
    for path in [path for path in _files(datadir.root) if datadir.keys_dir not in path.parents]:
        path.unlink()


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
