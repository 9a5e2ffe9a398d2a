"""Accounts and logins: self-granted roles, a second admin, per-address lockouts, the failed-login actor, passwords,
forwarded addresses."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from facetrail.accountability.requests import CaseRequest
from facetrail.errors import AccountabilityError, ConfigError, RefusedError

from facetrail.server import server_config
from facetrail.http.settings import ApiSettings
from tests.security.helpers import decide, entries, run_search
from tests.fixtures.images import jpeg
from tests.fixtures.world import PASSWORD, SEARCH_FIELDS, V1

WRONG = "not the password at all"


def test_no_one_changes_their_own_roles_and_admins_do_not_see_photographs(people):
    client, admin = people.client, people.as_user("admin")
    for roles in (["admin", "examiner"], ["admin", "supervisor"], ["examiner"]):
        answer = client.put(f"{V1}/users/admin/roles", headers=admin, json={"roles": roles})
        assert answer.status_code == 403, answer.text
    assert people.system.users.user("admin").roles == {"admin"}
    assert [e["details"]["action"] for e in entries(people, "access_denied")] == ["manage_users"] * 3
    created = client.post(f"{V1}/users", headers=admin, json={"username": "root2", "password": PASSWORD,
                                                              "roles": ["admin", "examiner"]})
    assert created.status_code == 403  # the default policy forbids it


def test_where_the_policy_allows_an_admin_photographs_a_second_admin_must_agree(people):
    """Issue 17: the two-admin rule was met by an admin the first admin had just created. The second admin must
    have had an account before the request, and not one the requesting admin created."""
    system, client = people.system, people.client
    admin = system.auth.authenticate(people.tokens["admin"])
    system.admin.load_policy(admin, system.admin.policy_in_force(admin)[1].replace('    ["examiner", "admin"],\n', ""))
    system.admin.create_user(admin, "root2", PASSWORD, ["admin"])
    root2 = {"Authorization": f"Bearer {system.auth.login('root2', PASSWORD)[1]}"}

    first = client.put(f"{V1}/users/root2/roles", headers=people.as_user("admin"), json={"roles": ["admin", "examiner"]})
    assert first.status_code == 202 and first.json()["pending_second_admin"] is True
    assert system.users.user("root2").roles == {"admin"}
    again = client.put(f"{V1}/users/root2/roles", headers=people.as_user("admin"), json={"roles": ["admin", "examiner"]})
    assert again.status_code == 202  # the same admin asking twice is still one admin
    assert client.put(f"{V1}/users/root2/roles", headers=root2, json={"roles": ["admin", "examiner"]}).status_code == 403

    system.admin.create_user(admin, "root3", PASSWORD, ["admin"])  # made after the request, by the admin who asked
    root3 = {"Authorization": f"Bearer {system.auth.login('root3', PASSWORD)[1]}"}
    refused = client.put(f"{V1}/users/root2/roles", headers=root3, json={"roles": ["admin", "examiner"]})
    assert refused.status_code == 403, refused.text
    assert "created by 'admin', who asked for this change" in refused.json()["error"]["message"]
    # 'root' is older than the request, but the requesting admin made it too
    by_root = client.post(f"{V1}/users/root2/roles/confirm", headers=people.as_user("root"))
    assert by_root.status_code == 403 and "created by 'admin'" in by_root.json()["error"]["message"]
    assert system.users.user("root2").roles == {"admin"}
    assert [e["details"]["action"] for e in entries(people, "access_denied")][-2:] == ["confirm_roles"] * 2

    # asked for by 'root', confirmed by 'admin' (older than the request, and not made by 'root'): two people
    assert client.put(f"{V1}/users/root3/roles", headers=people.as_user("root"),
                      json={"roles": ["admin", "examiner"]}).status_code == 202
    done = client.post(f"{V1}/users/root3/roles/confirm", headers=people.as_user("admin"))
    assert done.status_code == 200 and done.json()["roles"] == ["admin", "examiner"]
    changed = entries(people, "roles_changed")[-1]["details"]
    assert (changed["requested_by"], changed["confirmed_by"]) == ("root", "admin")


def test_an_admin_cannot_make_a_stand_in_account_that_sees_photographs(world, faces):
    """Issue 17: an admin created 'puppet' (investigator, RHD), logged in as it and searched. Roles that see
    photographs now wait for a second person; the unit's supervisor may be that person."""
    client, system = world.client, world.system
    search_id = run_search(world, faces)
    created = client.post(f"{V1}/users", headers=world.as_user("admin"), json={
        "username": "puppet", "password": PASSWORD, "roles": ["investigator"], "unit": "RHD"})
    assert created.status_code == 202, created.text
    assert created.json()["roles"] == [] and created.json()["requested_roles"] == ["investigator"]
    puppet = {"Authorization": f"Bearer {system.auth.login('puppet', PASSWORD)[1]}"}
    probe = ("still.jpg", jpeg(faces["obama3.jpg"], 600), "image/jpeg")
    assert client.post(f"{V1}/searches", headers=puppet, files={"probe": probe}, data=SEARCH_FIELDS).status_code == 403
    assert client.get(f"{V1}/searches/{search_id}", headers=puppet).status_code == 403
    # nor can an existing account be given such a role by one admin
    moved = client.put(f"{V1}/users/alma/roles", headers=world.as_user("admin"), json={"roles": ["investigator"]})
    assert moved.status_code == 202 and system.users.user("alma").roles == {"auditor"}

    assert client.post(f"{V1}/users/puppet/roles/confirm", headers=world.as_user("admin")).status_code == 403
    assert client.post(f"{V1}/users/puppet/roles/confirm", headers=world.as_user("ivan")).status_code == 403
    requests = client.get(f"{V1}/users/role-requests", headers=world.as_user("sam")).json()
    assert [(r["username"], r["roles"], r["requested_by"]) for r in requests] == [("puppet", ["investigator"], "admin")]
    confirmed = client.post(f"{V1}/users/puppet/roles/confirm", headers=world.as_user("sam"))
    assert confirmed.status_code == 200 and confirmed.json()["roles"] == ["investigator"]
    assert client.post(f"{V1}/searches", headers=puppet, files={"probe": probe}, data=SEARCH_FIELDS).status_code == 201
    assert entries(world, "roles_changed")[-1]["details"]["confirmed_by"] == "sam"
    listed = {u["username"]: u for u in client.get(f"{V1}/users", headers=world.as_user("admin")).json()}
    assert listed["puppet"]["created_by"] == "admin" and listed["alma"]["pending_roles"] == ["investigator"]


