"""The tamper-evident audit trail: hash-chained entries and signed checkpoints.

Every entry holds the SHA-256 of the one before it (``prev_hash``) and its own
hash over a canonical serialization (:func:`canonical_entry`), so editing,
removing, inserting or reordering entries breaks the chain. Every
``checkpoint_every`` entries, and whenever :meth:`AuditTrail.checkpoint` is
called, and when the last checkpoint is older than ``checkpoint_minutes``, the
trail's length and head hash are signed with an Ed25519 key kept outside the
database (``DATA/keys/audit-signing-key.pem`` or ``FACETRAIL_AUDIT_KEY_FILE``).
Each signed checkpoint (a *head*) is handed, after its transaction commits, to
the witnesses (``witness.py``): keepers of heads outside the database, so that a
database administrator who cuts or rewrites entries and deletes the checkpoints
that vouched for them is still caught. Appends are serialized across processes
(a file lock on SQLite, an advisory lock on PostgreSQL), so the chain stays
linear.

Verification (:meth:`AuditTrail.verify`) runs the same code as the standalone
``verify_audit.py`` that :meth:`AuditTrail.export` copies beside the exported
files, over the database and the heads every witness holds.

Why one module: appending, signing, delivering heads to witnesses, verifying and
exporting all rest on one discipline (the audit lock held from the first read of
the head to the commit, heads delivered only after it, checkpoints read before
entries): kept together it is visible in one place. The serialization and the
checks live in ``verify_audit.py`` (which outside parties run alone), the
witnesses in ``witness.py``.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import secrets
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from filelock import FileLock, Timeout
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from facetrail.accountability.schema import AuditCheckpointRecord, AuditEntryRecord
from facetrail.accountability.verify_audit import (
    CHECKPOINT_FIELDS,
    CHECKPOINTS_FILE,
    ENTRIES_FILE,
    ENTRY_FIELDS,
    PUBLIC_KEY_FILE,
    ZERO_HASH,
    AuditVerification,
    canonical_checkpoint,
    canonical_entry,
    canonical_json,
    check_trail,
    public_key_id,
)
from facetrail.accountability.witness import FileWitness, Witness, WitnessRefused, WitnessUnavailable
from facetrail.datadir import DataDir
from facetrail.errors import AuditError
from facetrail.store import utcnow

__all__ = ["AuditTrail", "AuditVerification", "canonical_checkpoint", "canonical_entry"]

KEY_FILE_ENV = "FACETRAIL_AUDIT_KEY_FILE"
KEY_FILE_NAME = "audit-signing-key.pem"
LOCK_FILE_NAME = "audit.lock"
ADVISORY_LOCK_KEY = 0x66745F6175646974
"""The pg_advisory_xact_lock key that serializes appends on PostgreSQL ("ft_audit" in ASCII)."""
LOCK_TIMEOUT_SECONDS = 60
"""How long an append waits for the audit lock before giving up with an AuditError."""
VERIFIER_FILE = "verify_audit.py"
README_FILE = "README.txt"

_ENTRY_COLUMNS = [getattr(AuditEntryRecord, name) for name in (*ENTRY_FIELDS, "entry_hash")]
_CHECKPOINT_COLUMNS = [getattr(AuditCheckpointRecord, name) for name in (*CHECKPOINT_FIELDS, "signature")]
_CHECKPOINT_ORDER = (AuditCheckpointRecord.entry_count, AuditCheckpointRecord.signed_at, AuditCheckpointRecord.id)
_LIMITS = {"actor": 100, "action": 60, "target": 200}
_TRANSACTION_OWNER = "facetrail.audit.trail"
"""``Session.info`` key naming the AuditTrail whose lock the session's transaction holds."""
_SIGNED = "facetrail.audit.signed"
"""``Session.info`` key listing the checkpoints signed in the session's transaction, handed to the witnesses after
its commit."""
_STREAM_BATCH = 1000
_LOCK_POLL_SECONDS = 0.002
TIMER_SECONDS = 60.0
"""How often a server's checkpoint timer looks for entries left unsigned longer than ``checkpoint_minutes``."""

