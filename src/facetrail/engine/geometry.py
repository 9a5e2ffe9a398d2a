"""Face boxes in image pixel coordinates."""

from __future__ import annotations

from dataclasses import dataclass

from facetrail.errors import FacetrailError

MAX_COORDINATE = 1_000_000
"""Largest x, y, width or height a hand-drawn box may give (no accepted image is that large)."""


@dataclass(frozen=True)
class Box:
    """An axis-aligned box: ``left``, ``top`` (pixels from the top-left corner), ``width``, ``height``."""

    left: float
    top: float
    width: float
    height: float

    @property
    def right(self) -> float:
        return self.left + self.width

    @property
    def bottom(self) -> float:
        return self.top + self.height

    @property
    def area(self) -> float:
        return self.width * self.height

    @property
    def centre(self) -> tuple[float, float]:
        return (self.left + self.width / 2, self.top + self.height / 2)

    def scaled(self, factor: float) -> Box:
        """The same box in an image resized by ``factor``."""
        return Box(self.left * factor, self.top * factor, self.width * factor, self.height * factor)

    def iou(self, other: Box) -> float:
        """Intersection over union with ``other`` (0 when disjoint)."""
        w = min(self.right, other.right) - max(self.left, other.left)
        h = min(self.bottom, other.bottom) - max(self.top, other.top)
        if w <= 0 or h <= 0:
            return 0.0
        inter = w * h
        return inter / (self.area + other.area - inter)

    def as_list(self) -> list[int]:
        """``[left, top, width, height]`` rounded to whole pixels, for records and JSON."""
        return [round(self.left), round(self.top), round(self.width), round(self.height)]

    @classmethod
    def parse(cls, text: str) -> Box:
        """Parse ``"x,y,w,h"`` (whole pixels) as given on the command line."""
        parts = text.split(",")
        try:
            x, y, w, h = (int(p.strip()) for p in parts)
        except ValueError:
            raise FacetrailError(f"face box {text!r}: expected four whole numbers x,y,w,h") from None
        if w <= 0 or h <= 0 or x < 0 or y < 0:
            raise FacetrailError(f"face box {text!r}: x and y must be >= 0, width and height > 0")
        if max(x, y, w, h) > MAX_COORDINATE:
            raise FacetrailError(f"face box {text[:80]!r}: each number must be at most {MAX_COORDINATE:,}")
        return cls(x, y, w, h)
