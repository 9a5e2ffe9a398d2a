"""The search policy: one documented TOML file saying what face search may be used for, and how.

``parse_policy`` turns the text into a frozen ``Policy``, refusing it with every problem found, each with
its line, so an administrator can fix a draft in one pass. ``refusal_reasons`` applies a policy to one
request and explains each refusal in words an investigator understands. ``PolicyStore`` keeps every
loaded version in the store; exactly one is active, and each search records the version it ran under.
docs/policy.md describes every key.

Why one module: the policy's dataclasses, the parser that checks each key against them and the rules that apply
them are one reading of one document; split apart, a key's type, its check and its use would live in three files
that must change together.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import itertools
import math
import re
import re._constants as sre  # the regular-expression parser and its node types, to write an example of a pattern
import re._parser as sre_parse
import tomllib
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field, fields
from importlib import resources
from typing import Any, Literal

from sqlalchemy import false, func, select, text as sql_text, update
from sqlalchemy.orm import Session, sessionmaker

from facetrail.accountability.schema import ROLES, PolicyRecord
from facetrail.errors import PolicyError
from facetrail.textfold import describe, fold, imitation
from facetrail.store import as_utc

REQUEST_FIELDS = ("case_number", "purpose", "offence", "authorization_ref", "note")
"""The fields of a request that ``[requests] required_fields`` may name."""
ALWAYS_REQUIRED = ("case_number", "purpose")
"""Fields no policy may make optional: every search is bound to a case and states its purpose."""
AUDIT_RETENTION_FLOOR_DAYS = 183
"""Audit entries and search records are kept at least six months, so a six-monthly audit sees everything."""
MAX_RETENTION_DAYS = 36_500
MAX_CANDIDATES_LIMIT = 100
MAX_CASE_NUMBER_LENGTH = 100
POOR_PROBE_CHOICES = ("refuse", "supervisor_override")
ID_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,59}")
_ID_RULE = "use lower-case letters, digits and '_', starting with a letter (at most 60)"

_SECTIONS = ("purposes", "offences", "prohibited", "requests", "results", "probe_quality", "review", "retention",
             "roles", "api")
_MISSING_FIELD = {
    "case_number": "a case number is required",
    "purpose": "a purpose is required",
    "offence": "an offence category is required",
    "authorization_ref": "an authorization reference (a supervisor's approval or warrant number) is required",
    "note": "a note explaining why the search is needed is required",
}


# --- the policy ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Purpose:
    """A permitted purpose of search."""

    id: str
    description: str
    offences: tuple[str, ...] | None = None
    """The offence categories this purpose may be used for; None means every category."""
    authorization_required: bool | None = None
    """Overrides ``[requests] authorization_required`` for this purpose; None means the default applies."""

    def allows_offence(self, offence: str) -> bool:
        """Whether a request for this purpose may name ``offence``."""
        return self.offences is None or offence in self.offences


@dataclass(frozen=True)
class OffenceCategory:
    """A category of offence a request may name."""

    id: str
    description: str


@dataclass(frozen=True)
class Prohibition:
    """A prohibited use: a request matching any of its purposes, offences or keywords is refused with ``reason``."""

    id: str
    reason: str
    purposes: tuple[str, ...] = ()
    offences: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    """Whole words or phrases, any case, looked for in the request's note; a trailing ``*`` matches any word
    beginning so ("protest*" matches "protesters")."""

    def matches_purpose(self, purpose: str) -> bool:
        """Whether ``purpose`` is prohibited here, compared as read (``textfold.fold``: case, spacing, invisible
        characters, accents and look-alike letters aside)."""
        return fold(purpose) in {fold(p) for p in self.purposes}

    def matches_offence(self, offence: str) -> bool:
        """Whether ``offence`` is prohibited here, compared as read (as ``matches_purpose``)."""
        return fold(offence) in {fold(o) for o in self.offences}

    def matching_keyword(self, note: str) -> str | None:
        """The first keyword found in ``note``, both compared as read (as ``matches_purpose``)."""
        folded = fold(note)
        return next((k for k in self.keywords if _keyword_pattern(k).search(folded)), None)

    def matches(self, request: SearchRequest) -> bool:
        """Whether ``request`` falls under this prohibition (any one of purpose, offence or keyword suffices)."""
        return (self.matches_purpose(request.purpose) or self.matches_offence(request.offence)
                or self.matching_keyword(request.note) is not None)


def case_number_format(rules: RequestRules) -> str:
    """The case-number format as people read it: an example ('like 24-000123'), else the regular expression."""
    return f"(like {rules.case_number_example})" if rules.case_number_example else rules.case_number_pattern.pattern


def example_of(pattern: re.Pattern[str]) -> str | None:
    """A plain string ``pattern`` fully matches, its digits counting up ('12-345678' for ``^[0-9]{2}-[0-9]{6}$``), or
    None for a pattern beyond literals, character classes, groups, alternatives (the first is taken) and repeats."""
    digits = itertools.cycle("1234567890")

    def one_of(items) -> str | None:
        op, arg = items[0]
        if op is sre.LITERAL:
            return chr(arg)
        if op is sre.RANGE:
            return next(digits) if (arg[0], arg[1]) == (ord("0"), ord("9")) else chr(arg[0])
        if op is sre.CATEGORY and arg is sre.CATEGORY_DIGIT:
            return next(digits)
        return None

    def written(tokens) -> str | None:
        parts = []
        for op, arg in tokens:
            if op is sre.AT:
                continue
            if op is sre.LITERAL:
                part = chr(arg)
            elif op is sre.IN:
                part = one_of(arg)
            elif op is sre.SUBPATTERN:
                part = written(arg[3])
            elif op is sre.BRANCH:
                part = written(arg[1][0])
            elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
                part = "".join(written(arg[2]) or "\0" for _ in range(arg[0]))
            else:
                return None
            if part is None or "\0" in part:
                return None
            parts.append(part)
        return "".join(parts)

    try:
        example = written(sre_parse.parse(pattern.pattern, pattern.flags))
    except (re.error, RecursionError):
        return None
    return example if example and pattern.fullmatch(example) else None


@functools.cache
def _keyword_pattern(keyword: str) -> re.Pattern[str]:
    """The pattern finding ``keyword`` in folded text: whole words, any spacing between them, a trailing ``*``
    matching any word beginning so."""
    words = fold(keyword.rstrip("*")).split()
    body = r"\s+".join(re.escape(word) for word in words)
    tail = r"\w*" if keyword.endswith("*") else ""
    return re.compile(rf"(?<!\w){body}{tail}(?!\w)")


@dataclass(frozen=True)
class RequestRules:
    """What every request must carry, and how much searching a user and a case may see."""

    required_fields: tuple[str, ...] = ("case_number", "purpose", "offence", "note")
    case_number_pattern: re.Pattern[str] = re.compile(r"^[0-9]{2}-[0-9]{6}$")
    """The whole case number must match (``re.fullmatch``)."""
    case_number_example: str | None = "24-000123"
    """A case number the pattern accepts, shown to people as the format instead of the regular expression; derived
    from the pattern (``example_of``) when a policy sets its own pattern without one; None when none can be."""
    max_users_per_case: int | None = None
    """How many different users may search under one case number; None: no limit."""
    max_searches_per_case: int | None = None
    """How many searches one case number may have; None: no limit."""
    authorization_required: bool = False
    """Whether a request needs an authorization reference, unless its purpose says otherwise."""
    daily_search_limit_per_user: int = 20


@dataclass(frozen=True)
class ResultRules:
    """What a search may return."""

    max_candidates: int = 20
    max_distance: float | None = None
    """Candidates farther than this are not returned; None: no floor."""


@dataclass(frozen=True)
class ProbeQualityRules:
    """What happens to a poor-quality probe."""

    poor_probe: Literal["refuse", "supervisor_override"] = "refuse"


@dataclass(frozen=True)
class ReviewRules:
    """How candidates become leads."""

    two_person_verification: bool = True
    """Two examiners must each decide on a candidate, independently."""
    examiners_blind_to_algorithm: bool = True
    """An examiner sees a candidate's rank, distance, estimated false-match rate and subject id only once they have
    decided on it (automation bias); False: from the start."""


@dataclass(frozen=True)
class RetentionRules:
    """How many days records are kept."""

    probe_images_days: int = 90
    search_records_days: int = 1825
    audit_entries_days: int = 2555


@dataclass(frozen=True)
class RoleRules:
    """Which roles one user may not hold together, and which unit's supervisors oversee every unit."""

    forbidden_combinations: tuple[tuple[str, ...], ...] = ()
    oversight_unit: str = ""
    """Supervisors of this unit may view and settle the searches of every unit (each view is audited, as always);
    empty: every supervisor sees only their own unit's searches."""


