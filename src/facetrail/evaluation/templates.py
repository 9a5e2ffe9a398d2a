"""Templates for evaluation photo sets: one per image, from the face nearest the centre or the largest face.

An image that yields no template is a failure to enrol (FTE); it is kept, with
its reason, so the protocols can count it as an error instead of dropping it.

Templates can be kept in a cache file (``TemplateCache``, a NumPy ``.npz``) so a
large set is analysed once: entries are keyed by the image's resolved path, size
and modification time, and the file records the pipeline that made them (model,
version, augmentation, every detection setting, face choice); a file made by
another pipeline is refused rather than mixed in. (The embedding backend is not
part of it: ONNX and dlib compute the same templates; the precision is, int8's
differ from float32's.)
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facetrail.config import EngineConfig
from facetrail.engine.decode import read_image_bytes
from facetrail.engine.parallel import analyse_many
from facetrail.engine.pipeline import FaceChoice, FaceEngine, choose_face
from facetrail.errors import FacetrailError

QUALITY_COMPONENTS = ("face_px", "inter_eye_px", "sharpness", "brightness", "contrast", "yaw_deg", "roll_deg", "detector_score")
"""The measurements of ``engine.quality.Quality`` kept with each evaluation template (NaN when not measured)."""

CACHE_SAVE_EVERY = 250
"""A cache file is rewritten after this many new templates, so an interrupted run keeps most of its work."""


@dataclass(frozen=True)
class ImageTemplate:
    """The outcome for one evaluation image: an embedding and the face's quality measurements, or the reason there is none."""

    path: Path
    embedding: np.ndarray | None
    reason: str = ""
    detector: str = ""
    faces: int = 0
    quality: tuple[float, ...] = ()
    """The face's ``QUALITY_COMPONENTS``, in that order (empty for a failure)."""

    @property
    def failed(self) -> bool:
        return self.embedding is None


@dataclass(frozen=True)
class _Job:
    path: Path
    choice: FaceChoice


def _template_job(engine: FaceEngine, job: _Job) -> ImageTemplate:
    try:
        image = engine.decode(read_image_bytes(job.path, engine.config.limits))
        faces = engine.find_faces(image.pixels)
        face = choose_face(faces, job.choice, image.pixels.shape)
        template = engine.template(face)
    except FacetrailError as exc:
        return ImageTemplate(job.path, None, str(exc))
    values = (getattr(face.quality, name) for name in QUALITY_COMPONENTS)
    quality = tuple(math.nan if value is None else float(value) for value in values)
    return ImageTemplate(job.path, template.embedding, "", face.detection.detector, len(faces), quality)


def pipeline_key(config: EngineConfig, model_name: str, model_version: str, choice: FaceChoice) -> dict[str, str]:
    """What decides an evaluation template, as recorded in a cache file."""
    return {
        "model": model_name,
        "model_version": model_version,
        "augmentation": config.embedding.augmentation,
        "precision": config.embedding.precision,
        "detection": repr(config.detection),
        "face_choice": choice,
    }


