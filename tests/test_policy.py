"""The search policy: parsing with line-level problems, refusal reasons, role combinations, versions in the store."""

from __future__ import annotations

import dataclasses
import re
import textwrap
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from facetrail.accountability.policy import (
    Policy,
    PolicyStore,
    RequestHistory,
    SearchRequest,
    default_policy_text,
    parse_policy,
    refusal_reasons,
    role_problems,
)
from facetrail.accountability.schema import PolicyRecord, UserRecord
from facetrail.errors import PolicyError
from facetrail.gallery.gallery import Galleries

DOCS = Path(__file__).resolve().parents[1] / "docs" / "policy.md"
DEFAULT = default_policy_text()
PERMITTED = "criminal_investigation, imminent_threat_to_life, identify_person_unable"
FIRST_AMENDMENT = ("prohibited use: face recognition may not be used to identify or monitor people for taking part in "
                   "activity protected by the First Amendment (speech, assembly, protest, religion)")
IMMIGRATION = "prohibited use: immigration enforcement alone is not a permitted use of face recognition"
MINIMAL = '[purposes.criminal_investigation]\ndescription = "lead"\n[offences.categories]\nrobbery = "Robbery"\n'
NO_HISTORY = RequestHistory(searches_by_user_today=0, users_on_case=frozenset(), searches_on_case=0)


def line_of(text: str, needle: str) -> int:
    """The 1-based number of the one line of ``text`` containing ``needle``."""
    found = [n for n, line in enumerate(text.split("\n"), start=1) if needle in line]
    assert len(found) == 1, f"{needle!r} is on lines {found}"
    return found[0]


def problems_of(text: str) -> list[tuple[int | None, str]]:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text)
    return caught.value.problems


def replaced(old: str, new: str, text: str = DEFAULT) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


# --- the default policy ----------------------------------------------------------------------------


def test_default_policy_parses_with_the_lapd_purposes_and_prohibitions():
    policy = parse_policy(DEFAULT)
    assert policy.purpose_ids == ("criminal_investigation", "imminent_threat_to_life", "identify_person_unable")
    assert "unable to identify themselves" in policy.purpose("identify_person_unable").description
    assert {p.id for p in policy.prohibited} >= {"first_amendment", "immigration_enforcement"}
    first_amendment = next(p for p in policy.prohibited if p.id == "first_amendment")
    assert "protest_monitoring" in first_amendment.purposes
    assert {"protest*", "demonstration*", "rally"} <= set(first_amendment.keywords)
    immigration = next(p for p in policy.prohibited if p.id == "immigration_enforcement")
    assert immigration.offences == ("immigration_status",)
    assert policy.max_candidates == 20 and policy.max_distance is None and policy.poor_probe == "supervisor_override"
    assert policy.two_person_verification is True
    assert policy.retention.audit_entries_days >= 183
    assert ("investigator", "examiner") in policy.roles.forbidden_combinations
    assert policy.requests.case_number_pattern.pattern == "^[0-9]{2}-[0-9]{6}$"
    assert policy.api.requests_per_minute_per_user == 60


def test_a_policy_is_frozen_and_parsing_is_deterministic():
    policy = parse_policy(DEFAULT)
    assert policy == parse_policy(DEFAULT) and hash(policy) == hash(parse_policy(DEFAULT))
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.results = None  # type: ignore[misc]


def test_absent_sections_take_their_documented_defaults():
    policy = parse_policy(MINIMAL)
    assert policy.purpose("criminal_investigation").offences is None  # absent: every category
    assert policy.requests.required_fields == ("case_number", "purpose", "offence", "note")
    assert policy.requests.max_users_per_case is None and policy.requests.max_searches_per_case is None
    assert policy.requests.daily_search_limit_per_user == 20 and policy.requests.authorization_required is False
    assert (policy.max_candidates, policy.max_distance, policy.poor_probe) == (20, None, "refuse")
    assert policy.two_person_verification is True
    assert dataclasses.astuple(policy.retention) == (90, 1825, 2555)
    assert policy.roles.forbidden_combinations == () and policy.prohibited == ()


