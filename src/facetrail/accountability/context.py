"""What every accountable service of one data directory shares, and the rules they apply alike.

The services (searches, reviews, overrides, administration, oversight, retention) are small classes over one
``Context``: the audit trail, the policies, the users, the galleries, the encrypted probe store and the face engines.
The context also holds the checks more than one service makes: an action's permission (its refusal audited), which
searches an actor may look at, which an examiner may still decide on (and so must read blind), whose part of the
audit trail a supervisor reads, and the two-person rule's count of examiners.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from facetrail.accountability import outcomes
from facetrail.accountability.audit import AuditTrail
from facetrail.accountability.policy import Policy, PolicyStore
from facetrail.accountability.schema import (
    ROLES,
    CandidateRecord,
    ProbeRecord,
    ResolutionRecord,
    ReviewRecord,
    SearchRecord,
    UserRecord,
)
from facetrail.accountability.users import ROLE_ACTIONS, Actor, UserDirectory, require
from facetrail.config import Settings
from facetrail.datadir import DataDir
from facetrail.engine.decode import decode_image
from facetrail.engine.calibration import CalibrationSet, false_match_rate_text
from facetrail.engine.pipeline import FaceEngine, FoundFace
from facetrail.errors import BusyError, FacetrailError, NotFoundError, PermissionDeniedError
from facetrail.storage import BlobStore
from facetrail.gallery.calibration import CalibrationInForce, calibration_set, in_force
from facetrail.gallery.gallery import Galleries
from facetrail.store import as_utc

NOTICE = (
    "Candidates are investigative leads, not identifications. The system never declares a match: a candidate "
    "becomes a lead only after two trained examiners verify it independently, and a lead is not probable cause."
)
PHOTO_ROLES = ROLE_ACTIONS["view_candidate_images"]
"""The roles that see photographs."""
MAX_NOTES = 10_000
"""Longest note a decision, resolution or override decision may carry (characters)."""
INSPECTION_WAIT_SECONDS = 10
"""How long finding the faces in a photograph waits for the inspection engine before answering 'busy'."""


@dataclass
class Probe:
    """A decoded probe and the face chosen in it."""

    data: bytes
    sha256: str
    width: int
    height: int
    face: FoundFace
    faces_found: int = 1


class FaceEngines:
    """The face engines of one process's searches: one for searches, comparisons and the pictures pages show, one of
    its own for inspecting photographs before a search (so an inspection never holds up a search). dlib's models are
    not safe to share between threads, so each engine is used by one thread at a time (``searching`` and
    ``inspecting`` hold its lock); both are loaded on first use."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._search: FaceEngine | None = None
        self._inspection: FaceEngine | None = None
        self._search_lock = threading.Lock()
        self._inspection_lock = threading.Lock()

    @contextmanager
    def searching(self) -> Iterator[FaceEngine]:
        """The search engine, held by this thread until the block ends."""
        with self._search_lock:
            if self._search is None:
                self._search = FaceEngine(self._settings.engine)
            yield self._search

    @contextmanager
    def inspecting(self) -> Iterator[FaceEngine]:
        """The inspection engine, held by this thread until the block ends; BusyError when no turn comes within
        INSPECTION_WAIT_SECONDS."""
        if not self._inspection_lock.acquire(timeout=INSPECTION_WAIT_SECONDS):
            raise BusyError("finding faces is busy with other photographs; try again in a few seconds")
        try:
            if self._inspection is None:
                self._inspection = FaceEngine(self._settings.interactive_engine)
            yield self._inspection
        finally:
            self._inspection_lock.release()

    @property
    def model_name(self) -> str:
        """The name of the face model searches use."""
        with self.searching() as engine:
            return engine.model.name