logger = logging.getLogger("facetrail.audit")


def _timestamp() -> str:
    return _iso(utcnow())


def _iso(moment: dt.datetime) -> str:
    """A time as an entry's ``recorded_at`` holds it: ISO 8601 in UTC, to the microsecond."""
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="microseconds")


def _checked_text(name: str, value: str, required: bool) -> str:
    limit = _LIMITS[name]
    if not isinstance(value, str) or (required and not value) or len(value) > limit or "\x00" in value:
        raise AuditError(f"audit {name} must be text of {int(required)} to {limit} characters without NUL: {value!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise AuditError(f"audit {name} is not valid Unicode: {value!r}") from None
    return value


def _checked_details(details: dict[str, Any] | None) -> dict[str, Any]:
    """``details`` as stored and read back: plain JSON, so the hash of what is read equals the hash written."""
    if details is None:
        return {}
    if not isinstance(details, dict):
        raise AuditError(f"audit details must be a dict, not {type(details).__name__}")
    try:
        serialized = json.dumps(details, allow_nan=False, ensure_ascii=False)
        serialized.encode("utf-8")
    except (TypeError, ValueError) as error:  # unserializable values, NaN or infinity, lone surrogates
        raise AuditError(f"audit details must be finite JSON: {error}") from None
    return json.loads(serialized, object_pairs_hook=_distinct_keys)


def _distinct_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Refuse keys that become the same text in JSON (e.g. 1 and "1"): one value would be silently lost."""
    value = dict(pairs)
    if len(value) != len(pairs):
        raise AuditError(f"audit details have keys that are the same in JSON: {sorted(key for key, _ in pairs)}")
    return value


def _read_signing_key(path: Path, label: str = "audit signing key") -> Ed25519PrivateKey:
    """The Ed25519 private key in ``path``; FileNotFoundError when there is none, AuditError (naming ``label``) when
    unusable."""
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as error:
        raise AuditError(f"cannot read the {label} {path}: {error.strerror}") from None
    if os.name == "posix" and mode & 0o077:
        raise AuditError(f"the {label} {path} is open to other users (mode {mode & 0o777:o}); chmod it 600")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:
        raise AuditError(f"{path} is not an unencrypted PEM private key: {error}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditError(f"{path} is not an Ed25519 private key")
    return key


def _create_signing_key(path: Path, label: str) -> Ed25519PrivateKey:
    """Write a new key to ``path`` (mode 0600) unless another process gets there first; return the key there."""
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as stream:
            os.fchmod(stream.fileno(), 0o600)
            stream.write(pem)
            stream.flush()
            os.fsync(stream.fileno())
        try:
            os.link(temporary, path)  # never replaces a key another process has just created
        except FileExistsError:
            pass
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as error:
        raise AuditError(f"cannot create the {label} {path}: {error}") from None
    finally:
        temporary.unlink(missing_ok=True)
    return _read_signing_key(path, label)


def signing_key_path(datadir: DataDir) -> Path:
    """Where the audit trail of ``datadir`` keeps its signing key: ``FACETRAIL_AUDIT_KEY_FILE``, else
    ``DATA/keys/audit-signing-key.pem``."""
    return Path(os.environ.get(KEY_FILE_ENV) or datadir.keys_dir / KEY_FILE_NAME)


def signing_key(path: Path, label: str = "audit signing key") -> Ed25519PrivateKey:
    """The Ed25519 private key in ``path``, created (mode 0600) on first use; AuditError naming ``label`` when the
    file is unusable (unreadable, open to other users, not an Ed25519 PEM key). The audit trail's key, and a witness's
    (``facetrail.witness``)."""
    try:
        return _read_signing_key(path, label)
    except FileNotFoundError:
        return _create_signing_key(path, label)


_README = """\
facetrail audit trail export
============================

Exported at {exported_at}: {entries} entries, {checkpoints} signed checkpoints.

Files
-----
audit.jsonl           one audit entry per line, in order: seq, recorded_at (UTC), actor,
                      action, target, details, prev_hash and entry_hash.
checkpoints.jsonl     signed statements "the trail had entry_count entries and its last
                      entry's hash was head_hash", one per line.
audit-public-key.pem  the Ed25519 public key the checkpoints are signed with.
                      Its key id (SHA-256 of the raw 32-byte key) is
                      {key_id}
verify_audit.py       a self-contained verifier (Python 3.8+ and the 'cryptography' package).

How to verify
-------------
1. Obtain the audit key id from the agency through a channel other than this
   export (for example a signed letter) and check that it is the key id above.
   Otherwise whoever produced this export could have signed it with a key of
   their own. If you hold the public key itself, pass it with --public-key.
2. Install the one dependency:   python3 -m pip install cryptography
3. Run, in this folder:          python3 verify_audit.py
   (or: python3 verify_audit.py FOLDER --public-key KEY.pem)

The script prints "OK: ..." and exits 0 when every entry's hash is correct,
every entry links to the one before it (entry 1 to 64 zeros), every checkpoint
is signed by the key, and the entry at each checkpoint's count has the hash the
checkpoint signed. Otherwise it prints "FAILED: " and the first problem, naming
the entry (seq) concerned, and exits 1.

Checking against heads you kept
-------------------------------
A database administrator can cut entries off the end, or rewrite entries and
re-hash the chain, and delete the checkpoints that vouched for them: the export
is then consistent on its own. It cannot agree with a signed head someone else
kept. Give the verifier the heads you hold, each file as --heads (repeatable):
checkpoints.jsonl of an export you received earlier, or a copy of the agency's
witness file (heads.jsonl, kept outside its database):

   python3 verify_audit.py --heads EARLIER/checkpoints.jsonl --heads heads.jsonl \
       --checkpoint-every {checkpoint_every}

A kept head beyond the export's last entry means entries were removed; a kept
head whose hash is not the hash of the entry at its count means the entries up
to it were rewritten; with --checkpoint-every (the agency's setting, {checkpoint_every}
when this export was made), that many entries without a checkpoint means
checkpoints were deleted. The kept heads' signatures are checked too. Lines
"NOTE: ..." name the export's checkpoints a heads file does not hold (signed
after you kept it): not a problem.