def test_every_key_of_the_default_policy_is_documented():
    docs = DOCS.read_text(encoding="utf-8")
    keys = set(re.findall(r"^([a-z_]+) =", DEFAULT, flags=re.M)) - set(parse_policy(DEFAULT).offence_ids)
    assert keys >= {"description", "offences", "keywords", "case_number_pattern", "poor_probe"}
    assert [key for key in sorted(keys) if f"`{key}`" not in docs] == []


# --- problems, each with its line ---------------------------------------------------------------------


BAD = textwrap.dedent('''\
    colour = "blue"

    [purposes.criminal_investigation]
    description = """Generate a lead.
    max_candidates = 500 is text inside a string, not a key
    """
    offences = [
        "robbery",
        "jaywalking",
    ]
    autorization_required = true

    [purposes.Bad-Id]
    description = "x"

    [purposes.no_description]
    offences = ["robbery"]

    [offences.categories]
    robbery = "Robbery"
    immigration_status = "Immigration status"

    [prohibited.immigration]
    reason = "immigration enforcement alone is not a permitted use of face recognition"
    offences = ["immigration_status"]
    purposes = ["criminal_investigation"]

    [prohibited.empty]
    reason = "nothing"

    [requests]
    required_fields = ["case_number", "purpose", "colour"]
    case_number_pattern = "^([0-9]{2}-[0-9]{6}$"
    max_users_per_case = 0
    daily_search_limit_per_user = "20"

    [results]
    max_candidates = 101
    max_distance = -1

    [probe_quality]
    poor_probe = "ignore"

    [review]
    two_person_verification = "yes"

    [retention]
    probe_images_days = 400
    search_records_days = 300
    audit_entries_days = 182

    [roles]
    forbidden_combinations = [
        ["investigator", "examiner"],
        ["investigator", "janitor"],
        ["admin"],
    ]

    [api]
    requests_per_minute_per_user = 0
    ''')


def test_a_bad_policy_lists_every_problem_with_its_line():
    expected = [
        ('colour = "blue"', "unknown section or key 'colour'"),
        ('"jaywalking",', "unknown offence category 'jaywalking'"),
        ("autorization_required = true", "unknown key 'purposes.criminal_investigation.autorization_required'"),
        ("[purposes.Bad-Id]", "purpose id 'Bad-Id'"),
        ("[purposes.no_description]", "purposes.no_description needs description"),
        ('purposes = ["criminal_investigation"]', "purpose 'criminal_investigation' is both permitted and prohibited"),
        ("[prohibited.empty]", "prohibited.empty matches nothing"),
        ("required_fields =", "unknown field 'colour'"),
        ("case_number_pattern =", "requests.case_number_pattern is not a valid regular expression"),
        ("max_users_per_case = 0", "requests.max_users_per_case must be at least 1, not 0"),
        ('daily_search_limit_per_user = "20"', "requests.daily_search_limit_per_user must be an integer, not a string"),
        ("max_candidates = 101", "results.max_candidates must be between 1 and 100, not 101"),
        ("max_distance = -1", "results.max_distance must be a positive number"),
        ('poor_probe = "ignore"', "probe_quality.poor_probe must be one of 'refuse', 'supervisor_override'"),
        ('two_person_verification = "yes"', "review.two_person_verification must be true or false"),
        ("probe_images_days = 400", "must not exceed retention.search_records_days"),
        ("audit_entries_days = 182", "retention.audit_entries_days must be between 183 and 36500, not 182"),
        ('["investigator", "janitor"]', "unknown role 'janitor'"),
        ('["admin"]', "must name at least two different roles"),
        ("requests_per_minute_per_user = 0", "api.requests_per_minute_per_user must be at least 1, not 0"),
    ]
    problems = problems_of(BAD)
    for needle, message in expected:
        line = line_of(BAD, needle)
        assert any(at == line and message in text for at, text in problems), (line, message, problems)
    assert len(problems) == len(expected), problems
    assert [line for line, _ in problems] == sorted(line for line, _ in problems)


