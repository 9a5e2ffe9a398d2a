"""Tests for facetrail.engine.decode: every image is made here, in memory or in tmp_path."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

from facetrail.config import DecodeLimits
from facetrail.engine import decode
from facetrail.engine.decode import ACCEPTED_FORMATS, DecodedImage, decode_image, read_image_bytes
from facetrail.errors import (
    CorruptImageError,
    EmptyImageError,
    ImageError,
    ImageTooLargeError,
    MultiFrameImageError,
    UnsupportedImageError,
)

# Pillow warns (rather than fails) about damaged TIFF tags and EXIF; in this file that is the expected noise
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)
QUADRANTS = (RED, GREEN, BLUE, WHITE)  # top-left, top-right, bottom-left, bottom-right


def quadrant_image(width: int = 64, height: int = 48) -> Image.Image:
    """An RGB image with four solid quadrants, big enough to survive lossy compression."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    h, w = height // 2, width // 2
    pixels[:h, :w], pixels[:h, w:], pixels[h:, :w], pixels[h:, w:] = QUADRANTS
    return Image.fromarray(pixels)


def encode(im: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def quadrant_centres(pixels: np.ndarray) -> list[tuple[int, ...]]:
    height, width = pixels.shape[:2]
    ys, xs = (height // 4, 3 * height // 4), (width // 4, 3 * width // 4)
    return [tuple(int(v) for v in pixels[y, x]) for y in ys for x in xs]


def assert_close(actual: tuple[int, ...], expected: tuple[int, ...], tolerance: int) -> None:
    assert max(abs(a - e) for a, e in zip(actual, expected, strict=True)) <= tolerance, (actual, expected)


def assert_rgb_array(pixels: np.ndarray, height: int, width: int) -> None:
    assert pixels.shape == (height, width, 3)
    assert pixels.dtype == np.uint8
    assert pixels.flags.c_contiguous


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_header_only(width: int, height: int) -> bytes:
    """A structurally valid PNG that claims width x height but holds one tiny IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + png_chunk(b"IEND", b"")
    )


def tiff_entry_offset(data: bytes, tag: int) -> int:
    """Byte offset of a tag's entry in the first IFD of a little-endian TIFF written by Pillow."""
    assert data[:2] == b"II"
    (ifd,) = struct.unpack_from("<I", data, 4)
    (count,) = struct.unpack_from("<H", data, ifd)
    for index in range(count):
        entry = ifd + 2 + 12 * index
        if struct.unpack_from("<H", data, entry)[0] == tag:
            return entry
    raise AssertionError(f"TIFF tag {tag} not found")


def assert_refused_before_allocation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any attempt to allocate an image's pixel buffer fail the test."""

    def refuse(self: ImageFile.ImageFile) -> None:
        raise AssertionError(f"pixel buffer of {self.size} was allocated")

    monkeypatch.setattr(ImageFile.ImageFile, "load_prepare", refuse)


def refuse_open(*args: object, **kwargs: object) -> None:
    """Stands in for ``open`` in the decode module where a file must not be opened."""
    raise AssertionError("the file was opened")


# --- normal images ------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "params", "name", "tolerance"),
    [
        ("JPEG", {"quality": 95}, "photo.jpg", 40),
        ("PNG", {}, "photo.png", 0),
        ("WEBP", {"quality": 90}, "photo.webp", 40),
        ("WEBP", {"lossless": True}, "lossless.webp", 0),
        ("TIFF", {}, "photo.tif", 0),
        ("TIFF", {"compression": "tiff_deflate"}, "deflate.tif", 0),
        ("TIFF", {"compression": "jpeg"}, "jpeg.tif", 40),
        ("BMP", {}, "photo.bmp", 0),
        ("PPM", {}, "photo.ppm", 0),
    ],
)
def test_colour_round_trip(tmp_path: Path, fmt: str, params: dict, name: str, tolerance: int) -> None:
    path = write(tmp_path, name, encode(quadrant_image(), fmt, **params))
    decoded = decode_image(read_image_bytes(path, DecodeLimits()))
    assert isinstance(decoded, DecodedImage)
    assert decoded.format == fmt
    assert decoded.mode == "RGB"
    assert_rgb_array(decoded.pixels, 48, 64)
    for actual, expected in zip(quadrant_centres(decoded.pixels), QUADRANTS, strict=True):
        assert_close(actual, expected, tolerance)


def test_accepted_formats_are_the_documented_ones() -> None:
    assert set(ACCEPTED_FORMATS) == {"JPEG", "PNG", "WEBP", "TIFF", "BMP", "PPM"}


def test_greyscale_pgm(tmp_path: Path) -> None:
    grey = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (10, 1))  # 10 x 64
    data = encode(Image.fromarray(grey), "PPM")
    assert data.startswith(b"P5")
    decoded = decode_image(read_image_bytes(write(tmp_path, "grey.pgm", data), DecodeLimits()))
    assert decoded.mode == "L"
    assert_rgb_array(decoded.pixels, 10, 64)
    assert np.array_equal(decoded.pixels, np.repeat(grey[:, :, None], 3, axis=2))


