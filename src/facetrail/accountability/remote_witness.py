"""A witness in another office, reached over HTTP(S): :class:`RemoteWitness` (one per ``audit.witness_urls`` entry),
and the receipt, the witness's countersignature of a head, which both sides serialize the same way.

The witness service itself is ``facetrail.witness`` (``facetrail witness serve``); this module is the log's side of
the conversation and needs only the standard library's ``urllib`` and ``cryptography``. Requests time out after a few
seconds: an unreachable witness never holds up an append (the caller catches :class:`WitnessUnavailable` and pushes
the missed heads later).
"""

from __future__ import annotations

import base64
import binascii
import http.client
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from facetrail.accountability.verify_audit import HEAD_FIELDS, canonical_json, head_problem, public_key_id
from facetrail.errors import ConfigError, WitnessRefused, WitnessUnavailable

API_PATH = "/witness/v1"
"""Where a witness service answers, below its base URL."""
WITNESS_FIELDS = frozenset(("received_at", "witness_key_id", "countersignature"))
RECEIPT_FIELDS = HEAD_FIELDS | WITNESS_FIELDS
"""A receipt: the head, when the witness received it, the witness's key id, and its signature over the rest."""
TIMEOUT_SECONDS = 3.0
MAX_ANSWER_BYTES = 64 * 1024 * 1024
"""The largest answer read from a witness (the heads of a long trail take a few MB)."""
HEX64 = re.compile(r"[0-9a-f]{64}")
"""A key id or a head hash: 64 lowercase hexadecimal digits."""
UNAVAILABLE_STATUSES = {404, 408, 425, 429}
"""4xx answers that mean "not now" (an unregistered log, a timeout, a rate limit); every 5xx means it too."""


def canonical_receipt(head: Mapping[str, Any], received_at: str, witness_key_id: str) -> bytes:
    """The bytes a witness countersigns: the signed head's fields, ``received_at`` and ``witness_key_id``."""
    return canonical_json(
        {**{name: head[name] for name in HEAD_FIELDS}, "received_at": received_at, "witness_key_id": witness_key_id}
    )


def countersign(head: Mapping[str, Any], key: Ed25519PrivateKey, received_at: str) -> dict[str, Any]:
    """The receipt for ``head``, signed with the witness's ``key``."""
    key_id = public_key_id(key.public_key())
    signature = key.sign(canonical_receipt(head, received_at, key_id))
    return {**{name: head[name] for name in HEAD_FIELDS}, "received_at": received_at, "witness_key_id": key_id,
            "countersignature": base64.b64encode(signature).decode("ascii")}


def receipt_shape_problem(value: Any) -> str:
    """What makes ``value`` not a receipt in form ('' when it is one); the countersignature is not checked here."""
    if not isinstance(value, dict) or set(value) != RECEIPT_FIELDS:
        return f"it needs exactly {sorted(RECEIPT_FIELDS)}"
    if not all(isinstance(value[name], str) for name in WITNESS_FIELDS):
        return f"{', '.join(sorted(WITNESS_FIELDS))} must be text"
    return head_problem({name: value[name] for name in HEAD_FIELDS})


def receipt_problem(receipt: Any, head: Mapping[str, Any], public_key: Ed25519PublicKey) -> str:
    """Why ``receipt`` is not the countersignature of ``head`` by ``public_key`` ('' when it is)."""
    problem = receipt_shape_problem(receipt)
    if problem:
        return f"the answer is not a receipt: {problem}"
    changed = sorted(name for name in HEAD_FIELDS if receipt[name] != head[name])
    if changed:
        return f"the receipt is for another head (it differs in {', '.join(changed)})"
    if receipt["witness_key_id"] != public_key_id(public_key):
        return f"the receipt names witness key {receipt['witness_key_id']}, not the witness's {public_key_id(public_key)}"
    try:
        public_key.verify(base64.b64decode(receipt["countersignature"], validate=True),
                          canonical_receipt(head, receipt["received_at"], receipt["witness_key_id"]))
    except (InvalidSignature, binascii.Error, ValueError, TypeError):
        return "the receipt's countersignature does not verify with the witness's key"
    return ""


def receipt_file_name(url: str) -> str:
    """The name of the file a log keeps a witness's receipts in: its URL's host, port and path, e.g.
    ``witness.example.org_443_ft.jsonl``."""
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return re.sub(r"[^A-Za-z0-9.-]+", "_", f"{parts.hostname}_{port}_{parts.path.strip('/')}").strip("_") + ".jsonl"


class ReceiptStore(Protocol):
    """Where a log keeps the receipts a witness gave (a :class:`facetrail.accountability.witness.HeadFile`)."""

    def add(self, receipt: Mapping[str, Any]) -> bool: ...

    def heads(self, key_id: str) -> list[dict]: ...


