"""A county gallery's own calibration: ``facetrail gallery calibrate`` on N real-like templates.

The gallery is bench_scale's (the real LFW templates of ``scale_templates.py``, one photograph per person, and
N - 400 synthetic people around them), filled into a real store (encrypted templates), plus ``--seeded`` known
same-person pairs under two subject ids: the held-apart second photograph of a real person enrolled as a subject
of its own. It times each step of the calibration as the command runs it (reading and decrypting the templates,
sampling the impostor pairs, building the table with its fitted tail), prints what the table resolves (the
distance with 10 impostor pairs at or below it for 1e-5, 1e-6, 1e-7) and checks the fitted tail: a table built from
the first 1% of the pairs extrapolates to the distances the whole sample observes, and the bench prints both.

It prints figures and a JSON line; it asserts nothing.

    python benchmarks/bench_calibrate.py --templates 1000000 --pairs 100000000
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from facetrail.config import CalibrationConfig
from facetrail.datadir import DataDir
from facetrail.engine.calibration import CalibrationTable
from facetrail.gallery.calibration import calibrate_gallery
from facetrail.gallery.gallery import Galleries

sys.path.insert(0, str(Path(__file__).parent))
from bench_scale import fill_store, real_like  # noqa: E402
from scale_templates import load_or_compute  # noqa: E402


def resolved_distances(table: CalibrationTable, distances: np.ndarray) -> dict[str, float]:
    """For each false-match rate, the distance with 10 impostor pairs at or below it (the rate observed there)."""
    ordered = np.sort(distances)
    return {f"{rate:.0e}": float(ordered[max(int(rate * table.impostor_count), 10) - 1]) for rate in (1e-5, 1e-6, 3e-7, 1e-7)}


def tail_check(distances: np.ndarray, at: dict[str, float], seed: int) -> list[dict]:
    """Tables of the first 1% and 10% of the pairs, extrapolated to where the whole sample observes each rate."""
    whole = np.sort(distances)
    rows = []
    for share in (100, 10):
        part = CalibrationTable.from_impostors(distances[: distances.size // share], "bench", seed=seed)
        for rate, distance in at.items():
            estimate = part.estimate(distance)
            observed = float(np.searchsorted(whole, distance, side="right") / whole.size)
            rows.append({"pairs": part.impostor_count, "rate": rate, "distance": round(distance, 4), "observed": observed,
                         "estimate": estimate.rate, "low": estimate.low, "high": estimate.high, "basis": estimate.basis,
                         "within_interval": bool(estimate.low is not None and estimate.low <= observed <= estimate.high)})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--templates", type=int, default=1_000_000)
    parser.add_argument("--pairs", type=int, default=100_000_000)
    parser.add_argument("--seeded", type=int, default=100, help="same-person pairs under two ids")
    parser.add_argument("--images", type=Path, default=Path("../shared/faces/lfw-dev"))
    parser.add_argument("--cache", type=Path, default=Path(".cache/lfw-templates.npz"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    real = load_or_compute(args.cache, args.images, 400)
    seeded = min(args.seeded, len(real["probes"]))
    vectors = np.concatenate([real_like(real["gallery"], args.templates - seeded, args.seed), real["probes"][:seeded]])
    figures: dict = {"templates": len(vectors), "seeded_same_person_pairs": seeded, "pairs": args.pairs}
    config = CalibrationConfig(pairs=args.pairs, seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        galleries = Galleries.initialise(DataDir(Path(tmp) / "data"))
        galleries.create("county", ["booking"])
        start = time.perf_counter()
        fill_store(galleries, "county", vectors)
        figures["store_fill_s"] = round(time.perf_counter() - start, 1)
        gallery = galleries.get("county")
        start = time.perf_counter()
        gallery.subject_templates()
        figures["read_decrypt_s"] = round(time.perf_counter() - start, 1)
        start = time.perf_counter()
        found = calibrate_gallery(gallery, config)
        figures["read_and_sample_s"] = round(time.perf_counter() - start, 1)
        start = time.perf_counter()
        table = CalibrationTable.from_impostors(found.distances, "bench", source=found.source("county", args.seed), seed=args.seed)
        figures["table_s"] = round(time.perf_counter() - start, 1)
        figures["calibrate_total_s"] = round(figures["read_and_sample_s"] + figures["table_s"], 1)
        figures.update(subjects=found.subjects, impostor_pairs=table.impostor_count, excluded_pairs=found.excluded_pairs,
                       resolution=1 / table.impostor_count, tail=table.tail.__dict__ | {"resampled": len(table.tail.resampled)})
        figures["distance_at_rate"] = resolved_distances(table, found.distances)
        figures["tail_check"] = tail_check(found.distances, figures["distance_at_rate"], args.seed)
        galleries.close()
    print(f"{figures['templates']:,} templates ({seeded} same-person pairs seeded); store filled in {figures['store_fill_s']} s")
    print(f"calibrate: read+decrypt {figures['read_decrypt_s']} s, read+sample {figures['read_and_sample_s']} s, "
          f"table (sort, grid, tail fit) {figures['table_s']} s, total {figures['calibrate_total_s']} s")
    print(f"{figures['impostor_pairs']:,} impostor pairs ({figures['excluded_pairs']:,} closer than "
          f"{config.duplicate_distance} left out); resolution 1 in {figures['impostor_pairs']:,}")
    for rate, distance in figures["distance_at_rate"].items():
        print(f"  FMR {rate}: distance {distance:.4f}")
    print("tables of the first 1% and 10% of the pairs, against the whole sample:")
    for row in figures["tail_check"]:
        interval = f"[{row['low']:.2e}, {row['high']:.2e}]" if row["low"] is not None else ""
        print(f"  {row['pairs']:,} pairs, at {row['distance']:.4f}: observed {row['observed']:.2e}, "
              f"{row['basis']} {row['estimate']:.2e} {interval}")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
