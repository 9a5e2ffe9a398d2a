"""Safe decoding of untrusted image files into upright 8-bit RGB pixels.

Evidence photos arrive from outside, so every file is treated as hostile:
sizes are checked before anything is read or allocated, only a few formats are
opened at all, the whole image is decoded so that damage shows up here, and
damaged data is refused rather than padded (Pillow's global
``LOAD_TRUNCATED_IMAGES`` and ``MAX_IMAGE_PIXELS`` are left alone).
"""

from __future__ import annotations

import io
import os
import stat
import struct
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from facetrail.config import DecodeLimits
from facetrail.errors import (
    CorruptImageError,
    EmptyImageError,
    ImageError,
    ImageTooLargeError,
    MultiFrameImageError,
    UnsupportedImageError,
)

ACCEPTED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "PPM")
"""Pillow format names that are opened; ``PPM`` covers PBM, PGM and PPM."""

# What Pillow raises on damaged data while parsing or decoding.
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    struct.error,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    ArithmeticError,
)

# Modes with more than 8 bits per sample; Pillow's own conversion clips them.
_HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True, eq=False)
class DecodedImage:
    """A decoded image: upright RGB pixels and what they were decoded from."""

    pixels: np.ndarray
    """H x W x 3, uint8, RGB, C-contiguous, after EXIF orientation."""
    format: str
    """Pillow format name, e.g. "JPEG" ("MPO" for a JPEG that carries extra MPF images)."""
    mode: str
    """The source's Pillow mode before conversion, e.g. "CMYK", "I;16", "P"."""


def read_image_bytes(path: str | os.PathLike, limits: DecodeLimits) -> bytes:
    """Read an image file whole, refusing it before reading if it exceeds ``limits.max_bytes``."""
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            raise ImageError(f"{os.fspath(path)}: is a directory, not an image file")
        if not stat.S_ISREG(info.st_mode):
            raise ImageError(f"{os.fspath(path)}: not a regular file")
        if info.st_size > limits.max_bytes:
            raise ImageTooLargeError(
                f"{os.fspath(path)}: file is {info.st_size:,} bytes; the limit is {limits.max_bytes:,}"
            )
        with open(path, "rb") as fh:
            data = fh.read(limits.max_bytes + 1)
    except OSError as exc:
        raise ImageError(f"{os.fspath(path)}: cannot read: {exc.strerror or exc}") from exc
    if len(data) > limits.max_bytes:
        raise ImageTooLargeError(f"{os.fspath(path)}: file grew past the limit of {limits.max_bytes:,} bytes")
    if not data:
        raise EmptyImageError(f"{os.fspath(path)}: file is empty")
    return data


def check_size(data: bytes, limits: DecodeLimits) -> bytes:
    """``data``, unless it is empty (EmptyImageError) or over ``limits.max_bytes`` (ImageTooLargeError)."""
    if not data:
        raise EmptyImageError("the image has no bytes")
    if len(data) > limits.max_bytes:
        raise ImageTooLargeError(f"the image is {len(data):,} bytes; the limit is {limits.max_bytes:,}")
    return data


def decode_image(data: bytes, limits: DecodeLimits = DecodeLimits()) -> DecodedImage:
    """Decode image bytes into upright 8-bit RGB pixels, or raise an ``ImageError`` subclass."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise RuntimeError(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set in this process; truncated images would be accepted"
        )
    check_size(data, limits)
    # Pillow's own bomb limit (Image.MAX_IMAGE_PIXELS) still applies when it is lower than ours.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with _open(data) as im:
                return _decode_opened(im, data, limits)
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            raise ImageTooLargeError(f"the image exceeds Pillow's decompression-bomb limit: {exc}") from exc


def _open(data: bytes) -> ImageFile.ImageFile:
    """Parse the header with Pillow, restricted to the accepted formats."""
    try:
        return Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except UnidentifiedImageError as exc:
        problem = "its header cannot be read (damaged, truncated or an unsupported variant)"
        raise _refusal(data, problem) from exc
    except _DECODE_ERRORS as exc:
        raise _refusal(data, f"its header is damaged or truncated: {exc}") from exc


def _refusal(data: bytes, problem: str) -> ImageError:
    """Say what bytes Pillow would not open look like, from the formats' signature checks only."""
    Image.init()
    prefix = data[:16]
    accepted = [name for name in ACCEPTED_FORMATS if _matches(Image.OPEN[name][1], prefix)]
    if accepted:
        return CorruptImageError(f"the data starts like a {accepted[0]} image but {problem}")
    listed = ", ".join(ACCEPTED_FORMATS)
    others = [name for name, (_, accept) in Image.OPEN.items() if _matches(accept, prefix)]
    if others:
        return UnsupportedImageError(f"{others[0]} is not an accepted format (accepted: {listed})")
    return UnsupportedImageError(f"not a recognised image (accepted formats: {listed})")