def test_a_lockout_holds_only_for_the_address_that_guessed_and_says_nothing_of_existence(people):
    app = people.client.app

    def attempt(address: str, username: str, password: str):
        with TestClient(app, base_url="https://testserver", client=(address, 4000)) as client:
            return client.post(f"{V1}/auth/login", json={"username": username, "password": password})

    for _ in range(5):
        assert attempt("10.0.0.66", "ivan", WRONG).status_code == 401
        assert attempt("10.0.0.66", "nobody", WRONG).status_code == 401
    locked = attempt("10.0.0.66", "ivan", PASSWORD)
    unknown = attempt("10.0.0.66", "nobody", PASSWORD)
    assert locked.status_code == unknown.status_code == 401
    assert locked.json()["error"]["message"] == unknown.json()["error"]["message"]
    assert attempt("10.0.0.7", "ivan", PASSWORD).status_code == 200  # the real user, elsewhere, is not locked out


def test_a_failed_login_is_recorded_as_anonymous_with_the_name_as_data(people):
    for name in ("system", "admin\nlogin ok", "x" * 100):
        people.client.post(f"{V1}/auth/login", json={"username": name, "password": WRONG})
    failed = entries(people, "login_failed")[-3:]
    assert {e["actor"] for e in failed} == {"anonymous"}
    assert [e["details"]["username_tried"] for e in failed] == ["system", "admin\nlogin ok", "x" * 100]
    assert all(e["target"] == "" for e in failed)