@pytest.mark.parametrize(("fmt", "name"), [("PPM", "dots.pbm"), ("PNG", "dots.png"), ("TIFF", "dots.tif")])
def test_one_bit_image(tmp_path: Path, fmt: str, name: str) -> None:
    bits = Image.new("1", (8, 4), 0)
    bits.putpixel((2, 1), 1)
    decoded = decode_image(write(tmp_path, name, encode(bits, fmt)).read_bytes())
    assert decoded.mode == "1"
    assert tuple(decoded.pixels[1, 2]) == WHITE
    assert tuple(decoded.pixels[0, 0]) == (0, 0, 0)


def test_palette_image() -> None:
    palette_image = quadrant_image().quantize(colors=4)
    decoded = decode_image(encode(palette_image, "PNG"))
    assert decoded.mode == "P"
    assert quadrant_centres(decoded.pixels) == list(QUADRANTS)


def test_mpo_decodes_its_primary_image() -> None:
    frames = [Image.new("RGB", (32, 32), colour) for colour in (RED, GREEN)]
    data = encode(frames[0], "MPO", save_all=True, append_images=frames[1:])
    decoded = decode_image(data)
    assert decoded.format == "MPO"
    assert_close(tuple(int(v) for v in decoded.pixels[16, 16]), RED, 10)


# --- colour conversions -------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk_red_patch_is_red(fmt: str) -> None:
    cmyk = Image.new("CMYK", (32, 32), (0, 255, 255, 0))
    decoded = decode_image(encode(cmyk, fmt))
    assert decoded.mode == "CMYK"
    assert_rgb_array(decoded.pixels, 32, 32)
    r, g, b = (int(v) for v in decoded.pixels[16, 16])
    assert r > 200 and g < 60 and b < 60, (r, g, b)


def gradient_16() -> np.ndarray:
    return np.tile(np.linspace(0, 65535, 512).round().astype(np.uint16), (4, 1))  # 4 x 512


def check_8_bit_gradient(pixels: np.ndarray) -> None:
    assert_rgb_array(pixels, 4, 512)
    row = pixels[0, :, 0].astype(int)
    assert (pixels == pixels[:, :, :1]).all(), "greyscale must give equal channels"
    assert row.min() == 0 and row.max() == 255
    assert (np.diff(row) >= 0).all(), "gradient must stay monotonic"
    assert abs(row[256] - 128) <= 1, "values must be scaled, not clipped"
    assert (row == 255).sum() <= 3, "values must be scaled, not clipped"


def test_16_bit_png_gradient_is_scaled() -> None:
    im = Image.fromarray(gradient_16())
    decoded = decode_image(encode(im, "PNG"))
    assert decoded.mode == "I;16"
    check_8_bit_gradient(decoded.pixels)


