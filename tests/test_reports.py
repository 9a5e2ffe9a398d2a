"""Transparency reports and the two-person rule, on records written straight through the ORM (no face engine)."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
from sqlalchemy import event, text

from facetrail.accountability.outcomes import candidate_status, outcomes_for, search_outcome
from facetrail.accountability.reports import (
    GROUPINGS,
    build_report,
    render_csv,
    render_html,
    render_html_fragment,
    render_json,
)
from facetrail.accountability.schema import (
    CandidateRecord,
    ResolutionRecord,
    ReviewRecord,
    SearchRecord,
    UserRecord,
)
from facetrail.errors import FacetrailError
from facetrail.gallery.gallery import Galleries

UTC = dt.timezone.utc
Q1_2024 = (dt.date(2024, 1, 1), dt.date(2024, 3, 31))


def at(year: int, month: int, day: int, hour: int = 10, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=UTC)


@dataclass
class Records:
    """Writes users, requests, candidates, reviews and resolutions; remembers ids by name."""

    session: object
    users: dict[str, UserRecord] = field(default_factory=dict)
    searches: dict[str, int] = field(default_factory=dict)

    def user(self, username: str, unit: str, *roles: str) -> UserRecord:
        record = UserRecord(username=username, display_name=username.title(), unit=unit,
                            roles=list(roles or ["investigator"]), password_hash="not-a-real-hash")
        self.session.add(record)
        self.session.flush()
        self.users[username] = record
        return record

    def search(self, name: str, username: str, started: dt.datetime, *, kind: str = "search", case: str = "",
               purpose: str = "identify suspect", offence: str = "robbery", gallery: str = "booking",
               refused: str = "", candidates: int = 0) -> SearchRecord:
        user = self.users[username]
        record = SearchRecord(kind=kind, user_id=user.id, unit=user.unit, status="refused" if refused else "completed",
                              refusal_reason=refused, gallery_id=None, gallery_name=gallery, case_number=case,
                              purpose=purpose, offence=offence, started_at=started)
        self.session.add(record)
        self.session.flush()
        for rank in range(1, candidates + 1):
            self.session.add(CandidateRecord(search_id=record.id, rank=rank, subject_external_id=f"B-{record.id}-{rank}",
                                             distance=0.4 + rank / 100))
        self.session.flush()
        self.searches[name] = record.id
        return record

    def candidate(self, search: str, rank: int = 1) -> CandidateRecord:
        return next(c for c in self.session.get(SearchRecord, self.searches[search]).candidates if c.rank == rank)

    def review(self, search: str, examiner: str, decision: str, rank: int = 1) -> None:
        candidate = self.candidate(search, rank)
        self.session.add(ReviewRecord(search_id=candidate.search_id, candidate_id=candidate.id,
                                      examiner_id=self.users[examiner].id, decision=decision))
        self.session.flush()

    def resolve(self, search: str, decision: str, rank: int = 1) -> None:
        candidate = self.candidate(search, rank)
        self.session.add(ResolutionRecord(candidate_id=candidate.id, supervisor_id=self.users["sue"].id,
                                          decision=decision))
        self.session.flush()

    def many(self, prefix: str, username: str, count: int, start: dt.datetime, **kwargs) -> list[int]:
        """``count`` requests a day apart on weekdays at ``start``'s time, each named prefix-i."""
        ids, day = [], start
        for i in range(count):
            while day.weekday() >= 5:
                day += dt.timedelta(days=1)
            ids.append(self.search(f"{prefix}-{i}", username, day, **kwargs).id)
            day += dt.timedelta(days=1)
        return ids


@pytest.fixture
def session(datadir):
    galleries = Galleries.open(datadir)
    with galleries.sessions() as session:
        yield session
    galleries.close()


