"""Witnesses: signed heads of the audit trail kept outside the database's control.

The model is Certificate Transparency (RFC 9162): every checkpoint the trail signs (a *head*: "the trail had
``entry_count`` entries and the last one's hash was ``head_hash``") is handed to one or more witnesses that the
database administrator cannot edit. A hash-chain head at count N commits to every entry up to N, so a trail that
later ends before a witnessed head (entries cut) or has another hash at its count (entries rewritten) is caught by
:meth:`facetrail.accountability.audit.AuditTrail.verify` and by the standalone ``verify_audit.py --heads``.

A head is a checkpoint exactly as exported in ``checkpoints.jsonl``::

    {"entry_count": 200, "head_hash": "<64 hex>", "signed_at": "<UTC ISO time>", "key_id": "<64 hex>",
     "signature": "<base64 Ed25519 signature>"}

:class:`HeadFile` is the storage any witness can keep heads in (for any number of logs, told apart by key id);
:class:`FileWitness` is the built-in witness over one such file in ``audit.witness_dir`` (by default
``DATA/keys/witness/``, which belongs on another volume or host: never inside the database).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from filelock import FileLock, Timeout

from facetrail.accountability.remote_witness import RemoteWitness, receipt_file_name, receipt_shape_problem
from facetrail.accountability.verify_audit import canonical_json, describe_head, head_problem
from facetrail.config import AuditConfig
from facetrail.datadir import DataDir
from facetrail.errors import WitnessRefused, WitnessUnavailable

__all__ = ["FileWitness", "HeadFile", "Witness", "WitnessRefused", "WitnessUnavailable", "open_witnesses"]

HEADS_FILE = "heads.jsonl"
WITNESS_DIR_NAME = "witness"
"""The default witness folder, inside the data directory's keys folder."""
RECEIPTS_DIR_NAME = "receipts"
"""Inside the witness folder: one file per remote witness of the receipts (countersigned heads) it gave."""
LOCK_TIMEOUT_SECONDS = 10


@runtime_checkable
class Witness(Protocol):
    """A keeper of signed heads outside the log's control."""

    name: str
    """How reports name the witness, e.g. ``file /var/witness/heads.jsonl``."""

    def submit(self, head: dict) -> dict | None:
        """Deliver one signed head; return a receipt (a remote witness's countersignature) or None.

        A head whose count and hash the witness already holds is accepted and changes nothing, even below the latest
        it holds (several processes deliver the same heads concurrently). Raises WitnessUnavailable when the witness
        cannot take it now, WitnessRefused when it never will (malformed, or inconsistent with the heads it holds).
        """
        ...

    def heads(self, key_id: str) -> list[dict]:
        """Every head held for the log with that key id, in order of entry_count (WitnessUnavailable if unreadable)."""
        ...


