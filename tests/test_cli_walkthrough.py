"""The README walk-through, command by command: users, enrolment, a case-bound search, two blind reviews, the lead
report, the transparency report, and the audit trail verified from the outside."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from PIL import Image
from typer.testing import CliRunner

from facetrail.cli import app

runner = CliRunner()
PASSWORD = "walkthrough password 1"


def invoke(*args: str, env: dict | None = None):
    result = runner.invoke(app, list(args), env=env)
    assert result.exit_code == 0, (args, result.output)
    return result.stdout


def test_walkthrough(datadir, admin_token, faces, tmp_path, monkeypatch):
    monkeypatch.setenv("FACETRAIL_SESSION_FILE", str(tmp_path / "sessions.json"))
    invoke("user", "create", "root", "--role", "admin", env={"FACETRAIL_NEW_PASSWORD": PASSWORD})
    root = invoke("login", "root", "--print-token", env={"FACETRAIL_PASSWORD": PASSWORD, "FACETRAIL_TOKEN": ""}).strip()
    for username, role, unit in (("ivan", "investigator", "RHD"), ("erin", "examiner", "Forensics"),
                                 ("ezra", "examiner", "Forensics"), ("alma", "auditor", "OIG")):
        created = runner.invoke(app, ["user", "create", username, "--role", role, "--unit", unit],
                                env={"FACETRAIL_NEW_PASSWORD": PASSWORD, "FACETRAIL_TOKEN": root})
        assert created.exit_code == 0 and ("wait for a second person" in created.output) == (role != "auditor"), created.output
    waiting = json.loads(invoke("user", "requests", "--json"))
    assert [(r["username"], r["requested_by"]) for r in waiting] == [("ivan", "root"), ("erin", "root"), ("ezra", "root")]
    for username in ("ivan", "erin", "ezra"):  # the first admin, who did not create root, is the second person
        invoke("user", "confirm", username)
    assert json.loads(invoke("user", "requests", "--json")) == []
    tokens = {name: invoke("login", name, "--print-token", env={"FACETRAIL_PASSWORD": PASSWORD, "FACETRAIL_TOKEN": ""}).strip()
              for name in ("ivan", "erin", "ezra", "alma")}
    users = json.loads(invoke("user", "list", "--json"))
    assert {u["username"] for u in users} == {"admin", "root", "ivan", "erin", "ezra", "alma"} and all("hash" not in json.dumps(u) for u in users)
    assert {u["username"]: u["created_by"] for u in users}["ivan"] == "root"

    bookings = tmp_path / "bookings"
    for subject, name in (("B-1001", "obama.jpg"), ("B-2002", "biden.jpg")):
        (bookings / subject).mkdir(parents=True)
        image = Image.open(faces[name]).convert("RGB")
        image.thumbnail((600, 600))
        image.save(bookings / subject / "front.jpg")
    invoke("gallery", "create", "county", "--allowed-source", "booking")
    invoke("gallery", "grant", "county", "--unit", "RHD")
    invoke("enroll", str(bookings), "--gallery", "county", "--source", "booking", "--workers", "1")
    calibrated = json.loads(invoke("gallery", "calibrate", "county", "--json"))
    assert (calibrated["subjects"], calibrated["impostor_pairs"], calibrated["all_pairs"]) == (2, 1, True)

    probe = tmp_path / "still.jpg"
    image = Image.open(faces["obama3.jpg"]).convert("RGB")
    image.thumbnail((700, 700))
    image.save(probe)
    monkeypatch.setenv("FACETRAIL_TOKEN", tokens["ivan"])
    result = json.loads(invoke("search", str(probe), "--gallery", "county", "--case", "24-000777", "--purpose",
                               "criminal_investigation", "--offence", "robbery", "--note", "bank camera still", "--json"))
    assert result["candidates"][0]["subject_id"] == "B-1001" and "not identifications" in result["notice"]
    assert result["gallery_subjects"] == 2 and result["calibration"] == calibrated["source"]
    for candidate in result["candidates"]:  # each with its look-alike count in this gallery, from its estimate
        look_alikes, estimate = candidate["look_alikes"], candidate["estimate"]
        assert look_alikes["gallery_subjects"] == 2 and look_alikes["expected"] == 1 * candidate["false_match_rate"]
        assert estimate["rate"] == candidate["false_match_rate"] > 0 and estimate["impostor_pairs"] == 1
        assert look_alikes["sentence"].startswith("In this gallery of 2 people, ")
    search_id = str(result["search_id"])
    refused = runner.invoke(app, ["search", str(probe), "--gallery", "county", "--case", "7", "--purpose",
                                  "criminal_investigation", "--offence", "robbery", "--note", "x"])
    assert refused.exit_code == 2 and "case number" in refused.output

    for examiner in ("erin", "ezra"):
        monkeypatch.setenv("FACETRAIL_TOKEN", tokens[examiner])
        assert [q["search_id"] for q in json.loads(invoke("review", "queue", "--json"))] == [int(search_id)]
        shown = json.loads(invoke("review", "show", search_id, "--json"))
        assert 1 in [c["rank"] for c in shown["candidates"]]  # the candidate decided on is shown, so the next line checks it
        assert all(c["decisions"] == [] for c in shown["candidates"])  # blind to the other examiner
        table = invoke("review", "show", search_id)  # and to the algorithm, until deciding: candidates by label
        assert table.count("withheld") == 5 * len(shown["candidates"]) and "B-1001" not in table
        assert "rank" not in table.split("Candidate list")[1].split("\n", 2)[2]  # no rank below the table's heading
        label = next(c["label"] for c in shown["candidates"] if c["rank"] == 1)
        invoke("review", "image", search_id, "--candidate", label, "--out", str(tmp_path / f"{examiner}-candidate.jpg"))
        invoke("review", "decide", search_id, "--candidate", label, "--decision", "possible_lead", "--notes", "consistent",
               "--conclusion", "support_same", "--feature", "ears=similar")
        decided = invoke("review", "show", search_id)
        assert f"{label} (rank 1)" in decided and "B-1001" in decided and "possible_lead" in decided

    monkeypatch.setenv("FACETRAIL_TOKEN", tokens["ivan"])
    lead = tmp_path / "lead.html"
    invoke("lead", "export", search_id, "--out", str(lead))
    assert "not probable cause" in lead.read_text()

    monkeypatch.setenv("FACETRAIL_TOKEN", tokens["alma"])
    report = json.loads(invoke("report", "--since", "2009-01-01", "--format", "json"))
    assert report["totals"]["searches"] == 2 and report["totals"]["refused"] == 1 and report["totals"]["lead"] == 1
    assert report["headline"].startswith("2 searches by 1 person")
    refused = json.loads(invoke("report", "--since", "2009-01-01", "--format", "json", "--outcome", "refused"))
    assert refused["totals"]["searches"] == 1 and refused["filters"] == {"outcome": "refused"}
    assert "<img" in invoke("report", "--by", "outcome", "--format", "html")
    denied = runner.invoke(app, ["review", "image", search_id, "--rank", "1", "--out", str(tmp_path / "x.jpg")])
    assert denied.exit_code == 2 and "auditor" in denied.output  # auditors never see candidate photographs
    verified = " ".join(invoke("audit", "verify").split())
    assert re.search(r"audit trail intact: (\d+) entries checked, (\d+ signed checkpoints valid|no signed checkpoint was due yet [^;]*); "
                     r"a checkpoint signed now "
                     r"vouches for all \1", verified), verified
    export = tmp_path / "audit-export"
    invoke("audit", "export", str(export))
    verified = subprocess.run([sys.executable, "verify_audit.py"], cwd=export, capture_output=True, text=True)
    assert verified.returncode == 0 and "OK" in verified.stdout
    actions = [json.loads(line)["action"] for line in (export / "audit.jsonl").read_text().splitlines()]
    for expected in ("login", "user_created", "gallery_created", "gallery_granted", "enrolment", "search", "search_refused",
                     "search_viewed", "candidate_image_viewed", "review_decision", "lead_exported", "report_generated"):
        assert expected in actions, expected
