"""Journeys: the canvas is the room. First start on a 1600x1000 screen (a subprocess on an
offscreen screen of that size, fresh settings), the window on a 1024x700 screen, toolbar buttons
that stay put while Undo names the edit, the View menu reopening every panel and restoring the
default layout, Quit, and the zoom entries by their shortcuts."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings, QSize, Qt
from PySide6.QtWidgets import QTabBar

from frcnn_gui.canvas.image_view import WHEEL_ZOOM
from frcnn_gui.main_window import MainWindow
from frcnn_gui.window_layout import ASIDE, BEHIND, COLUMN, STRIP

from journeys_helpers import canvas_pixels, changed_fraction, press

ROOT = Path(__file__).resolve().parents[3]
FAST_MODEL, TIMEOUT_MS = "mobilenet-v3-320-fpn", 60_000  # as conftest.py's
SMALL_SCREEN = QSize(1024, 700)
ROOM_FOR_TITLE_BAR_AND_PANEL = 60  # a 700-px screen keeps this much for the frame and a desktop panel
FIRST_START = textwrap.dedent("""
    import json, os, sys, time
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication, QTabBar
    app = QApplication([])
    from frcnn_gui.main_window import MainWindow
    settings = QSettings(os.path.join(sys.argv[1], "settings.ini"), QSettings.IniFormat)
    window = MainWindow("mobilenet-v3-320-fpn", "none", "cpu", settings=settings)
    window.show()
    deadline = time.monotonic() + 30
    while not window.windowHandle().isExposed() and time.monotonic() < deadline:
        app.processEvents()
    for _ in range(20):  # the layout settles
        app.processEvents()
    canvas, screen = window.canvas.viewport(), window.screen().availableGeometry()
    tabs = [[bar.tabText(index) for index in range(bar.count())] + [bar.tabText(bar.currentIndex())]
            for bar in window.findChildren(QTabBar) if bar.isVisible()]
    print(json.dumps({"screen": [screen.width(), screen.height()], "window": [window.width(), window.height()],
                      "canvas": [canvas.width(), canvas.height()], "log_height": window.docks["Log"].height(),
                      "tab_bars": tabs}))
    sys.stdout.flush()
    os._exit(0)  # the engine may be importing torch in its thread: nothing to wait for
""")


def raised_strip_tab(window) -> str:
    """The title of the strip's raised tab."""
    bar = next(bar for bar in window.findChildren(QTabBar) if bar.isVisible() and bar.tabText(0) == STRIP[0])
    return bar.tabText(bar.currentIndex())


def canvas_share(window) -> float:
    viewport = window.canvas.viewport()
    return viewport.width() * viewport.height() / (window.width() * window.height())


LAYOUT_SETTLE_MS = 100  # posted layout requests are handled by then


def toolbar_places(qtbot, window) -> list:
    """Where every toolbar button, separator and picker is, once the toolbar's layout has followed
    the latest text changes."""
    qtbot.wait(LAYOUT_SETTLE_MS)
    bar = window.toolbar
    return [bar.widgetForAction(action).geometry() for action in bar.actions()]


