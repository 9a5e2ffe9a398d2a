"""Evaluation data: LFW-format pair lists, folder-per-identity photo sets, and group labels."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facetrail.errors import FacetrailError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".pgm", ".ppm"}


@dataclass(frozen=True)
class Pair:
    """Two photographs and whether they show the same person."""

    first: Path
    second: Path
    first_identity: str
    second_identity: str

    @property
    def same(self) -> bool:
        return self.first_identity == self.second_identity


def read_pairs(pairs_file: Path, images_dir: Path) -> list[Pair]:
    """Read an LFW ``pairs.txt``: a header line, then ``Name i j`` (same person) or ``Name1 i Name2 j`` (different).

    Files are ``images_dir/Name/Name_%04d.jpg``.
    """
    try:
        lines = pairs_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise FacetrailError(f"{pairs_file}: cannot read pairs file: {exc}") from exc
    pairs = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split()
        if not fields:
            continue
        try:
            if len(fields) == 3:
                name, i, j = fields[0], int(fields[1]), int(fields[2])
                pairs.append(Pair(_lfw_path(images_dir, name, i), _lfw_path(images_dir, name, j), name, name))
            elif len(fields) == 4:
                a, i, b, j = fields[0], int(fields[1]), fields[2], int(fields[3])
                pairs.append(Pair(_lfw_path(images_dir, a, i), _lfw_path(images_dir, b, j), a, b))
            else:
                raise ValueError(f"{len(fields)} fields")
        except ValueError as exc:
            raise FacetrailError(f"{pairs_file}:{number}: expected 'Name i j' or 'Name1 i Name2 j' ({exc})") from None
    if not pairs:
        raise FacetrailError(f"{pairs_file}: no pairs after the header line")
    return pairs


def _lfw_path(images_dir: Path, name: str, number: int) -> Path:
    return images_dir / name / f"{name}_{number:04d}.jpg"


def identity_folders(root: Path) -> dict[str, list[Path]]:
    """``{identity: [image paths, sorted]}`` for a folder with one subfolder of images per identity."""
    if not root.is_dir():
        raise FacetrailError(f"{root}: not a folder")
    identities = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if images:
            identities[folder.name] = images
    if not identities:
        raise FacetrailError(f"{root}: no identity subfolders with images")
    return identities


def images_under(root: Path) -> list[Path]:
    """Every image file below ``root`` (flat or nested), sorted."""
    if not root.is_dir():
        raise FacetrailError(f"{root}: not a folder")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_groups(path: Path) -> dict[str, str]:
    """Group label per identity from a CSV with columns ``identity`` and ``group``."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if not {"identity", "group"} <= set(reader.fieldnames or []):
                raise FacetrailError(f"{path}: needs columns 'identity' and 'group'")
            groups = {row["identity"].strip(): row["group"].strip() for row in reader if row["identity"].strip()}
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise FacetrailError(f"{path}: cannot read groups: {exc}") from exc
    if not groups:
        raise FacetrailError(f"{path}: no group labels")
    return groups


def identity_halves(identities: Mapping[str, list[Path]], seed: int = 0) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
    """Two random halves of the people (``seed``), each ``{identity: photographs}``; their sizes differ by at most one."""
    names = sorted(identities)
    side = np.random.default_rng(seed).permutation(len(names)) % 2
    first, second = ({names[k]: identities[names[k]] for k in np.flatnonzero(side == half)} for half in (0, 1))
    return first, second