What is hashed
--------------
entry_hash = SHA-256 of the UTF-8 bytes of
  json.dumps({{"seq", "recorded_at", "actor", "action", "target", "details", "prev_hash"}},
             sort_keys=True, separators=(",", ":"), ensure_ascii=False)
A checkpoint's signature (base64) is the Ed25519 signature of the same
serialization of {{"entry_count", "head_hash", "signed_at", "key_id"}}.

The last checkpoint was signed when this export was made, so it vouches for
every entry in it. Keep this export (or at least checkpoints.jsonl): checking a
later export against it (--heads) shows whether entries were later removed or
rewritten.
"""


class CheckpointTimer(threading.Thread):
    """A server's background thread: every ``interval`` seconds, signs a checkpoint when one is due (an idle server
    still signs its last entries within ``checkpoint_minutes``) and retries witnesses a delivery failed to; woken
    (``wake``), it hands the newest heads to the witnesses reached over the network, so a slow or unreachable one
    never holds up a request. At start it catches every witness up (heads a crash between commit and delivery left
    behind)."""

    def __init__(self, trail: AuditTrail, interval: float) -> None:
        super().__init__(name="facetrail-audit-checkpoints", daemon=True)
        self.trail = trail
        self.interval = interval
        self._stopped = threading.Event()
        self._woken = threading.Event()

    def run(self) -> None:
        self.trail.publish()
        while not self._stopped.is_set():
            woken = self._woken.wait(self.interval)
            self._woken.clear()  # before delivering: a wake-up during delivery makes one more round
            if self._stopped.is_set():
                break
            try:
                self.trail.checkpoint_if_due()
            except Exception:  # noqa: BLE001 - a database hiccup must not end the timer; the next tick retries
                logger.exception("the audit checkpoint timer could not sign a checkpoint")
            self.trail.publish(only_behind=not woken)

    def wake(self) -> None:
        """Deliver the heads just committed now, in this thread, rather than at the next tick."""
        self._woken.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread and wait (at most ``timeout`` seconds) for it to finish its tick."""
        self._stopped.set()
        self._woken.set()
        if self.is_alive():
            self.join(timeout)


