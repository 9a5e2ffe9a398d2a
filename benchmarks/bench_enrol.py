"""Enrolment throughput on 250×250 photographs (LFW) against the peer, face_recognition 1.3.0, in the same run.

Three measurements, each repeated (``--repeat``, alternating facetrail and the peer so both see the same machine):

1. Stages, in this process on one core: decode, HOG detection, CNN fallback (only when HOG found nothing), landmarks,
   alignment (two chips), quality, embedding (the augmentation's passes as one batch), for each precision asked for.
2. End to end: the real ``enrol()`` of ``--count`` photographs into a fresh data directory with ``--workers``
   processes (hashing, decoding, detection, quality, embedding, encrypted photographs and templates, SQLite commits,
   index updates), timed from the call (worker start-up included); with ``--ray ADDRESS`` also on Ray actors. The
   peer as its README shows it (``load_image_file``, ``face_encodings``: HOG upsampled once, one encoding, no
   fallback, nothing stored) on the same photographs in ``--workers`` processes, pool start-up included.
3. ``facetrail enroll DIR`` of ``--cli-count`` other photographs (one per person), wall clock of the command
   (start-up included), against the peer on the same photographs.

The peer is installed for the benchmark only: ``pip install --no-deps face_recognition==1.3.0`` (it names dlib, which
dlib-bin provides). The script prints its figures, min and median over the repeats, and a JSON line; it asserts
nothing about speed.

    python benchmarks/bench_enrol.py --images ../shared/faces/lfw-dev --count 1000 --cli-count 400 --workers 2
    python benchmarks/bench_enrol.py --count 400 --precisions int8,float32 --repeat 1 --cli-count 0 --ray local
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from multiprocessing import get_context
from pathlib import Path

from facetrail.accountability.service import Facetrail
from facetrail.config import EngineConfig, EnrolmentConfig, Settings
from facetrail.datadir import DataDir
from facetrail.engine.decode import decode_image
from facetrail.engine.pipeline import EMBEDDING_PASSES, FaceEngine, FoundFace
from facetrail.engine.quality import assess_quality
from facetrail.engine.ray_pool import connect
from facetrail.gallery.enrol import EnrolItem, enrol, enrolment_engine_config
from facetrail.gallery.gallery import Galleries

ADMIN_PASSWORD = "bench: correct horse battery staple"


def sample_images(root: Path, count: int, per_person: int = 0, skip: frozenset[Path] = frozenset()) -> list[tuple[str, Path]]:
    """The first ``count`` images in identity order, as (identity, path): at most ``per_person`` of each person
    (0: all), none of ``skip``."""
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        photos = [path for path in sorted(folder.glob("*.jpg")) if path not in skip]
        for path in photos[:per_person or None]:
            found.append((folder.name, path))
            if len(found) == count:
                return found
    return found


def stage_times(engine: FaceEngine, images: list[tuple[str, Path]]) -> dict:
    """Mean milliseconds per image for each stage, in this process, with the engine's thread settings."""
    stages = ("decode", "detect_hog", "detect_cnn_fallback", "landmarks", "align", "quality", "embed")
    totals = dict.fromkeys(stages, 0.0)
    fallbacks = 0
    model, detector = engine.model, engine.detector
    for _, path in images:
        data = path.read_bytes()
        clock = [time.perf_counter()]

        def lap(stage: str) -> None:
            clock.append(time.perf_counter())
            totals[stage] += clock[-1] - clock[-2]

        pixels = decode_image(data, engine.config.limits).pixels
        lap("decode")
        detections = detector.detect_hog(pixels)
        lap("detect_hog")
        if not detections and detector.has_fallback:
            detections = detector.detect_cnn(pixels)
            fallbacks += 1
        lap("detect_cnn_fallback")
        if not detections:
            continue
        detection = max(detections, key=lambda d: d.box.area)
        landmarks = model.landmarks(pixels, detection.box)
        lap("landmarks")
        chip = model.align(pixels, landmarks)
        context = model.align(pixels, landmarks, engine.config.embedding.context_padding)
        lap("align")
        quality = assess_quality(detection, landmarks, chip, engine.config.quality)
        lap("quality")
        engine.template(FoundFace(detection, landmarks, chip, quality, context))
        lap("embed")
    per_image = {stage: 1000 * seconds / len(images) for stage, seconds in totals.items()}
    per_image["total"] = sum(per_image.values())
    per_image["cnn_fallbacks"] = fallbacks
    return per_image


def end_to_end(config: EngineConfig, images: list[tuple[str, Path]], rules: EnrolmentConfig) -> dict:
    """Images per second through the real enrolment into a fresh data directory."""
    with tempfile.TemporaryDirectory() as scratch:
        datadir = DataDir(Path(scratch) / "data")
        galleries = Galleries.initialise(datadir)
        galleries.create("bench", ["booking"])
        gallery = galleries.get("bench")
        items = [EnrolItem(path, identity, "booking") for identity, path in images]
        start = time.perf_counter()
        summary = enrol(gallery, items, config, rules)
        elapsed = time.perf_counter() - start
        galleries.close()
    return {"seconds": elapsed, "images_per_second": len(images) / elapsed, **summary.to_dict()}


def _peer_encodings(path: str) -> int:
    import face_recognition

    return len(face_recognition.face_encodings(face_recognition.load_image_file(path)))


def peer(images: list[tuple[str, Path]], workers: int) -> dict:
    """Images per second of face_recognition as its README shows it, in ``workers`` processes (start-up included)."""
    start = time.perf_counter()
    with get_context("spawn").Pool(workers) as pool:
        found = sum(1 for count in pool.imap(_peer_encodings, [str(path) for _, path in images], chunksize=4) if count)
    elapsed = time.perf_counter() - start
    return {"seconds": elapsed, "images_per_second": len(images) / elapsed, "encoded": found}


