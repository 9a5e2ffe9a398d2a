"""County scale: a gallery index of N real-like templates (IVF + SQ8 with exact re-rank, encrypted segments).

The gallery holds the real LFW templates of ``scale_templates.py`` (one photograph per person) and N - 400
synthetic people around them: a real template plus Gaussian noise whose norm is drawn from the real distances
between a person and the nearest other person, so the synthetic crowd is as close to real people as real people
are to each other. Probes are each person's held-apart second photograph (mated searches).

For each N it builds the index as a gallery grows (trained at ``index.compress_at``, then added in steps of
250,000, retrained whenever the gallery outgrows its quantizers), then, in a fresh process: restart (open) to
first search, resident memory of the opened index per face, single-query search latency p50/p95 (one thread),
top-20 agreement with exact search (faiss brute force over the float32 templates) on the mated probes for a few
search depths, and the memory the opened index gains over 20 enrolment commits of 1,000 templates. With ``--enrol-photos M`` it also
enrols M real lfw-dev photographs through ``enrol()`` (one worker) into an empty gallery and into a gallery whose
store and index hold the first N templates, and prints the time per photograph of each.

It prints figures and a JSON line; it asserts nothing.

    python benchmarks/bench_scale.py --templates 1000000 3000000 --enrol-photos 1000
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
from sqlalchemy import insert

from facetrail.config import IndexConfig, Settings
from facetrail.crypto import KeyRing
from facetrail.datadir import DataDir
from facetrail.gallery.enrol import EnrolItem, enrol
from facetrail.gallery.gallery import Galleries
from facetrail.gallery.index import set_search_threads
from facetrail.gallery.schema import GalleryRecord, ImageRecord, SubjectRecord, TemplateRecord
from facetrail.gallery.segments import SegmentedIndex

sys.path.insert(0, str(Path(__file__).parent))
from bench_search import proc_status_mb  # noqa: E402
from scale_templates import load_or_compute  # noqa: E402

K = 20
BUILD_STEP = 250_000
DEPTHS = [(64, 100), (128, 100), (256, 100), (256, 300), (512, 100)]


def real_like(real: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``real`` followed by n - len(real) synthetic templates: real ones plus noise of realistic norm."""
    rng = np.random.default_rng(seed)
    squared = faiss.pairwise_distances(real, real)
    np.fill_diagonal(squared, np.inf)
    nearest_other = np.sqrt(squared.min(axis=1))
    out = np.empty((n, real.shape[1]), dtype=np.float32)
    out[: len(real)] = real
    for start in range(len(real), n, 1_000_000):
        m = min(1_000_000, n - start)
        noise = rng.standard_normal((m, real.shape[1]), dtype=np.float32)
        noise *= (rng.choice(nearest_other, m) / np.linalg.norm(noise, axis=1))[:, None]
        out[start : start + m] = real[rng.integers(0, len(real), m)] + noise
    return out


def build_index(root: Path, keyring: KeyRing, vectors: np.ndarray, config: IndexConfig) -> dict:
    """Build the index as a growing gallery would: to compress_at (training there), then in steps."""
    ids = np.arange(1, len(vectors) + 1, dtype=np.int64)
    start = time.perf_counter()
    index = SegmentedIndex.create(root, keyring, 1, config, vectors.shape[1], 0)
    bounds = [0, min(config.compress_at, len(vectors)), *range(config.compress_at + BUILD_STEP, len(vectors), BUILD_STEP), len(vectors)]
    retrainings = []
    for version, (a, b) in enumerate(zip(bounds, bounds[1:]), start=1):
        if b > a:
            index.apply(version, add=(ids[a:b], vectors[a:b]))
            began = time.perf_counter()
            retrained = index.retrained()  # as after an enrolment
            if retrained is not None:
                retrainings.append({"templates": len(index), "inverted_lists": retrained.inverted_lists,
                                    "seconds": round(time.perf_counter() - began, 1)})
                index.close()
                index = retrained
    seconds = time.perf_counter() - start
    figures = {"build_s": round(seconds, 1), "compressed": index.compressed, "segments": len(index.segment_paths()),
               "disk_bytes_per_face": round(sum(p.stat().st_size for p in root.iterdir()) / len(vectors), 1),
               "retrainings": retrainings}
    index.close()
    return figures