class AuditTrail:
    """The audit trail of one facetrail store: append, checkpoint, verify, export and browse."""

    def __init__(
        self, engine: Engine, sessions: sessionmaker, datadir: DataDir, checkpoint_every: int = 100,
        checkpoint_minutes: float = 5.0, witnesses: Sequence[Witness] = (),
    ) -> None:
        """``sessions`` should keep objects usable after commit (as :func:`facetrail.store.session_factory` does);
        every checkpoint signed is handed to each of ``witnesses`` (``witness.open_witnesses`` builds the configured
        ones)."""
        if engine.dialect.name not in ("sqlite", "postgresql"):
            raise AuditError(f"the audit trail needs SQLite or PostgreSQL, not {engine.dialect.name}")
        if not isinstance(checkpoint_every, int) or checkpoint_every < 1:
            raise AuditError(f"checkpoint_every must be a positive whole number, not {checkpoint_every!r}")
        if not isinstance(checkpoint_minutes, (int, float)) or not checkpoint_minutes > 0:
            raise AuditError(f"checkpoint_minutes must be a number above 0, not {checkpoint_minutes!r}")
        self.engine = engine
        self.sessions = sessions
        self.datadir = datadir
        self.checkpoint_every = checkpoint_every
        self.checkpoint_age = dt.timedelta(minutes=checkpoint_minutes)
        self.witnesses = list(witnesses)
        self._behind: set[str] = set()
        """Names of the witnesses the last delivery to failed: the timer retries them."""
        self._timer: CheckpointTimer | None = None
        self.key_path = signing_key_path(datadir)
        self._file_lock: FileLock | None = None
        if engine.dialect.name == "sqlite":
            datadir.locks_dir.mkdir(parents=True, exist_ok=True)
            self._file_lock = FileLock(str(datadir.locks_dir / LOCK_FILE_NAME))

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Hold the file lock (SQLite); on PostgreSQL the advisory lock is taken inside the transaction."""
        if self._file_lock is None:
            yield
            return
        try:
            self._file_lock.acquire(timeout=LOCK_TIMEOUT_SECONDS, poll_interval=_LOCK_POLL_SECONDS)
        except Timeout:
            raise AuditError(
                f"waited {LOCK_TIMEOUT_SECONDS} s for the audit lock {self._file_lock.lock_file}; "
                "another process holds it"
            ) from None
        try:
            yield
        finally:
            self._file_lock.release()

    def _lock_database(self, session: Session) -> None:
        if self.engine.dialect.name != "postgresql":
            return
        timeout = f"{LOCK_TIMEOUT_SECONDS}s"
        session.execute(text("SELECT set_config('lock_timeout', :timeout, true)"), {"timeout": timeout})
        try:
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
        except OperationalError as error:
            if getattr(error.orig, "sqlstate", None) == "55P03":  # lock_not_available
                raise AuditError(
                    f"waited {LOCK_TIMEOUT_SECONDS} s for the audit lock; another transaction holds it"
                ) from None
            raise

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in which audit entries, and the records they describe, are written; exclusive across processes.

        SQLite: the file lock ``DATA/locks/audit.lock`` is held for the whole transaction. PostgreSQL:
        ``pg_advisory_xact_lock`` is taken first thing (under a ``lock_timeout`` of LOCK_TIMEOUT_SECONDS, which
        stays in force for the transaction). Commits on normal exit, rolls back on an exception.
        """
        signed: list[int] = []
        with self._exclusive(), self.sessions() as session, session.begin():
            self._lock_database(session)
            session.info[_TRANSACTION_OWNER] = self
            session.info[_SIGNED] = signed
            try:
                yield session
            finally:
                session.info.pop(_TRANSACTION_OWNER, None)
                session.info.pop(_SIGNED, None)
        if signed:  # committed: only now may a witness hold the heads
            self._hand_over(signed)

    @staticmethod
    def _head(session: Session) -> tuple[int, str]:
        """(seq, entry_hash) of the last entry; (0, 64 zeros) for an empty trail."""
        row = session.execute(
            select(AuditEntryRecord.seq, AuditEntryRecord.entry_hash).order_by(AuditEntryRecord.seq.desc()).limit(1)
        ).first()
        return (row.seq, row.entry_hash) if row else (0, ZERO_HASH)

    def record(
        self, session: Session, actor: str, action: str, target: str = "", details: dict[str, Any] | None = None
    ) -> AuditEntryRecord:
        """Append one entry in a session from :meth:`transaction`; every ``checkpoint_every``-th, and the first after
        the last checkpoint grew older than ``checkpoint_minutes``, signs a checkpoint.

        Refuses (AuditError) empty or over-long actor/action, over-long target, and details that are not a dict
        of finite JSON values.
        """
        if session.info.get(_TRANSACTION_OWNER) is not self:
            raise AuditError("audit entries can only be recorded in a session from this AuditTrail's transaction()")
        fields = {
            "recorded_at": _timestamp(),
            "actor": _checked_text("actor", actor, required=True),
            "action": _checked_text("action", action, required=True),
            "target": _checked_text("target", target, required=False),
            "details": _checked_details(details),
        }
        head_seq, head_hash = self._head(session)
        fields.update(seq=head_seq + 1, prev_hash=head_hash)
        entry = AuditEntryRecord(**fields, entry_hash=hashlib.sha256(canonical_entry(**fields)).hexdigest())
        session.add(entry)
        session.flush()
        if entry.seq % self.checkpoint_every == 0 or self._due(session, entry.seq):
            self._sign(session, entry.seq, entry.entry_hash)
        return entry

    def _due(self, session: Session, head_seq: int) -> bool:
        """Whether entries up to ``head_seq`` are unsigned and the last checkpoint (or, before any, the first entry)
        is older than ``checkpoint_minutes``."""
        last = session.execute(
            select(AuditCheckpointRecord.entry_count, AuditCheckpointRecord.signed_at)
            .order_by(AuditCheckpointRecord.id.desc()).limit(1)
        ).first()
        if last is not None and last.entry_count >= head_seq:
            return False
        since = last.signed_at if last is not None else session.scalar(
            select(AuditEntryRecord.recorded_at).where(AuditEntryRecord.seq == 1)
        )
        return since is not None and utcnow() - dt.datetime.fromisoformat(since) >= self.checkpoint_age

    def append(
        self, actor: str, action: str, target: str = "", details: dict[str, Any] | None = None
    ) -> int:
        """Record one entry in a transaction of its own; returns its seq."""
        with self.transaction() as session:
            return self.record(session, actor, action, target, details).seq

    def _signing_key(self) -> Ed25519PrivateKey:
        """The audit signing key, created (mode 0600, outside the database) on first use."""
        return signing_key(self.key_path)

    def _sign(self, session: Session, entry_count: int, head_hash: str) -> AuditCheckpointRecord:
        key = self._signing_key()
        key_id = public_key_id(key.public_key())
        signed_at = _timestamp()
        signature = key.sign(canonical_checkpoint(entry_count, head_hash, signed_at, key_id))
        checkpoint = AuditCheckpointRecord(
            entry_count=entry_count,
            head_hash=head_hash,
            signed_at=signed_at,
            key_id=key_id,
            signature=base64.b64encode(signature).decode("ascii"),
        )
        session.add(checkpoint)
        session.flush()
        session.info[_SIGNED].append(entry_count)
        return checkpoint

    def checkpoint(self) -> AuditCheckpointRecord:
        """Sign the trail's current length and head hash now."""
        with self.transaction() as session:
            return self._sign(session, *self._head(session))

    def checkpoint_if_due(self) -> AuditCheckpointRecord | None:
        """Sign the head if entries were added since the last checkpoint and it is older than
        ``checkpoint_minutes`` (what a server's timer calls, so an idle server signs its last entries too)."""
        with self.sessions() as session:  # looked at without the audit lock first: usually nothing is due
            if not self._due(session, self._head(session)[0]):
                return None
        with self.transaction() as session:
            head_seq, head_hash = self._head(session)
            return self._sign(session, head_seq, head_hash) if self._due(session, head_seq) else None

    def start_timer(self, interval: float | None = None) -> CheckpointTimer:
        """Start a background thread that signs due checkpoints and retries witnesses every ``interval`` seconds
        (default TIMER_SECONDS); ``stop()`` it at shutdown."""
        timer = CheckpointTimer(self, TIMER_SECONDS if interval is None else interval)
        timer.start()
        self._timer = timer
        return timer

    def _hand_over(self, signed: Sequence[int]) -> None:
        """Deliver the heads of the ``signed`` counts just committed: to every witness in the caller's thread, except
        where a timer runs (a server), which takes the witnesses reached over the network, so a request never waits
        on one; the file witness is written before the caller goes on."""
        timer = self._timer
        if timer is None or not timer.is_alive():
            self.publish(signed=signed)
            return
        nearby = [witness for witness in self.witnesses if isinstance(witness, FileWitness)]
        self.publish(signed=signed, among=nearby)
        if len(nearby) < len(self.witnesses):
            timer.wake()

    def key_id(self) -> str:
        """The key id of the audit signing key (AuditError when it is missing or unusable)."""
        try:
            return public_key_id(_read_signing_key(self.key_path).public_key())
        except FileNotFoundError:
            raise AuditError(f"the audit signing key {self.key_path} does not exist") from None

    def publish(
        self, only_behind: bool = False, signed: Sequence[int] = (), among: Sequence[Witness] | None = None
    ) -> None:
        """Catch every witness up (or only those a delivery failed to, ``only_behind``): ask for the latest head it
        holds and submit every checkpoint of the database after it, in order, and the heads of the ``signed``
        counts just committed even when the witness holds heads beyond them (it then refuses one it disagrees
        with); to ``among`` only, when given. Never raises: a witness that cannot take them now is logged and retried
        later; one that refuses a head is logged as an error (the trail disagrees with what it holds: run ``facetrail
        audit verify``)."""
        candidates = self.witnesses if among is None else among
        witnesses = [w for w in candidates if not only_behind or w.name in self._behind]
        if not witnesses or not (self.key_path.exists() or self.checkpoints_signed()):
            return  # nothing signed yet
        try:
            key_id = self.key_id()
        except AuditError as error:
            logger.error("cannot hand signed audit heads to the witnesses: %s", error)
            return
        for witness in witnesses:
            try:
                held = witness.heads(key_id)
                latest = held[-1]["entry_count"] if held else -1
                for head in self._checkpoints_after(min(latest, min(signed, default=latest + 1) - 1)):
                    witness.submit(head)
            except WitnessRefused as error:
                self._behind.add(witness.name)
                logger.error("audit witness %s refused a signed head; run 'facetrail audit verify': %s",
                             witness.name, error)
            except Exception as error:  # noqa: BLE001 - committed already: a witness's failure is never the caller's
                self._behind.add(witness.name)
                logger.warning("audit witness %s is unavailable; the heads it lacks are handed to it later: %s",
                               witness.name, error, exc_info=not isinstance(error, WitnessUnavailable))
            else:
                self._behind.discard(witness.name)

    def _checkpoints_after(self, entry_count: int) -> list[dict[str, Any]]:
        """The database's checkpoints of more than ``entry_count`` entries, the first signed of each count, in
        order."""
        with self.sessions() as session:
            rows = session.execute(
                select(*_CHECKPOINT_COLUMNS).where(AuditCheckpointRecord.entry_count > entry_count)
                .order_by(*_CHECKPOINT_ORDER)
            ).mappings().all()
        firsts: dict[int, dict[str, Any]] = {}
        for row in rows:
            firsts.setdefault(row["entry_count"], dict(row))
        return list(firsts.values())

    def verify(self) -> AuditVerification:
        """Check every entry's hash and link and every checkpoint (signature, key, head hash, length), and the trail
        against the heads every witness holds, with checkpoints at least every ``checkpoint_every`` entries; see
        check_trail. Checkpoints a witness lacks are reported in ``unwitnessed``, witnesses that cannot be read in
        ``unreachable``.

        Reads the witnesses' heads, then the checkpoints, then the entries, so appends made meanwhile cannot look
        like a truncation. A missing or unusable signing key is reported as a problem at the first checkpoint.
        """
        public_key, key_problem = None, ""
        try:
            public_key = _read_signing_key(self.key_path).public_key()
        except FileNotFoundError:
            key_problem = f"the audit signing key {self.key_path} does not exist"
        except AuditError as error:
            key_problem = str(error)
        witnessed: dict[str, list[dict]] = {}
        unreachable: dict[str, str] = {}
        for witness in self.witnesses if public_key is not None else ():
            try:
                witnessed[witness.name] = witness.heads(public_key_id(public_key))
            except WitnessUnavailable as error:
                unreachable[witness.name] = str(error)
        with self.sessions() as session:
            checkpoints = session.execute(select(*_CHECKPOINT_COLUMNS).order_by(*_CHECKPOINT_ORDER)).mappings().all()
            entries = session.execute(
                select(*_ENTRY_COLUMNS).order_by(AuditEntryRecord.seq).execution_options(yield_per=_STREAM_BATCH)
            ).mappings()
            result = check_trail(entries, checkpoints, public_key, key_problem, witnessed, self.checkpoint_every)
        return dataclasses.replace(result, unreachable=unreachable)

    def export(self, folder: Path) -> Path:
        """Write the trail, as stored, for verification without facetrail; returns ``folder``.

        First signs a checkpoint of the current head, so the export's last checkpoint vouches for all of it. Writes
        ``audit.jsonl``, ``checkpoints.jsonl``, ``audit-public-key.pem``, ``verify_audit.py`` and ``README.txt``
        (replacing files of those names).
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.checkpoint()
        public_key = self._signing_key().public_key()
        with self.sessions() as session:
            checkpoints = session.execute(select(*_CHECKPOINT_COLUMNS).order_by(*_CHECKPOINT_ORDER)).mappings().all()
            (folder / CHECKPOINTS_FILE).write_bytes(b"".join(canonical_json(dict(c)) + b"\n" for c in checkpoints))
            entries = session.execute(
                select(*_ENTRY_COLUMNS).order_by(AuditEntryRecord.seq).execution_options(yield_per=_STREAM_BATCH)
            ).mappings()
            count = 0
            with (folder / ENTRIES_FILE).open("wb") as stream:
                for entry in entries:
                    stream.write(canonical_json(dict(entry)) + b"\n")
                    count += 1
        (folder / PUBLIC_KEY_FILE).write_bytes(
            public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        (folder / VERIFIER_FILE).write_bytes(resources.files(__package__).joinpath(VERIFIER_FILE).read_bytes())
        (folder / README_FILE).write_text(
            _README.format(
                exported_at=_timestamp(), entries=count, checkpoints=len(checkpoints), key_id=public_key_id(public_key),
                checkpoint_every=self.checkpoint_every,
            ),
            encoding="utf-8",
        )
        return folder

    def checkpoints_signed(self) -> bool:
        """Whether any checkpoint has been signed (so the audit signing key must exist)."""
        with self.sessions() as session:
            return session.scalar(select(AuditCheckpointRecord.id).limit(1)) is not None

    def length(self) -> int:
        """The number of the last entry (entries are numbered from 1; 0 for an empty trail)."""
        with self.sessions() as session:
            return self._head(session)[0]

    def entries(
        self, since_seq: int = 0, limit: int | None = None, actor: str | None = None, action: str | None = None,
        newest_first: bool = False, before_seq: int | None = None, target: str | None = None,
        recorded_since: dt.datetime | None = None,
    ) -> list[dict[str, Any]]:
        """Entries after ``since_seq`` (and before ``before_seq``) in order (or newest first), only ``actor``'s, of
        ``action``, about ``target`` and recorded at or after ``recorded_since`` where given, at most ``limit``."""
        order = AuditEntryRecord.seq.desc() if newest_first else AuditEntryRecord.seq
        query = select(*_ENTRY_COLUMNS).where(AuditEntryRecord.seq > since_seq).order_by(order)
        for column, value in ((AuditEntryRecord.actor, actor), (AuditEntryRecord.action, action),
                              (AuditEntryRecord.target, target)):
            if value is not None:
                query = query.where(column == value)
        if before_seq is not None:
            query = query.where(AuditEntryRecord.seq < before_seq)
        if recorded_since is not None:  # recorded_at is ISO 8601 UTC text of one width: it sorts as the times do
            query = query.where(AuditEntryRecord.recorded_at >= _iso(recorded_since))
        if limit is not None:
            query = query.limit(limit)
        with self.sessions() as session:
            return [dict(row) for row in session.execute(query).mappings()]

    def actions(self) -> list[str]:
        """The actions the trail holds entries of, in alphabetical order."""
        with self.sessions() as session:
            return list(session.scalars(select(AuditEntryRecord.action).distinct().order_by(AuditEntryRecord.action)))

    def sign_document(self, purpose: str, document: bytes) -> dict[str, str]:
        """Sign ``document`` (a backup's manifest, say) with the audit signing key: ``{"key_id", "signature"}``
        (Ed25519, base64, over the canonical JSON of ``{"purpose", "sha256"}``, so a signature made for one purpose
        passes for no other, nor for a checkpoint). Check it with :meth:`document_problem`."""
        key = self._signing_key()
        signature = key.sign(_document_payload(purpose, document))
        return {"key_id": public_key_id(key.public_key()), "signature": base64.b64encode(signature).decode("ascii")}

    @staticmethod
    def document_problem(key_path: Path, purpose: str, document: bytes, signed: Any) -> str:
        """Why ``signed`` is not the :meth:`sign_document` signature of ``document`` for ``purpose`` by the audit
        signing key in ``key_path`` ("" when it is)."""
        try:
            public_key = _read_signing_key(key_path).public_key()
        except FileNotFoundError:
            return f"the audit signing key {key_path} does not exist"
        except AuditError as error:
            return str(error)
        if not isinstance(signed, dict) or not isinstance(signed.get("signature"), str):
            return "it is not signed"
        if signed.get("key_id") != public_key_id(public_key):
            return f"it was signed by another key (id {str(signed.get('key_id'))[:64]!r}), not this audit signing key"
        try:
            public_key.verify(base64.b64decode(signed["signature"], validate=True),
                              _document_payload(purpose, document))
        except (InvalidSignature, ValueError):
            return "its signature does not verify: it was changed after it was signed"
        return ""


def _document_payload(purpose: str, document: bytes) -> bytes:
    """What a document's signature is made over (``AuditTrail.sign_document``): the canonical JSON of its purpose
    and its SHA-256."""
    return canonical_json({"purpose": purpose, "sha256": hashlib.sha256(document).hexdigest()})