def test_common_and_guessable_passwords_are_refused(people):
    admin = people.as_user("admin")
    for password in ("password1234", "qwertyuiop123", "Password1234!", "mallory-secret-mallory"):
        answer = people.client.post(f"{V1}/users", headers=admin, json={
            "username": "mallory", "password": password, "roles": ["investigator"], "unit": "RHD"})
        assert answer.status_code == 400, (password, answer.text)
    assert "mallory" not in {u["username"] for u in people.system.users.list_users()}


def test_forwarded_addresses_are_believed_only_from_configured_proxies(people):
    def login_burst(settings: ApiSettings) -> list[int]:
        config = server_config(people.client.app, settings)
        config.load()
        with TestClient(config.loaded_app, base_url="https://testserver", client=("127.0.0.1", 4000)) as client:
            return [client.post(f"{V1}/auth/login", headers={"X-Forwarded-For": f"198.51.100.{n}"},
                                json={"username": f"guess{n}", "password": WRONG}).status_code for n in range(21)]

    assert login_burst(ApiSettings())[-1] == 429  # the header is ignored: all 21 come from 127.0.0.1
    people.client.app.state.limiter._hits.clear()
    assert set(login_burst(ApiSettings(trusted_proxies=("127.0.0.1",)))) == {401}  # a trusted proxy's clients


def test_the_login_limits_are_settings(people):
    settings = ApiSettings.from_env({"FACETRAIL_API_LOGIN_ATTEMPTS_PER_ADDRESS": "3", "FACETRAIL_API_LOGIN_ATTEMPTS_PER_ACCOUNT": "2"})
    assert (settings.login_attempts_per_address, settings.login_attempts_per_account) == (3, 2)
    app = people.client.app
    app.state.settings, kept = settings, app.state.settings
    try:
        with TestClient(app, base_url="https://testserver", client=("192.0.2.7", 4000)) as client:
            per_address = [client.post(f"{V1}/auth/login", json={"username": f"guess{n}", "password": WRONG}).status_code
                           for n in range(4)]
            assert per_address == [401, 401, 401, 429]
        answers = []
        for n in range(3):
            with TestClient(app, base_url="https://testserver", client=(f"192.0.2.{20 + n}", 4000)) as client:
                answers.append(client.post(f"{V1}/auth/login", json={"username": "same-guess", "password": WRONG}).status_code)
        assert answers == [401, 401, 429]
    finally:
        app.state.settings = kept
    with pytest.raises(ConfigError, match="LOGIN_ATTEMPTS_PER_ADDRESS"):
        ApiSettings.from_env({"FACETRAIL_API_LOGIN_ATTEMPTS_PER_ADDRESS": "0"})


def test_logins_are_limited_per_account_across_addresses(people):
    app = people.client.app
    answers = []
    for n in range(11):
        with TestClient(app, base_url="https://testserver", client=(f"203.0.113.{n}", 4000)) as client:
            answers.append(client.post(f"{V1}/auth/login", json={"username": "sam", "password": WRONG}).status_code)
    assert answers[:10] == [401] * 10 and answers[10] == 429