@pytest.fixture
def records(session) -> Records:
    """An ordinary first quarter of 2024 (weekdays, office hours, nothing unusual), plus one request just before
    and one just after it.

    Robbery: alice 3, bob 3, carol 2; Fraud: dave 2. Outcomes: S1 lead (two examiners), S2 pending (one
    examiner's possible_lead), S3 disputed, S4 no_lead (dispute settled by a supervisor as not_a_match, second
    candidate rejected by both), S5 lead (dispute settled as possible_lead), S6 no_candidates (a comparison),
    S7 no_lead, S8 and S9 refused, S10 pending (not reviewed).
    """
    r = Records(session)
    for name, unit in (("alice", "Robbery"), ("bob", "Robbery"), ("carol", "Robbery"), ("dave", "Fraud"),
                       ("heidi", "Fraud")):
        r.user(name, unit)
    for name in ("erin", "frank", "grace"):
        r.user(name, "Forensics", "examiner")
    r.user("sue", "Forensics", "supervisor")

    r.search("S1", "alice", at(2024, 1, 8, 10), case="R-1", candidates=2)
    r.search("S2", "alice", at(2024, 1, 9, 11), case="R-1", candidates=1)
    r.search("S3", "bob", at(2024, 1, 10, 14), case="R-2", purpose="locate missing person", candidates=1)
    r.search("S4", "bob", at(2024, 2, 5, 9, 30), case="R-2", purpose="locate missing person", candidates=2)
    r.search("S5", "carol", at(2024, 2, 6, 7, 0), case="R-3", candidates=1)
    r.search("S6", "carol", at(2024, 2, 7, 19, 0), kind="compare", case="R-3", gallery="")
    r.search("S7", "dave", at(2024, 3, 4, 16), case="F-1", purpose="identify victim", offence="fraud",
             gallery="fraud-mugshots", candidates=1)
    r.search("S8", "dave", at(2024, 3, 5, 12), offence="", refused="no case number")
    r.search("S9", "alice", at(2024, 3, 6, 13), kind="compare", case="R-1", gallery="",
             refused="gallery not granted to unit")
    r.search("S10", "bob", at(2024, 3, 7, 15), case="R-2", candidates=3)
    r.search("before", "alice", at(2023, 12, 29, 10), case="R-0", candidates=0)
    r.search("after", "heidi", at(2024, 4, 2, 10), case="F-2", offence="fraud", candidates=0)

    r.review("S1", "erin", "possible_lead")
    r.review("S1", "frank", "possible_lead")
    r.review("S1", "erin", "not_a_match", rank=2)
    r.review("S2", "erin", "possible_lead")
    r.review("S3", "erin", "possible_lead")
    r.review("S3", "frank", "not_a_match")
    r.review("S4", "erin", "possible_lead")
    r.review("S4", "frank", "inconclusive")
    r.resolve("S4", "not_a_match")
    r.review("S4", "erin", "not_a_match", rank=2)
    r.review("S4", "frank", "not_a_match", rank=2)
    r.review("S5", "erin", "possible_lead")
    r.review("S5", "grace", "not_a_match")
    r.resolve("S5", "possible_lead")
    r.review("S7", "erin", "not_a_match")
    r.review("S7", "grace", "not_a_match")
    session.commit()
    return r


def report(records: Records, by: str = "month", period: tuple[dt.date, dt.date] = Q1_2024, **kwargs):
    return build_report(records.session, *period, by=by, **kwargs)


def flags(built, kind: str) -> list:
    return [anomaly for anomaly in built.anomalies if anomaly.kind == kind]


# --- the two-person rule, as pure functions ---------------------------------------------------------------


def review(examiner: int, decision: str) -> ReviewRecord:
    return ReviewRecord(examiner_id=examiner, decision=decision)


