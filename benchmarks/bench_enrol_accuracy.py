"""What enrolment's speed levers cost in accuracy: dev pairs and ORL with gallery templates made each way.

Every photograph of the LFW dev pairs gets a template through the enrolment pipeline (portrait detection, the face
nearest the centre) in each variant: float32 or int8 (``enrolment.precision``), HOG unenlarged first or not
(``enrolment.hog_unenlarged_first``). For each variant it prints failures to enrol, 10-fold accuracy with both
templates of a pair made that way and with the first made as a probe is (float32, probe detection), and how many
decisions at the model's threshold (0.6) differ from those of the variant with one lever fewer, with the largest
change of a pair's distance. ORL: rank 1 of each person's other photographs (probes) against a gallery of their first, made each way.
It asserts nothing.

    python benchmarks/bench_enrol_accuracy.py --shared-faces ../shared/faces
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from facetrail.config import EngineConfig, Settings
from facetrail.engine.parallel import analyse_many
from facetrail.engine.pipeline import FaceEngine, choose_face
from facetrail.evaluation.datasets import read_pairs
from facetrail.evaluation.metrics import kfold_accuracy
from facetrail.gallery.enrol import enrolment_engine_config

VARIANTS = {  # name: (enrolment.precision, enrolment.hog_unenlarged_first, the variant it is compared with)
    "float32": ("float32", False, None),
    "int8": ("int8", False, "float32"),
    "float32, unenlarged first": ("float32", True, "float32"),
    "int8, unenlarged first (default)": ("int8", True, "float32, unenlarged first"),
}


def _template(engine: FaceEngine, path: Path) -> np.ndarray | None:
    pixels = engine.decode(path.read_bytes()).pixels
    faces = engine.find_faces(pixels)
    return engine.template(choose_face(faces, "centre", pixels.shape)).embedding if faces else None


def templates(paths: list[Path], config: EngineConfig, workers: int) -> dict[Path, np.ndarray | None]:
    """A template (None: no face) for each photograph under ``config``."""
    return dict(analyse_many(paths, _template, config, workers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared-faces", type=Path, default=Path("../shared/faces"))
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    settings = Settings()
    pairs = read_pairs(args.shared_faces / "lfw-dev-pairs.txt", args.shared_faces / "lfw-dev")
    same = np.array([pair.same for pair in pairs])
    photos = sorted({path for pair in pairs for path in (pair.first, pair.second)})
    orl_people = sorted(p for p in (args.shared_faces / "att_faces").iterdir() if p.is_dir())
    orl_gallery = [person / "1.pgm" for person in orl_people]
    orl_probes = [(k, path) for k, person in enumerate(orl_people) for path in sorted(person.glob("*.pgm")) if path.name != "1.pgm"]
    as_probes = templates(photos + [path for _, path in orl_probes], settings.engine, args.workers)

    def distances(first: dict, second: dict) -> np.ndarray:
        return np.array([np.linalg.norm(first[p.first] - second[p.second])
                         if first[p.first] is not None and second[p.second] is not None else np.inf for p in pairs])

    results, pair_distances = {}, {}
    for name, (precision, unenlarged_first, baseline) in VARIANTS.items():
        rules = dataclasses.replace(settings.enrolment, precision=precision, hog_unenlarged_first=unenlarged_first)
        made = templates(photos + orl_gallery, enrolment_engine_config(settings.engine, rules), args.workers)
        both = pair_distances[name] = distances(made, made)
        gallery = np.stack([made[path] for path in orl_gallery])
        hits = [np.argmin(np.linalg.norm(gallery - as_probes[path], axis=1)) == k for k, path in orl_probes]
        result = results[name] = {
            "failures_to_enrol": sum(made[path] is None for path in photos + orl_gallery),
            "kfold_gallery_gallery": kfold_accuracy(both, same).mean,
            "kfold_probe_gallery": kfold_accuracy(distances(as_probes, made), same).mean,
            "errors_at_0.6": int(((both <= 0.6) != same).sum()),
            "orl_rank1": float(np.mean(hits)),
        }
        line = (f"{name}: failures to enrol {result['failures_to_enrol']}, 10-fold {100 * result['kfold_gallery_gallery']:.2f}% "
                f"(probe against gallery {100 * result['kfold_probe_gallery']:.2f}%), errors at 0.6 {result['errors_at_0.6']}, "
                f"ORL rank 1 {100 * result['orl_rank1']:.1f}%")
        if baseline is not None:
            before = pair_distances[baseline]
            finite = np.isfinite(both) & np.isfinite(before)
            result["compared_with"] = baseline
            result["decisions_changed"] = int(((both <= 0.6) != (before <= 0.6)).sum())
            result["largest_distance_change"] = float(np.abs(both - before)[finite].max())
            line += (f"; against {baseline}: {result['decisions_changed']} of {len(pairs)} decisions changed, largest "
                     f"distance change {result['largest_distance_change']:.3f}")
        print(line, flush=True)
    print(json.dumps({"benchmark": "enrol_accuracy", "pairs": len(pairs), "results": results}))


if __name__ == "__main__":
    main()
