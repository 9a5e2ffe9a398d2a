"""Verify an exported facetrail audit trail, without facetrail.

Usage (in the export folder, or naming it)::

    python3 verify_audit.py [FOLDER] [--public-key PEM] [--heads FILE ...] [--checkpoint-every N]

Needs only Python 3.8+ and the ``cryptography`` package. Reads ``audit.jsonl``
(one entry per line), ``checkpoints.jsonl`` and ``audit-public-key.pem``;
recomputes every entry's SHA-256 hash and its link to the previous entry;
checks every checkpoint's Ed25519 signature and key id, and that the entry at
each checkpoint's count has the head hash it signed; with ``--heads``, that the
trail agrees with every signed head kept in those files (heads an auditor kept,
or a copy of a witness's file: a head beyond the trail's end means entries were
cut, another hash at its count means they were rewritten). Prints ``OK: ...`` and
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
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
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


def head_signature_verifies(public_key: Ed25519PublicKey, head: Mapping[str, Any]) -> bool:
    """Whether a signed head's (a checkpoint's) signature is ``public_key``'s over its canonical form."""
    payload = canonical_checkpoint(head["entry_count"], head["head_hash"], head["signed_at"], head["key_id"])
    try:
        public_key.verify(base64.b64decode(head["signature"], validate=True), payload)
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


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
    unwitnessed: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    """Per witness, the counts of checkpoints it does not hold yet: a gap (delivery pending), not tampering."""
    unreachable: Mapping[str, str] = field(default_factory=dict)
    """Witnesses whose heads could not be read, and why: the trail was not checked against them."""

    def notes(self) -> list[str]:
        """The gaps and unreadable witnesses, one sentence each (what ``audit verify`` prints below its verdict)."""
        notes = [f"witness {name} could not be read: {reason}" for name, reason in self.unreachable.items()]
        notes += [
            f"witness {name} does not yet hold the heads of {', '.join(map(str, counts))} entries "
            "(signed but not yet delivered: a gap, not tampering)"
            for name, counts in self.unwitnessed.items() if counts
        ]
        return notes


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


def describe_head(head: Mapping[str, Any]) -> str:
    """A signed head in words: its count, when it was signed and its hash."""
    return f"the head of {head['entry_count']} entries signed at {head['signed_at']} (hash {head['head_hash']})"


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

    def check_signature(self, checkpoint: Mapping[str, Any], described: str = "", forged: str = "checkpoint") -> None:
        """Check the key id and signature of a checkpoint (or, ``described``, of a ``forged`` witnessed head)."""
        seq = checkpoint["entry_count"] or None
        described = described or self.describe(checkpoint)
        if self.public_key is None:
            raise Problem(seq, f"{described} cannot be checked: {self.key_problem}")
        if checkpoint["key_id"] != self.key_id:
            raise Problem(
                seq,
                f"{described} names signing key {checkpoint['key_id']}, not the audit signing key "
                f"{self.key_id}: the {forged} was forged or the signing key was replaced",
            )
        if not head_signature_verifies(self.public_key, checkpoint):
            raise Problem(seq, f"the signature of {described} does not verify: the {forged} was forged or edited")

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


class _Witnessed:
    """Heads held by witnesses outside the database, checked as the walk reaches each one's count.

    A witnessed head beyond the trail's end means entries were cut; another hash at its count means the entries up
    to it were rewritten; with ``checkpoint_every``, a stretch of that many entries without a checkpoint in the
    trail means checkpoints were deleted (the trail signs at least every ``checkpoint_every`` entries).
    """

    def __init__(
        self, witnessed: Mapping[str, Sequence[Mapping[str, Any]]], checkpoints: _Checkpoints,
        checkpoint_every: int | None,
    ) -> None:
        own = {
            name: [head for head in heads if head["key_id"] == checkpoints.key_id or checkpoints.public_key is None]
            for name, heads in witnessed.items()
        }
        self.pending = sorted(
            ((head["entry_count"], name, head) for name, heads in own.items() for head in heads),
            key=lambda item: item[0],
        )
        self.held = {name: {head["entry_count"] for head in heads} for name, heads in own.items()}
        self.checkpoints = checkpoints
        self.every = checkpoint_every
        self.next = 0

    @staticmethod
    def describe(name: str, head: Mapping[str, Any]) -> str:
        return f"{describe_head(head)} held by witness {name}"

    def reach(self, count: int, head: str) -> None:
        """The chain is intact up to entry ``count`` (hash ``head``), and the checkpoints up to it are good."""
        while self.next < len(self.pending) and self.pending[self.next][0] <= count:
            _, name, witnessed = self.pending[self.next]
            described = self.describe(name, witnessed)
            self.checkpoints.check_signature(witnessed, described, "head")
            if witnessed["head_hash"] != head:
                raise Problem(
                    count or None,
                    f"entry {count}'s hash {head} differs from {described}: entries up to {count} were rewritten "
                    "after the witness received the head",
                )
            self.next += 1
        covered = self.checkpoints.covered
        if self.every and count - covered >= self.every:
            raise Problem(
                count,
                f"no checkpoint is signed for entries {covered + 1} to {count}, though one is signed at least every "
                f"{self.every} entries: checkpoints were deleted",
            )

    def finish(self, count: int) -> None:
        """The chain ends at entry ``count``: a witnessed head beyond it means entries were removed."""
        if self.next < len(self.pending):
            _, name, witnessed = self.pending[self.next]
            described = self.describe(name, witnessed)
            self.checkpoints.check_signature(witnessed, described, "head")
            raise Problem(
                count + 1,
                f"the trail ends at entry {count}, before {described}: entries {count + 1} to "
                f"{witnessed['entry_count']} have been removed",
            )

    def gaps(self) -> dict[str, tuple[int, ...]]:
        """Per witness, the counts of the trail's checkpoints it does not hold."""
        counts = sorted({checkpoint["entry_count"] for checkpoint in self.checkpoints.pending})
        missing = {name: tuple(count for count in counts if count not in held) for name, held in self.held.items()}
        return {name: gap for name, gap in missing.items() if gap}