def test_first_start_on_a_1600x1000_screen_gives_the_canvas_most_of_the_window(tmp_path):
    (tmp_path / "screen.json").write_text(json.dumps({"screens": [
        {"name": "screen", "x": 0, "y": 0, "width": 1600, "height": 1000, "logicalDpi": 96, "logicalBaseDpi": 96,
         "dpr": 1}]}))
    env = {**os.environ, "QT_QPA_PLATFORM": f"offscreen:configfile={tmp_path / 'screen.json'}",
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run([sys.executable, "-c", FIRST_START, str(tmp_path)], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout.strip().splitlines()[-1])
    assert shown["screen"] == [1600, 1000]
    (width, height), (canvas_width, canvas_height) = shown["window"], shown["canvas"]
    assert width <= 1600 and height <= 1000
    assert canvas_width * canvas_height >= 0.6 * width * height, shown
    assert shown["tab_bars"] == [[*STRIP, "Log"]]  # one row of tabs, the log raised
    assert shown["log_height"] <= 0.15 * height, shown  # and the strip is low


def test_the_window_fits_a_1024x700_screen_with_the_pickers_on_the_toolbar(qtbot, window):
    window.resize(SMALL_SCREEN)
    window.restore_default_layout()
    qtbot.waitUntil(lambda: window.size() == SMALL_SCREEN)
    minimum = window.minimumSizeHint()
    assert minimum.width() <= SMALL_SCREEN.width()
    assert minimum.height() <= SMALL_SCREEN.height() - ROOM_FOR_TITLE_BAR_AND_PANEL
    qtbot.waitUntil(lambda: canvas_share(window) >= 0.45)  # once the layout has followed the new size
    bar = window.toolbar
    for action in bar.actions():  # nothing fell into the overflow menu
        assert bar.widgetForAction(action).isVisible(), action.text()
    for picker in (window.model_box, window.device_box):
        assert picker.isVisible() and bar.rect().contains(picker.geometry())


def test_toolbar_buttons_stay_put_while_undo_and_redo_name_the_edit(qtbot, window):
    undo, redo = window.actions["undo"], window.actions["redo"]
    places = toolbar_places(qtbot, window)
    assert window.toolbar.toolButtonStyle() == Qt.ToolButtonIconOnly and not undo.icon().isNull()
    press(qtbot, window, Qt.Key_Space)  # Mark verified: Undo now names it
    assert window.document.verified and undo.text() == "Undo Mark verified"
    assert toolbar_places(qtbot, window) == places
    undo.trigger()
    assert not window.document.verified and redo.text() == "Redo Mark verified"
    assert toolbar_places(qtbot, window) == places
    assert window.toolbar.widgetForAction(undo).toolTip() == "Undo"


def panels_menu(window) -> dict:
    """View > Panels, by entry text."""
    view = next(action.menu() for action in window.menuBar().actions() if action.text() == "&View")
    panels = next(action.menu() for action in view.actions() if action.text() == "Panels")
    return {action.text(): action for action in panels.actions()}


@pytest.mark.parametrize("title", [*COLUMN, *STRIP])
def test_the_view_menu_reopens_a_closed_panel(qtbot, window, title):
    dock, entry = window.docks[title], panels_menu(window)[title]
    dock.close()  # the dock's own close button
    assert not dock.isVisible() and not entry.isChecked()
    entry.trigger()
    assert dock.isVisible() and entry.isChecked()


def test_the_view_menu_reopens_the_toolbar(qtbot, window):
    entry = panels_menu(window)["Toolbar"]
    entry.trigger()
    assert not window.toolbar.isVisible()
    entry.trigger()
    assert window.toolbar.isVisible()


def test_restore_default_layout_docks_and_shows_every_panel(qtbot, window):
    first_share = canvas_share(window)
    window.docks["Stages"].setFloating(True)
    window.docks["Images"].close()
    window.docks["Runs"].raise_()
    assert raised_strip_tab(window) == "Runs"
    window.resizeDocks([window.docks["Log"]], [window.height() // 2], Qt.Vertical)  # a tall strip
    qtbot.waitUntil(lambda: canvas_share(window) < first_share - 0.1)
    window.actions["restore_layout"].trigger()
    qtbot.waitUntil(lambda: abs(canvas_share(window) - first_share) < 0.02)
    for title, dock in window.docks.items():
        if title in BEHIND or title in ASIDE:  # Review and Errors wait hidden until asked for
            assert not dock.isVisible(), title
            continue
        assert dock.isVisible() and not dock.isFloating(), title
        area = Qt.RightDockWidgetArea if title in COLUMN else Qt.BottomDockWidgetArea
        assert window.dockWidgetArea(dock) == area, title
    assert raised_strip_tab(window) == "Log"


def test_a_stage_with_controls_grows_the_stages_dock_until_they_show(qtbot, window):
    """The proposals stage's last knob (the minimum size) was below the dock's bottom edge in a
    1400x900 window; choosing the stage now grows the dock, and the knob is on screen."""
    window.resize(1400, 900)
    window.restore_default_layout()
    dock, knob = window.docks["Stages"], window.stages_panel.min_size
    qtbot.waitUntil(lambda: window.size() == QSize(1400, 900))
    before = dock.height()
    stages = window.stages_panel.stage_list
    stages.setFocus()
    qtbot.keyClick(stages, Qt.Key_Home)  # anchors, then down the list to proposals
    while window.stages_panel.stage != "proposals":
        qtbot.keyClick(stages, Qt.Key_Down)
    # all of it, not a sliver
    qtbot.waitUntil(lambda: knob.visibleRegion().boundingRect().height() == knob.height())
    assert before < dock.height() <= 0.5 * window.height() + 1
    window.resizeDocks([dock], [round(0.45 * window.height())], Qt.Vertical)  # the user's own size
    qtbot.wait(50)
    taller = dock.height()
    qtbot.keyClick(stages, Qt.Key_Up)  # a stage with fewer controls
    qtbot.wait(50)
    assert dock.height() >= taller  # never shrunk


@pytest.mark.parametrize("stage", ["proposals", "saliency"])
def test_a_stage_chosen_before_the_window_shows_gets_its_room(qtbot, tmp_path, journey_folder, stage):
    """`frcnn-gui --stage S` chooses the stage before the window is shown (the proposals stage's
    knobs exist then; the saliency stage's come with the engine): the Stages dock still grows until
    the stage's last knob is on screen, whole."""
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)
    window = MainWindow(FAST_MODEL, "none", "cpu", settings=settings)
    qtbot.addWidget(window)
    window.resize(1400, 900)
    window.stages_panel.select(stage)
    with qtbot.waitSignal(window.engine_ready, timeout=TIMEOUT_MS):
        window.open_path(journey_folder)
        window.show()
    knob = window.stages_panel.min_size if stage == "proposals" else window.inspector.saliency.controls.masks
    qtbot.waitUntil(lambda: knob.isVisible() and knob.visibleRegion().boundingRect().height() == knob.height())
    assert window.docks["Stages"].height() <= 0.5 * window.height() + 1
    assert "internal error" not in window.log.toPlainText()


def test_the_view_menu_lists_every_panel_and_the_way_back(window):
    assert set(panels_menu(window)) == {*COLUMN, *STRIP, *BEHIND, *ASIDE, "Toolbar"}
    view = next(action.menu() for action in window.menuBar().actions() if action.text() == "&View")
    assert window.actions["restore_layout"] in view.actions()


def test_quit_closes_the_window(qtbot, window):
    press(qtbot, window, Qt.Key_Q, Qt.ControlModifier)
    qtbot.waitUntil(lambda: not window.isVisible())


def test_zoom_entries_by_their_shortcuts(qtbot, window):
    canvas = window.canvas
    fitted, shown = canvas.transform().m11(), canvas_pixels(window)
    steps = [(Qt.Key_Plus, fitted * WHEEL_ZOOM), (Qt.Key_Equal, fitted * WHEEL_ZOOM ** 2),
             (Qt.Key_Minus, fitted * WHEEL_ZOOM), (Qt.Key_1, 1.0), (Qt.Key_0, fitted)]
    for key, zoom in steps:  # Ctrl++, Ctrl+=, Ctrl+-, Ctrl+1 (actual size), Ctrl+0 (fit)
        press(qtbot, window, key, Qt.ControlModifier)
        assert canvas.transform().m11() == pytest.approx(zoom), key
        if key == Qt.Key_Plus:
            assert changed_fraction(shown, canvas_pixels(window)) > 0.5  # the picture grew
    assert changed_fraction(shown, canvas_pixels(window)) == 0.0  # fitted again: the same picture
    window.actions["zoom_in"].trigger()  # View > Zoom in
    assert canvas.transform().m11() == pytest.approx(fitted * WHEEL_ZOOM)
    window.actions["zoom_out"].trigger()
    assert canvas.transform().m11() == pytest.approx(fitted)
