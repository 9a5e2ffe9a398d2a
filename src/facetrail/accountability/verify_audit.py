"""Verify an exported facetrail audit trail, without facetrail.

Usage (in the export folder, or naming it)::

    python3 verify_audit.py [FOLDER] [--public-key PEM]

Needs only Python 3.8+ and the ``cryptography`` package. Reads ``audit.jsonl``
(one entry per line), ``checkpoints.jsonl`` and ``audit-public-key.pem``;
recomputes every entry's SHA-256 hash and its link to the previous entry;
checks every checkpoint's Ed25519 signature and key id, and that the entry at
each checkpoint's count has the head hash it signed. Prints ``OK: ...`` and
exits 0, or prints ``FAILED: <the first problem>`` and exits 1 (2 when the
files cannot be read).

facetrail's ``AuditTrail.verify()`` runs :func:`check_trail` from this file on
its database, so both find the same first problem and say it in the same
words. The serialization is written out here again on purpose rather than
imported from facetrail: an outside party must not need facetrail.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

ZERO_HASH = "0" * 64
"""The prev_hash of entry 1."""
ENTRY_FIELDS = ("seq", "recorded_at", "actor", "action", "target", "details", "prev_hash")
CHECKPOINT_FIELDS = ("entry_count", "head_hash", "signed_at", "key_id")
ENTRIES_FILE = "audit.jsonl"
CHECKPOINTS_FILE = "checkpoints.jsonl"
PUBLIC_KEY_FILE = "audit-public-key.pem"


def canonical_json(value: Any) -> bytes:
    """JSON with sorted keys, no spaces, UTF-8: the one serialization every hash and signature is made over."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def canonical_entry(
    seq: int, recorded_at: str, actor: str, action: str, target: str, details: Any, prev_hash: str
) -> bytes:
    """The bytes whose SHA-256 is an entry's entry_hash."""
    return canonical_json(
        {
            "seq": seq,
            "recorded_at": recorded_at,
            "actor": actor,
            "action": action,
            "target": target,
            "details": details,
            "prev_hash": prev_hash,
        }
    )


def canonical_checkpoint(entry_count: int, head_hash: str, signed_at: str, key_id: str) -> bytes:
    """The bytes a checkpoint's signature is made over."""
    return canonical_json(
        {"entry_count": entry_count, "head_hash": head_hash, "signed_at": signed_at, "key_id": key_id}
    )