@pytest.mark.parametrize(
    ("reviews", "resolution", "expected"),
    [
        ([], None, "undecided"),
        ([review(1, "possible_lead")], None, "undecided"),
        ([review(1, "possible_lead"), review(1, "possible_lead")], None, "undecided"),  # one examiner counts once
        ([review(1, "possible_lead"), review(2, "possible_lead")], None, "lead"),
        ([review(1, "possible_lead"), review(2, "not_a_match")], None, "disputed"),
        ([review(1, "possible_lead"), review(2, "inconclusive")], None, "disputed"),
        ([review(1, "not_a_match"), review(2, "inconclusive")], None, "not_lead"),
        ([review(1, "not_a_match")], None, "undecided"),
        ([review(1, "possible_lead"), review(2, "not_a_match")], "possible_lead", "lead"),
        ([review(1, "possible_lead"), review(2, "not_a_match")], "not_a_match", "not_lead"),
        ([review(1, "possible_lead"), review(2, "not_a_match")], "inconclusive", "not_lead"),
    ],
)
def test_candidate_status(reviews, resolution, expected):
    settled = ResolutionRecord(decision=resolution) if resolution else None
    assert candidate_status(reviews, settled) == expected


def test_search_outcome_rules():
    completed, refused = SearchRecord(status="completed"), SearchRecord(status="refused")
    assert search_outcome(refused, {}, {}) == "refused"
    assert search_outcome(completed, {}, {}) == "no_candidates"
    assert search_outcome(completed, {1: [], 2: []}, {}) == "pending_review"
    assert search_outcome(completed, {1: [review(1, "not_a_match")], 2: []}, {}) == "pending_review"
    # two examiners looked and neither saw a lead
    assert search_outcome(completed, {1: [review(1, "not_a_match")], 2: [review(2, "inconclusive")]}, {}) == "no_lead"
    # a lone possible_lead still waits for its second examiner, whoever else has reviewed other candidates
    assert search_outcome(completed, {1: [review(1, "possible_lead")], 2: [review(2, "not_a_match")]}, {}) == "pending_review"
    lead = [review(1, "possible_lead"), review(2, "possible_lead")]
    dispute = [review(1, "possible_lead"), review(2, "not_a_match")]
    assert search_outcome(completed, {1: dispute, 2: lead}, {}) == "lead"
    assert search_outcome(completed, {1: dispute, 2: []}, {}) == "disputed"
    assert search_outcome(completed, {1: dispute, 2: []}, {1: ResolutionRecord(decision="not_a_match")}) == "no_lead"


def test_outcomes_from_the_store(records):
    ids = records.searches
    found = outcomes_for(records.session, list(ids.values()))
    assert {name: found[search_id] for name, search_id in ids.items() if name.startswith("S")} == {
        "S1": "lead", "S2": "pending_review", "S3": "disputed", "S4": "no_lead", "S5": "lead",
        "S6": "no_candidates", "S7": "no_lead", "S8": "refused", "S9": "refused", "S10": "pending_review",
    }


def test_second_examiner_turns_a_pending_search_into_a_lead(records):
    search = records.searches["S2"]
    assert outcomes_for(records.session, [search]) == {search: "pending_review"}
    records.review("S2", "grace", "possible_lead")
    assert outcomes_for(records.session, [search]) == {search: "lead"}


@contextmanager
def counted_statements(session) -> Iterator[list[str]]:
    """The SQL statements run on ``session``'s engine inside the block."""
    statements: list[str] = []
    engine = session.get_bind()

    def count(_connection, _cursor, statement, *_args):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_outcomes_and_report_use_a_fixed_number_of_queries(records):
    with counted_statements(records.session) as one:
        outcomes_for(records.session, [records.searches["S1"]])
    with counted_statements(records.session) as every:
        outcomes_for(records.session, list(records.searches.values()))
    assert len(one) == len(every) <= 4
    with counted_statements(records.session) as built:
        report(records, period=(dt.date(2009, 1, 1), None))
    assert len(built) <= 4  # the requests with their users, then candidates, reviews and resolutions


# --- the report's figures ---------------------------------------------------------------------------------