def test_the_error_message_names_each_problem_by_line():
    message = str(PolicyError(problems_of(BAD)))
    assert f"line {line_of(BAD, 'max_candidates = 101')}: results.max_candidates" in message


@pytest.mark.parametrize(("old", "new", "message"), [
    ("max_candidates = 20", "max_candidates = 0", "results.max_candidates must be between 1 and 100, not 0"),
    ("max_candidates = 20", "max_candidates = 20.5", "results.max_candidates must be an integer, not a number"),
    ("# max_distance = 0.6", "max_distance = nan", "results.max_distance must be a positive number, not nan"),
    ("audit_entries_days = 2555", "audit_entries_days = 30", "must be between 183 and 36500, not 30"),
    ("search_records_days = 1825", "search_records_days = 3000",
     "retention.search_records_days (3000) must not exceed retention.audit_entries_days (2555)"),
    ("search_records_days = 1825", "search_records_days = 100", "retention.search_records_days must be between 183"),
    ('poor_probe = "supervisor_override"', 'poor_probe = "Refuse"', "must be one of 'refuse', 'supervisor_override', not 'Refuse'"),
    ("authorization_required = false", "authorization_required = 1", "requests.authorization_required must be true"),
    ('required_fields = ["case_number", "purpose", "offence", "note"]', 'required_fields = ["purpose", "note"]',
     "requests.required_fields must include 'case_number'"),
    ('required_fields = ["case_number", "purpose", "offence", "note"]', "required_fields = 'note'",
     "requests.required_fields must be a list of strings"),
    ("case_number_pattern = '^[0-9]{2}-[0-9]{6}$'", "case_number_pattern = '[0-9]{99999999999}'",
     "requests.case_number_pattern is not a valid regular expression"),
    ("max_searches_per_case = 30", "max_searches_per_case = -3", "requests.max_searches_per_case must be at least 1"),
    ('case_number_example = "24-000123"', 'case_number_example = "24-123"',
     "requests.case_number_example '24-123' does not match requests.case_number_pattern"),
    ('offences = ["no_offence", "missing_person"]', "offences = []", "purposes.identify_person_unable.offences is empty"),
    ('offences = ["no_offence", "missing_person"]', 'offences = ["no_offence", "shoplifting"]',
     "unknown offence category 'shoplifting'"),
    ('offences = ["no_offence", "missing_person"]', 'offences = ["no_offence", "Missing Person"]',
     "offence id 'Missing Person': use lower-case letters"),
    ("authorization_required = true", "authorisation_required = true",
     "unknown key 'purposes.identify_person_unable.authorisation_required'"),
    ('description = "Identify a person unable', 'description = 3 #', "purposes.identify_person_unable.description must be"),
    ("[api]", "[apis]", "unknown section or key 'apis'"),
    ('missing_person = "Missing or at-risk person (no offence alleged)"', 'missing_person = ""',
     "offence category 'missing_person' needs a description"),
    ('offences = ["immigration_status"]', 'offences = ["immigration_status", "robbery"]',
     "prohibited.immigration_enforcement forbids offence 'robbery', which purposes.criminal_investigation allows"),
    ('purposes = ["immigration_enforcement"]', 'purposes = ["immigration_enforcement", "criminal_investigation"]',
     "purpose 'criminal_investigation' is both permitted and prohibited (by prohibited.immigration_enforcement)"),
    ('"picket*", "first amendment"]', '"pick*et", "first amendment"]', "'pick*et' must be a word or phrase"),
    ('reason = "immigration enforcement alone', 'cause = "immigration enforcement alone',
     "unknown key 'prohibited.immigration_enforcement.cause'"),
    ('["auditor", "supervisor"],', '["auditor", "superviser"],', "unknown role 'superviser'"),
    ('["auditor", "supervisor"],', '["auditor", "auditor"],', "must name at least two different roles, each once"),
    ('["auditor", "supervisor"],', '"lonely_role",', "each entry must be a list of roles"),
    ("requests_per_minute_per_user = 60", "requests_per_minute_per_user = true", "must be an integer, not a boolean"),
])
def test_each_kind_of_problem_is_reported_at_its_line(old, new, message):
    text = replaced(old, new)
    problems = problems_of(text)
    assert [line for line, found in problems if message in found] == [line_of(text, new)], problems


