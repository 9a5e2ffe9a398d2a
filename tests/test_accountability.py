"""The accountable system on real photographs: case-bound searches, refusals, blind two-person review, leads,
retention, and which role may do what."""

from __future__ import annotations

import dataclasses
import datetime as dt
from contextlib import closing

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select, update

from facetrail.accountability.schema import ProbeRecord, SearchRecord
from facetrail.accountability.context import NOTICE
from facetrail.accountability.service import Facetrail
from facetrail.accountability.users import ROLE_ACTIONS
from facetrail.engine.geometry import Box
from facetrail.errors import DuplicateError, FacetrailError, PermissionDeniedError, RefusedError
from facetrail.gallery.enrol import items_from_folder
from tests.fixtures.images import jpeg
from tests.fixtures.world import create_confirmed, enrol_bookings
from facetrail.accountability.requests import CaseRequest

PASSWORD = "correct horse battery staple"
CASE = "24-000123"


def build_world(datadir) -> dict[str, str]:
    """An initialised system with one user per role, a gallery of two subjects, and RHD authorized to search it;
    returns the users' tokens (snapshot builder, tests/fixtures/snapshots.py)."""
    with closing(Facetrail.initialise(datadir, "admin", PASSWORD)) as system:
        tokens = {"admin": system.auth.login("admin", PASSWORD)[1]}
        admin = system.auth.authenticate(tokens["admin"])
        people = {
            "ivan": (["investigator"], "RHD"),
            "olga": (["investigator"], "Narcotics"),
            "erin": (["examiner"], "Forensics"),
            "ezra": (["examiner"], "Forensics"),
            "sam": (["supervisor"], "RHD"),
            "alma": (["auditor"], "Inspector General"),
        }
        for username, (roles, unit) in people.items():
            create_confirmed(system, admin, username, roles, unit)
            tokens[username] = system.auth.login(username, PASSWORD)[1]
        system.admin.create_gallery(admin, "county", ["booking"], "County booking photographs")
        system.admin.grant_gallery(admin, "county", "RHD")
        enrol_bookings(system, admin, datadir.root.parent / "bookings")
        started, finished = [e for e in system.audit.entries(limit=1000) if e["action"].startswith("enrolment")]
        assert (started["action"], started["details"]) == ("enrolment_started", {"items": 2, "sources": ["booking"]})
        assert finished["action"] == "enrolment" and finished["details"]["enrolled"] == 2
        return tokens


@pytest.fixture
def world(datadir, snapshots, monkeypatch):
    """A copy of ``build_world``'s system, and its users authenticated."""
    with snapshots.rebuilt(build_world, datadir, monkeypatch) as tokens, closing(Facetrail.open(datadir)) as system:
        yield system, {name: system.auth.authenticate(token) for name, token in tokens.items()}


def run_search(system, actor, faces, **overrides):
    request = dict(gallery="county", case_number=CASE, purpose="criminal_investigation", offence="robbery", note="bank robbery suspect")
    request.update(overrides)
    probe = request.pop("probe", None) or jpeg(faces["obama3.jpg"], 700)
    override = request.pop("quality_override", None)
    return system.searches.search(actor, probe, CaseRequest(**request), quality_override=override)