def test_totals_for_the_period(records):
    built = report(records)
    totals = built.totals
    assert (totals.total, totals.searches, totals.comparisons) == (10, 8, 2)
    assert (totals.completed, totals.refused) == (8, 2)
    assert (totals.users, totals.cases) == (4, 4)
    assert (totals.lead, totals.no_lead, totals.pending_review, totals.disputed, totals.no_candidates) == (2, 2, 2, 1, 1)
    assert built.refusal_reasons == {"no case number": 1, "gallery not granted to unit": 1}
    assert built.requests_without_case == 1
    assert (built.searches_per_case_mean, built.searches_per_case_max) == (2.25, 3)
    assert built.outcomes == {"lead": 2, "disputed": 1, "no_lead": 2, "pending_review": 2, "no_candidates": 1,
                              "refused": 2}
    assert built.per_month == {"2024-01": 3, "2024-02": 3, "2024-03": 4}
    assert built.by_purpose == {"identify suspect": 7, "locate missing person": 2, "identify victim": 1}
    assert built.headline == "10 searches by 4 people between 1 January 2024 and 31 March 2024."


def test_ordinary_data_raises_no_flag(records):
    assert report(records).anomalies == []
    assert report(records, period=(dt.date(2009, 1, 1), None)).anomalies == []


def test_since_2009_in_one_call(records):
    built = build_report(records.session, dt.date(2009, 1, 1), None)
    today = dt.datetime.now(UTC).date()
    assert built.headline == f"12 searches by 5 people between 1 January 2009 and {today.day} {today:%B %Y}."
    assert (built.totals.total, built.totals.users) == (12, 5)
    assert list(built.per_month) == ["2023-12", "2024-01", "2024-02", "2024-03", "2024-04"]


def test_period_bounds_are_whole_utc_days(records):
    records.search("last-minute", "dave", dt.datetime(2024, 3, 31, 23, 59, 59, tzinfo=UTC), case="F-1")
    records.search("first-minute", "dave", dt.datetime(2024, 4, 1, 0, 0, tzinfo=UTC), case="F-1")
    records.search("new-year", "dave", dt.datetime(2024, 1, 1, 0, 0, tzinfo=UTC), case="F-1")
    records.search("old-year", "dave", dt.datetime(2023, 12, 31, 23, 59, 59, tzinfo=UTC), case="F-1")
    assert report(records).totals.total == 12
    assert build_report(records.session, None, dt.date(2023, 12, 31)).headline == (
        "2 searches by 2 people between 29 December 2023 and 31 December 2023."
    )
    one_day = build_report(records.session, dt.date(2024, 3, 31), dt.date(2024, 3, 31))
    assert one_day.headline == "1 search by 1 person between 31 March 2024 and 31 March 2024."


def test_times_are_read_as_utc_whatever_the_server_zone(records):
    late = records.search("late", "dave", at(2024, 3, 1, 3, 30), case="F-1").id  # Thursday evening in New York
    if records.session.get_bind().dialect.name == "postgresql":
        records.session.execute(text("SET TIME ZONE 'America/New_York'"))
    built = report(records)
    assert built.per_month == {"2024-01": 3, "2024-02": 3, "2024-03": 5}
    [flag] = flags(built, "out_of_hours")
    assert flag.search_ids == [late] and "2024-03-01 03:30 UTC (Friday)" in flag.explanation


def test_bad_arguments_are_refused(records):
    with pytest.raises(FacetrailError, match="by must be one of"):
        report(records, by="weekday")
    with pytest.raises(FacetrailError, match="is after until"):
        report(records, period=(dt.date(2024, 3, 1), dt.date(2024, 2, 1)))
    with pytest.raises(FacetrailError, match="earlier"):
        report(records, work_starts=dt.time(19), work_ends=dt.time(7))


EXPECTED_GROUPS = {
    "month": {"2024-01": 3, "2024-02": 3, "2024-03": 4},
    "user": {"alice": 3, "bob": 3, "carol": 2, "dave": 2},
    "unit": {"Robbery": 8, "Fraud": 2},
    "purpose": {"identify suspect": 7, "locate missing person": 2, "identify victim": 1},
    "offence": {"robbery": 8, "(none)": 1, "fraud": 1},
    "gallery": {"booking": 7, "(none)": 2, "fraud-mugshots": 1},
    "outcome": {"lead": 2, "disputed": 1, "no_lead": 2, "pending_review": 2, "no_candidates": 1, "refused": 2},
}


