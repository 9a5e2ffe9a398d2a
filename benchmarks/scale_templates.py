"""Real LFW templates for the scale benchmarks, computed once and cached in an .npz.

For each of the first ``--identities`` people of lfw-dev with at least two photographs, the template of the
first photograph (a gallery template, the seed of the synthetic gallery) and of the second (a held-apart mated
probe), with the default engine configuration. The face work costs ~0.3 s per photograph on one core.

    python benchmarks/scale_templates.py --images ../shared/faces/lfw-dev --identities 400 --out .cache/lfw-templates.npz
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from facetrail.engine.pipeline import FaceEngine, choose_face


def paired_photographs(root: Path, identities: int) -> list[tuple[str, Path, Path]]:
    """(identity, gallery photograph, probe photograph) for the first ``identities`` people with two or more."""
    pairs = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        photos = sorted(folder.glob("*.jpg"))
        if len(photos) >= 2:
            pairs.append((folder.name, photos[0], photos[1]))
            if len(pairs) == identities:
                break
    return pairs


def template_of(engine: FaceEngine, path: Path) -> np.ndarray | None:
    """The template of the face nearest the centre, or None when no face is found."""
    pixels = engine.decode(path.read_bytes()).pixels
    faces = engine.find_faces(pixels)
    if not faces:
        return None
    return engine.template(choose_face(faces, "centre", pixels.shape)).embedding


def compute(root: Path, identities: int) -> dict[str, np.ndarray]:
    """Gallery and probe templates of the people whose two photographs both show a face."""
    engine = FaceEngine()
    names, gallery, probes = [], [], []
    for name, first, second in paired_photographs(root, identities):
        a, b = template_of(engine, first), template_of(engine, second)
        if a is not None and b is not None:
            names.append(name)
            gallery.append(a)
            probes.append(b)
    return {"names": np.array(names), "gallery": np.stack(gallery), "probes": np.stack(probes), "model": np.array(engine.model.name)}


def load_or_compute(path: Path, root: Path, identities: int) -> dict[str, np.ndarray]:
    """The cached templates at ``path``, computing and saving them first if the file is absent."""
    if not path.exists():
        start = time.perf_counter()
        arrays = compute(root, identities)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **arrays)
        print(f"computed {len(arrays['names'])} template pairs in {time.perf_counter() - start:.0f} s -> {path}")
    with np.load(path) as cached:
        return {name: cached[name] for name in cached.files}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=Path("../shared/faces/lfw-dev"))
    parser.add_argument("--identities", type=int, default=400)
    parser.add_argument("--out", type=Path, default=Path(".cache/lfw-templates.npz"))
    args = parser.parse_args()
    arrays = load_or_compute(args.out, args.images, args.identities)
    print(f"{len(arrays['names'])} identities, gallery {arrays['gallery'].shape}, probes {arrays['probes'].shape}")


if __name__ == "__main__":
    main()
