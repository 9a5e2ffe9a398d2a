"""Enrolment throughput on 250×250 photographs (LFW), with a per-stage breakdown.

Two measurements for each embedding backend (ONNX Runtime, dlib) and augmentation asked for:

1. Stages, in this process on one core: decode, HOG detection, CNN fallback
   (only when HOG found nothing), landmarks, alignment (two chips), quality,
   embedding (the augmentation's passes as one batch).
2. End to end: the real ``enrol()`` into a fresh data directory with
   ``--workers`` processes (hashing, decoding, detection, quality, embedding,
   storing photographs, SQLite commits, index updates); with ``--ray ADDRESS``
   also with the face work on Ray actors (``--workers`` of them; the
   connection is made before the clock starts, the actors' start and model
   loading are timed, as the local processes' are).

Detection is what enrolment uses (portrait-sized faces only; ``--detection thorough`` looks for
faces down to ``detection.min_face_px`` as probes do). It prints its figures and a JSON line; it
asserts nothing about speed.

    python benchmarks/bench_enrol.py --images ../shared/faces/lfw-dev --count 400 --workers 2 --backends onnx,dlib
    python benchmarks/bench_enrol.py --count 400 --workers 2 --backends onnx --stage-count 0 --ray local
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

from facetrail.config import EngineConfig, EnrolmentConfig, Settings
from facetrail.datadir import DataDir
from facetrail.engine.decode import decode_image
from facetrail.engine.pipeline import EMBEDDING_PASSES, FaceEngine, FoundFace
from facetrail.engine.ray_pool import connect
from facetrail.engine.quality import assess_quality
from facetrail.gallery.enrol import EnrolItem, enrol, portrait_detection
from facetrail.gallery.gallery import Galleries


def sample_images(root: Path, count: int) -> list[tuple[str, Path]]:
    """The first ``count`` images in identity order, as (identity, path)."""
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(folder.glob("*.jpg")):
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=Path("../shared/faces/lfw-dev"))
    parser.add_argument("--count", type=int, default=400, help="images enrolled end to end")
    parser.add_argument("--stage-count", type=int, default=100, help="images timed stage by stage (0: none)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--ray", metavar="ADDRESS", default="", help="also enrol end to end on this Ray cluster")
    parser.add_argument("--backends", default="onnx,dlib", help="comma-separated embedding backends to measure")
    parser.add_argument("--augmentations", default="mirror+context", help=f"comma-separated, of: {', '.join(EMBEDDING_PASSES)}")
    parser.add_argument("--detection", choices=("portrait", "thorough"), default="portrait",
                        help="portrait: what enrolment uses (enrolment.min_face_fraction); thorough: the probe default")
    args = parser.parse_args()
    images = sample_images(args.images, args.count)
    settings = Settings()
    rules = dataclasses.replace(settings.enrolment, workers=args.workers)
    if args.detection == "thorough":
        rules = dataclasses.replace(rules, min_face_fraction=0.0)
    if args.ray:
        connect(args.ray)
    results = {}
    for backend in args.backends.split(","):
        for augmentation in args.augmentations.split(","):
            embedding = dataclasses.replace(settings.embedding, augmentation=augmentation, backend=backend)
            config = dataclasses.replace(settings.engine, embedding=embedding)
            one_core = dataclasses.replace(portrait_detection(config, rules), embedding=dataclasses.replace(embedding, threads=1))
            print(f"\nbackend={backend} augmentation={augmentation} ({EMBEDDING_PASSES[augmentation]} model pass(es) per face), {args.detection} detection")
            result = results[f"{backend}/{augmentation}"] = {}
            if args.stage_count:
                stages = result["stages_ms_per_image"] = stage_times(FaceEngine(one_core), images[: args.stage_count])
                print("  per-stage, one core, ms/image: " + ", ".join(f"{k} {v:.1f}" for k, v in stages.items() if k != "cnn_fallbacks"))
                print(f"  CNN fallbacks: {stages['cnn_fallbacks']} of {min(args.stage_count, len(images))}")
            runs = {"end_to_end": ("worker processes", rules)}
            if args.ray:
                runs["end_to_end_ray"] = (f"Ray actors at {args.ray}", dataclasses.replace(rules, ray_address=args.ray))
            for key, (workers, run_rules) in runs.items():
                throughput = result[key] = end_to_end(config, images, run_rules)
                print(
                    f"  end to end, {args.workers} {workers}: {throughput['images_per_second']:.1f} images/s "
                    f"({throughput['items']} images in {throughput['seconds']:.1f} s; {throughput['enrolled']} enrolled, {throughput['rejected']} rejected)"
                )
    print(json.dumps({"benchmark": "enrol", "images": len(images), "workers": args.workers, "ray": args.ray, "detection": args.detection, "results": results}))


if __name__ == "__main__":
    main()
