"""Transparency reports: how often face search was used, by whom, for what, with what outcome, and what looks unusual.

``build_report`` reads every search and comparison request started in a period
(completed or refused), works out each one's outcome under the two-person rule
(``outcomes.py``), keeps those of a unit, purpose or outcome if asked to,
counts them in total and grouped by one dimension, and raises anomaly flags
for an oversight body to look into. ``render_json``, ``render_csv`` and
``render_html`` present the same report, each saying which filters it was
narrowed by; the HTML page is self-contained (inline CSS, charts as inline PNG
images) so it can be filed or e-mailed as it is, and ``render_html_fragment``
is its body, for a page of the web application. docs/reports.md explains
every figure and flag.

Why one module: the figures and the four renderings of them change together (a new figure is counted, flagged and
shown in JSON, CSV and HTML at once); the rendering half is marked below.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import html
import io
import json
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sqlalchemy import select
from sqlalchemy.orm import Session

from facetrail.accountability.outcomes import OUTCOMES, outcomes_of
from facetrail.accountability.schema import SearchRecord, UserRecord
from facetrail.csvcells import safe_cell
from facetrail.errors import FacetrailError
from facetrail.store import as_utc

GROUPINGS = ("month", "user", "unit", "purpose", "offence", "gallery", "outcome")
FILTERS = ("unit", "purpose", "outcome")
"""What a report can be narrowed to. A filter matches the key the grouped table shows for that dimension, ignoring
case: a unit or purpose as recorded on the request (NONE_LABEL for none), or one of ``OUTCOMES``."""
NONE_LABEL = "(none)"
"""How an empty unit, purpose, offence, gallery or case number is shown."""

CASE_USERS_FLAG = 3
"""A case number used by at least this many different people is flagged."""
CASE_VOLUME_FLOOR = 5
CASE_VOLUME_FACTOR = 3
"""A case number used more than max(CASE_VOLUME_FLOOR, CASE_VOLUME_FACTOR x median searches per case) times is flagged."""
USER_VOLUME_FACTOR = 3
USER_VOLUME_FLOOR = 10
"""A person with more than USER_VOLUME_FACTOR x their unit's median per person, and at least USER_VOLUME_FLOOR, is flagged."""
REFUSAL_BURST = 5
REFUSAL_WINDOW = dt.timedelta(minutes=60)
"""REFUSAL_BURST or more refusals of one person within REFUSAL_WINDOW are flagged."""

ANOMALY_KINDS = {
    "case_many_users": "a case number used by many different people",
    "case_high_volume": "a case number used far more often than is typical",
    "user_high_volume": "a person searching far more than others in their unit",
    "out_of_hours": "searches outside working hours or at weekends",
    "refusal_burst": "many refused requests by one person in a short time",
}
_NOTES = (
    "A request is a 1:N search or a 1:1 comparison, whether it was completed or refused.",
    "Times are UTC. A candidate is a lead only when two different examiners each marked it a possible lead, "
    "or a supervisor resolved a disagreement as a possible lead.",
)
_OUTCOME_LABELS = {
    "lead": "lead (two examiners or a supervisor)",
    "disputed": "disputed",
    "no_lead": "no lead",
    "pending_review": "pending review",
    "no_candidates": "no candidates",
    "refused": "refused",
}


@dataclass(frozen=True)
class Counts:
    """Counts over a set of search and comparison requests."""

    total: int
    """Every request: searches and comparisons, completed and refused."""
    searches: int
    """Requests of kind 'search' (1:N against a gallery)."""
    comparisons: int
    """Requests of kind 'compare' (1:1)."""
    completed: int
    refused: int
    users: int
    """Different people who made the requests."""
    cases: int
    """Different (non-empty) case numbers."""
    lead: int
    """Completed requests whose outcome is a lead confirmed under the two-person rule."""
    no_lead: int
    """Completed requests whose candidate list was reviewed by two examiners and gave no lead."""
    pending_review: int
    disputed: int
    no_candidates: int


@dataclass(frozen=True)
class GroupRow:
    """One row of the grouped table."""

    key: str
    counts: Counts