@pytest.mark.parametrize("by", GROUPINGS)
def test_grouped_table(records, by):
    built = report(records, by=by)
    assert built.grouped_by == by
    assert [row.key for row in built.groups] == list(EXPECTED_GROUPS[by])
    assert {row.key: row.counts.total for row in built.groups} == EXPECTED_GROUPS[by]


def test_grouped_rows_carry_every_count(records):
    users = {row.key: row.counts for row in report(records, by="user").groups}
    alice, bob, dave = users["alice"], users["bob"], users["dave"]
    assert (alice.searches, alice.comparisons, alice.completed, alice.refused, alice.cases) == (2, 1, 2, 1, 1)
    assert (alice.lead, alice.pending_review, alice.disputed, alice.no_lead) == (1, 1, 0, 0)
    assert (bob.disputed, bob.no_lead, bob.pending_review, bob.lead) == (1, 1, 1, 0)
    assert (dave.refused, dave.no_lead, dave.cases, dave.users) == (1, 1, 1, 1)
    months = {row.key: row.counts for row in report(records, by="month").groups}
    assert (months["2024-02"].lead, months["2024-02"].no_lead, months["2024-02"].no_candidates) == (1, 1, 1)
    assert months["2024-03"].users == 3


# --- filters ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("filters", "expected", "said"), [
    ({"unit": "Fraud"}, ["S7", "S8"], "unit “Fraud”"),
    ({"unit": "fRAUD "}, ["S7", "S8"], "unit “fRAUD”"),  # ignoring case and surrounding space
    ({"purpose": "locate missing person"}, ["S3", "S4"], "purpose “locate missing person”"),
    ({"outcome": "refused"}, ["S8", "S9"], "outcome “refused”"),
    ({"unit": "Robbery", "outcome": "refused"}, ["S9"], "unit “Robbery” and outcome “refused”"),
    ({"unit": "Robbery", "purpose": "identify suspect", "outcome": "lead"}, ["S1", "S5"],
     "unit “Robbery”, purpose “identify suspect” and outcome “lead”"),
    ({"purpose": "no such purpose"}, [], "purpose “no such purpose”"),
])
def test_filters_count_only_matching_requests(records, filters, expected, said):
    built = report(records, by="user", **filters)
    assert built.totals.total == len(expected)
    assert sum(row.counts.total for row in built.groups) == len(expected)
    found = {search_id for flag in flags(report(records, work_ends=dt.time(9), **filters), "out_of_hours")
             for search_id in flag.search_ids}  # every request after 09:00: every counted one but S5 (07:00)
    assert found == {records.searches[name] for name in expected} - {records.searches["S5"]}
    assert built.filters == {name: value.strip() for name, value in filters.items()}
    assert built.headline.endswith(f", counting only requests with {said}.")


def test_an_empty_filter_is_no_filter_and_none_matches_requests_without_a_value(records):
    whole = report(records)
    assert report(records, unit="", purpose="  ", outcome=None).filters == {}
    assert report(records, unit="", purpose="  ").totals == whole.totals
    assert report(records, purpose="(none)").totals.total == 0
    blank = records.search("blank", "alice", at(2024, 3, 11), case="R-1", purpose="").id
    assert report(records, by="purpose", purpose="(None)").groups[0].key == "(none)"
    assert report(records, purpose="(none)").totals.total == 1
    assert blank in flags(report(records, purpose="(none)", work_ends=dt.time(9)), "out_of_hours")[0].search_ids


def test_unknown_outcome_filter_is_refused(records):
    with pytest.raises(FacetrailError, match="outcome must be one of lead, disputed"):
        report(records, outcome="match")


