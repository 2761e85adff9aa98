"""Where the window's panels go: the default layout, the first start's size, and the way back.

The canvas is the room. At first start (no saved layout) the window takes WINDOW_SHARE of the
screen's available area; the panels stand in one column on the right (images, stages, detections,
boxes, classes, top to bottom) and the log, "Why missed?", the training run and the runs are tabs
in a low strip under the canvas, the log raised. Every panel scrolls when its dock is shorter or
narrower than the panel needs, so that no panel sets the window's minimum size: the window fits a
1024x700 screen. The Review dock waits hidden behind Stages until review mode shows it, the Errors
dock hidden on the left until the Errors view is opened: then it is a column left of the canvas.
"Restore default layout" (View menu) puts every dock back where this module puts
it, shown and docked, and sizes them for the window's current size. When a stage with controls
is chosen, the Stages dock grows to show them (fit_dock), taking room from the docks below.
"""
from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import QDockWidget, QFrame, QMainWindow, QScrollArea, QWidget

WINDOW_SHARE = 0.9  # of the screen's available width and height, at first start
COLUMN = ("Images", "Stages", "Detections", "Boxes", "Classes")  # the right-hand column, top to bottom
COLUMN_HEIGHT_SHARES = (0.13, 0.33, 0.23, 0.16, 0.15)  # of the window's height, in COLUMN's order
STRIP = ("Log", "Why missed?", "Training run", "Runs")  # tabs under the canvas, the first one raised
BEHIND = {"Review": "Stages"}  # docks hidden until asked for, then a tab beside the named one
ASIDE = ("Errors",)  # docks hidden until asked for, then a column left of the canvas
ASIDE_WIDTH = (0.36, 400, 620)  # share of the window's width when shown, clamped likewise
COLUMN_WIDTH = (0.2, 300, 360)  # share of the window's width, clamped to [min, max] pixels
STRIP_HEIGHT = (0.1, 90, 130)  # share of the window's height, clamped likewise
FIT_MOST = 0.5  # a dock grown to fit its panel's controls (fit_dock) takes at most this share of the height


def add_docks(window: QMainWindow, panels: dict[str, QWidget]) -> dict[str, QDockWidget]:
    """One dock per panel (titles: those of COLUMN and STRIP), each panel in a scroll area,
    arranged as the module doc says; returns the docks by title."""
    window.setCorner(Qt.BottomRightCorner, Qt.RightDockWidgetArea)  # the column runs down to the status bar
    docks = {title: _dock(window, title, panels[title]) for title in (*COLUMN, *STRIP, *BEHIND, *ASIDE)}
    for title in COLUMN:
        window.addDockWidget(Qt.RightDockWidgetArea, docks[title], Qt.Vertical)
    for title in STRIP:
        window.addDockWidget(Qt.BottomDockWidgetArea, docks[title])
    for title in STRIP[1:]:
        window.tabifyDockWidget(docks[STRIP[0]], docks[title])
    for title in BEHIND:
        window.addDockWidget(Qt.RightDockWidgetArea, docks[title])
        docks[title].hide()
    for title in ASIDE:
        window.addDockWidget(Qt.LeftDockWidgetArea, docks[title])
        docks[title].hide()
    docks[STRIP[0]].raise_()
    return docks


def show_behind(dock: QDockWidget) -> None:
    """Show a dock of BEHIND as a tab beside its dock (tabbed only now: a hidden tab would still
    take a tab bar's height), raised."""
    window = dock.parentWidget()
    beside = window.findChild(QDockWidget, BEHIND[dock.objectName()])
    if not dock.isVisible() and beside is not None and not beside.isFloating():
        window.tabifyDockWidget(beside, dock)
    dock.show()
    dock.raise_()


def show_aside(dock: QDockWidget) -> None:
    """Show a dock of ASIDE, raised, and give it its width when it was hidden."""
    window = dock.parentWidget()
    hidden = not dock.isVisible()
    dock.show()
    dock.raise_()
    if hidden and not dock.isFloating():
        window.resizeDocks([dock], [_clamped(window.width(), *ASIDE_WIDTH)], Qt.Horizontal)


def fit_dock(dock: QDockWidget) -> None:
    """Grow a docked, shown `dock` to the height its panel asks for (a stage's controls, say), at
    most FIT_MOST of the window's height; the docks beside it give the room. Never shrinks it:
    a dock the user made taller stays so."""
    window = dock.parentWidget()
    if dock.isFloating() or not dock.isVisible() or not isinstance(window, QMainWindow):
        return
    frame = dock.height() - dock.widget().height()  # the title bar
    wanted = min(dock.widget().widget().sizeHint().height() + frame, round(window.height() * FIT_MOST))
    if wanted > dock.height():
        window.resizeDocks([dock], [wanted], Qt.Vertical)


def _dock(window: QMainWindow, title: str, panel: QWidget) -> QDockWidget:
    scroll = QScrollArea(widgetResizable=True, frameShape=QFrame.NoFrame, focusPolicy=Qt.NoFocus)
    scroll.setWidget(panel)
    dock = QDockWidget(title, window)
    dock.setObjectName(title)
    dock.setWidget(scroll)
    return dock


def dock_of(panel: QWidget) -> QDockWidget | None:
    """The dock that holds `panel` (through its scroll area), or None."""
    parent = panel.parentWidget()
    while parent is not None and not isinstance(parent, QDockWidget):
        parent = parent.parentWidget()
    return parent


def first_size(available: QSize) -> QSize:
    """The window's size at first start on a screen whose available area is `available`."""
    return QSize(round(available.width() * WINDOW_SHARE), round(available.height() * WINDOW_SHARE))


def restore_default(window: QMainWindow, docks: dict[str, QDockWidget], default_state) -> None:
    """Every dock shown and docked where `add_docks` put it (`default_state`: the window's
    saveState() right after), the strip's first tab raised, all sized by `size_docks`."""
    window.restoreState(default_state)
    for title, dock in docks.items():
        dock.setFloating(False)
        dock.setVisible(title not in BEHIND and title not in ASIDE)
    docks[STRIP[0]].raise_()
    size_docks(window, docks)


def size_docks(window: QMainWindow, docks: dict[str, QDockWidget]) -> None:
    """Give the column and the strip their default sizes for the window's current size; the
    canvas takes the rest."""
    width = _clamped(window.width(), *COLUMN_WIDTH)
    strip = _clamped(window.height(), *STRIP_HEIGHT)
    column = [docks[title] for title in COLUMN]
    window.resizeDocks(column, [width] * len(column), Qt.Horizontal)
    window.resizeDocks(column, [round(share * window.height()) for share in COLUMN_HEIGHT_SHARES], Qt.Vertical)
    window.resizeDocks([docks[STRIP[0]]], [strip], Qt.Vertical)


def _clamped(size: int, share: float, low: int, high: int) -> int:
    return min(max(round(size * share), low), high)
