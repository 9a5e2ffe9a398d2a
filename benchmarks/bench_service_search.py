"""Latency of a whole accountable search (the path the CLI, the API and the web pages take) on a large gallery.

Builds a gallery of ``--templates`` synthetic face templates (random 128-d vectors of norm ~1, encrypted and stored
like enrolled ones; their photographs are not stored) plus one real enrolled photograph of the probe's subject, then
runs ``--searches`` searches with a real probe photograph through ``Facetrail.search``: policy checks, probe decoding,
face finding and embedding, the gallery index, candidate lookup and the audit entry. The first search loads (or
builds) the gallery's index; the rest show the steady state of a running server. It prints its figures and a JSON
line; it asserts nothing about speed. Exits 1 if the probe's own subject is not the first candidate.

    python benchmarks/bench_service_search.py --templates 200000 --searches 20
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sqlalchemy import insert, select

from facetrail.accountability.service import Facetrail
from facetrail.datadir import DataDir
from facetrail.gallery.enrol import EnrolItem
from facetrail.gallery.schema import GalleryRecord, ImageRecord, SubjectRecord, TemplateRecord
from facetrail.accountability.requests import CaseRequest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.bench_search import face_like, proc_status_mb  # noqa: E402
from tests.fixtures.face_images import face_images  # noqa: E402
from tests.fixtures.world import create_confirmed  # noqa: E402

CHUNK = 20_000
PASSWORD = "benchmark password 1"
SEARCHES_PER_INVESTIGATOR = 20
"""The default policy's daily search limit per user: the benchmark spreads its searches over enough investigators."""


def searching_investigators(system: Facetrail, admin, gallery_name: str, searches: int) -> list:
    """Enough investigators (unit RHD, granted ``gallery_name``, their role confirmed by a second admin as the
    two-person rule asks) for ``searches`` searches within the default policy's daily limit; search number n is made
    by ``investigators[n // SEARCHES_PER_INVESTIGATOR]``."""
    system.admin.grant_gallery(admin, gallery_name, "RHD")
    investigators = []
    for number in range(-(-searches // SEARCHES_PER_INVESTIGATOR)):
        create_confirmed(system, admin, f"investigator{number}", ["investigator"], "RHD", PASSWORD)
        investigators.append(system.auth.authenticate(system.auth.login(f"investigator{number}", PASSWORD)[1]))
    return investigators


def add_synthetic_templates(system: Facetrail, gallery_name: str, count: int, seed: int = 0) -> None:
    """Store ``count`` synthetic subjects, each with one image record and one encrypted template, and bump the
    gallery's version once (so the next search rebuilds the index from the store)."""
    gallery = system.galleries.get(gallery_name)
    rng = np.random.default_rng(seed)
    with gallery.session() as session:
        real = session.scalars(select(TemplateRecord).where(TemplateRecord.gallery_id == gallery.id)).first()
        first = (session.scalar(select(ImageRecord.id).order_by(ImageRecord.id.desc()).limit(1)) or 0) + 1
        for start in range(0, count, CHUNK):
            n = min(CHUNK, count - start)
            vectors = face_like(rng, n)
            ids = range(first + start, first + start + n)
            hashes = [hashlib.sha256(f"synthetic {i}".encode()).hexdigest() for i in ids]
            session.execute(insert(SubjectRecord), [
                {"id": i, "gallery_id": gallery.id, "external_id": f"S-{i:08d}", "extra": {}} for i in ids])
            session.execute(insert(ImageRecord), [
                {"id": i, "gallery_id": gallery.id, "subject_id": i, "content_hash": h, "original_name": "synthetic",
                 "source": "booking", "width": 250, "height": 250, "extra": {}} for i, h in zip(ids, hashes)])
            session.execute(insert(TemplateRecord), [
                {"id": i, "gallery_id": gallery.id, "image_id": i, "model_name": real.model_name,
                 "model_version": real.model_version, "augmentation": real.augmentation, "face_box": [0, 0, 1, 1], "detector": "synthetic", "quality": {},
                 "embedding": gallery.encrypt_template(vector.tobytes(), h)}
                for i, h, vector in zip(ids, hashes, vectors)])
            print(f"  stored {start + n:,} of {count:,} synthetic templates", flush=True)
        session.get_one(GalleryRecord, gallery.id).version += 1
        session.commit()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--templates", type=int, default=200_000, help="synthetic templates in the gallery")
    parser.add_argument("--searches", type=int, default=20, help="searches to time")
    args = parser.parse_args()
    photos = face_images()
    with tempfile.TemporaryDirectory() as scratch:
        system = Facetrail.initialise(DataDir(Path(scratch) / "data"), "admin", PASSWORD)
        admin = system.auth.authenticate(system.auth.login("admin", PASSWORD)[1])
        system.admin.create_gallery(admin, "county", ["booking"])
        investigators = searching_investigators(system, admin, "county", args.searches)
        rules = dataclasses.replace(system.galleries.settings.enrolment, workers=1)
        system.admin.enrol(admin, "county", [EnrolItem(photos["obama.jpg"], "B-OBAMA", "booking")], rules)
        started = time.perf_counter()
        add_synthetic_templates(system, "county", args.templates)
        stored_s = time.perf_counter() - started
        probe = photos["obama2.jpg"].read_bytes()
        latencies, first_candidate = [], None
        for number in range(args.searches):
            started = time.perf_counter()
            investigator = investigators[number // SEARCHES_PER_INVESTIGATOR]
            result = system.searches.search(investigator, probe, CaseRequest(gallery="county", case_number=f"26-{number:06d}", purpose="criminal_investigation", offence="robbery", note="benchmark search"))
            latencies.append(time.perf_counter() - started)
            first_candidate = result.candidates[0].subject_id
        system.close()
    steady = sorted(latencies[1:]) or latencies
    figures = {
        "templates": args.templates + 1,
        "store_seconds": round(stored_s, 1),
        "first_search_ms": round(latencies[0] * 1000, 1),
        "steady_p50_ms": round(statistics.median(steady) * 1000, 1),
        "steady_max_ms": round(steady[-1] * 1000, 1),
        "peak_rss_mib": round(proc_status_mb("VmHWM")),
        "rank1_is_mate": first_candidate == "B-OBAMA",
    }
    print(f"gallery of {figures['templates']:,} templates: first search {figures['first_search_ms']} ms (loads the index), "
          f"then p50 {figures['steady_p50_ms']} ms, max {figures['steady_max_ms']} ms over {len(steady)} searches; "
          f"peak RSS {figures['peak_rss_mib']} MiB")
    print(json.dumps(figures))
    return 0 if figures["rank1_is_mate"] else 1


if __name__ == "__main__":
    sys.exit(main())