def test_flags_look_at_the_filtered_requests_only(records):
    records.search("X1", "alice", at(2024, 3, 11), case="R-9")
    records.search("X2", "bob", at(2024, 3, 12), case="R-9")
    records.search("X3", "carol", at(2024, 3, 13), case="R-9", purpose="locate missing person")
    assert [flag.subject for flag in flags(report(records), "case_many_users")] == ["R-9"]
    assert flags(report(records, purpose="identify suspect"), "case_many_users") == []
    assert [flag.subject for flag in flags(report(records, unit="robbery"), "case_many_users")] == ["R-9"]


def test_every_format_says_the_report_is_filtered(records):
    filtered, whole = report(records, unit="Robbery", outcome="refused"), report(records)
    assert json.loads(render_json(filtered))["filters"] == {"unit": "Robbery", "outcome": "refused"}
    assert json.loads(render_json(whole))["filters"] == {}

    rows = list(csv.DictReader(io.StringIO(render_csv(filtered))))
    assert [(row["month"], row["total"], row["filter_unit"], row["filter_outcome"]) for row in rows] == [
        ("2024-03", "1", "Robbery", "refused"), ("(all)", "1", "Robbery", "refused")]
    assert not any(column.startswith("filter_") for column in next(csv.reader(io.StringIO(render_csv(whole)))))

    page = render_html(filtered)
    assert "<title>Face search transparency report, 1 January 2024 to 31 March 2024 (only unit “Robbery” and " \
           "outcome “refused”)</title>" in page
    assert '<p class="filtered" role="note"><strong>Filtered report.</strong> Only requests with unit “Robbery” ' \
           "and outcome “refused” are counted" in page
    assert "1 search by 1 person between 1 January 2024 and 31 March 2024, counting only requests with unit " \
           "“Robbery” and outcome “refused”." in page
    assert 'class="filtered"' not in render_html(whole)


def test_the_html_fragment_is_the_page_body(records):
    built = report(records)
    fragment, page = render_html_fragment(built), render_html(built)
    assert fragment in page
    assert page.index("<h1>") < page.index(fragment) < page.index("</main>")
    for document_part in ("<html", "<head", "<style", "<body", "<h1", "<main"):
        assert document_part not in fragment
    assert fragment.startswith('<p class="headline">10 searches by 4 people')
    assert fragment.count("<img") == 3 and "<caption>Requests by month</caption>" in fragment


# --- anomaly flags ------------------------------------------------------------------------------------------


def test_case_used_by_three_people_is_flagged(records):
    first = records.search("X1", "alice", at(2024, 3, 11), case="R-9").id
    second = records.search("X2", "bob", at(2024, 3, 12), case="R-9").id
    assert flags(report(records), "case_many_users") == []
    third = records.search("X3", "carol", at(2024, 3, 13), case="R-9").id
    [flag] = flags(report(records), "case_many_users")
    assert (flag.subject, flag.search_ids) == ("R-9", [first, second, third])
    assert "3 different people (alice, bob, carol)" in flag.explanation


def test_case_used_far_more_than_typical_is_flagged(records):
    # cases: R-1 3, R-2 3, R-3 2, F-1 1 -> median 2.5, flagged above max(5, 7.5)
    extra = records.many("R1", "alice", 4, at(2024, 3, 11), case="R-1")
    assert flags(report(records), "case_high_volume") == []  # R-1 used 7 times
    extra += records.many("R1b", "alice", 1, at(2024, 3, 25), case="R-1")
    [flag] = flags(report(records), "case_high_volume")
    assert flag.subject == "R-1"
    assert flag.search_ids == sorted([records.searches["S1"], records.searches["S2"], records.searches["S9"], *extra])
    assert "used for 8 requests" in flag.explanation and "median case in this period was used 2.5 times" in flag.explanation
    assert flags(report(records), "case_many_users") == []


def test_case_volume_floor_of_five(session):
    r = Records(session)
    r.user("alice", "Robbery")
    for case in ("A", "B", "C", "D"):
        r.search(case, "alice", at(2024, 1, 8), case=case)
    r.many("E", "alice", 5, at(2024, 1, 9), case="E")  # median 1: 3 x 1 = 3, but 5 is not more than the floor
    period = (dt.date(2024, 1, 1), dt.date(2024, 1, 31))
    assert flags(build_report(session, *period), "case_high_volume") == []
    r.search("E-5", "alice", at(2024, 1, 19), case="E")
    assert [flag.subject for flag in flags(build_report(session, *period), "case_high_volume")] == ["E"]