@dataclass(frozen=True)
class Anomaly:
    """Something an oversight body should look into, with why and the requests involved."""

    kind: str
    """One of ``ANOMALY_KINDS``."""
    subject: str
    """The case number or username concerned."""
    explanation: str
    search_ids: list[int]


@dataclass(frozen=True)
class TransparencyReport:
    """Everything ``build_report`` found for one period; see docs/reports.md."""

    since: dt.date
    until: dt.date
    generated_at: dt.datetime
    grouped_by: str
    filters: dict[str, str]
    """Filter -> value the requests were narrowed to (see ``FILTERS``); empty when every request is counted."""
    headline: str
    totals: Counts
    refusal_reasons: dict[str, int]
    requests_without_case: int
    searches_per_case_mean: float
    searches_per_case_max: int
    per_month: dict[str, int]
    """Requests per calendar month (UTC), from the first month with a request to the last, empty months included."""
    by_purpose: dict[str, int]
    outcomes: dict[str, int]
    groups: list[GroupRow]
    anomalies: list[Anomaly]
    working_hours: str
    """The working hours the out-of-hours flag used, in words."""
    notes: list[str]


@dataclass(frozen=True)
class _Row:
    search: SearchRecord
    username: str
    started: dt.datetime
    """``search.started_at`` in UTC."""
    outcome: str


def build_report(
    session: Session,
    since: dt.date | None,
    until: dt.date | None,
    by: str = "month",
    *,
    unit: str | None = None,
    purpose: str | None = None,
    outcome: str | None = None,
    work_starts: dt.time = dt.time(7),
    work_ends: dt.time = dt.time(19),
    examiners_required: int = 2,
) -> TransparencyReport:
    """The transparency report for requests started from ``since`` to ``until`` (whole UTC days, both included).

    ``since=None`` starts at the first (counted) request on record; ``until=None`` ends today. ``by`` is one of
    ``GROUPINGS``. ``unit``, ``purpose`` and ``outcome`` (None or empty: any) count only the requests that match
    (see ``FILTERS``); every figure and flag is then about those requests alone. Requests before ``work_starts`` or
    after ``work_ends`` (UTC), or on a Saturday or Sunday, are out of hours. Raises ``FacetrailError`` for an
    unknown grouping or outcome, or a period that ends before it starts.
    """
    if by not in GROUPINGS:
        raise FacetrailError(f"by must be one of {', '.join(GROUPINGS)}, got {by!r}")
    filters = _filters(unit=unit, purpose=purpose, outcome=outcome)
    if not work_starts < work_ends:
        raise FacetrailError("work_starts must be earlier than work_ends")
    today = dt.datetime.now(dt.timezone.utc).date()
    until = until or today
    if since is not None and since > until:
        raise FacetrailError(f"since ({since}) is after until ({until})")
    rows = [row for row in _load(session, since, until, examiners_required) if _matches(row, filters)]
    since = since or (rows[0].started.date() if rows else until)

    totals = _counts(rows)
    with_case = Counter(row.search.case_number for row in rows if row.search.case_number)
    return TransparencyReport(
        since=since,
        until=until,
        generated_at=dt.datetime.now(dt.timezone.utc).replace(microsecond=0),
        grouped_by=by,
        filters=filters,
        headline=_headline(totals, since, until, filters),
        totals=totals,
        refusal_reasons=dict(
            Counter(row.search.refusal_reason or NONE_LABEL for row in rows if row.search.status == "refused").most_common()
        ),
        requests_without_case=sum(1 for row in rows if not row.search.case_number),
        searches_per_case_mean=round(statistics.fmean(with_case.values()), 2) if with_case else 0.0,
        searches_per_case_max=max(with_case.values(), default=0),
        per_month=_per_month(rows),
        by_purpose=dict(Counter(row.search.purpose or NONE_LABEL for row in rows).most_common()),
        outcomes={outcome: sum(1 for row in rows if row.outcome == outcome) for outcome in OUTCOMES},
        groups=_groups(rows, by),
        anomalies=[
            *_case_anomalies(rows),
            *_user_volume_anomalies(rows),
            *_out_of_hours_anomalies(rows, work_starts, work_ends),
            *_refusal_bursts(rows),
        ],
        working_hours=f"{work_starts:%H:%M} to {work_ends:%H:%M} UTC, Monday to Friday",
        notes=list(_NOTES),
    )


