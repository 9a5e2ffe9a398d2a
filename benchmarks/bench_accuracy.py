"""What each step of the pipeline adds to verification accuracy on the LFW dev pairs.

For every image in the pairs file the engine's own components run once:
HOG detection (and the CNN fallback when HOG finds nothing), the face chosen
as the largest or the one nearest the centre, and four embeddings of it:
the aligned chip, its mirror image, the wider-context chip, and an
*unaligned* crop of the detection box (to show what alignment is worth).
Each pipeline variant is then scored with 10-fold cross-validated accuracy;
a pair with an image that yields no face counts as an error.

    python benchmarks/bench_accuracy.py --shared-faces ../shared/faces

The embeddings are cached in .cache/ so rescoring is instant; the default
pipeline's figure is reproduced end to end by
`facetrail evaluate verify --pairs ../shared/faces/lfw-dev-pairs.txt --images ../shared/faces/lfw-dev`.
"""

from __future__ import annotations

import argparse
import json
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from facetrail.config import EngineConfig
from facetrail.engine.decode import read_image_bytes
from facetrail.engine.parallel import analyse_many
from facetrail.engine.pipeline import FaceEngine, FoundFace, choose_face
from facetrail.evaluation.datasets import read_pairs
from facetrail.evaluation.metrics import kfold_accuracy

VIEWS = ("aligned", "mirror", "context", "unaligned")
CACHE = Path(__file__).resolve().parents[1] / ".cache" / "bench_accuracy.pkl"


@dataclass
class ImageViews:
    """Which detector found the faces (None: no face), and per face choice ('largest', 'centre') the embedding of
    each view."""

    detector: str | None
    by_choice: dict[str, dict[str, np.ndarray]]


def unaligned_crop(pixels: np.ndarray, face: FoundFace, size: int = 150, margin: float = 0.25) -> np.ndarray:
    """The detection box with a margin, resized to the chip size, without rotating or scaling to the landmarks."""
    box = face.detection.box
    left, top = box.left - margin * box.width, box.top - margin * box.height
    right, bottom = box.right + margin * box.width, box.bottom + margin * box.height
    crop = Image.fromarray(pixels).crop((round(left), round(top), round(right), round(bottom)))
    return np.asarray(crop.resize((size, size), Image.Resampling.BILINEAR))


def views_of(engine: FaceEngine, path: Path) -> ImageViews:
    """Every embedding variant of the face(s) this image contributes."""
    pixels = engine.decode(read_image_bytes(path, engine.config.limits)).pixels
    detections, detector = engine.detector.detect_hog(pixels), "hog"
    if not detections:
        detections, detector = engine.detector.detect_cnn(pixels), "cnn"
    if not detections:
        return ImageViews(None, {})
    faces = [engine.measure(pixels, d) for d in detections]
    chosen = {choice: choose_face(faces, choice, pixels.shape) for choice in ("largest", "centre")}
    embedded: dict[int, dict[str, np.ndarray]] = {}
    for face in chosen.values():
        if id(face) not in embedded:
            chips = [face.chip, np.ascontiguousarray(face.chip[:, ::-1]), face.context_chip, unaligned_crop(pixels, face)]
            embedded[id(face)] = dict(zip(VIEWS, engine.model.embed(chips)))
    return ImageViews(detector, {choice: embedded[id(face)] for choice, face in chosen.items()})


def compute_views(paths: list[Path], workers: int) -> dict[Path, ImageViews]:
    """Views for every path, cached on disk by the list of paths."""
    key = sorted(str(p) for p in paths)
    if CACHE.exists():
        cached = pickle.loads(CACHE.read_bytes())
        if cached["paths"] == key:
            return cached["views"]
    views = {path: result for path, result in analyse_many(paths, views_of, EngineConfig(), workers)}
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    CACHE.write_bytes(pickle.dumps({"paths": key, "views": views}))
    return views


PIPELINES = [
    ("plain: HOG only, largest face, 1 pass", dict(fallback=False, choice="largest", views=("aligned",))),
    ("+ CNN fallback", dict(fallback=True, choice="largest", views=("aligned",))),
    ("+ face nearest the centre", dict(fallback=True, choice="centre", views=("aligned",))),
    ("  (same, without alignment: box crop)", dict(fallback=True, choice="centre", views=("unaligned",))),
    ("+ mirror averaging (2 passes)", dict(fallback=True, choice="centre", views=("aligned", "mirror"))),
    ("+ wider-context chip (3 passes, default)", dict(fallback=True, choice="centre", views=("aligned", "mirror", "context"))),
]


def score(pairs, views: dict[Path, ImageViews], fallback: bool, choice: str, chosen_views: tuple[str, ...]) -> dict:
    def template(path: Path) -> np.ndarray | None:
        image = views[path]
        if image.detector is None or (image.detector == "cnn" and not fallback):
            return None
        return np.mean([image.by_choice[choice][v] for v in chosen_views], axis=0)

    distances, failed = np.full(len(pairs), np.inf), np.zeros(len(pairs), dtype=bool)
    for k, pair in enumerate(pairs):
        a, b = template(pair.first), template(pair.second)
        if a is None or b is None:
            failed[k] = True
        else:
            distances[k] = float(np.linalg.norm(a - b))
    same = np.array([p.same for p in pairs])
    result = kfold_accuracy(distances, same, folds=10, failed=failed)
    seeds = [kfold_accuracy(distances, same, folds=10, seed=s, failed=failed).mean for s in range(1, 5)]
    failed_images = sum(1 for p in {x for pair in pairs for x in (pair.first, pair.second)} if template(p) is None)
    return {"accuracy": result.mean, "std": result.std, "accuracy_over_5_fold_seeds": float(np.mean([result.mean, *seeds])),
            "failed_pairs": int(failed.sum()), "failures_to_enrol": failed_images, "passes": len(chosen_views)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared-faces", type=Path, default=Path("../shared/faces"))
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    pairs = read_pairs(args.shared_faces / "lfw-dev-pairs.txt", args.shared_faces / "lfw-dev")
    paths = sorted({p for pair in pairs for p in (pair.first, pair.second)})
    views = compute_views(paths, args.workers)
    print(f"{len(pairs)} pairs, {len(paths)} images; HOG found nothing in {sum(v.detector == 'cnn' for v in views.values())} "
          f"(CNN fallback found a face), no face at all in {sum(v.detector is None for v in views.values())}")
    results = {}
    for label, options in PIPELINES:
        results[label] = figures = score(pairs, views, options["fallback"], options["choice"], options["views"])
        print(f"{label:45s} {100 * figures['accuracy']:6.2f}% ± {100 * figures['std']:.2f}  "
              f"(5 fold seeds: {100 * figures['accuracy_over_5_fold_seeds']:.2f}%, failed pairs {figures['failed_pairs']})")
    print(json.dumps({"benchmark": "accuracy", "pairs": len(pairs), "results": results}))


if __name__ == "__main__":
    main()
