"""The metadata store: SQLAlchemy 2 on SQLite (embedded default) or PostgreSQL, schema managed by Alembic."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import JSON, DateTime, Engine, create_engine, event
from sqlalchemy.orm import DeclarativeBase, sessionmaker

from facetrail.errors import FacetrailError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def utcnow() -> dt.datetime:
    """Timezone-aware current UTC time (what every timestamp column stores)."""
    return dt.datetime.now(dt.timezone.utc)


def as_utc(moment: dt.datetime) -> dt.datetime:
    """A stored time as an aware UTC time: SQLite gives back naive datetimes (stored as UTC), PostgreSQL aware ones
    in the session's time zone."""
    return moment.replace(tzinfo=dt.timezone.utc) if moment.tzinfo is None else moment.astimezone(dt.timezone.utc)


def readable_time(value: dt.datetime | str | None) -> str:
    """A time (or its ISO text) for reading, as 'YYYY-MM-DD HH:MM UTC'; '' for none. The pages and the command line
    show every time so."""
    if value is None:
        return ""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return as_utc(value).strftime("%Y-%m-%d %H:%M UTC")


class Base(DeclarativeBase):
    """Declarative base of every table in the store."""

    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON, dt.datetime: DateTime(timezone=True)}


def create_store_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout so several processes can share it."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA secure_delete=ON")  # deleted rows are overwritten, not left in free pages
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def _alembic_config(engine: Engine) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (creates it on an empty database)."""
    command.upgrade(_alembic_config(engine), "head")


def check_schema(engine: Engine) -> None:
    """Refuse to work on a database whose schema is not at the newest revision."""
    head = ScriptDirectory.from_config(_alembic_config(engine)).get_current_head()
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    if current != head:
        raise FacetrailError(
            f"the database schema is at revision {current or 'none'}, this facetrail needs {head}; run 'facetrail init'"
        )


def erase_deleted_rows(engine: Engine) -> None:
    """Make deleted rows unrecoverable from the database files, as far as the database allows.

    SQLite: deleted content is already zeroed (``secure_delete``); the write-ahead log, which still holds the
    old pages, is checkpointed and truncated. PostgreSQL: ``VACUUM`` removes the dead row versions from the
    tables' visible storage; the bytes of a removed row may stay on disk until the space is reused.
    """
    if engine.dialect.name == "sqlite":
        with engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    elif engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM")


def session_factory(engine: Engine) -> sessionmaker:
    """Sessions that keep loaded objects usable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


@dataclass(frozen=True)
class Store:
    """One data directory's database: its engine and its session factory, shared by the galleries, the audit trail,
    the policies and the users."""

    engine: Engine
    sessions: sessionmaker

    @classmethod
    def open(cls, url: str, upgrade: bool = False) -> Store:
        """The database at ``url``; ``upgrade`` brings its schema to the newest revision (creating it on an empty
        database), otherwise a schema that is not at it is refused."""
        engine = create_store_engine(url)
        (migrate if upgrade else check_schema)(engine)
        return cls(engine, session_factory(engine))

    def close(self) -> None:
        self.engine.dispose()
