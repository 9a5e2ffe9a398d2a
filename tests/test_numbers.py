"""Honest numbers one way everywhere (the false-match rate's wording in the API, the CLI and the lead report), the lead
report as a file, the differences between groups flagged, and the case view's scope, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import io
import re

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from facetrail.accountability.leads import LEAD_NOTICE
from facetrail.accountability.context import NOTICE
from facetrail.cli import app
from facetrail.cli.common import out
from facetrail.config import ReportsConfig, local_time, settings_from_dict
from facetrail.engine.calibration import false_match_rate_text
from facetrail.errors import ConfigError, NotFoundError, PermissionDeniedError
from facetrail.evaluation.published import differences
from facetrail.engine.framing import FACE_FRAME_SIDE
from tests.fixtures.images import jpeg
from tests.fixtures.world import CASE, SEARCH_FIELDS, V1, actors
from tests.security.helpers import add_user, allow_roles_together, run_search
from tests.security.helpers import decide as decide_on

IMPOSTOR_PAIRS = 78_000
BELOW = "fewer than 1 in 78,000 (no impostor pair came this close)"
BEYOND_TAIL = ("fewer than 1 in 780,000, the most the fitted tail of the impostor distances allows this close; no "
               "impostor pair of 78,000 came this close")
"""The wording of the sample's mated pair under ``calibrate``: far below its impostors, beyond the tail's reach."""
SCIENTIFIC = re.compile(r"\d\.\d+e[+-]\d\d")


def test_an_estimate_is_worded_with_the_calibrations_resolution():
    assert false_match_rate_text(0.0, IMPOSTOR_PAIRS) == BELOW
    assert false_match_rate_text(1e-7, IMPOSTOR_PAIRS) == BELOW  # an older, larger calibration's figure: still below
    assert false_match_rate_text(None, None) == "not calibrated"
    assert false_match_rate_text(1 / IMPOSTOR_PAIRS, IMPOSTOR_PAIRS) == "1 in 78,000 (0.0013%)"
    assert false_match_rate_text(0.0004, 10**6) == "1 in 2,500 (0.040%)"
    assert false_match_rate_text(0.6, 100) == "60%"


def test_times_read_in_the_configured_zone_and_an_unknown_zone_is_refused():
    zone = settings_from_dict({"reports": {"time_zone": "America/Los_Angeles"}}).reports.zone()
    assert local_time(dt.datetime(2026, 12, 5, 17, 14), zone) == "5 December 2026, 09:14 PST (UTC-08:00)"
    assert local_time(dt.datetime(2026, 7, 5, 17, 14, tzinfo=dt.timezone.utc), zone) == "5 July 2026, 10:14 PDT (UTC-07:00)"
    with pytest.raises(ConfigError, match="reports.time_zone: 'Mars/Olympus' is not a known IANA time zone"):
        settings_from_dict({"reports": {"time_zone": "Mars/Olympus"}})


def calibrate(world) -> None:
    """A calibration of 78,000 impostor pairs, none closer than 0.65: the sample's mated pair lies below them all."""
    system = world.system
    system.calibrations.save_calibration(*actors(world, "admin"), system.context.engines.model_name,
                                  np.linspace(0.65, 1.3, IMPOSTOR_PAIRS), f"test impostors: {IMPOSTOR_PAIRS:,} pairs")


def search(world, faces, case: str = CASE, user: str = "ivan") -> dict:
    probe = jpeg(faces["obama3.jpg"], 700)
    response = world.client.post(f"{V1}/searches", headers=world.as_user(user), files={"probe": ("p.jpg", probe, "image/jpeg")},
                                 data={**SEARCH_FIELDS, "case_number": case})
    assert response.status_code == 201, response.text
    return response.json()


