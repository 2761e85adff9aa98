"""The annotation value types of the application (Qt-free): boxes, detections, image entries."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from frcnn_core.data.samples import BACKGROUND


@dataclass(frozen=True)
class Box:
    """One ground-truth box: corners in image pixels, a class name, VOC's difficult flag."""

    x1: float
    y1: float
    x2: float
    y2: float
    label: str
    difficult: bool = False

    @property
    def coords(self) -> tuple[float, float, float, float]:
        return self.x1, self.y1, self.x2, self.y2

    @property
    def area(self) -> float:
        return abs(self.x2 - self.x1) * abs(self.y2 - self.y1)

    def normalized(self) -> Box:
        """The same box with x1 <= x2 and y1 <= y2."""
        return replace(self, x1=min(self.x1, self.x2), y1=min(self.y1, self.y2),
                       x2=max(self.x1, self.x2), y2=max(self.y1, self.y2))

    def moved(self, dx: float, dy: float) -> Box:
        return replace(self, x1=self.x1 + dx, y1=self.y1 + dy, x2=self.x2 + dx, y2=self.y2 + dy)

    def whole_pixels(self) -> Box:
        """Each corner rounded to the nearest whole pixel, halves up (VOC files hold integers)."""
        return replace(self, **{name: float(math.floor(value + 0.5)) if math.isfinite(value) else value
                                for name, value in zip(("x1", "y1", "x2", "y2"), self.coords, strict=True)})

    def clipped(self, width: float, height: float) -> Box:
        """Each x clamped to [0, width], each y to [0, height]."""
        def clamp(value: float, limit: float) -> float:
            return min(max(value, 0.0), float(limit))
        return replace(self, x1=clamp(self.x1, width), y1=clamp(self.y1, height),
                       x2=clamp(self.x2, width), y2=clamp(self.y2, height))


@dataclass(frozen=True)
class Detection:
    """One model output for the current image: box (x1, y1, x2, y2) pixels, score, class name."""

    box: tuple[float, float, float, float]
    score: float
    label: str


@dataclass
class ImageEntry:
    """One image of the folder. status: "none" (no annotation file), "annotated", "verified", or
    "error" (unreadable image or malformed annotation; `error` holds the one-line message)."""

    path: Path
    annotation_path: Path
    status: str
    error: str | None = None


def is_class_name(name: object) -> bool:
    """One line of printable text without outer spaces, not the background's name: what
    classes.txt and VOC's <name> keep exactly."""
    return isinstance(name, str) and bool(name) and name == name.strip() and name.isprintable() and name != BACKGROUND


def check_class_name(name: str) -> str:
    """`name` when it can be a class (is_class_name); else ValueError."""
    if not is_class_name(name):
        raise ValueError(f"invalid class name {name!r}: one line of printable text without outer spaces, "
                         f"not {BACKGROUND!r}")
    return name


def fit_box(box: Box, width: int, height: int) -> Box:
    """`box` normalized, clipped to the image, rounded to float32; ValueError when a coordinate
    is NaN or infinite, nothing of the box lies inside the image, or its class name is invalid."""
    if not all(math.isfinite(value) for value in box.coords):
        raise ValueError(f"box {box.coords} has a coordinate that is not a finite number")
    clipped = box.normalized().clipped(width, height)
    exact = Box(*(float(np.float32(value)) for value in clipped.coords), check_class_name(box.label),
                bool(box.difficult))
    if not (exact.x1 < exact.x2 and exact.y1 < exact.y2):
        raise ValueError(f"box {box.coords} has no area inside the {width}x{height} image")
    return exact