def check_trail(
    entries: Iterable[Mapping[str, Any]],
    checkpoints: Iterable[Mapping[str, Any]],
    public_key: Ed25519PublicKey | None,
    key_problem: str = "",
    witnessed: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    checkpoint_every: int | None = None,
) -> AuditVerification:
    """Check ``entries`` (in stored order, each with the ENTRY_FIELDS and entry_hash) and ``checkpoints``, and the
    trail against the heads each witness holds (``witnessed``: witness name -> its heads; heads of another key are
    ignored).

    ``public_key`` is the public half of the audit signing key; when it is unavailable pass None and say why in
    ``key_problem``. Stops at the first problem in seq order: a missing, misplaced or altered entry; a checkpoint
    or witnessed head whose key or signature does not verify, or whose head hash is not the hash of the entry at its
    count; a trail shorter than a checkpoint or a witnessed head vouches for (truncation); with
    ``checkpoint_every``, more entries than that without a checkpoint (deleted). Checkpoints a witness does not hold
    are reported in ``unwitnessed``. Iterating ``entries`` may itself raise :class:`Problem`.
    """
    walk = _Checkpoints(checkpoints, public_key, key_problem)
    witnesses = _Witnessed(witnessed or {}, walk, checkpoint_every)
    count, head = 0, ZERO_HASH
    try:
        walk.reach(count, head)
        witnesses.reach(count, head)
        for entry in entries:
            _check_entry(entry, count + 1, head)
            count, head = count + 1, entry["entry_hash"]
            walk.reach(count, head)
            witnesses.reach(count, head)
        walk.finish(count)
        witnesses.finish(count)
    except Problem as problem:
        return AuditVerification(False, count, len(walk.pending), problem.seq, problem.message)
    return AuditVerification(True, count, len(walk.pending), None, "", witnesses.gaps())


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


def load_public_key(pem: bytes, origin: str) -> Ed25519PublicKey:
    """The Ed25519 public key in ``pem``; ValueError naming ``origin`` when it is not one."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:
        raise ValueError(f"{origin} is not a PEM public key: {error}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{origin} is not an Ed25519 public key (an audit public key is)")
    return key


def read_public_key(path: Path) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM file."""
    return load_public_key(path.read_bytes(), str(path))


def verify_folder(
    folder: Path, public_key: Ed25519PublicKey, heads: Sequence[Path] = (), checkpoint_every: int | None = None
) -> AuditVerification:
    """Check the trail exported in ``folder`` against ``public_key`` and the signed heads kept in the ``heads``
    files (each named as a witness by its path); ValueError when a heads file is malformed."""
    witnessed = {}
    for path in heads:
        try:
            witnessed[str(path)] = read_checkpoints(path)
        except Problem as problem:
            raise ValueError(f"{path}: {problem.message}") from None
    try:
        checkpoints = read_checkpoints(folder / CHECKPOINTS_FILE)
    except Problem as problem:
        return AuditVerification(False, 0, 0, problem.seq, problem.message)
    return check_trail(
        read_entries(folder / ENTRIES_FILE), checkpoints, public_key, witnessed=witnessed,
        checkpoint_every=checkpoint_every,
    )


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
    parser.add_argument(
        "--heads", type=Path, action="append", default=[], metavar="FILE",
        help="signed heads kept earlier (JSON lines: an earlier export's checkpoints.jsonl, a copy of a witness's "
        "heads.jsonl); the export must agree with every one (repeatable)",
    )
    parser.add_argument(
        "--checkpoint-every", type=int, default=None, metavar="N",
        help="the agency's audit.checkpoint_every: N entries without a checkpoint means checkpoints were deleted",
    )
    args = parser.parse_args(argv)
    try:
        public_key = read_public_key(args.public_key or args.folder / PUBLIC_KEY_FILE)
        result = verify_folder(args.folder, public_key, args.heads, args.checkpoint_every)
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
    for note in result.notes():
        print(f"NOTE: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
