"""Administration: accounts and roles, galleries and their grants, enrolment, expungement, policy, keys and backups.

Every change is an admin's (an account that sees photographs needs a second person) and is audited in the same
transaction as the change, or refused and audited as a refusal. Admins never search and never see photographs, but
for the thumbnails of the uploads an enrolment job rejected (``facetrail.accountability.rejections``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from facetrail.accountability.calibrations import Calibrations
from facetrail.accountability.context import PHOTO_ROLES, Context, clipped, user_names
from facetrail.accountability.lookalikes import refuse_imitation
from facetrail.accountability.policy import Policy, parse_policy, role_problems
from facetrail.accountability.schema import RoleChangeRecord, UserRecord
from facetrail.accountability.users import Actor
from facetrail.config import EngineConfig, EnrolmentConfig
from facetrail.engine.ray_pool import connect as connect_ray
from facetrail.engine.scheduling import Workforce
from facetrail.errors import GalleryError, PermissionDeniedError, PolicyError, WorkersLostError
from facetrail.evaluation.published import publish as publish_figures
from facetrail.gallery.duplicates import Duplicates, find_duplicates
from facetrail.gallery.enrol import EnrolItem, EnrolOutcome, EnrolSummary, enrol
from facetrail.gallery.gallery import GalleryInfo, check_subject_id
from facetrail.gallery.schema import GalleryRecord
from facetrail.store import as_utc, utcnow

ROLE_CHANGE_HOURS = 24
"""How long a request for roles waiting for a second person stays open."""
SECOND_PERSON = ("a second admin, or a supervisor of the account's unit, whose account is older than the request and "
                 "was not created by the admin who asked")
"""Who may confirm a request for roles that see photographs."""


@dataclass(frozen=True)
class RoleChange:
    """The outcome of creating an account or changing its roles: the user as they are now, and whether roles asked
    for wait for a second person (``pending``; ``requested`` are the roles asked for)."""

    user: Actor
    pending: bool
    requested: tuple[str, ...] = ()


def needs_second_person(held: set[str], wanted: set[str]) -> bool:
    """Whether going from roles ``held`` to ``wanted`` needs a second person: it gives a role that sees photographs,
    or makes a user who sees photographs an admin."""
    added = wanted - held
    return bool(added & PHOTO_ROLES) or ("admin" in added and bool(wanted & PHOTO_ROLES))


class Administration:
    """What admins do, and the reads of galleries and rules that every user's pages need."""

    def __init__(self, context: Context, calibrations: Calibrations) -> None:
        self.context = context
        self.calibrations = calibrations

    # --- accounts and roles -----------------------------------------------------------------------------------

    def create_user(self, by: Actor, username: str, password: str, roles: list[str], unit: str = "",
                    display_name: str = "") -> RoleChange:
        """Create an account (admins; audited with it, with who created it). Roles that see photographs wait for a
        second person (SECOND_PERSON, see ``confirm_roles``): until then the account holds only its other roles, so
        no admin can make an account, log in as it and see photographs alone."""
        context = self.context
        context.require(by, "manage_users", username)
        self._check_roles(roles)
        wanted = sorted(set(roles))
        pending = needs_second_person(set(), set(wanted))
        held = [role for role in wanted if role not in PHOTO_ROLES] if pending else wanted
        with context.audit.transaction() as session:
            created = context.users.create_user(username, password, held, unit, display_name, session=session,
                                                created_by=by.id, roles_pending=pending)
            context.audit.record(session, by.username, "user_created", username, {"roles": held, "unit": unit})
            if pending:
                self._request(session, by, created, wanted)
        return RoleChange(created, pending, tuple(wanted))

    def set_roles(self, by: Actor, username: str, roles: list[str]) -> RoleChange:
        """Replace a user's roles (admins; audited). No one changes their own roles. A change that gives a role that
        sees photographs (or makes such a user an admin), where the policy allows the roles at all, waits for a
        second person: the admin's request is recorded (``pending``), and takes effect when SECOND_PERSON confirms
        it within ROLE_CHANGE_HOURS (``confirm_roles``, or a second admin asking for the same roles)."""
        context = self.context
        context.require(by, "manage_users", username)
        target = context.users.user(username)
        if target.id == by.id:
            context.deny(by, "manage_users", username, "no one may change their own roles; ask another admin")
        self._check_roles(roles)
        wanted = sorted(set(roles))
        if needs_second_person(set(target.roles), set(wanted)):
            with context.audit.transaction() as session:
                request = _open_request(session, target.id)
                if request is None or sorted(request.roles) != wanted or request.requested_by == by.id:
                    self._request(session, by, target, wanted)
                    return RoleChange(target, True, tuple(wanted))
            return self._confirm(by, target, wanted)
        with context.audit.transaction() as session:
            changed = context.users.set_roles(username, wanted, session=session)
            context.audit.record(session, by.username, "roles_changed", username, {
                "roles": wanted, "from": sorted(target.roles), "requested_by": None})
        return RoleChange(changed, False, tuple(wanted))

    def confirm_roles(self, by: Actor, username: str) -> RoleChange:
        """Confirm the open request for an account's roles, as SECOND_PERSON (audited; a refusal too, with why)."""
        self.context.require(by, "confirm_roles", username)
        return self._confirm(by, self.context.users.user(username), None)

    def role_requests(self, by: Actor) -> list[dict[str, Any]]:
        """The open requests for roles, oldest first: every one for an admin, their unit's for a supervisor."""
        self.context.require(by, "confirm_roles")
        with self.context.users.sessions() as session:
            names = user_names(session)
            requests = []
            for request in _open_requests(session):
                user = session.get(UserRecord, request.user_id)
                if by.has("admin") or (user.unit and user.unit == by.unit):
                    requests.append({"username": user.username, "unit": user.unit, "roles": sorted(request.roles),
                                     "from": sorted(user.roles), "requested_by": names.get(request.requested_by),
                                     "requested_at": as_utc(request.requested_at).isoformat()})
            return requests

    def _request(self, session, by: Actor, target: Actor, wanted: list[str]) -> None:
        """Record (and audit) ``by``'s request that ``target`` hold ``wanted``, waiting for a second person."""
        session.add(RoleChangeRecord(user_id=target.id, roles=wanted, requested_by=by.id))
        self.context.audit.record(session, by.username, "roles_change_requested", target.username, {
            "roles": wanted, "from": sorted(target.roles), "waits_for": SECOND_PERSON})

    def _confirm(self, by: Actor, target: Actor, roles: list[str] | None) -> RoleChange:
        """Apply the open request for ``target``'s roles (``roles``, when given, must be what it asks for) as
        confirmed by ``by``, or refuse (audited) saying why ``by`` may not."""
        context = self.context
        with context.audit.transaction() as session:
            request = _open_request(session, target.id)
            if request is None or (roles is not None and sorted(request.roles) != roles):
                problem = f"no request for the roles of {target.username!r} is waiting to be confirmed"
            else:
                problem = _confirmation_problem(session, by, request, target) or "; ".join(
                    role_problems(context.policy()[1], request.roles))
            if not problem:
                request.approved_by, request.approved_at = by.id, utcnow()
                changed = context.users.set_roles(target.username, request.roles, session=session)
                context.audit.record(session, by.username, "roles_changed", target.username, {
                    "roles": sorted(request.roles), "from": sorted(target.roles),
                    "requested_by": user_names(session).get(request.requested_by), "confirmed_by": by.username})
                return RoleChange(changed, False, tuple(sorted(request.roles)))
        context.deny(by, "confirm_roles", target.username, problem)

    def set_active(self, by: Actor, username: str, active: bool) -> Actor:
        """Enable or disable an account (admins; audited with it); disabling revokes its tokens. No one disables
        themselves."""
        context = self.context
        context.require(by, "manage_users", username)
        if not active and context.users.user(username).id == by.id:
            context.deny(by, "manage_users", username, "no one may disable their own account; ask another admin")
        with context.audit.transaction() as session:
            changed = context.users.set_active(username, active, session=session)
            context.audit.record(session, by.username, "user_enabled" if active else "user_disabled", username)
        if not active:
            context.users.revoke_all(username)
        return changed

    def unlock(self, by: Actor, username: str) -> Actor:
        """Lift every login lockout of an account (admins; audited with it)."""
        context = self.context
        context.require(by, "manage_users", username)
        with context.audit.transaction() as session:
            unlocked = context.users.unlock(username, session=session)
            context.audit.record(session, by.username, "user_unlocked", username)
        return unlocked

    def list_users(self, by: Actor) -> list[dict[str, Any]]:
        """Every account, without password hashes, with who created it and the roles it waits for (admins)."""
        self.context.require(by, "manage_users")
        with self.context.users.sessions() as session:
            waiting = {request.user_id: sorted(request.roles) for request in _open_requests(session)}
        return [{**user, "pending_roles": waiting.get(user["id"])} for user in self.context.users.list_users()]

    def _check_roles(self, roles: list[str]) -> None:
        problems = role_problems(self.context.policy()[1], roles)
        if problems:
            raise PermissionDeniedError("; ".join(problems))

    # --- galleries --------------------------------------------------------------------------------------------

    def galleries(self, by: Actor) -> list[GalleryInfo]:
        """Every gallery with its allowed sources and counts (any user)."""
        self.context.require(by, "view_galleries")
        return self.context.galleries.list()

    def gallery(self, by: Actor, name: str) -> GalleryInfo:
        """One gallery's description, sources and counts (any user)."""
        self.context.require(by, "view_galleries", name)
        return self.context.galleries.get(name).info()

    def grants(self, by: Actor, gallery: str | None = None) -> list[dict[str, Any]]:
        """Which units may search which gallery (of one gallery, or of all; any user)."""
        self.context.require(by, "view_galleries", gallery or "")
        gallery_id = self.context.galleries.get(gallery).id if gallery is not None else None
        return self.context.users.grants(gallery_id)

    def gallery_details(self, by: Actor, name: str) -> dict[str, Any]:
        """One gallery's description, sources and counts, which units may search it, and the calibration its searches
        use now (any user)."""
        return {**self.gallery(by, name).to_dict(), "searchable_by_units": [g["unit"] for g in self.grants(by, name)],
                "calibration": self.calibrations.in_force(by, name)}

    def enrolment_rules(self, by: Actor) -> EnrolmentConfig:
        """The enrolment rules in force (config.toml's [enrolment]; admins)."""
        self.context.require(by, "enrol")
        return self.context.settings.enrolment

    def create_gallery(self, by: Actor, name: str, allowed_sources: list[str], description: str = "") -> GalleryInfo:
        """Create a gallery accepting photographs only from ``allowed_sources`` (admins; audited with it)."""
        context = self.context
        context.require(by, "manage_galleries")
        with context.audit.transaction() as session:
            refuse_imitation(session, "gallery name", name, GalleryRecord.name)
            info = context.galleries.create(name, allowed_sources, description, session=session)
            context.audit.record(session, by.username, "gallery_created", name, {"allowed_sources": info.allowed_sources})
        return info

    def grant_gallery(self, by: Actor, name: str, unit: str) -> None:
        """Let a unit's investigators ('*': every unit) search a gallery (admins; audited with it)."""
        context = self.context
        context.require(by, "manage_galleries")
        gallery = context.galleries.get(name)
        with context.audit.transaction() as session:
            context.users.grant_gallery(gallery.id, unit, by, session=session)
            context.audit.record(session, by.username, "gallery_granted", name, {"unit": unit})

    def revoke_gallery(self, by: Actor, name: str, unit: str) -> None:
        """Withdraw a unit's grant to search a gallery (admins; audited with it)."""
        context = self.context
        context.require(by, "manage_galleries")
        gallery = context.galleries.get(name)
        with context.audit.transaction() as session:
            context.users.revoke_gallery(gallery.id, unit, session=session)
            context.audit.record(session, by.username, "gallery_grant_revoked", name, {"unit": unit})

    def enrol(self, by: Actor, gallery: str, items: list[EnrolItem], rules: EnrolmentConfig | None = None,
              on_outcome: Callable[[EnrolOutcome], None] = lambda outcome: None, retry_rejected: bool = False,
              on_workforce: Callable[[Workforce], None] = lambda workforce: None) -> EnrolSummary:
        """Enrol photographs into a gallery (admins only; the run's start, and its counts and sources at the end,
        are audited, with the Ray nodes and workers of a run on a cluster, those lost and the photographs analysed
        again; ``on_workforce`` hears of them as they change). A run naming an unusable subject id, or none of whose sources the gallery allows, is refused as
        a whole, before anything is enrolled; otherwise each photograph from a source not allowed is rejected."""
        context = self.context
        context.require(by, "enrol")
        target = context.galleries.get(gallery)
        rules = rules or context.settings.enrolment
        if rules.ray_address:  # no ray package, or no cluster there: refused before the run is audited as started
            connect_ray(rules.ray_address)
        sources = sorted({item.source for item in items})
        problems = []
        for subject_id in sorted({item.subject_id for item in items}):
            try:
                check_subject_id(subject_id)
            except GalleryError as exc:
                problems.append(str(exc))
        unusable_ids = len(problems)
        allowed = target.info().allowed_sources
        if items and not set(sources) & set(allowed):
            problems.append(f"source {sources[0]!r} is not allowed for gallery {gallery!r} (allowed: {', '.join(allowed)})")
        if problems:
            context.audit.append(by.username, "enrolment_refused", gallery, {
                "reason": problems[0], "items": len(items), "unusable_subject_ids": unusable_ids})
            raise GalleryError(f"enrolment refused, nothing enrolled: {'; '.join(problems)}")
        # a run cut short (a killed process) keeps what it committed: this entry shows it began
        context.audit.append(by.username, "enrolment_started", gallery, {"items": len(items), "sources": sources})

        def finished(action: str, summary: EnrolSummary, **extra) -> None:
            ray = {"ray": summary.workforce.to_dict()} if summary.workforce else {}
            context.audit.append(by.username, action, gallery, {**summary.to_dict(), "sources": sources,
                                                                "gallery_version": target.info().version, **ray, **extra})

        try:
            summary = enrol(target, items, context.settings.engine, rules, on_outcome, retry_rejected, on_workforce)
        except WorkersLostError as exc:  # what was committed stays, and the trail says how the run ended
            finished("enrolment_interrupted", exc.summary or EnrolSummary(), reason=clipped(str(exc), 500))
            raise
        finished("enrolment", summary)
        if summary.count("enrolled"):
            self.calibrations.after_enrolment(by, target)
        return summary

    def remove_subject(self, by: Actor, gallery: str, subject_id: str):
        """Expunge a subject (admins): the deletion and its audit entry are committed together, or neither is."""
        context = self.context
        context.require(by, "manage_galleries")

        def audit_removal(session, report) -> None:
            context.audit.record(session, by.username, "subject_removed", clipped(f"{gallery}/{subject_id}", 200), {
                "gallery": gallery, "subject_id": subject_id, "images": report.images, "templates": report.templates})

        return context.galleries.get(gallery).remove_subject(subject_id, context.audit.transaction, audit_removal)

    def duplicates(self, by: Actor, gallery: str, max_distance: float | None = None, limit: int = 1000) -> Duplicates:
        """Pairs of photographs of different subjects at most ``max_distance`` apart (default
        calibration.duplicate_distance), closest first: likely one person under two ids, for the agency to resolve
        (admins; a view of biometric comparisons, audited with the distance and the count)."""
        context = self.context
        context.require(by, "manage_galleries", gallery)
        distance = context.settings.calibration.duplicate_distance if max_distance is None else max_distance
        found = find_duplicates(context.galleries.get(gallery), distance, limit)
        context.audit.append(by.username, "duplicates_listed", gallery, {
            "max_distance": distance, "limit": limit, "pairs": len(found.pairs), "more": found.more,
            "templates": found.templates, "gallery_version": found.version})
        return found

    # --- policy -----------------------------------------------------------------------------------------------

    def load_policy(self, by: Actor, text: str) -> int:
        """Load a new policy version (refused with line-level errors, keeping the old one, if invalid). Accounts that
        already hold roles it forbids together are named in its audit entry (and by ``roles_held_apart``): what those
        roles allow is refused until an admin resolves their roles."""
        context = self.context
        context.require(by, "manage_policy")
        before, _ = context.policy()
        try:
            with context.audit.transaction() as session:
                version = context.policies.load(text, by.id, session=session)
                if version != before:
                    held_apart = _held_apart(parse_policy(text), context.users.list_users())
                    context.audit.record(session, by.username, "policy_loaded", f"policy:{version}", {
                        "sha256": hashlib.sha256(text.encode()).hexdigest(),
                        "accounts_holding_forbidden_roles": [user["username"] for user in held_apart]})
        except PolicyError as exc:
            context.audit.append(by.username, "policy_refused", "", {"problems": [list(p) for p in exc.problems]})
            raise
        return version

    def roles_held_apart(self, by: Actor) -> list[dict[str, Any]]:
        """The active accounts holding roles the policy in force forbids together, each with why (admins): what
        those roles allow is refused until an admin changes their roles (``set_roles``)."""
        self.context.require(by, "manage_policy")
        return _held_apart(self.context.policy()[1], self.context.users.list_users())

    def policy_in_force(self, by: Actor) -> tuple[int, str]:
        """The active policy's version and text: any authenticated user may read the rules they work under."""
        version, _ = self.context.policy()
        text = next((h["text"] for h in self.context.policies.history() if h["version"] == version), "")
        return version, text

    def policy_rules(self, by: Actor) -> Policy:
        """The rules in force, parsed (any authenticated user: the forms offer its purposes and offences)."""
        return self.context.policy()[1]

    def policy_history(self, by: Actor) -> list[dict[str, Any]]:
        """Every policy version loaded (admins and auditors)."""
        self.context.require(by, "view_policy_history")
        return self.context.policies.history()

    # --- keys, backups and calibration ------------------------------------------------------------------------

    def back_up(self, by: Actor, folder: Path) -> dict[str, Any]:
        """Write a backup of the data directory, without its keys, to a new folder, its manifest signed with the audit
        signing key (admins; audited before and after, so the backup holds its own start). See
        ``accountability.backup``."""
        from facetrail.accountability.backup import back_up

        context = self.context
        context.require(by, "backup", str(folder)[:200])
        context.audit.append(by.username, "backup_started", str(folder)[:200])
        manifest = back_up(context.galleries, context.audit, folder)
        context.audit.append(by.username, "backup_created", str(folder)[:200], {
            "rows": manifest["rows"], "files": len(manifest["files"]), "schema_revision": manifest["schema_revision"]})
        return manifest

    def rotate_keys(self, by: Actor):
        """Re-encrypt all biometric data under a new key (audited)."""
        from facetrail.accountability.keys import rotate_data_key

        self.context.require(by, "rotate_keys")
        report = rotate_data_key(self.context.galleries)
        self.context.audit.append(by.username, "keys_rotated", "data-keys", asdict(report))
        return report

    def evaluation_engine(self, by: Actor) -> EngineConfig:
        """The face engine's configuration in force, for an evaluation run by ``by`` (admins and auditors)."""
        self.context.require(by, "evaluate")
        return self.context.settings.engine

    def publish_evaluation(self, by: Actor, model: str, figures: dict[str, Any], dataset: str) -> Path:
        """Keep an evaluation's accuracy figures as this installation's published ones (audited)."""
        self.context.require(by, "evaluate")
        path = publish_figures(self.context.datadir, figures, dataset)
        self.context.audit.append(by.username, "evaluation_published", model, {"dataset": dataset})
        return path


