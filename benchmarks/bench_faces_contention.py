"""Does face finding on a large photograph delay other users' searches? Search latency over the API, idle and while
another investigator keeps posting a large photograph to ``POST /api/v1/faces``.

Builds a data directory with a gallery of two real enrolled photographs, then, with the API in-process (the test
client, on its thread pool), times ``--searches`` searches alone and again while a second thread posts the large
photograph to /faces over and over. The large photograph is a real face photograph scaled up to ``--side`` pixels
square, PNG: sides above 4898 exceed ``limits.max_interactive_pixels`` (24 MP) and are refused before decoding.
Prints each /faces answer's status and time, the search latencies, and a JSON line; asserts nothing about speed.

    python benchmarks/bench_faces_contention.py --side 8900 --searches 6
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from fastapi.testclient import TestClient
from PIL import Image

from facetrail.accountability.service import Facetrail
from facetrail.server import create_app
from facetrail.http.settings import ApiSettings
from facetrail.datadir import DataDir
from facetrail.gallery.enrol import EnrolItem

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.fixtures.face_images import face_images  # noqa: E402

PASSWORD = "benchmark password 1"
FIELDS = {"gallery": "county", "case_number": "24-000123", "purpose": "criminal_investigation", "offence": "robbery",
          "note": "benchmark"}


def photograph(path: Path, side: int, image_format: str = "PNG") -> bytes:
    """The photograph resized to ``side`` × ``side`` pixels."""
    buffer = io.BytesIO()
    Image.open(path).convert("RGB").resize((side, side)).save(buffer, format=image_format)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--side", type=int, default=8900, help="side of the large photograph posted to /faces")
    parser.add_argument("--searches", type=int, default=6)
    args = parser.parse_args()
    faces = face_images()
    with tempfile.TemporaryDirectory() as folder:
        datadir = DataDir(Path(folder) / "data")
        system = Facetrail.initialise(datadir, "admin", PASSWORD)
        admin = system.auth.authenticate(system.auth.login("admin", PASSWORD)[1])
        for name in ("ivan", "iris"):
            system.admin.create_user(admin, name, PASSWORD, ["investigator"], "RHD")
        system.admin.create_gallery(admin, "county", ["booking"])
        system.admin.grant_gallery(admin, "county", "RHD")
        for subject, photo in (("B-1001", "obama.jpg"), ("B-2002", "biden.jpg")):
            path = Path(folder) / f"{subject}.jpg"
            path.write_bytes(photograph(faces[photo], 500, "JPEG"))
            system.admin.enrol(admin, "county", [EnrolItem(path, subject, "booking")])
        system.close()

        settings = ApiSettings(max_upload_bytes=400 * 1024 * 1024, allowed_hosts=("testserver",))
        with TestClient(create_app(datadir, settings), base_url="https://testserver") as client:
            tokens = {name: client.post("/api/v1/auth/login", json={"username": name, "password": PASSWORD}).json()["token"]
                      for name in ("ivan", "iris")}
            probe = photograph(faces["obama3.jpg"], 600, "JPEG")
            large = photograph(faces["obama2.jpg"], args.side)

            def search() -> float:
                started = time.perf_counter()
                answer = client.post("/api/v1/searches", headers={"Authorization": f"Bearer {tokens['ivan']}"},
                                     files={"probe": ("probe.jpg", probe, "image/jpeg")}, data=FIELDS)
                assert answer.status_code == 201, answer.text
                return time.perf_counter() - started

            search()  # load models and the index
            idle = [search() for _ in range(args.searches)]
            inspections: list[tuple[int, float]] = []
            stop = threading.Event()

            def inspect_repeatedly() -> None:
                while not stop.is_set():
                    started = time.perf_counter()
                    answer = client.post("/api/v1/faces", headers={"Authorization": f"Bearer {tokens['iris']}"},
                                         files={"image": ("large.png", large, "image/png")})
                    inspections.append((answer.status_code, time.perf_counter() - started))

            inspector = threading.Thread(target=inspect_repeatedly)
            inspector.start()
            time.sleep(0.5)  # let the first inspection start
            busy = [search() for _ in range(args.searches)]
            stop.set()
            inspector.join()
    figures = {
        "large_side": args.side, "large_png_bytes": len(large), "faces_answers": sorted({s for s, _ in inspections}),
        "faces_median_s": round(statistics.median(t for _, t in inspections), 3),
        "search_idle_median_s": round(statistics.median(idle), 3), "search_idle_max_s": round(max(idle), 3),
        "search_during_faces_median_s": round(statistics.median(busy), 3),
        "search_during_faces_max_s": round(max(busy), 3),
    }
    print(f"/faces with a {args.side}x{args.side} PNG ({len(large):,} bytes): answers {figures['faces_answers']}, "
          f"median {figures['faces_median_s']} s over {len(inspections)} requests")
    print(f"search alone: median {figures['search_idle_median_s']} s, max {figures['search_idle_max_s']} s")
    print(f"search while /faces runs: median {figures['search_during_faces_median_s']} s, "
          f"max {figures['search_during_faces_max_s']} s")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