def measure_opened(root: Path, key_file: Path, truth: Path, compress_at: int) -> dict:
    """In this (fresh) process: open the index, first search, memory, latency and agreement per depth."""
    set_search_threads(1)
    with np.load(truth) as data:
        probes, exact_ids = data["probes"], data["exact_ids"]
    keyring = KeyRing(key_file)
    rss_before = proc_status_mb("VmRSS")
    start = time.perf_counter()
    index = SegmentedIndex.open(root, keyring, 1, IndexConfig(compress_at=compress_at))
    index.search(probes[:1], K)
    restart_s = time.perf_counter() - start
    rss_index = proc_status_mb("VmRSS") - rss_before
    results = {"restart_to_first_search_s": round(restart_s, 2), "index_rss_mib": round(rss_index, 1),
               "ram_bytes_per_face": round(rss_index * 2**20 / len(index), 1), "inverted_lists": index.inverted_lists,
               "depths": []}
    index.close()
    del index  # each index measured is freed before the next is opened (an open returns freed memory to the system)
    for nprobe, rerank in DEPTHS:
        index = SegmentedIndex.open(root, keyring, 1, IndexConfig(compress_at=compress_at, nprobe=nprobe, rerank=rerank))
        latencies, identical, same_set, mate_first = [], 0, 0, 0
        for row, probe in enumerate(probes):
            t = time.perf_counter()
            _, labels = index.search(probe[None], K)
            latencies.append(time.perf_counter() - t)
            identical += bool(np.array_equal(labels[0], exact_ids[row]))
            same_set += set(labels[0].tolist()) == set(exact_ids[row].tolist())
            mate_first += labels[0, 0] == row + 1
        p50, p95 = np.percentile(latencies, [50, 95]) * 1000
        results["depths"].append({"nprobe": nprobe, "rerank": rerank, "p50_ms": round(p50, 2), "p95_ms": round(p95, 2),
                                  "top20_identical": round(identical / len(probes), 4),
                                  "top20_same_set": round(same_set / len(probes), 4),
                                  "mate_rank1": round(mate_first / len(probes), 4)})
        index.close()
        del index
    results["after_enrolments"] = ram_after_enrolments(root, keyring, compress_at, probes)
    return results


def ram_after_enrolments(root: Path, keyring: KeyRing, compress_at: int, probes: np.ndarray, batches: int = 20,
                         batch: int = 1_000) -> dict:
    """Resident memory of an opened index per face after it has taken in ``batches`` enrolment commits of
    ``batch`` templates (as a server does between restarts); adds them to the index on disk."""
    index = SegmentedIndex.open(root, keyring, 1, IndexConfig(compress_at=compress_at))
    rss_opened, held = proc_status_mb("VmRSS"), len(index)
    rng = np.random.default_rng(1)
    next_id = int(index.ids()[-1]) + 1
    start = time.perf_counter()
    for version in range(index.version + 1, index.version + 1 + batches):
        vectors = probes[rng.integers(0, len(probes), batch)] + rng.normal(0, 0.03, (batch, probes.shape[1])).astype(np.float32)
        index.apply(version, add=(np.arange(next_id, next_id + batch, dtype=np.int64), vectors))
        next_id += batch
    seconds = time.perf_counter() - start
    grown = (proc_status_mb("VmRSS") - rss_opened) * 2**20
    figures = {"templates_added": batches * batch, "commits": batches, "commit_ms": round(seconds / batches * 1000, 1),
               "rss_growth_bytes_per_added_face": round(grown / (batches * batch), 1),
               "inverted_lists": index.inverted_lists, "held": held}
    index.close()
    return figures


def fill_store(galleries: Galleries, name: str, vectors: np.ndarray) -> None:
    """Give gallery ``name`` one subject, image and template row per vector (as enrolment would), version 1."""
    gallery = galleries.get(name)
    with galleries.sessions() as session:
        for start in range(0, len(vectors), 50_000):
            rows = range(start + 1, min(start + 50_000, len(vectors)) + 1)
            session.execute(insert(SubjectRecord), [{"id": i, "gallery_id": gallery.id, "external_id": f"S-{i}", "extra": {}} for i in rows])
            session.execute(insert(ImageRecord), [
                {"id": i, "gallery_id": gallery.id, "subject_id": i, "content_hash": f"{i:064x}", "original_name": "", "source": "booking",
                 "width": 250, "height": 250, "extra": {}} for i in rows])
            session.execute(insert(TemplateRecord), [
                {"id": i, "gallery_id": gallery.id, "image_id": i, "embedding": gallery.encrypt_template(vectors[i - 1].tobytes(), f"{i:064x}"),
                 "model_name": "synthetic", "model_version": "1", "augmentation": "none", "face_box": [0, 0, 1, 1],
                 "detector": "synthetic", "quality": {}} for i in rows])
        session.get_one(GalleryRecord, gallery.id).version = 1
        session.commit()


