"""What journeys do with the window: keys, mouse drags and clicks on the canvas viewport, and
reading back what the canvas shows."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QImage

from frcnn_gui.main_window import AUTOSAVE_DELAY_MS


def press(qtbot, window, key, modifiers=Qt.NoModifier) -> None:
    """A key press as the user makes it: to the focused widget, or the window."""
    qtbot.keyClick(window.focusWidget() or window, key, modifiers)


def at(window, x: float, y: float) -> QPoint:
    """The canvas viewport pixel that shows image point (x, y)."""
    point = window.canvas.viewportTransform().map(QPointF(x, y))
    return QPoint(round(point.x()), round(point.y()))


def drag(qtbot, window, start: tuple[float, float], end: tuple[float, float], steps: int = 4,
         modifiers=Qt.NoModifier) -> None:
    """A left-button drag on the canvas viewport between two image points."""
    viewport = window.canvas.viewport()
    begin, finish = at(window, *start), at(window, *end)
    qtbot.mousePress(viewport, Qt.LeftButton, modifiers, begin)
    for step in range(1, steps + 1):
        qtbot.mouseMove(viewport, begin + (finish - begin) * (step / steps))
    qtbot.mouseRelease(viewport, Qt.LeftButton, modifiers, finish)


def click(qtbot, window, x: float, y: float, button=Qt.LeftButton, modifiers=Qt.NoModifier) -> None:
    qtbot.mouseClick(window.canvas.viewport(), button, modifiers, at(window, x, y))


def canvas_pixels(window) -> np.ndarray:
    """What the canvas shows now: the viewport rendered, (H, W, 4) uint8."""
    window.canvas.viewport().repaint()
    image = window.canvas.viewport().grab().toImage().convertToFormat(QImage.Format_RGBA8888)
    return np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine() // 4, 4).copy()


def changed_fraction(before: np.ndarray, after: np.ndarray) -> float:
    """The share of pixels that differ between two renderings of the same size."""
    return float(np.any(before != after, axis=2).mean())


def wait_autosave(qtbot) -> None:
    qtbot.wait(AUTOSAVE_DELAY_MS * 3)
