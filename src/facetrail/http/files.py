"""Uploads in; images and the audit export out."""

from __future__ import annotations

import io
import shutil
import tempfile
from pathlib import Path, PurePosixPath

import numpy as np
from fastapi import Response, UploadFile
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask
from PIL import Image, ImageDraw

from facetrail.accountability.service import Actor, Facetrail
from facetrail.engine.framing import FACE_FRAME_SIDE, face_frame, face_frame_box  # noqa: F401 (the web frames faces)

IMAGE_SIGNATURES = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"BM", "image/bmp"),
)
IMAGE_RESPONSE = {200: {"content": {"image/*": {"schema": {"type": "string", "format": "binary"}}},
                        "description": "The image's bytes, as stored"}}


def read_upload(upload: UploadFile) -> bytes:
    """An uploaded file's bytes (the request body limit bounds their size)."""
    return upload.file.read()


def upload_name(upload: UploadFile, fallback: str) -> str:
    """The uploaded file's name without any folder part, or ``fallback`` when it has none or an unusable one."""
    name = PurePosixPath((upload.filename or "").replace("\\", "/")).name
    usable = name not in ("", ".", "..") and len(name.encode()) <= 200 and name.isprintable()
    return name if usable else fallback


def image_response(data: bytes) -> Response:
    """Image bytes with the media type their signature shows."""
    media_type = next((kind for signature, kind in IMAGE_SIGNATURES if data.startswith(signature)), None)
    if media_type is None:
        media_type = "image/webp" if data[:4] == b"RIFF" and data[8:12] == b"WEBP" else "application/octet-stream"
    return Response(data, media_type=media_type)


def picture_bytes(pixels: np.ndarray, image_format: str = "JPEG", max_side: int | None = None,
                  outline: list[int] | None = None) -> bytes:
    """Decoded pixels re-encoded for a browser (which cannot show every format facetrail reads): JPEG for
    photographs, PNG for exact chips; shrunk to fit ``max_side``, with the face box ``outline`` ([x, y, w, h] in the
    pixels' coordinates) drawn on."""
    image = Image.fromarray(pixels)
    if outline is not None:
        x, y, w, h = outline
        width = max(2, round(max(image.size) / 250))
        ImageDraw.Draw(image).rectangle([x, y, x + w, y + h], outline=(255, 214, 0), width=width)
    if max_side and max(image.size) > max_side:
        image.thumbnail((max_side, max_side))
    out = io.BytesIO()
    image.save(out, format=image_format, **({"quality": 90} if image_format == "JPEG" else {}))
    return out.getvalue()


def export_response(system: Facetrail, actor: Actor) -> FileResponse:
    """The audit export (``Facetrail.export_audit``) as a zip download; its scratch folder is removed once sent. Used
    by the API and by the audit trail page."""
    scratch = Path(tempfile.mkdtemp(prefix="facetrail-audit-"))
    try:
        folder = system.oversight.export_audit(actor, scratch / "audit-export")
        archive = shutil.make_archive(str(scratch / "audit-export"), "zip", root_dir=folder)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return FileResponse(archive, media_type="application/zip", filename="facetrail-audit-export.zip",
                        background=BackgroundTask(shutil.rmtree, scratch, ignore_errors=True))