def _held_apart(policy: Policy, users: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The active accounts among ``users`` whose roles ``policy`` forbids together: username, unit, roles, problems."""
    held = []
    for user in users:
        problems = role_problems(policy, user["roles"])
        if user["active"] and problems:
            held.append({"username": user["username"], "unit": user["unit"], "roles": user["roles"],
                         "problems": problems})
    return held


def _unconfirmed_requests():
    """The query of the requests for roles not yet confirmed, made within ROLE_CHANGE_HOURS."""
    since = utcnow() - dt.timedelta(hours=ROLE_CHANGE_HOURS)
    return select(RoleChangeRecord).where(RoleChangeRecord.approved_by.is_(None),
                                          RoleChangeRecord.requested_at >= since)


def _open_requests(session) -> list[RoleChangeRecord]:
    """The latest unconfirmed request of each account made within ROLE_CHANGE_HOURS, oldest first."""
    latest: dict[int, RoleChangeRecord] = {}
    for request in session.scalars(_unconfirmed_requests().order_by(RoleChangeRecord.id)):
        latest[request.user_id] = request
    return sorted(latest.values(), key=lambda request: request.id)


def _open_request(session, user_id: int) -> RoleChangeRecord | None:
    """The latest unconfirmed request for the roles of ``user_id`` made within ROLE_CHANGE_HOURS."""
    return session.scalar(_unconfirmed_requests().where(RoleChangeRecord.user_id == user_id)
                          .order_by(RoleChangeRecord.id.desc()).limit(1))


def _confirmation_problem(session, by: Actor, request: RoleChangeRecord, target: Actor) -> str:
    """Why ``by`` may not be the second person for ``request`` ("" when they may): they must not be the requester or
    the account itself, must hold an account older than the request that the requester did not create, and be an
    admin, or a supervisor of the account's unit (for roles other than admin)."""
    confirmer = session.get(UserRecord, by.id)
    requester = user_names(session).get(request.requested_by)
    if by.id == request.requested_by:
        return f"{by.username!r} asked for this change: it needs {SECOND_PERSON}"
    if by.id == target.id:
        return "no one confirms their own roles"
    if not (by.has("admin") or (by.has("supervisor") and target.unit and by.unit == target.unit
                                and "admin" not in request.roles)):
        return f"only {SECOND_PERSON} may confirm it"
    if confirmer.created_by == request.requested_by:
        return (f"the account of {by.username!r} was created by {requester!r}, who asked for this change: it needs "
                f"{SECOND_PERSON}")
    if as_utc(confirmer.created_at) >= as_utc(request.requested_at):
        return f"the account of {by.username!r} is newer than the request: it needs {SECOND_PERSON}"
    return ""

