"""Evaluation protocols: hand-computed examples, and the CLI on real photographs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from facetrail.cli import app
from facetrail.errors import FacetrailError
from facetrail.evaluation.datasets import read_groups, read_pairs
from facetrail.evaluation.identification import identification_report, split_identities
from facetrail.evaluation.templates import ImageTemplate
from facetrail.evaluation.verification import verification_report
from tests.fixtures.datadir import ADMIN_PASSWORD

runner = CliRunner()


def template(path: str, *coordinates: float) -> ImageTemplate:
    """A 2-d template (enough for hand computation); no coordinates means a failure to enrol."""
    vector = np.array(coordinates, dtype=np.float32) if coordinates else None
    return ImageTemplate(Path(path), vector, "" if coordinates else "no face found", "hog" if coordinates else "", 1)


def test_pairs_file_parsing(tmp_path):
    pairs_file = tmp_path / "pairs.txt"
    pairs_file.write_text("2\t1\nAnn\t1\t2\nAnn\t1\tBob\t3\n")
    same, different = read_pairs(pairs_file, tmp_path / "img")
    assert same.same and same.first == tmp_path / "img" / "Ann" / "Ann_0001.jpg" and same.second.name == "Ann_0002.jpg"
    assert not different.same and different.second == tmp_path / "img" / "Bob" / "Bob_0003.jpg"
    pairs_file.write_text("header\nAnn\tone\t2\n")
    with pytest.raises(FacetrailError, match=r"pairs.txt:2"):
        read_pairs(pairs_file, tmp_path)


def test_verification_report_matches_hand_computation(tmp_path):
    pairs_file = tmp_path / "pairs.txt"
    pairs_file.write_text("3\t3\nAnn\t1\t2\nBob\t1\t2\nCy\t1\t2\nAnn\t1\tBob\t1\nAnn\t2\tCy\t1\nBob\t2\tCy\t2\n")
    pairs = read_pairs(pairs_file, Path("i"))
    templates = {
        Path("i/Ann/Ann_0001.jpg"): template("a1", 0.0, 0.0),
        Path("i/Ann/Ann_0002.jpg"): template("a2", 0.3, 0.4),  # genuine distance 0.5
        Path("i/Bob/Bob_0001.jpg"): template("b1", 3.0, 0.0),
        Path("i/Bob/Bob_0002.jpg"): template("b2", 3.0, 0.7),  # genuine distance 0.7: a false non-match at 0.6
        Path("i/Cy/Cy_0001.jpg"): template("c1", 0.0, 3.0),
        Path("i/Cy/Cy_0002.jpg"): template("c2"),  # failed to enrol
    }
    report = verification_report(pairs, templates, default_threshold=0.6, folds=2)
    # pairs: Ann 0.5 ok; Bob 0.7 wrong; Cy failed (error); Ann1-Bob1 3.0 ok; Ann2-Cy1 ~2.62 ok; Bob2-Cy2 failed (error)
    assert report["failed_pairs"] == 2
    assert report["accuracy_at_default_threshold"]["accuracy"] == pytest.approx(3 / 6)
    assert report["accuracy_at_default_threshold"]["fnmr"] == pytest.approx(2 / 3)  # Bob's 0.7 and Cy's failure
    assert report["accuracy_at_default_threshold"]["fmr"] == 0.0
    assert report["enrolment"]["failures_to_enrol"] == 1 and report["enrolment"]["images"] == 6
    assert report["enrolment"]["failed_images"] == [{"path": "c2", "reason": "no face found"}]
    # genuine [0.5, 0.7, inf] vs impostor [3.0, 2.62, inf]: 0.5 and 0.7 are below all three impostors (6 wins),
    # the inf-inf tie counts half, inf genuine loses to both finite impostors: AUC = 6.5 / 9
    assert report["roc_auc"] == pytest.approx(6.5 / 9)


def test_verification_per_group_reports_worst_to_best(tmp_path):
    pairs_file = tmp_path / "pairs.txt"
    pairs_file.write_text("2\t2\nAnn\t1\t2\nBob\t1\t2\nAnn\t1\tAl\t1\nBob\t1\tBea\t1\n")
    pairs = read_pairs(pairs_file, Path("i"))
    templates = {
        Path("i/Ann/Ann_0001.jpg"): template("a1", 0.0, 0.0),
        Path("i/Ann/Ann_0002.jpg"): template("a2", 0.2, 0.0),
        Path("i/Al/Al_0001.jpg"): template("al", 2.0, 0.0),
        Path("i/Bob/Bob_0001.jpg"): template("b1", 5.0, 5.0),
        Path("i/Bob/Bob_0002.jpg"): template("b2", 5.0, 5.9),  # 0.9: false non-match
        Path("i/Bea/Bea_0001.jpg"): template("be", 5.0, 5.5),  # 0.5: false match
    }
    groups = {"Ann": "north", "Al": "north", "Bob": "south", "Bea": "south"}
    report = verification_report(pairs, templates, 0.6, groups=groups, folds=2)
    by_group = report["groups"]["by_group"]
    assert by_group["north"]["accuracy_at_default_threshold"]["accuracy"] == 1.0
    assert by_group["south"]["accuracy_at_default_threshold"]["accuracy"] == 0.0
    ratio = report["groups"]["worst_to_best"]["error_rate_at_default_threshold"]
    assert (ratio["worst_group"], ratio["best_group"], ratio["ratio"]) == ("south", "north", float("inf"))


def test_identification_split_and_figures():
    identities = {
        "ann": [Path("ann1"), Path("ann2"), Path("ann3")],
        "bob": [Path("bob1"), Path("bob2")],
        "cy": [Path("cy1")],  # one image: unmated probe
    }
    split = split_identities(identities, gallery_per_subject=1, distractors=[Path("d1")])
    assert split.gallery == {"ann": [Path("ann1")], "bob": [Path("bob1")], "distractor:d1": [Path("d1")]}
    assert split.mated == [("ann", Path("ann2")), ("ann", Path("ann3")), ("bob", Path("bob2"))]
    assert split.unmated == [("cy", Path("cy1"))]
    templates = {
        Path("ann1"): template("ann1", 0.0, 0.0),
        Path("bob1"): template("bob1", 1.0, 0.0),
        Path("d1"): template("d1", 0.0, 1.0),
        Path("ann2"): template("ann2", 0.1, 0.0),  # mate at rank 1 (0.1)
        Path("ann3"): template("ann3", 0.9, 0.0),  # bob1 at 0.1 is nearer: mate at rank 2 (0.9)
        Path("bob2"): template("bob2"),  # failed: a miss
        Path("cy1"): template("cy1", 0.0, 0.7),  # nearest d1 at 0.3
    }
    report = identification_report(split, templates, candidate_list_length=5)
    assert report["cmc"] == {"rank_1": pytest.approx(1 / 3), "rank_5": pytest.approx(2 / 3)}
    assert (report["mated_probes"], report["unmated_probes"], report["gallery_subjects"]) == (3, 1, 3)
    # one unmated probe: at FPIR 0.01 nothing may be returned below 0.3, so only distances < 0.3 are hits
    point = report["fnir_at_fpir"]["0.01"]
    assert point["threshold"] < 0.3 and point["fnir"] == pytest.approx(2 / 3) and point["resolvable"] is False
    assert report["enrolment"]["probes"]["failures_to_enrol"] == 1


def test_identification_holds_out_identities_when_all_have_enough_images():
    identities = {f"p{k}": [Path(f"p{k}_{j}") for j in range(3)] for k in range(8)}
    split = split_identities(identities, gallery_per_subject=1, seed=3)
    held_out = {name for name, _ in split.unmated}
    assert len(held_out) == 2 and not held_out & set(split.gallery)
    assert split_identities(identities, 1, seed=3).unmated == split.unmated  # reproducible
    assert "held out" in split.unmated_rule


def test_groups_file(tmp_path):
    path = tmp_path / "groups.csv"
    path.write_text("identity,group\nAnn,north\nBob,south\n")
    assert read_groups(path) == {"Ann": "north", "Bob": "south"}
    path.write_text("name,label\nAnn,north\n")
    with pytest.raises(FacetrailError, match="identity"):
        read_groups(path)


@pytest.fixture(scope="module")
def lfw_style(tmp_path_factory, faces) -> Path:
    """The fixture photographs laid out as LFW (Name/Name_0001.jpg), one file corrupt."""
    root = tmp_path_factory.mktemp("lfw")
    layout = {"Barack_Obama": ["obama.jpg", "obama2.jpg", "obama3.jpg"], "Joe_Biden": ["biden.jpg"]}
    for name, files in layout.items():
        (root / name).mkdir()
        for number, file in enumerate(files, start=1):
            image = Image.open(faces[file]).convert("RGB")
            image.thumbnail((500, 500))
            image.save(root / name / f"{name}_{number:04d}.jpg")
    (root / "Joe_Biden" / "Joe_Biden_0002.jpg").write_bytes(faces["biden.jpg"].read_bytes()[:5000])  # truncated
    return root


def test_evaluate_verify_cli_on_real_photographs(lfw_style, tmp_path, datadir, admin_token):
    pairs_file = tmp_path / "pairs.txt"
    pairs_file.write_text(
        "4\t4\nBarack_Obama\t1\t2\nBarack_Obama\t1\t3\nBarack_Obama\t2\t3\nJoe_Biden\t1\t2\n"
        "Barack_Obama\t1\tJoe_Biden\t1\nBarack_Obama\t2\tJoe_Biden\t1\nBarack_Obama\t3\tJoe_Biden\t1\nBarack_Obama\t3\tJoe_Biden\t2\n"
    )
    plot = tmp_path / "roc.png"
    result = runner.invoke(app, ["evaluate", "verify", "--pairs", str(pairs_file), "--images", str(lfw_style), "--folds", "2",
                                 "--workers", "1", "--plot", str(plot), "--save-calibration", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["pipeline"]["face_choice"] == "centre" and report["pipeline"]["embedding_passes_per_face"] == 3
    assert report["enrolment"]["failures_to_enrol"] == 1 and "truncated" in report["enrolment"]["failed_images"][0]["reason"]
    assert report["failed_pairs"] == 2
    # every pair without the truncated file is right at the model's threshold; the two with it count as errors
    assert report["accuracy_at_default_threshold"]["accuracy"] == pytest.approx(6 / 8)
    assert plot.stat().st_size > 10_000
    assert report["calibration"].startswith("calibration ")
    calibration = calibration_in_force(datadir)
    assert calibration.model == "dlib-resnet-v1" and calibration.impostor_count == 3
    assert calibration.source == "pairs.txt: 3 impostor pairs"  # the UI names the data behind its estimates


def test_evaluate_identify_cli_on_real_photographs(lfw_style, tmp_path, datadir, admin_token):
    shutil.rmtree(tmp_path / "set", ignore_errors=True)
    shutil.copytree(lfw_style, tmp_path / "set")
    (tmp_path / "set" / "Joe_Biden" / "Joe_Biden_0002.jpg").unlink()
    result = runner.invoke(app, ["evaluate", "identify", "--images", str(tmp_path / "set"), "--workers", "1", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["mated_probes"], report["unmated_probes"]) == (2, 1)
    assert report["cmc"]["rank_1"] == 1.0
    assert report["fnir_at_fpir"]["0.01"]["fnir"] == 0.0  # Biden, not enrolled, is far from the enrolled Obama


def test_evaluate_demographics_cli_on_real_photographs_with_a_template_cache(lfw_style, tmp_path, datadir, admin_token, monkeypatch):
    from facetrail.evaluation import templates as templates_module

    groups = tmp_path / "groups.csv"
    groups.write_text("identity,group\nBarack_Obama,a\nJoe_Biden,b\n")
    cache, plot = tmp_path / "templates.npz", tmp_path / "det.png"
    arguments = ["evaluate", "demographics", "--images", str(lfw_style), "--groups", str(groups), "--threshold", "0.6",
                 "--resamples", "50", "--workers", "1", "--template-cache", str(cache), "--json"]
    result = runner.invoke(app, [*arguments, "--plot", str(plot), "--save-calibration", "--publish"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    by_group = report["verification"]["by_group"]
    # Obama's 3 photographs all match each other; Biden's second file is truncated, so his one genuine pair fails
    assert (by_group["a"]["fnmr"]["errors"], by_group["a"]["fnmr"]["trials"]) == (0, 3)
    assert (by_group["b"]["fnmr"]["errors"], by_group["b"]["fnmr"]["trials"]) == (1, 1)
    assert by_group["a"]["fmr"]["trials"] == 0 and report["verification"]["cross_group"]["a × b"]["fmr"] | {"ci95_bootstrap": None, "ci95_wilson": None} == \
        {"rate": 0.0, "errors": 0, "trials": 6, "ci95_bootstrap": None, "ci95_wilson": None}
    assert report["enrolment"]["failures_to_enrol"] == 1 and plot.stat().st_size > 10_000
    calibration = calibration_in_force(datadir)
    # the 3 impostor pairs with the truncated photograph compared nothing, so the table has the other 3
    assert calibration.impostor_count == 3 and calibration.source == f"{lfw_style.name}: 3 impostor pairs among 5 photographs of 2 people"
    assert "per-group calibrations" not in report["calibration"]  # no two people of one group: no group table
    assert json.loads(Path(report["published"]).read_text())["report"]["verification"]["by_group"] == by_group

    def no_new_templates(jobs, *args):
        assert list(jobs) == []  # every template comes from the cache
        return iter(())

    monkeypatch.setattr(templates_module, "analyse_many", no_new_templates)
    again = runner.invoke(app, arguments)
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["verification"] == report["verification"]
    other = runner.invoke(app, [*arguments, "--augmentation", "none"])
    assert other.exit_code == 2 and "another pipeline (differs in augmentation)" in other.output


def test_evaluate_quality_cli_discards_the_failed_photograph_first(lfw_style, tmp_path, datadir, admin_token):
    from facetrail.evaluation.templates import QUALITY_COMPONENTS

    pairs_file = tmp_path / "pairs.txt"
    pairs_file.write_text("4\t1\nBarack_Obama\t1\t2\nBarack_Obama\t1\t3\nBarack_Obama\t2\t3\nJoe_Biden\t1\t2\nBarack_Obama\t1\tJoe_Biden\t1\n")
    plot = tmp_path / "edc.png"
    result = runner.invoke(app, ["evaluate", "quality", "--pairs", str(pairs_file), "--images", str(lfw_style), "--threshold", "0.6",
                                 "--workers", "1", "--plot", str(plot), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["genuine_pairs"] == 4 and report["fnmr_before_discarding"] == 0.25  # Biden's truncated photograph
    assert list(report["components"]) == list(QUALITY_COMPONENTS)
    for component in report["components"].values():  # unmeasured counts as the lowest quality: discarded first
        assert component["fnmr_after_discarding"]["0.2"] == 0.0 and component["predicts_errors"]
    assert plot.stat().st_size > 10_000
    result = runner.invoke(app, ["evaluate", "quality", "--pairs", str(pairs_file), "--images", str(lfw_style), "--fmr", "2"])
    assert result.exit_code == 2 and "--fmr must be between 0 and 1" in result.output


def test_init_calibrates_estimated_false_match_rates_from_local_photographs(lfw_style, tmp_path, monkeypatch):
    from facetrail.accountability.service import Facetrail
    from facetrail.datadir import DataDir
    monkeypatch.setenv("FACETRAIL_ADMIN_PASSWORD", ADMIN_PASSWORD)
    data = tmp_path / "data"
    result = runner.invoke(app, ["init", "--data", str(data), "--admin", "admin", "--calibrate-from", str(lfw_style), "--workers", "1"])
    assert result.exit_code == 0, result.output
    expected = f"{lfw_style.name}: 3 impostor pairs among 4 photographs of 2 people"  # the truncated photograph gave none
    assert expected in result.output
    system = Facetrail.initialise(DataDir(data))
    try:
        assert calibration_in_force(system.datadir).source == expected
        assert [e["details"]["source"] for e in system.audit.entries(limit=100) if e["action"] == "calibration_saved"] == [expected]
    finally:
        system.close()
    result = runner.invoke(app, ["init", "--data", str(data), "--calibrate-from", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "not a folder" in result.output


def test_evaluate_reports_bad_arguments_clearly(tmp_path, datadir, admin_token):
    result = runner.invoke(app, ["evaluate", "verify", "--pairs", str(tmp_path / "missing.txt"), "--images", str(tmp_path)])
    assert result.exit_code == 2 and "cannot read pairs file" in result.output
    result = runner.invoke(app, ["evaluate", "identify", "--images", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "not a folder" in result.output


@pytest.mark.shared_faces
def test_verification_on_a_slice_of_the_shared_lfw_pairs(shared_faces, tmp_path, datadir, admin_token):
    lines = (shared_faces / "lfw-dev-pairs.txt").read_text().splitlines()
    genuine = [line for line in lines[1:] if len(line.split("\t")) == 3][:30]
    impostor = [line for line in lines[1:] if len(line.split("\t")) == 4][:30]
    pairs_file = tmp_path / "pairs.txt"
    pairs_file.write_text("30\t30\n" + "\n".join(genuine + impostor) + "\n")
    result = runner.invoke(app, ["evaluate", "verify", "--pairs", str(pairs_file), "--images", str(shared_faces / "lfw-dev"), "--folds", "5", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["enrolment"]["failures_to_enrol"] == 0
    assert report["accuracy_at_default_threshold"]["accuracy"] >= 0.9


@pytest.fixture(scope="module")
def four_people(tmp_path_factory, faces) -> tuple[Path, Path]:
    """Four people with two photographs each (the fixture photographs, some turned grey or mirrored), their groups
    and an LFW pairs file of ten pairs among them; and a template cache shared by the tests."""
    from PIL import ImageOps

    root = tmp_path_factory.mktemp("four")
    layout = {"Ann_A": [("obama.jpg", None), ("obama2.jpg", None)], "Amy_A": [("obama3.jpg", None), ("obama3.jpg", ImageOps.grayscale)],
              "Bob_B": [("biden.jpg", None), ("biden.jpg", ImageOps.grayscale)], "Ben_B": [("biden.jpg", ImageOps.mirror), ("obama2.jpg", ImageOps.mirror)]}
    for name, files in layout.items():
        (root / "set" / name).mkdir(parents=True)
        for number, (file, change) in enumerate(files, start=1):
            image = Image.open(faces[file]).convert("RGB")
            image.thumbnail((400, 400))
            (change(image) if change else image).convert("RGB").save(root / "set" / name / f"{name}_{number:04d}.jpg")
    (root / "groups.csv").write_text("identity,group\nAnn_A,a\nAmy_A,a\nBob_B,b\nBen_B,b\n")
    lines = [f"{name}\t1\t2" for name in layout] + ["Ann_A\t1\tAmy_A\t1", "Ann_A\t2\tBob_B\t1", "Amy_A\t2\tBen_B\t2",
                                                    "Bob_B\t2\tBen_B\t1", "Ann_A\t1\tBen_B\t1", "Amy_A\t1\tBob_B\t2"]
    (root / "pairs.txt").write_text("4\t6\n" + "\n".join(lines) + "\n")
    return root, root / "templates.npz"


def test_demographics_and_normalization_clis_report_people_and_the_adoption_rule(four_people, datadir, admin_token):
    root, cache = four_people
    common = ["--images", str(root / "set"), "--groups", str(root / "groups.csv"), "--resamples", "20", "--workers", "1",
              "--template-cache", str(cache)]
    result = runner.invoke(app, ["evaluate", "demographics", *common, "--threshold", "0.6", "--max-photos-per-person", "2"])
    assert result.exit_code == 0, result.output
    # Ben_B's "two photographs" are of two people (mirrored Biden and Obama): his genuine pair misses, Bob_B's does not
    assert "b, identity-weighted: FNMR 5.00e-01 (95% CI 0.00e+00 to 1.00e+00) 1 of 2 people with errors" in result.stdout
    assert "fnmr_identity_weighted: worst b / best a = ×inf" in result.stdout
    assert "verification with at most 2 photographs of each person, drawn at random (seed 0)" in result.stdout
    assert "overall FNMR at a false match rate over all impostor pairs:" in result.stdout and "FMR 1e-05: FNMR" in result.stdout
    refused = runner.invoke(app, ["evaluate", "demographics", *common, "--normalization", "fsn", "--publish"])
    assert refused.exit_code == 2 and "leave out --normalization" in refused.output
    assert "--half must be 1 or 2" in runner.invoke(app, ["evaluate", "demographics", *common, "--half", "3"]).output

    result = runner.invoke(app, ["evaluate", "normalization", *common, "--pairs", str(root / "pairs.txt"), "--clusters", "2",
                                 "--fmr", "0.2", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["protocol"] == "score_normalization" and report["clusters"] == 2 and report["images_normalized"] == 8
    assert set(report["tests"]) == {"lowers the FNMR ratio (identity-weighted)", "lowers the FMR ratio (identity-weighted)",
                                    "does not raise the FNMR at FMR 0.001", "does not lower the 10-fold accuracy"}
    assert report["adopt"] == all(report["tests"].values())
    assert report["before"]["accuracy_kfold"]["folds"] == 10 and "fnmr_identity_weighted" in report["after"]["ratios"]
    verify = runner.invoke(app, ["evaluate", "verify", "--pairs", str(root / "pairs.txt"), "--images", str(root / "set"), "--normalization",
                                 "fsn", "--workers", "1", "--template-cache", str(cache), "--json"])
    assert verify.exit_code == 0, verify.output
    assert json.loads(verify.stdout)["score_normalization"]["images_normalized"] == 8


def test_identify_projects_to_an_agencys_gallery_size(four_people, datadir, admin_token):
    root, cache = four_people
    arguments = ["evaluate", "identify", "--images", str(root / "set"), "--workers", "1", "--template-cache", str(cache)]
    result = runner.invoke(app, [*arguments, "--project-to", "1000,1e6", "--project-to", "10_000_000", "--fmr", "0.1", "--json"])
    assert result.exit_code == 0, result.output
    projection = json.loads(result.stdout)["projection"]
    assert [row["gallery_size"] for row in projection["by_gallery_size"]] == [1000, 1_000_000, 10_000_000]
    assert projection["impostor_pairs"] == 24 and projection["check"]["gallery_size"] == 3  # one person held out
    fpir = [row["rule_of_three"]["fpir"] for row in projection["by_gallery_size"]]
    rank_1 = [row["rule_of_three"]["rank_1"] for row in projection["by_gallery_size"]]
    assert fpir == sorted(fpir) and rank_1 == sorted(rank_1, reverse=True)
    text = runner.invoke(app, [*arguments, "--project-to", "10000000"])
    assert text.exit_code == 0 and "gallery of 10,000,000: rank 1" in text.stdout and "check at this gallery's 3 people" in text.stdout
    bad = runner.invoke(app, [*arguments, "--project-to", "many"])
    assert bad.exit_code == 2 and "--project-to: 'many' is not a gallery size" in bad.output


def calibration_in_force(datadir):
    """The model's calibration table in force in a data directory (from labelled photographs)."""
    from facetrail.accountability.service import Facetrail
    from facetrail.gallery.calibration import in_force

    system = Facetrail.open(datadir)
    try:
        with system.galleries.sessions() as session:
            return in_force(session, "dlib-resnet-v1", None).tables.base
    finally:
        system.close()