def _filters(**given: str | None) -> dict[str, str]:
    """The filters that narrow the report, stripped, without the empty ones; an unknown outcome is refused."""
    filters = {name: given[name].strip() for name in FILTERS if given[name] and given[name].strip()}
    outcome = filters.get("outcome")
    if outcome is not None and outcome not in OUTCOMES:
        raise FacetrailError(f"outcome must be one of {', '.join(OUTCOMES)}, got {outcome!r}")
    return filters


def _matches(row: _Row, filters: dict[str, str]) -> bool:
    return all(_GROUP_KEYS[name](row).casefold() == value.casefold() for name, value in filters.items())


def _load(session: Session, since: dt.date | None, until: dt.date, examiners_required: int) -> list[_Row]:
    """Every request in the period with its user's name and outcome, oldest first (a few queries)."""
    query = (
        select(SearchRecord, UserRecord.username)
        .join(UserRecord, UserRecord.id == SearchRecord.user_id)
        .where(SearchRecord.started_at < _midnight(until + dt.timedelta(days=1)))
        .order_by(SearchRecord.started_at, SearchRecord.id)
    )
    if since is not None:
        query = query.where(SearchRecord.started_at >= _midnight(since))
    loaded = session.execute(query).all()
    outcomes = outcomes_of(session, [search for search, _ in loaded], examiners_required)
    return [_Row(search, username, as_utc(search.started_at), outcomes[search.id]) for search, username in loaded]


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0), tzinfo=dt.timezone.utc)


def _plural(count: int, singular: str, plural: str) -> str:
    return f"{count:,} {singular if count == 1 else plural}"


def _day(day: dt.date) -> str:
    return f"{day.day} {day:%B %Y}"


def _filters_in_words(filters: dict[str, str]) -> str:
    """'unit “RHD” and outcome “refused”'."""
    said = [f"{name} “{value}”" for name, value in filters.items()]
    return " and ".join(filter(None, [", ".join(said[:-1]), said[-1]]))


def _headline(totals: Counts, since: dt.date, until: dt.date, filters: dict[str, str]) -> str:
    only = f", counting only requests with {_filters_in_words(filters)}" if filters else ""
    return (
        f"{_plural(totals.total, 'search', 'searches')} by {_plural(totals.users, 'person', 'people')} "
        f"between {_day(since)} and {_day(until)}{only}."
    )


def _counts(rows: Sequence[_Row]) -> Counts:
    outcomes = Counter(row.outcome for row in rows)
    return Counts(
        total=len(rows),
        searches=sum(1 for row in rows if row.search.kind == "search"),
        comparisons=sum(1 for row in rows if row.search.kind == "compare"),
        completed=sum(1 for row in rows if row.search.status == "completed"),
        refused=sum(1 for row in rows if row.search.status == "refused"),
        users=len({row.search.user_id for row in rows}),
        cases=len({row.search.case_number for row in rows if row.search.case_number}),
        lead=outcomes["lead"],
        no_lead=outcomes["no_lead"],
        pending_review=outcomes["pending_review"],
        disputed=outcomes["disputed"],
        no_candidates=outcomes["no_candidates"],
    )


def _month(moment: dt.datetime) -> str:
    return f"{moment:%Y-%m}"


def _per_month(rows: Sequence[_Row]) -> dict[str, int]:
    if not rows:
        return {}
    counts = Counter(_month(row.started) for row in rows)
    first, last = rows[0].started, rows[-1].started
    months = {}
    year, month = first.year, first.month
    while (year, month) <= (last.year, last.month):
        key = f"{year:04d}-{month:02d}"
        months[key] = counts[key]
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


_GROUP_KEYS: dict[str, Callable[[_Row], str]] = {
    "month": lambda row: _month(row.started),
    "user": lambda row: row.username,
    "unit": lambda row: row.search.unit or NONE_LABEL,
    "purpose": lambda row: row.search.purpose or NONE_LABEL,
    "offence": lambda row: row.search.offence or NONE_LABEL,
    "gallery": lambda row: row.search.gallery_name or NONE_LABEL,
    "outcome": lambda row: row.outcome,
}


