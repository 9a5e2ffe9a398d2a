"""Encryption at rest of biometric data: AES-256-GCM data keys kept outside the database.

The key file (``DATA/keys/data-keys.json``, or the path in ``FACETRAIL_KEY_FILE``) holds every data key
still needed for decryption and names the active one, which encrypts everything new::

    {"format": "facetrail.keys.v1", "active": "<key id>", "keys": {"<key id>": "<base64 of 32 bytes>"}}

A key's id is the first 16 hex digits of the SHA-256 of the key. An encrypted blob is ``FTE1``, the 8 bytes of
the key id, a 12-byte random nonce, then the ciphertext and its 16-byte tag. The caller's ``context`` (e.g.
``b"template:<gallery id>:<content hash>"``) is authenticated as associated data, so a blob copied to another
record does not decrypt.

A key ring notices when another process has changed the key file (a rotation) and reloads it before
encrypting, and before reporting a key id as unknown.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from filelock import FileLock

from facetrail.datadir import DataDir
from facetrail.errors import CryptoError
from facetrail.storage import write_atomically

KEY_FILE_ENV = "FACETRAIL_KEY_FILE"
KEY_FILE_NAME = "data-keys.json"
KEY_FILE_FORMAT = "facetrail.keys.v1"

_MAGIC = b"FTE1"
_KEY_ID_BYTES = 8
_NONCE_BYTES = 12
_TAG_BYTES = 16
_HEADER_BYTES = len(_MAGIC) + _KEY_ID_BYTES + _NONCE_BYTES


def sealed_size(plaintext_bytes: int) -> int:
    """The length of :meth:`KeyRing.encrypt`'s output for a plaintext of ``plaintext_bytes``."""
    return _HEADER_BYTES + plaintext_bytes + _TAG_BYTES


def key_file_path(datadir: DataDir) -> Path:
    """``FACETRAIL_KEY_FILE`` if set, else ``DATA/keys/data-keys.json``."""
    explicit = os.environ.get(KEY_FILE_ENV)
    return Path(explicit).expanduser().resolve() if explicit else datadir.keys_dir / KEY_FILE_NAME