def enrolment(datadir: DataDir, images: Path, photos: int, vectors: np.ndarray | None) -> dict:
    """Seconds per photograph enrolling ``photos`` lfw-dev photographs (one worker) into a gallery holding
    ``vectors`` (or none); also the time to build that gallery's index from its store."""
    galleries = Galleries.initialise(datadir)
    galleries.create("county", ["booking"])
    figures = {}
    if vectors is not None:
        start = time.perf_counter()
        fill_store(galleries, "county", vectors)
        figures["store_fill_s"] = round(time.perf_counter() - start, 1)
        start = time.perf_counter()
        galleries.get("county").index()
        figures["index_rebuild_from_store_s"] = round(time.perf_counter() - start, 1)
    items = [EnrolItem(path, f"L-{path.parent.name}", "booking")
             for path in sorted(images.glob("*/*.jpg"))[-photos:]]  # the last photographs: not used as templates
    rules = dataclasses.replace(Settings().enrolment, workers=1)
    start = time.perf_counter()
    summary = enrol(galleries.get("county"), items, Settings().engine, rules)
    seconds = time.perf_counter() - start
    figures.update({"photos": len(items), "enrolled": summary.count("enrolled"), "s_per_photo": round(seconds / len(items), 4)})
    galleries.close()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--templates", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--images", type=Path, default=Path("../shared/faces/lfw-dev"))
    parser.add_argument("--cache", type=Path, default=Path(".cache/lfw-templates.npz"))
    parser.add_argument("--identities", type=int, default=400)
    parser.add_argument("--enrol-photos", type=int, default=0, help="also compare enrolment into an empty and the first-size gallery")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--measure", nargs=4, metavar=("ROOT", "KEY_FILE", "TRUTH", "COMPRESS_AT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        root, key_file, truth, compress_at = args.measure
        print(json.dumps(measure_opened(Path(root), Path(key_file), Path(truth), int(compress_at))))
        return 0

    real = load_or_compute(args.cache, args.images, args.identities)
    config = Settings().index
    report = {"benchmark": "scale", "identities": len(real["names"]), "k": K, "faiss": faiss.__version__, "sizes": []}
    with tempfile.TemporaryDirectory(dir=".cache") as scratch:
        scratch = Path(scratch)
        datadir = DataDir(scratch / "keys-only")
        datadir.create()
        keyring = KeyRing.create(datadir)
        for n in args.templates:
            vectors = real_like(real["gallery"], n, args.seed)
            truth = scratch / f"truth-{n}.npz"
            _, exact_ids = faiss.knn(real["probes"], vectors, K)
            np.savez(truth, probes=real["probes"], exact_ids=exact_ids + 1)
            root = scratch / f"index-{n}"
            figures = {"templates": n, **build_index(root, keyring, vectors, config)}
            del vectors
            measured = subprocess.run([sys.executable, __file__, "--measure", str(root), str(keyring.path), str(truth), str(config.compress_at)],
                                      capture_output=True, text=True, check=True)
            figures.update(json.loads(measured.stdout.strip().splitlines()[-1]))
            report["sizes"].append(figures)
            print(f"\n{n:,} templates: build {figures['build_s']} s, {figures['segments']} segments, "
                  f"{figures['disk_bytes_per_face']} B/face on disk; restart to first search {figures['restart_to_first_search_s']} s; "
                  f"index RSS {figures['index_rss_mib']} MiB = {figures['ram_bytes_per_face']} B/face; "
                  f"{figures['inverted_lists']} inverted lists")
            for d in figures["depths"]:
                print(f"  nprobe {d['nprobe']:>4} rerank {d['rerank']:>5}: p50 {d['p50_ms']:6.2f} ms  p95 {d['p95_ms']:6.2f} ms  "
                      f"top-20 identical {d['top20_identical']:.4f}  same set {d['top20_same_set']:.4f}  mate rank 1 {d['mate_rank1']:.4f}")
            for r in figures["retrainings"]:
                print(f"  retrained at {r['templates']:,} templates for {r['inverted_lists']} lists in {r['seconds']} s")
            grown = figures["after_enrolments"]
            print(f"  then {grown['templates_added']:,} templates in {grown['commits']} commits: "
                  f"{grown['commit_ms']} ms a commit, RSS grew {grown['rss_growth_bytes_per_added_face']} B per face added")
            for path in root.iterdir():
                path.unlink()
        if args.enrol_photos:
            n = args.templates[0]
            empty = enrolment(DataDir(scratch / "empty"), args.images, args.enrol_photos, None)
            full = enrolment(DataDir(scratch / "full"), args.images, args.enrol_photos, real_like(real["gallery"], n, args.seed))
            report["enrolment"] = {"empty": empty, f"gallery_{n}": full, "ratio": round(full["s_per_photo"] / empty["s_per_photo"], 3)}
            print(f"\nenrolling {empty['photos']} photographs, one worker: empty gallery {empty['s_per_photo'] * 1000:.0f} ms/photo, "
                  f"{n:,}-template gallery {full['s_per_photo'] * 1000:.0f} ms/photo (ratio {report['enrolment']['ratio']}); "
                  f"that gallery's store filled in {full['store_fill_s']} s, its index rebuilt from the store in {full['index_rebuild_from_store_s']} s")
    report["peak_rss_mib"] = round(proc_status_mb("VmHWM"), 1)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
