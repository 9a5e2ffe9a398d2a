"""A witness's directory: its key, the logs registered with it, the heads it holds and the receipts it gave.

::

    WITNESS_DIR/                 (mode 0700; never a facetrail data directory)
      witness-key.pem            the witness's Ed25519 signing key (mode 0600, created on first use)
      logs/<key id>.json         a registered log: its name, when it was registered, its public key (PEM)
      heads.jsonl                every head accepted, append-only and fsync'd (the file witness's format)
      receipts.jsonl             every receipt given: the head, received_at, the witness key id, the countersignature

A head is accepted only from a registered log (no trust on first use), when its signature verifies with that log's
key, and when it is consistent with the heads held (a count never below the latest, never a second hash for a
count). An identical head submitted again gets the receipt it got the first time.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from facetrail.accountability.audit import signing_key
from facetrail.accountability.remote_witness import HEX64, countersign, receipt_shape_problem
from facetrail.accountability.verify_audit import (
    head_problem,
    head_signature_verifies,
    load_public_key,
    public_key_id,
)
from facetrail.accountability.witness import HEADS_FILE, HeadFile
from facetrail.errors import FacetrailError, WitnessRefused

DIR_ENV = "FACETRAIL_WITNESS_DIR"
DEFAULT_DIR = "facetrail-witness"
KEY_FILE = "witness-key.pem"
LOGS_DIR = "logs"
RECEIPTS_FILE = "receipts.jsonl"
MAX_NAME_CHARS = 200
_SIGNATURE_CHARS = 200
_SIGNED_AT_CHARS = 64


class WitnessServiceError(FacetrailError):
    """The witness's directory or a log's registration cannot be used."""


class Refusal(FacetrailError):
    """A head or request the witness refuses; ``status`` and ``kind`` are how the service answers it."""

    status = 400
    kind = "refused"


class MalformedHead(Refusal):
    """Not a signed head in form."""

    kind = "malformed_head"


class UnknownLog(Refusal):
    """No log with that key id is registered with this witness."""

    status = 404
    kind = "unknown_log"


class BadSignature(Refusal):
    """The head's signature does not verify with its log's registered key."""

    status = 422
    kind = "bad_signature"


class InconsistentHead(Refusal):
    """The head contradicts one the witness holds: a shrinking count, or a second hash for a count."""

    status = 409
    kind = "inconsistent_head"


@dataclass(frozen=True)
class RegisteredLog:
    """A log whose heads this witness accepts."""

    key_id: str
    name: str
    added_at: str
    public_key: Ed25519PublicKey

    def describe(self) -> dict[str, str]:
        """The log as the service lists it."""
        return {"key_id": self.key_id, "name": self.name, "added_at": self.added_at}


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")


def read_public_key(pem: bytes, origin: str) -> Ed25519PublicKey:
    """The Ed25519 public key in ``pem``; WitnessServiceError naming ``origin`` when it is not one."""
    try:
        return load_public_key(pem, origin)
    except ValueError as error:
        raise WitnessServiceError(str(error)) from None


class WitnessOffice:
    """The witness's directory (see the module's description)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        if (self.root / "config.toml").exists():
            raise WitnessServiceError(f"{self.root} is a facetrail data directory; a witness keeps a directory of its "
                                      "own, apart from any log it witnesses")
        self.logs_dir = self.root / LOGS_DIR
        self.heads_file = HeadFile(self.root / HEADS_FILE)
        self.receipts_file = HeadFile(self.root / RECEIPTS_FILE, receipt_shape_problem)

    @classmethod
    def locate(cls, explicit: str | os.PathLike | None = None) -> WitnessOffice:
        """The directory named explicitly, else by ``FACETRAIL_WITNESS_DIR``, else ``./facetrail-witness``."""
        return cls(Path(explicit or os.environ.get(DIR_ENV) or DEFAULT_DIR))

    def prepare(self) -> None:
        """Create the directory (mode 0700) and the witness's key (mode 0600) when they do not exist yet."""
        try:
            self.logs_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.root, 0o700)
        except OSError as error:
            raise WitnessServiceError(f"cannot create the witness directory {self.root}: {error}") from None
        self.key()

    def key(self) -> Ed25519PrivateKey:
        """The witness's signing key, created on first use (AuditError when the file is unusable)."""
        return signing_key(self.root / KEY_FILE, "witness key")

    def public_key_pem(self) -> str:
        """The witness's public key, PEM: what a log's operator pins, and checks receipts with."""
        return self.key().public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")

    def key_id(self) -> str:
        """SHA-256 (hex) of the witness's raw public key."""
        return public_key_id(self.key().public_key())

    # --- logs --------------------------------------------------------------------------------------------------

    def add_log(self, pem: bytes, name: str = "", origin: str = "the public key") -> RegisteredLog:
        """Register the log whose audit public key is ``pem``; refuses a key already registered."""
        public_key = read_public_key(pem, origin)
        if len(name) > MAX_NAME_CHARS or not name.isprintable():
            raise WitnessServiceError(f"a log's name must be at most {MAX_NAME_CHARS} printable characters: {name!r}")
        self.prepare()
        log = RegisteredLog(public_key_id(public_key), name, _now(), public_key)
        record = json.dumps({**log.describe(), "public_key": pem.decode("ascii").strip() + "\n"}, indent=2) + "\n"
        path = self.logs_dir / f"{log.key_id}.json"
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        try:
            with temporary.open("x", encoding="utf-8") as stream:
                stream.write(record)
                stream.flush()
                os.fsync(stream.fileno())
            os.link(temporary, path)  # never replaces a registration
        except FileExistsError:
            known = self.log(log.key_id)
            raise WitnessServiceError(f"the log with key id {log.key_id} is already registered"
                                      + (f" as {known.name!r}" if known.name else "")) from None
        except OSError as error:
            raise WitnessServiceError(f"cannot register the log in {self.logs_dir}: {error}") from None
        finally:
            temporary.unlink(missing_ok=True)
        return log

    def log(self, key_id: str) -> RegisteredLog:
        """The registered log with ``key_id``; UnknownLog when there is none."""
        path = self.logs_dir / f"{key_id}.json"
        if not HEX64.fullmatch(key_id) or not path.is_file():
            raise UnknownLog(f"no log with key id {key_id!r} is registered with this witness (its operator registers "
                             "a log with 'facetrail witness add-log --public-key audit-public-key.pem')")
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            public_key = read_public_key(record["public_key"].encode("ascii"), str(path))
            name, added_at = str(record["name"]), str(record["added_at"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise WitnessServiceError(f"the registration {path} cannot be read: {error}") from None
        if public_key_id(public_key) != key_id:
            raise WitnessServiceError(f"the registration {path} holds the key {public_key_id(public_key)}, not "
                                      f"{key_id}: it was edited")
        return RegisteredLog(key_id, name, added_at, public_key)

    def logs(self) -> list[RegisteredLog]:
        """Every registered log, by name."""
        if not self.logs_dir.is_dir():
            return []
        return sorted((self.log(path.stem) for path in self.logs_dir.glob("*.json")), key=lambda log: log.name)

    # --- heads -------------------------------------------------------------------------------------------------

    def submit(self, head: Any) -> tuple[dict, bool]:
        """Accept ``head`` and return (its receipt, whether it is new); an identical head submitted again gets its
        first receipt. Raises a :class:`Refusal` naming the reason: MalformedHead, UnknownLog, BadSignature,
        InconsistentHead."""
        problem = head_problem(head) or _field_problem(head)
        if problem:
            raise MalformedHead(f"not a signed head: {problem}")
        log = self.log(head["key_id"])
        if not head_signature_verifies(log.public_key, head):
            raise BadSignature(f"the signature of the head of {head['entry_count']} entries does not verify with the "
                               f"key of the log {log.name or log.key_id}")
        try:
            self.heads_file.add(head)
            created = self.receipts_file.add(countersign(head, self.key(), _now()))
        except WitnessRefused as refused:
            raise InconsistentHead(str(refused).replace(f"{self.root}{os.sep}", "")) from None
        receipt = next(kept for kept in self.receipts_file.heads(head["key_id"])
                       if kept["entry_count"] == head["entry_count"])
        return receipt, created

    def heads(self, key_id: str) -> list[dict]:
        """Every head held for the registered log with ``key_id``, by entry count."""
        return self.heads_file.heads(self.log(key_id).key_id)


def _field_problem(head: dict) -> str:
    """What a well-formed head's text fields must also be, so nothing else is stored."""
    for name in ("head_hash", "key_id"):
        if not HEX64.fullmatch(head[name]):
            return f"{name} must be 64 lowercase hexadecimal digits"
    if len(head["signature"]) > _SIGNATURE_CHARS or len(head["signed_at"]) > _SIGNED_AT_CHARS:
        return f"signature must be at most {_SIGNATURE_CHARS} characters, signed_at at most {_SIGNED_AT_CHARS}"
    return ""


@dataclass(frozen=True)
class WitnessSettings:
    """How the witness service runs (``facetrail witness serve`` options)."""

    max_body_bytes: int = 16 * 1024
    """Largest request body; a head is about 400 bytes."""
    rate_limit: int = 120
    """Requests a minute from one address (behind a reverse proxy: from the proxy, so for everyone)."""

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1024:
            raise FacetrailError(f"the request body limit must be at least 1024 bytes, not {self.max_body_bytes}")
        if self.rate_limit < 1:
            raise FacetrailError(f"the rate limit must be at least 1 request a minute, not {self.rate_limit}")
