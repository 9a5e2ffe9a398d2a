"""The accountable system: the only way to search a gallery, compare faces, review candidates and export leads.

Every method takes the acting user (an ``Actor`` established from a password
or token), checks the user's roles and grants and the policy in force, and
writes what happened to the audit trail in the same transaction as the records
it describes. Refusals are recorded and audited too. The system never declares
a match: a search returns a ranked list of investigative leads, and a
candidate counts as a lead only after two different examiners verify it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.orm import selectinload

from facetrail.accountability import outcomes
from facetrail.accountability.audit import AuditTrail
from facetrail.accountability.policy import Policy, PolicyStore, RequestHistory, SearchRequest, refusal_reasons, role_problems
from facetrail.accountability.schema import (
    DECISIONS,
    CandidateRecord,
    OverrideRequestRecord,
    ProbeRecord,
    ResolutionRecord,
    ReviewRecord,
    RoleChangeRecord,
    SearchRecord,
    UserRecord,
)
from facetrail.accountability.users import LOCAL_ADDRESS, ROLE_ACTIONS, Actor, UserDirectory, require
from facetrail.datadir import DataDir
from facetrail.engine.calibration import load_calibration
from facetrail.engine.decode import DecodedImage, decode_image
from facetrail.engine.geometry import Box
from facetrail.engine.pipeline import FaceEngine, FoundFace, probe_face
from facetrail.engine.ray_pool import connect as connect_ray
from facetrail.errors import (
    AuthenticationError,
    BusyError,
    DuplicateError,
    FacetrailError,
    GalleryError,
    NotFoundError,
    PermissionDeniedError,
    PolicyError,
    PoorQualityError,
    RefusedError,
)
from facetrail.evaluation.calibration import calibrate_from_photos
from facetrail.evaluation.datasets import identity_folders
from facetrail.evaluation.published import published_figures
from facetrail.config import EnrolmentConfig
from facetrail.storage import BlobStore
from facetrail.gallery.enrol import EnrolItem, EnrolOutcome, EnrolSummary, enrol
from facetrail.gallery.gallery import Galleries, Gallery, check_subject_id
from facetrail.gallery.schema import ImageRecord, TemplateRecord
from facetrail.store import as_utc, utcnow

NOTICE = (
    "Candidates are investigative leads, not identifications. The system never declares a match: a candidate "
    "becomes a lead only after two trained examiners verify it independently, and a lead is not probable cause."
)

ANONYMOUS = "anonymous"
"""The actor of audit entries about attempts by no known user (failed logins)."""
PHOTO_ROLES = ROLE_ACTIONS["view_candidate_images"]
"""The roles that see photographs."""
ROLE_CHANGE_HOURS = 24
"""How long a role change waiting for a second admin stays open."""
INSPECTION_WAIT_SECONDS = 10
"""How long finding the faces in a photograph waits for the inspection engine before answering 'busy'."""
MAX_NOTES = 10_000
"""Longest note a decision, resolution or override decision may carry (characters)."""


@dataclass(frozen=True)
class RoleChange:
    """The outcome of a role change: the user as they are now, and whether the change waits for a second admin."""

    user: Actor
    pending: bool


@dataclass(frozen=True)
class CandidateView:
    """One candidate as shown to investigators and examiners."""

    rank: int
    subject_id: str
    image_id: int | None
    distance: float
    false_match_rate: float | None


@dataclass
class SearchResult:
    """A completed search: what ran, under which versions, and the ranked candidate list."""

    search_id: int
    gallery: str
    gallery_version: int
    policy_version: int
    case_number: str
    purpose: str
    offence: str
    probe_sha256: str
    face_box: list[int]
    quality: dict[str, Any]
    candidates: list[CandidateView]
    notice: str = NOTICE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ComparisonResult:
    """A completed 1:1 comparison."""

    search_id: int
    policy_version: int
    case_number: str
    distance: float
    false_match_rate: float | None
    probe_sha256: str
    second_sha256: str
    notice: str = NOTICE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Probe:
    """A decoded probe and the face chosen in it."""

    data: bytes
    sha256: str
    width: int
    height: int
    face: FoundFace
    faces_found: int = 1


@dataclass
class _Request:
    actor: Actor
    kind: str
    case_number: str
    purpose: str
    offence: str
    authorization_ref: str = ""
    note: str = ""
    gallery: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Facetrail:
    """The accountable face search system over one data directory."""

    def __init__(self, galleries: Galleries) -> None:
        self.galleries = galleries
        self.datadir: DataDir = galleries.datadir
        self.audit = AuditTrail(galleries.engine, galleries.sessions, self.datadir)
        self.policies = PolicyStore(galleries.sessions)
        self.users = UserDirectory(galleries.sessions)
        self.probes = BlobStore(self.datadir.probes_dir, galleries.keyring, "probe")
        self._face_engine: FaceEngine | None = None
        self._inspection_engine: FaceEngine | None = None
        self._inspection_lock = threading.Lock()

    @classmethod
    def open(cls, datadir: DataDir, purge: bool = True) -> Facetrail:
        """Open an initialised data directory; past-retention probe images are purged first (the start hook)."""
        system = cls(Galleries.open(datadir))
        if purge:
            system.purge_expired(None)
        return system

    @classmethod
    def initialise(cls, datadir: DataDir, admin_username: str | None = None, admin_password: str | None = None) -> Facetrail:
        """Create or upgrade the data directory; create the first admin when there are no users yet."""
        system = cls(Galleries.initialise(datadir))
        version, _ = system.policies.active()
        if system.users.count() == 0:
            if not admin_username or not admin_password:
                raise FacetrailError("the first run needs an admin account: give --admin USERNAME and a password")
            admin = system.users.create_user(admin_username, admin_password, ["admin"], display_name="Administrator")
            with system.audit.transaction() as session:
                system.audit.record(session, "system", "init", str(datadir.root), {"policy_version": version})
                system.audit.record(session, "system", "user_created", admin.username, {"roles": ["admin"], "unit": ""})
        return system

    def calibrate(self, folder: Path, workers: int = 0, on_done: Callable[[Any], None] = lambda template: None) -> str:
        """Calibrate the estimated false-match rate of the model in use from every pair of different people in a
        folder with one subfolder of photographs per person (set-up, run by ``facetrail init``; audited). Returns
        the description of the data that the candidates' estimates will name."""
        model = self.face_engine.model
        _, table = calibrate_from_photos(self.datadir, identity_folders(folder), folder.name, self.galleries.settings.engine,
                                         model.name, workers, on_done)
        self.audit.append("system", "calibration_saved", model.name, {"impostor_pairs": table.impostor_count, "source": table.source})
        return table.source

    def close(self) -> None:
        self.galleries.close()

    @property
    def face_engine(self) -> FaceEngine:
        """The engine of searches, comparisons and the pictures pages show (callers serialise its use)."""
        if self._face_engine is None:
            self._face_engine = FaceEngine(self.galleries.settings.engine)
        return self._face_engine

    def inspect_faces(self, actor: Actor, data: bytes, face_box: Box | str | None = None) -> tuple[DecodedImage, list[FoundFace]]:
        """The photograph decoded and the faces in it (or the one in ``face_box``), largest first, with their
        quality, for choosing one before a search (investigators; audited, refusals and failures too; nothing is
        stored). Runs on an engine of its own, one photograph at a time, for photographs up to
        ``limits.max_interactive_pixels``, so it never holds up a search; BusyError when no turn comes within
        INSPECTION_WAIT_SECONDS."""
        details: dict[str, Any] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        try:
            self.require(actor, "search")
            box = _box(face_box)
            if not self._inspection_lock.acquire(timeout=INSPECTION_WAIT_SECONDS):
                raise BusyError("finding faces is busy with other photographs; try again in a few seconds")
            try:
                if self._inspection_engine is None:
                    self._inspection_engine = FaceEngine(self.galleries.settings.interactive_engine)
                decoded = self._inspection_engine.decode(data)
                faces = self._inspection_engine.find_faces(decoded.pixels, box)
            finally:
                self._inspection_lock.release()
        except PermissionDeniedError:
            raise  # audited as access_denied
        except Exception as exc:
            self.audit.append(actor.username, "faces_inspection_refused", "", {**details, "reason": _reason(exc)})
            raise
        self.audit.append(actor.username, "faces_inspected", "", {
            **details, "width": int(decoded.pixels.shape[1]), "height": int(decoded.pixels.shape[0]), "faces": len(faces)})
        return decoded, faces

    # --- authentication and users -------------------------------------------------------------

    def login(self, username: str, password: str, label: str = "cli", address: str = LOCAL_ADDRESS) -> tuple[Actor, str]:
        """Log in (audited, failures too) and return the actor and a new API token. ``address`` is the client's
        (failed logins are counted per username and address). A failure is recorded as done by no one
        (ANONYMOUS), with the name tried kept as data: it is not an actor the system knows."""
        try:
            actor, token = self.users.login(username, password, label, address)
        except AuthenticationError as exc:
            self.audit.append(ANONYMOUS, "login_failed", "", {
                "username_tried": username[:100], "reason": str(exc), "via": label, "address": address[:100]})
            raise
        self.audit.append(actor.username, "login", actor.username, {"via": label, "address": address[:100]})
        return actor, token

    def authenticate(self, token: str | None) -> Actor:
        """The actor a token belongs to."""
        if not token:
            raise AuthenticationError("not logged in: run 'facetrail login' or set FACETRAIL_TOKEN")
        return self.users.authenticate(token)

    def logout(self, token: str) -> None:
        actor = self.users.authenticate(token)
        self.users.revoke(token)
        self.audit.append(actor.username, "logout", actor.username)

    def create_user(self, by: Actor, username: str, password: str, roles: list[str], unit: str = "", display_name: str = "") -> Actor:
        """Create an account (admins; audited with it). An account that would be an admin and see photographs
        cannot be created by one admin: create it without one of the two, then change its roles (set_roles), which
        needs a second admin."""
        self.require(by, "manage_users", username)
        self._check_roles(roles)
        if _admin_with_photographs(set(roles)):
            self._deny(by, "manage_users", username, "an account that is both an admin and sees photographs needs a "
                                                     "second admin: create it without one of the two, then change its roles")
        with self.audit.transaction() as session:
            created = self.users.create_user(username, password, roles, unit, display_name, session=session)
            self.audit.record(session, by.username, "user_created", username, {"roles": sorted(roles), "unit": unit})
        return created

    def set_roles(self, by: Actor, username: str, roles: list[str]) -> RoleChange:
        """Replace a user's roles (admins; audited). No one changes their own roles. A change that makes an admin
        see photographs (or gives a photograph-viewing user admin), where the policy allows that at all, waits for a
        second admin: the first admin's request is recorded (``pending``), and it takes effect when a different admin
        asks for the same roles within ROLE_CHANGE_HOURS."""
        self.require(by, "manage_users", username)
        target = self.users.user(username)
        if target.id == by.id:
            self._deny(by, "manage_users", username, "no one may change their own roles; ask another admin")
        self._check_roles(roles)
        wanted = sorted(set(roles))
        with self.audit.transaction() as session:
            requester = None
            if _admin_with_photographs(set(wanted)) and not set(wanted) <= target.roles:
                since = utcnow() - dt.timedelta(hours=ROLE_CHANGE_HOURS)
                pending = session.scalar(select(RoleChangeRecord).where(
                    RoleChangeRecord.user_id == target.id, RoleChangeRecord.approved_by.is_(None),
                    RoleChangeRecord.requested_at >= since).order_by(RoleChangeRecord.id.desc()).limit(1))
                if pending is None or sorted(pending.roles) != wanted or pending.requested_by == by.id:
                    session.add(RoleChangeRecord(user_id=target.id, roles=wanted, requested_by=by.id))
                    self.audit.record(session, by.username, "roles_change_requested", username, {
                        "roles": wanted, "from": sorted(target.roles), "waits_for": "a second admin"})
                    return RoleChange(target, pending=True)
                pending.approved_by, pending.approved_at = by.id, utcnow()
                requester = self.user_names(session).get(pending.requested_by)
            changed = self.users.set_roles(username, wanted, session=session)
            self.audit.record(session, by.username, "roles_changed", username, {
                "roles": wanted, "from": sorted(target.roles), "requested_by": requester})
        return RoleChange(changed, pending=False)

    def set_active(self, by: Actor, username: str, active: bool) -> Actor:
        """Enable or disable an account (admins; audited with it); disabling revokes its tokens. No one disables
        themselves."""
        self.require(by, "manage_users", username)
        if username == by.username and not active:
            self._deny(by, "manage_users", username, "no one may disable their own account; ask another admin")
        with self.audit.transaction() as session:
            changed = self.users.set_active(username, active, session=session)
            self.audit.record(session, by.username, "user_enabled" if active else "user_disabled", username)
        if not active:
            self.users.revoke_all(username)
        return changed

    def unlock(self, by: Actor, username: str) -> Actor:
        """Lift every login lockout of an account (admins; audited with it)."""
        self.require(by, "manage_users", username)
        with self.audit.transaction() as session:
            unlocked = self.users.unlock(username, session=session)
            self.audit.record(session, by.username, "user_unlocked", username)
        return unlocked

    def _check_roles(self, roles: list[str]) -> None:
        _, policy = self.policies.active()
        problems = role_problems(policy, roles)
        if problems:
            raise PermissionDeniedError("; ".join(problems))

    # --- permissions, refusals audited ----------------------------------------------------------

    def require(self, actor: Actor, action: str, target: str = "") -> None:
        """``users.require``, with a refusal audited (``access_denied``) before it is raised."""
        try:
            require(actor, action)
        except PermissionDeniedError as exc:
            self._deny(actor, action, target, str(exc))

    def _deny(self, actor: Actor, action: str, target: str, reason: str) -> NoReturn:
        """Audit a refused attempt (``access_denied``) and raise PermissionDeniedError with ``reason``."""
        self.audit.append(actor.username, "access_denied", _clipped(target, 200), {"action": action, "reason": reason})
        raise PermissionDeniedError(reason)

    # --- policy -------------------------------------------------------------------------------

    def load_policy(self, by: Actor, text: str) -> int:
        """Load a new policy version (refused with line-level errors, keeping the old one, if invalid)."""
        self.require(by, "manage_policy")
        before, _ = self.policies.active()
        try:
            with self.audit.transaction() as session:
                version = self.policies.load(text, by.id, session=session)
                if version != before:
                    self.audit.record(session, by.username, "policy_loaded", f"policy:{version}",
                                      {"sha256": hashlib.sha256(text.encode()).hexdigest()})
        except PolicyError as exc:
            self.audit.append(by.username, "policy_refused", "", {"problems": [list(p) for p in exc.problems]})
            raise
        return version

    def list_users(self, by: Actor) -> list[dict[str, Any]]:
        self.require(by, "manage_users")
        return self.users.list_users()

    def policy_in_force(self, by: Actor) -> tuple[int, str]:
        """The active policy's version and text: any authenticated user may read the rules they work under."""
        version, _ = self.policies.active()
        text = next((h["text"] for h in self.policies.history() if h["version"] == version), "")
        return version, text

    def policy_history(self, by: Actor) -> list[dict[str, Any]]:
        """Every policy version loaded (admins and auditors)."""
        if not (by.has("admin") or by.has("auditor")):
            raise PermissionDeniedError(f"{by.username} may not read the policy history (admin or auditor)")
        return self.policies.history()

    def back_up(self, by: Actor, folder) -> dict[str, Any]:
        """Write a backup of the data directory, without its keys, to a new folder (admins; audited before and after,
        so the backup holds its own start). See ``accountability.backup``."""
        from facetrail.accountability.backup import back_up

        self.require(by, "backup", str(folder)[:200])
        self.audit.append(by.username, "backup_started", str(folder)[:200])
        manifest = back_up(self.galleries, self.audit, folder)
        self.audit.append(by.username, "backup_created", str(folder)[:200], {
            "rows": manifest["rows"], "files": len(manifest["files"]), "schema_revision": manifest["schema_revision"]})
        return manifest

    def rotate_keys(self, by: Actor):
        """Re-encrypt all biometric data under a new key (audited)."""
        from facetrail.accountability.keys import rotate_data_key

        self.require(by, "rotate_keys")
        report = rotate_data_key(self.galleries)
        self.audit.append(by.username, "keys_rotated", "data-keys", asdict(report))
        return report

    # --- galleries (administration, audited) ----------------------------------------------------

    def create_gallery(self, by: Actor, name: str, allowed_sources: list[str], description: str = ""):
        self.require(by, "manage_galleries")
        with self.audit.transaction() as session:
            info = self.galleries.create(name, allowed_sources, description, session=session)
            self.audit.record(session, by.username, "gallery_created", name, {"allowed_sources": info.allowed_sources})
        return info

    def grant_gallery(self, by: Actor, name: str, unit: str) -> None:
        self.require(by, "manage_galleries")
        gallery = self.galleries.get(name)
        with self.audit.transaction() as session:
            self.users.grant_gallery(gallery.id, unit, by, session=session)
            self.audit.record(session, by.username, "gallery_granted", name, {"unit": unit})

    def revoke_gallery(self, by: Actor, name: str, unit: str) -> None:
        self.require(by, "manage_galleries")
        gallery = self.galleries.get(name)
        with self.audit.transaction() as session:
            self.users.revoke_gallery(gallery.id, unit, session=session)
            self.audit.record(session, by.username, "gallery_grant_revoked", name, {"unit": unit})

    def enrol(self, by: Actor, gallery: str, items: list[EnrolItem], rules: EnrolmentConfig | None = None,
              on_outcome: Callable[[EnrolOutcome], None] = lambda outcome: None, retry_rejected: bool = False) -> EnrolSummary:
        """Enrol photographs into a gallery (admins only; the run's start, and its counts and sources at the end,
        are audited). A run naming an unusable subject id is refused as a whole, before anything is enrolled."""
        self.require(by, "enrol")
        target = self.galleries.get(gallery)
        settings = self.galleries.settings
        rules = rules or settings.enrolment
        if rules.ray_address:  # no ray package, or no cluster there: refused before the run is audited as started
            connect_ray(rules.ray_address)
        sources = sorted({item.source for item in items})
        problems = []
        for subject_id in sorted({item.subject_id for item in items}):
            try:
                check_subject_id(subject_id)
            except GalleryError as exc:
                problems.append(str(exc))
        if problems:
            self.audit.append(by.username, "enrolment_refused", gallery, {
                "reason": problems[0], "items": len(items), "unusable_subject_ids": len(problems)})
            raise GalleryError(f"enrolment refused, nothing enrolled: {len(problems)} unusable subject id(s); {problems[0]}")
        # a run cut short (a killed process) keeps what it committed: this entry shows it began
        self.audit.append(by.username, "enrolment_started", gallery, {"items": len(items), "sources": sources})
        summary = enrol(target, items, settings.engine, rules, on_outcome, retry_rejected)
        self.audit.append(by.username, "enrolment", gallery, {**summary.to_dict(), "sources": sources,
                                                               "gallery_version": target.info().version})
        return summary

    def remove_subject(self, by: Actor, gallery: str, subject_id: str):
        """Expunge a subject (admins): the deletion and its audit entry are committed together, or neither is."""
        self.require(by, "manage_galleries")

        def audit_removal(session, report) -> None:
            self.audit.record(session, by.username, "subject_removed", _clipped(f"{gallery}/{subject_id}", 200), {
                "gallery": gallery, "subject_id": subject_id, "images": report.images, "templates": report.templates})

        return self.galleries.get(gallery).remove_subject(subject_id, self.audit.transaction, audit_removal)

    # --- searching ------------------------------------------------------------------------------

    def search(
        self,
        actor: Actor,
        probe_bytes: bytes,
        gallery: str,
        case_number: str,
        purpose: str,
        offence: str,
        authorization_ref: str = "",
        note: str = "",
        face_box: Box | str | None = None,
        face_number: int | None = None,
        quality_override: Actor | None = None,
    ) -> SearchResult:
        """Search a gallery with a probe photograph for an authorized, policy-compliant request (see module docstring).
        ``face_box`` may be given as the text "x,y,w,h". Any failure after the request arrives is audited: a refusal
        as such, an unexpected error as a refused search naming it."""
        started = utcnow()
        request = _Request(actor, "search", case_number, purpose, offence, authorization_ref, note, gallery)
        probe_sha = hashlib.sha256(probe_bytes).hexdigest()
        policy_version, policy = self.policies.active()
        try:
            require(actor, "search")
            target = self._searchable(actor, gallery)
            self._check_request(policy, request)
            probe = self._probe(probe_bytes, _box(face_box), face_number, policy, quality_override)
            template = self.face_engine.template(probe.face)
            hits = target.search(template.embedding, policy.max_candidates)
        except (FacetrailError, ValueError) as exc:
            self._refuse(request, policy_version, probe_sha, started, str(exc))
            raise RefusedError(f"search refused: {exc}") from exc
        except Exception as exc:
            self._refuse(request, policy_version, probe_sha, started, _reason(exc))
            raise
        found = hits.candidates
        if policy.max_distance is not None:
            found = [c for c in found if c.distance <= policy.max_distance]
        calibration = load_calibration(self.datadir, template.model_name)
        candidates = [
            CandidateView(c.rank, c.subject_id, c.image_id, c.distance, calibration.false_match_rate(c.distance) if calibration else None)
            for c in found
        ]
        gallery_version = hits.version
        with self.audit.transaction() as session:
            probe_record = self._store_probe(session, probe)
            record = SearchRecord(
                kind="search", user_id=actor.id, unit=actor.unit, status="completed", gallery_id=target.id, gallery_name=gallery,
                gallery_version=gallery_version, policy_version=policy_version, case_number=case_number, purpose=purpose,
                offence=offence, authorization_ref=authorization_ref, note=note, probe_id=probe_record.id,
                face_box=probe.face.detection.box.as_list(), quality=probe.face.quality.to_dict(),
                quality_override_by=quality_override.id if quality_override and not probe.face.quality.acceptable else None,
                model_name=template.model_name, started_at=started, ended_at=utcnow(),
            )
            session.add(record)
            session.flush()
            for c in candidates:
                session.add(CandidateRecord(search_id=record.id, rank=c.rank, subject_external_id=c.subject_id, image_id=c.image_id,
                                            distance=c.distance, false_match_rate=c.false_match_rate))
            self.audit.record(session, actor.username, "search", f"search:{record.id}", {
                "gallery": gallery, "gallery_version": gallery_version, "policy_version": policy_version,
                "case_number": case_number, "purpose": purpose, "offence": offence, "authorization_ref": authorization_ref,
                "probe_sha256": probe.sha256, "face_box": record.face_box, "quality": record.quality["verdict"],
                "quality_override_by": quality_override.username if record.quality_override_by else None,
                "started_at": started.isoformat(), "ended_at": record.ended_at.isoformat(),
                "candidates": [[c.rank, c.subject_id, c.image_id, round(c.distance, 6)] for c in candidates],
            })
            search_id = record.id
        return SearchResult(search_id, gallery, gallery_version, policy_version, case_number, purpose, offence, probe.sha256,
                            probe.face.detection.box.as_list(), probe.face.quality.to_dict(), candidates)

    def compare(
        self, actor: Actor, first: bytes, second: bytes, case_number: str, purpose: str, offence: str,
        authorization_ref: str = "", note: str = "",
    ) -> ComparisonResult:
        """Compare two photographs (1:1) under the same rules as a search: role, policy, audit."""
        started = utcnow()
        request = _Request(actor, "compare", case_number, purpose, offence, authorization_ref, note)
        first_sha = hashlib.sha256(first).hexdigest()
        policy_version, policy = self.policies.active()
        try:
            require(actor, "compare")
            self._check_request(policy, request)
            probes = [self._probe(data, None, None, policy, None) for data in (first, second)]
            a, b = (self.face_engine.template(p.face).embedding for p in probes)
        except (FacetrailError, ValueError) as exc:
            self._refuse(request, policy_version, first_sha, started, str(exc))
            raise RefusedError(f"comparison refused: {exc}") from exc
        except Exception as exc:
            self._refuse(request, policy_version, first_sha, started, _reason(exc))
            raise
        distance = float(np.linalg.norm(a - b))
        calibration = load_calibration(self.datadir, self.face_engine.model.name)
        fmr = calibration.false_match_rate(distance) if calibration else None
        with self.audit.transaction() as session:
            first_record, second_record = (self._store_probe(session, p) for p in probes)
            record = SearchRecord(kind="compare", user_id=actor.id, unit=actor.unit, status="completed", policy_version=policy_version,
                                  case_number=case_number, purpose=purpose, offence=offence, authorization_ref=authorization_ref,
                                  note=note, probe_id=first_record.id, second_probe_id=second_record.id,
                                  model_name=self.face_engine.model.name, started_at=started, ended_at=utcnow())
            session.add(record)
            session.flush()
            self.audit.record(session, actor.username, "compare", f"search:{record.id}", {
                "policy_version": policy_version, "case_number": case_number, "purpose": purpose, "offence": offence,
                "probe_sha256": probes[0].sha256, "second_sha256": probes[1].sha256, "distance": round(distance, 6),
            })
            search_id = record.id
        return ComparisonResult(search_id, policy_version, case_number, distance, fmr, probes[0].sha256, probes[1].sha256)

    def _check_request(self, policy: Policy, request: _Request) -> None:
        with self.galleries.sessions() as session:
            day_start = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
            today = session.scalar(select(func.count()).select_from(SearchRecord).where(
                SearchRecord.user_id == request.actor.id, SearchRecord.status == "completed", SearchRecord.started_at >= day_start))
            on_case = session.execute(
                select(UserRecord.username).join(SearchRecord, SearchRecord.user_id == UserRecord.id)
                .where(SearchRecord.case_number == request.case_number, SearchRecord.status == "completed")
            ).scalars().all()
        history = RequestHistory(searches_by_user_today=today, users_on_case=frozenset(on_case), searches_on_case=len(on_case))
        reasons = refusal_reasons(policy, SearchRequest(
            kind=request.kind, username=request.actor.username, unit=request.actor.unit, case_number=request.case_number,
            purpose=request.purpose, offence=request.offence, authorization_ref=request.authorization_ref, note=request.note,
        ), history)
        if reasons:
            raise RefusedError("; ".join(reasons))

    def _searchable(self, actor: Actor, gallery: str) -> Gallery:
        """The gallery, if the actor's unit holds a grant to search it."""
        target = self.galleries.get(gallery)
        if not self.users.may_search(actor, target.id):
            raise PermissionDeniedError(f"unit {actor.unit or '(none)'!r} is not authorized to search gallery {gallery!r}")
        return target

    def _probe(self, data: bytes, face_box: Box | None, face_number: int | None, policy: Policy, override: Actor | None) -> Probe:
        """The probe's chosen face, refused (PoorQualityError) when its quality is poor unless the policy allows a
        supervisor's override and ``override`` is a supervisor."""
        probe = self._find_face(data, face_box, face_number)
        if not probe.face.quality.acceptable:
            reasons = "; ".join(probe.face.quality.reasons)
            if policy.poor_probe == "refuse":
                raise PoorQualityError(f"probe quality is poor ({reasons}); the policy refuses poor probes")
            if override is None:
                raise PoorQualityError(f"probe quality is poor ({reasons}); a supervisor must approve the search (override)")
            require(override, "override_quality")
        return probe

    def _find_face(self, data: bytes, face_box: Box | None, face_number: int | None) -> Probe:
        """The probe decoded (up to ``limits.max_interactive_pixels``), with the face chosen by hand (``face_box``),
        by number, or as the only one found."""
        engine = self.face_engine
        image = decode_image(data, self.galleries.settings.interactive_engine.limits)
        faces = engine.find_faces(image.pixels, face_box)
        face = probe_face(faces, face_number)
        return Probe(data, hashlib.sha256(data).hexdigest(), image.pixels.shape[1], image.pixels.shape[0], face, len(faces))

    def _store_probe(self, session, probe: Probe) -> ProbeRecord:
        self.probes.put(probe.sha256, probe.data)
        record = ProbeRecord(sha256=probe.sha256, width=probe.width, height=probe.height)
        session.add(record)
        session.flush()
        return record

    def _refuse(self, request: _Request, policy_version: int, probe_sha: str, started: dt.datetime, reason: str) -> None:
        with self.audit.transaction() as session:
            target = None
            if request.gallery:
                try:
                    target = self.galleries.get(request.gallery)
                except NotFoundError:
                    target = None
            record = SearchRecord(
                kind=request.kind, user_id=request.actor.id, unit=request.actor.unit, status="refused", refusal_reason=reason,
                gallery_id=target.id if target else None, gallery_name=request.gallery, policy_version=policy_version,
                case_number=request.case_number, purpose=request.purpose, offence=request.offence,
                authorization_ref=request.authorization_ref, note=request.note, started_at=started, ended_at=utcnow(),
            )
            session.add(record)
            session.flush()
            self.audit.record(session, request.actor.username, f"{request.kind}_refused", f"search:{record.id}", {
                "reason": reason, "gallery": request.gallery, "policy_version": policy_version, "case_number": request.case_number,
                "purpose": request.purpose, "offence": request.offence, "probe_sha256": probe_sha,
            })

    # --- review ---------------------------------------------------------------------------------

    def review_queue(self, actor: Actor) -> list[dict[str, Any]]:
        """Searches waiting for this examiner: not run by them, not yet decided by them, still open. Blind: no one
        else's decisions are shown."""
        self.require(actor, "review")
        with self.galleries.sessions() as session:
            searches = session.scalars(
                select(SearchRecord).where(SearchRecord.kind == "search", SearchRecord.status == "completed",
                                           SearchRecord.user_id != actor.id).order_by(SearchRecord.started_at)
            ).all()
            status = outcomes.outcomes_for(session, [s.id for s in searches], self.examiners_required())
            mine = set(session.scalars(select(ReviewRecord.search_id).where(ReviewRecord.examiner_id == actor.id)))
            return [
                {"search_id": s.id, "case_number": s.case_number, "gallery": s.gallery_name, "purpose": s.purpose,
                 "offence": s.offence, "started_at": s.started_at.isoformat(), "candidates": len(s.candidates)}
                for s in searches if s.id not in mine and status[s.id] == "pending_review"
            ]

    def my_searches(self, actor: Actor, limit: int = 50) -> list[dict[str, Any]]:
        """The actor's own searches and comparisons, newest first, completed or refused, each with its outcome (a
        completed comparison has none)."""
        with self.galleries.sessions() as session:
            return self._listed_searches(session, SearchRecord.user_id == actor.id, limit)

    def _listed_searches(self, session, condition, limit: int) -> list[dict[str, Any]]:
        """The searches and comparisons meeting ``condition``, newest first, each with who ran it, any quality
        override and its outcome (a completed comparison has none)."""
        records = session.scalars(
            select(SearchRecord).options(selectinload(SearchRecord.candidates)).where(condition)
            .order_by(SearchRecord.started_at.desc(), SearchRecord.id.desc()).limit(limit)
        ).all()
        outcome = outcomes.outcomes_of(session, records, self.examiners_required())
        names = self.user_names(session)
        return [
            {"search_id": r.id, "kind": r.kind, "status": r.status, "refusal_reason": r.refusal_reason,
             "investigator": names.get(r.user_id, ""), "case_number": r.case_number, "purpose": r.purpose,
             "offence": r.offence, "gallery": r.gallery_name, "started_at": as_utc(r.started_at),
             "candidates": len(r.candidates), "quality_override_by": names.get(r.quality_override_by),
             "outcome": None if r.kind == "compare" and r.status == "completed" else outcome[r.id]}
            for r in records
        ]

    def show_search(self, actor: Actor, search_id: int) -> dict[str, Any]:
        """A search and its candidate list (audited). The investigator who ran it sees the outcome; an examiner sees
        only their own decisions (blind review), even one who is a supervisor too; a supervisor sees every
        decision."""
        with self.galleries.sessions() as session:
            search = self.viewable_search(session, actor, search_id)
            sees_all = _sees_every_decision(actor)
            owner = search.user_id == actor.id
            reviews = session.scalars(select(ReviewRecord).where(ReviewRecord.search_id == search_id)).all()
            visible = [r for r in reviews if sees_all or r.examiner_id == actor.id]
            names = self.user_names(session)
            shown = {
                "search_id": search.id, "investigator": names.get(search.user_id, ""), "case_number": search.case_number,
                "gallery": search.gallery_name, "gallery_version": search.gallery_version, "policy_version": search.policy_version,
                "purpose": search.purpose, "offence": search.offence, "face_box": search.face_box, "quality": search.quality,
                "started_at": search.started_at.isoformat(), "calibration": self.calibration_source(search.model_name),
                "outcome": self.search_outcome(session, search_id) if owner or sees_all else None,
                "candidates": [
                    {"rank": c.rank, "subject_id": c.subject_external_id, "image_id": c.image_id, "distance": c.distance,
                     "false_match_rate": c.false_match_rate,
                     "decisions": [{"examiner": names.get(r.examiner_id, ""), "decision": r.decision, "notes": r.notes}
                                   for r in visible if r.candidate_id == c.id]}
                    for c in search.candidates
                ],
                "notice": NOTICE,
            }
        self.audit.append(actor.username, "search_viewed", f"search:{search_id}", {"candidates": len(shown["candidates"])})
        return shown

    def decide(self, actor: Actor, search_id: int, rank: int, decision: str, notes: str = "") -> str:
        """Record an examiner's decision on one candidate; returns the search's outcome afterwards."""
        self.require(actor, "review", f"search:{search_id}")
        _check_decision(decision)
        _check_notes(notes)
        with self.audit.transaction() as session:
            search = self.completed_search(session, search_id)
            if search.user_id == actor.id:
                raise PermissionDeniedError("the investigator who ran a search cannot review it")
            candidate = _candidate_at(search, rank)
            already = session.scalar(select(ReviewRecord).where(ReviewRecord.candidate_id == candidate.id,
                                                                ReviewRecord.examiner_id == actor.id))
            if already is not None:
                raise DuplicateError(f"you already decided on candidate {rank} of search {search_id}; decisions are final")
            session.add(ReviewRecord(search_id=search_id, candidate_id=candidate.id, examiner_id=actor.id, decision=decision, notes=notes))
            session.flush()
            self.audit.record(session, actor.username, "review_decision", f"search:{search_id}",
                              {"rank": rank, "subject_id": candidate.subject_external_id, "decision": decision, "notes": notes})
            result = self.search_outcome(session, search_id)
        return result

    def disputes(self, actor: Actor) -> list[dict[str, Any]]:
        """Candidates on which examiners disagree and no supervisor has ruled, for a supervisor to resolve: those of
        searches of the supervisor's unit (of every unit for the policy's oversight unit), whatever the rest of the
        search's outcome. None for a supervisor who is an examiner too (where the policy allows it): they would see
        other examiners' decisions before their own."""
        self.require(actor, "resolve_dispute")
        if actor.has("examiner"):
            return []
        with self.galleries.sessions() as session:
            query = select(SearchRecord).options(selectinload(SearchRecord.candidates)).where(
                SearchRecord.kind == "search", SearchRecord.status == "completed")
            if not self._oversees_every_unit(actor):
                query = query.where(SearchRecord.unit == actor.unit)
            searches = session.scalars(query.order_by(SearchRecord.started_at, SearchRecord.id)).all()
            names = self.user_names(session)
            required = self.examiners_required()
            found = []
            for search in searches:
                for candidate in search.candidates:
                    reviews = session.scalars(select(ReviewRecord).where(ReviewRecord.candidate_id == candidate.id)).all()
                    resolution = session.scalar(select(ResolutionRecord).where(ResolutionRecord.candidate_id == candidate.id))
                    if outcomes.candidate_status(list(reviews), resolution, required) == "disputed":
                        found.append({"search_id": search.id, "rank": candidate.rank, "subject_id": candidate.subject_external_id,
                                      "case_number": search.case_number, "investigator": names.get(search.user_id, ""),
                                      "decisions": [{"examiner_id": r.examiner_id, "examiner": names.get(r.examiner_id, ""),
                                                     "decision": r.decision, "notes": r.notes} for r in reviews]})
            return found

    def resolve(self, actor: Actor, search_id: int, rank: int, decision: str, notes: str = "") -> str:
        """A supervisor of the search's unit (or of the oversight unit) who neither ran nor reviewed it, and is not
        an examiner, settles a disagreement on one candidate, once; returns the search's outcome afterwards."""
        self.require(actor, "resolve_dispute", f"search:{search_id}")
        _check_decision(decision)
        _check_notes(notes)
        if actor.has("examiner"):
            self._deny(actor, "resolve_dispute", f"search:{search_id}",
                       "an examiner may not settle examiners' disputes (blind review)")
        with self.galleries.sessions() as session:
            search = self.completed_search(session, search_id)
            if not self._oversees(actor, search):
                raise self._scope_refusal(actor, "resolve_dispute", search)
        with self.audit.transaction() as session:
            search = self.completed_search(session, search_id)
            candidate = _candidate_at(search, rank)
            reviews = session.scalars(select(ReviewRecord).where(ReviewRecord.candidate_id == candidate.id)).all()
            if session.scalar(select(ResolutionRecord.id).where(ResolutionRecord.candidate_id == candidate.id)):
                raise DuplicateError(f"the dispute on candidate {rank} of search {search_id} is already resolved; "
                                     "resolutions are final")
            if outcomes.candidate_status(list(reviews), None, self.examiners_required()) != "disputed":
                raise FacetrailError(f"candidate {rank} of search {search_id} is not in dispute")
            if search.user_id == actor.id or any(r.examiner_id == actor.id for r in reviews):
                raise PermissionDeniedError("a supervisor cannot resolve a dispute on a search they ran or reviewed")
            session.add(ResolutionRecord(candidate_id=candidate.id, supervisor_id=actor.id, decision=decision, notes=notes))
            session.flush()
            self.audit.record(session, actor.username, "dispute_resolved", f"search:{search_id}",
                              {"rank": rank, "decision": decision, "notes": notes, "unit": search.unit})
            return self.search_outcome(session, search_id)

    def outcome(self, search_id: int) -> str:
        with self.galleries.sessions() as session:
            return self.search_outcome(session, search_id)

    def search_outcome(self, session, search_id: int) -> str:
        """A search's outcome under the two-person rule."""
        return outcomes.outcomes_for(session, [search_id], self.examiners_required())[search_id]

    def examiners_required(self) -> int:
        """Independent examiners needed for a lead: two unless the policy turns two-person verification off."""
        _, policy = self.policies.active()
        return 2 if policy.two_person_verification else 1

    def viewable_search(self, session, actor: Actor, search_id: int) -> SearchRecord:
        """A completed search the actor may look at: their own; any as an examiner (examiners review every unit's
        searches); as a supervisor, their unit's (every unit's for the policy's oversight unit). A refusal is
        audited."""
        self.require(actor, "view_candidate_images", f"search:{search_id}")
        search = session.get(SearchRecord, search_id)
        if search is not None and not (search.user_id == actor.id or actor.has("examiner") or self._oversees(actor, search)):
            raise self._scope_refusal(actor, "view_candidate_images", search)
        return self.completed_search(session, search_id)

    def _oversees(self, actor: Actor, search: SearchRecord) -> bool:
        """Whether ``actor`` is a supervisor of the search's unit, or of the oversight unit."""
        return actor.has("supervisor") and ((bool(actor.unit) and actor.unit == search.unit)
                                            or self._oversees_every_unit(actor))

    def _oversees_every_unit(self, actor: Actor) -> bool:
        """Whether ``actor`` belongs to the unit the policy lets oversee every unit."""
        oversight_unit = self.policies.active()[1].roles.oversight_unit
        return bool(oversight_unit) and actor.unit == oversight_unit

    def _scope_refusal(self, actor: Actor, action: str, search: SearchRecord) -> NotFoundError:
        """The audited refusal of a look at another unit's search, answered as if the search did not exist (so no
        one can learn which search ids exist outside their scope); the audit entry records the real reason."""
        reason = (f"search {search.id} belongs to unit {search.unit or '(none)'!r}: only its investigator, examiners "
                  f"and that unit's supervisors may see it")
        self.audit.append(actor.username, "access_denied", f"search:{search.id}", {"action": action, "reason": reason})
        return NotFoundError(f"no search {search.id}")

    @staticmethod
    def completed_search(session, search_id: int) -> SearchRecord:
        search = session.get(SearchRecord, search_id)
        if search is None or search.kind != "search":
            raise NotFoundError(f"no search {search_id}")
        if search.status != "completed":
            raise FacetrailError(f"search {search_id} was refused; there is nothing to review")
        return search

    # --- supervision: unit activity and quality overrides -------------------------------------

    def unit_activity(self, supervisor: Actor, limit: int = 100) -> list[dict[str, Any]]:
        """Recent searches and comparisons run by members of the supervisor's unit, newest first, completed or
        refused, each with who ran it, any quality override and its outcome."""
        self.require(supervisor, "view_unit_activity")
        with self.galleries.sessions() as session:
            return self._listed_searches(session, SearchRecord.unit == supervisor.unit, limit)

    def request_override(
        self,
        actor: Actor,
        probe_bytes: bytes,
        gallery: str,
        case_number: str,
        purpose: str,
        offence: str,
        authorization_ref: str = "",
        note: str = "",
        face_box: Box | str | None = None,
        face_number: int | None = None,
    ) -> int:
        """Ask a supervisor of the actor's unit to approve a search whose probe is of poor quality; returns the
        request's id. Only under a policy whose ``poor_probe`` is ``supervisor_override``, only for a probe that is
        really poor, and only for a request that passes every other check a search makes. The probe is kept
        encrypted, like a search's, under the probe retention period. Audited, refusals too."""
        request = _Request(actor, "search", case_number, purpose, offence, authorization_ref, note, gallery)
        policy_version, policy = self.policies.active()
        try:
            require(actor, "search")
            if policy.poor_probe != "supervisor_override":
                raise FacetrailError("the policy refuses poor-quality probes: a supervisor cannot approve them")
            self._searchable(actor, gallery)
            self._check_request(policy, request)
            face_box = _box(face_box)
            probe = self._find_face(probe_bytes, face_box, face_number)
            if probe.face.quality.acceptable:
                raise FacetrailError("the probe's quality is acceptable: run the search itself, no approval is needed")
            self._check_not_pending(actor, probe.sha256, gallery, case_number)
        except Exception as exc:
            self.audit.append(actor.username, "override_request_refused", gallery[:200], {
                "reason": str(exc), "policy_version": policy_version, "case_number": case_number, "purpose": purpose,
                "offence": offence, "probe_sha256": hashlib.sha256(probe_bytes).hexdigest()})
            if not isinstance(exc, (FacetrailError, ValueError)):
                raise
            raise RefusedError(f"override request refused: {exc}") from exc
        quality = probe.face.quality
        with self.audit.transaction() as session:
            probe_record = self._store_probe(session, probe)
            record = OverrideRequestRecord(
                user_id=actor.id, unit=actor.unit, status="pending", gallery_name=gallery, policy_version=policy_version,
                case_number=case_number, purpose=purpose, offence=offence, authorization_ref=authorization_ref, note=note,
                probe_id=probe_record.id, requested_box=face_box.as_list() if face_box else None, face_number=face_number,
                face_box=probe.face.detection.box.as_list(), quality=quality.to_dict(),
            )
            session.add(record)
            session.flush()
            self.audit.record(session, actor.username, "override_requested", f"override:{record.id}", {
                "gallery": gallery, "policy_version": policy_version, "case_number": case_number, "purpose": purpose,
                "offence": offence, "authorization_ref": authorization_ref, "probe_sha256": probe.sha256,
                "face_box": record.face_box, "quality_reasons": list(quality.reasons),
            })
            return record.id

    def _check_not_pending(self, actor: Actor, probe_sha: str, gallery: str, case_number: str) -> None:
        """Refuse asking twice for the same probe, gallery and case while the first request waits."""
        with self.galleries.sessions() as session:
            waiting = session.scalar(
                select(OverrideRequestRecord.id).join(ProbeRecord, ProbeRecord.id == OverrideRequestRecord.probe_id).where(
                    OverrideRequestRecord.user_id == actor.id, OverrideRequestRecord.status == "pending",
                    OverrideRequestRecord.gallery_name == gallery, OverrideRequestRecord.case_number == case_number,
                    ProbeRecord.sha256 == probe_sha)
            )
        if waiting is not None:
            raise DuplicateError(f"this probe already waits for a supervisor's approval (request {waiting})")

    def pending_overrides(self, supervisor: Actor) -> list[dict[str, Any]]:
        """Override requests from the supervisor's unit still waiting for a decision, oldest first, with the
        reasons the probe's quality is poor."""
        self.require(supervisor, "override_quality")
        with self.galleries.sessions() as session:
            return self._listed_overrides(session, (OverrideRequestRecord.unit == supervisor.unit,
                                                    OverrideRequestRecord.status == "pending"), newest_first=False)

    def my_override_requests(self, actor: Actor, limit: int = 50) -> list[dict[str, Any]]:
        """The actor's own override requests, newest first, with each one's decision and the search it ran."""
        self.require(actor, "search")
        with self.galleries.sessions() as session:
            return self._listed_overrides(session, (OverrideRequestRecord.user_id == actor.id,), limit=limit)

    def _listed_overrides(self, session, conditions, newest_first: bool = True,
                          limit: int | None = None) -> list[dict[str, Any]]:
        """The override requests meeting ``conditions``, with who asked, who decided, and whether the probe is kept."""
        order = [OverrideRequestRecord.requested_at, OverrideRequestRecord.id]
        if newest_first:
            order = [column.desc() for column in order]
        records = session.scalars(select(OverrideRequestRecord).where(*conditions).order_by(*order).limit(limit)).all()
        names = self.user_names(session)
        stored = set(session.scalars(select(ProbeRecord.id).where(
            ProbeRecord.id.in_([r.probe_id for r in records]), ProbeRecord.stored.is_(True))))
        return [
            {"request_id": r.id, "status": r.status, "investigator": names.get(r.user_id, ""), "unit": r.unit,
             "gallery": r.gallery_name, "case_number": r.case_number, "purpose": r.purpose, "offence": r.offence,
             "authorization_ref": r.authorization_ref, "note": r.note, "policy_version": r.policy_version,
             "face_box": r.face_box, "quality": r.quality, "quality_reasons": r.quality.get("reasons", []),
             "requested_at": as_utc(r.requested_at), "probe_stored": r.probe_id in stored,
             "decided_by": names.get(r.decided_by), "decided_at": as_utc(r.decided_at) if r.decided_at else None,
             "decision_notes": r.decision_notes, "search_id": r.search_id, "refusal_reason": r.refusal_reason}
            for r in records
        ]

    def override_probe(self, actor: Actor, request_id: int) -> tuple[bytes, list[int]]:
        """The probe of an override request and the face box that would be searched (audited as a view): for the
        investigator who asked and the supervisors of their unit."""
        with self.galleries.sessions() as session:
            record = _visible_override(session, actor, request_id)
            probe = session.get(ProbeRecord, record.probe_id)
            if not probe.stored:
                raise NotFoundError(f"the probe of override request {request_id} was purged under the retention policy")
            sha, box = probe.sha256, record.face_box
        data = self.probes.get(sha)
        self.audit.append(actor.username, "override_probe_viewed", f"override:{request_id}", {"probe_sha256": sha})
        return data, box

    def decide_override(self, supervisor: Actor, request_id: int, approve: bool, notes: str = "") -> int | None:
        """A supervisor of the requester's unit, other than the requester, approves or declines an override request,
        once (audited). Approved, the search runs at once as the investigator's, marked as overridden by this
        supervisor, under the policy in force now, and its id is returned; declined, None. A search refused at that
        point leaves the request 'refused', with the reason, and raises the refusal."""
        self.require(supervisor, "override_quality")
        _check_notes(notes)
        with self.audit.transaction() as session:
            record = _visible_override(session, supervisor, request_id)
            if record.user_id == supervisor.id:
                raise PermissionDeniedError("a supervisor cannot decide their own override request")
            if record.status != "pending":
                raise DuplicateError(f"override request {request_id} is already {record.status}; decisions are final")
            probe = session.get(ProbeRecord, record.probe_id)
            probe_sha = probe.sha256
            investigator = self.users.active_actor(record.user_id) if approve else None
            if approve and not probe.stored:
                raise NotFoundError(f"the probe of override request {request_id} was purged under the retention policy; "
                                    "decline the request")
            record.status = "approved" if approve else "declined"
            record.decided_by, record.decided_at, record.decision_notes = supervisor.id, utcnow(), notes
            self.audit.record(session, supervisor.username, f"override_{record.status}", f"override:{request_id}", {
                "requested_by": self.user_names(session).get(record.user_id, ""), "case_number": record.case_number,
                "gallery": record.gallery_name, "probe_sha256": probe_sha,
                "quality_reasons": record.quality.get("reasons", []), "notes": notes,
            })
            search = (record.gallery_name, record.case_number, record.purpose, record.offence, record.authorization_ref,
                      record.note, Box(*record.requested_box) if record.requested_box else None, record.face_number)
        if investigator is None:
            return None
        try:
            result = self.search(investigator, self.probes.get(probe_sha), *search, quality_override=supervisor)
        except Exception as exc:
            self._settle_override(request_id, refusal_reason=str(exc))
            raise
        self._settle_override(request_id, search_id=result.search_id)
        return result.search_id

    def _settle_override(self, request_id: int, search_id: int | None = None, refusal_reason: str = "") -> None:
        """Link an approved request to the search it ran (audited as that search), or mark it refused with why."""
        with self.galleries.sessions() as session:
            record = session.get(OverrideRequestRecord, request_id)
            record.search_id = search_id
            if search_id is None:
                record.status, record.refusal_reason = "refused", refusal_reason
            session.commit()

    # --- oversight ----------------------------------------------------------------------------

    def model_accuracy(self, actor: Actor) -> dict[str, Any]:
        """The model in use, the calibration behind its estimated false-match rates, and its published accuracy and
        demographic differentials (this installation's own evaluation, then facetrail's)."""
        require(actor, "view_reports")
        model = self.face_engine.model.name
        return {"model": model, "calibration": self.calibration_source(model), "figures": published_figures(self.datadir, model)}

    def calibration_source(self, model: str) -> str | None:
        """Which comparisons the estimated false-match rates of ``model`` come from; None when not calibrated."""
        table = load_calibration(self.datadir, model)
        return None if table is None else (table.source or "an evaluation that did not record its data")

    def transparency_report(self, actor: Actor, since: dt.date | None, until: dt.date | None, by: str = "month",
                            fmt: str = "html", unit: str | None = None, purpose: str | None = None,
                            outcome: str | None = None) -> str:
        """The transparency report for a period, grouped ``by`` a dimension and narrowed to a unit, purpose and/or
        outcome when given (see ``reports.build_report``), as html, csv, json, or fragment (the HTML report's body, for
        a web page). Audited, with its filters."""
        from facetrail.accountability import reports

        self.require(actor, "view_reports")
        if by not in reports.GROUPINGS:
            raise FacetrailError(f"--by must be one of {', '.join(reports.GROUPINGS)}")
        renderers = {"html": reports.render_html, "csv": reports.render_csv, "json": reports.render_json,
                     "fragment": reports.render_html_fragment}
        if fmt not in renderers:
            raise FacetrailError(f"--format must be one of {', '.join(renderers)}")
        with self.galleries.sessions() as session:
            report = reports.build_report(session, since, until, by, unit=unit, purpose=purpose, outcome=outcome,
                                          examiners_required=self.examiners_required())
        self.audit.append(actor.username, "report_generated", "transparency", {
            "since": since.isoformat() if since else None, "until": until.isoformat() if until else None, "by": by,
            "format": fmt, "filters": report.filters})
        return renderers[fmt](report)

    def verify_audit(self, actor: Actor):
        """Recompute the audit chain and check the signed checkpoints (the check itself is audited)."""
        self.require(actor, "verify_audit")
        result = self.audit.verify()
        self.audit.append(actor.username, "audit_verified", "audit", {"ok": result.ok, "entries": result.entries,
                                                                       "first_bad_seq": result.first_bad_seq})
        if result.ok:
            self.audit.checkpoint()  # sign what was just verified: later truncation below this point is detectable
        return result

    def export_audit(self, actor: Actor, folder):
        """Export the audit trail with what an outside party needs to verify it (audited first, so it is included)."""
        self.require(actor, "export_audit")
        self.audit.append(actor.username, "audit_exported", str(folder))
        return self.audit.export(folder)

    def last_audit_verification(self, actor: Actor) -> tuple[dict[str, Any] | None, int]:
        """The newest ``audit_verified`` entry (None if the trail was never verified), and the trail's length now."""
        self.require(actor, "view_audit")
        newest = self.audit.entries(action="audit_verified", limit=1, newest_first=True)
        return (newest[0] if newest else None), self.audit.length()

    def audit_entries(self, actor: Actor, since_seq: int = 0, limit: int = 50, who: str | None = None, action: str | None = None) -> list[dict]:
        """A page of audit entries (auditors and supervisors); reading the trail is audited too, with the filters."""
        self.require(actor, "view_audit")
        entries = self.audit.entries(since_seq=since_seq, limit=limit, actor=who, action=action)
        self.audit.append(actor.username, "audit_viewed", "audit", {
            "since_seq": since_seq, "limit": limit, "actor": who, "action": action, "entries": len(entries)})
        return entries

    # --- retention ----------------------------------------------------------------------------

    def purge_expired(self, by: Actor | None) -> dict[str, int]:
        """Apply the policy's retention periods: delete probe images (keeping their hashes), and search records with
        their candidates and reviews and quality-override requests (the audit trail keeps its entries about them)."""
        if by is not None:
            self.require(by, "purge")
        _, policy = self.policies.active()
        now = utcnow()
        probe_cutoff = now - dt.timedelta(days=policy.retention.probe_images_days)
        search_cutoff = now - dt.timedelta(days=policy.retention.search_records_days)
        expired_probes = select(ProbeRecord).where(ProbeRecord.stored.is_(True), ProbeRecord.created_at < probe_cutoff)
        expired_searches = select(SearchRecord.id).where(SearchRecord.started_at < search_cutoff)
        expired_requests = select(OverrideRequestRecord.id).where(OverrideRequestRecord.requested_at < search_cutoff)
        with self.galleries.sessions() as session:
            if all(session.scalar(select(func.count()).select_from(expired.subquery())) == 0
                   for expired in (expired_probes, expired_searches, expired_requests)):
                return {"probe_images": 0, "search_records": 0}
        with self.audit.transaction() as session:
            purged = []
            for probe in session.scalars(expired_probes):
                still_used = session.scalar(select(func.count()).select_from(ProbeRecord).where(
                    ProbeRecord.sha256 == probe.sha256, ProbeRecord.stored.is_(True), ProbeRecord.created_at >= probe_cutoff))
                if not still_used:
                    self.probes.delete(probe.sha256)
                probe.stored, probe.purged_at = False, now
                purged.append(probe.sha256)
            request_ids = list(session.scalars(expired_requests))
            session.execute(delete(OverrideRequestRecord).where(OverrideRequestRecord.id.in_(request_ids)))
            search_ids = list(session.scalars(expired_searches))
            candidate_ids = select(CandidateRecord.id).where(CandidateRecord.search_id.in_(search_ids))
            session.execute(delete(ResolutionRecord).where(ResolutionRecord.candidate_id.in_(candidate_ids)))
            session.execute(delete(ReviewRecord).where(ReviewRecord.search_id.in_(search_ids)))
            session.execute(delete(CandidateRecord).where(CandidateRecord.search_id.in_(search_ids)))
            session.execute(delete(SearchRecord).where(SearchRecord.id.in_(search_ids)))
            self.audit.record(session, by.username if by else "system", "retention_purge", "probes+searches", {
                "probe_images": len(purged), "probe_retention_days": policy.retention.probe_images_days, "sha256": purged,
                "search_records": len(search_ids), "search_retention_days": policy.retention.search_records_days,
                "search_ids": search_ids, "override_request_ids": request_ids,
            })
        return {"probe_images": len(purged), "search_records": len(search_ids)}

    def probe_image(self, actor: Actor, search_id: int) -> bytes:
        """The stored probe of a search (audited)."""
        return self.probe_photo(actor, search_id)[0]

    def candidate_image(self, actor: Actor, search_id: int, rank: int) -> bytes:
        """A candidate's gallery photograph (audited; never for auditors or admins)."""
        return self.candidate_photo(actor, search_id, rank)[0]

    def face_chip(self, actor: Actor, search_id: int, rank: int | None = None) -> np.ndarray:
        """The aligned face chip the model compared, from the probe (``rank`` None) or from a candidate's gallery
        photograph; audited as a view of that photograph."""
        data, box = self.probe_photo(actor, search_id) if rank is None else self.candidate_photo(actor, search_id, rank)
        engine = self.face_engine
        return engine.aligned_chip(engine.decode(data).pixels, Box(*box))

    def probe_photo(self, actor: Actor, search_id: int) -> tuple[bytes, list[int]]:
        """The probe's bytes and the face box searched with (audited)."""
        with self.galleries.sessions() as session:
            search = self.viewable_search(session, actor, search_id)
            probe = session.get(ProbeRecord, search.probe_id)
            if probe is None or not probe.stored:
                raise NotFoundError(f"the probe image of search {search_id} was purged under the retention policy")
            sha, box = probe.sha256, search.face_box
        data = self.probes.get(sha)
        self.audit.append(actor.username, "probe_viewed", f"search:{search_id}", {"probe_sha256": sha})
        return data, box

    def candidate_photo(self, actor: Actor, search_id: int, rank: int) -> tuple[bytes, list[int]]:
        """A candidate's gallery photograph and the face box enrolled from it (audited)."""
        with self.galleries.sessions() as session:
            search = self.viewable_search(session, actor, search_id)
            candidate = _candidate_at(search, rank)
            gallery = self.galleries.get(search.gallery_name)
            image = session.get(ImageRecord, candidate.image_id) if candidate.image_id else None
            if image is None:
                raise NotFoundError(f"candidate {rank} of search {search_id} has since been expunged from the gallery")
            template = session.scalar(select(TemplateRecord).where(TemplateRecord.image_id == image.id))
            content_hash, box = image.content_hash, template.face_box
        data = gallery.blobs.get(content_hash)
        self.audit.append(actor.username, "candidate_image_viewed", f"search:{search_id}", {"rank": rank, "image_id": candidate.image_id})
        return data, box

    @staticmethod
    def user_names(session) -> dict[int, str]:
        """User id → username."""
        return {user_id: name for user_id, name in session.execute(select(UserRecord.id, UserRecord.username))}