class TemplateCache:
    """Evaluation templates kept in an ``.npz`` file for one pipeline (see the module docstring)."""

    def __init__(self, path: Path, pipeline: dict[str, str]) -> None:
        """Open ``path`` (created on the first save); refuses a file made by another pipeline or not a cache."""
        self.path = Path(path)
        self.pipeline = pipeline
        self._entries: dict[str, tuple[int, int, ImageTemplate]] = {}
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        try:
            with np.load(self.path, allow_pickle=False) as data:
                stored = json.loads(str(data["pipeline"]))
                columns = [data[name] for name in ("paths", "sizes", "mtimes", "embeddings", "reasons", "detectors", "faces", "quality")]
        except (OSError, ValueError, KeyError) as exc:
            raise FacetrailError(f"{self.path}: not a facetrail template cache ({exc})") from exc
        if stored != self.pipeline:
            changed = sorted(k for k in {**stored, **self.pipeline} if stored.get(k) != self.pipeline.get(k))
            raise FacetrailError(f"{self.path}: templates made by another pipeline (differs in {', '.join(changed)}); use another cache file")
        for path, size, mtime, embedding, reason, detector, faces, quality in zip(*columns):
            failed = bool(np.isnan(embedding).all())
            template = ImageTemplate(Path(str(path)), None if failed else embedding.astype(np.float32), str(reason), str(detector),
                                     int(faces), () if failed else tuple(float(q) for q in quality))
            self._entries[str(path)] = (int(size), int(mtime), template)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, path: Path) -> ImageTemplate | None:
        """The cached template for ``path``, or None when absent or the file changed since (size or mtime)."""
        key = str(Path(path).resolve())
        entry = self._entries.get(key)
        if entry is None or _signature(key) != entry[:2]:
            return None
        template = entry[2]
        return ImageTemplate(Path(path), template.embedding, template.reason, template.detector, template.faces, template.quality)

    def put(self, template: ImageTemplate) -> None:
        """Remember ``template`` (saved by the next ``save``); an image that cannot be read any more is not kept."""
        key = str(template.path.resolve())
        signature = _signature(key)
        if signature is not None:
            self._entries[key] = (*signature, template)

    def save(self) -> None:
        """Write every entry to the cache file atomically."""
        keys = sorted(self._entries)
        dimension = max((t.embedding.size for _, _, t in self._entries.values() if not t.failed), default=0)
        embeddings = np.full((len(keys), dimension), np.nan, dtype=np.float32)
        quality = np.full((len(keys), len(QUALITY_COMPONENTS)), np.nan)
        for row, key in enumerate(keys):
            template = self._entries[key][2]
            if not template.failed:
                embeddings[row] = template.embedding
                quality[row] = template.quality
        entries = [self._entries[key] for key in keys]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=self.path.parent, prefix=".tmp-", suffix=".npz")
        with os.fdopen(fd, "wb") as handle:
            np.savez(
                handle,
                pipeline=np.array(json.dumps(self.pipeline, sort_keys=True)),
                paths=np.array(keys, dtype=str),
                sizes=np.array([e[0] for e in entries], dtype=np.int64),
                mtimes=np.array([e[1] for e in entries], dtype=np.int64),
                embeddings=embeddings,
                reasons=np.array([e[2].reason for e in entries], dtype=str),
                detectors=np.array([e[2].detector for e in entries], dtype=str),
                faces=np.array([e[2].faces for e in entries], dtype=np.int64),
                quality=quality,
            )
        os.replace(temp, self.path)


def _signature(path: str) -> tuple[int, int] | None:
    """A file's size and modification time (None when it cannot be read), to tell a changed image from a cached one."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def compute_templates(
    paths: Iterable[Path],
    config: EngineConfig,
    choice: FaceChoice = "centre",
    workers: int = 0,
    on_done: Callable[[ImageTemplate], None] = lambda template: None,
    cache: TemplateCache | None = None,
) -> dict[Path, ImageTemplate]:
    """A template (or failure) for every distinct path, computed in parallel; taken from and added to ``cache`` when given."""
    unique = list(dict.fromkeys(paths))
    results: dict[Path, ImageTemplate] = {}
    missing = []
    for path in unique:
        cached = cache.get(path) if cache is not None else None
        if cached is None:
            missing.append(path)
        else:
            results[path] = cached
            on_done(cached)
    added = 0
    for job, template in analyse_many((_Job(p, choice) for p in missing), _template_job, config, workers):
        results[job.path] = template
        on_done(template)
        if cache is not None:
            cache.put(template)
            added += 1
            if added % CACHE_SAVE_EVERY == 0:
                cache.save()
    if cache is not None and added:
        cache.save()
    return {path: results[path] for path in unique}


def failure_summary(templates: Iterable[ImageTemplate]) -> dict:
    """Count and list the failures to enrol, and which detector found the faces that were used."""
    templates = list(templates)
    failed = [t for t in templates if t.failed]
    detectors: dict[str, int] = {}
    for t in templates:
        if not t.failed:
            detectors[t.detector] = detectors.get(t.detector, 0) + 1
    return {
        "images": len(templates),
        "failures_to_enrol": len(failed),
        "failed_images": [{"path": str(t.path), "reason": t.reason} for t in failed],
        "faces_found_by": detectors,
        "images_with_several_faces": sum(1 for t in templates if t.faces > 1),
    }
