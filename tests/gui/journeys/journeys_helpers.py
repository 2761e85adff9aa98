"""What journeys do with the window: keys, mouse drags and clicks on the canvas viewport, and
reading back what the canvas shows."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QAction, QImage
from PySide6.QtWidgets import QToolBar

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


# -- which menu and toolbar actions the journeys triggered ------------------------------------

TRIGGERED: set[str] = set()  # "Menu/Entry" of every action a journey triggered this session
OFFERED: set[str] = set()  # every menu and toolbar action of the windows the journeys built


def action_names(window) -> dict[str, QAction]:
    """Every action a user can reach from the menu bar or a toolbar, as "Menu/Sub/Entry"."""
    found = {}

    def walk(menu, prefix: str) -> None:
        for action in menu.actions():
            if action.isSeparator():
                continue
            name = f"{prefix}/{action.text().replace('&', '')}"
            if action.menu() is not None:
                walk(action.menu(), name)
            else:
                found[name] = action
    for action in window.menuBar().actions():
        walk(action.menu(), action.text().replace("&", ""))
    for bar in window.findChildren(QToolBar):
        for action in bar.actions():
            if not action.isSeparator() and action.text() and action not in found.values():
                found[f"toolbar/{action.text()}"] = action
    return found


def record_triggers(window) -> None:
    for name, action in action_names(window).items():
        OFFERED.add(name)
        action.triggered.connect(lambda *_, name=name: TRIGGERED.add(name))
