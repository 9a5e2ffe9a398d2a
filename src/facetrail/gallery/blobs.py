"""Content-addressed file storage for enrolled photographs inside the data directory."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class BlobStore:
    """Stores byte strings under their SHA-256 hex key, written atomically (temp file, fsync, rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        """Where the blob for ``key`` lives."""
        return self.root / key[:2] / key

    def put(self, key: str, data: bytes) -> None:
        """Write ``data`` under ``key``; a crash leaves either the old state or the whole new file."""
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temp, 0o600)
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        """The stored bytes for ``key`` (FileNotFoundError if absent)."""
        return self.path(key).read_bytes()

    def delete(self, key: str) -> bool:
        """Remove the blob; True if it existed."""
        path = self.path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        try:
            path.parent.rmdir()
        except OSError:
            pass  # the folder still holds other blobs
        return True

    def keys(self) -> set[str]:
        """Every stored key (used to sweep files left by an interrupted write)."""
        if not self.root.exists():
            return set()
        return {p.name for p in self.root.glob("??/*") if not p.name.startswith(".tmp-")}