def test_search_returns_leads_not_identifications_and_is_audited(world, faces):
    system, who = world
    result = run_search(system, who["ivan"], faces, note="still from the bank camera")
    assert result.candidates[0].subject_id == "B-1001" and result.candidates[0].distance < 0.6
    assert [c.rank for c in result.candidates] == [1, 2]
    assert result.notice == NOTICE and "not identifications" in result.notice
    assert result.policy_version >= 1 and result.gallery_version >= 1
    with system.galleries.sessions() as session:
        record = session.get(SearchRecord, result.search_id)
        assert (record.status, record.case_number, record.purpose, record.offence) == ("completed", CASE, "criminal_investigation", "robbery")
    entry = [e for e in system.audit.entries(limit=1000) if e["action"] == "search"][-1]
    assert entry["actor"] == "ivan" and entry["details"]["probe_sha256"] == result.probe_sha256
    assert entry["details"]["candidates"][0][1] == "B-1001" and entry["details"]["gallery_version"] == result.gallery_version
    assert system.audit.verify().ok


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        (dict(purpose="curiosity"), "purpose"),
        (dict(offence="immigration_status"), "immigration"),
        (dict(note="identify people at the protest"), "protest"),
        (dict(case_number="12345"), "case number"),
        (dict(gallery="nowhere"), "nowhere"),
    ],
)
def test_refused_searches_say_why_and_are_audited(world, faces, overrides, reason):
    system, who = world
    with pytest.raises(RefusedError, match=reason):
        run_search(system, who["ivan"], faces, **overrides)
    with system.galleries.sessions() as session:
        refused = session.scalars(select(SearchRecord).where(SearchRecord.status == "refused")).all()
    assert len(refused) == 1 and reason.split()[0] in refused[0].refusal_reason
    assert [e for e in system.audit.entries(limit=1000) if e["action"] == "search_refused"][-1]["actor"] == "ivan"


def test_unit_without_a_grant_cannot_search(world, faces):
    system, who = world
    with pytest.raises(RefusedError, match="not authorized to search gallery 'county'"):
        run_search(system, who["olga"], faces)


def test_probe_with_several_faces_needs_a_choice(world, faces):
    system, who = world
    left, right = Image.open(faces["obama3.jpg"]).convert("RGB"), Image.open(faces["biden.jpg"]).convert("RGB")
    left, right = left.resize((left.width * 700 // left.height, 700)), right.resize((right.width * 700 // right.height, 700))
    canvas = Image.new("RGB", (left.width + right.width, 700), (128, 128, 128))
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width, 0))
    import io

    buffer = io.BytesIO()
    canvas.save(buffer, format="JPEG")
    with pytest.raises(RefusedError, match="2 faces found in the probe; choose one"):
        run_search(system, who["ivan"], faces, probe=buffer.getvalue())
    chosen = run_search(system, who["ivan"], faces, probe=buffer.getvalue(), face_number=1)
    assert chosen.candidates[0].subject_id in {"B-1001", "B-2002"}
    by_box = run_search(system, who["ivan"], faces, probe=buffer.getvalue(), face_box=Box(left.width + 40, 60, right.width - 80, 420))
    assert by_box.candidates[0].subject_id == "B-2002"


def test_poor_probe_needs_a_supervisor_override(world, faces):
    system, who = world
    tilted = jpeg(faces["obama3.jpg"], 700, rotate=40)
    with pytest.raises(RefusedError, match="supervisor must approve"):
        run_search(system, who["ivan"], faces, probe=tilted)
    with pytest.raises(RefusedError, match="override_quality"):
        run_search(system, who["ivan"], faces, probe=tilted, quality_override=who["erin"])
    result = run_search(system, who["ivan"], faces, probe=tilted, quality_override=who["sam"])
    with system.galleries.sessions() as session:
        assert session.get(SearchRecord, result.search_id).quality_override_by == who["sam"].id


