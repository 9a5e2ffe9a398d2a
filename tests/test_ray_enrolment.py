"""Enrolment on a real two-node Ray cluster on this machine: the same outcomes, templates and audit entries as local
enrolment, the pool's contract, and a run that loses a node midway and still enrols every photograph once."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
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
from facetrail.engine.scheduling import Workforce
from facetrail.errors import WorkersLostError
from facetrail.gallery.analysis import Analysis, Photograph, Refusal, analyse
from facetrail.gallery.enrol import EnrolItem, items_from_folder
from facetrail.gallery.schema import ImageRecord, TemplateRecord
from facetrail.web.jobs import EnrolmentJob
from tests.fixtures.datadir import ADMIN_PASSWORD
from tests.fixtures.images import save_resized
from tests.fixtures.ray_cluster import LocalRayCluster

runner = CliRunner()
# one worker process runs this module (make test: pytest-xdist --dist loadgroup), so one Ray cluster is started
pytestmark = pytest.mark.xdist_group("ray")


@pytest.fixture(scope="session")
def ray_cluster():
    """A Ray head and a second node on this machine, one CPU each, started once; afterwards none of their processes
    may remain."""
    cluster = LocalRayCluster()
    try:
        cluster.connect()
        cluster.add_second_node()
        yield cluster
    finally:
        left = cluster.stop()
    assert not left, f"processes of the tests' Ray cluster still running: {left}"


@pytest.fixture
def two_nodes(ray_cluster) -> LocalRayCluster:
    """The cluster with both its nodes (the second started again if a test killed it)."""
    if ray_cluster.second is None:
        ray_cluster.add_second_node()
    return ray_cluster


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


def test_enrolment_on_ray_matches_local_enrolment(two_nodes, datadir, admin_token, bookings, tmp_path):
    for name in ("local", "ray"):
        result = runner.invoke(app, ["gallery", "create", name, "--allowed-source", "booking"])
        assert result.exit_code == 0, result.output
    common = (str(bookings), "--source", "booking")
    local = enroll(*common, "--gallery", "local", "--workers", "1", str(tmp_path / "local.csv"))
    on_ray = enroll(*common, "--gallery", "ray", "--ray", two_nodes.address, "--workers", "2", str(tmp_path / "ray.csv"))
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
        workforce = audited["ray"][2][2].pop("ray")  # the run was spread over both nodes, and lost nothing
        assert workforce == {"nodes": 2, "workers": 2, "nodes_lost": 0, "workers_lost": 0, "rerun": 0}
        assert audited["ray"][1:] == audited["local"][1:]  # one enrolment, with the same counts and version
    finally:
        system.close()

    again = enroll(*common, "--gallery", "ray", "--ray", two_nodes.address, str(tmp_path / "again.csv"))
    assert sorted(row["status"] for row in again) == ["duplicate"] * 6 + ["previously-rejected"]  # idempotent by hash


def pending(path, data: bytes) -> Photograph:
    return Photograph(path.name, data, EnrolmentConfig())


def test_ray_pool_keeps_input_order_bounds_work_in_flight_and_returns_failures(two_nodes, faces, tmp_path):
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
    for job, result in analyse_many(feed(), analyse, EngineConfig(), workers=2, ray_address=two_nodes.address):
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


def _crash(engine, job):
    """A task that kills the Ray worker running it."""
    os._exit(1)


@pytest.mark.parametrize("datadir", ["sqlite"], indirect=True)
def test_when_every_worker_is_lost_the_run_stops_saying_so_and_the_trail_says_how_it_ended(
        two_nodes, datadir, bookings, monkeypatch):
    system = Facetrail.initialise(datadir, "admin", ADMIN_PASSWORD)
    two_nodes.ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import tests/
    try:
        admin = system.auth.authenticate(system.auth.login("admin", ADMIN_PASSWORD)[1])
        system.admin.create_gallery(admin, "county", ["booking"])
        rules = dataclasses.replace(system.admin.enrolment_rules(admin), ray_address=two_nodes.address, workers=0)
        monkeypatch.setattr("facetrail.gallery.enrol.analyse", _crash)  # every photograph kills its worker
        with pytest.raises(WorkersLostError, match=r"every Ray worker was lost .*\(0 nodes, 0 workers \(2 nodes and 2 "
                                                   r"workers lost.*the 0 photograph\(s\) this run enrolled"):
            system.admin.enrol(admin, "county", items_from_folder(bookings, "booking"), rules)
        entries = [e for e in system.audit.entries() if e["target"] == "county"]
        assert [e["action"] for e in entries] == ["gallery_created", "enrolment_started", "enrolment_interrupted"]
        ended = entries[-1]["details"]
        assert (ended["enrolled"], ended["ray"]["workers"], ended["ray"]["workers_lost"]) == (0, 0, 2)
        assert "every Ray worker was lost" in ended["reason"]
        assert system.audit.verify().ok
    finally:
        two_nodes.ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
        system.close()


@pytest.fixture(scope="module")
def held_apart(tmp_path_factory, faces) -> list[EnrolItem]:
    """32 photographs of 16 subjects, two each (a photograph at one size, and mirrored), every one a distinct file."""
    root = tmp_path_factory.mktemp("held-apart")
    for name in ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"):
        for height in (340, 370, 400, 430):
            for mirror in (False, True):
                save_resized(faces[name], root / f"B-{name[:-4]}-{height}" / f"{'mirror' if mirror else 'front'}.jpg",
                             height, mirror)
    return items_from_folder(root, "booking")


# last in this module: the cluster's second node is started again only if a later test needs it
@pytest.mark.parametrize("datadir", ["sqlite"], indirect=True)
def test_a_node_lost_midway_the_enrolment_finishes_on_the_other_and_enrols_every_photograph_once(
        two_nodes, datadir, held_apart, tmp_path):
    system = Facetrail.initialise(datadir, "admin", ADMIN_PASSWORD)
    try:
        admin = system.auth.authenticate(system.auth.login("admin", ADMIN_PASSWORD)[1])
        system.admin.create_gallery(admin, "county", ["booking"])
        rules = dataclasses.replace(system.admin.enrolment_rules(admin), ray_address=two_nodes.address, workers=0,
                                    commit_every=4)
        job = EnrolmentJob(1, "county", "admin", len(held_apart), tmp_path / "1.json")  # as the web job page sees it

        def record(outcome):
            job.record(outcome)
            if len(job.outcomes) == 2 * IN_FLIGHT_PER_WORKER:  # every worker has jobs in flight
                two_nodes.kill_second_node()

        heard: list[Workforce] = []

        def staffed(workforce):
            heard.append(workforce)
            job.staffed(workforce)

        summary = system.admin.enrol(admin, "county", held_apart, rules, record, on_workforce=staffed)
        job.finish()
        assert summary.count("enrolled") == len(held_apart) == 32
        assert [o.item for o in summary.outcomes] == held_apart  # in input order, each once
        assert two_nodes.wait_for_nodes(1, timeout_s=30)  # the head saw the node die

        lost = summary.workforce
        assert heard == [Workforce(nodes=2, workers=2), lost] and heard[0].describe() == "2 nodes, 2 workers"
        assert (lost.nodes, lost.workers, lost.nodes_lost, lost.workers_lost) == (1, 1, 1, 1) and lost.rerun >= 1
        snapshot = json.loads((tmp_path / "1.json").read_text())
        assert snapshot["done"] == 32 and snapshot["workforce"] == {**lost.to_dict(), "described": lost.describe()}
        assert lost.describe().startswith("1 node, 1 worker (1 node and 1 worker lost, ")

        gallery = system.galleries.get("county")
        with system.galleries.sessions() as session:
            hashes = session.scalars(select(ImageRecord.content_hash).where(ImageRecord.gallery_id == gallery.id)).all()
            templated = [t.image.content_hash
                         for t in session.scalars(select(TemplateRecord).where(TemplateRecord.gallery_id == gallery.id))]
        assert len(hashes) == len(set(hashes)) == 32
        assert sorted(templated) == sorted(hashes)  # one template per photograph
        assert gallery.info().images == 32

        entries = [(e["action"], e["details"]) for e in system.audit.entries() if e["target"] == "county"]
        assert [action for action, _ in entries] == ["gallery_created", "enrolment_started", "enrolment"]
        assert entries[2][1]["enrolled"] == 32 and entries[2][1]["ray"] == lost.to_dict()

        again = system.admin.enrol(admin, "county", held_apart, rules)  # a rerun adds nothing
        assert again.count("duplicate") == 32
    finally:
        system.close()
