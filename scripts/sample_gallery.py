"""The main job of `make run`: initialise a data directory, enrol a small sample gallery, print an evaluation.

Every step is a real `facetrail` command, echoed before it runs. The sample is
the ORL face set from ../shared/faces when it is present (40 people, 10
photographs each), otherwise the photographs of the face_recognition 1.3.0
source distribution (2 people; see tests/fixtures/face_images.py).
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fixtures.face_images import face_images  # noqa: E402

GALLERY = "sample"
SOURCE = "research-sample"


FACETRAIL = str(Path(sys.executable).parent / "facetrail")


def facetrail(*args: str) -> None:
    """Run one facetrail command, showing it first."""
    print(f"\n$ facetrail {shlex.join(args)}", flush=True)
    subprocess.run([FACETRAIL, *args], check=True)


def gallery_names(data: list[str]) -> list[str]:
    listing = subprocess.run([FACETRAIL, "gallery", "list", "--json", *data], check=True, capture_output=True, text=True)
    return [gallery["name"] for gallery in json.loads(listing.stdout)]


def fixture_sets(cache: Path) -> tuple[Path, Path]:
    """A gallery folder and an evaluation folder from the face_recognition test photographs."""
    photos = face_images()
    gallery, evaluation = cache / "gallery", cache / "evaluation"
    for folder, layout in (
        (gallery, {"obama": ["obama.jpg"], "biden": ["biden.jpg"]}),
        (evaluation, {"obama": ["obama.jpg", "obama2.jpg", "obama3.jpg", "32bit.png"], "biden": ["biden.jpg"]}),
    ):
        for subject, names in layout.items():
            (folder / subject).mkdir(parents=True, exist_ok=True)
            for name in names:
                shutil.copyfile(photos[name], folder / subject / name)
    return gallery, evaluation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="facetrail-data")
    parser.add_argument("--shared-faces", default="../shared/faces")
    args = parser.parse_args()
    orl = Path(args.shared_faces) / "att_faces"
    if orl.is_dir():
        print(f"sample: ORL faces from {orl} (40 people × 10 photographs)")
        gallery_folder = evaluation_folder = orl
    else:
        print("sample: the face_recognition 1.3.0 test photographs (../shared/faces is absent)")
        gallery_folder, evaluation_folder = fixture_sets(ROOT / ".cache" / "sample")

    data = ["--data", args.data]
    facetrail("init", *data)
    if GALLERY not in gallery_names(data):
        facetrail("gallery", "create", GALLERY, "--allowed-source", SOURCE, "--description", "Demonstration gallery of research photographs", *data)
    report = Path(args.data) / "sample-enrolment-report.csv"
    facetrail("enroll", str(gallery_folder), "--gallery", GALLERY, "--source", SOURCE, "--report", str(report), *data)
    print(f"(every image's outcome and reason: {report})")
    facetrail("gallery", "list", *data)
    plot = Path(args.data) / "sample-cmc.png"
    facetrail("evaluate", "identify", "--images", str(evaluation_folder), "--gallery-per-subject", "1", "--plot", str(plot), *data)
    print(f"\n(CMC plot: {plot}. Searching is deliberately not offered yet: it will exist only bound to users, cases and an audit trail.)")


if __name__ == "__main__":
    main()
