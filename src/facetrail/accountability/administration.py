"""Administration: accounts and roles, galleries and their grants, enrolment, expungement, policy, keys and backups.

Every change is an admin's (a photograph-viewing admin needs a second admin) and is audited in the same
transaction as the change, or refused and audited as a refusal. Admins never search and never see photographs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from facetrail.accountability.context import PHOTO_ROLES, Context, clipped, user_names
from facetrail.accountability.lookalikes import refuse_imitation
from facetrail.accountability.policy import Policy, role_problems
from facetrail.accountability.schema import RoleChangeRecord
from facetrail.accountability.users import Actor
from facetrail.config import EngineConfig, EnrolmentConfig
from facetrail.engine.ray_pool import connect as connect_ray
from facetrail.errors import GalleryError, PermissionDeniedError, PolicyError
from facetrail.engine.calibration import save_calibration as store_calibration
from facetrail.evaluation.calibration import calibrate_from_photos
from facetrail.evaluation.datasets import identity_folders
from facetrail.evaluation.published import publish as publish_figures
from facetrail.gallery.enrol import EnrolItem, EnrolOutcome, EnrolSummary, enrol
from facetrail.gallery.gallery import GalleryInfo, check_subject_id
from facetrail.gallery.schema import GalleryRecord
from facetrail.store import utcnow

ROLE_CHANGE_HOURS = 24
"""How long a role change waiting for a second admin stays open."""


@dataclass(frozen=True)
class RoleChange:
    """The outcome of a role change: the user as they are now, and whether the change waits for a second admin."""

    user: Actor
    pending: bool


class Administration:
    """What admins do, and the reads of galleries and rules that every user's pages need."""

    def __init__(self, context: Context) -> None:
        self.context = context

    # --- accounts and roles -----------------------------------------------------------------------------------

    def create_user(self, by: Actor, username: str, password: str, roles: list[str], unit: str = "", display_name: str = "") -> Actor:
        """Create an account (admins; audited with it). An account that would be an admin and see photographs
        cannot be created by one admin: create it without one of the two, then change its roles (set_roles), which
        needs a second admin."""
        context = self.context
        context.require(by, "manage_users", username)
        self._check_roles(roles)
        if _admin_with_photographs(set(roles)):
            context.deny(by, "manage_users", username, "an account that is both an admin and sees photographs needs a "
                                                       "second admin: create it without one of the two, then change its roles")
        with context.audit.transaction() as session:
            created = context.users.create_user(username, password, roles, unit, display_name, session=session)
            context.audit.record(session, by.username, "user_created", username, {"roles": sorted(roles), "unit": unit})
        return created

    def set_roles(self, by: Actor, username: str, roles: list[str]) -> RoleChange:
        """Replace a user's roles (admins; audited). No one changes their own roles. A change that makes an admin
        see photographs (or gives a photograph-viewing user admin), where the policy allows that at all, waits for a
        second admin: the first admin's request is recorded (``pending``), and it takes effect when a different admin
        asks for the same roles within ROLE_CHANGE_HOURS."""
        context = self.context
        context.require(by, "manage_users", username)
        target = context.users.user(username)
        if target.id == by.id:
            context.deny(by, "manage_users", username, "no one may change their own roles; ask another admin")
        self._check_roles(roles)
        wanted = sorted(set(roles))
        with context.audit.transaction() as session:
            requester = None
            if _admin_with_photographs(set(wanted)) and not set(wanted) <= target.roles:
                since = utcnow() - dt.timedelta(hours=ROLE_CHANGE_HOURS)
                pending = session.scalar(select(RoleChangeRecord).where(
                    RoleChangeRecord.user_id == target.id, RoleChangeRecord.approved_by.is_(None),
                    RoleChangeRecord.requested_at >= since).order_by(RoleChangeRecord.id.desc()).limit(1))
                if pending is None or sorted(pending.roles) != wanted or pending.requested_by == by.id:
                    session.add(RoleChangeRecord(user_id=target.id, roles=wanted, requested_by=by.id))
                    context.audit.record(session, by.username, "roles_change_requested", username, {
                        "roles": wanted, "from": sorted(target.roles), "waits_for": "a second admin"})
                    return RoleChange(target, pending=True)
                pending.approved_by, pending.approved_at = by.id, utcnow()
                requester = user_names(session).get(pending.requested_by)
            changed = context.users.set_roles(username, wanted, session=session)
            context.audit.record(session, by.username, "roles_changed", username, {
                "roles": wanted, "from": sorted(target.roles), "requested_by": requester})
        return RoleChange(changed, pending=False)

    def set_active(self, by: Actor, username: str, active: bool) -> Actor:
        """Enable or disable an account (admins; audited with it); disabling revokes its tokens. No one disables
        themselves."""
        context = self.context
        context.require(by, "manage_users", username)
        if username == by.username and not active:
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
        """Every account, without password hashes (admins)."""
        self.context.require(by, "manage_users")
        return self.context.users.list_users()

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
        """One gallery's description, sources and counts, and which units may search it (any user)."""
        return {**self.gallery(by, name).to_dict(), "searchable_by_units": [g["unit"] for g in self.grants(by, name)]}

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
              on_outcome: Callable[[EnrolOutcome], None] = lambda outcome: None, retry_rejected: bool = False) -> EnrolSummary:
        """Enrol photographs into a gallery (admins only; the run's start, and its counts and sources at the end,
        are audited). A run naming an unusable subject id, or none of whose sources the gallery allows, is refused as
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
        summary = enrol(target, items, context.settings.engine, rules, on_outcome, retry_rejected)
        context.audit.append(by.username, "enrolment", gallery, {**summary.to_dict(), "sources": sources,
                                                                  "gallery_version": target.info().version})
        return summary

    def remove_subject(self, by: Actor, gallery: str, subject_id: str):
        """Expunge a subject (admins): the deletion and its audit entry are committed together, or neither is."""
        context = self.context
        context.require(by, "manage_galleries")

        def audit_removal(session, report) -> None:
            context.audit.record(session, by.username, "subject_removed", clipped(f"{gallery}/{subject_id}", 200), {
                "gallery": gallery, "subject_id": subject_id, "images": report.images, "templates": report.templates})

        return context.galleries.get(gallery).remove_subject(subject_id, context.audit.transaction, audit_removal)

    # --- policy -----------------------------------------------------------------------------------------------

    def load_policy(self, by: Actor, text: str) -> int:
        """Load a new policy version (refused with line-level errors, keeping the old one, if invalid)."""
        context = self.context
        context.require(by, "manage_policy")
        before, _ = context.policy()
        try:
            with context.audit.transaction() as session:
                version = context.policies.load(text, by.id, session=session)
                if version != before:
                    context.audit.record(session, by.username, "policy_loaded", f"policy:{version}",
                                         {"sha256": hashlib.sha256(text.encode()).hexdigest()})
        except PolicyError as exc:
            context.audit.append(by.username, "policy_refused", "", {"problems": [list(p) for p in exc.problems]})
            raise
        return version

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
        """Write a backup of the data directory, without its keys, to a new folder (admins; audited before and after,
        so the backup holds its own start). See ``accountability.backup``."""
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

    def calibrate(self, folder: Path, workers: int = 0, on_done: Callable[[Any], None] = lambda template: None) -> str:
        """Calibrate the estimated false-match rate of the model in use from every pair of different people in a
        folder with one subfolder of photographs per person (set-up, run by ``facetrail init``; audited). Returns
        the description of the data that the candidates' estimates will name."""
        context = self.context
        model_name = context.engines.model_name
        _, table = calibrate_from_photos(context.datadir, identity_folders(folder), folder.name, context.settings.engine,
                                         model_name, workers, on_done)
        context.audit.append("system", "calibration_saved", model_name, {"impostor_pairs": table.impostor_count, "source": table.source})
        return table.source

    def evaluation_engine(self, by: Actor) -> EngineConfig:
        """The face engine's configuration in force, for an evaluation run by ``by`` (admins and auditors)."""
        self.context.require(by, "evaluate")
        return self.context.settings.engine

    def save_calibration(self, by: Actor, model: str, impostor_distances: np.ndarray, impostor_pairs: int,
                         source: str) -> Path:
        """Keep the false-match-rate table an evaluation measured, for the candidates' estimates (audited)."""
        self.context.require(by, "evaluate")
        path = store_calibration(self.context.datadir, impostor_distances, model, source)
        self.context.audit.append(by.username, "calibration_saved", model, {"impostor_pairs": impostor_pairs, "source": source})
        return path

    def publish_evaluation(self, by: Actor, model: str, figures: dict[str, Any], dataset: str) -> Path:
        """Keep an evaluation's accuracy figures as this installation's published ones (audited)."""
        self.context.require(by, "evaluate")
        path = publish_figures(self.context.datadir, figures, dataset)
        self.context.audit.append(by.username, "evaluation_published", model, {"dataset": dataset})
        return path


def _admin_with_photographs(roles: set[str]) -> bool:
    """Whether ``roles`` make one person both an administrator and someone who sees photographs."""
    return "admin" in roles and bool(roles & PHOTO_ROLES)