def test_person_far_above_their_unit_is_flagged(records):
    # Robbery: alice 12, bob 4, carol 4 -> median 4; alice is flagged above 12 (3 x 4), being over 10
    records.search("B", "bob", at(2024, 3, 11), case="R-2")
    records.many("C", "carol", 2, at(2024, 3, 11), case="R-3")
    extra = records.many("A", "alice", 9, at(2024, 3, 11), case="R-100")
    assert flags(report(records), "user_high_volume") == []
    extra += records.many("A2", "alice", 1, at(2024, 3, 28), case="R-101")
    [flag] = flags(report(records), "user_high_volume")
    assert flag.subject == "alice"
    assert len(flag.search_ids) == 13 and set(extra) <= set(flag.search_ids)
    assert "unit 'Robbery'" in flag.explanation and "the 3 who searched made 4" in flag.explanation


def test_person_volume_floor_of_ten(records):
    # Fraud: dave 2 plus heidi and ivan with 1 each -> median 1; dave at 9 is above 3 x 1 but below 10
    records.user("ivan", "Fraud")
    records.search("H", "heidi", at(2024, 3, 11), case="F-7")
    records.search("I", "ivan", at(2024, 3, 11), case="F-8")
    records.many("D", "dave", 7, at(2024, 3, 12), case="F-9", offence="fraud")
    assert flags(report(records), "user_high_volume") == []
    records.search("D-last", "dave", at(2024, 3, 29), case="F-10")
    assert [flag.subject for flag in flags(report(records), "user_high_volume")] == ["dave"]


def test_out_of_hours_and_weekend_requests_are_flagged(records):
    night = records.search("night", "alice", at(2024, 1, 10, 3), case="R-1").id
    sunday = records.search("sunday", "bob", at(2024, 3, 10, 12), case="R-2").id
    late = records.search("late", "bob", dt.datetime(2024, 3, 12, 19, 0, 1, tzinfo=UTC), case="R-2").id
    early = records.search("early", "carol", dt.datetime(2024, 3, 12, 6, 59, 59, tzinfo=UTC), case="R-3").id
    found = {flag.subject: flag for flag in flags(report(records), "out_of_hours")}
    assert {subject: flag.search_ids for subject, flag in found.items()} == {
        "alice": [night], "bob": [sunday, late], "carol": [early],
    }
    assert "2024-03-10 12:00 UTC (Sunday)" in found["bob"].explanation
    # S5 at 07:00 and S6 at 19:00 sharp are inside working hours; different hours change what is flagged
    wider = report(records, work_starts=dt.time(2), work_ends=dt.time(20))
    assert {flag.subject: flag.search_ids for flag in flags(wider, "out_of_hours")} == {"bob": [sunday]}
    narrower = report(records, work_starts=dt.time(8), work_ends=dt.time(18))
    assert records.searches["S5"] in next(f for f in flags(narrower, "out_of_hours") if f.subject == "carol").search_ids


def test_burst_of_refusals_is_flagged(records):
    def refuse(name: str, user: str, when: dt.datetime) -> int:
        return records.search(name, user, when, case="", refused="no authorisation reference").id

    # five refusals spread over 61 minutes, and four within ten: neither is a burst
    for i, minutes in enumerate((0, 15, 30, 45, 61)):
        refuse(f"slow-{i}", "bob", at(2024, 2, 12, 10) + dt.timedelta(minutes=minutes))
    for i in range(4):
        refuse(f"few-{i}", "carol", at(2024, 2, 13, 10) + dt.timedelta(minutes=2 * i))
    assert flags(report(records), "refusal_burst") == []
    # alice: five within exactly 60 minutes, overlapping another five (10..70), then a separate burst next day
    burst = [refuse(f"burst-{i}", "alice", at(2024, 2, 14, 10) + dt.timedelta(minutes=m))
             for i, m in enumerate((0, 10, 20, 30, 60, 70))]
    refuse("straggler", "alice", at(2024, 2, 14, 12, 30))
    later = [refuse(f"later-{i}", "alice", at(2024, 2, 15, 11) + dt.timedelta(minutes=i)) for i in range(5)]
    found = flags(report(records), "refusal_burst")
    assert [(flag.subject, flag.search_ids) for flag in found] == [("alice", burst), ("alice", later)]
    assert "6 requests refused" in found[0].explanation and "no authorisation reference (6)" in found[0].explanation