def test_16_bit_big_endian_tiff_gradient_is_scaled() -> None:
    im = Image.frombytes("I;16B", (512, 4), gradient_16().astype(">u2").tobytes())
    decoded = decode_image(encode(im, "TIFF"))
    assert decoded.mode == "I;16B"
    check_8_bit_gradient(decoded.pixels)


def test_16_bit_pgm_gradient_is_scaled() -> None:
    gradient = gradient_16()
    data = b"P5 512 4 65535\n" + gradient.astype(">u2").tobytes()
    decoded = decode_image(data)
    assert decoded.mode == "I"
    check_8_bit_gradient(decoded.pixels)


def test_16_bit_png_transparency_becomes_white() -> None:
    values = np.full((4, 4), 1000, dtype=np.uint16)
    values[0, 0] = 0
    decoded = decode_image(encode(Image.fromarray(values), "PNG", transparency=0))
    assert tuple(decoded.pixels[0, 0]) == WHITE
    assert tuple(decoded.pixels[1, 1]) == (4, 4, 4)


def test_float_tiff_is_scaled_from_min_to_max() -> None:
    values = np.tile(np.linspace(-3.0, 5.0, 64, dtype=np.float32), (2, 1))
    decoded = decode_image(encode(Image.fromarray(values), "TIFF"))
    assert decoded.mode == "F"
    row = decoded.pixels[0, :, 0].astype(int)
    assert row.min() == 0 and row.max() == 255
    assert (np.diff(row) >= 0).all()


def test_float_tiff_with_nan_is_refused() -> None:
    values = np.zeros((4, 4), dtype=np.float32)
    values[1, 1] = np.nan
    with pytest.raises(UnsupportedImageError, match="NaN"):
        decode_image(encode(Image.fromarray(values), "TIFF"))


def test_32_bit_integer_tiff_beyond_16_bits_is_stretched() -> None:
    values = np.tile(np.linspace(-100_000, 1_000_000, 64).astype(np.int32), (2, 1))
    decoded = decode_image(encode(Image.fromarray(values), "TIFF"))
    assert decoded.mode == "I"
    row = decoded.pixels[0, :, 0].astype(int)
    assert row.min() == 0 and row.max() == 255
    assert (np.diff(row) >= 0).all()


def test_rgba_is_composited_on_white() -> None:
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[0, 0] = (0, 0, 0, 0)  # fully transparent black
    rgba[0, 1] = (255, 0, 0, 255)  # opaque red
    rgba[0, 2] = (255, 0, 0, 128)  # half-transparent red
    for fmt in ("PNG", "TIFF", "WEBP"):
        params = {"lossless": True, "exact": True} if fmt == "WEBP" else {}
        decoded = decode_image(encode(Image.fromarray(rgba), fmt, **params))
        assert decoded.mode == "RGBA"
        assert tuple(decoded.pixels[0, 0]) == WHITE, fmt
        assert tuple(decoded.pixels[0, 1]) == RED, fmt
        assert_close(tuple(int(v) for v in decoded.pixels[0, 2]), (255, 127, 127), 1)


def test_la_is_composited_on_white() -> None:
    la = Image.new("LA", (4, 4), (0, 255))
    la.putpixel((3, 3), (0, 0))
    decoded = decode_image(encode(la, "PNG"))
    assert decoded.mode == "LA"
    assert tuple(decoded.pixels[3, 3]) == WHITE
    assert tuple(decoded.pixels[0, 0]) == (0, 0, 0)


def test_premultiplied_la_tiff_is_composited_on_white() -> None:
    la = Image.new("LA", (4, 4), (0, 255))
    la.putpixel((3, 3), (0, 0))
    data = bytearray(encode(la, "TIFF"))
    extra_samples = tiff_entry_offset(data, 338)
    struct.pack_into("<H", data, extra_samples + 8, 1)  # 1: associated (premultiplied) alpha
    decoded = decode_image(bytes(data))
    assert decoded.mode == "La"
    assert tuple(decoded.pixels[3, 3]) == WHITE
    assert tuple(decoded.pixels[0, 0]) == (0, 0, 0)


