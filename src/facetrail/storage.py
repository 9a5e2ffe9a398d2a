"""Files in the data directory: atomic writes, and content-addressed encrypted storage (enrolled photographs,
probe images).

Below both the gallery and the key ring: a store encrypts with any ``Cipher`` (``facetrail.crypto.KeyRing`` is the
one in use), so nothing here imports them.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Protocol

from facetrail.datadir import DataDir
from facetrail.errors import CryptoError

PROBE_CONTEXT_PREFIX = "probe"


class Cipher(Protocol):
    """Authenticated encryption bound to a context (``facetrail.crypto.KeyRing``)."""

    def encrypt(self, plaintext: bytes, context: bytes) -> bytes: ...

    def decrypt(self, blob: bytes, context: bytes) -> bytes: ...

    def reencrypt(self, blob: bytes, context: bytes) -> bytes | None: ...


class BlobStore:
    """Stores byte strings under their SHA-256 hex key, encrypted and written atomically (temp file, fsync, rename).

    Each blob is encrypted for the context ``"<context_prefix>:<key>"``, so a file moved to another key or
    another store does not decrypt.
    """

    def __init__(self, root: Path, keyring: Cipher, context_prefix: str) -> None:
        self.root = root
        self.keyring = keyring
        self.context_prefix = context_prefix

    def path(self, key: str) -> Path:
        """Where the blob for ``key`` lives."""
        return self.root / key[:2] / key

    def put(self, key: str, data: bytes) -> None:
        """Encrypt and write ``data`` under ``key``; a crash leaves either the old state or the whole new file."""
        self._write(key, self.keyring.encrypt(data, self._context(key)))

    def get(self, key: str) -> bytes:
        """The decrypted bytes for ``key`` (FileNotFoundError if absent, CryptoError if they do not decrypt)."""
        return self._read_with(key, self.keyring.decrypt)

    def reencrypt(self, key: str) -> bool:
        """Re-encrypt the blob for ``key`` with the active data key; False if it already was."""
        sealed = self._read_with(key, self.keyring.reencrypt)
        if sealed is None:
            return False
        self._write(key, sealed)
        return True

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

    def _context(self, key: str) -> bytes:
        return f"{self.context_prefix}:{key}".encode()

    def _read_with(self, key: str, operation: Callable[[bytes, bytes], bytes | None]) -> bytes | None:
        """``operation(stored bytes, context)``, with the file's path added to a CryptoError."""
        path = self.path(key)
        try:
            return operation(path.read_bytes(), self._context(key))
        except CryptoError as exc:
            raise CryptoError(f"{path}: {exc}") from exc

    def _write(self, key: str, blob: bytes) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(target, lambda handle: handle.write(blob))


def probe_store(datadir: DataDir, keyring: Cipher) -> BlobStore:
    """The store of probe images, ``DATA/probes``, keyed by the image's SHA-256."""
    return BlobStore(datadir.probes_dir, keyring, PROBE_CONTEXT_PREFIX)


def write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Create or replace ``path`` (mode 0600) with what ``write`` writes to a file handle.

    The bytes go to a temporary file in the same folder, are fsynced, and the file is renamed over ``path``
    (then the folder is fsynced): a crash or an error leaves either the old file or the whole new one, and
    no temporary file.
    """
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".tmp-{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, 0o600)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
