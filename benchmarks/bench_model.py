"""The recognition network alone: milliseconds per chip on each backend and precision, by batch size and threads.

Chips are the aligned faces of real photographs (the face_recognition test images, or ``--images`` with
one folder per person such as ../shared/faces/lfw-dev), three per face as the default augmentation embeds them.
Also prints the largest difference between the ONNX and dlib descriptors of the same chips, and between the int8
and float32 templates (three chips averaged) of the same faces. It prints its
figures and a JSON line; it asserts nothing about speed. Run it alone: other load on the machine skews it.

    python benchmarks/bench_model.py --images ../shared/faces/lfw-dev --faces 40 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from facetrail.engine.models import load_model  # noqa: E402
from facetrail.engine.pipeline import FaceEngine  # noqa: E402
from tests.fixtures.face_images import face_images  # noqa: E402


def real_chips(photos: list[Path], faces: int) -> np.ndarray:
    """Up to ``faces`` faces' three chips (chip, mirror, wider context), as one uint8 array."""
    engine = FaceEngine()
    chips: list[np.ndarray] = []
    for photo in photos:
        for face in engine.find_faces(np.asarray(Image.open(photo).convert("RGB"))):
            chips += engine.model_chips(face)
        if len(chips) >= 3 * faces:
            break
    return np.stack(chips[: 3 * faces])


def per_chip_ms(model, chips: np.ndarray, batch: int, repeats: int) -> tuple[float, float]:
    """(min, median) over ``repeats`` runs of the mean milliseconds per chip, embedding in batches of ``batch``."""
    model.embed(list(chips[:batch]))  # warm-up
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for first in range(0, len(chips), batch):
            model.embed(list(chips[first:first + batch]))
        runs.append(1000 * (time.perf_counter() - start) / len(chips))
    return min(runs), statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, help="folder of per-person folders (default: the test photographs)")
    parser.add_argument("--faces", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", default="1,3,12,48")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--precisions", default="float32,int8")
    parser.add_argument("--dlib-repeats", type=int, default=1, help="repeats for dlib's backend (slow)")
    args = parser.parse_args()
    photos = sorted(args.images.glob("*/*.jpg")) if args.images else list(face_images().values())
    chips = real_chips(photos, args.faces)
    print(f"{len(chips)} chips from {args.images or 'the test photographs'}")
    rows = []
    for precision in args.precisions.split(","):
        for threads in map(int, args.threads.split(",")):
            model = load_model(backend="onnx", threads=threads, precision=precision)
            for batch in map(int, args.batches.split(",")):
                low, median = per_chip_ms(model, chips, batch, args.repeats)
                rows.append({"backend": "onnx", "precision": model.precision, "threads": threads, "batch": batch,
                             "min_ms_per_chip": low, "median_ms_per_chip": median})
                print(f"onnx {model.precision:7s} threads={threads} batch={batch:3d}: min {low:6.2f}  median {median:6.2f} ms/chip")
    dlib_model = load_model(backend="dlib")
    low, median = per_chip_ms(dlib_model, chips, 3, args.dlib_repeats)
    rows.append({"backend": "dlib", "precision": "float32", "threads": 1, "batch": 3, "min_ms_per_chip": low, "median_ms_per_chip": median})
    print(f"dlib float32 threads=1 batch=  3: min {low:6.2f}  median {median:6.2f} ms/chip")
    exact = load_model(backend="onnx").embed(list(chips))
    difference = float(np.abs(exact - dlib_model.embed(list(chips))).max())
    print(f"largest difference between ONNX and dlib descriptors over {len(chips)} chips: {difference:.2e}")
    quantized = load_model(backend="onnx", precision="int8").embed(list(chips))
    templates = [np.linalg.norm(a.mean(axis=0) - b.mean(axis=0)) for a, b in zip(exact.reshape(-1, 3, 128), quantized.reshape(-1, 3, 128))]
    print(f"int8 against float32 templates of {len(templates)} faces: distance median {np.median(templates):.4f}, "
          f"largest {max(templates):.4f}")
    print(json.dumps({"benchmark": "model", "chips": len(chips), "rows": rows, "largest_difference": difference,
                      "int8_template_distance": {"median": float(np.median(templates)), "max": float(max(templates))}}))


if __name__ == "__main__":
    main()