class HeadFile:
    """An append-only, fsync'd JSON-lines file of signed heads, for any number of logs (told apart by key id).

    :meth:`add` refuses a head inconsistent with those held for its log: a count below the latest held (a log
    never shrinks), or a count already held with another hash. A head whose count and hash are already held is
    not stored again. Appends from several processes are serialized by a file lock beside the file; a line left
    torn by a crash mid-write (never acknowledged) is ignored when read and cut off before the next append.
    """

    def __init__(self, path: Path, problem: Callable[[Any], str] = head_problem) -> None:
        """``problem`` says what makes a record unfit to hold ('' when it is fit): by default, not being a signed
        head; a remote witness's receipts (a head and its countersignature) are kept in a HeadFile too."""
        self.path = Path(path)
        self._problem = problem
        self._lock = FileLock(str(self.path.with_name(self.path.name + ".lock")))
        self._guard = threading.Lock()
        self._seen: tuple[int, int, int, int] | None = None
        """The file's identity, size and modification time as last read or written by this object."""
        self._complete = 0
        """The length of the file's complete lines (beyond it, a torn line)."""
        self._heads: dict[str, list[dict]] = {}

    def heads(self, key_id: str) -> list[dict]:
        """The heads held for ``key_id``, in order of entry_count; WitnessUnavailable if the file is unreadable."""
        with self._guard:
            self._refresh()
            return [dict(head) for head in self._heads.get(key_id, [])]

    def add(self, head: Mapping[str, Any]) -> bool:
        """Store ``head`` (fsync'd); False when that count and hash were already held. WitnessRefused when the head
        is malformed or inconsistent, WitnessUnavailable when the file cannot be locked or written."""
        problem = self._problem(head)
        if problem:
            raise WitnessRefused(f"{self.path}: refused a head that is not a signed head: {problem}")
        head = dict(head)
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with self._lock.acquire(timeout=LOCK_TIMEOUT_SECONDS), self._guard:
                self._refresh()
                if not self._consistent(head):
                    return False
                self._append(canonical_json(head) + b"\n")
                self._heads.setdefault(head["key_id"], []).append(head)
        except Timeout:
            raise WitnessUnavailable(f"waited {LOCK_TIMEOUT_SECONDS} s for the witness lock {self._lock.lock_file}") from None
        except OSError as error:
            raise WitnessUnavailable(f"cannot write the witness file {self.path}: {error.strerror or error}") from None
        return True

    def _consistent(self, head: dict) -> bool:
        """True when ``head`` extends what is held; False when it is already held; WitnessRefused otherwise."""
        held = self._heads.get(head["key_id"], [])
        for kept in held:
            if kept["entry_count"] == head["entry_count"]:
                if kept["head_hash"] == head["head_hash"]:
                    return False
                raise WitnessRefused(
                    f"{self.path} holds {describe_head(kept)}, so it refuses another hash {head['head_hash']} for "
                    f"{head['entry_count']} entries: the log was rewritten"
                )
        if held and head["entry_count"] < held[-1]["entry_count"]:
            raise WitnessRefused(
                f"{self.path} holds {describe_head(held[-1])}, so it refuses a head of {head['entry_count']} "
                "entries: the log has shrunk"
            )
        return True

    def _append(self, line: bytes) -> None:
        """Append one line after cutting off a torn last line; fsync the file (and the folder when it is new)."""
        created = not self.path.exists()
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            if self._complete < os.fstat(descriptor).st_size:  # a torn line: a writer died mid-write
                os.ftruncate(descriptor, self._complete)
            os.write(descriptor, line)
            os.fsync(descriptor)
            status = os.fstat(descriptor)
        finally:
            os.close(descriptor)
        if created:
            folder = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
        self._seen, self._complete = _identity(status), status.st_size

    def _refresh(self) -> None:
        """Read the file again unless it is as this object last read or wrote it (any other change, another
        process's append or an edit, is read in full)."""
        try:
            with self.path.open("rb") as stream:
                seen = _identity(os.fstat(stream.fileno()))
                if seen == self._seen:
                    return
                data = stream.read()
        except FileNotFoundError:
            self._seen, self._complete, self._heads = None, 0, {}
            return
        except OSError as error:
            raise WitnessUnavailable(f"cannot read the witness file {self.path}: {error.strerror or error}") from None
        complete = data[: data.rfind(b"\n") + 1]  # a last line without its newline is torn: ignored
        heads: dict[str, list[dict]] = {}
        for number, line in enumerate(complete.split(b"\n")[:-1], start=1):
            if line.strip():
                head = self._parse(line, number)
                heads.setdefault(head["key_id"], []).append(head)
        self._seen, self._complete, self._heads = seen, len(complete), heads

    def _parse(self, line: bytes, number: int) -> dict:
        try:
            head = json.loads(line.decode("utf-8"))
        except ValueError as error:
            raise WitnessUnavailable(f"{self.path} line {number} is not JSON ({error}): the file is damaged") from None
        problem = self._problem(head)
        if problem:
            raise WitnessUnavailable(f"{self.path} line {number} is not a signed head ({problem}): the file is damaged")
        return head


def _identity(status: os.stat_result) -> tuple[int, int, int, int]:
    """What tells one state of a file from another: device, inode, size and modification time."""
    return status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns


class FileWitness:
    """The built-in witness: a :class:`HeadFile` ``heads.jsonl`` in a folder on another volume or host."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.file = HeadFile(self.directory / HEADS_FILE)
        self.name = f"file {self.file.path}"

    def submit(self, head: dict) -> dict | None:
        """Append the head to the file (a no-op when already held); no receipt."""
        self.file.add(head)
        return None

    def heads(self, key_id: str) -> list[dict]:
        """Every head the file holds for ``key_id``, in order of entry_count."""
        return self.file.heads(key_id)


def witness_folder(config: AuditConfig, datadir: DataDir) -> Path:
    """``audit.witness_dir`` (relative to the data directory), by default ``DATA/keys/witness``."""
    return datadir.root / config.witness_dir if config.witness_dir else datadir.keys_dir / WITNESS_DIR_NAME


def open_witnesses(config: AuditConfig, datadir: DataDir) -> list[Witness]:
    """The witnesses of ``config``: the file witness in ``audit.witness_dir``, then one per ``audit.witness_urls``."""
    folder = witness_folder(config, datadir)
    witnesses: list[Witness] = [FileWitness(folder)]
    for url in config.witness_urls:  # each one's receipts are kept beside the file witness's heads
        receipts = HeadFile(folder / RECEIPTS_DIR_NAME / receipt_file_name(url), receipt_shape_problem)
        witnesses.append(RemoteWitness(url, receipts=receipts))
    return witnesses