def key_id(key: bytes) -> str:
    """The id of a data key: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(key).hexdigest()[: 2 * _KEY_ID_BYTES]


class KeyRing:
    """The data keys of one key file: encrypts with the active key, decrypts with whichever key a blob names."""

    def __init__(self, path: Path) -> None:
        """Read the key file at ``path`` (CryptoError if it is missing, unreadable or malformed)."""
        self.path = path
        self._lock = _key_file_lock(path)
        self._keys: dict[str, bytes] = {}
        self._active = ""
        self._stamp: tuple[int, int, int] | None = None
        self._read()

    @classmethod
    def load(cls, datadir: DataDir) -> KeyRing:
        """The key ring of ``datadir`` (CryptoError if its key file is missing, unreadable or malformed)."""
        return cls(key_file_path(datadir))

    @classmethod
    def create(cls, datadir: DataDir) -> KeyRing:
        """The key ring of ``datadir``, creating the key file with one random key if there is none. Refuses to
        create one for a data directory that already holds photographs: their key file must be restored (or
        ``FACETRAIL_KEY_FILE`` set) instead."""
        path = key_file_path(datadir)
        if not path.exists() and any(photo.is_file() for photo in datadir.images_dir.rglob("*")):
            raise CryptoError(
                f"{datadir.root} already holds encrypted photographs but its data key file {path} is missing: "
                "restore the key file from backup (or set FACETRAIL_KEY_FILE to its location) instead of creating a new key"
            )
        if path == datadir.keys_dir / KEY_FILE_NAME:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(path.parent, 0o700)
        elif not path.parent.exists():
            path.parent.mkdir(mode=0o700, parents=True)
        with _key_file_lock(path):
            if not path.exists():
                key = AESGCM.generate_key(bit_length=256)
                _write_key_file(path, key_id(key), {key_id(key): key})
        return cls(path)

    @property
    def active_id(self) -> str:
        """The id of the key that encrypts new data."""
        self._refresh()
        return self._active

    def key_ids(self) -> list[str]:
        """The ids of every key in the key file, sorted."""
        self._refresh()
        return sorted(self._keys)

    def encrypt(self, plaintext: bytes, context: bytes) -> bytes:
        """Encrypt ``plaintext`` with the active key, bound to ``context``."""
        self._refresh()
        nonce = os.urandom(_NONCE_BYTES)
        sealed = AESGCM(self._keys[self._active]).encrypt(nonce, plaintext, context)
        return _MAGIC + bytes.fromhex(self._active) + nonce + sealed

    def decrypt(self, blob: bytes, context: bytes) -> bytes:
        """The plaintext of a blob made by :meth:`encrypt` with the same ``context``.

        CryptoError when the bytes are not a facetrail blob, name a key not in the key file, or fail
        authentication (tampered, truncated, or encrypted for another context).
        """
        blob_key_id = self.key_id_of(blob)
        if blob_key_id not in self._keys:
            self._refresh(force=True)
        key = self._keys.get(blob_key_id)
        if key is None:
            raise CryptoError(
                f"data encrypted with key {blob_key_id}, which is not in {self.path} "
                "(a retired key, or a different key file)"
            )
        try:
            ciphertext = memoryview(blob)[_HEADER_BYTES:]  # no copy: index segments decrypt hundreds of MB
            return AESGCM(key).decrypt(blob[len(_MAGIC) + _KEY_ID_BYTES : _HEADER_BYTES], ciphertext, context)
        except InvalidTag:
            raise CryptoError(
                f"encrypted data for {context.decode(errors='replace')!r} failed authentication: "
                "tampered with, truncated, or belonging to another record"
            ) from None

    def reencrypt(self, blob: bytes, context: bytes) -> bytes | None:
        """``blob`` re-encrypted with the active key, or None when the active key already encrypts it."""
        if self.key_id_of(blob) == self.active_id:
            return None
        return self.encrypt(self.decrypt(blob, context), context)

    @staticmethod
    def key_id_of(blob: bytes) -> str:
        """The id of the key a blob names (CryptoError if the bytes are not a facetrail encrypted blob)."""
        if len(blob) < _HEADER_BYTES + _TAG_BYTES or not blob.startswith(_MAGIC):
            raise CryptoError(f"not facetrail encrypted data ({len(blob)} bytes, no {_MAGIC.decode()} header)")
        return blob[len(_MAGIC) : len(_MAGIC) + _KEY_ID_BYTES].hex()

    def add_key(self) -> str:
        """Add a new random key and make it the active one (older keys stay, for decryption); returns its id."""
        with self._lock:
            self._refresh()
            key = AESGCM.generate_key(bit_length=256)
            new_id = key_id(key)
            _write_key_file(self.path, new_id, {**self._keys, new_id: key})
            self._read()
        return new_id

    def retire(self, retired_id: str) -> None:
        """Remove a key from the key file: whatever it still encrypts can no longer be read."""
        with self._lock:
            self._refresh()
            if retired_id == self._active:
                raise CryptoError(f"key {retired_id} is the active key; add a new key before retiring it")
            if retired_id not in self._keys:
                raise CryptoError(f"no key {retired_id} in {self.path}")
            _write_key_file(self.path, self._active, {k: v for k, v in self._keys.items() if k != retired_id})
            self._read()

    def _refresh(self, force: bool = False) -> None:
        """Reload the key file if it changed since it was read (or always, with ``force``)."""
        try:
            stat = self.path.stat()
        except OSError as exc:
            raise CryptoError(f"data key file {self.path} is no longer readable: {exc.strerror}") from exc
        if force or (stat.st_ino, stat.st_size, stat.st_mtime_ns) != self._stamp:
            self._read()

    def _read(self) -> None:
        try:
            stat = self.path.stat()
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise CryptoError(
                f"data key file {self.path} is missing: without it the encrypted templates and photographs cannot be "
                f"read. Restore it from backup or set {KEY_FILE_ENV} to its location ('facetrail init' creates one "
                "for a new data directory)"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise CryptoError(f"data key file {self.path} cannot be read: {exc}") from exc
        self._active, self._keys = _parse_key_file(self.path, text)
        self._stamp = (stat.st_ino, stat.st_size, stat.st_mtime_ns)


def _key_file_lock(path: Path) -> FileLock:
    """The lock that serialises changes to the key file (across processes)."""
    return FileLock(f"{path}.lock")


def _parse_key_file(path: Path, text: str) -> tuple[str, dict[str, bytes]]:
    """(active id, id → key) from the key file's text; CryptoError naming the first problem."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CryptoError(f"data key file {path} is not valid JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != KEY_FILE_FORMAT:
        raise CryptoError(f"data key file {path}: not a {KEY_FILE_FORMAT} key file")
    encoded, active = document.get("keys"), document.get("active")
    if not isinstance(encoded, dict) or not encoded:
        raise CryptoError(f"data key file {path}: 'keys' must be a non-empty object")
    keys = {}
    for stated_id, value in encoded.items():
        try:
            key = base64.b64decode(value, validate=True)
        except (TypeError, binascii.Error):
            raise CryptoError(f"data key file {path}: key {stated_id} is not base64") from None
        if len(key) != 32:
            raise CryptoError(f"data key file {path}: key {stated_id} has {len(key)} bytes, not 32")
        if key_id(key) != stated_id:
            raise CryptoError(f"data key file {path}: key {stated_id} does not match its id (it should be {key_id(key)})")
        keys[stated_id] = key
    if active not in keys:
        raise CryptoError(f"data key file {path}: the active key {active!r} is not among its keys")
    return active, keys


def _write_key_file(path: Path, active: str, keys: dict[str, bytes]) -> None:
    document = {
        "format": KEY_FILE_FORMAT,
        "active": active,
        "keys": {kid: base64.b64encode(key).decode("ascii") for kid, key in sorted(keys.items())},
    }
    data = (json.dumps(document, indent=2) + "\n").encode("utf-8")
    write_atomically(path, lambda handle: handle.write(data))

