"""What a candidate is worth: the estimated false-match rate and what it rests on (observed, few pairs, extrapolated
from a fitted tail, a bound; never zero), the look-alike count in a gallery, a gallery's own calibration from its
subjects (duplicates left out), and searches that keep the calibration and gallery size they ran under."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from facetrail.cli import app
from facetrail.config import CalibrationConfig
from facetrail.engine.calibration import CalibrationSet, CalibrationTable
from facetrail.errors import ConfigError, PermissionDeniedError
from facetrail.gallery.calibration import calibrate_gallery
from facetrail.gallery.enrol import items_from_folder
from tests.fixtures.images import jpeg, save_resized
from tests.fixtures.world import SEARCH_FIELDS, V1, actors

NORMAL = stats.norm(0.9, 0.08)
"""Impostor distances of a model, for tests with a known false-match rate at every distance."""


@pytest.fixture(scope="module")
def normal_table() -> CalibrationTable:
    return CalibrationTable.from_impostors(NORMAL.rvs(400_000, random_state=np.random.default_rng(7)), "m", source="normal")


def test_an_estimate_says_what_it_rests_on_and_is_never_zero(normal_table):
    observed = normal_table.estimate(0.62)
    assert observed.basis == "observed" and observed.pairs_this_close >= 10
    assert observed.rate == pytest.approx(NORMAL.cdf(0.62), rel=0.2) and observed.text.startswith("1 in ")

    extrapolated = normal_table.estimate(0.56)  # 1 in 94,000 by the model: ~4 pairs of 400,000 expected
    assert extrapolated.basis == "extrapolated" and extrapolated.pairs_this_close < 10
    assert extrapolated.low < extrapolated.rate < extrapolated.high
    # a normal's tail ends faster than any the fit allows (shape >= 0): the estimate errs high, never low
    assert NORMAL.cdf(0.56) < extrapolated.rate < 3 * NORMAL.cdf(0.56)
    assert extrapolated.text.startswith("about 1 in ") and "extrapolated from the fitted tail" in extrapolated.text
    assert "95% interval 1 in " in extrapolated.text and "of 400,000 came this close" in extrapolated.text

    beyond = normal_table.estimate(0.2)
    assert beyond.basis == "tail bound" and beyond.rate >= 1 / (10 * 400_000) > 0  # an upper bound, never zero
    assert beyond.text.startswith("fewer than 1 in ") and "no impostor pair of 400,000 came this close" in beyond.text

    few_table = CalibrationTable.from_impostors(np.r_[[0.5, 0.55, 0.6], np.linspace(0.8, 1.2, 5_000)], "m")
    assert few_table.tail is None  # too small to fit a tail
    few = few_table.estimate(0.6)
    assert (few.basis, few.pairs_this_close) == ("few", 3)
    assert few.low < 3 / 5_003 < few.high and few.low == pytest.approx(stats.beta.ppf(0.025, 3, 5_001))
    assert "only 3 impostor pairs of 5,003 came this close (95% interval 1 in " in few.text
    none = few_table.estimate(0.3)
    assert (none.basis, none.rate, none.text) == ("bound", 1 / 5_003, "fewer than 1 in 5,003 (no impostor pair came this close)")


def test_a_table_with_its_tail_survives_json(normal_table):
    again = CalibrationTable.from_json(json.loads(json.dumps(normal_table.to_json())))
    for distance in (0.2, 0.5, 0.56, 0.7, 1.5):
        assert again.estimate(distance) == normal_table.estimate(distance)


def test_the_look_alike_count_is_the_other_people_times_the_rate(normal_table):
    estimate = normal_table.estimate(0.62)
    county = estimate.look_alikes(9_012_344)
    assert county.expected == pytest.approx(9_012_343 * estimate.rate)
    assert county.chance_any == pytest.approx(1 - (1 - estimate.rate) ** 9_012_343)
    assert county.sentence.startswith("In this gallery of 9,012,344 people, about ")
    assert "would be expected to come this close by chance; the chance that at least one does is over 99.9%." in county.sentence
    expected = 9_012_343 * estimate.rate
    shown = round(expected, 1 - math.floor(math.log10(expected)))
    assert f"about {shown:,.0f} would be expected" in county.sentence  # two significant figures
    extrapolated = normal_table.estimate(0.56).look_alikes(1_000_000)
    assert extrapolated.low < extrapolated.expected < extrapolated.high and "(95% interval " in extrapolated.sentence
    alone = normal_table.estimate(0.3).look_alikes(1)
    assert alone.expected == 0 and "nobody else in it could come this close" in alone.sentence


def test_per_group_calibrations_show_the_highest_estimate_with_the_spread():
    rng = np.random.default_rng(3)
    base = CalibrationTable.from_impostors(rng.normal(0.9, 0.08, 5_000), "m", source="all")
    groups = {"f": CalibrationTable.from_impostors(rng.normal(0.85, 0.08, 5_000), "m"),
              "m": CalibrationTable.from_impostors(rng.normal(0.95, 0.08, 5_000), "m")}
    estimate = CalibrationSet(base, groups).estimate(0.7)
    assert estimate.group == "f" and estimate.rate == max(e.rate for e in estimate.spread)
    assert [e.group for e in estimate.spread] == ["", "f", "m"]
    assert [g["group"] for g in estimate.to_dict()["by_group"]] == ["all", "f", "m"]


def test_a_gallery_calibration_leaves_out_pairs_too_close_for_different_people(galleries, photo_folder):
    from tests.fixtures.gallery import enrol_folder

    galleries.create("county", ["booking"])
    gallery = galleries.get("county")
    enrol_folder(gallery, photo_folder)  # B-1001 (two photographs of Obama) and B-2002 (Biden, and his mirror image)
    _, subjects, vectors, _ = gallery.subject_templates()
    found = calibrate_gallery(gallery, CalibrationConfig(pairs=1_000, duplicate_distance=0.3))
    assert (found.subjects, found.all_pairs, found.excluded_pairs) == (2, True, 0)
    between = {float(np.linalg.norm(a - b)) for a, s in zip(vectors, subjects) for b, t in zip(vectors, subjects) if s < t}
    assert any(abs(float(found.distances[0]) - d) < 1e-5 for d in between)  # one photograph of each subject
    too_close = calibrate_gallery(gallery, CalibrationConfig(pairs=1_000, duplicate_distance=1.9))
    assert (too_close.distances.size, too_close.excluded_pairs) == (0, 1)


def test_sampled_pairs_are_pairs_of_different_subjects_drawn_evenly():
    from facetrail.gallery.calibration import _sampled_distances

    rng = np.random.default_rng(0)
    points = np.eye(64, dtype=np.float32)  # every pair of different rows is sqrt(2) apart, a row and itself 0
    sampled = _sampled_distances(points, 500, rng)
    assert sampled.size == 500 and np.allclose(sampled, math.sqrt(2))


def test_gallery_calibrate_is_an_admins_audited_and_later_searches_use_it(world, faces, monkeypatch):
    system = world.system
    admin, ivan = actors(world, "admin", "ivan")
    with pytest.raises(PermissionDeniedError):
        system.calibrations.calibrate_gallery(ivan, "county")
    with pytest.raises(ConfigError, match="calibration.pairs: must be between 1,000 and 1,000,000,000"):
        system.calibrations.calibrate_gallery(admin, "county", pairs=10)
    model = system.context.engines.model_name
    system.calibrations.save_calibration(admin, model, np.linspace(0.65, 1.3, 2_000), "photographs: 2,000 pairs")
    before = search(world, faces)

    monkeypatch.setenv("FACETRAIL_TOKEN", world.tokens["admin"])
    ran = CliRunner().invoke(app, ["gallery", "calibrate", "county", "--pairs", "5000", "--json"])
    assert ran.exit_code == 0, ran.output
    summary = json.loads(ran.output)
    assert (summary["subjects"], summary["impostor_pairs"], summary["all_pairs"]) == (2, 1, True)
    assert summary["source"].startswith("gallery county (version 1): 1 impostor pairs, every pair of its 2 subjects")
    entry = [e for e in system.audit.entries() if e["action"] == "calibration_saved"][-1]
    assert entry["actor"] == "admin" and entry["details"]["calibration_id"] == summary["calibration_id"]

    after = search(world, faces)
    assert after["calibration"] == summary["source"] and before["calibration"] == "photographs: 2,000 pairs"
    assert after["candidates"][0]["estimate"]["impostor_pairs"] == 1
    # the earlier search still shows the calibration it ran under
    shown = world.client.get(f"{V1}/searches/{before['search_id']}", headers=world.as_user("ivan")).json()
    assert shown["calibration"] == "photographs: 2,000 pairs" and shown["impostor_pairs"] == 2_000
    assert [c["false_match_rate_text"] for c in shown["candidates"]] == [c["false_match_rate_text"] for c in before["candidates"]]


def search(world, faces) -> dict:
    response = world.client.post(f"{V1}/searches", headers=world.as_user("ivan"), data=SEARCH_FIELDS,
                                 files={"probe": ("p.jpg", jpeg(faces["obama3.jpg"], 700), "image/jpeg")})
    assert response.status_code == 201, response.text
    return response.json()


def test_an_enrolment_that_grows_the_gallery_calibrates_it_again_from_its_subjects(world, faces, tmp_path, monkeypatch):
    system = world.system
    context = system.context
    monkeypatch.setattr(context, "settings", dataclasses.replace(context.settings, calibration=CalibrationConfig(
        pairs=1_000, recalibrate_growth=0.5, recalibrate_from_subjects=3)))
    admin, = actors(world, "admin")
    rules = dataclasses.replace(context.settings.enrolment, workers=1)

    def enrol(subject: str, name: str, mirror: bool = False) -> None:
        save_resized(faces[name], tmp_path / subject / subject / "front.jpg", 500, mirror=mirror)
        system.admin.enrol(admin, "county", items_from_folder(tmp_path / subject, "booking"), rules)

    def gallery_calibrations() -> list[dict]:
        return [e["details"] for e in system.audit.entries() if e["action"] == "calibration_saved"]

    enrol("B-3003", "obama2.jpg")  # 3 subjects: the gallery's first own calibration
    assert [(c["scope"], c["subjects"]) for c in gallery_calibrations()] == [("gallery", 3)]
    assert gallery_calibrations()[0]["excluded_pairs"] == 0 and gallery_calibrations()[0]["impostor_pairs"] == 3
    enrol("B-4004", "obama3.jpg")  # 4 < 3 × 1.5: not grown enough
    assert len(gallery_calibrations()) == 1
    enrol("B-5005", "biden.jpg", mirror=True)  # 5 ≥ 4.5
    assert [(c["scope"], c["subjects"]) for c in gallery_calibrations()] == [("gallery", 3), ("gallery", 5)]
    assert system.admin.gallery_details(admin, "county")["calibration"]["impostor_pairs"] == gallery_calibrations()[-1]["impostor_pairs"]


def test_per_group_calibrations_from_an_evaluation_give_searches_the_highest_estimate(world, faces):
    system = world.system
    admin, = actors(world, "admin")
    model = system.context.engines.model_name
    kept = system.calibrations.save_calibration(admin, model, np.linspace(0.7, 1.3, 3_000), "labelled set", groups={
        "f": np.linspace(0.75, 1.3, 2_000), "m": np.linspace(0.85, 1.3, 2_000), "one person": np.array([np.inf])})
    assert kept.startswith("calibration ") and "per-group calibrations" in kept
    found = search(world, faces)
    assert found["calibration"] == "labelled set; per group (f, m), the highest estimate shown"
    biden = found["candidates"][1]["estimate"]  # far apart: the groups' estimates differ
    assert biden["group"] == max(biden["by_group"], key=lambda e: e["rate"])["group"]
    assert [e["group"] for e in biden["by_group"]] == ["all", "f", "m"]
    assert [e["details"]["scope"] for e in system.audit.entries() if e["action"] == "calibration_saved"] == ["photographs", "group", "group"]