def test_a_toml_syntax_error_is_reported_at_its_line():
    text = replaced("max_candidates = 20", "max_candidates = = 20")
    assert problems_of(text) == [(line_of(text, "max_candidates = = 20"), "not valid TOML: Invalid value (column 18)")]
    unterminated = DEFAULT + '\nreason = """never closed\n'
    assert problems_of(unterminated)[0][1].startswith("not valid TOML")


def test_dotted_keys_and_inline_tables_fall_back_to_the_line_that_defines_them():
    dotted = "# top-level keys first\nresults.max_candidates = 0\n'api'.\"requests_per_minute_per_user\" = -1\n" + MINIMAL
    assert problems_of(dotted) == [(2, "results.max_candidates must be between 1 and 100, not 0"),
                                   (3, "api.requests_per_minute_per_user must be at least 1, not -1")]
    inline = '\n\napi = { requests_per_minute_per_user = 0 }\n' + MINIMAL
    assert problems_of(inline) == [(3, "api.requests_per_minute_per_user must be at least 1, not 0")]
    nested = MINIMAL + "[prohibited.x]\nreason = 'r'\nkeywords = [\n  'ok',\n  '*',\n]\n"
    assert problems_of(nested) == [(9, "prohibited.x.keywords: '*' must be a word or phrase (at most 100 characters), "
                                       "optionally ending in a single *")]


def test_an_empty_policy_permits_nothing():
    assert problems_of("") == [
        (None, 'the policy defines no offence category: add [offences.categories] id = "description"'),
        (None, "the policy permits no purpose: add at least one [purposes.<id>] table"),
    ]


@pytest.mark.parametrize("text", ["a = " + "1" * 5000, "a = " + "[" * 5000])
def test_values_tomllib_cannot_take_are_policy_errors(text):
    assert problems_of(text)[0][1].startswith("not valid TOML")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_random_text_raises_only_policy_errors(text):
    try:
        assert isinstance(parse_policy(text), Policy)
    except PolicyError as exc:
        assert exc.problems and all(isinstance(line, (int, type(None))) for line, _ in exc.problems)


TOML_VALUES = st.sampled_from([
    "0", "-1", "1", "183", "101", "1e400", "nan", "inf", "true", '""', '"x"', '"^("', "[]", "[1, 2]", '["a"]',
    '[["admin"]]', '[["investigator", "janitor"]]', "{}", "{ a = 1 }", "1979-05-27", "07:32:00", '"""\nx = 1\n"""',
]) | st.integers().map(str) | st.text(max_size=20).map(lambda s: '"' + s.replace("\\", "").replace('"', "") + '"')


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_the_default_policy_with_random_values_raises_only_policy_errors(data):
    lines = DEFAULT.split("\n")
    for _ in range(data.draw(st.integers(1, 4))):
        keyed = [n for n, line in enumerate(lines) if re.match(r"[a-z_]+ = ", line)]
        n = data.draw(st.sampled_from(keyed))
        lines[n] = lines[n].split(" = ")[0] + " = " + data.draw(TOML_VALUES)
    try:
        parse_policy("\n".join(lines))
    except PolicyError as exc:
        assert exc.problems


# --- refusal reasons --------------------------------------------------------------------------------


POLICY = parse_policy(DEFAULT)


def request(**changes) -> SearchRequest:
    fields = dict(kind="search", username="alice", unit="Robbery", case_number="23-000123",
                  purpose="criminal_investigation", offence="robbery", authorization_ref="",
                  note="Armed robbery of a pharmacy; suspect captured on the store's CCTV")
    return SearchRequest(**(fields | changes))


def reasons(policy: Policy = POLICY, history: RequestHistory = NO_HISTORY, **changes) -> list[str]:
    return refusal_reasons(policy, request(**changes), history)


def test_a_compliant_request_is_permitted():
    assert reasons() == []
    assert reasons(kind="compare") == []
    assert reasons(purpose="imminent_threat_to_life", offence="kidnapping") == []