class Context:
    """The parts of one open data directory that every service uses."""

    def __init__(self, galleries: Galleries, audit: AuditTrail, policies: PolicyStore, users: UserDirectory,
                 probes: BlobStore) -> None:
        self.galleries = galleries
        self.datadir: DataDir = galleries.datadir
        self.settings: Settings = galleries.settings
        self.audit = audit
        self.policies = policies
        self.users = users
        self.probes = probes
        self.engines = FaceEngines(self.settings)

    def policy(self) -> tuple[int, Policy]:
        """The version and rules of the policy in force."""
        return self.policies.active()

    # --- permissions, refusals audited ----------------------------------------------------------------------------

    def require(self, actor: Actor, action: str, target: str = "") -> None:
        """``users.require``, with a refusal audited (``access_denied``) before it is raised."""
        try:
            self.check(actor, action)
        except PermissionDeniedError as exc:
            self.deny(actor, action, target, str(exc))

    def check(self, actor: Actor, action: str) -> None:
        """``users.require``, and ``roles_held_apart``: PermissionDeniedError, unaudited, for a caller that audits a
        refusal its own way (a refused search, say)."""
        require(actor, action)
        held_apart = self.roles_held_apart(actor, action)
        if held_apart:
            raise PermissionDeniedError(held_apart)

    def roles_held_apart(self, actor: Actor, action: str) -> str:
        """Why ``actor`` may not ``action`` while holding roles that the policy in force forbids together (a policy
        loaded after the roles were given): an action that only those roles allow is refused until an admin
        resolves the account's roles (what every role may do, such as reading the galleries, stays allowed). ""
        when nothing stands in the way."""
        if ROLE_ACTIONS[action] >= set(ROLES):
            return ""
        version, policy = self.policy()
        pairs = [pair for pair in policy.roles.forbidden_combinations if actor.roles.issuperset(pair)]
        if not pairs or (actor.roles - set().union(*pairs)) & ROLE_ACTIONS[action]:
            return ""
        held = "; ".join(" and ".join(pair) for pair in pairs)
        return (f"user {actor.username!r} holds roles that policy version {version} forbids together ({held}): what "
                f"those roles allow is refused until an admin resolves the account's roles (facetrail user set-roles)")

    def deny(self, actor: Actor, action: str, target: str, reason: str) -> NoReturn:
        """Audit a refused attempt (``access_denied``) and raise PermissionDeniedError with ``reason``."""
        self.audit.append(actor.username, "access_denied", clipped(target, 200), {"action": action, "reason": reason})
        raise PermissionDeniedError(reason)

    # --- which searches an actor may see ----------------------------------------------------------------------

    def viewable_search(self, session, actor: Actor, search_id: int) -> SearchRecord:
        """A completed search the actor may look at: their own; any as an examiner (examiners review every unit's
        searches); as a supervisor, their unit's (every unit's for the policy's oversight unit). A refusal is
        audited."""
        self.require(actor, "view_candidate_images", f"search:{search_id}")
        search = session.get(SearchRecord, search_id)
        if search is not None and not (search.user_id == actor.id or actor.has("examiner") or self.oversees(actor, search)):
            raise self.scope_refusal(actor, "view_candidate_images", search)
        return completed_search(session, search_id)

    def oversees(self, actor: Actor, search: SearchRecord) -> bool:
        """Whether ``actor`` is a supervisor of the search's unit, or of the oversight unit."""
        return actor.has("supervisor") and ((bool(actor.unit) and actor.unit == search.unit)
                                            or self.oversees_every_unit(actor))

    def oversees_every_unit(self, actor: Actor) -> bool:
        """Whether ``actor`` belongs to the unit the policy lets oversee every unit."""
        oversight_unit = self.policy()[1].roles.oversight_unit
        return bool(oversight_unit) and actor.unit == oversight_unit

    def scope_refusal(self, actor: Actor, action: str, search: SearchRecord) -> NotFoundError:
        """The audited refusal of a look at another unit's search, answered as if the search did not exist (so no
        one can learn which search ids exist outside their scope); the audit entry records the real reason."""
        reason = (f"search {search.id} belongs to unit {search.unit or '(none)'!r}: only its investigator, examiners "
                  f"and that unit's supervisors may see it")
        return self.hidden(actor, action, f"search:{search.id}", reason, f"no search {search.id}")

    def hidden(self, actor: Actor, action: str, target: str, reason: str, answer: str) -> NotFoundError:
        """Audit a refused look at something outside the actor's scope (``access_denied``, with the real ``reason``)
        and return the NotFoundError to raise, whose ``answer`` is what a missing one would get."""
        self.audit.append(actor.username, "access_denied", clipped(target, 200), {"action": action, "reason": reason})
        return NotFoundError(answer)

    # --- blind review and the unit scope of what an actor reads ----------------------------------------------

    def open_reviews(self, session, actor: Actor, search_ids: Iterable[int] | None = None) -> set[int]:
        """The searches ``actor`` may still decide on (among ``search_ids`` when given): for an account holding the
        examiner role, the completed searches it did not run with a candidate it has not decided that is still open
        under the two-person rule (``open_to``). Blind review: no way of reading shows such an account another
        examiner's decision, notes or the outcome of these searches. Empty for an account without the role."""
        if not actor.has("examiner"):
            return set()
        searches = select(SearchRecord.id).where(SearchRecord.kind == "search", SearchRecord.status == "completed",
                                                 SearchRecord.user_id != actor.id)
        if search_ids is not None:
            searches = searches.where(SearchRecord.id.in_(sorted(set(search_ids))))
        reviews: dict[int, list[ReviewRecord]] = defaultdict(list)
        for review in session.scalars(select(ReviewRecord).where(ReviewRecord.search_id.in_(searches))):
            reviews[review.candidate_id].append(review)
        resolutions = {resolution.candidate_id: resolution for resolution in session.scalars(
            select(ResolutionRecord).join(CandidateRecord, CandidateRecord.id == ResolutionRecord.candidate_id)
            .where(CandidateRecord.search_id.in_(searches)))}
        required = self.examiners_required()
        candidates = session.execute(select(CandidateRecord.id, CandidateRecord.search_id)
                                     .where(CandidateRecord.search_id.in_(searches)))
        return {search_id for candidate_id, search_id in candidates
                if open_to(reviews[candidate_id], resolutions.get(candidate_id), actor.id, required)}

    def audit_unit(self, actor: Actor) -> str | None:
        """The unit whose part of the audit trail and reports ``actor`` reads: None (every unit) for an auditor and
        for a supervisor of the policy's oversight unit, else a supervisor's own unit."""
        return None if actor.has("auditor") or self.oversees_every_unit(actor) else actor.unit

    # --- the two-person rule ---------------------------------------------------------------------------------

    def examiners_required(self) -> int:
        """Independent examiners needed for a lead: two unless the policy turns two-person verification off."""
        return 2 if self.policy()[1].two_person_verification else 1

    def search_outcome(self, session, search_id: int) -> str:
        """A search's outcome under the two-person rule."""
        return outcomes.outcomes_for(session, [search_id], self.examiners_required())[search_id]

    # --- shared records ---------------------------------------------------------------------------------------

    def store_probe(self, session, probe: Probe) -> ProbeRecord:
        """Keep a probe's photograph (encrypted) and its record, in ``session``'s transaction."""
        self.probes.put(probe.sha256, probe.data)
        record = ProbeRecord(sha256=probe.sha256, width=probe.width, height=probe.height)
        session.add(record)
        session.flush()
        return record

    def pixels(self, data: bytes) -> np.ndarray:
        """A stored photograph decoded to RGB pixels, for showing it."""
        return decode_image(data, self.settings.limits).pixels

    def calibration_in_force(self, session, model: str, gallery_id: int | None) -> CalibrationInForce | None:
        """The calibrations a search of ``gallery_id`` (None: a comparison) with ``model`` would use now."""
        return in_force(session, model, gallery_id)

    def recorded_calibration(self, session, search: SearchRecord) -> CalibrationSet | None:
        """The calibrations in force when ``search`` ran (None: uncalibrated, or run before they were recorded)."""
        if search.calibration_id is None:
            return None
        return calibration_set(session, search.calibration_id, tuple(search.group_calibration_ids or ()))