# --- rendering -------------------------------------------------------------------------------------------------


def test_json_carries_the_whole_report(records):
    records.search("night", "alice", at(2024, 1, 10, 3), case="R-1")
    data = json.loads(render_json(report(records, by="unit")))
    assert data["headline"] == "11 searches by 4 people between 1 January 2024 and 31 March 2024."
    assert data["since"] == "2024-01-01" and data["until"] == "2024-03-31"
    assert data["totals"]["total"] == 11 and data["totals"]["lead"] == 2
    assert {group["key"]: group["counts"]["total"] for group in data["groups"]} == {"Robbery": 9, "Fraud": 2}
    assert [(a["kind"], a["subject"]) for a in data["anomalies"]] == [("out_of_hours", "alice")]


def test_csv_is_the_grouped_table(records):
    rows = list(csv.DictReader(io.StringIO(render_csv(report(records, by="outcome")))))
    assert [row["outcome"] for row in rows] == [*EXPECTED_GROUPS["outcome"], "(all)"]
    assert {row["outcome"]: int(row["total"]) for row in rows} == {**EXPECTED_GROUPS["outcome"], "(all)": 10}
    assert rows[-1]["refused"] == "2" and rows[-1]["comparisons"] == "2"


def test_html_is_one_self_contained_accessible_page(records):
    records.search("night", "alice", at(2024, 1, 10, 3), case="R-1")
    page = render_html(report(records, by="purpose"))
    assert "11 searches by 4 people between 1 January 2024 and 31 March 2024." in page
    images = re.findall(r'<img src="data:image/png;base64,([^"]+)" alt="([^"]+)"', page)
    assert len(images) == page.count("<img") == 3
    for data, alt in images:
        png = base64.b64decode(data)
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and b"http" not in png
        assert alt.startswith("Bar chart")
    assert "2024-03: 4" in images[0][1]
    assert not re.search(r"https?://", page)
    assert "<script" not in page and "<link" not in page and "<style>" in page
    assert '<html lang="en">' in page and "<h1>" in page and "<caption>Requests by purpose</caption>" in page
    # the grouped table: a header cell per column, the group's name as a row header, then its counts
    assert '<th scope="col">Purpose</th><th scope="col">All requests</th>' in page
    assert '<th scope="row">locate missing person</th><td>2</td><td>2</td><td>0</td>' in page
    assert "outside working hours" in page


def test_html_escapes_what_users_typed(records):
    records.search("odd", "alice", at(2024, 3, 11), case="R-1", purpose="<script>alert(1)</script>")
    records.search("cash", "alice", at(2024, 3, 12), case="R-1", purpose=r"cash $\x$ & more")
    page = render_html(report(records, by="purpose"))
    assert "<script>" not in page and "&lt;script&gt;" in page and r"cash $\x$ &amp; more" in page


def test_empty_period_renders(records):
    built = report(records, period=(dt.date(2020, 1, 1), dt.date(2020, 12, 31)))
    assert built.headline == "0 searches by 0 people between 1 January 2020 and 31 December 2020."
    assert built.groups == [] and built.anomalies == [] and built.searches_per_case_mean == 0.0
    page = render_html(built)
    assert page.count("<img") == 3 and "no requests in this period" in page
    assert list(csv.reader(io.StringIO(render_csv(built))))[-1][:2] == ["(all)", "0"]
    json.loads(render_json(built))