def _matches(accept: Callable[[bytes], bool | str] | None, prefix: bytes) -> bool:
    """Apply one Pillow format's signature check; some index short prefixes and raise."""
    try:
        return accept is not None and bool(accept(prefix))
    except _DECODE_ERRORS:
        return False


def _decode_opened(im: ImageFile.ImageFile, data: bytes, limits: DecodeLimits) -> DecodedImage:
    """Check an opened image's header against the limits, then decode it fully."""
    width, height = im.size
    if width * height > limits.max_pixels:
        raise ImageTooLargeError(
            f"the {im.format} image is {width}x{height} = {width * height:,} pixels; "
            f"the limit is {limits.max_pixels:,}"
        )
    try:
        frames = getattr(im, "n_frames", 1)
    except _DECODE_ERRORS as exc:
        raise CorruptImageError(f"the {im.format} frame structure is damaged: {exc}") from exc
    # An MPO is a JPEG whose extra images (previews, depth or gain maps) follow the primary one.
    if frames > 1 and im.format != "MPO":
        raise MultiFrameImageError(f"the {im.format} image has {frames} frames; submit a single still image")
    if im.format == "PNG":
        _check_png_chunks(data)
    try:
        im.load()
    except _DECODE_ERRORS as exc:
        raise CorruptImageError(f"the {im.format} image data is damaged or truncated: {exc}") from exc
    try:
        ImageOps.exif_transpose(im, in_place=True)
    except _DECODE_ERRORS as exc:
        raise CorruptImageError(f"the {im.format} image's EXIF metadata is damaged: {exc}") from exc
    return DecodedImage(pixels=_to_rgb(im), format=im.format, mode=im.mode)


def _check_png_chunks(data: bytes) -> None:
    """Verify every PNG chunk's CRC up to IEND; Pillow skips the CRCs of the image data."""
    view = memoryview(data)
    pos = len(_PNG_SIGNATURE)
    while True:
        if pos + 12 > len(data):
            raise CorruptImageError("the PNG data ends before its IEND chunk (file truncated)")
        length, kind = struct.unpack_from(">I4s", data, pos)
        chunk = f"the PNG {kind.decode('latin-1')!r} chunk at byte {pos}"
        end = pos + 8 + length
        if end + 4 > len(data):
            raise CorruptImageError(f"{chunk} runs past the end of the data (file truncated)")
        if zlib.crc32(view[pos + 4 : end]) != struct.unpack_from(">I", data, end)[0]:
            raise CorruptImageError(f"{chunk} fails its CRC check (data damaged)")
        if kind == b"IEND":
            return
        pos = end + 4


def _to_rgb(im: Image.Image) -> np.ndarray:
    """Convert a decoded image to an H x W x 3 uint8 RGB array; transparency becomes white."""
    if im.mode in _HIGH_DEPTH_MODES:
        return np.repeat(_grey_to_uint8(im)[:, :, np.newaxis], 3, axis=2)
    if im.mode == "La":  # premultiplied alpha (TIFF); Pillow converts it only to LA
        im = im.convert("LA")
    if im.has_transparency_data:
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im.convert("RGBA"))
    return np.array(im.convert("RGB"), dtype=np.uint8)


def _grey_to_uint8(im: Image.Image) -> np.ndarray:
    """Scale a 16-bit, 32-bit integer or float greyscale image to 0..255 without clipping."""
    values = np.asarray(im)
    if im.mode == "F" and not np.isfinite(values).all():
        raise UnsupportedImageError("the floating-point image contains NaN or infinite values")
    low, high = values.min().item(), values.max().item()
    if im.mode != "F" and low >= 0 and high <= 65535:
        grey = ((values.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    else:
        # Floats and integers outside 16 bits have no nominal range: stretch min..max.
        scale = 255.0 / (high - low) if high > low else 0.0
        grey = np.rint((values.astype(np.float64) - low) * scale).astype(np.uint8)
    transparent = im.info.get("transparency")
    if im.mode != "F" and isinstance(transparent, int):
        grey[values == transparent] = 255
    return grey
