"""Engine configuration: one TOML file, every threshold in one place.

``facetrail init`` writes ``config.toml`` into the data directory with the
defaults below; an operator edits it there. Unknown keys and values of the
wrong type are refused with the key's name, so a typo cannot silently leave a
default in force.

Why one module: every key of ``config.toml`` is declared here, each with its
default and the reason for it, so an operator or a reviewer reads every
threshold the system runs under in one file, in the order of the file's
sections; the loader that checks them against these declarations sits beside
them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_type_hints
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from facetrail.errors import ConfigError


@dataclass(frozen=True)
class DecodeLimits:
    """Limits applied before and while decoding an image."""

    max_bytes: int = 50 * 1024 * 1024
    """Largest accepted file, in bytes."""
    max_pixels: int = 80_000_000
    """Largest accepted width × height (per frame) of a photograph being enrolled."""
    max_interactive_pixels: int = 24_000_000
    """Largest width × height of a photograph analysed while a user waits (finding faces, a search's probe, a
    comparison): far below ``max_pixels``, so no one request holds a face engine for long."""


@dataclass(frozen=True)
class DetectionConfig:
    """How faces are found."""

    min_face_px: int = 40
    """Smallest face width (original pixels) the HOG pass should find; small photos are enlarged for it."""
    min_face_fraction: float = 0.05
    """...but never look for faces narrower than this fraction of the image's shorter side."""
    max_scanned_pixels: int = 1_000_000
    """HOG scans a copy of the photo resized to find ``min_face_px`` faces, but never larger than this many
    pixels: its cost grows with them (50-80 ms per million on one core, measured). Larger photos are reduced to
    it, so their smallest face found grows (~115 px in a 1920×1080 still at the default); give the box by hand
    for smaller faces, which are then looked for at whatever scale they need."""
    hog_unenlarged_first: bool = False
    """Where the smallest face wanted needs an enlarged copy, first scan the photo at its own size and enlarge only
    when that finds no face scoring ``hog_unenlarged_min_score`` or more (enrolment turns it on:
    ``enrolment.hog_unenlarged_first``)."""
    hog_unenlarged_min_score: float = 0.28
    """A face the unenlarged scan finds weaker than this is looked for again in the enlarged copy (enrolment sets it
    to ``quality.min_detector_score``, so no photograph is refused as a weak detection that the enlarged scan finds
    clearly)."""
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
    precision: Literal["float32", "int8"] = "float32"
    """Arithmetic of the ONNX backend: float32 computes dlib's own descriptors; int8 runs the network quantized
    (calibrated on development chips, see docs/model.md) ~2-3× faster per chip on CPUs with 8-bit dot products
    (VNNI); its templates differ from float32 ones by less than the bound stated there, so galleries enrolled with
    either are searched with either. On an x86 CPU without VNNI int8 falls back to float32."""
    threads: int = 0
    """Threads for one network evaluation; 0 means one per core, shared out among worker processes."""
    score_normalization: Literal["none", "fsn"] = "none"
    """Normalization of comparison distances: "fsn" is fair score normalization (Terhörst et al. 2020: clusters of
    templates, no group labels). Only the evaluate commands read it (their --normalization default); searches do not
    apply it. It is off because it did not pass the adoption rule on the development set (docs/evaluation.md)."""

    def __post_init__(self) -> None:
        if self.precision == "int8" and self.backend != "onnx":
            raise ConfigError(f'embedding.precision = "int8" needs embedding.backend = "onnx", got {self.backend!r}')


