"""What class journeys do with the window: draw a box and answer the class prompt, find the box a
click lands on, read the boxes table and an annotation file back."""
from __future__ import annotations

import math
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from PySide6.QtCore import QPointF, Qt

from journeys_helpers import at, drag, press


def prompt_opens(qtbot, window):
    """Wait for the class prompt to be shown and take the keyboard; returns it."""
    prompt = window.labelling.prompt
    qtbot.waitUntil(prompt.isVisible)
    qtbot.waitUntil(prompt.isActiveWindow)
    return prompt


def answer(qtbot, window, typed: str | None = None, key=Qt.Key_Return) -> None:
    """Type `typed` over the preselected text (None: keep it), then press `key` in the prompt."""
    prompt = prompt_opens(qtbot, window)
    if typed is not None:
        qtbot.keyClicks(prompt.name_edit, typed)
    qtbot.keyClick(prompt.name_edit, key)


def closed(qtbot, window) -> None:
    """The prompt is gone and the main window has the keyboard again."""
    assert not window.labelling.prompt.isVisible()
    qtbot.waitUntil(window.isActiveWindow)


def draw_box(qtbot, window, start: tuple[float, float], end: tuple[float, float]) -> None:
    """W, a drag between two image points; the canvas stays in draw mode (the prompt may open)."""
    if window.canvas.mode != "draw":
        press(qtbot, window, Qt.Key_W)
    drag(qtbot, window, start, end)


def through_the_window(qtbot, window, x: float, y: float, button=Qt.LeftButton, double: bool = False) -> None:
    """A click (or double-click) on the canvas at image point (x, y) that the window system
    delivers: Qt makes the double-click and the context-menu events from it, as from a real
    mouse (QTest's widget overloads send the one event they name, and no context menu)."""
    point = window.canvas.viewport().mapTo(window, at(window, x, y))
    (qtbot.mouseDClick if double else qtbot.mouseClick)(window.windowHandle(), button, Qt.NoModifier, point)


def box_hit_at(window, x: float, y: float) -> int:
    """The id of the box a click at image point (x, y) lands on (the smallest one there)."""
    box_id = window.canvas.ground_truth_layer.box_at(x, y)
    assert box_id is not None, f"no box at {(x, y)}"
    return box_id


def centre(window, box_id: int) -> tuple[float, float]:
    x1, y1, x2, y2 = window.document.boxes[box_id].coords
    return (x1 + x2) / 2, (y1 + y2) / 2


def table_labels(window) -> list[str]:
    table = window.boxes_table
    return [table.item(row, 0).text() for row in range(table.rowCount())]


def saved_objects(path: Path) -> list[dict[str, str]]:
    """Each <object> of a VOC file as {tag: text} of its direct children (bndbox left out)."""
    root = ElementTree.parse(path).getroot()
    return [{child.tag: (child.text or "").strip() for child in obj if child.tag != "bndbox"}
            for obj in root.iter("object")]


def drawn_coords(window, start: tuple[float, float], end: tuple[float, float]) -> tuple[float, ...]:
    """The whole-pixel box a drag between two image points gives at the canvas's current zoom: the
    viewport pixels the drag went through, mapped back to the image and rounded, halves up."""
    back, _ = window.canvas.viewportTransform().inverted()
    corners = [back.map(QPointF(at(window, *point))) for point in (start, end)]
    return tuple(float(math.floor(value + 0.5)) for corner in corners for value in (corner.x(), corner.y()))
