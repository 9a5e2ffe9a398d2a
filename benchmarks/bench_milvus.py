"""The Milvus index backend at scale: build, single-query latency and agreement with exact search.

The gallery is ``bench_scale.py``'s: the real LFW templates of ``scale_templates.py`` (one photograph per person)
and N - len(real) synthetic people around them; probes are each person's held-apart second photograph. The
templates go into a Milvus collection through ``MilvusIndex.apply`` in steps (as enrolment commits would, larger),
then flushed, then each probe is searched alone (``MilvusIndex.search``: Milvus's candidates re-scored exactly) and compared
with exact search (faiss brute force over the float32 templates): the fraction of probes whose top-20 ids equal
exact search's in order, and whether the mate is rank 1. The audit mode (``exact=True``) is timed on a few probes.

By default Milvus is milvus-lite, in this process, on a file under .cache/ (removed afterwards); ``--uri`` names
a Milvus server instead (credentials as in config.toml, through ``--user`` and FACETRAIL_BENCH_MILVUS_PASSWORD),
and ``--server-pid`` its process when it runs on this machine, whose resident memory is then read before and after
(the growth per face). The insert rate is templates over build time (``apply`` in steps, as enrolment commits would,
each step checking which ids are already present). It prints figures and a JSON line; it asserts nothing.

    python benchmarks/bench_milvus.py --templates 100000 --index IVF_SQ8
    milvus-server --data /tmp/milvus-bench --proxy-port 19530 &      # the `milvus` package (tests extra): Milvus 2.3.5
    python benchmarks/bench_milvus.py --templates 1000000 --uri http://127.0.0.1:19530 --server-pid "$(pgrep -f 'milvus run standalone')"
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from facetrail.config import IndexConfig
from facetrail.gallery.milvus_index import MilvusBackend

sys.path.insert(0, str(Path(__file__).parent))
from bench_scale import real_like  # noqa: E402
from bench_search import proc_status_mb  # noqa: E402
from scale_templates import load_or_compute  # noqa: E402

K = 20
BUILD_STEP = 50_000
GALLERY = 1
DEPTHS = [(16, 100), (64, 100), (64, 300)]
AUDIT_PROBES = 5


def build(backend: MilvusBackend, vectors: np.ndarray) -> dict:
    """Insert ``vectors`` under ids 1..N into a new index of gallery 1, in steps."""
    ids = np.arange(1, len(vectors) + 1, dtype=np.int64)
    start = time.perf_counter()
    index = backend.create(GALLERY, vectors.shape[1], 0)
    for version, a in enumerate(range(0, len(vectors), BUILD_STEP), start=1):
        index.apply(version, add=(ids[a : a + BUILD_STEP], vectors[a : a + BUILD_STEP]))
    seconds = time.perf_counter() - start
    inserted = {"build_s": round(seconds, 1), "inserts_per_s": round(len(vectors) / seconds)}
    # A server seals segments and indexes them by itself; milvus-lite keeps up to 128 MB of rows in a memtable that
    # it searches by brute force until a flush, so flush as a server would have sealed.
    start = time.perf_counter()
    backend.client.flush(backend.templates)
    flushed = {"flush_s": round(time.perf_counter() - start, 1)}
    # a server then builds the index of each sealed segment in the background (searching it by brute force until
    # then): wait for every row to be indexed, so that what is measured next is the index
    start = time.perf_counter()
    while (state := backend.client.describe_index(backend.templates, "vector")).get("indexed_rows", len(vectors)) < len(vectors):
        time.sleep(1)
    return {**inserted, **flushed, "indexing_s": round(time.perf_counter() - start, 1), "templates": len(index),
            "index_state": {key: state[key] for key in ("indexed_rows", "pending_index_rows", "state") if key in state}}


def measure(backend: MilvusBackend, probes: np.ndarray, exact_ids: np.ndarray) -> dict:
    """Latency and agreement with exact search per search depth, and the audit mode's latency."""
    results = {"depths": []}
    for nprobe, rerank in DEPTHS:
        backend.config = dataclasses.replace(backend.config, nprobe=nprobe, rerank=rerank)
        index = backend.open(GALLERY)
        index.search(probes[:1], K)  # the first search loads what Milvus loads lazily
        latencies, identical, mate_first = [], 0, 0
        for row, probe in enumerate(probes):
            t = time.perf_counter()
            _, labels = index.search(probe[None], K)
            latencies.append(time.perf_counter() - t)
            identical += bool(np.array_equal(labels[0], exact_ids[row]))
            mate_first += labels[0, 0] == row + 1
        p50, p95 = np.percentile(latencies, [50, 95]) * 1000
        results["depths"].append({"nprobe": nprobe, "rerank": rerank, "p50_ms": round(p50, 1), "p95_ms": round(p95, 1),
                                  "top20_identical": round(identical / len(probes), 4),
                                  "mate_rank1": round(mate_first / len(probes), 4)})
    index = backend.open(GALLERY)
    start = time.perf_counter()
    _, labels = index.search(probes[:AUDIT_PROBES], K, exact=True)
    results["audit_s_per_probe"] = round((time.perf_counter() - start) / AUDIT_PROBES, 2)
    results["audit_identical"] = bool(np.array_equal(labels, exact_ids[:AUDIT_PROBES]))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--templates", type=int, default=100_000)
    parser.add_argument("--index", default="IVF_SQ8", choices=["IVF_SQ8", "IVF_FLAT", "HNSW", "FLAT"])
    parser.add_argument("--nlist", type=int, default=1024)
    parser.add_argument("--uri", default="", help="a Milvus server (default: milvus-lite on a file under .cache/)")
    parser.add_argument("--user", default="")
    parser.add_argument("--server-pid", type=int, default=0, help="the local Milvus server's process, for its memory")
    parser.add_argument("--cache", type=Path, default=Path(".cache/lfw-templates.npz"))
    parser.add_argument("--images", type=Path, default=Path("../shared/faces/lfw-dev"))
    parser.add_argument("--identities", type=int, default=400)
    args = parser.parse_args()

    real = load_or_compute(args.cache, args.images, args.identities)
    vectors = real_like(real["gallery"], args.templates, seed=1)
    probes = real["probes"]
    squared, rows = faiss.knn(probes, vectors, K)
    exact_ids = rows + 1
    Path(".cache").mkdir(exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=".cache"))
    collection = f"bench_{int(time.time())}"
    config = IndexConfig(backend="milvus", milvus_uri=args.uri or str(scratch / "milvus.db"), milvus_collection=collection,
                         milvus_index=args.index, milvus_nlist=args.nlist, milvus_user=args.user,
                         milvus_password_env="FACETRAIL_BENCH_MILVUS_PASSWORD" if args.user else "")
    backend = MilvusBackend(config)
    try:
        server_mb = proc_status_mb("VmRSS", args.server_pid) if args.server_pid else None
        figures = {"templates": args.templates, "index": args.index, "nlist": args.nlist,
                   "milvus": "server" if args.uri else "milvus-lite", **build(backend, vectors)}
        figures.update(measure(backend, probes, exact_ids))
        if server_mb is not None:  # after the searches: the server has loaded and indexed every segment by then
            after = proc_status_mb("VmRSS", args.server_pid)
            figures.update(server_rss_mb_before=round(server_mb), server_rss_mb_after=round(after),
                           server_bytes_per_face=round((after - server_mb) * 2**20 / args.templates))
        backend.drop(GALLERY)
        for name in (backend.templates, backend.versions):
            backend.client.drop_collection(name)
    finally:
        backend.close()
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"{args.templates:,} templates in {figures['milvus']} ({args.index}): built in {figures['build_s']} s "
          f"({figures['inserts_per_s']:,} inserts/s)")
    if "server_bytes_per_face" in figures:
        print(f"  server resident memory: {figures['server_rss_mb_before']} -> {figures['server_rss_mb_after']} MiB, "
              f"{figures['server_bytes_per_face']} B a face")
    for depth in figures["depths"]:
        print(f"  nprobe {depth['nprobe']:>3} rerank {depth['rerank']:>3}: p50 {depth['p50_ms']} ms, p95 {depth['p95_ms']} ms, "
              f"top-20 identical {depth['top20_identical']}, mate rank 1 {depth['mate_rank1']}")
    print(f"  audit mode: {figures['audit_s_per_probe']} s a probe, identical to exact: {figures['audit_identical']}")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