def candidate_figures(tables: CalibrationSet | None, distance: float, recorded_rate: float | None,
                      gallery_subjects: int | None) -> dict[str, Any]:
    """A candidate's estimated false-match rate, in words with what it rests on (``estimate``), and how many people
    of the gallery would be expected to come as close by chance (``look_alikes``), as every interface shows them.
    Without ``tables`` (a search run uncalibrated, or before calibrations were recorded) the rate it recorded."""
    if tables is None:
        return {"false_match_rate": recorded_rate, "false_match_rate_text": false_match_rate_text(recorded_rate),
                "estimate": None, "look_alikes": None}
    estimate = tables.estimate(distance)
    look_alikes = estimate.look_alikes(gallery_subjects) if gallery_subjects else None
    return {"false_match_rate": estimate.rate, "false_match_rate_text": estimate.text, "estimate": estimate.to_dict(),
            "look_alikes": look_alikes.to_dict() if look_alikes else None}


def user_names(session) -> dict[int, str]:
    """User id → username."""
    return {user_id: name for user_id, name in session.execute(select(UserRecord.id, UserRecord.username))}


def listed_searches(session, condition, limit: int, examiners_required: int) -> list[dict[str, Any]]:
    """The searches and comparisons meeting ``condition``, newest first, each with who ran it, any quality
    override and its outcome (a completed comparison has none)."""
    records = session.scalars(
        select(SearchRecord).options(selectinload(SearchRecord.candidates)).where(condition)
        .order_by(SearchRecord.started_at.desc(), SearchRecord.id.desc()).limit(limit)
    ).all()
    outcome = outcomes.outcomes_of(session, records, examiners_required)
    names = user_names(session)
    return [
        {"search_id": r.id, "kind": r.kind, "status": r.status, "refusal_reason": r.refusal_reason,
         "investigator": names.get(r.user_id, ""), "case_number": r.case_number, "purpose": r.purpose,
         "offence": r.offence, "gallery": r.gallery_name, "started_at": as_utc(r.started_at),
         "candidates": len(r.candidates), "quality_override_by": names.get(r.quality_override_by),
         "outcome": None if r.kind == "compare" and r.status == "completed" else outcome[r.id]}
        for r in records
    ]