def _groups(rows: Sequence[_Row], by: str) -> list[GroupRow]:
    grouped: dict[str, list[_Row]] = defaultdict(list)
    for row in rows:
        grouped[_GROUP_KEYS[by](row)].append(row)
    if by == "month":
        keys = sorted(grouped)
    elif by == "outcome":
        keys = [outcome for outcome in OUTCOMES if outcome in grouped]
    else:
        keys = sorted(grouped, key=lambda key: (-len(grouped[key]), key))
    return [GroupRow(key, _counts(grouped[key])) for key in keys]


def _when(moment: dt.datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC ({moment:%A})"


def _listed(items: list[str], most: int = 10) -> str:
    more = f"; and {len(items) - most} more" if len(items) > most else ""
    return "; ".join(items[:most]) + more


def _names(rows: Sequence[_Row]) -> str:
    return ", ".join(sorted({row.username for row in rows}))


def _case_anomalies(rows: Sequence[_Row]) -> list[Anomaly]:
    by_case: dict[str, list[_Row]] = defaultdict(list)
    for row in rows:
        if row.search.case_number:
            by_case[row.search.case_number].append(row)
    median = statistics.median(len(case_rows) for case_rows in by_case.values()) if by_case else 0
    volume_limit = max(CASE_VOLUME_FLOOR, CASE_VOLUME_FACTOR * median)
    anomalies = []
    for case, case_rows in sorted(by_case.items()):
        ids = [row.search.id for row in case_rows]
        users = {row.search.user_id for row in case_rows}
        if len(users) >= CASE_USERS_FLAG:
            anomalies.append(Anomaly(
                "case_many_users", case,
                f"Case {case!r} was used by {len(users)} different people ({_names(case_rows)}) in "
                f"{_plural(len(ids), 'request', 'requests')}; {CASE_USERS_FLAG} or more people on one case is flagged. "
                "Check that each of them was working on the case.",
                ids,
            ))
        if len(ids) > volume_limit:
            anomalies.append(Anomaly(
                "case_high_volume", case,
                f"Case {case!r} was used for {len(ids)} requests, by {_names(case_rows)}; the median case in this "
                f"period was used {median:g} times, and a case used more than {volume_limit:g} times "
                f"(the larger of {CASE_VOLUME_FLOOR} and {CASE_VOLUME_FACTOR} times the median) is flagged. "
                "Check that the case needed this many searches.",
                ids,
            ))
    return anomalies


def _user_volume_anomalies(rows: Sequence[_Row]) -> list[Anomaly]:
    by_unit: dict[str, dict[str, list[_Row]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        by_unit[row.search.unit][row.username].append(row)
    anomalies = []
    for unit, by_user in sorted(by_unit.items()):
        median = statistics.median(len(user_rows) for user_rows in by_user.values())
        for username, user_rows in sorted(by_user.items()):
            if len(user_rows) >= USER_VOLUME_FLOOR and len(user_rows) > USER_VOLUME_FACTOR * median:
                anomalies.append(Anomaly(
                    "user_high_volume", username,
                    f"{username} made {len(user_rows)} requests for unit {unit or NONE_LABEL!r}, where the median "
                    f"person of the {len(by_user)} who searched made {median:g}; more than {USER_VOLUME_FACTOR} times "
                    f"the unit's median, and at least {USER_VOLUME_FLOOR}, is flagged. "
                    "Check that the workload explains it.",
                    [row.search.id for row in user_rows],
                ))
    return anomalies


def _out_of_hours_anomalies(rows: Sequence[_Row], work_starts: dt.time, work_ends: dt.time) -> list[Anomaly]:
    by_user: dict[str, list[_Row]] = defaultdict(list)
    for row in rows:
        moment = row.started.timetz().replace(tzinfo=None)
        if row.started.weekday() >= 5 or moment < work_starts or moment > work_ends:
            by_user[row.username].append(row)
    return [
        Anomaly(
            "out_of_hours", username,
            f"{username} made {_plural(len(user_rows), 'request', 'requests')} outside working hours "
            f"({work_starts:%H:%M} to {work_ends:%H:%M} UTC, Monday to Friday): "
            f"{_listed([_when(row.started) for row in user_rows])}. Night shifts and urgent cases can explain "
            "this; check that they do.",
            [row.search.id for row in user_rows],
        )
        for username, user_rows in sorted(by_user.items())
    ]


def _refusal_bursts(rows: Sequence[_Row]) -> list[Anomaly]:
    by_user: dict[str, list[_Row]] = defaultdict(list)
    for row in rows:
        if row.search.status == "refused":
            by_user[row.username].append(row)
    anomalies = []
    for username, refusals in sorted(by_user.items()):
        bursts: list[list[int]] = []  # [first, last] indices into refusals, merged where windows overlap
        last = 0
        for first in range(len(refusals)):
            last = max(last, first)
            while last + 1 < len(refusals) and refusals[last + 1].started - refusals[first].started <= REFUSAL_WINDOW:
                last += 1
            if last - first + 1 >= REFUSAL_BURST:
                if bursts and first <= bursts[-1][1]:
                    bursts[-1][1] = last
                else:
                    bursts.append([first, last])
        for first, last in bursts:
            burst = refusals[first : last + 1]
            reasons = Counter(row.search.refusal_reason or NONE_LABEL for row in burst)
            anomalies.append(Anomaly(
                "refusal_burst", username,
                f"{username} had {len(burst)} requests refused between {_when(burst[0].started)} and "
                f"{_when(burst[-1].started)}; {REFUSAL_BURST} or more refusals within "
                f"{REFUSAL_WINDOW.total_seconds() / 60:g} minutes is flagged. Reasons: "
                f"{'; '.join(f'{reason} ({count})' for reason, count in reasons.most_common())}. "
                "Repeated refused attempts can mean someone is trying to get round the policy.",
                [row.search.id for row in burst],
            ))
    return anomalies


# --- rendering ------------------------------------------------------------------------------------


def _jsonable(value):
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def render_json(report: TransparencyReport) -> str:
    """The whole report as JSON (dates in ISO 8601)."""
    return json.dumps(asdict(report), default=_jsonable, indent=2, ensure_ascii=False, allow_nan=False)


_COUNT_FIELDS = [f.name for f in fields(Counts)]


def render_csv(report: TransparencyReport) -> str:
    """The grouped table as CSV: a header row, one row per group, then an '(all)' row with the totals. A filtered
    report has a column 'filter_<name>' per filter after the counts, holding its value on every row. Text that a
    spreadsheet would run as a formula is marked as text (``safe_cell``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    filters = list(report.filters.values())
    rows = [[report.grouped_by, *_COUNT_FIELDS, *(f"filter_{name}" for name in report.filters)]]
    rows += [[row.key, *(getattr(row.counts, name) for name in _COUNT_FIELDS), *filters] for row in report.groups]
    rows.append(["(all)", *(getattr(report.totals, name) for name in _COUNT_FIELDS), *filters])
    writer.writerows([[safe_cell(cell) for cell in row] for row in rows])
    return buffer.getvalue()


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 70rem; padding: 0 1rem; color: #1a1a1a; }
h1 { font-size: 1.6rem; } h2 { margin-top: 2rem; border-bottom: 1px solid #ccc; }
p.headline { font-size: 1.3rem; font-weight: 600; }
table { border-collapse: collapse; margin: 1rem 0; }
th, td { border: 1px solid #bbb; padding: 0.3rem 0.6rem; text-align: right; }
th[scope=row], td.text { text-align: left; }
thead th { background: #eee; }
caption { text-align: left; font-weight: 600; padding: 0.3rem 0; }
figure { margin: 1rem 0; } figure img { max-width: 100%; height: auto; }
.anomaly { border-left: 4px solid #b35900; padding: 0.2rem 1rem; margin: 1rem 0; background: #fff6ec; }
.filtered { border: 2px solid #b35900; padding: 0.5rem 1rem; background: #fff6ec; }
.table-scroll { overflow-x: auto; }
"""

_COUNT_HEADINGS = {
    "total": "All requests",
    "searches": "1:N searches",
    "comparisons": "1:1 comparisons",
    "completed": "Completed",
    "refused": "Refused",
    "users": "People",
    "cases": "Cases",
    "lead": "Leads",
    "no_lead": "No lead",
    "pending_review": "Pending review",
    "disputed": "Disputed",
    "no_candidates": "No candidates",
}


def _bar_chart(title: str, labels: list[str], values: list[int], axis_label: str, horizontal: bool) -> str:
    """A bar chart as a base64 PNG, drawn on a bare ``Figure`` (no pyplot)."""
    labels = [label.replace("$", r"\$") for label in labels]  # text as typed, never matplotlib mathtext
    figure = Figure(figsize=(8, max(3.0, 0.35 * len(labels) + 1.2)) if horizontal else (9, 4), layout="constrained")
    axes = figure.subplots()
    if not labels:
        axes.text(0.5, 0.5, "No requests in this period", ha="center", va="center", transform=axes.transAxes)
        axes.set_axis_off()
    elif horizontal:
        positions = range(len(labels))
        axes.bar_label(axes.barh(positions, values, color="#3366aa"), padding=2)
        axes.set_yticks(list(positions), labels)
        axes.invert_yaxis()
        axes.set_xlabel(axis_label)
        axes.margins(x=0.1)  # room for the value labels
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(True, axis="x", alpha=0.3)
    else:
        positions = list(range(len(labels)))
        axes.bar_label(axes.bar(positions, values, color="#3366aa"), padding=2)
        step = max(1, len(labels) // 24)
        axes.set_xticks(positions[::step], labels[::step], rotation=45, ha="right")
        axes.set_ylabel(axis_label)
        axes.margins(y=0.1)
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(True, axis="y", alpha=0.3)
    axes.set_title(title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _alt(title: str, data: dict[str, int]) -> str:
    if not data:
        return f"{title}: no requests in this period."
    shown = "; ".join(f"{key}: {value}" for key, value in list(data.items())[:24])
    more = f"; and {len(data) - 24} more (see the table below)" if len(data) > 24 else ""
    return f"Bar chart, {title}. {shown}{more}."


def _figure(title: str, data: dict[str, int], category: str, horizontal: bool) -> str:
    """The chart, with alt text giving its figures, and the same figures as a table in a <details>."""
    image = _bar_chart(title, list(data), list(data.values()), "Requests", horizontal)
    rows = "".join(f'<tr><th scope="row">{html.escape(key)}</th><td>{value:,}</td></tr>' for key, value in data.items())
    return (
        f'<figure><img src="data:image/png;base64,{image}" alt="{html.escape(_alt(title, data))}">'
        f"<figcaption>{html.escape(title)}</figcaption></figure>"
        f"<details><summary>Figures for “{html.escape(title)}”</summary><table>"
        f'<thead><tr><th scope="col">{category}</th><th scope="col">Requests</th></tr></thead>'
        f"<tbody>{rows}</tbody></table></details>"
    )


def _summary_table(report: TransparencyReport) -> str:
    totals = report.totals
    facts = [
        ("Requests (all)", f"{totals.total:,}"),
        ("1:N searches", f"{totals.searches:,}"),
        ("1:1 comparisons", f"{totals.comparisons:,}"),
        ("Completed", f"{totals.completed:,}"),
        ("Refused", f"{totals.refused:,}"),
        ("Different people", f"{totals.users:,}"),
        ("Different cases", f"{totals.cases:,}"),
        ("Requests without a case number", f"{report.requests_without_case:,}"),
        ("Requests per case (mean)", f"{report.searches_per_case_mean:g}"),
        ("Requests per case (most)", f"{report.searches_per_case_max:,}"),
        ("Leads confirmed", f"{totals.lead:,}"),
        ("Reviewed, no lead", f"{totals.no_lead:,}"),
        ("Pending review", f"{totals.pending_review:,}"),
        ("Disputed", f"{totals.disputed:,}"),
        ("No candidates", f"{totals.no_candidates:,}"),
    ]
    rows = "".join(f'<tr><th scope="row">{label}</th><td>{value}</td></tr>' for label, value in facts)
    return f"<table><caption>Summary</caption><tbody>{rows}</tbody></table>"


def _grouped_table(report: TransparencyReport) -> str:
    head = "".join(f'<th scope="col">{_COUNT_HEADINGS[name]}</th>' for name in _COUNT_FIELDS)

    def cells(counts: Counts) -> str:
        return "".join(f"<td>{getattr(counts, name):,}</td>" for name in _COUNT_FIELDS)

    body = "".join(
        f'<tr><th scope="row">{html.escape(row.key)}</th>{cells(row.counts)}</tr>' for row in report.groups
    )
    return (
        f'<div class="table-scroll"><table><caption>Requests by {html.escape(report.grouped_by)}</caption>'
        f'<thead><tr><th scope="col">{html.escape(report.grouped_by.capitalize())}</th>{head}</tr></thead>'
        f'<tbody>{body}</tbody><tfoot><tr><th scope="row">All</th>{cells(report.totals)}</tr></tfoot></table></div>'
    )


def _refusals_table(report: TransparencyReport) -> str:
    if not report.refusal_reasons:
        return "<p>No request was refused.</p>"
    rows = "".join(
        f'<tr><td class="text">{html.escape(reason)}</td><td>{count:,}</td></tr>'
        for reason, count in report.refusal_reasons.items()
    )
    return (
        '<table><caption>Refusal reasons</caption><thead><tr><th scope="col">Reason</th>'
        f'<th scope="col">Refusals</th></tr></thead><tbody>{rows}</tbody></table>'
    )


def _anomalies(report: TransparencyReport) -> str:
    if not report.anomalies:
        return "<p>No anomaly was flagged.</p>"
    return "".join(
        f'<section class="anomaly"><h3>{html.escape(ANOMALY_KINDS[anomaly.kind].capitalize())}: '
        f"{html.escape(anomaly.subject)}</h3><p>{html.escape(anomaly.explanation)}</p>"
        f"<p>Requests involved (search ids): {', '.join(str(i) for i in anomaly.search_ids)}</p></section>"
        for anomaly in report.anomalies
    )


def _filtered(report: TransparencyReport) -> str:
    if not report.filters:
        return ""
    return (
        f'<p class="filtered" role="note"><strong>Filtered report.</strong> Only requests with '
        f"{html.escape(_filters_in_words(report.filters))} are counted: this is not the whole record of face "
        "search use, and the anomaly flags look at these requests alone.</p>"
    )


def render_html_fragment(report: TransparencyReport) -> str:
    """The report's body, to put inside a page: headline, filters, notes, summary, anomaly flags, charts (inline PNG)
    and tables, with ``<h2>`` section headings; no document, styles or title. ``render_html`` wraps it into a page."""
    outcomes = {_OUTCOME_LABELS[outcome]: count for outcome, count in report.outcomes.items()}
    notes = "".join(f"<li>{html.escape(note)}</li>" for note in report.notes)
    return (
        f'<p class="headline">{html.escape(report.headline)}</p>'
        f"{_filtered(report)}"
        f"<p>Generated {report.generated_at:%Y-%m-%d %H:%M} UTC. Grouped by {html.escape(report.grouped_by)}. "
        f"Working hours for the out-of-hours flag: {html.escape(report.working_hours)}.</p>"
        f"<ul>{notes}</ul>"
        f"<h2>Summary</h2>{_summary_table(report)}"
        f"<h2>Anomalies</h2>{_anomalies(report)}"
        "<h2>Charts</h2>"
        f"{_figure('Requests per month', report.per_month, 'Month', horizontal=False)}"
        f"{_figure('Outcomes', outcomes, 'Outcome', horizontal=True)}"
        f"{_figure('Requests by purpose', report.by_purpose, 'Purpose', horizontal=True)}"
        f"<h2>Requests by {html.escape(report.grouped_by)}</h2>{_grouped_table(report)}"
        f"<h2>Refusals</h2>{_refusals_table(report)}"
    )


def render_html(report: TransparencyReport) -> str:
    """The report as one self-contained, accessible HTML page: inline CSS, charts as inline PNG, no external links."""
    title = f"Face search transparency report, {_day(report.since)} to {_day(report.until)}"
    if report.filters:
        title += f" (only {_filters_in_words(report.filters)})"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body><main>"
        f"<h1>{html.escape(title)}</h1>{render_html_fragment(report)}"
        "</main></body></html>\n"
    )