def test_two_examiners_blind_review_makes_a_lead(world, faces, tmp_path):
    system, who = world
    source = "test-people: 5 impostor pairs among 4 photographs of 3 people"
    system.calibrations.save_calibration(who["admin"], system.context.engines.model_name, np.array([0.2, 0.7, 0.8, 0.9, 1.0]), source)
    result = run_search(system, who["ivan"], faces)
    search_id = result.search_id
    assert result.candidates[0].false_match_rate is not None
    assert system.reviews.show_search(who["ivan"], search_id)["calibration"] == source
    # an examiner account that ran the search (the default policy forbids holding both roles, so borrow the id)
    examiner_who_searched = dataclasses.replace(who["erin"], id=who["ivan"].id)
    with pytest.raises(PermissionDeniedError, match="cannot review"):
        system.reviews.decide(examiner_who_searched, search_id, 1, "possible_lead")
    assert [q["search_id"] for q in system.reviews.review_queue(who["erin"])] == [search_id]
    assert system.reviews.decide(who["erin"], search_id, 1, "possible_lead", "same ear shape, scar") == "pending_review"
    with pytest.raises(DuplicateError):
        system.reviews.decide(who["erin"], search_id, 1, "not_a_match")
    # blind: the second examiner sees the search in the queue and no trace of the first decision
    assert [q["search_id"] for q in system.reviews.review_queue(who["ezra"])] == [search_id]
    shown = system.reviews.show_search(who["ezra"], search_id)
    assert 1 in [c["rank"] for c in shown["candidates"]]  # erin's candidate is shown (an empty list would pass below)
    assert all(c["decisions"] == [] for c in shown["candidates"]) and shown["outcome"] is None
    assert system.reviews.review_queue(who["erin"]) == []
    with pytest.raises(FacetrailError, match="no verified lead"):
        system.reviews.lead_report(who["ivan"], search_id)
    assert system.reviews.decide(who["ezra"], search_id, 1, "possible_lead", "agree") == "lead"
    assert system.reviews.show_search(who["ivan"], search_id)["outcome"] == "lead"
    page = system.reviews.lead_report(who["ivan"], search_id)
    assert "not probable cause" in page and CASE in page and "erin" in page and "ezra" in page
    assert page.count("data:image/jpeg;base64,") == 2 and "http://" not in page and "https://" not in page
    assert f"(calibration: {source})" in page  # the estimate names its data
    actions = [e["action"] for e in system.audit.entries(limit=1000)]
    assert actions.count("review_decision") == 2 and "lead_exported" in actions
    with pytest.raises(PermissionDeniedError):
        system.reviews.lead_report(who["alma"], search_id)


def test_a_structured_comparison_is_stored_with_the_decision_and_must_agree_with_it(world, faces):
    system, who = world
    search_id = run_search(system, who["ivan"], faces).search_id
    with pytest.raises(FacetrailError, match="counts as possible lead, not not a match"):
        system.reviews.decide(who["erin"], search_id, 1, "not_a_match", "", {"features": {}, "conclusion": "support_same"})
    with pytest.raises(FacetrailError, match="comparison feature 'tail'"):
        system.reviews.decide(who["erin"], search_id, 1, "possible_lead", "", {"features": {"tail": "similar"}, "conclusion": "support_same"})
    with pytest.raises(FacetrailError, match="finding must be one of"):
        system.reviews.decide(who["erin"], search_id, 1, "possible_lead", "", {"features": {"ears": "same"}, "conclusion": "support_same"})
    comparison = {"features": {"nose": "similar", "ears": "not_visible", "eyes": "similar"}, "conclusion": "strong_support_same"}
    system.reviews.decide(who["erin"], search_id, 1, "possible_lead", "ears hidden by hair", comparison)
    shown = next(c for c in system.reviews.show_search(who["erin"], search_id)["candidates"] if c["rank"] == 1)["decisions"]
    assert shown == [{"examiner": "erin", "decision": "possible_lead", "notes": "ears hidden by hair",
                      "comparison": {"features": {"eyes": "similar", "nose": "similar", "ears": "not_visible"},
                                     "conclusion": "strong_support_same"}}]
    entry = next(e for e in system.audit.entries(limit=1000) if e["action"] == "review_decision")
    assert entry["details"]["comparison"]["conclusion"] == "strong_support_same"