def _candidate_at(search: SearchRecord, rank: int) -> CandidateRecord:
    """The candidate at ``rank`` in a search's list."""
    candidate = next((c for c in search.candidates if c.rank == rank), None)
    if candidate is None:
        raise NotFoundError(f"search {search.id} has no candidate at rank {rank}")
    return candidate


def _visible_override(session, actor: Actor, request_id: int) -> OverrideRequestRecord:
    """An override request the actor may see: their own, or any from their unit for its supervisors."""
    record = session.get(OverrideRequestRecord, request_id)
    if record is None:
        raise NotFoundError(f"no override request {request_id}")
    if record.user_id != actor.id and not (actor.has("supervisor") and record.unit == actor.unit):
        raise PermissionDeniedError(f"override request {request_id} is for its investigator and the supervisors of "
                                    f"unit {record.unit or '(none)'!r}")
    return record


def _sees_every_decision(actor: Actor) -> bool:
    """Whether ``actor`` sees every examiner's decisions: a supervisor who is not an examiner too (blind review)."""
    return actor.has("supervisor") and not actor.has("examiner")


def _box(face_box: Box | str | None) -> Box | None:
    """A face box given as a Box or as the text "x,y,w,h" (checked: FacetrailError naming the problem)."""
    return Box.parse(face_box) if isinstance(face_box, str) else face_box


def _reason(exc: BaseException) -> str:
    """An exception as the reason an audit entry gives: its message, or its kind when it has none (at most 500
    characters)."""
    return (str(exc) or type(exc).__name__)[:500] if isinstance(exc, FacetrailError) else f"failed: {type(exc).__name__}: {exc}"[:500]


def _admin_with_photographs(roles: set[str]) -> bool:
    """Whether ``roles`` make one person both an administrator and someone who sees photographs."""
    return "admin" in roles and bool(roles & PHOTO_ROLES)


def _check_notes(notes: str) -> None:
    if len(notes) > MAX_NOTES:
        raise FacetrailError(f"notes: at most {MAX_NOTES:,} characters (got {len(notes):,})")


def _clipped(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, marked with an ellipsis when cut (the full value goes in the details)."""
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


def _check_decision(decision: str) -> None:
    if decision not in DECISIONS:
        raise FacetrailError(f"decision must be one of {', '.join(DECISIONS)}")
