"""Benchmark exact top-k search (FaissExactIndex) over synthetic face templates.

Builds an index of N random 128-d float32 vectors of norm ~1 (like dlib face
embeddings), then measures build time, resident memory and single-query top-k
latency, and checks a few queries against brute-force numpy.  It measures; it
asserts nothing about timing.  Exits 1 if a verified query disagrees.

    python benchmarks/bench_search.py --templates 1000000 --threads 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import faiss
import numpy as np

from facetrail.gallery.index import FaissExactIndex, set_search_threads

DIMENSION = 128
CHUNK = 100_000
VERIFY_QUERIES = 3
TOLERANCE = 1e-4


def face_like(rng: np.random.Generator, n: int) -> np.ndarray:
    """Gaussian directions scaled to norm ~N(1, 0.05), built in chunks to bound memory."""
    out = np.empty((n, DIMENSION), dtype=np.float32)
    for start in range(0, n, CHUNK):
        block = rng.standard_normal((min(CHUNK, n - start), DIMENSION), dtype=np.float32)
        norms = np.linalg.norm(block, axis=1, keepdims=True)
        scale = rng.normal(1.0, 0.05, size=(len(block), 1)).astype(np.float32)
        out[start : start + len(block)] = block / norms * scale
    return out


def proc_status_mb(field: str, pid: int | str = "self") -> float:
    """A memory figure (VmRSS, VmHWM) of this process (or process ``pid``) from /proc/<pid>/status, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def brute_force(vectors: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k rows and their Euclidean distances, computed in float64."""
    squared = np.empty(len(vectors))
    q = query.astype(np.float64)
    for start in range(0, len(vectors), CHUNK):
        diff = vectors[start : start + CHUNK].astype(np.float64) - q
        squared[start : start + CHUNK] = np.einsum("ij,ij->i", diff, diff)
    rows = np.argpartition(squared, k - 1)[:k]
    rows = rows[np.argsort(squared[rows])]
    return rows, np.sqrt(squared)


def verify(index, vectors, ids, queries, k) -> tuple[int, int, float]:
    """(queries agreeing with brute force, of which with identical id order, max distance error)."""
    agree = identical = 0
    max_error = 0.0
    row_of_id = np.empty(ids.max() + 1, dtype=np.int64)
    row_of_id[ids] = np.arange(len(ids))
    for query in queries:
        found = min(k, len(ids))
        distances, labels = index.search(query[None], k)
        distances, labels = distances[0, :found], labels[0, :found]
        rows, exact = brute_force(vectors, query, found)
        returned_exact = exact[row_of_id[labels]]
        error = float(np.max(np.abs(distances - returned_exact)))
        max_error = max(max_error, error)
        # Equal as a top-k even if near-tied neighbours swap places.
        if error <= TOLERANCE and np.allclose(returned_exact, exact[rows], atol=TOLERANCE, rtol=0):
            agree += 1
            identical += bool(np.array_equal(labels, ids[rows]))
    return agree, identical, max_error


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--templates", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if min(args.templates, args.queries, args.k, args.threads) < 1:
        parser.error("--templates, --queries, --k and --threads must be at least 1")

    set_search_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    vectors = face_like(rng, args.templates)
    ids = np.arange(1, args.templates + 1, dtype=np.int64)
    queries = face_like(rng, args.queries)

    rss_before = proc_status_mb("VmRSS")
    index = FaissExactIndex(DIMENSION)
    start = time.perf_counter()
    index.add(ids, vectors)
    build_s = time.perf_counter() - start
    rss_after = proc_status_mb("VmRSS")

    index.search(queries[:1], args.k)  # warm-up
    latencies = np.empty(args.queries)
    for i, query in enumerate(queries):
        start = time.perf_counter()
        index.search(query[None], args.k)
        latencies[i] = time.perf_counter() - start
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99]) * 1000

    checked = min(VERIFY_QUERIES, args.queries)
    agree, identical, max_error = verify(index, vectors, ids, queries[:checked], args.k)

    figures = {
        "templates": args.templates,
        "dimension": DIMENSION,
        "queries": args.queries,
        "k": args.k,
        "threads": args.threads,
        "seed": args.seed,
        "faiss": faiss.__version__,
        "build_s": round(build_s, 3),
        "rss_before_build_mib": round(rss_before, 1),
        "rss_after_build_mib": round(rss_after, 1),
        "index_rss_mib": round(rss_after - rss_before, 1),
        "peak_rss_mib": round(proc_status_mb("VmHWM"), 1),
        "latency_ms": {
            "p50": round(p50, 3),
            "p95": round(p95, 3),
            "p99": round(p99, 3),
            "mean": round(latencies.mean() * 1000, 3),
        },
        "queries_per_s": round(args.queries / latencies.sum(), 2),
        "verified": checked,
        "verified_agree": agree,
        "verified_identical_order": identical,
        "verified_max_distance_error": max_error,
    }
    rows = [
        ("templates / k / threads", f"{args.templates:,} / {args.k} / {args.threads}"),
        ("build", f"{build_s:.3f} s"),
        ("RSS before / after build", f"{rss_before:,.0f} / {rss_after:,.0f} MiB"),
        ("index RSS (delta)", f"{rss_after - rss_before:,.0f} MiB"),
        ("peak RSS", f"{figures['peak_rss_mib']:,.0f} MiB"),
        ("latency p50 / p95 / p99", f"{p50:.2f} / {p95:.2f} / {p99:.2f} ms"),
        ("latency mean", f"{latencies.mean() * 1000:.2f} ms"),
        ("queries/s (sequential)", f"{figures['queries_per_s']:.1f}"),
        ("brute-force check", f"{agree}/{checked} agree, {identical} in identical order"),
        ("max distance error", f"{max_error:.2e}"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(json.dumps(figures))
    return 0 if agree == checked else 1


if __name__ == "__main__":
    sys.exit(main())