def test_palette_transparency_becomes_white() -> None:
    palette_image = Image.new("P", (4, 4), 0)
    palette_image.putpalette([0, 0, 0, 255, 0, 0])  # index 0 black, index 1 red
    palette_image.putpixel((1, 1), 1)
    decoded = decode_image(encode(palette_image, "PNG", transparency=0))
    assert decoded.mode == "P"
    assert tuple(decoded.pixels[0, 0]) == WHITE
    assert tuple(decoded.pixels[1, 1]) == RED


# --- orientation --------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_exif_orientation_6_is_turned_upright(fmt: str) -> None:
    stored = np.zeros((20, 40, 3), dtype=np.uint8)  # stored 40 wide, 20 tall
    stored[:8, :8] = RED  # mark the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    decoded = decode_image(encode(Image.fromarray(stored), fmt, exif=exif.tobytes(), quality=95))
    assert_rgb_array(decoded.pixels, 40, 20)  # dimensions swapped
    # Turned clockwise, the stored top-left corner is shown at the top right.
    assert_close(tuple(int(v) for v in decoded.pixels[2, 17]), RED, 40)
    assert_close(tuple(int(v) for v in decoded.pixels[2, 2]), (0, 0, 0), 40)
    assert_close(tuple(int(v) for v in decoded.pixels[37, 17]), (0, 0, 0), 40)


# --- damaged data -------------------------------------------------------------