def open_to(reviews: list[ReviewRecord], resolution: ResolutionRecord | None, examiner_id: int,
            examiners_required: int) -> bool:
    """Whether the examiner ``examiner_id`` may still decide on a candidate with these ``reviews`` and
    ``resolution``: they have not decided it, and it is neither a lead, nor settled as no lead, nor in dispute (a
    supervisor settles a dispute; a third examiner's word would change nothing or break the tie unseen)."""
    return (all(review.examiner_id != examiner_id for review in reviews)
            and outcomes.candidate_status(reviews, resolution, examiners_required) == "undecided")


def completed_search(session, search_id: int) -> SearchRecord:
    """The search ``search_id`` (not a comparison), refused with a reason when it does not exist or was refused."""
    search = session.get(SearchRecord, search_id)
    if search is None or search.kind != "search":
        raise NotFoundError(f"no search {search_id}")
    if search.status != "completed":
        raise FacetrailError(f"search {search_id} was refused; there is nothing to review")
    return search


def candidate_at(search: SearchRecord, rank: int) -> CandidateRecord:
    """The candidate at ``rank`` in a search's list."""
    candidate = next((c for c in search.candidates if c.rank == rank), None)
    if candidate is None:
        raise NotFoundError(f"search {search.id} has no candidate at rank {rank}")
    return candidate


def failure_reason(exc: BaseException) -> str:
    """An exception as the reason an audit entry gives: its message, or its kind when it has none (at most 500
    characters)."""
    return (str(exc) or type(exc).__name__)[:500] if isinstance(exc, FacetrailError) else f"failed: {type(exc).__name__}: {exc}"[:500]


def check_notes(notes: str) -> None:
    """Refuse notes longer than MAX_NOTES."""
    if len(notes) > MAX_NOTES:
        raise FacetrailError(f"notes: at most {MAX_NOTES:,} characters (got {len(notes):,})")


def clipped(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, marked with an ellipsis when cut (the full value goes in the details)."""
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"