def test_an_examiner_is_blind_to_the_algorithm_until_deciding(world, faces, tmp_path):
    system, who = world
    (tmp_path / "more" / "B-1001").mkdir(parents=True)  # a second photograph of B-1001: two of the three candidates
    (tmp_path / "more" / "B-1001" / "side.jpg").write_bytes(jpeg(faces["obama2.jpg"], 500))
    system.admin.enrol(who["admin"], "county", items_from_folder(tmp_path / "more", "booking"),
                       dataclasses.replace(system.galleries.settings.enrolment, workers=1))
    search_id = run_search(system, who["ivan"], faces).search_id
    seen = {c["rank"]: c for c in system.reviews.show_search(who["ivan"], search_id)["candidates"]}
    assert [seen[rank]["subject_id"] for rank in sorted(seen)].count("B-1001") == 2 and all(c["distance"] for c in seen.values())

    shown = system.reviews.show_search(who["erin"], search_id)
    assert shown["blind_to_algorithm"] and len(shown["candidates"]) == 3
    assert all(c["withheld"] and (c["subject_id"], c["image_id"], c["distance"], c["false_match_rate"]) == (None,) * 4
               for c in shown["candidates"])
    labels = {c["rank"]: c["label"] for c in shown["candidates"]}
    same = [rank for rank in seen if seen[rank]["subject_id"] == "B-1001"]
    assert sorted(labels[rank] for rank in same) == [labels[same[0]][0] + "1", labels[same[0]][0] + "2"]  # one row: X1, X2
    assert [c["label"] for c in shown["candidates"]] == [c["label"] for c in system.reviews.show_search(who["erin"], search_id)["candidates"]]
    system.reviews.decide(who["erin"], search_id, same[0], "possible_lead", "", {"features": {}, "conclusion": "support_same"})
    after = {c["rank"]: c for c in system.reviews.show_search(who["erin"], search_id)["candidates"]}
    assert (after[same[0]]["subject_id"], after[same[0]]["distance"], after[same[0]]["withheld"]) == (
        "B-1001", seen[same[0]]["distance"], False)
    assert all(after[rank]["withheld"] for rank in after if rank != same[0]) and after[same[0]]["label"] == labels[same[0]]
    assert not system.reviews.show_search(who["sam"], search_id)["blind_to_algorithm"]  # the supervisor sees everything

    text = system.admin.policy_in_force(who["admin"])[1]
    assert "examiners_blind_to_algorithm = true" in text
    system.admin.load_policy(who["admin"], text.replace("examiners_blind_to_algorithm = true", "examiners_blind_to_algorithm = false"))
    open_view = system.reviews.show_search(who["ezra"], search_id)
    assert not open_view["blind_to_algorithm"] and [c["rank"] for c in open_view["candidates"]] == [1, 2, 3]
    assert all(c["subject_id"] and c["distance"] and c["label"] is None for c in open_view["candidates"])


def test_disagreement_goes_to_a_supervisor(world, faces):
    system, who = world
    search_id = run_search(system, who["ivan"], faces).search_id
    system.reviews.decide(who["erin"], search_id, 1, "possible_lead")
    assert system.reviews.decide(who["ezra"], search_id, 1, "not_a_match") == "disputed"
    disputes = system.reviews.disputes(who["sam"])
    assert [(d["search_id"], d["rank"]) for d in disputes] == [(search_id, 1)]
    assert system.reviews.resolve(who["sam"], search_id, 1, "not_a_match", "ears differ") == "no_lead"
    assert system.reviews.disputes(who["sam"]) == []


def test_retention_purges_probe_images_but_keeps_hashes_and_audit(world, faces):
    system, who = world
    result = run_search(system, who["ivan"], faces)
    assert system.reviews.probe_photo(who["ivan"], result.search_id)[0][:2] == b"\xff\xd8"
    with system.galleries.sessions() as session:
        session.execute(update(ProbeRecord).values(created_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=3650)))
        session.commit()
    assert system.retention.purge_expired(None) == {"probe_images": 1, "search_records": 0}
    assert list(system.datadir.probes_dir.rglob("*")) == [] or all(p.is_dir() for p in system.datadir.probes_dir.rglob("*"))
    with system.galleries.sessions() as session:
        probe = session.scalar(select(ProbeRecord))
        assert not probe.stored and probe.sha256 == result.probe_sha256 and probe.purged_at is not None
    with pytest.raises(FacetrailError, match="purged"):
        system.reviews.probe_photo(who["ivan"], result.search_id)[0]
    assert any(e["action"] == "retention_purge" for e in system.audit.entries(limit=1000))
    assert system.audit.verify().ok


def test_compare_is_bound_by_the_same_rules(world, faces):
    system, who = world
    same = system.searches.compare(who["ivan"], jpeg(faces["obama.jpg"], 500), jpeg(faces["obama2.jpg"], 500), CaseRequest(case_number=CASE, purpose="criminal_investigation", offence="robbery", note="is the suspect the same man as in the 2019 booking?"))
    assert same.distance < 0.6 and same.notice == NOTICE
    with pytest.raises(RefusedError):
        system.searches.compare(who["ivan"], jpeg(faces["obama.jpg"], 500), jpeg(faces["biden.jpg"], 500), CaseRequest(case_number="bad", purpose="criminal_investigation", offence="robbery", note="bad case number"))
    with pytest.raises(RefusedError, match="compare"):
        system.searches.compare(who["erin"], jpeg(faces["obama.jpg"], 500), jpeg(faces["biden.jpg"], 500), CaseRequest(case_number=CASE, purpose="criminal_investigation", offence="robbery", note="an examiner may not compare"))


