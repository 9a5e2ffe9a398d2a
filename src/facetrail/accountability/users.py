"""Users, roles, passwords, API tokens and gallery grants: who is acting, and what they may do.

Passwords are kept only as argon2id hashes and tokens only as their SHA-256, so neither can be read back from
the store; a password must be long, not common or guessable and must not contain the username (``passwords``).
Repeated wrong passwords for one account from one client address lock that account for that address for a while
(others can still log in from elsewhere; unknown usernames are counted and answered alike, so the answers do not
tell which accounts exist); an account's existing tokens keep working
while it is locked (the lock stops password guessing, it does not sign the real user out). Whether a role
*combination* is allowed is the policy's business and is checked by the service layer, not here.

Methods that change something take an optional ``session``: given one (the audit trail's transaction, say), they
only flush, and the change commits with whatever else that transaction records; otherwise they commit on their own.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from facetrail.accountability.lookalikes import refuse_imitation
from facetrail.accountability.passwords import check_password
from facetrail.accountability.schema import ROLES, GalleryGrantRecord, LoginThrottleRecord, TokenRecord, UserRecord
from facetrail.errors import (
    AccountabilityError,
    AuthenticationError,
    DuplicateError,
    NotFoundError,
    PermissionDeniedError,
)
from facetrail.gallery.schema import GalleryRecord
from facetrail.store import utcnow
from facetrail.textfold import clean

USERNAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{1,63}")
ALL_UNITS = "*"
TOKEN_PREFIX = "ft_"
BAD_CREDENTIALS = "invalid username or password"
LOCKED = ("account is locked for logins from this address after repeated failures; try again later or ask an "
          "administrator to unlock it")
LOCAL_ADDRESS = "local"
"""The address a login from the command line counts against."""

ROLE_ACTIONS: dict[str, frozenset[str]] = {
    "search": frozenset({"investigator"}),
    "compare": frozenset({"investigator"}),
    "review": frozenset({"examiner"}),
    "resolve_dispute": frozenset({"supervisor"}),
    "override_quality": frozenset({"supervisor"}),
    "view_unit_activity": frozenset({"supervisor"}),
    "view_audit": frozenset({"auditor", "supervisor"}),
    "verify_audit": frozenset({"auditor", "supervisor"}),
    "export_audit": frozenset({"auditor", "supervisor"}),
    "view_reports": frozenset({"auditor", "supervisor"}),
    "manage_users": frozenset({"admin"}),
    "confirm_roles": frozenset({"admin", "supervisor"}),
    "manage_galleries": frozenset({"admin"}),
    "enrol": frozenset({"admin"}),
    "manage_policy": frozenset({"admin"}),
    "rotate_keys": frozenset({"admin"}),
    "purge": frozenset({"admin"}),
    "backup": frozenset({"admin"}),
    "export_lead": frozenset({"investigator", "examiner", "supervisor"}),
    "view_candidate_images": frozenset({"investigator", "examiner", "supervisor"}),
    "evaluate": frozenset({"admin", "auditor"}),
    "view_galleries": frozenset(ROLES),
    "view_policy_history": frozenset({"admin", "auditor"}),
}
"""The permission table: action -> the roles that may perform it (any one of them suffices)."""


@dataclass(frozen=True)
class Actor:
    """An authenticated user as seen by the rest of facetrail."""

    id: int
    username: str
    unit: str
    roles: frozenset[str]

    def has(self, role: str) -> bool:
        """Whether the actor holds ``role``."""
        return role in self.roles


def require(actor: Actor, action: str) -> None:
    """Raise PermissionDeniedError unless one of the actor's roles may perform ``action``."""
    if action not in ROLE_ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    allowed = ROLE_ACTIONS[action]
    if actor.roles & allowed:
        return
    held = ", ".join(sorted(actor.roles)) or "none"
    raise PermissionDeniedError(
        f"user {actor.username!r} (roles: {held}) may not {action!r}; only {', '.join(sorted(allowed))} may"
    )


