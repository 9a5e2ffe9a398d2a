"""Text the policy's rules match: look-alike letters, invisible characters, full-width forms and accents do not slip
a prohibited use past the rules, and what a request says is kept as the rules read it (issue 17)."""

from __future__ import annotations

from sqlalchemy import select

from facetrail.accountability.schema import SearchRecord
from tests.fixtures.images import jpeg
from tests.fixtures.world import SEARCH_FIELDS, V1
from tests.security.helpers import entries

DISGUISED_NOTES = {
    "Cyrillic o": "who was at the pr\u043etest",
    "zero-width space": "who was at the pro\u200btest",
    "full-width letters": "who was at the \uff50\uff52\uff4f\uff54\uff45\uff53\uff54",
    "combining accent": "who was at the protes\u0301t",
    "soft hyphen and capitals": "who was at the DEMON\u00adSTRATION",
    "digits for letters": "who was at the ra11y",
}


def search(world, faces, **fields):
    probe = ("still.jpg", jpeg(faces["obama3.jpg"], 600), "image/jpeg")
    return world.client.post(f"{V1}/searches", headers=world.as_user("ivan"), files={"probe": probe},
                             data={**SEARCH_FIELDS, **fields})


def test_prohibited_keywords_disguised_with_unicode_are_refused_and_audited(world, faces):
    for disguise, note in DISGUISED_NOTES.items():
        answer = search(world, faces, note=note)
        assert answer.status_code == 422, (disguise, answer.text)
        assert "prohibited use" in answer.json()["error"]["reason"], disguise
        refused = entries(world, "search_refused")[-1]
        assert "First Amendment" in refused["details"]["reason"], disguise
    assert not entries(world, "search")


def test_prohibited_purposes_and_offences_disguised_with_unicode_are_refused_as_prohibited(world, faces):
    for fields in ({"purpose": "pr\u043etest_monitoring"}, {"purpose": "\uff54\uff52\uff41\uff43\uff4b\uff49\uff4e\uff47"},
                   {"offence": "immigration\u200b_status"}, {"purpose": "Immigration_Enforcement "}):
        answer = search(world, faces, **fields)
        assert answer.status_code == 422 and "prohibited use" in answer.json()["error"]["reason"], (fields, answer.text)


def test_a_case_number_that_imitates_another_with_look_alike_characters_is_refused(world, faces):
    # a policy allowing letters in case numbers; Cyrillic А and Е would make a "new" case beside LA-2024-CASE
    admin = world.system.auth.authenticate(world.tokens["admin"])
    text = world.system.admin.policy_in_force(admin)[1]
    world.system.admin.load_policy(admin, text.replace("'^[0-9]{2}-[0-9]{6}$'", "'^\\w{2}-[0-9]{4}-\\w+$'")
                                   .replace('"24-000123"', '"LA-2024-CASE"'))
    answer = search(world, faces, case_number="L\u0410-2024-CAS\u0415")
    assert answer.status_code == 422, answer.text
    assert "looks like" in answer.json()["error"]["reason"]
    assert "looks like" in entries(world, "search_refused")[-1]["details"]["reason"]


def test_request_values_are_stored_as_the_policy_read_them(world, faces):
    answer = search(world, faces, purpose=" criminal_investigation ", offence="robbery\u200b ",
                    case_number="\uff12\uff14-000123 ", authorization_ref=" W-1 ", note="  bank robbery suspect\n")
    assert answer.status_code == 201, answer.text
    assert answer.json()["purpose"] == "criminal_investigation" and answer.json()["case_number"] == "24-000123"
    with world.system.galleries.sessions() as session:
        record = session.scalars(select(SearchRecord).where(SearchRecord.status == "completed")).one()
    assert (record.purpose, record.offence, record.case_number, record.authorization_ref, record.note) == (
        "criminal_investigation", "robbery", "24-000123", "W-1", "bank robbery suspect")
    [audited] = entries(world, "search")
    assert (audited["details"]["purpose"], audited["details"]["case_number"]) == ("criminal_investigation", "24-000123")


def test_a_username_or_unit_that_imitates_another_is_refused(world):
    admin = world.system.auth.authenticate(world.tokens["admin"])
    password = "correct horse battery staple"
    # a1ma and sarn pass for alma and sam in a list of searches; R\u041dD (Cyrillic Н) for the unit RHD
    for username, unit, looks_like in (("a1ma", "Vice", "'alma'"), ("sarn", "Vice", "'sam'"),
                                       ("olga", "R\u041dD", "'RHD'"), ("otto", "\uff52\uff48\uff44", "'RHD'")):
        answer = world.client.post(f"{V1}/users", headers=world.as_user("admin"), json={
            "username": username, "password": password, "roles": ["investigator"], "unit": unit})
        assert answer.status_code in (400, 409), (username, answer.text)
        assert looks_like in answer.json()["error"]["message"], (username, answer.text)
    assert not {"a1ma", "sarn", "olga", "otto"} & {u["username"] for u in world.system.admin.list_users(admin)}
    refused = world.client.post(f"{V1}/galleries/county/grants", headers=world.as_user("admin"), json={"unit": "R\u200bH\u13a0"})
    assert refused.status_code in (400, 409) and "'RHD'" in refused.json()["error"]["message"], refused.text
    # a unit typed with invisible characters or full-width letters is kept as it reads
    created = world.system.admin.create_user(admin, "olga", password, ["investigator"], "\uff36ice\u200b ")
    assert created.user.unit == "Vice"


def test_a_gallery_name_that_imitates_another_is_refused(world):
    for name in ("county\n", "c0unty", "COUNTY"):  # a trailing newline, a digit for a letter, another case
        answer = world.client.post(f"{V1}/galleries", headers=world.as_user("admin"),
                                   json={"name": name, "allowed_sources": ["booking"]})
        assert answer.status_code == 400, (name, answer.text)
    answer = world.client.post(f"{V1}/galleries", headers=world.as_user("admin"),
                                json={"name": "other", "allowed_sources": ["booking\n"]})
    assert answer.status_code == 400, answer.text
    assert [g.name for g in world.system.galleries.list()] == ["county"]