ROLE_OF = {"investigator": "ivan", "examiner": "erin", "supervisor": "sam", "auditor": "alma", "admin": "admin"}


def test_roles_by_operation_matrix(world, faces, tmp_path):
    """Each operation of the accountable system, tried by one user of each role: allowed exactly as ROLE_ACTIONS says."""
    system, who = world
    search_id = run_search(system, who["ivan"], faces).search_id
    operations = {
        "search": lambda actor: run_search(system, actor, faces),
        "review": lambda actor: system.reviews.review_queue(actor),
        "resolve_dispute": lambda actor: system.reviews.disputes(actor),
        "view_reports": lambda actor: system.oversight.transparency_report(actor, None, None, "month", "json"),
        "verify_audit": lambda actor: system.oversight.verify_audit(actor),
        "manage_users": lambda actor: system.admin.list_users(actor),
        "manage_galleries": lambda actor: system.admin.grant_gallery(actor, "county", "Narcotics"),
        "view_candidate_images": lambda actor: system.reviews.candidate_photo(actor, search_id, 1)[0],
        "purge": lambda actor: system.retention.purge_expired(actor),
    }
    for action, operation in operations.items():
        for role, username in ROLE_OF.items():
            allowed = role in ROLE_ACTIONS[action]
            try:
                operation(who[username])
                outcome = True
            except PermissionDeniedError:
                outcome = False
            except RefusedError as exc:  # a search refused (and audited) because the role may not search
                outcome = not isinstance(exc.__cause__, PermissionDeniedError)
            assert outcome == allowed, (action, role)
    assert system.audit.verify().ok


def test_policy_can_turn_two_person_verification_off(world, faces):
    system, who = world
    text = system.admin.policy_in_force(who["admin"])[1].replace("two_person_verification = true", "two_person_verification = false")
    assert "two_person_verification = false" in text
    system.admin.load_policy(who["admin"], text)
    search_id = run_search(system, who["ivan"], faces).search_id
    assert system.reviews.decide(who["erin"], search_id, 1, "possible_lead") == "lead"
    other = run_search(system, who["ivan"], faces).search_id
    system.reviews.decide(who["erin"], other, 1, "possible_lead")
    assert system.reviews.outcome(other) == "lead"


def test_no_probe_or_gallery_bytes_in_plaintext_anywhere(world, faces, datadir):
    system, who = world
    probe = jpeg(faces["obama3.jpg"], 700)
    run_search(system, who["ivan"], faces, probe=probe)
    system.close()
    needles = [probe[len(probe) // 2 : len(probe) // 2 + 64]]
    for folder in (datadir.root,):
        for path in folder.rglob("*"):
            if path.is_file():
                content = path.read_bytes()
                assert not any(needle in content for needle in needles), path
    assert list(datadir.probes_dir.rglob("*"))  # the probe is stored, encrypted


def test_retention_deletes_old_search_records_but_the_audit_trail_keeps_them(world, faces):
    system, who = world
    old = run_search(system, who["ivan"], faces).search_id
    system.reviews.decide(who["erin"], old, 1, "possible_lead")
    recent = run_search(system, who["ivan"], faces).search_id
    with system.galleries.sessions() as session:
        session.execute(update(SearchRecord).where(SearchRecord.id == old)
                        .values(started_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=3650)))
        session.commit()
    assert system.retention.purge_expired(who["admin"])["search_records"] == 1
    with system.galleries.sessions() as session:
        assert [s.id for s in session.scalars(select(SearchRecord))] == [recent]
    assert any(e["target"] == f"search:{old}" and e["action"] == "search" for e in system.audit.entries(limit=1000))
    assert system.audit.verify().ok
