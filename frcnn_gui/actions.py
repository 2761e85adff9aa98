"""Menus, toolbar and shortcuts (labelImg's where they exist): W draw, A / D previous / next image,
Del delete, Ctrl+Z / Ctrl+Shift+Z undo / redo, Ctrl+S save, Space verified, F fit, 1 actual size."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QComboBox, QFileDialog, QToolBar

from frcnn_core.zoo import BUNDLED, MODELS

CHECKPOINT_ITEM = "checkpoint file…"
DEVICES = ("auto", "cpu", "cuda")


def _action(window, text: str, shortcut, slot, menu) -> QAction:
    action = QAction(text, window)
    if shortcut:
        action.setShortcut(QKeySequence(shortcut))
    action.triggered.connect(slot)
    menu.addAction(action)
    window.addAction(action)
    return action


def _model_choices() -> list[str]:
    return list(BUNDLED) + list(MODELS)


def _default_weights(name: str) -> str:
    if name in BUNDLED or name not in MODELS:
        return "none"
    return "coco" if MODELS[name].coco_weights is not None else "imagenet"


def install(window) -> dict[str, QAction]:
    """Create the window's menus, toolbar and shortcuts; returns the actions by name."""
    file_menu, edit_menu, view_menu = (window.menuBar().addMenu(t) for t in ("&File", "&Edit", "&View"))
    found = {
        "open_image": _action(window, "Open image…", "Ctrl+O", lambda: _open_image(window), file_menu),
        "open_folder": _action(window, "Open folder…", "Ctrl+Shift+O", lambda: _open_folder(window), file_menu),
        "save": _action(window, "Save", "Ctrl+S", window.save, file_menu),
        "previous": _action(window, "Previous image", "A", lambda: window.step_image(-1), file_menu),
        "next": _action(window, "Next image", "D", lambda: window.step_image(1), file_menu),
        "verified": _action(window, "Mark verified", "Space", window.toggle_verified, edit_menu),
        "draw": _action(window, "Draw boxes", "W", lambda: window.canvas.set_mode(
            "select" if window.canvas.mode == "draw" else "draw"), edit_menu),
        "accept": _action(window, "Accept shown detections", "Ctrl+Return", window.accept_detections, edit_menu),
        "fit": _action(window, "Fit", "F", window.canvas.fit, view_menu),
        "actual": _action(window, "Actual size", "1", window.canvas.actual_size, view_menu),
        "detect": _action(window, "Detect again", "Ctrl+R", window.detect, view_menu),
    }
    undo = window.stack.createUndoAction(window, "Undo")
    undo.setShortcut(QKeySequence.Undo)
    redo = window.stack.createRedoAction(window, "Redo")
    redo.setShortcut(QKeySequence("Ctrl+Shift+Z"))
    for action in (undo, redo):
        edit_menu.addAction(action)
        window.addAction(action)
    found.update(undo=undo, redo=redo)
    _toolbar(window, found)
    return found


def _toolbar(window, found: dict[str, QAction]) -> None:
    bar = QToolBar("Main", window)
    bar.setObjectName("main toolbar")
    window.addToolBar(bar)
    for name in ("open_folder", "previous", "next", "draw", "fit", "actual", "undo", "redo"):
        bar.addAction(found[name])
    window.model_box = QComboBox()
    window.model_box.addItems(_model_choices() + [CHECKPOINT_ITEM])
    if window.model_name not in _model_choices():
        window.model_box.insertItem(0, window.model_name)
    window.model_box.setCurrentText(window.model_name)
    window.device_box = QComboBox()
    window.device_box.addItems(DEVICES)
    window.device_box.setCurrentText(window.device)
    bar.addSeparator()
    bar.addWidget(window.model_box)
    bar.addWidget(window.device_box)
    window.model_box.activated.connect(lambda _: _choose_model(window))
    window.device_box.activated.connect(lambda _: window.load_model(window.model_name, window.weights,
                                                                    window.device_box.currentText()))


def _choose_model(window) -> None:
    choice = window.model_box.currentText()
    if choice == CHECKPOINT_ITEM:
        path, _ = QFileDialog.getOpenFileName(window, "Checkpoint", "", "Checkpoints (*.pt *.pth);;All files (*)")
        if not path:
            return
        choice = path
    window.model_name, window.weights = choice, _default_weights(choice)
    window.load_model(choice, window.weights)


def _open_image(window) -> None:
    path, _ = QFileDialog.getOpenFileName(window, "Open image", window.settings.value("last_folder", ""),
                                          "Images (*.jpg *.jpeg *.png *.bmp *.tif *.tiff *.webp)")
    if path:
        window.open_path(Path(path))


def _open_folder(window) -> None:
    folder = QFileDialog.getExistingDirectory(window, "Open folder", window.settings.value("last_folder", ""))
    if folder:
        window.open_path(Path(folder))