class UserDirectory:
    """The users of one store: accounts, logins, tokens and which units may search which gallery."""

    def __init__(
        self, sessions: sessionmaker, max_failed_logins: int = 5, lockout_minutes: int = 15, token_hours: int = 12
    ) -> None:
        if max_failed_logins < 1 or lockout_minutes <= 0 or token_hours <= 0:
            raise ValueError("max_failed_logins, lockout_minutes and token_hours must be positive")
        self.sessions = sessions
        self.max_failed_logins = max_failed_logins
        self.lockout = dt.timedelta(minutes=lockout_minutes)
        self.token_lifetime = dt.timedelta(hours=token_hours)
        self._hasher = PasswordHasher()
        self._dummy_hash: str | None = None

    # --- accounts -------------------------------------------------------------

    @contextmanager
    def _writing(self, session: Session | None) -> Iterator[Session]:
        """``session`` (flushed at the end; its owner commits), or a session of our own, committed at the end."""
        if session is not None:
            yield session
            session.flush()
            return
        with self.sessions() as own:
            yield own
            own.commit()

    def create_user(
        self, username: str, password: str, roles: list[str], unit: str = "", display_name: str = "",
        session: Session | None = None, created_by: int | None = None, roles_pending: bool = False,
    ) -> Actor:
        """Create an active account, recording which user created it (None: set-up); the password is stored only as
        an argon2id hash. ``roles_pending``: the roles it was asked for wait for a second person, so it may start
        with none."""
        _check_username(username)
        stored_roles = _check_roles(roles, allow_none=roles_pending)
        unit = _check_unit(unit)
        if len(display_name) > 200:
            raise AccountabilityError("display name: at most 200 characters")
        check_password(password, username, display_name)
        record = UserRecord(username=username, display_name=display_name, unit=unit, roles=stored_roles,
                            password_hash=self._hasher.hash(password), active=True, created_by=created_by)
        try:
            with self._writing(session) as writing:
                refuse_imitation(writing, "username", username, UserRecord.username)
                refuse_imitation(writing, "unit", unit, UserRecord.unit, GalleryGrantRecord.unit)
                writing.add(record)
        except IntegrityError:
            raise DuplicateError(f"a user named {username!r} already exists") from None
        return _actor(record)

    def set_roles(self, username: str, roles: list[str], session: Session | None = None) -> Actor:
        """Replace the user's roles (takes effect on the user's next request, tokens included)."""
        stored_roles = _check_roles(roles)
        with self._writing(session) as writing:
            user = _user(writing, username)
            user.roles = stored_roles
        return _actor(user)

    def set_active(self, username: str, active: bool, session: Session | None = None) -> Actor:
        """Activate or deactivate an account; a deactivated account can neither log in nor use its tokens."""
        with self._writing(session) as writing:
            user = _user(writing, username)
            user.active = active
        return _actor(user)

    def set_password(self, username: str, password: str, session: Session | None = None) -> None:
        """Replace the user's password."""
        with self._writing(session) as writing:
            user = _user(writing, username)
            check_password(password, username, user.display_name)
            user.password_hash = self._hasher.hash(password)

    def user(self, username: str) -> Actor:
        """The account called ``username`` (NotFoundError if there is none)."""
        with self.sessions() as session:
            return _actor(_user(session, username))

    def unlock(self, username: str, session: Session | None = None) -> Actor:
        """Lift every lockout of the account and clear its counts of failed logins."""
        with self._writing(session) as writing:
            user = _user(writing, username)
            writing.execute(delete(LoginThrottleRecord).where(LoginThrottleRecord.username == username))
        return _actor(user)

    def list_users(self) -> list[dict]:
        """Every account, by username, without password hashes; ``failed_logins`` counts the current failures from
        every address, ``locked_until`` is the latest lock still in force on any address."""
        now = utcnow()
        with self.sessions() as session:
            users = session.scalars(select(UserRecord).order_by(UserRecord.username)).all()
            names = {user.id: user.username for user in users}
            throttles: dict[str, list[LoginThrottleRecord]] = {}
            for throttle in session.scalars(select(LoginThrottleRecord)):
                throttles.setdefault(throttle.username, []).append(throttle)
            rows = []
            for user in users:
                mine = throttles.get(user.username, [])
                locks = [_aware(t.locked_until) for t in mine if _is_locked(t, now)]
                rows.append({
                    "id": user.id,
                    "username": user.username,
                    "display_name": user.display_name,
                    "unit": user.unit,
                    "roles": sorted(user.roles),
                    "active": user.active,
                    "failed_logins": sum(t.failed_logins for t in mine if t.locked_until is None or _is_locked(t, now)),
                    "locked": bool(locks),
                    "locked_until": _iso(max(locks)) if locks else None,
                    "created_at": _iso(user.created_at),
                    "created_by": names.get(user.created_by),
                })
            return rows

    def active_actor(self, user_id: int) -> Actor:
        """The actor of an active account, by id, with the roles it holds now (to act on a request the user made
        earlier, such as a search a supervisor approved)."""
        with self.sessions() as session:
            user = session.get(UserRecord, user_id)
            if user is None:
                raise NotFoundError(f"no user with id {user_id}")
            if not user.active:
                raise PermissionDeniedError(f"the account of {user.username!r} is deactivated")
            return _actor(user)

    def count(self) -> int:
        """The number of accounts."""
        with self.sessions() as session:
            return session.scalar(select(func.count()).select_from(UserRecord))

    # --- logins and tokens ----------------------------------------------------

    def login(self, username: str, password: str, label: str = "cli", address: str = LOCAL_ADDRESS) -> tuple[Actor, str]:
        """Check the password and issue a new token (returned once; only its SHA-256 is kept).

        A wrong password counts against the username tried *from this client address* (committed although the
        login fails); reaching ``max_failed_logins`` locks that username for that address for ``lockout_minutes``.
        Unknown usernames are counted and locked exactly like accounts, and unknown usernames, wrong passwords and
        deactivated accounts get the same message, so no answer tells whether an account exists.
        """
        if len(label) > 200:
            raise AccountabilityError("token label: at most 200 characters")
        username, address = username[:100], (address or LOCAL_ADDRESS)[:100]
        now = utcnow()
        with self.sessions() as session:
            throttle = session.scalar(select(LoginThrottleRecord).where(
                LoginThrottleRecord.username == username, LoginThrottleRecord.address == address))
            if throttle is not None and _is_locked(throttle, now):
                raise AuthenticationError(LOCKED)
            user = session.scalar(select(UserRecord).where(UserRecord.username == username))
            if user is None or not self._verify(user.password_hash, password):
                if user is None:
                    self._verify(self._dummy(), password)  # the same work as for a real account
                self._count_failure(session, username, address, now)
                session.commit()
                raise AuthenticationError(BAD_CREDENTIALS)
            if not user.active:
                raise AuthenticationError(BAD_CREDENTIALS)
            if throttle is not None:
                session.delete(throttle)
            if self._hasher.check_needs_rehash(user.password_hash):
                user.password_hash = self._hasher.hash(password)
            token = TOKEN_PREFIX + secrets.token_urlsafe(32)
            session.add(
                TokenRecord(
                    user_id=user.id,
                    token_hash=_token_hash(token),
                    label=label,
                    created_at=now,
                    expires_at=now + self.token_lifetime,
                )
            )
            session.commit()
            return _actor(user), token

    def authenticate(self, token: str) -> Actor:
        """The actor a token belongs to; refuses unknown, expired and revoked tokens and deactivated accounts."""
        with self.sessions() as session:
            record = session.scalar(select(TokenRecord).where(TokenRecord.token_hash == _token_hash(token)))
            if record is None:
                raise AuthenticationError("invalid token")
            if record.revoked_at is not None:
                raise AuthenticationError("token revoked")
            if _aware(record.expires_at) <= utcnow():
                raise AuthenticationError("token expired; log in again")
            if not record.user.active:
                raise AuthenticationError("account is deactivated")
            return _actor(record.user)

    def revoke(self, token: str) -> None:
        """Revoke one token (revoking it again changes nothing)."""
        with self.sessions() as session:
            record = session.scalar(select(TokenRecord).where(TokenRecord.token_hash == _token_hash(token)))
            if record is None:
                raise AuthenticationError("invalid token")
            if record.revoked_at is None:
                record.revoked_at = utcnow()
                session.commit()

    def revoke_all(self, username: str) -> int:
        """Revoke every unexpired, unrevoked token of the user; returns how many were revoked."""
        now = utcnow()
        with self.sessions() as session:
            user = _user(session, username)
            tokens = session.scalars(
                select(TokenRecord).where(TokenRecord.user_id == user.id, TokenRecord.revoked_at.is_(None))
            ).all()
            live = [token for token in tokens if _aware(token.expires_at) > now]
            for token in live:
                token.revoked_at = now
            session.commit()
            return len(live)

    # --- gallery grants -------------------------------------------------------

    def grant_gallery(self, gallery_id: int, unit: str, granted_by: Actor, session: Session | None = None) -> None:
        """Let investigators of ``unit`` ('*' for every unit) search the gallery; ``granted_by`` must be an admin."""
        require(granted_by, "manage_galleries")
        unit = _check_unit(unit, grant=True)
        try:
            with self._writing(session) as writing:
                name = _gallery(writing, gallery_id).name
                refuse_imitation(writing, "unit", unit, UserRecord.unit, GalleryGrantRecord.unit)
                writing.add(GalleryGrantRecord(gallery_id=gallery_id, unit=unit, granted_by=granted_by.id))
        except IntegrityError:
            raise DuplicateError(f"unit {unit!r} already has a grant for gallery {name!r}") from None

    def revoke_gallery(self, gallery_id: int, unit: str, session: Session | None = None) -> None:
        """Withdraw the grant of the gallery to ``unit``."""
        unit = clean(unit)
        with self._writing(session) as writing:
            gallery = _gallery(writing, gallery_id)
            grant = writing.scalar(
                select(GalleryGrantRecord).where(
                    GalleryGrantRecord.gallery_id == gallery_id, GalleryGrantRecord.unit == unit
                )
            )
            if grant is None:
                raise NotFoundError(f"unit {unit!r} has no grant for gallery {gallery.name!r}")
            writing.delete(grant)

    def may_search(self, actor: Actor, gallery_id: int) -> bool:
        """Whether the actor is an investigator whose unit (or every unit) has a grant for the gallery."""
        if not actor.has("investigator"):
            return False
        units = [ALL_UNITS, actor.unit] if actor.unit else [ALL_UNITS]
        with self.sessions() as session:
            grant = session.scalar(
                select(GalleryGrantRecord.id).where(
                    GalleryGrantRecord.gallery_id == gallery_id, GalleryGrantRecord.unit.in_(units)
                )
            )
        return grant is not None

    def grants(self, gallery_id: int | None = None) -> list[dict]:
        """The gallery grants (of one gallery, or all), by gallery name and unit."""
        query = (
            select(GalleryGrantRecord, GalleryRecord.name, UserRecord.username)
            .join(GalleryRecord, GalleryRecord.id == GalleryGrantRecord.gallery_id)
            .join(UserRecord, UserRecord.id == GalleryGrantRecord.granted_by)
            .order_by(GalleryRecord.name, GalleryGrantRecord.unit)
        )
        if gallery_id is not None:
            query = query.where(GalleryGrantRecord.gallery_id == gallery_id)
        with self.sessions() as session:
            return [
                {
                    "gallery_id": grant.gallery_id,
                    "gallery": gallery_name,
                    "unit": grant.unit,
                    "granted_by": granted_by,
                    "granted_at": _iso(grant.granted_at),
                }
                for grant, gallery_name, granted_by in session.execute(query)
            ]

    # --- helpers ----------------------------------------------------------------

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))
        return self._dummy_hash

    def _count_failure(self, session: Session, username: str, address: str, now: dt.datetime) -> None:
        """Add one failed login for ``username`` from ``address`` (concurrent guesses all count; an expired lock
        starts the count afresh) and lock that pair at the limit."""
        values = {"username": username, "address": address}
        if session.get_bind().dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        session.execute(insert(LoginThrottleRecord).values(**values, failed_logins=0).on_conflict_do_nothing())
        where = (LoginThrottleRecord.username == username, LoginThrottleRecord.address == address)
        session.execute(update(LoginThrottleRecord).where(*where, LoginThrottleRecord.locked_until <= now)
                        .values(failed_logins=0, locked_until=None).execution_options(synchronize_session=False))
        session.execute(update(LoginThrottleRecord).where(*where)
                        .values(failed_logins=LoginThrottleRecord.failed_logins + 1)
                        .execution_options(synchronize_session=False))
        failed = session.scalar(select(LoginThrottleRecord.failed_logins).where(*where))
        if failed >= self.max_failed_logins:
            session.execute(update(LoginThrottleRecord).where(*where).values(locked_until=now + self.lockout)
                            .execution_options(synchronize_session=False))