@dataclass(frozen=True)
class QualityThresholds:
    """A face below any of these is 'poor', with the failed checks as reasons.

    Set from the error-versus-discard curves on the development pairs (docs/evaluation.md): the detector score
    predicts errors and its threshold comes from its curve; sharpness and yaw do not predict errors within the range
    of the development photographs, so their checks are off by default (0 and 90); the other limits lie beyond every
    development photograph and bound the conditions the model was evaluated in."""

    min_inter_eye_px: float = 16.0
    min_face_px: float = 40.0
    min_sharpness: float = 0.0
    """Variance of the Laplacian of the aligned grey chip (0: not checked; 15 refused 6% of the development
    photographs without removing more errors than refusing at random would)."""
    min_brightness: float = 40.0
    max_brightness: float = 220.0
    """Mean grey level of the aligned chip, 0-255."""
    min_contrast: float = 20.0
    """Standard deviation of the grey level of the aligned chip."""
    max_abs_yaw_deg: float = 90.0
    """Approximate yaw (90: not checked; yaw up to ±41° did not predict errors on the development pairs)."""
    max_abs_roll_deg: float = 30.0
    min_detector_score: float = 0.28
    """HOG detector score: genuine pairs with a face scoring below 0.28 (the weakest 2%) failed 7 times as often."""


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
    hog_unenlarged_first: bool = True
    """A small gallery photograph (shorter side under 320 pixels) is scanned at its own size first, half the cost of
    the enlarged copy a face of a quarter of its side needs, which is scanned only when the first finds no face
    (``detection.hog_unenlarged_first``). A second face smaller than ~80 pixels beside a larger one then goes
    unseen in such a photograph (docs/model.md)."""
    workers: int = 0
    """Processes used for enrolment; 0 means one per CPU core (with ``ray_address``: Ray actors, 0 = one per CPU
    of the cluster)."""
    ray_address: str = ""
    """Run enrolment's face work as Ray actors on this cluster ("auto", "local", "host:port" or "ray://host:port";
    needs the ``ray`` extra); empty means local worker processes. Commits stay in the enrolling process."""
    precision: Literal["float32", "int8"] = "int8"
    """Arithmetic of the recognition network for gallery photographs (overrides ``embedding.precision`` when
    enrolling): int8 is ~3× faster per chip and changed no decision on the development pairs; probes keep
    ``embedding.precision`` (float32), so a search's own template is dlib's exactly (docs/model.md). Each template
    records which it was computed in."""
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
    exact re-rank against float32 templates read from the encrypted segments on disk (~160 B of RAM a face).  It is
    retrained whenever the gallery outgrows it (4·√n inverted lists rounded to a power of two: 1,024 at 50,000,
    2,048 from ~130,000, 4,096 from ~520,000, 8,192, the most, from ~2.1 million)."""
    nprobe: int = 256
    """Inverted lists scanned per search (of up to 8,192).  Measured at 10 million real-like templates: 256 finds
    the exact top 20 in 99.75% of mated searches (128: 95.5%) in ~13 ms; see docs/scaling.md."""
    rerank: int = 100
    """Candidates of the compressed pass re-scored exactly; the candidate list is the best k of them."""
    segment_templates: int = 262_144
    """Most templates in one segment file: an expungement rewrites the segments holding the removed templates."""
    retrain: Literal["quiet_hour", "after_enrolment", "on_command"] = "quiet_hour"
    """When an index that the gallery has outgrown (its inverted lists hold 4x the templates they were trained for,
    so searches slow down) is retrained, which takes minutes at millions of templates while searches go on:
    "quiet_hour", by the server in the hour ``quiet_hour``; "after_enrolment", at the end of the enrolment that
    outgrew it (which returns that much later); "on_command", only by ``facetrail index retrain``, which works
    whatever this is.  A rebuild of the index from the store always ends with one."""
    quiet_hour: int = 3
    """The hour of the server's local day (0-23) in which "quiet_hour" retrains outgrown indexes, once a day."""
    backend: Literal["faiss", "milvus"] = "faiss"
    """Where indexes live: "faiss" keeps each gallery's index in the memory of every process that searches it (with
    encrypted segment files under the data directory); "milvus" keeps every gallery's templates in one Milvus
    collection that all processes and machines share (see docs/scaling.md)."""
    milvus_uri: str = ""
    """The Milvus server, e.g. https://milvus.example.internal:19530 (plain http:// only to this machine); or a
    milvus-lite file such as milvus.db (relative to the data directory; one process at a time; for development)."""
    milvus_database: str = ""
    """The Milvus database holding the collections; empty means the server's default."""
    milvus_collection: str = "facetrail_templates"
    """The collection of templates; ``<name>_versions`` beside it records the gallery version each gallery is at."""
    milvus_index: Literal["IVF_SQ8", "IVF_FLAT", "HNSW", "FLAT"] = "IVF_SQ8"
    """Milvus's index on the templates; candidates are re-scored exactly against the float32 templates whatever it
    is. ``nprobe`` and ``rerank`` above apply to it."""
    milvus_nlist: int = 1024
    """Inverted lists per Milvus segment for the IVF indexes."""
    milvus_user: str = ""
    """Milvus user (RBAC) with its password below; or leave empty and give a token."""
    milvus_password: str = field(default="", repr=False)
    """The user's password; prefer ``milvus_password_env``."""
    milvus_password_env: str = ""
    """Name of an environment variable holding the password (the password then stays out of this file)."""
    milvus_token: str = field(default="", repr=False)
    """An API token (or "user:password"), instead of user and password; prefer ``milvus_token_env``."""
    milvus_token_env: str = ""
    """Name of an environment variable holding the token."""
    milvus_ca_file: str = ""
    """PEM file of the certificate authority that signed the server's TLS certificate (a private CA); empty means
    the system's trusted authorities."""

    def __post_init__(self) -> None:
        for name in ("compress_at", "nprobe", "rerank", "segment_templates", "milvus_nlist"):
            if getattr(self, name) < 1:
                raise ConfigError(f"index.{name}: must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.quiet_hour <= 23:
            raise ConfigError(f"index.quiet_hour: must be an hour from 0 to 23, got {self.quiet_hour}")
        if self.backend == "milvus" and not self.milvus_uri:
            raise ConfigError('index.milvus_uri: needed with index.backend = "milvus"')
        if self.milvus_uri:
            _check_milvus_uri(self.milvus_uri)
        for secret in ("password", "token"):
            if getattr(self, f"milvus_{secret}") and getattr(self, f"milvus_{secret}_env"):
                raise ConfigError(f"index.milvus_{secret} and index.milvus_{secret}_env: give one, not both")
        password = bool(self.milvus_password or self.milvus_password_env)
        token = bool(self.milvus_token or self.milvus_token_env)
        if token and (self.milvus_user or password):
            raise ConfigError("index.milvus_token: give a token or a user and password, not both")
        if password != bool(self.milvus_user):
            raise ConfigError("index.milvus_user and index.milvus_password: give both or neither")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,200}", self.milvus_collection):
            raise ConfigError(f"index.milvus_collection: use letters, digits and '_', not starting with a digit, got "
                              f"{self.milvus_collection!r}")

    def milvus_secret(self, name: Literal["password", "token"]) -> str:
        """The Milvus password or token, from this file or the environment variable named here; ConfigError naming
        the variable (never its value) when it is unset."""
        variable = getattr(self, f"milvus_{name}_env")
        if not variable:
            return getattr(self, f"milvus_{name}")
        value = os.environ.get(variable, "")
        if not value:
            raise ConfigError(f"index.milvus_{name}_env: the environment variable {variable} is not set")
        return value