def cli_enroll(images: list[tuple[str, Path]], workers: int) -> dict:
    """Wall clock of ``facetrail enroll`` of a folder of ``images`` (one subfolder per person) into a fresh system."""
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "photographs"
        for identity, path in images:
            (folder / identity).mkdir(parents=True, exist_ok=True)
            (folder / identity / path.name).symlink_to(path.resolve())
        data = Path(scratch) / "data"
        system = Facetrail.initialise(DataDir(data), "admin", ADMIN_PASSWORD)
        admin = system.auth.authenticate(token := system.auth.login("admin", ADMIN_PASSWORD)[1])
        system.admin.create_gallery(admin, "bench", ["booking"], "benchmark")
        system.close()
        command = [sys.executable, "-m", "facetrail", "enroll", str(folder), "--gallery", "bench", "--source", "booking",
                   "--workers", str(workers), "--data", str(data), "--json"]
        start = time.perf_counter()
        finished = subprocess.run(command, env={**os.environ, "FACETRAIL_TOKEN": token}, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
    if finished.returncode:
        raise SystemExit(f"facetrail enroll failed: {finished.stderr.strip()}")
    counts = json.loads(finished.stdout)
    return {"seconds": elapsed, "images_per_second": len(images) / elapsed, "enrolled": counts["enrolled"],
            "rejected": counts["rejected"]}


def summarise(name: str, runs: list[dict]) -> dict:
    """Min and median images/s over repeats, printed."""
    rates = [run["images_per_second"] for run in runs]
    figures = {"runs": runs, "min": min(rates), "median": statistics.median(rates)}
    print(f"  {name}: median {figures['median']:.1f} images/s, min {figures['min']:.1f} "
          f"({', '.join(f'{r:.1f}' for r in rates)}; {runs[-1].get('enrolled', runs[-1].get('encoded'))} with a template)")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=Path("../shared/faces/lfw-dev"))
    parser.add_argument("--count", type=int, default=1000, help="images enrolled end to end")
    parser.add_argument("--cli-count", type=int, default=400, help="other images (one per person) for facetrail enroll (0: none)")
    parser.add_argument("--stage-count", type=int, default=100, help="images timed stage by stage (0: none)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ray", metavar="ADDRESS", default="", help="also enrol end to end on this Ray cluster")
    parser.add_argument("--precisions", default="int8", help="comma-separated enrolment.precision values to measure")
    parser.add_argument("--augmentation", default="mirror+context", choices=list(EMBEDDING_PASSES))
    parser.add_argument("--no-peer", action="store_true", help="skip face_recognition")
    args = parser.parse_args()
    images = sample_images(args.images, args.count)
    others = sample_images(args.images, args.cli_count, per_person=1, skip=frozenset(p for _, p in images)) if args.cli_count else []
    settings = Settings()
    config = dataclasses.replace(settings.engine, embedding=dataclasses.replace(settings.embedding, augmentation=args.augmentation))
    if args.ray:
        connect(args.ray)
    results: dict = {}
    runs: dict[str, list[dict]] = {}
    for precision in args.precisions.split(","):
        rules = dataclasses.replace(settings.enrolment, workers=args.workers, precision=precision)
        if args.stage_count:
            enrolling = enrolment_engine_config(config, rules)
            one_core = dataclasses.replace(enrolling, embedding=dataclasses.replace(enrolling.embedding, threads=1))
            stages = results[f"stages_ms_per_image/{precision}"] = stage_times(FaceEngine(one_core), images[: args.stage_count])
            print(f"{precision}, per stage, one core, ms/image: "
                  + ", ".join(f"{k} {v:.1f}" for k, v in stages.items() if k != "cnn_fallbacks")
                  + f" ({stages['cnn_fallbacks']} CNN fallbacks in {min(args.stage_count, len(images))})")
    for _ in range(args.repeat):
        for precision in args.precisions.split(","):
            rules = dataclasses.replace(settings.enrolment, workers=args.workers, precision=precision)
            runs.setdefault(f"facetrail/{precision}", []).append(end_to_end(config, images, rules))
            if args.ray:
                runs.setdefault(f"facetrail-ray/{precision}", []).append(
                    end_to_end(config, images, dataclasses.replace(rules, ray_address=args.ray)))
        if not args.no_peer:
            runs.setdefault("peer", []).append(peer(images, args.workers))
        if others:
            runs.setdefault("cli", []).append(cli_enroll(others, args.workers))
            if not args.no_peer:
                runs.setdefault("cli-peer", []).append(peer(others, args.workers))
    print(f"end to end, {len(images)} photographs, {args.workers} processes each, {args.repeat} repeat(s):")
    for name, measured in runs.items():
        results[name] = summarise(name, measured)
    if "peer" in results:
        for name in [n for n in results if n.startswith("facetrail")]:
            ratio = results[name]["median"] / results["peer"]["median"]
            results[name]["to_peer"] = ratio
            print(f"  {name} / peer (medians): {ratio:.2f}×")
    if "cli" in results:
        first = f"facetrail/{args.precisions.split(',')[0]}"
        print(f"  facetrail enroll of {len(others)}: {results['cli']['median'] / results[first]['median']:.0%} of the "
              f"{first} end-to-end rate" + (f", {results['cli']['median'] / results['cli-peer']['median']:.2f}× the peer"
                                            " on the same photographs" if "cli-peer" in results else ""))
    print(json.dumps({"benchmark": "enrol", "images": len(images), "cli_images": len(others), "workers": args.workers,
                      "ray": args.ray, "results": results}))


if __name__ == "__main__":
    main()
