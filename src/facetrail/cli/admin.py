"""Setting up and administering: init, login/logout, users, policy, keys, retention."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Column, Table

from facetrail.cli.common import (DataOption, JsonOption, acting, console, emit_json, out, password_from, print_table,
                                  readable_time, run, save_token, whole)
from facetrail.datadir import DataDir

user_app = typer.Typer(no_args_is_help=True, help="Create users, change roles, disable and unlock accounts (admin).")
policy_app = typer.Typer(no_args_is_help=True, help="Show, validate and load the policy file.")
keys_app = typer.Typer(no_args_is_help=True, help="Data encryption keys.")

ADMIN_PASSWORD_ENV = "FACETRAIL_ADMIN_PASSWORD"
PASSWORD_ENV = "FACETRAIL_PASSWORD"


def init(
    data: DataOption = None,
    admin: Annotated[Optional[str], typer.Option("--admin", help="Username of the first admin (first run only).")] = None,
    calibrate_from: Annotated[Optional[Path], typer.Option("--calibrate-from", help="Folder with one subfolder of photographs per person: estimate candidates' false-match rates from every pair of different people in it.")] = None,
    workers: Annotated[int, typer.Option("--workers", help="Worker processes for --calibrate-from (0 = one per core).")] = 0,
) -> None:
    """Create (or upgrade) a data directory: folders, config.toml, keys, database schema, the first admin, and the
    calibration of estimated false-match rates from local photographs (--calibrate-from)."""
    from facetrail.accountability.service import Facetrail
    from facetrail.cli.common import progress

    def body() -> None:
        datadir = DataDir.locate(data)
        password = password_from(ADMIN_PASSWORD_ENV, f"password for {admin}", confirm=True) if admin else None
        system = Facetrail.initialise(datadir, admin, password)
        try:
            if calibrate_from:
                with progress() as bar:
                    task = bar.add_task(f"calibrating on {calibrate_from.name}", total=None)
                    source = system.calibrations.calibrate(calibrate_from, workers, on_done=lambda template: bar.advance(task))
                console.print(f"estimated false-match rates calibrated on {source}")
        finally:
            system.close()
        console.print(f"data directory ready: {datadir.root}")

    run(body)


def login(
    username: str,
    data: DataOption = None,
    print_token: Annotated[bool, typer.Option("--print-token", help="Print the token (for FACETRAIL_TOKEN) instead of saving it.")] = False,
) -> None:
    """Log in; the token is saved for this data directory (or printed with --print-token)."""
    from facetrail.cli.common import opened

    password = password_from(PASSWORD_ENV, f"password for {username}")

    def body():
        with opened(data) as system:
            actor, token = system.auth.login(username, password)
            if not print_token:
                save_token(system.datadir, token)
            return actor, token

    actor, token = run(body)
    if print_token:
        print(token)
    else:
        console.print(f"logged in as {actor.username} ({', '.join(sorted(actor.roles))})")


def logout(data: DataOption = None) -> None:
    """Revoke the saved token and forget it."""
    from facetrail.cli.common import current_token, opened

    def body() -> None:
        with opened(data) as system:
            token = current_token(system.datadir)
            if token:
                system.auth.logout(token)
            save_token(system.datadir, None)

    run(body)
    console.print("logged out")


@user_app.command("create")
def user_create(
    username: str,
    role: Annotated[list[str], typer.Option("--role", help="investigator, examiner, supervisor, auditor or admin (repeatable).")],
    unit: Annotated[str, typer.Option(help="The user's unit, e.g. Robbery-Homicide.")] = "",
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    data: DataOption = None,
) -> None:
    """Create a user (the password comes from FACETRAIL_NEW_PASSWORD or a prompt). Roles that see photographs
    (investigator, examiner, supervisor) wait until a second person runs 'facetrail user confirm USERNAME'."""
    password = password_from("FACETRAIL_NEW_PASSWORD", f"password for {username}", confirm=True)
    created = acting(data, lambda system, actor: system.admin.create_user(actor, username, password, role, unit, name))
    console.print(f"created {created.user.username} ({', '.join(sorted(created.user.roles)) or 'no roles yet'})")
    _say_pending(created)


def _say_pending(change) -> None:
    """Tell who must confirm roles that wait for a second person."""
    if change.pending:
        console.print(f"{change.user.username}: the roles {', '.join(change.requested)} wait for a second person (an "
                      "admin, or a supervisor of the user's unit, whose account is older than this request and was not "
                      f"created by you) to run 'facetrail user confirm {change.user.username}' within 24 hours")


@user_app.command("confirm")
def user_confirm(username: str, data: DataOption = None) -> None:
    """Confirm, as the second person, the roles an admin asked for a user (admins, or a supervisor of the user's
    unit, whose account is older than the request and was not created by the admin who asked)."""
    change = acting(data, lambda system, actor: system.admin.confirm_roles(actor, username))
    console.print(f"{change.user.username}: {', '.join(sorted(change.user.roles))}")


@user_app.command("requests")
def user_requests(data: DataOption = None, as_json: JsonOption = False) -> None:
    """The requests for roles waiting for a second person (every one for an admin, their unit's for a supervisor)."""
    requests = acting(data, lambda system, actor: system.admin.role_requests(actor))
    _rows(requests, as_json, ("username", "unit", "roles asked for", "holds now", "asked by", whole("asked at")),
          lambda r: (r["username"], r["unit"], ", ".join(r["roles"]), ", ".join(r["from"]), r["requested_by"] or "",
                     readable_time(r["requested_at"])))


def _rows(rows: list[dict], as_json: bool, columns: tuple[str | Column, ...], cells) -> None:
    """``rows`` as JSON, or as a table of ``columns`` whose cells ``cells`` makes of each row."""
    if as_json:
        emit_json(rows)
        return
    table = Table(*columns)
    for row in rows:
        table.add_row(*cells(row))
    print_table(table)


@user_app.command("list")
def user_list(data: DataOption = None, as_json: JsonOption = False) -> None:
    """List users, their roles, units and state."""
    users = acting(data, lambda system, actor: system.admin.list_users(actor))
    _rows(users, as_json, ("username", "roles", "unit", "active", whole("locked until"), "roles waiting", "created by"),
          lambda u: (u["username"], ", ".join(u["roles"]), u["unit"], str(u["active"]), readable_time(u["locked_until"]),
                     ", ".join(u["pending_roles"] or []), u["created_by"] or "set-up"))


@user_app.command("set-roles")
def user_set_roles(username: str, role: Annotated[list[str], typer.Option("--role")], data: DataOption = None) -> None:
    """Replace a user's roles (not your own). A change that gives a role that sees photographs (or makes such a user
    an admin), where the policy allows it, waits until a second person confirms it ('facetrail user confirm')."""
    change = acting(data, lambda system, actor: system.admin.set_roles(actor, username, role))
    if change.pending:
        _say_pending(change)
    else:
        console.print(f"{change.user.username}: {', '.join(sorted(change.user.roles))}")


@user_app.command("disable")
def user_disable(username: str, data: DataOption = None) -> None:
    """Disable an account and revoke its tokens."""
    acting(data, lambda system, actor: system.admin.set_active(actor, username, False))
    console.print(f"{username} disabled")


@user_app.command("enable")
def user_enable(username: str, data: DataOption = None) -> None:
    """Enable a disabled account."""
    acting(data, lambda system, actor: system.admin.set_active(actor, username, True))
    console.print(f"{username} enabled")


@user_app.command("unlock")
def user_unlock(username: str, data: DataOption = None) -> None:
    """Unlock an account locked after repeated failed logins."""
    acting(data, lambda system, actor: system.admin.unlock(actor, username))
    console.print(f"{username} unlocked")


@policy_app.command("show")
def policy_show(data: DataOption = None) -> None:
    """Print the policy in force and its version."""

    version, text = acting(data, lambda system, actor: system.admin.policy_in_force(actor))
    console.print(f"policy version {version}")
    print(text)


@policy_app.command("validate")
def policy_validate(file: Path) -> None:
    """Check a policy file without loading it; every problem is listed with its line."""
    from facetrail.accountability.policy import parse_policy

    run(lambda: parse_policy(_read(file)))
    console.print(f"{file}: valid")


@policy_app.command("load")
def policy_load(file: Path, data: DataOption = None) -> None:
    """Load a policy file as the new version (an invalid file is refused and the old policy stays in force)."""
    version, held_apart = acting(data, lambda system, actor: (system.admin.load_policy(actor, _read(file)),
                                                               system.admin.roles_held_apart(actor)))
    console.print(f"policy version {version} in force")
    for user in held_apart:
        console.print(f"warning: {user['username']} holds {', '.join(user['roles'])}: {'; '.join(user['problems'])}. "
                      "What those roles allow is refused until an admin changes the account's roles "
                      f"('facetrail user set-roles {user['username']} --role ...')")


@policy_app.command("history")
def policy_history(data: DataOption = None, as_json: JsonOption = False) -> None:
    """Every policy version loaded, when and by whom."""
    history = acting(data, lambda system, actor: system.admin.policy_history(actor))
    rows = [{k: v for k, v in h.items() if k != "text"} for h in history]
    if as_json:
        emit_json(rows)
    else:
        for row in rows:
            out.print(row, highlight=False)


def _read(file: Path) -> str:
    from facetrail.errors import FacetrailError

    try:
        return file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FacetrailError(f"{file}: cannot read: {exc}") from exc


@keys_app.command("rotate")
def keys_rotate(data: DataOption = None, as_json: JsonOption = False) -> None:
    """Create a new data key, re-encrypt every template, photograph, probe and index with it, retire the old key."""
    report = acting(data, lambda system, actor: system.admin.rotate_keys(actor))
    if as_json:
        emit_json(dataclasses.asdict(report))
    else:
        console.print("re-encrypted: " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in dataclasses.asdict(report).items()))