def test_a_common_password_dressed_up_with_a_year_or_punctuation_is_refused_everywhere(people, tmp_path):
    """zxcvbn alone scores 'Summer2024!!' as safe; a common word with a season, a year or symbols around it is not."""
    admin = people.as_user("admin")
    weak = ("Summer2024!!", "WINTER-2025??", "Dragon1984!!", "!!Monkey123456!", "P@ssw0rd-2024-09!", "Liverpool2024!")
    for password in weak:
        answer = people.client.post(f"{V1}/users", headers=admin, json={
            "username": "mallory", "password": password, "roles": ["auditor"], "unit": "IG"})
        assert answer.status_code == 400, (password, answer.text)
        assert "common password" in answer.json()["error"]["message"], answer.text
    system = people.system
    actor = system.auth.authenticate(people.tokens["admin"])
    with pytest.raises(AccountabilityError, match="common password"):
        system.admin.create_user(actor, "mallory", "Summer2024!!", ["auditor"], "IG")
    with pytest.raises(AccountabilityError, match="common password"):
        system.users.set_password("alma", "Autumn2026!!")
    assert "mallory" not in {u["username"] for u in system.users.list_users()}
    assert people.client.post(f"{V1}/users", headers=admin, json={  # a passphrase with a year is still fine
        "username": "mallory", "password": "summer orchard tractor 2024", "roles": ["auditor"], "unit": "IG"},
    ).status_code == 201


def test_accounts_holding_a_pair_a_new_policy_forbids_are_reported_and_held_back(world, faces):
    """Issue 17: loading a policy that forbids a pair of roles left the accounts already holding both using them. They
    are named at the load, and what only those roles allow is refused until an admin resolves their roles."""
    system, client = world.system, world.client
    admin = system.auth.authenticate(world.tokens["admin"])
    policy = system.admin.policy_in_force(admin)[1]
    system.admin.load_policy(admin, policy.replace('    ["examiner", "supervisor"],\n', ""))
    system.users.set_roles("sam", ["examiner", "supervisor"])  # given while that policy was in force
    search_id = run_search(world, faces)
    loaded = client.put(f"{V1}/policy", headers=world.as_user("admin"), content=policy.encode())
    assert loaded.status_code == 200, loaded.text

    refused = decide(world, "sam", search_id, "possible_lead")
    assert refused.status_code == 403, refused.text
    assert "an admin resolves the account's roles" in refused.json()["error"]["message"]
    assert client.get(f"{V1}/audit/verify", headers=world.as_user("sam")).status_code == 403
    assert client.get(f"{V1}/galleries", headers=world.as_user("sam")).status_code == 200  # roles outside the pair
    assert entries(world, "access_denied")[-1]["details"]["action"] == "verify_audit"
    held = loaded.json()["accounts_holding_forbidden_roles"]
    assert [(user["username"], user["roles"]) for user in held] == [("sam", ["examiner", "supervisor"])]
    assert entries(world, "policy_loaded")[-1]["details"]["accounts_holding_forbidden_roles"] == ["sam"]

    system.admin.set_roles(admin, "sam", ["supervisor"])  # resolved: dropping a role needs no second person
    assert client.get(f"{V1}/audit/verify", headers=world.as_user("sam")).status_code == 200
    assert system.admin.roles_held_apart(admin) == []


def test_services_that_audit_their_own_refusals_also_hold_back_forbidden_pairs(world, faces):
    """The same hole behind the services' own role checks: a search or comparison (as the CLI makes them, with no
    HTTP check before) by an account holding a pair the policy in force forbids is refused, and audited as such."""
    system = world.system
    admin = system.auth.authenticate(world.tokens["admin"])
    policy = system.admin.policy_in_force(admin)[1]
    system.admin.load_policy(admin, policy.replace('    ["investigator", "examiner"],\n', ""))
    system.users.set_roles("ivan", ["examiner", "investigator"])  # given while that policy was in force
    system.admin.load_policy(admin, policy)
    ivan = system.auth.authenticate(world.tokens["ivan"])
    photo = jpeg(faces["obama3.jpg"], 600)
    request = CaseRequest(gallery="county", case_number="24-000123", purpose="criminal_investigation",
                          offence="robbery", note="a still")
    with pytest.raises(RefusedError, match="until an admin resolves"):
        system.searches.search(ivan, photo, request)
    with pytest.raises(RefusedError, match="until an admin resolves"):
        system.searches.compare(ivan, photo, photo, request)
    refused = [entries(world, "search_refused")[-1], entries(world, "compare_refused")[-1]]
    assert all("until an admin resolves" in e["details"]["reason"] for e in refused)
