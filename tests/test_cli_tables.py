"""The command line's tables in a narrow or non-terminal output (COLUMNS=80): columns wrap between words, and no
value (a case number, a time, an audit entry's details) is ever cut short."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from facetrail.cli import app
from facetrail.store import readable_time
from tests.fixtures.images import jpeg
from tests.fixtures.world import SEARCH_FIELDS, actors

runner = CliRunner()
CASE = "24-000987"


def invoke_as(token: str, *args: str, columns: int = 80) -> str:
    result = runner.invoke(app, list(args), env={"FACETRAIL_TOKEN": token, "COLUMNS": str(columns)})
    assert result.exit_code == 0, (args, result.output)
    return result.stdout


def search_waiting_for_review(world, faces) -> dict:
    """A search by ivan, with a long note, waiting for the examiners."""
    from facetrail.accountability.service import CaseRequest

    ivan, = actors(world, "ivan")
    request = CaseRequest(**{**SEARCH_FIELDS, "case_number": CASE,
                             "note": "a bank robbery on the corner of a street with a long name, seen from the camera"})
    return world.system.searches.search(ivan, jpeg(faces["obama3.jpg"], 700), request)


def test_the_review_queue_keeps_every_value_whole_at_80_columns(world, faces):
    searched = search_waiting_for_review(world, faces)
    queue = json.loads(invoke_as(world.tokens["erin"], "review", "queue", "--json"))
    assert [item["case_number"] for item in queue] == [CASE]
    shown = invoke_as(world.tokens["erin"], "review", "queue")
    started = readable_time(queue[0]["started_at"])
    assert CASE in shown and started in shown, shown
    assert "criminal_investigation" in shown and "…" not in shown, shown
    assert str(searched.search_id) in shown


def test_audit_show_prints_a_table_with_readable_details_and_json_on_request(world, faces):
    search_waiting_for_review(world, faces)
    entries = json.loads(invoke_as(world.tokens["alma"], "audit", "show", "--action", "search", "--json"))
    assert [entry["details"]["case_number"] for entry in entries] == [CASE]
    shown = invoke_as(world.tokens["alma"], "audit", "show", "--action", "search")
    assert not shown.lstrip().startswith("["), shown  # a table, not JSON
    entry = entries[0]
    assert readable_time(entry["recorded_at"]) in shown and f"case_number: {CASE}" in shown, shown
    assert "…" not in shown and entry["details"]["probe_sha256"] in shown, shown  # a hash is one word, kept whole
