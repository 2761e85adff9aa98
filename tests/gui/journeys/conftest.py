"""Journey fixtures: the real MainWindow on a real labelImg-style folder, driven with real events.

A journey is one user task end to end: keys and mouse on the canvas viewport, `QAction.trigger()`
for menu entries, and assertions on what the user sees (viewport pixels, the boxes table, the
files on disk). pytest-qt fails a test when a Qt slot or event handler raises; on top of that the
window's log must hold no "internal error" line when the journey ends.

The folder: two BCCD images with their VOC XML (16 and 13 boxes), two photos without annotation,
copied from the bundled samples; file names chosen so that natural and plain sorting differ.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from PySide6.QtCore import QSettings

from frcnn_core.resources import SAMPLES
from frcnn_gui.main_window import MainWindow

from journeys_helpers import record_triggers

FAST_MODEL = "mobilenet-v3-320-fpn"  # random weights: fast, detects next to nothing
TIMEOUT_MS = 60_000
# target name -> bundled sample; "cells-2" sorts after "cells-10" by plain string order
FOLDER_LAYOUT = {
    "cells-2.jpg": "BloodImage_00002.jpg", "cells-2.xml": "BloodImage_00002.xml",
    "cells-10.jpg": "BloodImage_00014.jpg", "cells-10.xml": "BloodImage_00014.xml",
    "photo-1.png": "chelsea.png", "photo-3.jpg": "rocket.jpg",
}


@pytest.fixture
def journey_folder(tmp_path) -> Path:
    """A labelImg-style folder: images with their XML beside them, and images without."""
    folder = tmp_path / "images"
    folder.mkdir()
    for target, source in FOLDER_LAYOUT.items():
        shutil.copyfile(SAMPLES / source, folder / target)
    return folder


@pytest.fixture
def make_window(qtbot, tmp_path):
    """make_window(folder, model=FAST_MODEL, weights="none") -> a shown, active MainWindow with
    the folder open and the first detections drawn. Teardown: no internal error was logged."""
    windows = []

    def make(folder: Path, model: str = FAST_MODEL, weights: str = "none") -> MainWindow:
        torch.manual_seed(0)
        settings = QSettings(str(tmp_path / f"settings-{len(windows)}.ini"), QSettings.IniFormat)
        window = MainWindow(model, weights, "cpu", settings=settings)
        qtbot.addWidget(window)
        windows.append(window)
        record_triggers(window)
        with qtbot.waitSignal(window.detections_shown, timeout=TIMEOUT_MS):
            window.open_path(folder)
            window.show()
        qtbot.waitUntil(lambda: window.windowHandle().isExposed())
        window.activateWindow()
        qtbot.waitUntil(window.isActiveWindow)
        return window

    yield make
    for window in windows:
        assert "internal error" not in window.log.toPlainText(), window.log.toPlainText()


@pytest.fixture
def window(make_window, journey_folder) -> MainWindow:
    return make_window(journey_folder)
