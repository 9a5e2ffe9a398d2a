"""Likely duplicates at county scale: ``find_duplicates`` over a gallery of N real-like templates with real aliases.

The gallery holds ``bench_scale.real_like`` templates (the real LFW templates of ``scale_templates.py``, one
photograph per person, and synthetic people around them) and, each under a subject id of its own, the 400 real
people's second photographs: real same-person pairs under two ids. It prints the time of one listing (and of reading
and decrypting the templates, part of it), the pairs found, and the recall of the pairs involving the aliases
against comparing each alias with every template; with ``--index-sample M``, also the time per photograph of the
gallery's own index at its search depth (M nearest-neighbour searches of 8), the way not taken.

It prints figures and a JSON line; it asserts nothing.

    python benchmarks/bench_duplicates.py --templates 1000000 --index-sample 2000
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from facetrail.config import Settings
from facetrail.datadir import DataDir
from facetrail.gallery.duplicates import MAX_PAIRS, find_duplicates
from facetrail.gallery.gallery import Galleries

sys.path.insert(0, str(Path(__file__).parent))
from bench_scale import fill_store, real_like  # noqa: E402
from bench_search import proc_status_mb  # noqa: E402
from scale_templates import load_or_compute  # noqa: E402


def alias_pairs(vectors: np.ndarray, aliases: int, max_distance: float) -> set[tuple[int, int]]:
    """Every pair (by 1-based subject number, as ``fill_store`` names them) of one of the last ``aliases`` templates
    and any other template at most ``max_distance`` apart, by comparing each alias with every template (of which its
    64 nearest, more than any alias has within a distance that means one person)."""
    first_alias = len(vectors) - aliases
    _, found = faiss.knn(vectors[first_alias:], vectors, 64)
    pairs = set()
    for alias, neighbours in enumerate(found, start=first_alias):
        for other in neighbours[neighbours != alias]:
            if np.linalg.norm(vectors[alias] - vectors[other]) <= max_distance:
                pairs.add((min(alias, other) + 1, max(alias, other) + 1))
    return pairs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--templates", type=int, default=1_000_000)
    parser.add_argument("--max-distance", type=float, nargs="+", default=[Settings().calibration.duplicate_distance])
    parser.add_argument("--images", type=Path, default=Path("../shared/faces/lfw-dev"))
    parser.add_argument("--cache", type=Path, default=Path(".cache/lfw-templates.npz"))
    parser.add_argument("--identities", type=int, default=400)
    parser.add_argument("--index-sample", type=int, default=0, help="also time M searches of the gallery's own index")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    real = load_or_compute(args.cache, args.images, args.identities)
    aliases = len(real["probes"])
    vectors = np.vstack([real_like(real["gallery"], args.templates - aliases, args.seed), real["probes"]])
    report = {"benchmark": "duplicates", "templates": len(vectors), "aliases": aliases, "faiss": faiss.__version__,
              "listings": []}
    with tempfile.TemporaryDirectory(dir=".cache") as scratch:
        galleries = Galleries.initialise(DataDir(Path(scratch) / "data"))
        galleries.create("county", ["booking"])
        start = time.perf_counter()
        fill_store(galleries, "county", vectors)
        report["store_fill_s"] = round(time.perf_counter() - start, 1)
        gallery = galleries.get("county")
        start = time.perf_counter()
        gallery.subject_templates()
        report["read_and_decrypt_s"] = round(time.perf_counter() - start, 1)
        for max_distance in args.max_distance:
            start = time.perf_counter()
            found = find_duplicates(gallery, max_distance, MAX_PAIRS)
            seconds = time.perf_counter() - start
            listed = {tuple(sorted(int(s.removeprefix("S-")) for s in (p.subject_id, p.other_subject_id))) for p in found.pairs}
            truth = alias_pairs(vectors, aliases, max_distance)
            planted = {(person + 1, len(vectors) - aliases + person + 1) for person in range(aliases)} & truth
            listing = {"max_distance": max_distance, "seconds": round(seconds, 1), "pairs": len(found.pairs),
                       "more": found.more, "alias_pairs": len(truth), "alias_pairs_found": len(truth & listed),
                       "same_person_pairs": len(planted), "same_person_pairs_found": len(planted & listed)}
            report["listings"].append(listing)
            print(f"{len(vectors):,} templates, at most {max_distance}: {seconds:.1f} s (reading and decrypting "
                  f"{report['read_and_decrypt_s']} s of it), {len(found.pairs):,} pairs{' and more' if found.more else ''}; "
                  f"pairs with an alias found {len(truth & listed)} of {len(truth)}, of them the real person's own "
                  f"{len(planted & listed)} of {len(planted)} (of {aliases} people enrolled twice)")
        if args.index_sample:
            start = time.perf_counter()
            index = gallery.index()
            report["index_build_s"] = round(time.perf_counter() - start, 1)
            start = time.perf_counter()
            index.search(vectors[: args.index_sample], 8)
            per_photograph = (time.perf_counter() - start) / args.index_sample
            report["gallery_index_ms_per_photograph"] = round(per_photograph * 1000, 3)
            print(f"the gallery's own index (nprobe {galleries.settings.index.nprobe}, rerank "
                  f"{galleries.settings.index.rerank}): {per_photograph * 1000:.2f} ms a photograph, "
                  f"{per_photograph * len(vectors) / 60:.0f} min for all {len(vectors):,}")
        galleries.close()
    report["peak_rss_mib"] = round(proc_status_mb("VmHWM"), 1)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