def _check_milvus_uri(uri: str) -> None:
    """Refuse credentials inside the URI and plain http to another machine (templates would cross the network
    unencrypted)."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https", "tcp", "grpc"):
        if not uri.endswith(".db"):
            raise ConfigError(f"index.milvus_uri: expected http(s)://host:port or a milvus-lite file ending in .db, got {uri!r}")
        return
    if parts.username or parts.password:
        raise ConfigError("index.milvus_uri: put credentials in index.milvus_user/milvus_password or milvus_token, "
                          "not in the URI")
    if parts.scheme != "https" and parts.hostname not in ("localhost", "127.0.0.1", "::1"):
        raise ConfigError(f"index.milvus_uri: {parts.scheme}:// to {parts.hostname} would send templates unencrypted; "
                          "use https:// (Milvus with TLS)")


@dataclass(frozen=True)
class StoreConfig:
    """Where the metadata lives."""

    database_url: str = ""
    """SQLAlchemy URL, e.g. postgresql+psycopg://user@127.0.0.1:5432/facetrail; empty means SQLite in the data
    directory. The environment variable FACETRAIL_DATABASE_URL overrides it."""


@dataclass(frozen=True)
class AuditConfig:
    """How the audit trail signs checkpoints and where their witnesses are (see docs/audit.md)."""

    checkpoint_every: int = 100
    """A checkpoint (the trail's length and head hash, signed) is made at every entry whose number is a multiple
    of this."""
    checkpoint_minutes: float = 5.0
    """...and whenever the last checkpoint is older than this many minutes and entries were added since (checked
    on every append, and by the server once a minute when idle): what could be cut unnoticed is bounded in time
    as well as in count."""
    witness_dir: str = ""
    """The folder of the file witness, which keeps every signed checkpoint (``heads.jsonl``); relative to the data
    directory; empty means DATA/keys/witness. Put it on another volume or host (a mounted share the database
    administrator cannot write), never inside the database."""
    witness_urls: tuple[str, ...] = ()
    """Remote witnesses (``facetrail witness serve`` in another office) that each signed checkpoint is sent to."""

    def __post_init__(self) -> None:
        if self.checkpoint_every < 1:
            raise ConfigError(f"audit.checkpoint_every: must be at least 1, got {self.checkpoint_every}")
        if not self.checkpoint_minutes > 0:
            raise ConfigError(f"audit.checkpoint_minutes: must be more than 0, got {self.checkpoint_minutes}")
        for url in self.witness_urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError(f"audit.witness_urls: expected http(s)://host[:port]/..., got {url!r}")


@dataclass(frozen=True)
class ReportsConfig:
    """How reports for people outside the system (the lead report) show times."""

    time_zone: str = ""
    """The IANA time zone times are shown in, e.g. "America/Los_Angeles"; empty means the server's local zone."""

    def __post_init__(self) -> None:
        if self.time_zone:
            try:
                ZoneInfo(self.time_zone)
            except (ZoneInfoNotFoundError, ValueError):
                raise ConfigError(f"reports.time_zone: {self.time_zone!r} is not a known IANA time zone") from None

    def zone(self) -> dt.tzinfo:
        """The zone configured, else the server's local zone: TZ, /etc/localtime, or the current offset."""
        if self.time_zone:
            return ZoneInfo(self.time_zone)
        try:
            if os.environ.get("TZ"):
                return ZoneInfo(os.environ["TZ"].lstrip(":"))
            with open("/etc/localtime", "rb") as localtime:
                return ZoneInfo.from_file(localtime, key="localtime")
        except (OSError, ZoneInfoNotFoundError, ValueError):
            return dt.datetime.now().astimezone().tzinfo


MAX_CALIBRATION_PAIRS = 1_000_000_000
"""The most impostor pairs a gallery's calibration samples (12 bytes each while it is made: 12 GB at the most)."""


@dataclass(frozen=True)
class CalibrationConfig:
    """How a gallery's own calibration is made (``facetrail gallery calibrate``) and which pairs of its subjects
    are too close to be different people (listed by ``facetrail gallery duplicates``, left out of its calibration)."""

    pairs: int = 100_000_000
    """Impostor pairs sampled from the gallery (pairs of different subjects, one photograph each): 1e8 resolves
    false-match rates of 1e-7 with ten pairs behind them (fewer when the gallery has fewer pairs)."""
    duplicate_distance: float = 0.30
    """Two subjects whose photographs come this close are likely one person under two ids (aliases, re-bookings)."""
    seed: int = 0
    """Seed of the sampling, so a calibration can be repeated."""
    recalibrate_growth: float = 0.25
    """After an enrolment, a gallery is calibrated again from its subjects when it has grown by this fraction since
    its own calibration, or has none and holds ``recalibrate_from_subjects``; 0 turns this off."""
    recalibrate_from_subjects: int = 10_000
    """The size at which a gallery is first calibrated from its own subjects after an enrolment (below it, the
    model's calibration from labelled photographs usually rests on more pairs)."""

    def __post_init__(self) -> None:
        if not 1_000 <= self.pairs <= MAX_CALIBRATION_PAIRS:
            raise ConfigError(f"calibration.pairs: must be between 1,000 and {MAX_CALIBRATION_PAIRS:,}, got {self.pairs:,}")
        if self.recalibrate_growth < 0 or self.recalibrate_from_subjects < 2:
            raise ConfigError("calibration.recalibrate_growth must be 0 or more and calibration.recalibrate_from_subjects at least 2")
        if not 0 < self.duplicate_distance < 2:
            raise ConfigError(f"calibration.duplicate_distance: must be between 0 and 2, got {self.duplicate_distance}")


def local_time(moment: dt.datetime, zone: dt.tzinfo) -> str:
    """A moment (naive means UTC) as people read it: '5 December 2026, 09:14 PST (UTC-08:00)'."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)
    shown = aware.astimezone(zone)
    offset = shown.strftime("%z")
    return f"{shown.day} {shown:%B %Y, %H:%M} {shown.tzname()} (UTC{offset[:3]}:{offset[3:]})"


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
    audit: AuditConfig = field(default_factory=AuditConfig)
    reports: ReportsConfig = field(default_factory=ReportsConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)

    @property
    def engine(self) -> EngineConfig:
        """The sections the face engine uses (enrolment's limits)."""
        return EngineConfig(self.limits, self.detection, self.embedding, self.quality)

    @property
    def interactive_engine(self) -> EngineConfig:
        """The engine's sections for work a user waits for: images up to ``limits.max_interactive_pixels``."""
        limits = dataclasses.replace(self.limits, max_pixels=min(self.limits.max_pixels, self.limits.max_interactive_pixels))
        return EngineConfig(limits, self.detection, self.embedding, self.quality)


RETIRED_KEYS = {
    "detection.max_working_side": "detection.max_scanned_pixels bounds the copy HOG scans",
    "detection.max_upsampled_pixels": "detection.max_scanned_pixels bounds the copy HOG scans",
}
"""Keys earlier versions wrote into config.toml, with what replaced them; refused with that explanation."""


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
    retired = [_dotted(where, key) for key in unknown if _dotted(where, key) in RETIRED_KEYS]
    if retired:
        raise ConfigError("; ".join(f"{key}: no longer used ({RETIRED_KEYS[key]}); remove it" for key in retired))
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