def test_a_purpose_that_is_not_permitted_is_refused():
    assert reasons(purpose="immigration") == [f"purpose 'immigration' is not a permitted purpose (permitted: {PERMITTED})"]


def test_an_offence_not_allowed_for_the_purpose_is_refused():
    assert reasons(purpose="imminent_threat_to_life", offence="burglary") == [
        "offence 'burglary' is not allowed for purpose 'imminent_threat_to_life' (allowed: homicide, sexual_assault, "
        "aggravated_assault, kidnapping, human_trafficking, child_exploitation, terrorism, missing_person)"]


def test_an_unknown_offence_category_is_refused():
    [reason] = reasons(offence="shoplifting")
    assert reason.startswith("offence 'shoplifting' is not a recognised offence category (categories: homicide, robbery")


def test_a_prohibited_purpose_is_refused_with_the_prohibitions_reason():
    assert reasons(purpose="protest_monitoring") == [FIRST_AMENDMENT]
    assert reasons(purpose=" Immigration_Enforcement ") == [IMMIGRATION]


def test_a_prohibited_offence_is_refused_with_the_prohibitions_reason():
    assert reasons(offence="immigration_status") == [IMMIGRATION]


@pytest.mark.parametrize("note", [
    "Identify the organisers of Saturday's PROTESTS downtown",
    "man photographed at the demonstration",
    "Demonstrators blocking the freeway",
    "attended the rally on 4th street",
    "picketing outside city hall",
    "speech protected by the First\n Amendment",
])
def test_a_prohibited_keyword_in_the_note_is_refused(note):
    assert reasons(note=note) == [FIRST_AMENDMENT]


@pytest.mark.parametrize("note", [
    "suspect generally wears a red cap",  # 'rally' inside a word
    "suspect demonstrated how to open the safe",  # 'demonstrat...' is not 'demonstration'
    "amendment to the first report",
])
def test_keywords_match_whole_words_only(note):
    assert reasons(note=note) == []


@pytest.mark.parametrize(("field", "message"), [
    ("case_number", "a case number is required"),
    ("purpose", "a purpose is required"),
    ("offence", "an offence category is required"),
    ("note", "a note explaining why the search is needed is required"),
])
def test_a_missing_required_field_is_refused(field, message):
    assert reasons(**{field: "  "}) == [message]


def test_fields_become_required_only_when_the_policy_says_so():
    lenient = parse_policy(replaced('required_fields = ["case_number", "purpose", "offence", "note"]',
                                    'required_fields = ["case_number", "purpose", "authorization_ref"]'))
    assert reasons(lenient, note="", authorization_ref="W-1") == []
    assert reasons(lenient) == [
        "an authorization reference (a supervisor's approval or warrant number) is required"]
    assert reasons(lenient, authorization_ref="W-1", offence="") == [
        "purpose 'criminal_investigation' needs an offence category (one of: homicide, robbery, sexual_assault, "
        "aggravated_assault, kidnapping, human_trafficking, child_exploitation, burglary, grand_theft, fraud, arson, "
        "weapons, terrorism)"]


def test_a_case_number_in_the_wrong_format_is_refused():
    assert reasons(case_number="123") == ["case number '123' does not match the required format (like 24-000123)"]
    assert reasons(case_number="23-000123 ") == [
        "case number '23-000123 ' does not match the required format (like 24-000123)"]
    assert reasons(case_number="2" * 101) == ["case number is longer than 100 characters"]


@pytest.mark.parametrize(("pattern", "example"), [
    (r"^[0-9]{2}-[0-9]{6}$", "12-345678"), (r"(CR|PD)-\d{4}", "CR-1234"), (r"[A-Z]{2}/\d{2,5}", "AA/12"),
    (r"[^0-9]+", None), (r"(?i)x.y", None), (r"a*", None),
])
def test_the_case_number_format_is_shown_by_an_example_the_pattern_accepts(pattern, example):
    stated = parse_policy(DEFAULT).requests
    assert stated.case_number_example == "24-000123" and stated.case_number_pattern.fullmatch("24-000123")
    without_example = replaced('case_number_example = "24-000123"\n', "")
    own = parse_policy(replaced("case_number_pattern = '^[0-9]{2}-[0-9]{6}$'", f"case_number_pattern = '{pattern}'",
                                without_example))
    assert own.requests.case_number_example == example  # derived from the policy's own pattern, or none
    expected = f"(like {example})" if example else pattern
    assert reasons(own, case_number="0") == [
        f"case number '0' does not match the required format {expected}"]


