"""Engine configuration: one TOML file, every threshold in one place.

``facetrail init`` writes ``config.toml`` into the data directory with the
defaults below; an operator edits it there. Unknown keys and values of the
wrong type are refused with the key's name, so a typo cannot silently leave a
default in force.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_type_hints

from facetrail.errors import ConfigError


@dataclass(frozen=True)
class DecodeLimits:
    """Limits applied before and while decoding an image."""

    max_bytes: int = 50 * 1024 * 1024
    """Largest accepted file, in bytes."""
    max_pixels: int = 80_000_000
    """Largest accepted width × height (per frame)."""


@dataclass(frozen=True)
class DetectionConfig:
    """How faces are found."""

    min_face_px: int = 40
    """Smallest face width (original pixels) the HOG pass should find; small photos are enlarged for it."""
    min_face_fraction: float = 0.05
    """...but never look for faces narrower than this fraction of the image's shorter side."""
    max_scanned_pixels: int = 1_000_000
    """HOG scans a copy of the photo resized to find ``min_face_px`` faces, but never larger than this many
    pixels: its cost grows with them (~50 ms per million on one core). Larger photos are reduced to it, so their
    smallest face found grows (~115 px in a 1920×1080 still at the default); give the box by hand for smaller
    faces, which are then looked for at whatever scale they need."""
    hog_threshold: float = 0.0
    """HOG detector score threshold (dlib's adjust_threshold)."""
    fallback: Literal["cnn", "none"] = "cnn"
    """What to try when HOG finds no face: dlib's CNN (MMOD) detector, or nothing."""
    cnn_max_side: int = 640
    """The CNN fallback runs on the image reduced/enlarged so its longer side is at most this."""
    cnn_min_side: int = 300
    """...and small images are enlarged so their longer side is at least this."""


@dataclass(frozen=True)
class EmbeddingConfig:
    """How templates are computed."""

    augmentation: Literal["none", "mirror", "mirror+context"] = "mirror+context"
    """Test-time augmentation: 'none' is one pass; 'mirror' averages the chip and its mirror image (two passes);
    'mirror+context' also averages a chip with a wider margin around the face (three passes, most accurate)."""
    context_padding: float = 0.35
    """Margin of the wider chip used by 'mirror+context', as a fraction of the face (the model's own is 0.25)."""
    backend: Literal["onnx", "dlib"] = "onnx"
    """What runs the recognition network: ONNX Runtime on a graph converted locally from dlib's weights (~10×
    faster), or dlib itself. Both compute the same templates (within 1e-6), so either searches a gallery
    enrolled with the other."""
    threads: int = 0
    """Threads for one network evaluation; 0 means one per core, shared out among worker processes."""


@dataclass(frozen=True)
class QualityThresholds:
    """A face below any of these is 'poor', with the failed checks as reasons."""

    min_inter_eye_px: float = 16.0
    min_face_px: float = 40.0
    min_sharpness: float = 15.0
    """Variance of the Laplacian of the aligned grey chip."""
    min_brightness: float = 40.0
    max_brightness: float = 220.0
    """Mean grey level of the aligned chip, 0-255."""
    min_contrast: float = 20.0
    """Standard deviation of the grey level of the aligned chip."""
    max_abs_yaw_deg: float = 45.0
    max_abs_roll_deg: float = 30.0
    min_detector_score: float = -0.5


@dataclass(frozen=True)
class EnrolmentConfig:
    """Rules for images that enter a gallery."""

    dominant_face_ratio: float = 0.0
    """If > 0, an image with several faces is accepted when the largest face's area is at least this
    many times the next largest; 0 means a gallery image must contain exactly one face."""
    require_acceptable_quality: bool = True
    min_face_fraction: float = 0.25
    """Gallery photographs are portraits: faces narrower than this fraction of the photo's shorter side are not
    looked for (so neither enrolled nor counted as a second person), which makes detection ~3× cheaper."""
    workers: int = 0
    """Processes used for enrolment; 0 means one per CPU core (with ``ray_address``: Ray actors, 0 = one per CPU
    of the cluster)."""
    ray_address: str = ""
    """Run enrolment's face work as Ray actors on this cluster ("auto", "local", "host:port" or "ray://host:port";
    needs the ``ray`` extra); empty means local worker processes. Commits stay in the enrolling process."""
    commit_every: int = 32
    """Enrolled images are committed to the store in batches of this size."""
    prohibited_sources: tuple[str, ...] = ("web-scrape", "social-media", "commercial-face-search")
    """Provenance sources no gallery may ever allow (images scraped from the web or social media, third-party
    face search services)."""