def purge(data: DataOption = None, as_json: JsonOption = False) -> None:
    """Delete probe images past the retention period (their hashes and the audit entries are kept)."""
    result = acting(data, lambda system, actor: system.retention.purge_expired(actor))
    if as_json:
        emit_json(result)
    else:
        console.print(f"purged {result['probe_images']} probe image(s) and {result['search_records']} search record(s)")


def backup(
    folder: Annotated[Path, typer.Argument(help="A new (or empty) folder for the backup.")],
    data: DataOption = None,
) -> None:
    """Back up the data directory (the store, photographs, probes and config) without its keys (admin; audited); its
    manifest is signed with the audit signing key. Back up the data key file and the audit signing key separately
    (docs/security.md)."""
    manifest = acting(data, lambda system, actor: system.admin.back_up(actor, folder))
    console.print(f"backed up {sum(manifest['rows'].values())} rows and {len(manifest['files'])} files to {folder}; "
                  "keys are not included: back up DATA/keys (or FACETRAIL_KEY_FILE, FACETRAIL_AUDIT_KEY_FILE) separately")


def restore(
    folder: Annotated[Path, typer.Argument(help="A folder written by 'facetrail backup'.")],
    data: DataOption = None,
    accept_lost_entries: Annotated[bool, typer.Option(
        "--accept-lost-entries",
        help="Restore even though the audit witnesses hold heads signed after the backup (those entries are lost; "
             "the loss is recorded and 'audit verify' reports it from then on).")] = False,
) -> None:
    """Restore a backup into a fresh data directory that holds only its keys (put the backed-up keys in DATA/keys
    first, or set FACETRAIL_KEY_FILE and FACETRAIL_AUDIT_KEY_FILE). A backup whose manifest the audit signing key did
    not sign, with a file missing, changed or not listed, or whose audit trail does not verify, also against the
    heads its witnesses hold, is refused, naming the problem, and nothing is left restored."""
    from facetrail.accountability.backup import restore as restore_backup

    datadir = DataDir.locate(data)
    rows = run(lambda: restore_backup(folder, datadir, accept_lost_entries))
    console.print(f"restored {sum(rows.values())} rows into {datadir.root}; the backup's signature and the restored "
                  "audit trail verified")


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Server processes (more than 1 needs PostgreSQL; see docs/scaling.md).")] = 1,
    data: DataOption = None,
) -> None:
    """Run the HTTP API and the web application (docs/api.md) until interrupted."""
    from facetrail.server import serve as run_api

    run(lambda: run_api(host, port, data, workers))


def register(app: typer.Typer) -> None:
    app.command()(init)
    app.command()(serve)
    app.command()(login)
    app.command()(logout)
    app.command()(purge)
    app.command()(backup)
    app.command()(restore)
    app.add_typer(user_app, name="user")
    app.add_typer(policy_app, name="policy")
    app.add_typer(keys_app, name="keys")