def test_an_authorization_reference_is_required_where_the_policy_says_so():
    unable = dict(purpose="identify_person_unable", offence="no_offence")
    assert reasons(**unable) == [
        "purpose 'identify_person_unable' requires an authorization reference (a supervisor's approval or warrant number)"]
    assert reasons(**unable, authorization_ref="SGT-4411 approval") == []
    strict = parse_policy(replaced("authorization_required = false", "authorization_required = true"))
    assert reasons(strict) == [
        "purpose 'criminal_investigation' requires an authorization reference (a supervisor's approval or warrant number)"]
    exempt = parse_policy(replaced('"missing_person"]\nauthorization_required = true', '"missing_person"]\nauthorization_required = false',
                                   replaced("authorization_required = false", "authorization_required = true")))
    assert reasons(exempt, **unable) == []


def test_the_daily_search_limit_is_enforced():
    assert reasons(history=RequestHistory(19, frozenset(), 0)) == []
    assert reasons(history=RequestHistory(20, frozenset(), 0)) == ["daily search limit of 20 reached"]


def test_the_number_of_users_per_case_is_limited():
    six = frozenset(f"user{n}" for n in range(6))
    assert reasons(history=RequestHistory(0, frozenset(list(six)[:5]), 5)) == []
    assert reasons(history=RequestHistory(0, six, 6)) == [
        "case '23-000123' has already been searched by 6 users, the most the policy allows (6)"]
    assert reasons(history=RequestHistory(0, six - {"user0"} | {"alice"}, 6)) == []  # alice already works the case


def test_the_number_of_searches_per_case_is_limited():
    assert reasons(history=RequestHistory(0, frozenset({"alice"}), 29)) == []
    assert reasons(history=RequestHistory(0, frozenset({"alice"}), 30)) == [
        "case '23-000123' has already had 30 searches, the most the policy allows (30)"]


def test_absent_case_limits_mean_no_limit():
    unlimited = parse_policy(replaced("max_users_per_case = 6\nmax_searches_per_case = 30\n", ""))
    crowded = RequestHistory(0, frozenset(f"user{n}" for n in range(500)), 10_000)
    assert reasons(unlimited, history=crowded) == []


def test_every_reason_is_given_at_once():
    assert reasons(case_number="x", purpose="protest_monitoring", note="", history=RequestHistory(20, frozenset(), 0)) == [
        FIRST_AMENDMENT,
        "a note explaining why the search is needed is required",
        "case number 'x' does not match the required format (like 24-000123)",
        "daily search limit of 20 reached",
    ]


def test_a_request_kind_must_be_search_or_compare():
    with pytest.raises(ValueError, match="'identify'"):
        request(kind="identify")


# --- roles --------------------------------------------------------------------------------------------


def test_role_problems_reports_forbidden_combinations_and_unknown_roles():
    assert role_problems(POLICY, ["investigator"]) == []
    assert role_problems(POLICY, ["supervisor", "investigator"]) == []
    assert role_problems(POLICY, ["examiner", "supervisor"]) == [
        "a user may not hold both 'examiner' and 'supervisor': the policy keeps these duties apart"]
    assert role_problems(POLICY, ["examiner", "investigator"]) == [
        "a user may not hold both 'investigator' and 'examiner': the policy keeps these duties apart"]
    assert len(role_problems(POLICY, ["auditor", "investigator", "examiner"])) == 3
    assert role_problems(POLICY, ["investigator", "janitor"]) == [
        "unknown role 'janitor' (roles: investigator, examiner, supervisor, auditor, admin)"]