def test_jpeg_cut_in_half_is_corrupt(tmp_path: Path) -> None:
    data = encode(quadrant_image(256, 256), "JPEG")
    path = write(tmp_path, "half.jpg", data[: len(data) // 2])
    expected = "JPEG image data is damaged or truncated: image file is truncated"
    with pytest.raises(CorruptImageError, match=expected):
        decode_image(read_image_bytes(path, DecodeLimits()))


def test_jpeg_missing_its_last_byte_is_corrupt() -> None:
    data = encode(quadrant_image(), "JPEG")
    with pytest.raises(CorruptImageError):
        decode_image(data[:-1])


@pytest.mark.parametrize(
    ("fmt", "params"),
    [
        ("PNG", {}),
        ("WEBP", {}),
        ("TIFF", {}),
        ("TIFF", {"compression": "tiff_lzw"}),
        ("BMP", {}),
        ("PPM", {}),
    ],
)
def test_other_formats_cut_in_half_are_corrupt(fmt: str, params: dict) -> None:
    rng = np.random.default_rng(1)
    noise = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    data = encode(noise, fmt, **params)
    with pytest.raises(CorruptImageError):
        decode_image(data[: len(data) // 2])


def test_png_without_iend_is_corrupt() -> None:
    data = encode(quadrant_image(), "PNG")
    assert data.endswith(png_chunk(b"IEND", b""))
    with pytest.raises(CorruptImageError, match="IEND"):
        decode_image(data[:-12])


def test_png_cut_inside_a_chunk_is_corrupt() -> None:
    data = encode(quadrant_image(), "PNG")
    idat = data.index(b"IDAT")
    with pytest.raises(CorruptImageError, match="'IDAT' chunk at byte .* runs past the end"):
        decode_image(data[: idat + 10])


def test_png_with_damaged_image_data_crc_is_corrupt() -> None:
    data = bytearray(encode(quadrant_image(), "PNG"))
    idat = data.index(b"IDAT")
    (length,) = struct.unpack_from(">I", data, idat - 4)
    data[idat + 4 + length] ^= 0xFF  # first byte of the IDAT CRC
    with pytest.raises(CorruptImageError, match="CRC"):
        decode_image(bytes(data))


def test_tiff_with_dangling_next_frame_pointer_is_corrupt() -> None:
    data = bytearray(encode(quadrant_image(), "TIFF"))
    (ifd,) = struct.unpack_from("<I", data, 4)
    (count,) = struct.unpack_from("<H", data, ifd)
    struct.pack_into("<I", data, ifd + 2 + 12 * count, len(data) + 100)  # next IFD beyond the end
    with pytest.raises(CorruptImageError, match="frame structure is damaged"):
        decode_image(bytes(data))


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_garbage_exif_is_corrupt(fmt: str) -> None:
    data = encode(quadrant_image(), fmt, exif=b"Exif\x00\x00garbage, not a TIFF header")
    with pytest.raises(CorruptImageError, match="EXIF metadata is damaged"):
        decode_image(data)


def test_jpeg_header_cut_short_is_corrupt_not_unsupported() -> None:
    data = encode(quadrant_image(), "JPEG")
    with pytest.raises(CorruptImageError, match="JPEG"):
        decode_image(data[:40])


# --- not images, or not accepted ----------------------------------------------


def test_empty_bytes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(EmptyImageError):
        decode_image(b"")
    with pytest.raises(EmptyImageError):
        read_image_bytes(write(tmp_path, "empty.jpg", b""), DecodeLimits())


def test_text_file_named_jpg_is_unsupported(tmp_path: Path) -> None:
    path = write(tmp_path, "notes.jpg", b"Suspect seen near the station at 21:40.\n")
    with pytest.raises(UnsupportedImageError, match="not a recognised image"):
        decode_image(read_image_bytes(path, DecodeLimits()))


@pytest.mark.parametrize(
    "data",
    [
        b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n",
        b"<!DOCTYPE html><html><body><img src=x></body></html>",
        bytes(range(256)) * 4,
    ],
    ids=["pdf", "html", "binary"],
)
def test_non_images_are_unsupported(data: bytes) -> None:
    with pytest.raises(UnsupportedImageError, match="not a recognised image"):
        decode_image(data)


def test_gif_is_unsupported_and_named() -> None:
    frames = [Image.new("RGB", (16, 16), colour) for colour in (RED, GREEN, BLUE)]
    for data in (
        encode(frames[0], "GIF"),
        encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0),
    ):
        with pytest.raises(UnsupportedImageError, match="GIF is not an accepted format") as caught:
            decode_image(data)
        assert not isinstance(caught.value, MultiFrameImageError)


@pytest.mark.parametrize("fmt", ["WEBP", "TIFF", "PNG"])
def test_multi_frame_images_are_refused(fmt: str) -> None:
    frames = [Image.new("RGB", (16, 16), colour) for colour in (RED, GREEN, BLUE)]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:])
    with pytest.raises(MultiFrameImageError, match="has 3 frames; submit a single still image"):
        decode_image(data)


# --- size limits --------------------------------------------------------------


def test_huge_png_header_is_refused_without_allocating(monkeypatch: pytest.MonkeyPatch) -> None:
    assert_refused_before_allocation(monkeypatch)
    with pytest.raises(ImageTooLargeError):
        decode_image(png_header_only(30000, 30000))


def test_own_pixel_limit_applies_when_pillow_has_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # undone after the test
    assert_refused_before_allocation(monkeypatch)
    expected = "30000x30000 = 900,000,000 pixels; the limit is 80,000,000"
    with pytest.raises(ImageTooLargeError, match=expected):
        decode_image(png_header_only(30000, 30000))


def test_pixel_limit_from_decode_limits() -> None:
    data = encode(quadrant_image(20, 20), "PNG")
    assert decode_image(data, DecodeLimits(max_pixels=400)).pixels.shape == (20, 20, 3)
    with pytest.raises(ImageTooLargeError, match="20x20"):
        decode_image(data, DecodeLimits(max_pixels=399))


def test_pillow_decompression_bomb_warning_and_error_are_too_large(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)  # undone after the test
    generous = DecodeLimits(max_pixels=10**6)
    with pytest.raises(ImageTooLargeError):  # 400 pixels: Pillow only warns
        decode_image(encode(quadrant_image(20, 20), "PNG"), generous)
    with pytest.raises(ImageTooLargeError):  # 900 pixels: Pillow raises
        decode_image(encode(quadrant_image(30, 30), "PNG"), generous)


def test_decoding_leaves_pillow_globals_alone() -> None:
    before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    decode_image(encode(quadrant_image(), "PNG"))
    with pytest.raises(ImageTooLargeError):
        decode_image(png_header_only(30000, 30000))
    assert (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES) == before


def test_refuses_to_run_with_truncated_images_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(RuntimeError, match="LOAD_TRUNCATED_IMAGES"):
        decode_image(encode(quadrant_image(), "JPEG"))


def test_byte_limit_in_decode_image() -> None:
    data = encode(quadrant_image(), "PNG")
    assert decode_image(data, DecodeLimits(max_bytes=len(data))).format == "PNG"
    with pytest.raises(ImageTooLargeError, match="bytes"):
        decode_image(data, DecodeLimits(max_bytes=len(data) - 1))


def test_file_over_byte_limit_is_refused_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "big.jpg"
    with path.open("wb") as fh:
        fh.truncate(1001)  # sparse: nothing written
    limits = DecodeLimits(max_bytes=1000)
    monkeypatch.setattr(decode, "open", refuse_open, raising=False)
    with pytest.raises(ImageTooLargeError, match="1,001 bytes"):
        read_image_bytes(path, limits)


def test_file_that_grows_after_its_size_check_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = write(tmp_path, "small.png", b"x" * 10)
    grown = write(tmp_path, "grown.png", b"x" * 2000)
    real_stat = os.stat
    with monkeypatch.context() as patch:
        patch.setattr(os, "stat", lambda path, *args, **kwargs: real_stat(small))  # size checked while small
        with pytest.raises(ImageTooLargeError, match="grew past the limit of 1,000 bytes"):
            read_image_bytes(grown, DecodeLimits(max_bytes=1000))


def test_file_at_byte_limit_is_read_whole(tmp_path: Path) -> None:
    data = encode(quadrant_image(), "PNG")
    path = write(tmp_path, "exact.png", data)
    assert read_image_bytes(path, DecodeLimits(max_bytes=len(data))) == data


# --- file errors ----------------------------------------------------------------


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.jpg"
    with pytest.raises(ImageError, match="nowhere.jpg"):
        read_image_bytes(path, DecodeLimits())


def test_directory_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=f"{tmp_path.name}: is a directory"):
        read_image_bytes(tmp_path, DecodeLimits())


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_named_pipe_is_refused_without_blocking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pipe = tmp_path / "pipe.jpg"
    os.mkfifo(pipe)
    monkeypatch.setattr(decode, "open", refuse_open, raising=False)  # opening a pipe to read would block
    with pytest.raises(ImageError, match="pipe.jpg: not a regular file"):
        read_image_bytes(pipe, DecodeLimits())


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can read any file")
def test_unreadable_file_names_the_path(tmp_path: Path) -> None:
    path = write(tmp_path, "locked.jpg", encode(quadrant_image(), "JPEG"))
    path.chmod(0)
    with pytest.raises(ImageError, match="locked.jpg"):
        read_image_bytes(path, DecodeLimits())


# --- hostile input ----------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_random_bytes_raise_only_image_errors(data: bytes) -> None:
    try:
        decoded = decode_image(data)
    except ImageError:
        return
    assert_rgb_array(decoded.pixels, *decoded.pixels.shape[:2])


SMALL_IMAGES = {
    fmt: encode(quadrant_image(16, 12), fmt)
    for fmt in ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "PPM")
}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(sorted(SMALL_IMAGES)),
    st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=1, max_value=255)), max_size=8),
    st.none() | st.integers(min_value=1),
)
def test_damaged_real_images_raise_only_image_errors(
    fmt: str, flips: list[tuple[int, int]], keep: int | None
) -> None:
    data = bytearray(SMALL_IMAGES[fmt])
    for position, mask in flips:
        data[position % len(data)] ^= mask
    if keep is not None:
        del data[1 + keep % len(data) :]
    try:
        decoded = decode_image(bytes(data))
    except ImageError:
        return
    assert_rgb_array(decoded.pixels, *decoded.pixels.shape[:2])