def _actor(user: UserRecord) -> Actor:
    return Actor(id=user.id, username=user.username, unit=user.unit, roles=frozenset(user.roles))


def _user(session: Session, username: str) -> UserRecord:
    user = session.scalar(select(UserRecord).where(UserRecord.username == username))
    if user is None:
        raise NotFoundError(f"no user named {username!r}")
    return user


def _gallery(session: Session, gallery_id: int) -> GalleryRecord:
    gallery = session.get(GalleryRecord, gallery_id)
    if gallery is None:
        raise NotFoundError(f"no gallery with id {gallery_id}")
    return gallery


def _check_username(username: str) -> None:
    if not USERNAME_PATTERN.fullmatch(username):
        raise AccountabilityError(
            f"username {username!r}: 2 to 64 characters, lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )


def _check_roles(roles: Iterable[str], allow_none: bool = False) -> list[str]:
    wanted = set(roles)
    if not wanted and not allow_none:
        raise AccountabilityError(f"a user needs at least one role (one of {', '.join(ROLES)})")
    unknown = wanted - set(ROLES)
    if unknown:
        raise AccountabilityError(f"unknown role(s) {', '.join(sorted(unknown))}; roles are {', '.join(ROLES)}")
    return sorted(wanted)


def _check_unit(unit: str, grant: bool = False) -> str:
    """``unit`` cleaned (``textfold.clean``): a user's (may be empty, never '*'), or with ``grant`` a grant's (never
    empty, '*' for every unit)."""
    unit = clean(unit)
    if grant and not unit:
        raise AccountabilityError(f"a grant names a unit, or {ALL_UNITS!r} for every unit")
    if not grant and unit == ALL_UNITS:
        raise AccountabilityError(f"{ALL_UNITS!r} means every unit in grants; it cannot be a user's unit")
    if len(unit) > 100:
        raise AccountabilityError("unit: at most 100 characters")
    return unit


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _aware(value: dt.datetime) -> dt.datetime:
    """A stored timestamp as timezone-aware UTC (SQLite hands them back naive)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.timezone.utc)


def _is_locked(throttle: LoginThrottleRecord, now: dt.datetime) -> bool:
    return throttle.locked_until is not None and _aware(throttle.locked_until) > now


def _iso(value: dt.datetime | None) -> str | None:
    return _aware(value).isoformat() if value is not None else None