def public_key_id(public_key: Ed25519PublicKey) -> str:
    """SHA-256 (hex) of the raw 32-byte public key: the key id that checkpoints name."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True)
class AuditVerification:
    """The outcome of checking an audit trail."""

    ok: bool
    entries: int
    """Entries read before the first problem (all of them when ``ok``)."""
    checkpoints: int
    first_bad_seq: int | None
    """The seq of the first entry found missing, altered or out of place, or that a bad checkpoint vouches for."""
    problem: str
    """The first problem, in words ('' when ``ok``)."""


class Problem(Exception):
    """The first thing found wrong with a trail, and the seq it concerns."""

    def __init__(self, seq: int | None, message: str) -> None:
        super().__init__(message)
        self.seq = seq
        self.message = message


def _check_entry(entry: Mapping[str, Any], expected_seq: int, prev_hash: str) -> None:
    seq = entry["seq"]
    if seq != expected_seq:
        if expected_seq == 1:
            raise Problem(1, f"entry 1 is missing: the trail starts at entry {seq}")
        if isinstance(seq, int) and seq > expected_seq:
            raise Problem(
                expected_seq, f"entry {expected_seq} is missing: entry {expected_seq - 1} is followed by entry {seq}"
            )
        raise Problem(expected_seq, f"entry {seq} appears again, or out of order, after entry {expected_seq - 1}")
    if entry["prev_hash"] != prev_hash:
        if seq == 1:
            raise Problem(1, f"entry 1 does not start the chain: its prev_hash is {entry['prev_hash']}, not 64 zeros")
        raise Problem(
            seq,
            f"entry {seq} does not follow entry {seq - 1}: its prev_hash {entry['prev_hash']} is not the hash of "
            f"entry {seq - 1} ({prev_hash}); an entry was inserted, removed or moved here",
        )
    try:
        digest = hashlib.sha256(canonical_entry(*(entry[name] for name in ENTRY_FIELDS))).hexdigest()
    except UnicodeEncodeError:  # a lone surrogate, which facetrail never writes
        digest = ""
    if digest != entry["entry_hash"]:
        raise Problem(seq, f"entry {seq} has been altered: its content does not match its entry_hash")


class _Checkpoints:
    """Checkpoints in order of entry count, checked as the walk along the chain reaches each one."""

    def __init__(
        self, checkpoints: Iterable[Mapping[str, Any]], public_key: Ed25519PublicKey | None, key_problem: str
    ) -> None:
        self.pending = sorted(checkpoints, key=lambda c: (c["entry_count"], c["signed_at"]))
        self.public_key = public_key
        self.key_id = public_key_id(public_key) if public_key is not None else ""
        self.key_problem = key_problem
        self.next = 0
        self.covered = 0
        """Entries vouched for by the last good checkpoint."""

    @staticmethod
    def describe(checkpoint: Mapping[str, Any]) -> str:
        return f"the checkpoint of {checkpoint['entry_count']} entries signed at {checkpoint['signed_at']}"

    def check_signature(self, checkpoint: Mapping[str, Any]) -> None:
        seq = checkpoint["entry_count"] or None
        if self.public_key is None:
            raise Problem(seq, f"{self.describe(checkpoint)} cannot be checked: {self.key_problem}")
        if checkpoint["key_id"] != self.key_id:
            raise Problem(
                seq,
                f"{self.describe(checkpoint)} names signing key {checkpoint['key_id']}, not the audit signing key "
                f"{self.key_id}: the checkpoint was forged or the signing key was replaced",
            )
        payload = canonical_checkpoint(
            checkpoint["entry_count"], checkpoint["head_hash"], checkpoint["signed_at"], checkpoint["key_id"]
        )
        try:
            self.public_key.verify(base64.b64decode(checkpoint["signature"], validate=True), payload)
        except (InvalidSignature, binascii.Error, ValueError):
            raise Problem(
                seq,
                f"the signature of {self.describe(checkpoint)} does not verify: the checkpoint was forged or edited",
            ) from None

    def reach(self, count: int, head: str) -> None:
        """The chain is intact up to entry ``count``, whose hash is ``head``: check the checkpoints up to it."""
        while self.next < len(self.pending) and self.pending[self.next]["entry_count"] <= count:
            checkpoint = self.pending[self.next]
            self.check_signature(checkpoint)
            if checkpoint["head_hash"] != head:
                raise Problem(
                    count or None,
                    f"entry {count}'s hash {head} is not the head hash {checkpoint['head_hash']} signed in "
                    f"{self.describe(checkpoint)}: entries {self.covered + 1} to {count} were rewritten after signing",
                )
            self.covered = count
            self.next += 1

    def finish(self, count: int) -> None:
        """The chain ends at entry ``count``: a good checkpoint beyond it means entries were removed."""
        if self.next < len(self.pending):
            checkpoint = self.pending[self.next]
            self.check_signature(checkpoint)
            raise Problem(
                count + 1,
                f"the trail ends at entry {count} but {self.describe(checkpoint)} vouches for "
                f"{checkpoint['entry_count']}: entries {count + 1} to {checkpoint['entry_count']} have been removed",
            )


def check_trail(
    entries: Iterable[Mapping[str, Any]],
    checkpoints: Iterable[Mapping[str, Any]],
    public_key: Ed25519PublicKey | None,
    key_problem: str = "",
) -> AuditVerification:
    """Check ``entries`` (in stored order, each with the ENTRY_FIELDS and entry_hash) and ``checkpoints``.

    ``public_key`` is the public half of the audit signing key; when it is unavailable pass None and say why in
    ``key_problem``. Stops at the first problem in seq order: a missing, misplaced or altered entry; a checkpoint
    whose key or signature does not verify, or whose head hash is not the hash of the entry at its count; a trail
    shorter than a checkpoint vouches for (truncation). Iterating ``entries`` may itself raise :class:`Problem`.
    """
    walk = _Checkpoints(checkpoints, public_key, key_problem)
    count, head = 0, ZERO_HASH
    try:
        walk.reach(count, head)
        for entry in entries:
            _check_entry(entry, count + 1, head)
            count, head = count + 1, entry["entry_hash"]
            walk.reach(count, head)
        walk.finish(count)
    except Problem as problem:
        return AuditVerification(False, count, len(walk.pending), problem.seq, problem.message)
    return AuditVerification(True, count, len(walk.pending), None, "")


def _json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value or the parse error) of each non-blank line; lines end at '\\n' only."""
    with path.open("rb") as stream:
        for number, line in enumerate(stream, start=1):
            if line.strip():
                try:
                    yield number, json.loads(line.decode("utf-8"))
                except ValueError as error:  # UnicodeDecodeError and JSONDecodeError
                    yield number, error


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_entries(path: Path) -> Iterator[dict]:
    """The entries of an exported ``audit.jsonl``; a malformed line raises :class:`Problem` where it stands."""
    fields = set(ENTRY_FIELDS) | {"entry_hash"}
    for expected_seq, (number, value) in enumerate(_json_lines(path), start=1):
        if isinstance(value, ValueError):
            raise Problem(expected_seq, f"{path.name} line {number} is not valid JSON: {value}")
        if not isinstance(value, dict) or set(value) != fields or not _is_int(value["seq"]):
            raise Problem(
                expected_seq,
                f"{path.name} line {number} is not an entry: it needs exactly {sorted(fields)}, seq an integer",
            )
        yield value