class RemoteWitness:
    """The :class:`facetrail.accountability.witness.Witness` protocol over HTTP(S), for a witness service at ``url``.

    ``url`` may end in ``#key=<the witness's key id>``, which pins the witness's key: a witness answering with
    another key is refused. Otherwise the key the witness publishes (``GET /witness/v1/key``) is fetched once and
    used to check every receipt. Each checked receipt is kept in ``receipts`` when given.
    """

    def __init__(self, url: str, timeout: float = TIMEOUT_SECONDS, receipts: ReceiptStore | None = None) -> None:
        parsed = urllib.parse.urlsplit(url)
        pinned = parsed.fragment.removeprefix("key=")
        if (parsed.scheme not in ("http", "https") or not parsed.hostname or parsed.query
                or (parsed.fragment and not HEX64.fullmatch(pinned))):
            raise ConfigError(f"audit.witness_urls: a witness URL is http(s)://host[:port][/path], optionally ending "
                              f"in #key=<the witness's key id, 64 hex digits>; not {url!r}")
        self.url = urllib.parse.urlunsplit(parsed._replace(fragment="")).rstrip("/")
        self.name = self.url
        self.key_id = pinned or None
        self.timeout = timeout
        self.receipts = receipts
        self._public_key: Ed25519PublicKey | None = None

    def submit(self, head: dict) -> dict:
        """Deliver one signed head; return the witness's receipt, checked against its key.

        WitnessUnavailable: the witness cannot be reached, answers 5xx, is rate-limiting, or does not know the log
        yet. WitnessRefused: it refuses the head (bad signature, inconsistent with the heads it holds, malformed), or
        its receipt does not verify.
        """
        receipt = self._call("POST", "/heads", head)
        problem = receipt_problem(receipt, head, self.public_key())
        if problem:
            raise WitnessRefused(f"the witness {self.name} answered the head of {head.get('entry_count')} entries "
                                 f"with a bad receipt: {problem}")
        if self.receipts is not None:
            self.receipts.add(receipt)
        return receipt

    def heads(self, key_id: str) -> list[dict]:
        """Every head the witness holds for the log with ``key_id``, by entry count; WitnessUnavailable when they
        cannot be had, whatever the witness answered instead."""
        try:
            answer = self._call("GET", f"/logs/{urllib.parse.quote(key_id, safe='')}/heads")
        except WitnessRefused as refused:
            raise WitnessUnavailable(str(refused)) from None
        heads = answer.get("heads") if isinstance(answer, dict) else None
        if not isinstance(heads, list) or not all(isinstance(head, dict) for head in heads):
            raise WitnessUnavailable(f"the witness {self.name} answered the list of heads with something else")
        return heads

    def public_key(self) -> Ed25519PublicKey:
        """The witness's public key (fetched once); WitnessRefused when it is not the pinned one."""
        if self._public_key is None:
            answer = self._call("GET", "/key")
            try:
                key = serialization.load_pem_public_key(answer["public_key"].encode("ascii"))
            except (KeyError, TypeError, AttributeError, ValueError, UnicodeEncodeError) as error:
                raise WitnessUnavailable(f"the witness {self.name} did not answer with a public key: {error}") from None
            if not isinstance(key, Ed25519PublicKey):
                raise WitnessRefused(f"the witness {self.name} publishes a key that is not Ed25519")
            if self.key_id is not None and public_key_id(key) != self.key_id:
                raise WitnessRefused(f"the witness {self.name} answers with key {public_key_id(key)}, not the pinned "
                                     f"key {self.key_id}: another server is answering at its address, or its key "
                                     "was replaced")
            self._public_key = key
        return self._public_key

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        """The JSON answer of ``method`` on ``path``; errors become WitnessUnavailable or WitnessRefused."""
        request = urllib.request.Request(
            self.url + API_PATH + path, method=method,
            data=None if body is None else canonical_json(body),
            headers={"Accept": "application/json", **({} if body is None else {"Content-Type": "application/json"})},
        )
        what = f"the witness {self.name} ({method} {API_PATH}{path})"
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                data = response.read(MAX_ANSWER_BYTES + 1)
        except urllib.error.HTTPError as error:
            message = _error_message(error)
            if error.code >= 500 or error.code in UNAVAILABLE_STATUSES:
                raise WitnessUnavailable(f"{what} answered {error.code}: {message}") from None
            raise WitnessRefused(f"{what} refused: {error.code} {message}") from None
        except (OSError, http.client.HTTPException) as error:  # URLError and timeouts are OSErrors
            reason = getattr(error, "reason", error)
            raise WitnessUnavailable(f"{what} cannot be reached: {reason}") from None
        if len(data) > MAX_ANSWER_BYTES:
            raise WitnessUnavailable(f"{what} answered with more than {MAX_ANSWER_BYTES:,} bytes")
        try:
            return json.loads(data)
        except ValueError:
            raise WitnessUnavailable(f"{what} did not answer with JSON") from None


def _error_message(error: urllib.error.HTTPError) -> str:
    """The message of a witness's JSON error answer, or the HTTP reason."""
    try:
        answer = json.loads(error.read(64 * 1024))
        return str(answer["error"]["message"])
    except (ValueError, KeyError, TypeError, OSError):
        return str(error.reason)
