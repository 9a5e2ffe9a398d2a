"""An admin's own account: no admin deactivates it or changes its roles (the admin role included), in the service
and so through the CLI; each refusal says why and is audited like other refusals. On SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from facetrail.accountability.service import Facetrail
from facetrail.cli import app
from facetrail.errors import PermissionDeniedError
from tests.fixtures.datadir import ADMIN_PASSWORD

OWN_ACCOUNT = "no one may disable their own account; ask another admin"
OWN_ROLES = "no one may change their own roles; ask another admin"


@pytest.fixture
def system(datadir):
    system = Facetrail.initialise(datadir, "admin", ADMIN_PASSWORD)
    yield system
    system.close()


def refusals(system: Facetrail) -> list[tuple[str, str, str]]:
    return [(e["actor"], e["target"], e["details"]["reason"]) for e in system.audit.entries(action="access_denied")]


def test_an_admin_can_neither_deactivate_themselves_nor_change_their_own_roles(system):
    admin = system.auth.authenticate(system.auth.login("admin", ADMIN_PASSWORD)[1])
    with pytest.raises(PermissionDeniedError, match=OWN_ACCOUNT):
        system.admin.set_active(admin, "admin", False)
    with pytest.raises(PermissionDeniedError, match=OWN_ROLES):
        system.admin.set_roles(admin, "admin", ["auditor"])  # giving up the admin role
    assert refusals(system) == [("admin", "admin", OWN_ACCOUNT), ("admin", "admin", OWN_ROLES)]
    account = next(user for user in system.admin.list_users(admin) if user["username"] == "admin")
    assert account["active"] and account["roles"] == ["admin"]
    assert system.auth.authenticate(system.auth.login("admin", ADMIN_PASSWORD)[1]).username == "admin"


def test_the_cli_refuses_it_too(system, admin_token):
    result = CliRunner().invoke(app, ["user", "disable", "admin"])
    assert result.exit_code == 2 and OWN_ACCOUNT in result.output, result.output
    assert [reason for *_, reason in refusals(system)] == [OWN_ACCOUNT]
    assert next(u for u in system.users.list_users() if u["username"] == "admin")["active"]