def test_the_api_and_the_cli_word_an_estimate_below_the_resolution_alike(world, faces, monkeypatch):
    calibrate(world)
    found = search(world, faces)
    first, second = found["candidates"]
    assert (first["false_match_rate"], first["false_match_rate_text"]) == (1 / 780_000, BEYOND_TAIL)  # never zero
    assert first["estimate"]["basis"] == "tail bound" and first["estimate"]["pairs_this_close"] == 0
    assert first["look_alikes"] == {
        "gallery_subjects": 2, "expected": 1 / 780_000, "low": None, "high": None, "chance_any": pytest.approx(1 / 780_000),
        "count_text": "fewer than 0.0000013", "sentence": "In this gallery of 2 people, fewer than 0.0000013 would be "
        "expected to come this close by chance; the chance that any one does is under 0.1%."}
    assert second["false_match_rate"] > 0 and second["false_match_rate_text"].startswith("1 in ")
    assert second["estimate"]["basis"] == "observed" and found["gallery_subjects"] == 2
    shown = world.client.get(f"{V1}/searches/{found['search_id']}", headers=world.as_user("ivan")).json()
    assert shown["impostor_pairs"] == IMPOSTOR_PAIRS and shown["gallery_subjects"] == 2
    assert [c["false_match_rate_text"] for c in shown["candidates"]] == [BEYOND_TAIL, second["false_match_rate_text"]]

    monkeypatch.setenv("FACETRAIL_TOKEN", world.tokens["ivan"])
    monkeypatch.setattr(out, "width", 400)  # one table row a line
    printed = CliRunner().invoke(app, ["review", "show", str(found["search_id"])])
    assert printed.exit_code == 0, printed.output
    assert BEYOND_TAIL in printed.output and "fewer than 0.0000013" in printed.output
    assert second["false_match_rate_text"] in printed.output
    assert not SCIENTIFIC.search(printed.output)  # no 0.00e+00


def decide(world, search_id: int, examiner: str, comparison: dict | None) -> str:
    body = {"rank": 1, "decision": "possible_lead", "notes": f"{examiner}'s notes", "comparison": comparison}
    response = world.client.post(f"{V1}/reviews/{search_id}/decisions", headers=world.as_user(examiner), json=body)
    assert response.status_code == 201, response.text
    return response.json()["outcome"]


def test_the_lead_report_is_a_file_with_local_times_both_comparisons_and_faces_at_one_scale(world, faces, monkeypatch):
    calibrate(world)
    context = world.system.context
    monkeypatch.setattr(context, "settings", dataclasses.replace(context.settings, reports=ReportsConfig("America/Los_Angeles")))
    search_id = search(world, faces)["search_id"]
    decide(world, search_id, "erin", {"features": {"eyes": "similar", "ears": "not_visible"}, "conclusion": "strong_support_same"})
    assert decide(world, search_id, "ezra", None) == "lead"

    response = world.client.get(f"{V1}/leads/{search_id}", headers=world.as_user("ivan"))
    assert response.status_code == 200
    assert response.headers["content-disposition"] == f'attachment; filename="lead-report-search-{search_id}.html"'
    page = response.text
    assert page.count(LEAD_NOTICE) == 1 and NOTICE not in page  # the notice once
    assert re.search(r"\d{1,2} [A-Z][a-z]+ 20\d\d, \d\d:\d\d P[SD]T \(UTC-0[78]:00\)", page)  # the zone configured
    assert not re.search(r"\d\d:\d\d:\d\d", page)  # no ISO timestamps
    assert "Structured comparisons, feature by feature" in page
    assert "Strong support for the same person" in page and "<td>similar</td>" in page and "<td>not visible</td>" in page
    assert "ezra recorded the decision without a structured comparison." in page
    assert f"estimated false-match rate at this distance: {BEYOND_TAIL}" in page
    assert "In this gallery of 2 people, fewer than 0.0000013 would be expected to come this close by chance" in page
    assert "county (version 1, 2 people then)" in page
    limits = re.search(r"<h2>The model's limits</h2><p class='limits'>(.*?)</p>", page).group(1)
    assert limits.startswith("On labelled photographs (lfw-dev), this model misses ") and "of same-person pairs" in limits
    assert "in a gallery of 10,000,000 people" in limits  # the shipped figures, cited in one sentence
    pictures = re.findall(r"data:image/jpeg;base64,([A-Za-z0-9+/=]+)", page)
    assert len(pictures) == 2
    sizes = {Image.open(io.BytesIO(base64.b64decode(picture))).size for picture in pictures}
    assert sizes == {(FACE_FRAME_SIDE, FACE_FRAME_SIDE)}  # probe and candidate framed alike, side by side


def test_a_large_difference_between_groups_is_flagged_in_a_plain_sentence():
    report = {"verification": {"worst_to_best": {
        "fnmr": {"worst_group": "female", "worst": 0.10, "best_group": "male", "best": 0.02, "ratio": 5.0,
                 "ratio_ci95_bootstrap": [2.2, 9.9]},
        "fmr": {"worst_group": "male", "worst": 0.0011, "best_group": "female", "best": 0.001, "ratio": 1.1,
                "ratio_ci95_bootstrap": [0.7, 1.6]}}},
        "identification": {"worst_to_best": {
            "fpir": {"worst_group": "older", "worst": 0.3, "best_group": "younger", "best": 0.18, "ratio": 1.6,
                     "ratio_ci95_bootstrap": [0.9, 2.5]}}}}
    found = {d["rate"]: d for d in differences(report)}
    assert found["fnmr"]["large"] and found["fnmr"]["sentence"] == (
        "Large difference in the false non-match rate: for female, two photographs of the same person were judged "
        "different 5.0 times as often as for male (10.00% against 2.00%); the 95% interval of the ratio is 2.20–9.90, "
        "so it is not chance.")
    assert not found["fmr"]["large"] and found["fmr"]["sentence"].startswith("No large difference in the false match rate")
    assert found["fpir"]["large"] and found["fpir"]["sentence"].endswith("so it may yet be chance.")


