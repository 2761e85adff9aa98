"""Box geometry of the canvas's mouse and keyboard edits. Qt-free.

Coordinates are image pixels, boxes are (x1, y1, x2, y2) tuples with x1 < x2 and y1 < y2. A box
these functions return lies inside the image (0 <= x <= width, 0 <= y <= height) and, when drawn
or resized, is at least MIN_BOX_SIZE wide and high; a move keeps the size. Mouse and keyboard
offsets snap to whole pixels, as labelImg does and as VOC files hold them.

Handles are (column, row) pairs in {0, 1, 2}: column 0 is the left edge x1, 1 the middle (no
x edge), 2 the right edge x2; rows likewise for y1 / y2. (1, 1), the centre, is not a handle.
"""
from __future__ import annotations

Coords = tuple[float, float, float, float]

MIN_BOX_SIZE = 2.0
HANDLES = tuple((column, row) for row in range(3) for column in range(3) if (column, row) != (1, 1))


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def handle_points(coords: Coords) -> list[tuple[float, float]]:
    """The 8 handle positions of a box, in HANDLES order."""
    x1, y1, x2, y2 = coords
    xs, ys = (x1, (x1 + x2) / 2, x2), (y1, (y1 + y2) / 2, y2)
    return [(xs[column], ys[row]) for column, row in HANDLES]


def drawn_box(start: tuple[float, float], end: tuple[float, float], width: int, height: int) -> Coords | None:
    """The box spanned by a drag from `start` to `end` (any direction), clipped to the image and
    snapped to whole pixels; None when it is smaller than MIN_BOX_SIZE either way."""
    xa, xb = (round(_clamp(x, 0, width)) for x in (start[0], end[0]))
    ya, yb = (round(_clamp(y, 0, height)) for y in (start[1], end[1]))
    x1, y1, x2, y2 = min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb)
    if x2 - x1 < MIN_BOX_SIZE or y2 - y1 < MIN_BOX_SIZE:
        return None
    return float(x1), float(y1), float(x2), float(y2)


def moved_inside(coords: Coords, dx: float, dy: float, width: int, height: int) -> Coords:
    """The box shifted by (dx, dy) rounded to whole pixels, the shift shortened so that the box
    stays inside the image (a box larger than the image keeps its position on that axis)."""
    x1, y1, x2, y2 = coords
    dx = _clamp(round(dx), -x1, width - x2) if x2 - x1 <= width else 0
    dy = _clamp(round(dy), -y1, height - y2) if y2 - y1 <= height else 0
    return x1 + dx, y1 + dy, x2 + dx, y2 + dy


def resized(coords: Coords, handle: tuple[int, int], point: tuple[float, float], width: int, height: int) -> Coords:
    """The box with the edges named by `handle` moved to `point` (snapped to whole pixels),
    kept inside the image and at least MIN_BOX_SIZE from the opposite edge (edges never cross)."""
    x1, y1, x2, y2 = coords
    column, row = handle
    x, y = round(point[0]), round(point[1])
    if column == 0:
        x1 = _clamp(x, 0, x2 - MIN_BOX_SIZE)
    elif column == 2:
        x2 = _clamp(x, x1 + MIN_BOX_SIZE, width)
    if row == 0:
        y1 = _clamp(y, 0, y2 - MIN_BOX_SIZE)
    elif row == 2:
        y2 = _clamp(y, y1 + MIN_BOX_SIZE, height)
    return float(x1), float(y1), float(x2), float(y2)


def grown(coords: Coords, dx: float, dy: float, width: int, height: int) -> Coords:
    """The box with its right edge moved by dx and its bottom edge by dy (keyboard resize)."""
    _, _, x2, y2 = coords
    return resized(coords, (2, 2), (x2 + dx, y2 + dy), width, height)
