"""The accountability layer's tables: users, tokens, gallery grants, policies, probes, searches, candidates,
reviews, quality-override requests, and the tamper-evident audit trail."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from facetrail.store import Base, utcnow

ROLES = ("investigator", "examiner", "supervisor", "auditor", "admin")
DECISIONS = ("possible_lead", "not_a_match", "inconclusive")
OVERRIDE_STATUSES = ("pending", "approved", "declined", "refused")


class UserRecord(Base):
    """A person who uses facetrail, with roles and a unit (e.g. 'Robbery-Homicide')."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    unit: Mapped[str] = mapped_column(String(100), default="")
    roles: Mapped[list[str]]
    password_hash: Mapped[str] = mapped_column(Text)
    """argon2id hash (argon2-cffi)."""
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    """The admin who created the account; None for the first admin (``facetrail init``) and accounts older than this
    record whose creation the audit trail does not name. An admin's own creations never confirm their requests."""


class TokenRecord(Base):
    """An API token: only its SHA-256 is stored; it expires and can be revoked."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    revoked_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)

    user: Mapped[UserRecord] = relationship()


class LoginThrottleRecord(Base):
    """Failed logins to one account from one client address: reaching the limit locks that account for that address
    only, so no one can lock another person out from elsewhere."""

    __tablename__ = "login_throttles"
    __table_args__ = (UniqueConstraint("username", "address"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(100), index=True)
    """The name tried (an account's or not: unknown names are throttled alike, so the answers do not differ)."""
    address: Mapped[str] = mapped_column(String(100))
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column(nullable=True)


class RoleChangeRecord(Base):
    """A role change that needs a second administrator (one giving an admin a role that sees photographs, or the
    reverse): it takes effect when a different admin asks for the same roles."""

    __tablename__ = "role_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    roles: Mapped[list[str]]
    requested_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    requested_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    approved_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    approved_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)


