"""Users, passwords, tokens, lockout, roles and gallery grants, on SQLite and PostgreSQL.

Argon2 is deliberately slow (about 0.2 s a hash here), so each test creates and logs in as few users as it can.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select, update

from facetrail.accountability.schema import ROLES, LoginThrottleRecord, TokenRecord, UserRecord
from facetrail.accountability.users import ROLE_ACTIONS, Actor, UserDirectory, require
from facetrail.errors import (
    AccountabilityError,
    AuthenticationError,
    DuplicateError,
    NotFoundError,
    PermissionDeniedError,
)
from facetrail.gallery.gallery import Galleries
from facetrail.store import utcnow

PASSWORD = "correct horse battery staple"
WRONG = "incorrect horse battery staple"

# The permission table, written out independently of the implementation.
EXPECTED_ACTIONS = {
    "search": {"investigator"},
    "compare": {"investigator"},
    "review": {"examiner"},
    "resolve_dispute": {"supervisor"},
    "override_quality": {"supervisor"},
    "view_unit_activity": {"supervisor"},
    "view_audit": {"auditor", "supervisor"},
    "verify_audit": {"auditor", "supervisor"},
    "export_audit": {"auditor", "supervisor"},
    "view_reports": {"auditor", "supervisor"},
    "manage_users": {"admin"},
    "confirm_roles": {"admin", "supervisor"},
    "manage_galleries": {"admin"},
    "enrol": {"admin"},
    "manage_policy": {"admin"},
    "rotate_keys": {"admin"},
    "purge": {"admin"},
    "backup": {"admin"},
    "export_lead": {"investigator", "examiner", "supervisor"},
    "view_candidate_images": {"investigator", "examiner", "supervisor"},
    "evaluate": {"admin", "auditor"},
    "view_galleries": {"investigator", "examiner", "supervisor", "auditor", "admin"},
    "view_policy_history": {"admin", "auditor"},
}


@pytest.fixture
def galleries(datadir):
    opened = Galleries.open(datadir)
    yield opened
    opened.close()


@pytest.fixture
def users(galleries) -> UserDirectory:
    return UserDirectory(galleries.sessions)


def actor(roles: set[str], unit: str = "", username: str = "someone") -> Actor:
    return Actor(id=1, username=username, unit=unit, roles=frozenset(roles))


def user_row(users: UserDirectory, username: str) -> dict:
    return next(row for row in users.list_users() if row["username"] == username)


def set_column(users: UserDirectory, model, where, **values) -> None:
    with users.sessions() as session:
        session.execute(update(model).where(where).values(**values))
        session.commit()


# --- accounts, logins, tokens ---------------------------------------------------------------


def test_create_login_authenticate_round_trip(users):
    created = users.create_user("alice", PASSWORD, ["investigator"], unit="Robbery", display_name="Alice A.")
    assert created.username == "alice" and created.unit == "Robbery" and created.roles == frozenset({"investigator"})
    assert users.count() == 1

    logged_in, token = users.login("alice", PASSWORD)
    assert logged_in == created
    assert token.startswith("ft_") and len(token) > 40
    assert users.authenticate(token) == created

    _, second = users.login("alice", PASSWORD, label="web")
    assert second != token
    assert users.authenticate(second) == users.authenticate(token) == created

    [row] = users.list_users()
    assert row["username"] == "alice" and row["roles"] == ["investigator"] and row["display_name"] == "Alice A."
    assert row["active"] and not row["locked"] and row["failed_logins"] == 0
    assert "password_hash" not in row and "$argon2" not in repr(row)


def test_token_and_password_are_not_stored_in_plaintext(users, galleries):
    users.create_user("alice", PASSWORD, ["examiner"])
    _, token = users.login("alice", PASSWORD)

    with users.sessions() as session:
        [stored_token] = session.scalars(select(TokenRecord)).all()
        stored_user = session.scalars(select(UserRecord)).one()
        token_row = repr(session.execute(select(TokenRecord.__table__)).all())
        user_row_text = repr(session.execute(select(UserRecord.__table__)).all())
    assert stored_token.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in token_row and token[3:] not in token_row
    assert stored_user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user_row_text

    if galleries.engine.dialect.name == "sqlite":  # nor anywhere in the database files
        database = Path(galleries.engine.url.database)
        contents = b"".join(p.read_bytes() for p in (database, Path(f"{database}-wal")) if p.exists())
        assert stored_token.token_hash.encode() in contents
        assert token.encode() not in contents and PASSWORD.encode() not in contents


def test_unknown_user_and_wrong_password_get_the_same_message(users):
    users.create_user("alice", PASSWORD, ["investigator"])
    with pytest.raises(AuthenticationError) as unknown:
        users.login("nobody", PASSWORD)
    with pytest.raises(AuthenticationError) as wrong:
        users.login("alice", WRONG)
    assert str(unknown.value) == str(wrong.value) == "invalid username or password"


def test_five_wrong_passwords_lock_the_account_until_unlocked(users):
    users.create_user("alice", PASSWORD, ["investigator"])
    for attempt in range(1, 5):
        with pytest.raises(AuthenticationError, match="invalid username or password"):
            users.login("alice", WRONG)
        row = user_row(users, "alice")  # read afresh: the failure was committed although the login failed
        assert row["failed_logins"] == attempt and not row["locked"]

    with pytest.raises(AuthenticationError):
        users.login("alice", WRONG)
    row = user_row(users, "alice")
    assert row["locked"] and row["locked_until"] is not None

    with pytest.raises(AuthenticationError, match="account is locked"):
        users.login("alice", PASSWORD)  # even the right password

    unlocked = users.unlock("alice")
    assert unlocked.username == "alice"
    assert user_row(users, "alice")["failed_logins"] == 0
    _, token = users.login("alice", PASSWORD)
    assert users.authenticate(token).username == "alice"


def test_lock_expires_and_counting_starts_afresh(galleries):
    users = UserDirectory(galleries.sessions, max_failed_logins=2, lockout_minutes=1)
    users.create_user("alice", PASSWORD, ["investigator"])
    _, token = users.login("alice", PASSWORD)
    for _ in range(2):
        with pytest.raises(AuthenticationError):
            users.login("alice", WRONG)
    with pytest.raises(AuthenticationError, match="account is locked"):
        users.login("alice", PASSWORD)
    assert users.authenticate(token).username == "alice"  # a lock stops guessing, not the signed-in user

    set_column(users, LoginThrottleRecord, LoginThrottleRecord.username == "alice",
               locked_until=utcnow() - dt.timedelta(seconds=1))
    with pytest.raises(AuthenticationError, match="invalid username or password"):
        users.login("alice", WRONG)  # one failure after the lock expired does not lock again
    row = user_row(users, "alice")
    assert row["failed_logins"] == 1 and not row["locked"]

    users.login("alice", PASSWORD)
    assert user_row(users, "alice")["failed_logins"] == 0


def test_expired_token_is_refused(users):
    users.create_user("alice", PASSWORD, ["investigator"])
    _, token = users.login("alice", PASSWORD)
    token_hash = hashlib.sha256(token.encode()).hexdigest()
    with users.sessions() as session:
        expires_at = session.scalar(select(TokenRecord.expires_at).where(TokenRecord.token_hash == token_hash))
    if expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=dt.timezone.utc)
    assert dt.timedelta(hours=11, minutes=59) < expires_at - utcnow() <= dt.timedelta(hours=12)

    set_column(users, TokenRecord, TokenRecord.token_hash == token_hash, expires_at=utcnow() - dt.timedelta(seconds=1))
    with pytest.raises(AuthenticationError, match="token expired"):
        users.authenticate(token)


def test_revoked_token_is_refused(users):
    users.create_user("alice", PASSWORD, ["investigator"])
    _, first = users.login("alice", PASSWORD)
    _, second = users.login("alice", PASSWORD)

    users.revoke(first)
    with pytest.raises(AuthenticationError, match="token revoked"):
        users.authenticate(first)
    assert users.authenticate(second).username == "alice"
    users.revoke(first)  # again: no change

    assert users.revoke_all("alice") == 1
    with pytest.raises(AuthenticationError, match="token revoked"):
        users.authenticate(second)
    assert users.revoke_all("alice") == 0

    for bogus in ("ft_not-a-token", "", first + "x"):
        with pytest.raises(AuthenticationError, match="invalid token"):
            users.authenticate(bogus)
    with pytest.raises(AuthenticationError, match="invalid token"):
        users.revoke("ft_not-a-token")


def test_inactive_user_is_refused(users):
    users.create_user("alice", PASSWORD, ["investigator"])
    _, token = users.login("alice", PASSWORD)

    assert users.set_active("alice", False).username == "alice"
    assert not user_row(users, "alice")["active"]
    with pytest.raises(AuthenticationError, match="deactivated"):
        users.authenticate(token)
    with pytest.raises(AuthenticationError, match="invalid username or password"):
        users.login("alice", PASSWORD)

    users.set_active("alice", True)
    assert users.authenticate(token).username == "alice"


@pytest.mark.parametrize(
    "username", ["a", "Alice", "-alice", ".alice", "al ice", "alice\n", "alice/x", "ålice", "x" * 65, ""]
)
def test_bad_usernames_are_rejected(users, username):
    with pytest.raises(AccountabilityError, match="username"):
        users.create_user(username, PASSWORD, ["investigator"])
    assert users.count() == 0


def test_bad_roles_passwords_units_and_duplicates_are_rejected(users):
    for roles in ([], ["wizard"], ["investigator", "Investigator"]):
        with pytest.raises(AccountabilityError, match="role"):
            users.create_user("alice", PASSWORD, roles)
    for password in ("", "short", "x" * 11, "x" * 1025):
        with pytest.raises(AccountabilityError, match="password"):
            users.create_user("alice", password, ["investigator"])
    with pytest.raises(AccountabilityError, match="unit"):
        users.create_user("alice", PASSWORD, ["investigator"], unit="*")
    assert users.count() == 0

    users.create_user("a.b_c-9", PASSWORD, ["investigator", "investigator"])
    assert user_row(users, "a.b_c-9")["roles"] == ["investigator"]
    with pytest.raises(DuplicateError):
        users.create_user("a.b_c-9", PASSWORD, ["examiner"])
    assert users.count() == 1


def test_set_roles_and_password(users):
    users.create_user("alice", PASSWORD, ["investigator"], unit="Robbery")
    _, token = users.login("alice", PASSWORD)

    changed = users.set_roles("alice", ["supervisor", "examiner"])
    assert changed.roles == frozenset({"examiner", "supervisor"}) and changed.unit == "Robbery"
    assert users.authenticate(token).roles == frozenset({"examiner", "supervisor"})  # existing tokens follow
    assert user_row(users, "alice")["roles"] == ["examiner", "supervisor"]

    with pytest.raises(AccountabilityError, match="role"):
        users.set_roles("alice", [])
    with pytest.raises(AccountabilityError, match="role"):
        users.set_roles("alice", ["superuser"])
    with pytest.raises(NotFoundError):
        users.set_roles("bob", ["examiner"])
    assert users.authenticate(token).roles == frozenset({"examiner", "supervisor"})

    with pytest.raises(AccountabilityError, match="password"):
        users.set_password("alice", "too short")
    users.set_password("alice", WRONG)
    with pytest.raises(AuthenticationError):
        users.login("alice", PASSWORD)
    assert users.login("alice", WRONG)[0].username == "alice"


@pytest.mark.real_password_hashing
def test_outdated_hash_is_upgraded_at_login(users):
    users.create_user("alice", PASSWORD, ["investigator"])
    weak = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
    set_column(users, UserRecord, UserRecord.username == "alice", password_hash=weak)

    users.login("alice", PASSWORD)
    with users.sessions() as session:
        upgraded = session.scalar(select(UserRecord.password_hash).where(UserRecord.username == "alice"))
    assert upgraded != weak and not PasswordHasher().check_needs_rehash(upgraded)


# --- the permission table -------------------------------------------------------------------


def test_permission_table_has_exactly_the_expected_actions():
    assert set(ROLE_ACTIONS) == set(EXPECTED_ACTIONS)
    for action, roles in ROLE_ACTIONS.items():
        assert roles <= set(ROLES), action


@pytest.mark.parametrize("action", sorted(EXPECTED_ACTIONS))
@pytest.mark.parametrize("role", ROLES)
def test_require_allows_exactly_the_listed_roles(action, role):
    someone = actor({role}, username="pat")
    if role in EXPECTED_ACTIONS[action]:
        require(someone, action)
    else:
        with pytest.raises(PermissionDeniedError) as refused:
            require(someone, action)
        message = str(refused.value)
        assert "pat" in message and action in message
        assert all(allowed in message for allowed in EXPECTED_ACTIONS[action])


def test_require_with_several_roles_or_none():
    both = actor({"examiner", "auditor"})
    require(both, "review")
    require(both, "view_audit")
    with pytest.raises(PermissionDeniedError):
        require(both, "search")
    for action in EXPECTED_ACTIONS:
        with pytest.raises(PermissionDeniedError):
            require(actor(set()), action)
    with pytest.raises(ValueError, match="unknown action"):
        require(actor(set(ROLES)), "launch_missiles")


def test_auditors_and_admins_never_see_candidate_images_and_admins_never_search():
    for roles in ({"auditor"}, {"admin"}, {"auditor", "admin"}):
        with pytest.raises(PermissionDeniedError):
            require(actor(roles), "view_candidate_images")
    for action in ("search", "compare"):
        with pytest.raises(PermissionDeniedError):
            require(actor({"admin"}), action)
    assert actor({"admin", "auditor"}).has("admin") and not actor({"admin"}).has("investigator")


# --- gallery grants -------------------------------------------------------------------------


def test_gallery_grants_decide_who_may_search(users, galleries):
    admin = users.create_user("root", PASSWORD, ["admin"])
    county = galleries.create("county", ["booking"]).id
    state = galleries.create("state", ["booking"]).id
    robbery = actor({"investigator"}, unit="Robbery")
    fraud = actor({"investigator"}, unit="Fraud")
    no_unit = actor({"investigator"})
    examiner = actor({"examiner", "supervisor", "auditor", "admin"}, unit="Robbery")

    assert not any(users.may_search(who, gallery) for who in (robbery, fraud, no_unit) for gallery in (county, state))

    users.grant_gallery(county, "Robbery", admin)
    assert users.may_search(robbery, county)
    assert not users.may_search(fraud, county) and not users.may_search(no_unit, county)
    assert not users.may_search(robbery, state)
    assert not users.may_search(examiner, county)

    users.grant_gallery(state, "*", admin)
    assert all(users.may_search(who, state) for who in (robbery, fraud, no_unit))
    assert not users.may_search(examiner, state)

    assert [(g["gallery"], g["unit"], g["granted_by"]) for g in users.grants()] == [
        ("county", "Robbery", "root"),
        ("state", "*", "root"),
    ]
    assert [g["unit"] for g in users.grants(state)] == ["*"]

    with pytest.raises(DuplicateError):
        users.grant_gallery(county, "Robbery", admin)
    with pytest.raises(PermissionDeniedError):
        users.grant_gallery(county, "Fraud", actor({"supervisor"}))
    with pytest.raises(NotFoundError):
        users.grant_gallery(county + state + 100, "Fraud", admin)
    with pytest.raises(AccountabilityError, match="unit"):
        users.grant_gallery(county, " ", admin)

    users.revoke_gallery(county, "Robbery")
    assert not users.may_search(robbery, county)
    assert users.grants(county) == []
    with pytest.raises(NotFoundError):
        users.revoke_gallery(county, "Robbery")


def test_the_migration_recording_account_creators_takes_them_from_the_audit_trail(tmp_path):
    """Migration 0005 adds users.created_by and fills it for existing accounts from their first 'user_created'
    entry (the set-up admin, created by 'system', and accounts the trail does not name keep none)."""
    from alembic import command
    from sqlalchemy import create_engine, text

    from facetrail.store import _alembic_config

    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    config = _alembic_config(engine)
    command.upgrade(config, "0004")
    with engine.begin() as connection:
        for number, name in enumerate(["admin", "root", "ivan", "older"], 1):
            connection.execute(text("INSERT INTO users (id, username, display_name, unit, roles, password_hash, active, "
                                    "created_at) VALUES (:id, :name, '', '', '[]', 'x', 1, CURRENT_TIMESTAMP)"),
                               {"id": number, "name": name})
        for seq, (actor, target) in enumerate([("system", "admin"), ("admin", "root"), ("root", "ivan"),
                                               ("admin", "ivan")], 1):
            connection.execute(text("INSERT INTO audit_entries (seq, recorded_at, actor, action, target, details, "
                                    "prev_hash, entry_hash) VALUES (:seq, '', :actor, 'user_created', :target, '{}', "
                                    "'', :hash)"), {"seq": seq, "actor": actor, "target": target, "hash": f"h{seq}"})
    command.upgrade(config, "head")
    with engine.connect() as connection:
        creators = dict(connection.execute(text("SELECT username, created_by FROM users")).all())
    engine.dispose()
    assert creators == {"admin": None, "root": 1, "ivan": 2, "older": None}
