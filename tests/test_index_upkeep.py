"""Retraining a gallery's index through the accountable system: on an admin's command (the CLI; audited as it starts
and ends; refused, saying why, when there is nothing to retrain), and in the server's quiet hour (once a day, as
"system"), while enrolments leave it to them (``index.retrain``)."""

from __future__ import annotations

import datetime as dt
import json
import threading

import pytest
from typer.testing import CliRunner

from facetrail.accountability.indexes import Indexes
from facetrail.accountability.service import Facetrail
from facetrail.cli import app
from facetrail.gallery import segments
from facetrail.gallery.enrol import items_from_folder
from facetrail.gallery.gallery import IndexState
from facetrail.gallery.index import CompressedIndex
from tests.fixtures.gallery import SERIAL

runner = CliRunner()


@pytest.fixture(autouse=True)
def small_lists(monkeypatch):
    """Compressed from 2 templates with one inverted list, outgrown at 4 and retrained with two: the four real
    photographs stand in for millions."""
    monkeypatch.setattr(CompressedIndex, "outgrown", lambda self, templates: self.nlist < 2)
    monkeypatch.setattr(segments, "choose_nlist", lambda templates: 1 if templates < 4 else 2)


def outgrown_county(datadir, admin_token, photo_folder, retrain: str) -> Facetrail:
    """The system with ``index.retrain = retrain`` and a gallery 'county' whose enrolment outgrew its index."""
    config = datadir.config_path.read_text()
    datadir.config_path.write_text(config.replace("compress_at = 50000", "compress_at = 2")
                                   .replace('retrain = "quiet_hour"', f'retrain = "{retrain}"'))
    system = Facetrail.open(datadir)
    admin = system.auth.authenticate(admin_token)
    system.admin.create_gallery(admin, "county", ["booking"])
    assert system.admin.enrol(admin, "county", items_from_folder(photo_folder, "booking"), SERIAL).count("enrolled") == 4
    assert system.galleries.get("county").index_state() == IndexState(templates=4, inverted_lists=1, outgrown=True)
    return system


def retrainings(system: Facetrail) -> list[tuple[str, str, dict]]:
    return [(e["actor"], e["action"], e["details"]) for e in system.audit.entries(limit=100)
            if e["action"].startswith("index_retrain")]


def test_an_admin_retrains_on_command_and_is_told_when_there_is_nothing_to_retrain(datadir, admin_token, photo_folder):
    system = outgrown_county(datadir, admin_token, photo_folder, "on_command")
    version = system.galleries.get("county").info().version
    system.close()
    result = runner.invoke(app, ["index", "retrain", "county", "--json"])
    assert result.exit_code == 0, result.output
    done = json.loads(result.stdout)
    assert {k: done[k] for k in ("gallery", "version", "templates", "lists_before", "lists_after", "force", "trigger")} == {
        "gallery": "county", "version": version, "templates": 4, "lists_before": 1, "lists_after": 2, "force": False,
        "trigger": "command"}
    refused = runner.invoke(app, ["index", "retrain", "county"])
    assert refused.exit_code == 2 and "2 inverted lists still suit its 4 templates" in refused.output
    forced = runner.invoke(app, ["index", "retrain", "county", "--force"])
    assert forced.exit_code == 0 and "2 -> 2 inverted lists for 4 templates" in forced.output
    system = Facetrail.open(datadir)
    try:
        assert [(actor, action, details["force"]) for actor, action, details in retrainings(system)] == [
            ("admin", "index_retraining_started", False), ("admin", "index_retrained", False),
            ("admin", "index_retraining_started", True), ("admin", "index_retrained", True)]
        assert retrainings(system)[0][2] == {"templates": 4, "inverted_lists": 1, "outgrown": True, "force": False,
                                             "trigger": "command"}
        assert system.audit.verify().ok
    finally:
        system.close()


def test_the_quiet_hour_retrains_outgrown_indexes_once_a_day_as_the_system(datadir, admin_token, photo_folder):
    system = outgrown_county(datadir, admin_token, photo_folder, "quiet_hour")
    try:
        assert system.indexes.quiet_hour(dt.datetime(2026, 12, 5, 2, 59)) == []
        done = system.indexes.quiet_hour(dt.datetime(2026, 12, 5, 3, 0))
        assert [(d["gallery"], d["lists_before"], d["lists_after"], d["trigger"]) for d in done] == [("county", 1, 2, "quiet_hour")]
        assert [(actor, action) for actor, action, _ in retrainings(system)] == [
            ("system", "index_retraining_started"), ("system", "index_retrained")]
        assert system.galleries.get("county").index_state().outgrown is False
        assert system.indexes.quiet_hour(dt.datetime(2026, 12, 5, 3, 59)) == []  # once a day
    finally:
        system.close()


def test_the_server_timer_looks_at_the_clock_until_stopped(datadir, monkeypatch):
    looked = threading.Event()
    monkeypatch.setattr(Indexes, "quiet_hour", lambda self, now: looked.set() or [])
    system = Facetrail.open(datadir)
    try:
        timer = system.indexes.start_timer(interval=0.01)
        assert looked.wait(5)
        timer.stop()
        assert not timer.is_alive()
    finally:
        system.close()