def test_combinations_of_three_roles_are_forbidden_only_together():
    policy = parse_policy(replaced('["investigator", "examiner"],', '["investigator", "examiner", "supervisor"],')
                          .replace('    ["examiner", "supervisor"],\n', ''))
    assert role_problems(policy, ["investigator", "examiner"]) == []
    assert role_problems(policy, ["supervisor", "investigator", "examiner"]) == [
        "a user may not hold all of 'investigator', 'examiner', 'supervisor': the policy keeps these duties apart"]


# --- versions in the store ------------------------------------------------------------------------------


@pytest.fixture
def galleries(datadir):
    opened = Galleries.open(datadir)
    yield opened
    opened.close()


@pytest.fixture
def store(galleries):
    return PolicyStore(galleries.sessions)


@pytest.fixture
def admin_id(galleries) -> int:
    with galleries.sessions.begin() as session:
        user = UserRecord(username="root", roles=["admin"], password_hash="not-a-real-hash")
        session.add(user)
        session.flush()
        return user.id


def active_versions(galleries) -> list[int]:
    with galleries.sessions() as session:
        return list(session.scalars(select(PolicyRecord.version).where(PolicyRecord.active.is_(True))))


def test_the_default_policy_becomes_version_one(store, galleries):
    version, policy = store.active()
    assert version == 1 and policy == parse_policy(DEFAULT)
    [entry] = store.history()
    assert entry["version"] == 1 and entry["active"] and entry["loaded_by"] is None and entry["text"] == DEFAULT
    assert len(entry["sha256"]) == 64 and entry["loaded_at"].endswith("+00:00")
    assert store.active()[0] == 1 and len(store.history()) == 1


def test_loading_makes_a_new_active_version(store, galleries, admin_id):
    store.active()
    stricter = replaced("daily_search_limit_per_user = 20", "daily_search_limit_per_user = 5")
    assert store.load(stricter, admin_id) == 2
    version, policy = store.active()
    assert version == 2 and policy.requests.daily_search_limit_per_user == 5
    assert active_versions(galleries) == [2]
    assert [(h["version"], h["active"], h["loaded_by"]) for h in store.history()] == [(1, False, None), (2, True, admin_id)]
    assert store.load(DEFAULT, admin_id) == 3  # an older text comes back as a new version
    assert active_versions(galleries) == [3] and store.active()[1].requests.daily_search_limit_per_user == 20


def test_loading_the_active_text_again_adds_no_version(store, galleries, admin_id):
    store.active()
    assert store.load(DEFAULT, admin_id) == 1
    assert len(store.history()) == 1


def test_a_broken_policy_leaves_the_old_one_active(store, galleries, admin_id):
    store.active()
    stricter = replaced("max_candidates = 20", "max_candidates = 10")
    store.load(stricter, admin_id)
    before = store.history()
    broken = replaced("audit_entries_days = 2555", "audit_entries_days = 30", stricter)
    with pytest.raises(PolicyError) as caught:
        store.load(broken, admin_id)
    assert caught.value.problems == [
        (line_of(broken, "audit_entries_days = 30"), "retention.audit_entries_days must be between 183 and 36500, not 30")]
    assert store.history() == before
    version, policy = store.active()
    assert version == 2 and policy.max_candidates == 10


def test_another_store_sees_a_newly_loaded_version(store, galleries, admin_id):
    other = PolicyStore(galleries.sessions)
    assert other.active()[0] == 1
    store.load(replaced("max_candidates = 20", "max_candidates = 7"), admin_id)
    version, policy = other.active()
    assert version == 2 and policy.max_candidates == 7


def test_concurrent_loads_keep_exactly_one_active_version(store, galleries):
    store.active()
    errors: list[BaseException] = []

    def load_several(worker: int) -> None:
        mine = PolicyStore(galleries.sessions)
        try:
            for n in range(3):
                mine.load(replaced("max_candidates = 20", f"max_candidates = {10 * worker + n + 1}"), None)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=load_several, args=(worker,)) for worker in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [h["version"] for h in store.history()] == list(range(1, 8))
    assert len(active_versions(galleries)) == 1 and active_versions(galleries) == [7]
