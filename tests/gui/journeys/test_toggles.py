"""Journeys: the View toggles hide and show what they name, by menu action and by shortcut; an
exception in a slot reaches the log as one line."""
from __future__ import annotations

import sys

from PySide6.QtCore import Qt, QTimer

from frcnn_gui import excepthook

from journeys_helpers import canvas_pixels, changed_fraction, press


def test_show_boxes_hides_and_shows_the_gt_boxes(qtbot, window):
    assert window.document.boxes, "the first image has GT boxes"
    shown = canvas_pixels(window)
    window.actions["show_boxes"].trigger()
    hidden = canvas_pixels(window)
    assert not window.actions["show_boxes"].isChecked()
    assert changed_fraction(shown, hidden) > 0.005
    press(qtbot, window, Qt.Key_B, Qt.ControlModifier | Qt.ShiftModifier)
    assert window.actions["show_boxes"].isChecked()
    assert changed_fraction(shown, canvas_pixels(window)) == 0.0


def test_show_detections_hides_and_shows_the_detections(qtbot, window):
    window.actions["show_boxes"].trigger()  # only the detections left on the picture
    window.detections_panel.slider.setValue(0)  # every detection the random model gives
    qtbot.waitUntil(lambda: len(window.canvas.detection_layer.shown) > 0)
    shown = canvas_pixels(window)
    press(qtbot, window, Qt.Key_D, Qt.ControlModifier | Qt.ShiftModifier)
    assert not window.actions["show_detections"].isChecked()
    assert changed_fraction(shown, canvas_pixels(window)) > 0.001
    window.actions["show_detections"].trigger()
    assert changed_fraction(shown, canvas_pixels(window)) == 0.0


def test_an_exception_in_a_slot_is_one_line_in_the_log(qtbot, window, monkeypatch):
    caught = []
    monkeypatch.setattr(sys, "excepthook", lambda *info: caught.append(info[1]))  # stands for pytest-qt's
    uninstall = excepthook.install(window.log.add)
    try:
        def broken() -> None:
            raise RuntimeError("slot broke\nsecond line")
        QTimer.singleShot(0, broken)
        qtbot.waitUntil(lambda: bool(caught))
    finally:
        uninstall()
    assert "internal error: RuntimeError: slot broke\n" in window.log.toPlainText()
    assert "Traceback" in window.log.toPlainText()
    window.log.clear()  # the fixture's own check: this error was on purpose