class GalleryGrantRecord(Base):
    """Investigators of ``unit`` ('*' for every unit) may search the gallery."""

    __tablename__ = "gallery_grants"
    __table_args__ = (UniqueConstraint("gallery_id", "unit"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    gallery_id: Mapped[int] = mapped_column(ForeignKey("galleries.id", ondelete="CASCADE"), index=True)
    unit: Mapped[str] = mapped_column(String(100))
    granted_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    granted_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class PolicyRecord(Base):
    """One loaded version of the policy file; exactly one is active."""

    __tablename__ = "policies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, unique=True)
    text: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    loaded_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    loaded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    active: Mapped[bool] = mapped_column(Boolean, default=False)


class ProbeRecord(Base):
    """A probe image: its hash is kept for ever; the (encrypted) image until the retention period ends."""

    __tablename__ = "probes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    stored: Mapped[bool] = mapped_column(Boolean, default=True)
    purged_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SearchRecord(Base):
    """A search or 1:1 comparison request, completed or refused, with everything it ran under."""

    __tablename__ = "searches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    """'search' (1:N against a gallery) or 'compare' (1:1)."""
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    unit: Mapped[str] = mapped_column(String(100), default="")
    status: Mapped[str] = mapped_column(String(20), index=True)
    """'completed' or 'refused'."""
    refusal_reason: Mapped[str] = mapped_column(Text, default="")
    gallery_id: Mapped[int | None] = mapped_column(ForeignKey("galleries.id", ondelete="SET NULL"), nullable=True)
    gallery_name: Mapped[str] = mapped_column(String(100), default="")
    gallery_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    policy_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    case_number: Mapped[str] = mapped_column(String(100), default="", index=True)
    purpose: Mapped[str] = mapped_column(String(100), default="")
    offence: Mapped[str] = mapped_column(String(100), default="")
    authorization_ref: Mapped[str] = mapped_column(String(200), default="")
    note: Mapped[str] = mapped_column(Text, default="")
    probe_id: Mapped[int | None] = mapped_column(ForeignKey("probes.id"), nullable=True)
    second_probe_id: Mapped[int | None] = mapped_column(ForeignKey("probes.id"), nullable=True)
    face_box: Mapped[list[int] | None] = mapped_column(JSON, nullable=True)
    quality: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    quality_override_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    model_name: Mapped[str] = mapped_column(String(100), default="")
    calibration_id: Mapped[int | None] = mapped_column(ForeignKey("calibrations.id"), nullable=True)
    """The calibration in force when it ran (``gallery.calibration.in_force``); None when uncalibrated or older."""
    group_calibration_ids: Mapped[list[int] | None] = mapped_column(JSON, nullable=True)
    """The per-group calibrations in force with it, if any."""
    gallery_subjects: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """Subjects in the gallery searched, at its version searched: the people who could come close by chance."""
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    ended_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)

    candidates: Mapped[list[CandidateRecord]] = relationship(back_populates="search", order_by="CandidateRecord.rank")


class CandidateRecord(Base):
    """One entry of a search's candidate list, kept even if the subject is later expunged."""

    __tablename__ = "candidates"
    __table_args__ = (UniqueConstraint("search_id", "rank"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    search_id: Mapped[int] = mapped_column(ForeignKey("searches.id", ondelete="CASCADE"), index=True)
    rank: Mapped[int] = mapped_column(Integer)
    subject_external_id: Mapped[str] = mapped_column(String(200))
    image_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    distance: Mapped[float] = mapped_column(Float)
    false_match_rate: Mapped[float | None] = mapped_column(Float, nullable=True)

    search: Mapped[SearchRecord] = relationship(back_populates="candidates")


class ReviewRecord(Base):
    """An examiner's decision on one candidate; each examiner decides at most once per candidate."""

    __tablename__ = "reviews"
    __table_args__ = (UniqueConstraint("candidate_id", "examiner_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    search_id: Mapped[int] = mapped_column(ForeignKey("searches.id", ondelete="CASCADE"), index=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id", ondelete="CASCADE"), index=True)
    examiner_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    decision: Mapped[str] = mapped_column(String(20))
    notes: Mapped[str] = mapped_column(Text, default="")
    comparison: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    """The examiner's structured comparison (``comparison.check_comparison``), where they recorded one."""
    decided_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ResolutionRecord(Base):
    """A supervisor's resolution of examiners' disagreement on a candidate."""

    __tablename__ = "resolutions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id", ondelete="CASCADE"), unique=True)
    supervisor_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    decision: Mapped[str] = mapped_column(String(20))
    notes: Mapped[str] = mapped_column(Text, default="")
    decided_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class OverrideRequestRecord(Base):
    """An investigator's request that a supervisor of their unit approve a search with a poor-quality probe.

    Decided once: 'approved' (the search then ran as the investigator's, marked as overridden), 'declined', or
    'refused' (approved, but the search was refused when it ran, e.g. under a policy changed since).
    """

    __tablename__ = "override_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    unit: Mapped[str] = mapped_column(String(100), default="", index=True)
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    """One of ``OVERRIDE_STATUSES``."""
    gallery_name: Mapped[str] = mapped_column(String(100))
    policy_version: Mapped[int] = mapped_column(Integer)
    case_number: Mapped[str] = mapped_column(String(100))
    purpose: Mapped[str] = mapped_column(String(100))
    offence: Mapped[str] = mapped_column(String(100), default="")
    authorization_ref: Mapped[str] = mapped_column(String(200), default="")
    note: Mapped[str] = mapped_column(Text, default="")
    probe_id: Mapped[int] = mapped_column(ForeignKey("probes.id"))
    requested_box: Mapped[list[int] | None] = mapped_column(JSON, nullable=True)
    """The face box the investigator drew by hand, if any (the search runs with it again)."""
    face_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    face_box: Mapped[list[int]] = mapped_column(JSON)
    """The face that would be searched."""
    quality: Mapped[dict[str, Any]] = mapped_column(JSON)
    requested_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    decided_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    decision_notes: Mapped[str] = mapped_column(Text, default="")
    search_id: Mapped[int | None] = mapped_column(ForeignKey("searches.id", ondelete="SET NULL"), nullable=True)
    """The search the approval ran."""
    refusal_reason: Mapped[str] = mapped_column(Text, default="")
    """Why the approved search was refused."""


class AuditEntryRecord(Base):
    """One entry of the append-only audit trail, chained to the previous by SHA-256."""

    __tablename__ = "audit_entries"
    __table_args__ = (Index("ix_audit_entries_actor_target", "actor", "target"),)
    """For finding a user's recent page views of a search (``Reviews.covering_page_view``)."""

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    """1, 2, 3, ... without gaps."""
    recorded_at: Mapped[str] = mapped_column(String(40))
    """ISO 8601 UTC timestamp, stored as text so the hashed form is exactly what is kept."""
    actor: Mapped[str] = mapped_column(String(100), index=True)
    action: Mapped[str] = mapped_column(String(60), index=True)
    target: Mapped[str] = mapped_column(String(200), default="")
    details: Mapped[dict[str, Any]]
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditCheckpointRecord(Base):
    """A signed statement of the trail's length and head hash at a point in time."""

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entry_count: Mapped[int] = mapped_column(Integer)
    head_hash: Mapped[str] = mapped_column(String(64))
    signed_at: Mapped[str] = mapped_column(String(40))
    key_id: Mapped[str] = mapped_column(String(64))
    """SHA-256 of the raw Ed25519 public key, hex."""
    signature: Mapped[str] = mapped_column(Text)
    """Ed25519 signature, base64, over the canonical JSON of {entry_count, head_hash, signed_at, key_id}."""
