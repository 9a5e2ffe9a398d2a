"""The data directory: one folder holds a facetrail installation's configuration, store, images and indexes.

Chosen by ``--data DIR`` or ``FACETRAIL_DATA`` (default ``./facetrail-data``);
``facetrail init`` creates it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from facetrail.config import Settings, load_settings, settings_to_toml
from facetrail.errors import FacetrailError

DEFAULT_DATA_DIR = "facetrail-data"
DATA_ENV = "FACETRAIL_DATA"
DATABASE_URL_ENV = "FACETRAIL_DATABASE_URL"


@dataclass(frozen=True)
class DataDir:
    """Paths inside a data directory."""

    root: Path

    @classmethod
    def locate(cls, explicit: str | os.PathLike | None = None) -> DataDir:
        """The data directory named explicitly, else by ``FACETRAIL_DATA``, else ``./facetrail-data``."""
        return cls(Path(explicit or os.environ.get(DATA_ENV) or DEFAULT_DATA_DIR).resolve())

    @property
    def config_path(self) -> Path:
        return self.root / "config.toml"

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    @property
    def index_dir(self) -> Path:
        return self.root / "indexes"

    @property
    def locks_dir(self) -> Path:
        return self.root / "locks"

    @property
    def keys_dir(self) -> Path:
        """Data encryption keys and the audit signing key (kept out of the database; mode 0700); by default also the
        audit witness's folder (``audit.witness_dir``), which belongs on another volume."""
        return self.root / "keys"

    @property
    def probes_dir(self) -> Path:
        return self.root / "probes"

    @property
    def jobs_dir(self) -> Path:
        """Snapshots of the web application's enrolment jobs, shared by the server's processes."""
        return self.root / "jobs"

    def exists(self) -> bool:
        return self.config_path.exists()

    def create(self, settings: Settings | None = None) -> None:
        """Create the folders and write ``config.toml`` (kept if it already exists)."""
        for path in (self.root, self.images_dir, self.index_dir, self.locks_dir, self.keys_dir, self.probes_dir):
            path.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        os.chmod(self.keys_dir, 0o700)
        if not self.config_path.exists():
            self.config_path.write_text(settings_to_toml(settings or Settings()), encoding="utf-8")

    def settings(self) -> Settings:
        """The configuration in force; refuses a directory that ``facetrail init`` has not created."""
        if not self.exists():
            raise FacetrailError(f"{self.root} is not a facetrail data directory; run 'facetrail init' first")
        return load_settings(self.config_path)

    def database_url(self, settings: Settings) -> str:
        """``FACETRAIL_DATABASE_URL``, else the configured URL, else SQLite inside the data directory."""
        return os.environ.get(DATABASE_URL_ENV) or settings.store.database_url or f"sqlite:///{self.root / 'facetrail.db'}"
