"""Enrolment on Ray: the same outcomes, templates and audit entries as local enrolment, and the pool's contract."""

from __future__ import annotations

import csv
import hashlib
import shutil
import sys

import numpy as np
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from facetrail.accountability.service import Facetrail
from facetrail.cli import app
from facetrail.config import EngineConfig, EnrolmentConfig
from facetrail.engine.parallel import IN_FLIGHT_PER_WORKER, analyse_many
from facetrail.gallery.enrol import Analysis, EnrolItem, Refusal, _analyse, _Pending
from facetrail.gallery.schema import TemplateRecord
from tests.fixtures.images import save_resized

runner = CliRunner()
# one worker process runs this module (make test: pytest-xdist --dist loadgroup), so one Ray instance is started
pytestmark = pytest.mark.xdist_group("ray")


@pytest.fixture(scope="session")
def ray_cluster():
    """A two-CPU Ray instance in this test session, started once."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def bookings(tmp_path_factory, faces):
    """Three subjects, a copy of one photograph under another subject and a file that is not an image."""
    root = tmp_path_factory.mktemp("ray-bookings")
    save_resized(faces["obama.jpg"], root / "B-1001" / "front.jpg", 400)
    save_resized(faces["obama2.jpg"], root / "B-1001" / "second.jpg", 420)
    save_resized(faces["biden.jpg"], root / "B-2002" / "front.jpg", 500)
    save_resized(faces["biden.jpg"], root / "B-2002" / "mirror.jpg", 480, mirror=True)
    (root / "B-3003").mkdir()
    shutil.copy(root / "B-1001" / "front.jpg", root / "B-3003" / "copy.jpg")
    shutil.copy(faces["obama_partial_face.jpg"], root / "B-3003" / "partial.jpg")
    (root / "B-3003" / "notes.jpg").write_text("booking notes, not a photograph")
    return root


def enroll(*args: str) -> list[dict[str, str]]:
    """Run ``facetrail enroll`` with ``--report``; the report's rows without image ids (which differ by gallery)."""
    report = args[-1]
    result = runner.invoke(app, ["enroll", *args[:-1], "--report", report])
    assert result.exit_code == 0, result.output
    with open(report, newline="", encoding="utf-8") as handle:
        return [{k: v for k, v in row.items() if k != "image_id"} for row in csv.DictReader(handle)]


def test_enrolment_on_ray_matches_local_enrolment(ray_cluster, datadir, admin_token, bookings, tmp_path):
    for name in ("local", "ray"):
        result = runner.invoke(app, ["gallery", "create", name, "--allowed-source", "booking"])
        assert result.exit_code == 0, result.output
    common = (str(bookings), "--source", "booking")
    local = enroll(*common, "--gallery", "local", "--workers", "1", str(tmp_path / "local.csv"))
    on_ray = enroll(*common, "--gallery", "ray", "--ray", "auto", "--workers", "2", str(tmp_path / "ray.csv"))
    assert on_ray == local
    assert {row["status"] for row in local} == {"enrolled", "duplicate", "rejected"}

    system = Facetrail.open(datadir)
    try:
        with system.galleries.sessions() as session:

            def templates(gallery_name):
                gallery = system.galleries.get(gallery_name)
                records = session.scalars(select(TemplateRecord).where(TemplateRecord.gallery_id == gallery.id)).all()
                return {r.image.content_hash: (gallery.template_vector(r), r.model_version, r.face_box, r.quality)
                        for r in records}

            local_templates, ray_templates = templates("local"), templates("ray")
        assert ray_templates.keys() == local_templates.keys() and len(ray_templates) == 5
        for content_hash, (vector, *described) in ray_templates.items():
            assert np.allclose(vector, local_templates[content_hash][0], atol=1e-5)
            assert described == list(local_templates[content_hash][1:])
        for vector, *_ in ray_templates.values():  # the index holds what the store holds
            assert system.galleries.get("ray").search(vector, k=1).candidates[0].distance < 1e-3

        audited = {name: [(e["action"], e["actor"], e["details"]) for e in system.audit.entries() if e["target"] == name]
                   for name in ("local", "ray")}
        assert [action for action, *_ in audited["ray"]] == ["gallery_created", "enrolment_started", "enrolment"]
        assert audited["ray"][1:] == audited["local"][1:]  # one enrolment, with the same counts and version
    finally:
        system.close()

    again = enroll(*common, "--gallery", "ray", "--ray", "auto", str(tmp_path / "again.csv"))
    assert sorted(row["status"] for row in again) == ["duplicate"] * 6 + ["previously-rejected"]  # idempotent by hash


def pending(path, data: bytes) -> _Pending:
    return _Pending(EnrolItem(path, path.name, "booking"), hashlib.sha256(data).hexdigest(), data, EnrolmentConfig())


def test_ray_pool_keeps_input_order_bounds_work_in_flight_and_returns_failures(ray_cluster, faces, tmp_path):
    photos = [faces[name] for name in ("obama.jpg", "biden.jpg", "obama2.jpg")] * 4
    jobs = [pending(path, path.read_bytes()) for path in photos]
    jobs.insert(5, pending(tmp_path / "broken.jpg", b"\xff\xd8 not really a JPEG"))
    pulled = 0

    def feed():
        nonlocal pulled
        for job in jobs:
            pulled += 1
            yield job

    results, pulled_at_first = [], None
    for job, result in analyse_many(feed(), _analyse, EngineConfig(), workers=2, ray_address="auto"):
        pulled_at_first = pulled if pulled_at_first is None else pulled_at_first
        results.append((job, result))
    assert [job for job, _ in results] == jobs
    assert pulled_at_first <= 2 * IN_FLIGHT_PER_WORKER < len(jobs)
    assert isinstance(results[5][1], Refusal) and "not a recognised image" in results[5][1].reason
    embeddings = [result.template.embedding for _, result in results if isinstance(result, Analysis)]
    assert len(embeddings) == 12
    assert all(np.array_equal(embeddings[i], embeddings[i % 3]) for i in range(12))  # the same photo, the same template


def test_without_ray_installed_the_ray_option_is_refused_before_anything_happens(datadir, admin_token, bookings,
                                                                                  monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    assert runner.invoke(app, ["gallery", "create", "county", "--allowed-source", "booking"]).exit_code == 0
    result = runner.invoke(app, ["enroll", str(bookings), "--gallery", "county", "--source", "booking", "--ray", "auto"])
    assert result.exit_code != 0
    assert "needs the 'ray' package" in result.output and "pip install 'facetrail[ray]'" in result.output
    system = Facetrail.open(datadir)
    try:
        assert [e["action"] for e in system.audit.entries() if e["target"] == "county"] == ["gallery_created"]
        assert system.galleries.get("county").info().images == 0
    finally:
        system.close()
    result = runner.invoke(app, ["enroll", str(bookings), "--gallery", "county", "--source", "booking", "--workers", "1"])
    assert result.exit_code == 0, result.output  # the local pool needs no Ray