@dataclass(frozen=True)
class ApiRules:
    """Limits of the HTTP API."""

    requests_per_minute_per_user: int = 60


@dataclass(frozen=True)
class Policy:
    """One parsed policy file."""

    purposes: tuple[Purpose, ...]
    offences: tuple[OffenceCategory, ...]
    prohibited: tuple[Prohibition, ...] = ()
    requests: RequestRules = field(default_factory=RequestRules)
    results: ResultRules = field(default_factory=ResultRules)
    probe_quality: ProbeQualityRules = field(default_factory=ProbeQualityRules)
    review: ReviewRules = field(default_factory=ReviewRules)
    retention: RetentionRules = field(default_factory=RetentionRules)
    roles: RoleRules = field(default_factory=RoleRules)
    api: ApiRules = field(default_factory=ApiRules)

    @property
    def purpose_ids(self) -> tuple[str, ...]:
        """The permitted purposes' ids, in the file's order."""
        return tuple(p.id for p in self.purposes)

    @property
    def offence_ids(self) -> tuple[str, ...]:
        """The offence categories' ids, in the file's order."""
        return tuple(o.id for o in self.offences)

    def purpose(self, purpose_id: str) -> Purpose | None:
        """The permitted purpose ``purpose_id``, or None."""
        return next((p for p in self.purposes if p.id == purpose_id), None)

    def offence(self, offence_id: str) -> OffenceCategory | None:
        """The offence category ``offence_id``, or None."""
        return next((o for o in self.offences if o.id == offence_id), None)

    def authorization_required(self, purpose_id: str) -> bool:
        """Whether a request for ``purpose_id`` needs an authorization reference."""
        purpose = self.purpose(purpose_id)
        if purpose is not None and purpose.authorization_required is not None:
            return purpose.authorization_required
        return self.requests.authorization_required

    def prohibitions_matching(self, request: SearchRequest) -> list[Prohibition]:
        """The prohibited uses ``request`` falls under."""
        return [p for p in self.prohibited if p.matches(request)]

    @property
    def max_candidates(self) -> int:
        """Longest candidate list a search returns."""
        return self.results.max_candidates

    @property
    def max_distance(self) -> float | None:
        """Candidates farther than this are not returned (None: no floor)."""
        return self.results.max_distance

    @property
    def poor_probe(self) -> str:
        """'refuse' or 'supervisor_override'."""
        return self.probe_quality.poor_probe

    @property
    def two_person_verification(self) -> bool:
        """Whether two examiners must each decide on a candidate."""
        return self.review.two_person_verification


