"""Enrolment throughput on 250×250 photographs (LFW), with a per-stage breakdown.

Two measurements per embedding configuration:

1. Stages, in this process on one core: decode, HOG detection, CNN fallback
   (only when HOG found nothing), landmarks + alignment, quality, embedding.
2. End to end: the real ``enrol()`` into a fresh data directory with
   ``--workers`` processes (hashing, decoding, detection, quality, embedding,
   storing photographs, SQLite commits, index updates).

It prints its figures and a JSON line; it asserts nothing about speed.

    python benchmarks/bench_enrol.py --images ../shared/faces/lfw-dev --count 400 --workers 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

from facetrail.config import EngineConfig, EnrolmentConfig, Settings
from facetrail.datadir import DataDir
from facetrail.engine.decode import decode_image
from facetrail.engine.pipeline import EMBEDDING_PASSES, FaceEngine
from facetrail.gallery.enrol import EnrolItem, enrol
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
    """Mean milliseconds per image for each stage, on this core."""
    totals = {"decode": 0.0, "detect_hog": 0.0, "detect_cnn_fallback": 0.0, "landmarks_align_quality": 0.0, "embed": 0.0}
    fallbacks = 0
    for _, path in images:
        data = path.read_bytes()
        start = time.perf_counter()
        pixels = decode_image(data, engine.config.limits).pixels
        t1 = time.perf_counter()
        detections = engine.detector.detect_hog(pixels)
        t2 = time.perf_counter()
        if not detections and engine.detector.has_fallback:
            detections = engine.detector.detect_cnn(pixels)
            fallbacks += 1
        t3 = time.perf_counter()
        totals["decode"] += t1 - start
        totals["detect_hog"] += t2 - t1
        totals["detect_cnn_fallback"] += t3 - t2
        if not detections:
            continue
        face = engine.measure(pixels, max(detections, key=lambda d: d.box.area))
        t4 = time.perf_counter()
        engine.template(face)
        t5 = time.perf_counter()
        totals["landmarks_align_quality"] += t4 - t3
        totals["embed"] += t5 - t4
    per_image = {stage: 1000 * seconds / len(images) for stage, seconds in totals.items()}
    per_image["total"] = sum(per_image.values())
    per_image["cnn_fallbacks"] = fallbacks
    return per_image


def end_to_end(config: EngineConfig, images: list[tuple[str, Path]], workers: int) -> dict:
    """Images per second through the real enrolment into a fresh data directory."""
    with tempfile.TemporaryDirectory() as scratch:
        datadir = DataDir(Path(scratch) / "data")
        galleries = Galleries.initialise(datadir)
        galleries.create("bench", ["booking"])
        gallery = galleries.get("bench")
        items = [EnrolItem(path, identity, "booking") for identity, path in images]
        rules = dataclasses.replace(Settings().enrolment, workers=workers)
        start = time.perf_counter()
        summary = enrol(gallery, items, config, rules)
        elapsed = time.perf_counter() - start
        galleries.close()
    return {"seconds": elapsed, "images_per_second": len(images) / elapsed, **summary.to_dict()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=Path("../shared/faces/lfw-dev"))
    parser.add_argument("--count", type=int, default=400, help="images enrolled end to end")
    parser.add_argument("--stage-count", type=int, default=100, help="images timed stage by stage")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    images = sample_images(args.images, args.count)
    results = {}
    for augmentation in EMBEDDING_PASSES:
        config = dataclasses.replace(EngineConfig(), embedding=dataclasses.replace(EngineConfig().embedding, augmentation=augmentation))
        stages = stage_times(FaceEngine(config), images[: args.stage_count])
        throughput = end_to_end(config, images, args.workers)
        results[augmentation] = {"stages_ms_per_image": stages, "end_to_end": throughput}
        print(f"\naugmentation={augmentation} ({EMBEDDING_PASSES[augmentation]} model pass(es) per face)")
        print("  per-stage, one core, ms/image: " + ", ".join(f"{k} {v:.1f}" for k, v in stages.items() if k != "cnn_fallbacks"))
        print(f"  CNN fallbacks: {stages['cnn_fallbacks']} of {min(args.stage_count, len(images))}")
        print(
            f"  end to end, {args.workers} workers: {throughput['images_per_second']:.1f} images/s "
            f"({throughput['items']} images in {throughput['seconds']:.1f} s; {throughput['enrolled']} enrolled, {throughput['rejected']} rejected)"
        )
    print(json.dumps({"benchmark": "enrol", "images": len(images), "workers": args.workers, "results": results}))


if __name__ == "__main__":
    main()
