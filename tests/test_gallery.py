"""Galleries on real photographs: provenance, enrolment (idempotent, resumable), search, expungement, index recovery;
the tests of search, expungement and recovery run on both index backends (faiss, and Milvus on milvus-lite), and those
of search, expungement, catch-up and versions on a Milvus server too (with SQLite: the server is what they test)."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from facetrail.config import EnrolmentConfig
from facetrail.errors import DuplicateError, FacetrailError, GalleryError, IndexFileError, NotFoundError
from facetrail.gallery.enrol import enrol, uploaded, write_report
from facetrail.gallery import segments
from facetrail.gallery.gallery import Galleries, IndexState
from facetrail.gallery.index import CompressedIndex
from facetrail.gallery.manifest import items_from_manifest, items_from_uploads
from facetrail.gallery.schema import ImageRecord, RejectionRecord, SubjectRecord, TemplateRecord
from tests.fixtures.gallery import SERIAL, enrol_folder, probe_template
from tests.fixtures.images import save_resized
from tests.fixtures.milvus import IN_SERVER_GROUP, SERVER

BOTH_BACKENDS = pytest.mark.parametrize("index_backend", ["faiss", "milvus"], indirect=True)
MILVUS_SERVER = pytest.param("sqlite", SERVER, marks=IN_SERVER_GROUP)
ALSO_ON_SERVER = pytest.mark.parametrize("datadir,index_backend", [
    *((store, backend) for backend in ("faiss", "milvus") for store in ("sqlite", "postgresql")), MILVUS_SERVER],
    indirect=True)
"""BOTH_BACKENDS, and the Milvus server with SQLite."""


@pytest.fixture
def county(galleries):
    galleries.create("county", ["booking"], "county booking photographs")
    return galleries.get("county")


def counts(gallery) -> tuple[int, int, int]:
    with gallery.session() as session:
        return tuple(
            session.scalar(select(func.count()).select_from(model).where(model.gallery_id == gallery.id))
            for model in (SubjectRecord, ImageRecord, TemplateRecord)
        )


def test_gallery_needs_valid_name_and_allowed_sources(galleries):
    with pytest.raises(GalleryError, match="at least one allowed source"):
        galleries.create("empty", [])
    with pytest.raises(GalleryError, match="prohibited"):
        galleries.create("scraped", ["booking", "web-scrape"])
    with pytest.raises(GalleryError, match="gallery name"):
        galleries.create("bad name!", ["booking"])
    galleries.create("county", ["booking", "court-order"])
    with pytest.raises(DuplicateError):
        galleries.create("county", ["booking"])
    with pytest.raises(NotFoundError):
        galleries.get("nowhere")
    assert [g.name for g in galleries.list()] == ["county"]
    assert galleries.get("county").info().allowed_sources == ["booking", "court-order"]


@BOTH_BACKENDS
def test_enrolment_reports_every_item_and_is_idempotent(county, photo_folder, tmp_path):
    summary = enrol_folder(county, photo_folder)
    by_name = {(o.item.subject_id, o.item.path.name): o for o in summary.outcomes}
    assert summary.count("enrolled") == 4 and summary.count("rejected") == 1
    assert "not a recognised image" in by_name[("B-2002", "notes.jpg")].reason
    assert counts(county) == (2, 4, 4)
    report = tmp_path / "report.csv"
    write_report(report, summary.outcomes)
    rows = list(csv.DictReader(report.open()))
    assert len(rows) == 5 and {r["status"] for r in rows} == {"enrolled", "rejected"}
    assert all(r["reason"] for r in rows if r["status"] == "rejected")

    again = enrol_folder(county, photo_folder)
    assert again.count("enrolled") == 0 and again.count("duplicate") == 4 and again.count("previously-rejected") == 1
    assert counts(county) == (2, 4, 4)
    assert len(county.index()) == 4


def test_disallowed_source_is_refused_per_row(county, photo_folder, tmp_path):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "subject_id,path,source,capture_date,booking_agency\n"
        f"B-1001,{photo_folder / 'B-1001' / 'front.jpg'},booking,2019-03-04,LASD\n"
        f"X-9,{photo_folder / 'B-2002' / 'front.jpg'},social-media,,\n"
    )
    summary = enrol(county, items_from_manifest(manifest, None), county.galleries.settings.engine, SERIAL)
    statuses = {o.item.subject_id: (o.status, o.reason) for o in summary.outcomes}
    assert statuses["B-1001"][0] == "enrolled"
    assert statuses["X-9"][0] == "rejected" and "not allowed" in statuses["X-9"][1]
    with county.session() as session:
        image = session.scalar(select(ImageRecord))
        assert image.source == "booking" and str(image.capture_date) == "2019-03-04"
        assert image.extra == {"booking_agency": "LASD"}
        assert session.scalar(select(func.count()).select_from(RejectionRecord)) == 0  # provenance refusals are not cached
    assert counts(county) == (1, 1, 1)


def test_manifest_errors_name_the_line(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("subject_id,path,capture_date\nA,a.jpg,yesterday\n")
    with pytest.raises(Exception, match=r"m.csv:2: no source"):
        items_from_manifest(manifest, None)
    with pytest.raises(Exception, match=r"m.csv:2: capture_date 'yesterday'"):
        items_from_manifest(manifest, "booking")
    manifest.write_text("subject,file\nA,a.jpg\n")
    with pytest.raises(Exception, match="missing column"):
        items_from_manifest(manifest, "booking")


def test_one_manifest_names_files_or_uploads(tmp_path):
    """The command line's manifest and the uploads' are one format: ``path`` (alias ``file``) names the photograph."""
    text = "subject_id,file,capture_date,agency\nA-1,a.jpg,2020-01-02,LASD\n"
    (upload,) = items_from_uploads(text, [("a.jpg", b"the bytes")], "booking")
    assert (upload.path, upload.subject_id, upload.source, str(upload.capture_date), upload.extra, upload.data) == (
        Path("a.jpg"), "A-1", "booking", "2020-01-02", {"agency": "LASD"}, b"the bytes")
    manifest = tmp_path / "m.csv"
    manifest.write_text(text.replace("file", "path"))
    (from_file,) = items_from_manifest(manifest, "booking")
    assert from_file.path == tmp_path / "a.jpg" and from_file.data is None and from_file.extra == upload.extra
    with pytest.raises(FacetrailError, match="the manifest and the files differ: no file uploaded for b.jpg"):
        items_from_uploads(text + "A-2,b.jpg,,\n", [("a.jpg", b"x")], "booking")
    with pytest.raises(FacetrailError, match="manifest:3: 'a.jpg' is named twice"):
        items_from_uploads(text + "A-2,a.jpg,,\n", [("a.jpg", b"x")], "booking")
    with pytest.raises(FacetrailError, match="manifest:2: subject id 'B/1'"):
        items_from_uploads("subject_id,path\nB/1,a.jpg\n", [("a.jpg", b"x")], "booking")


def test_uploaded_photographs_are_enrolled_from_memory(county, photo_folder):
    photo = (photo_folder / "B-1001" / "front.jpg").read_bytes()
    items = [uploaded("front.jpg", photo, "B-1001", "booking"), uploaded("empty.jpg", b"", "B-1001", "booking")]
    summary = enrol(county, items, county.galleries.settings.engine, SERIAL)
    assert {o.item.path.name: (o.status, o.reason) for o in summary.outcomes} == {
        "front.jpg": ("enrolled", ""), "empty.jpg": ("rejected", "the image has no bytes")}
    with county.session() as session:
        assert session.scalar(select(ImageRecord.original_name)) == "front.jpg"
        assert session.scalar(select(func.count()).select_from(RejectionRecord)) == 0  # refused before any face work


@ALSO_ON_SERVER
def test_search_ranks_the_right_subject_first(county, photo_folder, engine, faces, tmp_path):
    enrol_folder(county, photo_folder)
    probe = probe_template(engine, save_resized(faces["obama3.jpg"], tmp_path / "still.jpg", 450))
    candidates = county.search(probe, k=10).candidates
    assert [c.rank for c in candidates] == [1, 2, 3, 4]
    assert candidates[0].subject_id == "B-1001" and candidates[0].distance < 0.6
    assert [c.distance for c in candidates] == sorted(c.distance for c in candidates)
    assert {c.subject_id for c in candidates[2:]} == {"B-2002"}
    assert county.search(probe, k=10, exact=True).candidates == candidates  # the audit mode


@pytest.mark.parametrize("retrain", ["after_enrolment", "on_command"])
def test_an_enrolment_that_outgrows_the_quantizers_retrains_the_index_as_configured(datadir, photo_folder, engine, faces,
                                                                                   tmp_path, monkeypatch, retrain):
    # Compressed from 2 templates; "outgrown" (normally: lists holding 4x what they were trained for) while the index
    # has one list, retrained with two: the four real photographs stand in for millions.
    config = datadir.config_path.read_text()
    assert "compress_at = 50000" in config and 'retrain = "quiet_hour"' in config
    datadir.config_path.write_text(config.replace("compress_at = 50000", "compress_at = 2")
                                   .replace('retrain = "quiet_hour"', f'retrain = "{retrain}"'))
    monkeypatch.setattr(CompressedIndex, "outgrown", lambda self, templates: self.nlist < 2)
    monkeypatch.setattr(segments, "choose_nlist", lambda templates: 1 if templates < 4 else 2)
    galleries = Galleries.open(datadir)
    try:
        galleries.create("county", ["booking"])
        county = galleries.get("county")
        summary = enrol_folder(county, photo_folder)
        assert summary.count("enrolled") == 4
        if retrain == "on_command":  # the enrolment left it outgrown: retrained when asked, at the same version
            assert county.index_state() == IndexState(templates=4, inverted_lists=1, outgrown=True)
            other = Galleries.open(datadir)  # another process, which loaded the index before it was retrained
            assert other.get("county").index_state().outgrown
            version, audited = county.index().version, []
            done = county.retrain_index(before=audited.append)
            assert (done.version, done.templates, done.lists_before, done.lists_after) == (version, 4, 1, 2)
            assert audited == [IndexState(templates=4, inverted_lists=1, outgrown=True)]
            with pytest.raises(GalleryError, match="still suit"):  # it loads the retrained index rather than retrain again
                other.get("county").retrain_index()
            assert other.get("county").index().inverted_lists == 2
            other.close()
        index = county.index()
        assert index.inverted_lists == 2 and county.index_state().outgrown is False
        with pytest.raises(GalleryError, match="2 inverted lists still suit its 4 templates"):
            county.retrain_index()
        assert county.retrain_index(force=True).lists_after == 2  # retrained anyway
        probe = probe_template(engine, save_resized(faces["obama3.jpg"], tmp_path / "still.jpg", 450))
        hits = county.search(probe, k=4)
        assert hits.version == county.index().version
        candidates = hits.candidates
        assert [c.subject_id for c in candidates[:2]] == ["B-1001", "B-1001"]
        assert candidates == county.search(probe, k=4, exact=True).candidates
    finally:
        galleries.close()


def test_an_exact_index_has_nothing_to_retrain(county, photo_folder):
    with pytest.raises(GalleryError, match="holds no templates"):
        county.retrain_index(force=True)
    enrol_folder(county, photo_folder)
    assert county.index_state() == IndexState(templates=4, inverted_lists=None, outgrown=False)
    with pytest.raises(GalleryError, match="4 templates are searched exactly .* no quantizers to retrain"):
        county.retrain_index(force=True)


@ALSO_ON_SERVER
def test_expungement_leaves_no_trace(county, photo_folder, engine, faces, datadir):
    enrol_folder(county, photo_folder)
    photo_bytes = (photo_folder / "B-1001" / "front.jpg").read_bytes()
    with county.session() as session:
        rows = session.execute(
            select(TemplateRecord.id, TemplateRecord.embedding).join(ImageRecord).join(SubjectRecord).where(SubjectRecord.external_id == "B-1001")
        ).all()
    templates, removed = [row.embedding for row in rows], np.array([row.id for row in rows])
    vectors = county.index().vectors(removed)
    report = county.remove_subject("B-1001")
    assert (report.images, report.templates, report.image_files, report.index_entries) == (2, 2, 2, 2)
    assert counts(county) == (1, 2, 2)
    probe = probe_template(engine, faces["obama3.jpg"])
    assert {c.subject_id for c in county.search(probe, k=10).candidates} == {"B-2002"}
    # the index no longer holds them: not even their own templates find them, in either search mode
    index = Galleries.open(datadir).get("county").index()
    assert not np.isin(removed, index.ids()).any() and len(index) == 2
    for exact in (False, True):
        assert not np.isin(index.search(vectors, 10, exact=exact)[1], removed).any()
    with pytest.raises(KeyError):
        index.vectors(removed)
    # neither the photographs nor the templates remain anywhere in the data directory
    for path in datadir.root.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert photo_bytes[1000:1064] not in content
            assert all(t[:64] not in content for t in templates), path
    with pytest.raises(NotFoundError):
        county.remove_subject("B-1001")


@BOTH_BACKENDS
def test_index_is_rebuilt_when_missing_stale_or_corrupt(county, galleries, photo_folder, engine, faces, datadir, monkeypatch,
                                                       index_backend):
    enrol_folder(county, photo_folder)
    probe = probe_template(engine, faces["obama3.jpg"])
    expected = [(c.template_id, round(c.distance, 5)) for c in county.search(probe, k=4).candidates]
    if index_backend == "faiss":
        segment = county.index().segment_paths()[-1]
        segment.write_bytes(segment.read_bytes()[:100])  # truncated by a disk fault
        with pytest.raises(IndexFileError, match=segment.name):
            Galleries.open(datadir).get("county").search(probe, k=4)  # a damaged index is reported, never used
    galleries.index_backend.drop(county.id)
    assert [(c.template_id, round(c.distance, 5)) for c in Galleries.open(datadir).get("county").search(probe, k=4).candidates] == expected

    # a store change that never reached the index (a writer killed between its commit and its index update)
    with county.session() as session:
        county.record(session).version += 1
        session.commit()
    fresh = Galleries.open(datadir).get("county")
    assert [(c.template_id, round(c.distance, 5)) for c in fresh.search(probe, k=4).candidates] == expected
    assert sorted(fresh.index().ids().tolist()) == sorted(t for t, _ in expected)
    assert fresh.index().version == county.info().version

    # while a writer in another process is at work, a search waits for it to bring the index to the store's version
    with county.session() as session:
        county.record(session).version += 1
        session.commit()
    monkeypatch.setattr("facetrail.gallery.gallery.WRITER_WAIT_S", 0.3)
    with county.write_lock():
        with pytest.raises(GalleryError, match="writer at work"):
            Galleries.open(datadir).get("county").search(probe, k=4)
    assert [(c.template_id, round(c.distance, 5)) for c in Galleries.open(datadir).get("county").search(probe, k=4).candidates] == expected


def test_whole_index_files_of_the_format_before_segments_are_deleted_once_at_opening(datadir):
    legacy = datadir.index_dir / "gallery-1-v7.faiss"
    legacy.parent.mkdir(parents=True, exist_ok=True)
    legacy.write_bytes(b"an index of the old format")
    Galleries.open(datadir).close()
    assert not legacy.exists() and datadir.index_dir.is_dir()


@BOTH_BACKENDS
def test_searches_during_an_enrolment_see_one_version_and_do_not_wait_for_it(county, galleries, photo_folder, engine, faces):
    """A process keeps one object per gallery (its index stays loaded); searches on one thread while another enrols,
    committing photograph by photograph, each find exactly the templates of the version they report."""
    assert galleries.get("county") is county
    probe = probe_template(engine, faces["obama3.jpg"])
    templates_at = {county.info().version: 0}

    def note_version(outcome) -> None:
        if outcome.status == "enrolled":
            info = county.info()
            templates_at[info.version] = info.templates

    worker = threading.Thread(target=enrol_folder, args=(county, photo_folder),
                              kwargs={"rules": EnrolmentConfig(workers=1, commit_every=1), "on_outcome": note_version})
    hits = []
    worker.start()
    while worker.is_alive():
        hits.append(county.search(probe, k=10))
    worker.join()
    hits.append(county.search(probe, k=10))
    assert templates_at == {version: number for number, version in enumerate(sorted(templates_at))}
    assert [len(h.candidates) for h in hits] == [templates_at[h.version] for h in hits]
    assert [h.version for h in hits] == sorted(h.version for h in hits)
    assert len({h.version for h in hits}) >= 3, "searches waited for the whole enrolment"
    assert hits[-1].version == max(templates_at) and len(hits[-1].candidates) == 4


@ALSO_ON_SERVER
def test_a_change_the_index_missed_is_brought_from_the_store(county, photo_folder, engine, faces, datadir, monkeypatch,
                                                           index_backend, tmp_path):
    """A writer that fails (or is killed) between committing to the store and its index's commit point: the next
    process brings the index to the store, with no template twice and no expunged template ever found."""
    enrol_folder(county, photo_folder)
    commit_point = ("facetrail.gallery.segments._write_manifest" if index_backend == "faiss"
                    else "facetrail.gallery.milvus_index.MilvusBackend.write_version")

    def killed(*args, **kwargs):
        raise OSError("killed before the index's commit point")

    def stored_ids() -> list[int]:
        with county.session() as session:
            return sorted(session.scalars(select(TemplateRecord.id).where(TemplateRecord.gallery_id == county.id)))

    probe = probe_template(engine, faces["obama3.jpg"])
    newcomer = tmp_path / "new"
    save_resized(faces["obama3.jpg"], newcomer / "B-3003" / "front.jpg", 460)
    with monkeypatch.context() as patched, pytest.raises(OSError, match="killed"):
        patched.setattr(commit_point, killed)
        enrol_folder(county, newcomer)
    assert counts(county) == (3, 5, 5)
    fresh = Galleries.open(datadir).get("county")
    hits = fresh.search(probe, k=10)
    assert hits.version == county.info().version == fresh.index().version
    assert [c.subject_id for c in hits.candidates][:3] == ["B-3003", "B-1001", "B-1001"] and len(hits.candidates) == 5
    assert fresh.index().ids().tolist() == stored_ids() and len(fresh.index()) == 5  # no template twice

    with monkeypatch.context() as patched, pytest.raises(OSError, match="killed"):
        patched.setattr(commit_point, killed)
        county.remove_subject("B-1001")
    assert counts(county) == (2, 3, 3)
    fresh = Galleries.open(datadir).get("county")
    hits = fresh.search(probe, k=10)
    assert hits.version == county.info().version == fresh.index().version
    assert [c.subject_id for c in hits.candidates] == ["B-3003", "B-2002", "B-2002"]
    assert fresh.index().ids().tolist() == stored_ids() and len(fresh.index()) == 3


@pytest.mark.parametrize("datadir,index_backend", [("sqlite", "milvus"), ("postgresql", "milvus"), MILVUS_SERVER],
                         indirect=True)
def test_a_search_that_another_process_commits_under_is_repeated(county, photo_folder, engine, faces, datadir, monkeypatch):
    """With a shared index a search reports the version it searched: one that another process's commit overlapped
    is done again."""
    from facetrail.gallery.milvus_index import MilvusIndex

    enrol_folder(county, photo_folder)
    other_process = Galleries.open(datadir).get("county")
    searched = []
    search = MilvusIndex.search

    def overlapped(index, *args, **kwargs):
        result = search(index, *args, **kwargs)
        if not searched:
            other_process.remove_subject("B-1001")  # commits after this search read Milvus, before it returns
        searched.append(index.version)
        return result

    monkeypatch.setattr(MilvusIndex, "search", overlapped)
    hits = county.search(probe_template(engine, faces["obama3.jpg"]), k=10)
    assert searched == [hits.version - 1, hits.version] and hits.version == county.info().version
    assert {c.subject_id for c in hits.candidates} == {"B-2002"} and len(hits.candidates) == 2


def test_parallel_enrolment_matches_serial(county, galleries, photo_folder):
    galleries.create("parallel", ["booking"])
    parallel = galleries.get("parallel")
    serial_summary = enrol_folder(county, photo_folder)
    parallel_summary = enrol_folder(parallel, photo_folder, rules=EnrolmentConfig(workers=2, commit_every=3))
    assert parallel_summary.to_dict() == serial_summary.to_dict()
    with county.session() as session:

        def vectors(gallery):
            records = session.scalars(select(TemplateRecord).where(TemplateRecord.gallery_id == gallery.id)).all()
            return {record.image.content_hash: gallery.template_vector(record) for record in records}

        serial_vectors, parallel_vectors = vectors(county), vectors(parallel)
    assert serial_vectors.keys() == parallel_vectors.keys()
    for content_hash, vector in serial_vectors.items():
        assert np.allclose(vector, parallel_vectors[content_hash], atol=1e-5)


def test_enrolment_killed_mid_batch_resumes_without_duplicates(county, faces, datadir, admin_token, tmp_path):
    folder = tmp_path / "many"
    heights = {"obama.jpg": 380, "obama2.jpg": 400, "obama3.jpg": 760, "biden.jpg": 640}  # faces about 90 px wide
    for k in range(12):
        source = list(heights)[k % 4]
        save_resized(faces[source], folder / f"S-{k:02d}" / "photo.jpg", heights[source] + 7 * k, mirror=k >= 4)
    command = [sys.executable, "-m", "facetrail", "enroll", str(folder), "--gallery", "county", "--source", "booking", "--workers", "1"]
    config = datadir.config_path.read_text().replace("commit_every = 32", "commit_every = 1")
    datadir.config_path.write_text(config)
    process = subprocess.Popen(command, env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while counts(county)[1] < 3 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert process.poll() is None, process.stderr.read().decode()
    process.send_signal(signal.SIGKILL)
    process.wait()
    interrupted = counts(county)[1]
    assert 3 <= interrupted < 12

    finished = subprocess.run(command + ["--json"], env=os.environ.copy(), capture_output=True, text=True, check=True)
    assert f'"enrolled": {12 - interrupted}' in finished.stdout and f'"duplicate": {interrupted}' in finished.stdout
    assert counts(county) == (12, 12, 12)
    fresh = Galleries.open(datadir).get("county")
    with fresh.session() as session:
        template_ids = sorted(session.scalars(select(TemplateRecord.id)))
    assert sorted(fresh.index().ids().tolist()) == template_ids


def test_subject_templates_are_every_stored_template_with_its_subject(county, photo_folder, engine, faces, tmp_path):
    enrol_folder(county, photo_folder)
    ids, subjects, vectors, version = county.subject_templates(batch=2)
    with county.session() as session:
        stored = session.execute(select(TemplateRecord.id, ImageRecord.subject_id)
                                 .join(ImageRecord, ImageRecord.id == TemplateRecord.image_id)
                                 .order_by(TemplateRecord.id)).all()
    assert ids.tolist() == [r.id for r in stored] and subjects.tolist() == [r.subject_id for r in stored]
    assert vectors.shape == (len(stored), 128) and version == county.info().version
    probe = probe_template(engine, save_resized(faces["obama3.jpg"], tmp_path / "still.jpg", 450))
    nearest = county.search(probe, k=1).candidates[0]
    assert np.isclose(np.linalg.norm(vectors[ids.tolist().index(nearest.template_id)] - probe), nearest.distance, atol=1e-4)