def test_the_case_view_is_scoped_to_the_supervisors_unit_and_audited(world, faces):
    system = world.system
    ivan_search = search(world, faces, "24-000555")["search_id"]
    tina_search = search(world, faces, "24-000555", user="tina")["search_id"]  # unit Vice, same case
    vice_only = search(world, faces, "24-000556", user="tina")["search_id"]
    refused = world.client.post(f"{V1}/searches", headers=world.as_user("ivan"),
                                files={"probe": ("p.jpg", jpeg(faces["obama3.jpg"], 700), "image/jpeg")},
                                data={**SEARCH_FIELDS, "case_number": "24-000555", "purpose": "curiosity"})
    assert refused.status_code in (403, 422)
    decide(world, ivan_search, "erin", {"features": {"nose": "similar"}, "conclusion": "support_same"})
    sam, alma, ivan = actors(world, "sam", "alma", "ivan")
    world.client.get(f"{V1}/searches/{ivan_search}", headers=world.as_user("sam"))  # a look, to be seen in the case

    case = system.cases.case_view(sam, "24-000555")
    assert case["unit"] == "RHD"
    shown = {s["search_id"]: s for s in case["searches"]}
    assert ivan_search in shown and tina_search not in shown  # Vice's search is not for RHD's supervisor
    assert [s["refusal_reason"] != "" for s in case["refusals"]] == [True]
    assert [(d["by"], d["search_id"], d["comparison"]["conclusion"]) for d in case["decisions"]] == [("erin", ivan_search, "support_same")]
    views = {(e["actor"], e["action"], e["target"]) for e in case["audit"]}
    assert ("sam", "search_viewed", f"search:{ivan_search}") in views and ("erin", "review_decision", f"search:{ivan_search}") in views

    every = system.cases.case_view(alma, "24-000555")
    assert every["unit"] is None and {ivan_search, tina_search} <= {s["search_id"] for s in every["searches"]}
    assert ("sam", "case_viewed", "case:24-000555") in {(e["actor"], e["action"], e["target"]) for e in every["audit"]}

    with pytest.raises(PermissionDeniedError):
        system.cases.case_view(ivan, "24-000555")
    with pytest.raises(NotFoundError, match="no case 24-000556"):
        system.cases.case_view(sam, "24-000556")  # Vice's case only: as if it did not exist to RHD
    assert vice_only in {s["search_id"] for s in system.cases.case_view(alma, "24-000556")["searches"]}
    denied = [(e["actor"], e["target"]) for e in system.audit.entries(action="access_denied")]
    assert ("ivan", "case:24-000555") in denied and ("sam", "case:24-000556") in denied

    assert world.client.get(f"{V1}/cases/24-000555", headers=world.as_user("ivan")).status_code == 403
    answered = world.client.get(f"{V1}/cases/24-000555", headers=world.as_user("sam"))
    assert answered.status_code == 200 and answered.json()["decisions"][0]["comparison"]["features"] == {"nose": "similar"}


def test_the_case_view_withholds_decisions_from_one_who_may_still_decide_on_the_case(world, faces):
    allow_roles_together(world, "examiner", "supervisor")
    add_user(world, "esme", ["examiner", "supervisor"], "RHD")
    search_id = run_search(world, faces)
    for examiner in ("erin", "ezra"):  # candidate 1 a lead; candidate 2 still open to esme
        assert decide_on(world, examiner, search_id, "possible_lead", notes=f"{examiner}'s reasons").status_code == 201
    answered = world.client.get(f"{V1}/cases/{CASE}", headers=world.as_user("esme"))
    assert answered.status_code == 200
    shown = answered.json()
    assert shown["decisions"] == [] and shown["leads"] == [] and [s["outcome"] for s in shown["searches"]] == [None]
    assert "reasons" not in answered.text and "possible_lead" not in answered.text  # not through the trail either
    assert decide_on(world, "esme", search_id, "not_a_match", rank=2).status_code == 201
    seen = world.client.get(f"{V1}/cases/{CASE}", headers=world.as_user("esme")).json()
    assert [d["by"] for d in seen["decisions"]] == ["erin", "ezra", "esme"] and seen["leads"] == [search_id]
