"""Measure the activation ranges the int8 ResNet is quantized with (src/facetrail/engine/resnet_int8_ranges.json).

The ranges come from the float32 model run on the chips the default augmentation embeds (the aligned chip, its mirror
image and the wider-context chip; faces found as probes' are) of development photographs that are in no evaluation pair, so the pairs the int8 model is judged
on (docs/model.md) played no part in making it. Run it again only to recalibrate; the file is part of the code.

    python scripts/calibrate_int8.py --images ../shared/faces/lfw-dev --pairs ../shared/faces/lfw-dev-pairs.txt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import face_recognition_models
import numpy as np

from facetrail.config import Settings
from facetrail.engine import model_files, onnx_resnet
from facetrail.engine.pipeline import FaceEngine
from facetrail.evaluation.datasets import images_under, read_pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=Path("../shared/faces/lfw-dev"))
    parser.add_argument("--pairs", type=Path, default=Path("../shared/faces/lfw-dev-pairs.txt"))
    parser.add_argument("--count", type=int, default=300, help="photographs calibrated on (a seeded choice)")
    parser.add_argument("--output", type=Path, default=model_files.INT8_RANGES)
    args = parser.parse_args()
    in_pairs = {path.resolve() for pair in read_pairs(args.pairs, args.images) for path in (pair.first, pair.second)}
    candidates = [path for path in images_under(args.images) if path.resolve() not in in_pairs]
    chosen = np.random.default_rng(0).permutation(len(candidates))[: args.count]
    engine = FaceEngine(Settings().engine)
    chips = []
    for index in chosen:
        faces = engine.find_faces(engine.decode(candidates[index].read_bytes()).pixels)
        if faces:
            chips.extend(engine.model_chips(faces[0]))
    model = onnx_resnet.convert_dat_file(face_recognition_models.face_recognition_model_location())
    model_files.calibrate_int8(model, np.stack(chips), args.output)
    print(f"wrote {args.output}: ranges over {len(chips)} chips of {len(chosen)} photographs in no pair of {args.pairs}")


if __name__ == "__main__":
    main()