@dataclass(frozen=True)
class IndexConfig:
    """How each gallery's vector index is kept and searched (see docs/scaling.md for the measurements behind the
    defaults)."""

    compress_at: int = 50_000
    """Below this many templates a gallery is searched exactly, every float32 template in memory; on reaching it
    the index is trained on the gallery's own templates and becomes IVF + 8-bit scalar quantisation in memory with
    exact re-rank against float32 templates read from the encrypted segments on disk (~160 B of RAM a face)."""
    nprobe: int = 64
    """Inverted lists scanned per search (of about 4·√n at training: 1,024 when trained at 50,000)."""
    rerank: int = 100
    """Candidates of the compressed pass re-scored exactly; the candidate list is the best k of them."""
    segment_templates: int = 262_144
    """Most templates in one segment file: an expungement rewrites the segments holding the removed templates."""

    def __post_init__(self) -> None:
        for name in ("compress_at", "nprobe", "rerank", "segment_templates"):
            if getattr(self, name) < 1:
                raise ConfigError(f"index.{name}: must be at least 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class StoreConfig:
    """Where the metadata lives."""

    database_url: str = ""
    """SQLAlchemy URL, e.g. postgresql+psycopg://user@127.0.0.1:5432/facetrail; empty means SQLite in the data
    directory. The environment variable FACETRAIL_DATABASE_URL overrides it."""


@dataclass(frozen=True)
class EngineConfig:
    """What the face engine needs: decoding limits, detection, embedding and quality thresholds."""

    limits: DecodeLimits = field(default_factory=DecodeLimits)
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    quality: QualityThresholds = field(default_factory=QualityThresholds)


@dataclass(frozen=True)
class Settings:
    """The whole configuration file: one table per section."""

    limits: DecodeLimits = field(default_factory=DecodeLimits)
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    quality: QualityThresholds = field(default_factory=QualityThresholds)
    enrolment: EnrolmentConfig = field(default_factory=EnrolmentConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    index: IndexConfig = field(default_factory=IndexConfig)

    @property
    def engine(self) -> EngineConfig:
        """The sections the face engine uses."""
        return EngineConfig(self.limits, self.detection, self.embedding, self.quality)


def load_settings(path: Path | None) -> Settings:
    """Read ``Settings`` from a TOML file; defaults when ``path`` is None or absent."""
    if path is None or not path.exists():
        return Settings()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return settings_from_dict(raw, source=str(path))


def settings_from_dict(raw: dict[str, Any], source: str = "config") -> Settings:
    """Build ``Settings`` from nested dicts, refusing unknown keys and wrong types (errors name ``source``)."""
    try:
        return _build(Settings, raw, "")
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def settings_to_toml(config: Settings) -> str:
    """Render a configuration as TOML, one table per section, with each field's documentation."""
    lines = ["# facetrail engine configuration. Every key is optional; shown values are in force."]
    for section in dataclasses.fields(config):
        value = getattr(config, section.name)
        lines.append("")
        lines.append(f"[{section.name}]")
        for item in dataclasses.fields(value):
            lines.append(f"{item.name} = {_toml_value(getattr(value, item.name))}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def _build(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'the file'}: expected a table")
    hints = get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(", ".join(_dotted(where, key) for key in unknown) + ": unknown key")
    values = {}
    for name, value in raw.items():
        hint = hints[name]
        key = _dotted(where, name)
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, value, key)
        else:
            values[name] = _check_scalar(hint, value, key)
    return cls(**values)


def _dotted(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _check_scalar(hint: Any, value: Any, key: str) -> Any:
    choices = get_args(hint)
    if choices and all(isinstance(c, str) for c in choices):
        if value not in choices:
            raise ConfigError(f"{key}: must be one of {', '.join(map(repr, choices))}, not {value!r}")
        return value
    if hint == tuple[str, ...]:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        value = tuple(value) if ok else value
    elif hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, hint)
    if not ok:
        raise ConfigError(f"{key}: expected {getattr(hint, '__name__', hint)}, got {value!r}")
    return value