HEAD_FIELDS = frozenset((*CHECKPOINT_FIELDS, "signature"))
"""The fields of a signed head: a checkpoint as exported, as a witness holds it."""


def head_problem(value: Any) -> str:
    """What makes ``value`` not a signed head in form ('' when it is one); the signature is not checked here."""
    if not isinstance(value, dict) or set(value) != HEAD_FIELDS:
        return f"it needs exactly {sorted(HEAD_FIELDS)}"
    if not _is_int(value["entry_count"]) or value["entry_count"] < 0:
        return "entry_count must be a whole number, 0 or more"
    if not all(isinstance(value[name], str) for name in HEAD_FIELDS - {"entry_count"}):
        return "head_hash, signed_at, key_id and signature must be text"
    return ""


def read_checkpoints(path: Path) -> list[dict]:
    """The signed heads in a JSON-lines file (an export's ``checkpoints.jsonl``, a witness's heads); a malformed
    line raises :class:`Problem`."""
    checkpoints = []
    for number, value in _json_lines(path):
        if isinstance(value, ValueError):
            raise Problem(None, f"{path.name} line {number} is not valid JSON: {value}")
        problem = head_problem(value)
        if problem:
            raise Problem(None, f"{path.name} line {number} is not a checkpoint: {problem}")
        checkpoints.append(value)
    return checkpoints


def read_public_key(path: Path) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM file."""
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except UnsupportedAlgorithm as error:
        raise ValueError(f"{path}: {error}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path} is not an Ed25519 public key")
    return key


def verify_folder(folder: Path, public_key: Ed25519PublicKey) -> AuditVerification:
    """Check the trail exported in ``folder`` against ``public_key``."""
    try:
        checkpoints = read_checkpoints(folder / CHECKPOINTS_FILE)
    except Problem as problem:
        return AuditVerification(False, 0, 0, problem.seq, problem.message)
    return check_trail(read_entries(folder / ENTRIES_FILE), checkpoints, public_key)


def main(argv: list[str] | None = None) -> int:
    """Print OK or the first problem; exit 0 when the trail verifies, 1 when it does not, 2 on unreadable files."""
    parser = argparse.ArgumentParser(description="Verify an exported facetrail audit trail.")
    parser.add_argument(
        "folder", nargs="?", type=Path, default=Path(__file__).resolve().parent,
        help="the export folder (default: the folder this script is in)",
    )
    parser.add_argument(
        "--public-key", type=Path, default=None,
        help=f"the audit public key, obtained separately (default: FOLDER/{PUBLIC_KEY_FILE})",
    )
    args = parser.parse_args(argv)
    try:
        public_key = read_public_key(args.public_key or args.folder / PUBLIC_KEY_FILE)
        result = verify_folder(args.folder, public_key)
    except (OSError, ValueError) as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 2
    if not result.ok:
        print(f"FAILED: {result.problem}")
        return 1
    print(
        f"OK: {result.entries} entries and {result.checkpoints} checkpoints verified; "
        f"signing key id {public_key_id(public_key)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
