"""Search latency over HTTP on the server ``make run`` starts, idle and while an enrolment upload runs.

Against a running server on the sample data directory: as the sample admin it creates a new investigator (audited,
unit RHD, which may search the sample gallery), then times ``--searches`` searches of the sample probe through
``POST /api/v1/searches``; then it uploads ``--enrol`` photographs from ``--images`` (one subject per folder, as in
LFW) as one batch through ``POST /api/v1/galleries/sample/batches`` and times searches until that upload returns.
Searches must go on during an enrolment rather than wait for it. It prints its figures and a JSON line; it asserts
nothing about speed.

    make run &   # then, once it serves:
    .venv/bin/python benchmarks/bench_http_search.py --url http://127.0.0.1:8000 --data facetrail-data \\
        --images ../shared/faces/lfw-dev --enrol 60
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import secrets
import statistics
import threading
import time
from pathlib import Path

import httpx2 as httpx

GALLERY = "sample"
REQUEST = {"gallery": GALLERY, "purpose": "criminal_investigation", "offence": "robbery", "note": "benchmark search"}


def logged_in(url: str, username: str, password: str) -> httpx.Client:
    """A client carrying a bearer token for ``username``."""
    client = httpx.Client(base_url=f"{url.rstrip('/')}/api/v1", timeout=900)
    answer = client.post("/auth/login", json={"username": username, "password": password})
    answer.raise_for_status()
    client.headers["Authorization"] = f"Bearer {answer.json()['token']}"
    return client


def timed_search(client: httpx.Client, probe: Path, case_number: str) -> tuple[float, dict]:
    """Milliseconds one search took, and its answer (which must be a completed search)."""
    started = time.perf_counter()
    answer = client.post("/searches", files={"probe": (probe.name, probe.read_bytes())},
                         data={**REQUEST, "case_number": case_number})
    elapsed = (time.perf_counter() - started) * 1000
    answer.raise_for_status()
    return elapsed, answer.json()


def new_case_number() -> str:
    """A random case number in the default policy's form (YY-NNNNNN)."""
    return f"{dt.date.today():%y}-{secrets.randbelow(10**6):06d}"


def summary(latencies: list[float]) -> dict[str, float]:
    return {"searches": len(latencies), "p50_ms": round(statistics.median(latencies)),
            "max_ms": round(max(latencies))} if latencies else {"searches": 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--data", type=Path, default=Path("facetrail-data"), help="the sample data directory")
    parser.add_argument("--images", type=Path, required=True, help="folders of photographs, one subject each")
    parser.add_argument("--enrol", type=int, default=60, help="photographs to upload as one batch")
    parser.add_argument("--searches", type=int, default=8, help="searches timed while idle (the policy allows 20 a day)")
    args = parser.parse_args()
    passwords = json.loads((args.data / "sample-passwords.json").read_text())
    probe = Path((args.data / ".sample-ready").read_text().split(": ", 1)[1].strip())
    admin = logged_in(args.url, "admin", passwords["admin"])
    username, password = f"bench-{dt.datetime.now():%Y%m%d-%H%M%S}", secrets.token_urlsafe(12)
    admin.post("/users", json={"username": username, "password": password, "roles": ["investigator"],
                               "unit": "RHD"}).raise_for_status()
    investigator = logged_in(args.url, username, password)
    idle = [timed_search(investigator, probe, new_case_number())[0] for _ in range(args.searches)]

    photos = sorted(args.images.glob("*/*.jpg"))[: args.enrol]
    manifest = "file,subject_id\n" + "".join(f"{p.name},{p.parent.name}\n" for p in photos)
    source = admin.get(f"/galleries/{GALLERY}").json()["allowed_sources"][0]
    upload: dict = {}

    def enrol() -> None:
        started = time.perf_counter()
        answer = admin.post(f"/galleries/{GALLERY}/batches", data={"manifest": manifest, "source": source},
                            files=[("images", (p.name, p.read_bytes())) for p in photos])
        upload.update(status=answer.status_code, seconds=round(time.perf_counter() - started, 1),
                      **{k: answer.json().get(k) for k in ("enrolled", "duplicate", "rejected")})

    worker = threading.Thread(target=enrol)
    worker.start()
    during, versions = [], set()
    while worker.is_alive() and len(idle) + len(during) < 20:  # the default policy's daily limit per user
        elapsed, answer = timed_search(investigator, probe, new_case_number())
        during.append(elapsed)
        versions.add(answer["gallery_version"])
    worker.join()
    figures = {"idle": summary(idle), "during_enrolment": summary(during), "enrolment": upload,
               "gallery_versions_seen": sorted(versions)}
    print(f"idle: {figures['idle']}\nduring an upload of {len(photos)} photographs ({upload.get('seconds')} s): "
          f"{figures['during_enrolment']}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
