"""Photographs framed on their face at one scale: every face frame shows its face box at the same size, so a probe
and a candidate framed alike can be compared side by side (the web's pictures, the lead report)."""

from __future__ import annotations

import numpy as np
from PIL import Image

FACE_FRAME_SIDE = 320
"""Side, in pixels, of a photograph framed on its face."""
FACE_FRAME_SCALE = 2.0
"""A face frame is this many face-box widths across, centred on the box: the face with hair, ears and chin."""


def face_frame(pixels: np.ndarray, box: list[int], side: int = FACE_FRAME_SIDE, scale: float = FACE_FRAME_SCALE) -> np.ndarray:
    """The square of the photograph centred on the face box ``[x, y, w, h]``, ``scale`` box sides across, resized to
    ``side`` pixels (black where it reaches past the photograph's edge). Every face frame shows its face at the same
    size: the box is ``side / scale`` pixels wide in the middle of it."""
    x, y, w, h = box
    half = max(w, h) * scale / 2
    cx, cy = x + w / 2, y + h / 2
    square = tuple(round(v) for v in (cx - half, cy - half, cx + half, cy + half))
    framed = Image.fromarray(pixels).crop(square).resize((side, side), Image.Resampling.LANCZOS)
    return np.asarray(framed)


def face_frame_box(side: int = FACE_FRAME_SIDE, scale: float = FACE_FRAME_SCALE) -> list[int]:
    """Where the face box lies in a face frame, as ``[x, y, w, h]``."""
    width = round(side / scale)
    return [(side - width) // 2, (side - width) // 2, width, width]