def default_policy_text() -> str:
    """The text of the default policy shipped with facetrail (default_policy.toml)."""
    return resources.files("facetrail.accountability").joinpath("default_policy.toml").read_text(encoding="utf-8")


# --- parsing -----------------------------------------------------------------------------------------


def parse_policy(text: str) -> Policy:
    """Parse a policy file; raises ``PolicyError`` listing every problem found, each with its line."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError([_syntax_problem(str(exc))]) from None
    except ValueError as exc:  # e.g. an integer too long to convert
        raise PolicyError([(None, f"not valid TOML: {exc}")]) from None
    except RecursionError:
        raise PolicyError([(None, "not valid TOML: values are nested too deeply")]) from None
    return _Parser(text).policy(raw)


def _syntax_problem(message: str) -> tuple[int | None, str]:
    found = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
    if found:
        return int(found.group(1)), f"not valid TOML: {message[:found.start()]} (column {found.group(2)})"
    if message.endswith("(at end of document)"):
        return None, f"not valid TOML: {message.removesuffix('(at end of document)').strip()} at the end of the file"
    return None, f"not valid TOML: {message}"


_KEY_PART = r"""[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*'"""
_KEY = rf"(?:{_KEY_PART})(?:\s*\.\s*(?:{_KEY_PART}))*"
_HEADER = re.compile(rf"\s*\[\[?\s*({_KEY})\s*\]")
_ASSIGNMENT = re.compile(rf"\s*({_KEY})\s*=")


class _KeyLines:
    """Where each table and key of a (valid) TOML text is defined, found by scanning its lines.

    Tracks ``[table]`` headers and ``key =`` lines, skipping the continuation lines of multi-line arrays and
    strings; a key inside an inline table falls back to the line of the key holding the table.
    """

    def __init__(self, text: str) -> None:
        self._lines = text.split("\n")
        self._first: dict[tuple[str, ...], int] = {}
        self._starts: list[int] = []
        table: tuple[str, ...] = ()
        depth, closing = 0, None
        for number, line in enumerate(self._lines, start=1):
            if depth == 0 and closing is None:
                header = _HEADER.match(line)
                if header:
                    table = _key_parts(header.group(1))
                    self._add(table, number)
                    continue
                assignment = _ASSIGNMENT.match(line)
                if assignment is None:
                    continue
                self._add(table + _key_parts(assignment.group(1)), number)
                line = line[assignment.end():]
            depth, closing = _scan_value(line, depth, closing)

    def _add(self, path: tuple[str, ...], number: int) -> None:
        for end in range(1, len(path) + 1):
            self._first.setdefault(path[:end], number)
        self._starts.append(number)

    def line(self, path: tuple[str, ...]) -> int | None:
        """The line defining ``path``, or its nearest enclosing table's; None if none is found."""
        for end in range(len(path), 0, -1):
            if path[:end] in self._first:
                return self._first[path[:end]]
        return None

    def element_line(self, path: tuple[str, ...], *elements: str) -> int | None:
        """The first line inside the value of ``path`` holding the strings ``elements``, quoted and in a row
        (e.g. one entry of a multi-line list), else the line of ``path``."""
        start = self.line(path)
        if start is None or path not in self._first:
            return start
        after = bisect.bisect_right(self._starts, start)
        end = self._starts[after] if after < len(self._starts) else len(self._lines) + 1
        quoted = [f"(?:\"{re.escape(e)}\"|'{re.escape(e)}')" for e in elements]
        in_a_row = re.compile(r"\s*,\s*".join(quoted))
        return next((n for n in range(start, end) if in_a_row.search(self._lines[n - 1])), start)


def _scan_value(text: str, depth: int, closing: str | None) -> tuple[int, str | None]:
    """Bracket depth and open multi-line string delimiter after reading ``text`` (part of a value)."""
    position = 0
    while position < len(text):
        if closing is not None:
            end = text.find(closing, position)
            if end < 0:
                return depth, closing
            position, closing = end + 3, None
            continue
        char = text[position]
        if char == "#":
            break
        if text.startswith(('"""', "'''"), position):
            closing = text[position:position + 3]
            position += 3
            continue
        if char == '"':
            position += 1
            while position < len(text) and text[position] != '"':
                position += 2 if text[position] == "\\" else 1
        elif char == "'":
            end = text.find("'", position + 1)
            position = len(text) if end < 0 else end
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        position += 1
    return depth, closing


def _key_parts(key: str) -> tuple[str, ...]:
    return tuple(_unquote(part) for part in re.findall(_KEY_PART, key))


def _unquote(part: str) -> str:
    if part.startswith("'"):
        return part[1:-1]
    if part.startswith('"'):
        try:
            return tomllib.loads(f"k = {part}")["k"]
        except tomllib.TOMLDecodeError:
            return part[1:-1]
    return part


def _name(path: tuple[str, ...]) -> str:
    return ".".join(path)


def _kind(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a table"}
    return names.get(type(value), type(value).__name__)


class _Parser:
    """Builds a ``Policy`` from parsed TOML, collecting every problem with its line."""

    def __init__(self, text: str) -> None:
        self.lines = _KeyLines(text)
        self.problems: list[tuple[int | None, str]] = []

    def problem(self, path: tuple[str, ...], message: str, *elements: str) -> None:
        line = self.lines.element_line(path, *elements) if elements else self.lines.line(path)
        self.problems.append((line, message))

    # --- generic checks ---

    def table(self, raw: dict[str, Any], path: tuple[str, ...], allowed: tuple[str, ...]) -> dict[str, Any]:
        """``raw`` itself, after reporting its unknown keys."""
        for key in raw:
            if key not in allowed:
                self.problem(path + (key,), f"unknown key {_name(path + (key,))!r} (expected: {', '.join(allowed)})")
        return raw

    def section(self, raw: dict[str, Any], name: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        value = raw.get(name, {})
        if not isinstance(value, dict):
            self.problem((name,), f"{name} must be a table [{name}], not {_kind(value)}")
            return {}
        return self.table(value, (name,), allowed)

    def value(self, raw: dict[str, Any], path: tuple[str, ...], key: str, default: Any,
              check: Callable[[Any], str | None], expected: str) -> Any:
        """``raw[key]`` if present and valid, else ``default``, reporting why. ``check`` returns None for a valid
        value, "" for the plain "must be <expected>" message, or its own message."""
        if key not in raw:
            return default
        value = raw[key]
        problem = check(value)
        if problem is not None:
            self.problem(path + (key,), f"{_name(path + (key,))} {problem or f'must be {expected}, not {_kind(value)}'}")
            return default
        return value

    def text(self, raw: dict[str, Any], path: tuple[str, ...], key: str, required: bool = False) -> str:
        if required and key not in raw:
            self.problem(path, f"{_name(path)} needs {key} (a non-empty string)")
        value = self.value(raw, path, key, "", lambda v: None if isinstance(v, str) else "", "a string")
        if isinstance(raw.get(key), str) and not value.strip():
            self.problem(path + (key,), f"{_name(path + (key,))} must not be empty")
        return value.strip()

    def boolean(self, raw: dict[str, Any], path: tuple[str, ...], key: str, default: bool | None) -> bool | None:
        return self.value(raw, path, key, default, lambda v: None if isinstance(v, bool) else "", "true or false")

    def integer(self, raw: dict[str, Any], path: tuple[str, ...], key: str, default: int | None,
                minimum: int, maximum: int | None = None) -> int | None:
        def check(value: Any) -> str | None:
            if not isinstance(value, int) or isinstance(value, bool):
                return ""
            if value < minimum or (maximum is not None and value > maximum):
                bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
                return f"must be {bound}, not {value}"
            return None

        return self.value(raw, path, key, default, check, "an integer")

    def strings(self, raw: dict[str, Any], path: tuple[str, ...], key: str) -> tuple[str, ...] | None:
        """A list of strings (duplicates dropped), or None if absent or invalid."""
        value = self.value(raw, path, key, None, lambda v: None if isinstance(v, list) else "", "a list of strings")
        if value is None:
            return None
        good = True
        for item in value:
            if not isinstance(item, str):
                self.problem(path + (key,), f"{_name(path + (key,))} must contain only strings, not {_kind(item)}")
                good = False
        return tuple(dict.fromkeys(value)) if good else None

    def ids(self, raw: dict[str, Any], path: tuple[str, ...], key: str, what: str) -> tuple[str, ...] | None:
        """A list of ids (``ID_PATTERN``), or None if absent or invalid."""
        value = self.strings(raw, path, key)
        if value is None:
            return None
        bad = [item for item in value if not ID_PATTERN.fullmatch(item)]
        for item in bad:
            self.problem(path + (key,), f"{_name(path + (key,))}: {what} id {item!r}: {_ID_RULE}", item)
        return None if bad else value

    def check_id(self, path: tuple[str, ...], what: str) -> bool:
        if ID_PATTERN.fullmatch(path[-1]):
            return True
        self.problem(path, f"{what} id {path[-1]!r}: {_ID_RULE}")
        return False

    # --- sections ---

    def policy(self, raw: dict[str, Any]) -> Policy:
        for key in raw:
            if key not in _SECTIONS:
                self.problem((key,), f"unknown section or key {key!r} (sections: {', '.join(_SECTIONS)})")
        offences = self.offences(raw)
        purposes = self.purposes(raw, offences)
        prohibited = self.prohibited(raw, purposes)
        policy = Policy(
            purposes=purposes, offences=offences, prohibited=prohibited, requests=self.requests(raw),
            results=self.results(raw), probe_quality=self.probe_quality(raw), review=self.review(raw),
            retention=self.retention(raw), roles=self.roles(raw), api=self.api(raw),
        )
        if self.problems:
            raise PolicyError(sorted(self.problems, key=lambda p: (p[0] is None, p[0] or 0)))
        return policy

    def offences(self, raw: dict[str, Any]) -> tuple[OffenceCategory, ...]:
        section = self.section(raw, "offences", ("categories",))
        if not isinstance(raw.get("offences", {}), dict):
            return ()
        path = ("offences", "categories")
        categories = section.get("categories", {})
        if not isinstance(categories, dict):
            self.problem(path, f"offences.categories must be a table of id = \"description\", not {_kind(categories)}")
            return ()
        found = []
        for category, description in categories.items():
            where = path + (category,)
            if not isinstance(description, str) or not description.strip():
                self.problem(where, f"offence category {category!r} needs a description (a non-empty string)")
            elif self.check_id(where, "offence category"):
                found.append(OffenceCategory(category, description.strip()))
        if not categories:
            self.problem(path, "the policy defines no offence category: add [offences.categories] id = \"description\"")
        return tuple(found)

    def purposes(self, raw: dict[str, Any], offences: tuple[OffenceCategory, ...]) -> tuple[Purpose, ...]:
        section = raw.get("purposes", {})
        if not isinstance(section, dict):
            self.problem(("purposes",), f"purposes must be tables [purposes.<id>], not {_kind(section)}")
            return ()
        if not section:
            self.problem(("purposes",), "the policy permits no purpose: add at least one [purposes.<id>] table")
        known = [o.id for o in offences]
        found = []
        for purpose_id, body in section.items():
            path = ("purposes", purpose_id)
            if not isinstance(body, dict):
                self.problem(path, f"purposes.{purpose_id} must be a table [purposes.{purpose_id}], not {_kind(body)}")
                continue
            self.table(body, path, ("description", "offences", "authorization_required"))
            description = self.text(body, path, "description", required=True)
            allowed = self.ids(body, path, "offences", "offence")
            if allowed is not None and not allowed:
                self.problem(path + ("offences",), f"purposes.{purpose_id}.offences is empty: list at least one "
                             "offence category, or leave the key out to allow every category")
            for offence in allowed or ():
                if known and offence not in known:
                    self.problem(path + ("offences",), f"purposes.{purpose_id}.offences: unknown offence category "
                                 f"{offence!r} (categories: {', '.join(known)})", offence)
            authorization = self.boolean(body, path, "authorization_required", None)
            if self.check_id(path, "purpose"):
                found.append(Purpose(purpose_id, description, allowed, authorization))
        return tuple(found)

    def prohibited(self, raw: dict[str, Any], purposes: tuple[Purpose, ...]) -> tuple[Prohibition, ...]:
        section = raw.get("prohibited", {})
        if not isinstance(section, dict):
            self.problem(("prohibited",), f"prohibited must be tables [prohibited.<id>], not {_kind(section)}")
            return ()
        found = []
        for rule_id, body in section.items():
            path = ("prohibited", rule_id)
            if not isinstance(body, dict):
                self.problem(path, f"prohibited.{rule_id} must be a table [prohibited.{rule_id}], not {_kind(body)}")
                continue
            self.table(body, path, ("reason", "purposes", "offences", "keywords"))
            reason = self.text(body, path, "reason", required=True)
            rule = Prohibition(rule_id, reason, self.ids(body, path, "purposes", "purpose") or (),
                               self.ids(body, path, "offences", "offence") or (), self.keywords(body, path))
            if all(body.get(key, []) == [] for key in ("purposes", "offences", "keywords")):
                self.problem(path, f"prohibited.{rule_id} matches nothing: give purposes, offences or keywords")
            for purpose in purposes:
                if purpose.id in rule.purposes:
                    self.problem(path + ("purposes",), f"purpose {purpose.id!r} is both permitted and prohibited "
                                 f"(by prohibited.{rule_id})", purpose.id)
                for offence in purpose.offences or ():
                    if offence in rule.offences:
                        self.problem(path + ("offences",), f"prohibited.{rule_id} forbids offence {offence!r}, which "
                                     f"purposes.{purpose.id} allows", offence)
            if self.check_id(path, "prohibited use"):
                found.append(rule)
        return tuple(found)

    def keywords(self, body: dict[str, Any], path: tuple[str, ...]) -> tuple[str, ...]:
        keywords = self.strings(body, path, "keywords") or ()
        good = []
        for keyword in keywords:
            stripped = keyword.strip()
            if not stripped.rstrip("*") or "*" in stripped.rstrip("*") or stripped.endswith("**") or len(stripped) > 100:
                self.problem(path + ("keywords",), f"{_name(path)}.keywords: {keyword!r} must be a word or phrase "
                             "(at most 100 characters), optionally ending in a single *", keyword)
            else:
                good.append(stripped)
        return tuple(good)

    def requests(self, raw: dict[str, Any]) -> RequestRules:
        path = ("requests",)
        section = self.section(raw, "requests", tuple(f.name for f in fields(RequestRules)))
        defaults = RequestRules()
        required = self.strings(section, path, "required_fields")
        if required is not None:
            for name in required:
                if name not in REQUEST_FIELDS:
                    self.problem(path + ("required_fields",), f"requests.required_fields: unknown field {name!r} "
                                 f"(fields: {', '.join(REQUEST_FIELDS)})", name)
            for name in ALWAYS_REQUIRED:
                if name not in required:
                    self.problem(path + ("required_fields",), f"requests.required_fields must include {name!r}: "
                                 "every search is bound to a case number and states its purpose")
            required = tuple(name for name in required if name in REQUEST_FIELDS)
        pattern = defaults.case_number_pattern
        source = self.value(section, path, "case_number_pattern", None,
                            lambda v: None if isinstance(v, str) else "", "a string (a regular expression)")
        if source is not None:
            try:
                pattern = re.compile(source)
            except (re.error, OverflowError, RecursionError) as exc:
                self.problem(path + ("case_number_pattern",),
                             f"requests.case_number_pattern is not a valid regular expression: {exc}")
        example = self.value(section, path, "case_number_example", None,
                             lambda v: None if isinstance(v, str) else "", "a string (a case number)")
        if example is not None and not pattern.fullmatch(example):
            self.problem(path + ("case_number_example",), f"requests.case_number_example {example!r} does not match "
                         "requests.case_number_pattern")
        elif example is None:
            example = defaults.case_number_example if source is None else example_of(pattern)
        return RequestRules(
            required_fields=required if required is not None else defaults.required_fields,
            case_number_pattern=pattern,
            case_number_example=example,
            max_users_per_case=self.integer(section, path, "max_users_per_case", None, 1),
            max_searches_per_case=self.integer(section, path, "max_searches_per_case", None, 1),
            authorization_required=self.boolean(section, path, "authorization_required", defaults.authorization_required),
            daily_search_limit_per_user=self.integer(section, path, "daily_search_limit_per_user",
                                                     defaults.daily_search_limit_per_user, 1),
        )

    def results(self, raw: dict[str, Any]) -> ResultRules:
        path = ("results",)
        section = self.section(raw, "results", ("max_candidates", "max_distance"))

        def check_distance(value: Any) -> str | None:
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                return ""
            return None if math.isfinite(value) and value > 0 else f"must be a positive number, not {value}"

        distance = self.value(section, path, "max_distance", None, check_distance, "a number")
        return ResultRules(
            max_candidates=self.integer(section, path, "max_candidates", ResultRules.max_candidates, 1,
                                        MAX_CANDIDATES_LIMIT),
            max_distance=float(distance) if distance is not None else None,
        )

    def probe_quality(self, raw: dict[str, Any]) -> ProbeQualityRules:
        section = self.section(raw, "probe_quality", ("poor_probe",))
        choices = ", ".join(map(repr, POOR_PROBE_CHOICES))
        return ProbeQualityRules(self.value(
            section, ("probe_quality",), "poor_probe", ProbeQualityRules.poor_probe,
            lambda v: None if v in POOR_PROBE_CHOICES else f"must be one of {choices}, not {v!r}", "a string"))

    def review(self, raw: dict[str, Any]) -> ReviewRules:
        section = self.section(raw, "review", ("two_person_verification", "examiners_blind_to_algorithm"))
        return ReviewRules(
            self.boolean(section, ("review",), "two_person_verification", ReviewRules.two_person_verification),
            self.boolean(section, ("review",), "examiners_blind_to_algorithm", ReviewRules.examiners_blind_to_algorithm))

    def retention(self, raw: dict[str, Any]) -> RetentionRules:
        path = ("retention",)
        section = self.section(raw, "retention", ("probe_images_days", "search_records_days", "audit_entries_days"))
        floor = AUDIT_RETENTION_FLOOR_DAYS
        probes = self.integer(section, path, "probe_images_days", RetentionRules.probe_images_days, 1, MAX_RETENTION_DAYS)
        searches = self.integer(section, path, "search_records_days", RetentionRules.search_records_days, floor,
                                MAX_RETENTION_DAYS)
        audit = self.integer(section, path, "audit_entries_days", RetentionRules.audit_entries_days, floor,
                             MAX_RETENTION_DAYS)
        if probes > searches:
            self.problem(path + ("probe_images_days",), f"retention.probe_images_days ({probes}) must not exceed "
                         f"retention.search_records_days ({searches}): a probe image is never kept without the search "
                         "record that explains why it was taken")
        if searches > audit:
            self.problem(path + ("search_records_days",), f"retention.search_records_days ({searches}) must not "
                         f"exceed retention.audit_entries_days ({audit}): the audit trail must outlive the records it "
                         "accounts for")
        return RetentionRules(probes, searches, audit)

    def roles(self, raw: dict[str, Any]) -> RoleRules:
        path = ("roles", "forbidden_combinations")
        section = self.section(raw, "roles", ("forbidden_combinations", "oversight_unit"))
        oversight_unit = self.value(section, ("roles",), "oversight_unit", "",
                                    lambda v: None if isinstance(v, str) and len(v.strip()) <= 100 else "",
                                    "a unit name of at most 100 characters").strip()
        value = self.value(section, ("roles",), "forbidden_combinations", [],
                           lambda v: None if isinstance(v, list) else "", "a list of lists of roles")
        found = []
        for combination in value:
            if not isinstance(combination, list) or not all(isinstance(r, str) for r in combination):
                self.problem(path, f"roles.forbidden_combinations: each entry must be a list of roles, "
                             f"not {combination!r}", *([combination] if isinstance(combination, str) else []))
                continue
            unknown = [role for role in combination if role not in ROLES]
            for role in unknown:
                self.problem(path, f"roles.forbidden_combinations: unknown role {role!r} (roles: {', '.join(ROLES)})",
                             *combination)
            if len(set(combination)) < 2 or len(set(combination)) != len(combination):
                self.problem(path, f"roles.forbidden_combinations: {combination!r} must name at least two "
                             "different roles, each once", *combination)
            elif not unknown:
                found.append(tuple(combination))
        return RoleRules(tuple(found), oversight_unit)

    def api(self, raw: dict[str, Any]) -> ApiRules:
        section = self.section(raw, "api", ("requests_per_minute_per_user",))
        return ApiRules(self.integer(section, ("api",), "requests_per_minute_per_user",
                                     ApiRules.requests_per_minute_per_user, 1))


# --- applying the policy to a request ------------------------------------------------------------------


@dataclass(frozen=True)
class SearchRequest:
    """What an investigator asks for: a search (1:N) or a comparison (1:1), bound to a case."""

    kind: str
    """'search' or 'compare'."""
    username: str
    unit: str
    case_number: str
    purpose: str
    offence: str
    authorization_ref: str = ""
    note: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("search", "compare"):
            raise ValueError(f"request kind must be 'search' or 'compare', not {self.kind!r}")


@dataclass(frozen=True)
class RequestHistory:
    """What has already been searched, as the limits count it (completed searches and comparisons)."""

    searches_by_user_today: int
    users_on_case: frozenset[str]
    """Usernames of everyone who has searched under the request's case number."""
    searches_on_case: int


def refusal_reasons(policy: Policy, request: SearchRequest, history: RequestHistory) -> list[str]:
    """Every reason ``policy`` refuses ``request``, each a sentence an investigator understands; empty = permitted."""
    reasons = []
    prohibitions = policy.prohibitions_matching(request)
    reasons.extend(f"prohibited use: {rule.reason}" for rule in prohibitions)
    given = {name: getattr(request, name).strip() for name in REQUEST_FIELDS}
    required = policy.requests.required_fields
    reasons.extend(_MISSING_FIELD[name] for name in required if not given[name])

    purpose = policy.purpose(given["purpose"])
    if given["purpose"] and purpose is None and not any(r.matches_purpose(given["purpose"]) for r in prohibitions):
        reasons.append(f"purpose {given['purpose']!r} is not a permitted purpose "
                       f"(permitted: {', '.join(policy.purpose_ids)})")
    offence = given["offence"]
    if offence and not any(r.matches_offence(offence) for r in prohibitions):
        if policy.offence(offence) is None:
            reasons.append(f"offence {offence!r} is not a recognised offence category "
                           f"(categories: {', '.join(policy.offence_ids)})")
        elif purpose is not None and not purpose.allows_offence(offence):
            reasons.append(f"offence {offence!r} is not allowed for purpose {purpose.id!r} "
                           f"(allowed: {', '.join(purpose.offences or ())})")
    elif not offence and "offence" not in required and purpose is not None and purpose.offences is not None:
        reasons.append(f"purpose {purpose.id!r} needs an offence category (one of: {', '.join(purpose.offences)})")
    if (policy.authorization_required(given["purpose"]) and not given["authorization_ref"]
            and "authorization_ref" not in required):
        subject = f"purpose {purpose.id!r}" if purpose is not None else "every search"
        reasons.append(f"{subject} requires an authorization reference (a supervisor's approval or warrant number)")

    case_number = request.case_number
    pattern = policy.requests.case_number_pattern
    lookalike = imitation(case_number)
    if len(case_number) > MAX_CASE_NUMBER_LENGTH:
        reasons.append(f"case number is longer than {MAX_CASE_NUMBER_LENGTH} characters")
    elif lookalike is not None:
        reasons.append(f"case number {case_number!r} contains {describe(lookalike)}: type it in plain letters and "
                       "digits, so it cannot pass for another case")
    elif given["case_number"] and not pattern.fullmatch(case_number):
        reasons.append(f"case number {case_number!r} does not match the required format "
                       f"{case_number_format(policy.requests)}")

    rules = policy.requests
    if history.searches_by_user_today >= rules.daily_search_limit_per_user:
        reasons.append(f"daily search limit of {rules.daily_search_limit_per_user} reached")
    if (rules.max_users_per_case is not None and request.username not in history.users_on_case
            and len(history.users_on_case) >= rules.max_users_per_case):
        reasons.append(f"case {case_number!r} has already been searched by {len(history.users_on_case)} users, "
                       f"the most the policy allows ({rules.max_users_per_case})")
    if rules.max_searches_per_case is not None and history.searches_on_case >= rules.max_searches_per_case:
        reasons.append(f"case {case_number!r} has already had {history.searches_on_case} searches, "
                       f"the most the policy allows ({rules.max_searches_per_case})")
    return reasons


def role_problems(policy: Policy, roles: list[str]) -> list[str]:
    """Why one user may not hold ``roles`` together: unknown roles and combinations the policy forbids."""
    problems = [f"unknown role {role!r} (roles: {', '.join(ROLES)})" for role in dict.fromkeys(roles) if role not in ROLES]
    held = set(roles)
    for combination in policy.roles.forbidden_combinations:
        if held.issuperset(combination):
            names = [repr(role) for role in combination]
            together = f"both {names[0]} and {names[1]}" if len(names) == 2 else f"all of {', '.join(names)}"
            problems.append(f"a user may not hold {together}: the policy keeps these duties apart")
    return problems


# --- versions in the store --------------------------------------------------------------------------------


class PolicyStore:
    """Every policy version loaded into the store; exactly one is active."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._parsed: tuple[str, Policy] | None = None

    def active(self) -> tuple[int, Policy]:
        """The active version and its policy; the default policy becomes version 1 if none was loaded yet."""
        with self._sessions() as session:
            record = session.scalars(
                select(PolicyRecord).where(PolicyRecord.active.is_(True)).order_by(PolicyRecord.version.desc()).limit(1)
            ).first()
        if record is None:
            self.load(default_policy_text(), None)
            return self.active()
        if self._parsed is None or self._parsed[0] != record.sha256:
            self._parsed = (record.sha256, parse_policy(record.text))
        return record.version, self._parsed[1]

    def load(self, text: str, loaded_by: int | None, session: Session | None = None) -> int:
        """Make ``text`` the active policy and return its version; raises ``PolicyError`` (leaving the active one
        in force) if it does not parse. Text identical to the active policy's returns the active version. Written in
        ``session``'s transaction when given (its owner commits, with the audit entry), else in one of its own."""
        parse_policy(text)
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        with nullcontext(session) if session is not None else self._sessions.begin() as session:
            _lock_policies(session)
            current = session.scalars(select(PolicyRecord).where(PolicyRecord.active.is_(True))).all()
            if any(r.sha256 == digest and r.text == text for r in current):
                return max(r.version for r in current)
            session.execute(update(PolicyRecord).where(PolicyRecord.active.is_(True)).values(active=False))
            version = (session.scalar(select(func.max(PolicyRecord.version))) or 0) + 1
            session.add(PolicyRecord(version=version, text=text, sha256=digest, loaded_by=loaded_by, active=True))
        return version

    def history(self) -> list[dict[str, Any]]:
        """Every version, oldest first: version, sha256, loaded_by (user id or None), loaded_at (ISO 8601 UTC),
        active, text."""
        with self._sessions() as session:
            records = session.scalars(select(PolicyRecord).order_by(PolicyRecord.version)).all()
        return [
            {"version": r.version, "sha256": r.sha256, "loaded_by": r.loaded_by, "loaded_at": as_utc(r.loaded_at).isoformat(),
             "active": r.active, "text": r.text}
            for r in records
        ]


def _lock_policies(session: Session) -> None:
    """Serialise policy loads for the rest of the transaction, so exactly one version stays active."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sql_text("LOCK TABLE policies IN SHARE ROW EXCLUSIVE MODE"))
    else:  # SQLite: any write statement takes the database's write lock until the transaction ends
        session.execute(update(PolicyRecord).where(false()).values(active=False))


