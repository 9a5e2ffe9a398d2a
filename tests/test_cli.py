"""The command line: gallery commands, enrolment, inspection, configuration, and clear errors."""

from __future__ import annotations

import csv
import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from facetrail.cli import app
from facetrail.engine.geometry import Box

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


@pytest.fixture(scope="module")
def booking_folder(tmp_path_factory, faces):
    root = tmp_path_factory.mktemp("cli-bookings")
    for subject, name, height in (("B-1", "obama.jpg", 400), ("B-2", "biden.jpg", 600)):
        (root / subject).mkdir()
        image = Image.open(faces[name]).convert("RGB")
        image.resize((image.width * height // image.height, height)).save(root / subject / "front.jpg")
    (root / "B-2" / "empty.jpg").write_bytes(b"")
    return root


def test_gallery_lifecycle_through_the_cli(datadir, admin_token, booking_folder, tmp_path):
    result = invoke("gallery", "create", "county", "--allowed-source", "booking", "--description", "County bookings", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["allowed_sources"] == ["booking"]

    report = tmp_path / "report.csv"
    result = invoke("enroll", str(booking_folder), "--gallery", "county", "--source", "booking", "--report", str(report), "--workers", "1", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["enrolled"], summary["rejected"]) == (2, 1)
    assert summary["rejections"][0]["reason"].endswith("empty.jpg: file is empty")
    rows = list(csv.DictReader(report.open()))
    assert sorted(r["status"] for r in rows) == ["enrolled", "enrolled", "rejected"]

    listing = json.loads(invoke("gallery", "list", "--json").stdout)
    assert [(g["name"], g["subjects"], g["images"]) for g in listing] == [("county", 2, 2)]
    shown = json.loads(invoke("gallery", "show", "county", "--json").stdout)
    assert shown["templates"] == 2
    assert shown["rejections"] == 0  # only refusals after face analysis are remembered; an unreadable file is retried

    removed = invoke("gallery", "remove-subject", "county", "B-1", "--json")
    assert removed.exit_code == 0, removed.output
    assert json.loads(removed.stdout) == {"gallery": "county", "subject_id": "B-1", "images": 1, "templates": 1, "image_files": 1, "index_entries": 1}
    assert json.loads(invoke("gallery", "show", "county", "--json").stdout)["subjects"] == 1


def test_errors_are_one_clear_line_with_status_2(datadir, admin_token, booking_folder, tmp_path, monkeypatch):
    invoke("gallery", "create", "county", "--allowed-source", "booking")
    cases = [
        (("gallery", "show", "nowhere"), "no gallery named 'nowhere'"),
        (("gallery", "create", "county", "--allowed-source", "booking"), "already exists"),
        (("gallery", "create", "scraped", "--allowed-source", "social-media"), "prohibited"),
        (("gallery", "remove-subject", "county", "nobody"), "no subject 'nobody'"),
        (("enroll", str(booking_folder), "--gallery", "county", "--source", "web-scrape"), "not allowed for gallery 'county'"),
        (("enroll", str(booking_folder), "--gallery", "county"), "give a folder and --source, or --manifest"),
        (("enroll", str(tmp_path / "missing"), "--gallery", "county", "--source", "booking"), "not a folder"),
        (("inspect", str(booking_folder / "B-1" / "front.jpg")), "only investigator may"),
    ]
    inspections = [  # finding faces is for investigators
        (("inspect", str(tmp_path / "missing.jpg")), "missing.jpg"),
        (("inspect", str(booking_folder / "B-2" / "empty.jpg")), "empty"),
        (("inspect", str(booking_folder / "B-1" / "front.jpg"), "--face-box", "1,2,3"), "face box"),
    ]
    for args, message in cases + inspections:
        if args[0] == "inspect" and message != "only investigator may":
            log_in_investigator(datadir, admin_token, monkeypatch)
        result = invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        assert message in " ".join(result.output.split()), (args, result.output)
        assert "Traceback" not in result.output


def test_commands_refuse_an_uninitialised_data_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("FACETRAIL_DATA", str(tmp_path / "not-yet"))
    result = invoke("gallery", "list")
    assert result.exit_code == 2 and "run 'facetrail init' first" in result.output


def test_bad_configuration_names_the_key(datadir):
    datadir.config_path.write_text(datadir.config_path.read_text().replace("[quality]", "[quality]\nmin_sharpnes = 3.0"))
    result = invoke("gallery", "list")
    assert result.exit_code == 2 and "quality.min_sharpnes" in result.output
    datadir.config_path.write_text("[detection]\nfallback = 'magic'\n")
    result = invoke("gallery", "list")
    assert result.exit_code == 2 and "detection.fallback" in result.output and "'cnn'" in result.output
    datadir.config_path.write_text("[limits\n")
    assert "not valid TOML" in invoke("gallery", "list").output
    # a key an earlier version wrote is refused with what replaced it
    datadir.config_path.write_text("[detection]\nmax_working_side = 1600\n")
    result = invoke("gallery", "list")
    assert result.exit_code == 2 and "detection.max_working_side: no longer used (detection.max_scanned_pixels" in result.output


def log_in_investigator(datadir, admin_token: str, monkeypatch) -> None:
    """Create the investigator 'ivan' (once) and act as him in the commands that follow (FACETRAIL_TOKEN)."""
    from facetrail.accountability.service import Facetrail
    from tests.fixtures.world import create_confirmed

    system = Facetrail.open(datadir)
    try:
        if "ivan" not in {user["username"] for user in system.users.list_users()}:
            create_confirmed(system, system.auth.authenticate(admin_token), "ivan", ["investigator"], "RHD",
                             "correct horse battery staple")
        monkeypatch.setenv("FACETRAIL_TOKEN", system.auth.login("ivan", "correct horse battery staple")[1])
    finally:
        system.close()


def test_inspect_shows_faces_and_quality(datadir, admin_token, faces, monkeypatch):
    log_in_investigator(datadir, admin_token, monkeypatch)
    result = invoke("inspect", str(faces["obama.jpg"]), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["format"] == "JPEG" and len(report["faces"]) == 1
    face = report["faces"][0]
    assert face["detector"] == "hog" and face["quality"]["verdict"] == "acceptable"
    box = ",".join(str(v) for v in face["box"])
    by_hand = json.loads(invoke("inspect", str(faces["obama.jpg"]), "--face-box", box, "--json").stdout)
    assert len(by_hand["faces"]) == 1 and by_hand["faces"][0]["detector"] == "hog"  # refined by the detector
    assert Box(*by_hand["faces"][0]["box"]).iou(Box(*face["box"])) > 0.8


def test_a_probe_without_a_chosen_face_is_refused_naming_the_option_that_chooses_one(datadir, admin_token, faces,
                                                                                    monkeypatch, tmp_path):
    assert invoke("gallery", "create", "county", "--allowed-source", "booking").exit_code == 0
    assert invoke("gallery", "grant", "county", "--unit", "RHD").exit_code == 0
    log_in_investigator(datadir, admin_token, monkeypatch)
    two, blank = tmp_path / "two.jpg", tmp_path / "blank.jpg"
    pair = Image.new("RGB", (1200, 600), (128, 128, 128))
    for x, name in ((0, "obama3.jpg"), (600, "biden.jpg")):
        face = Image.open(faces[name]).convert("RGB")
        face.thumbnail((600, 600))
        pair.paste(face, (x, 0))
    pair.save(two)
    Image.new("RGB", (400, 400), (128, 128, 128)).save(blank)
    request = ("--gallery", "county", "--case", "24-000001", "--purpose", "criminal_investigation", "--offence", "robbery",
               "--note", "two people on the camera")
    several = invoke("search", str(two), *request)
    assert several.exit_code == 2 and "2 faces found in the probe; choose one (face 1: [" in several.output
    assert several.output.rstrip().endswith("; use --face N")
    none = invoke("search", str(blank), *request)
    assert none.exit_code == 2
    assert none.output.rstrip().endswith("no face found in the probe; draw the face box by hand (--face-box x,y,w,h)")


def test_no_command_acts_anonymously(datadir, monkeypatch, faces):
    """Without a login every command that touches data is refused, and the refusal names the way in."""
    monkeypatch.delenv("FACETRAIL_TOKEN", raising=False)
    monkeypatch.setenv("FACETRAIL_SESSION_FILE", str(datadir.root.parent / "no-sessions.json"))
    for args in (
        ("gallery", "list"),
        ("inspect", str(faces["obama.jpg"])),
        ("search", str(faces["obama.jpg"]), "--gallery", "g", "--case", "24-000001", "--purpose", "p", "--offence", "o"),
        ("report",),
        ("audit", "verify"),
        ("evaluate", "identify", "--images", str(datadir.root)),
    ):
        result = invoke(*args)
        assert result.exit_code == 2 and "not logged in" in result.output, (args, result.output)
    monkeypatch.setenv("FACETRAIL_TOKEN", "ft_forged")
    result = invoke("gallery", "list")
    assert result.exit_code == 2 and "token" in result.output


def test_users_and_policy_commands_name_what_waits_and_what_is_held_apart(datadir, admin_token, tmp_path, monkeypatch):
    """An investigator created by the admin waits for a second person, whom the CLI names; a policy forbidding roles
    an account already holds together names that account when it is loaded."""
    from facetrail.accountability.service import Facetrail

    monkeypatch.setenv("FACETRAIL_NEW_PASSWORD", "correct horse battery staple")
    created = invoke("user", "create", "ivan", "--role", "investigator", "--unit", "RHD")
    assert created.exit_code == 0 and "wait for a second person" in created.output
    assert "facetrail user confirm ivan" in created.output
    refused = invoke("user", "confirm", "ivan")  # the admin who asked is not a second person
    assert refused.exit_code == 2 and "asked for this change" in refused.output
    assert invoke("user", "create", "weak", "--role", "auditor").exit_code == 0
    monkeypatch.setenv("FACETRAIL_NEW_PASSWORD", "Summer2024!!")
    weak = invoke("user", "create", "weaker", "--role", "auditor")
    assert weak.exit_code == 2 and "common password ('summer')" in weak.output

    system = Facetrail.open(datadir)
    try:
        system.users.set_roles("weak", ["investigator", "supervisor"])  # given before a policy forbidding the pair
        text = system.admin.policy_in_force(system.users.user("admin"))[1]
    finally:
        system.close()
    policy = tmp_path / "policy.toml"
    policy.write_text(text.replace('    ["auditor", "admin"],\n', '    ["auditor", "admin"],\n    ["investigator", "supervisor"],\n'))
    loaded = invoke("policy", "load", str(policy))
    assert loaded.exit_code == 0 and "warning: weak holds investigator, supervisor" in loaded.output
