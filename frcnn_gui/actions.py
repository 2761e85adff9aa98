"""Menus, toolbar and shortcuts (labelImg's where they exist): W draw, A / D previous / next image,
Del delete, Ctrl+Z / Ctrl+Shift+Z undo / redo (the current image's history), Ctrl+S save, Space
verified, Ctrl+E relabel, Ctrl+C / Ctrl+V copy / paste boxes, Ctrl++ (or Ctrl+=) / Ctrl+- zoom in /
out, F or Ctrl+0 fit, 1 or Ctrl+1 actual size, Ctrl+Shift+E the Errors view, Ctrl+T fine-tune,
Ctrl+Shift+M the previous model, Ctrl+Q quit; the model and device pickers.

The toolbar shows icons only (the action's text and shortcut in its tooltip), so that no button
moves when a text changes (Undo / Redo name the edit they would undo); the View menu reopens every
dock and restores the default layout."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QComboBox, QFileDialog, QLabel, QToolBar

from frcnn_core.devices import DEVICES
from frcnn_core.errors import InputError
from frcnn_core.names import default_weights, model_choices
from frcnn_gui.canvas.image_view import WHEEL_ZOOM
from frcnn_gui.icons import icon
from frcnn_gui.panels.status import model_title

CHECKPOINT_ITEM = "checkpoint file…"
TOOLBAR = (("open_folder", "previous", "next"), ("draw", "undo", "redo"), ("zoom_in", "zoom_out", "fit", "actual"),
           ("show_detections", "show_boxes"), ("finetune",))  # groups of actions, between separators
TOOLBAR_ICONS = {  # Material Design Icons names
    "open_folder": "folder-open-outline", "previous": "chevron-left", "next": "chevron-right", "draw": "vector-square",
    "undo": "undo", "redo": "redo", "zoom_in": "magnify-plus-outline", "zoom_out": "magnify-minus-outline",
    "fit": "fit-to-screen-outline", "actual": "numeric-1-box-outline", "show_detections": "robot-outline",
    "show_boxes": "checkbox-blank-outline", "finetune": "school-outline",
}
MODEL_BOX_CHARACTERS = 16


def _action(window, text: str, shortcut: str | tuple[str, ...] | None, slot, menu, checkable: bool = False) -> QAction:
    """A window-wide action in `menu`; `shortcut`: one key sequence or several (the first shown)."""
    action = QAction(text, window, checkable=checkable)
    if shortcut:
        action.setShortcuts([QKeySequence(keys) for keys in ((shortcut,) if isinstance(shortcut, str) else shortcut)])
        action.setToolTip(f"{text} ({action.shortcut().toString(QKeySequence.NativeText)})")
    action.triggered.connect(slot)
    menu.addAction(action)
    window.addAction(action)
    return action


def install(window) -> dict[str, QAction]:
    """Create the window's menus, toolbar and shortcuts; returns the actions by name."""
    file_menu, edit_menu, view_menu, train_menu = (window.menuBar().addMenu(t)
                                                   for t in ("&File", "&Edit", "&View", "&Train"))
    canvas = window.canvas
    found = {
        "open_image": _action(window, "Open image…", "Ctrl+O", lambda: _open_image(window), file_menu),
        "open_folder": _action(window, "Open folder…", "Ctrl+Shift+O", lambda: _open_folder(window), file_menu),
    }
    recent = file_menu.addMenu("Open recent")
    recent.aboutToShow.connect(lambda: _fill_recent(window, recent))
    exchange = file_menu.addMenu("Import / export")
    for operation, text in (("import_coco", "Import COCO JSON…"), ("import_yolo", "Import YOLO folder…"),
                            ("export_coco", "Export COCO JSON…"), ("export_yolo", "Export YOLO folder…")):
        found[operation] = _action(window, text, None, lambda _=False, op=operation: _exchange(window, op), exchange)
    found.update(
        save=_action(window, "Save", "Ctrl+S", window.save_now, file_menu),
        previous=_action(window, "Previous image", "A", lambda: window.step_image(-1), file_menu),
        next=_action(window, "Next image", "D", lambda: window.step_image(1), file_menu),
        draw=_action(window, "Draw boxes", "W", lambda on: canvas.set_mode("draw" if on else "select"), edit_menu,
                     checkable=True),
        verified=_action(window, "Mark verified", "Space", window.toggle_verified, edit_menu),
        review=_action(window, "Review suggestions", "Ctrl+Shift+R", window.review.start, edit_menu),
        accept=_action(window, "Accept shown detections", "Ctrl+Return", lambda: window.accept_detections(), edit_menu),
        zoom_in=_action(window, "Zoom in", ("Ctrl++", "Ctrl+="), lambda: canvas.zoom_by(WHEEL_ZOOM), view_menu),
        zoom_out=_action(window, "Zoom out", "Ctrl+-", lambda: canvas.zoom_by(1 / WHEEL_ZOOM), view_menu),
        fit=_action(window, "Fit", ("F", "Ctrl+0"), canvas.fit, view_menu),
        actual=_action(window, "Actual size", ("1", "Ctrl+1"), canvas.actual_size, view_menu),
        detect=_action(window, "Detect again", "Ctrl+R", window.detect, view_menu),
        errors=_action(window, "Errors across the folder…", "Ctrl+Shift+E", window.errors.open, view_menu),
        show_detections=_action(window, "Show detections", "Ctrl+Shift+D",
                                lambda on: canvas.detection_layer.setVisible(on), view_menu, checkable=True),
        show_boxes=_action(window, "Show boxes", "Ctrl+Shift+B", lambda on: canvas.ground_truth_layer.setVisible(on),
                           view_menu, checkable=True),
    )
    finetuning = window.finetuning
    found.update(
        finetune=_action(window, "Fine-tune…", "Ctrl+T", finetuning.open_dialog, train_menu),
        previous_model=_action(window, "Use the previous model", "Ctrl+Shift+M", finetuning.use_previous_model,
                               train_menu),
        show_comparison=_action(window, "Show before / after on the image", None, finetuning.set_comparison_shown,
                                train_menu, checkable=True),
    )
    found.update(_box_actions(window, edit_menu))
    found["verified"].setAutoRepeat(False)  # holding Space must not flip the flag on and off
    found["show_detections"].setChecked(True)
    found["show_boxes"].setChecked(True)
    canvas.mode_changed.connect(lambda mode: found["draw"].setChecked(mode == "draw"))
    undo = window.history.createUndoAction(window, "Undo")
    undo.setShortcut(QKeySequence.Undo)
    redo = window.history.createRedoAction(window, "Redo")
    redo.setShortcut(QKeySequence("Ctrl+Shift+Z"))
    for action in (undo, redo):
        edit_menu.addAction(action)
        window.addAction(action)
    found.update(undo=undo, redo=redo)
    _toolbar(window, found)
    found.update(_window_entries(window, file_menu, view_menu))
    return found


def _window_entries(window, file_menu, view_menu) -> dict[str, QAction]:
    """File > Quit; View > Panels (each dock's and the toolbar's show / hide) and Restore default layout."""
    view_menu.addSeparator()
    panels = view_menu.addMenu("Panels")
    for dock in window.docks.values():
        panels.addAction(dock.toggleViewAction())
    panels.addAction(window.toolbar.toggleViewAction())
    restore = _action(window, "Restore default layout", None, window.restore_default_layout, view_menu)
    file_menu.addSeparator()
    return {"restore_layout": restore, "quit": _action(window, "Quit", "Ctrl+Q", window.close, file_menu)}


def _box_actions(window, menu) -> dict[str, QAction]:
    """The actions on the selected boxes (also the canvas's box menu) and labelImg's "Use
    default class" toggle; see labelling.py."""
    labelling = window.labelling
    menu.addSeparator()
    found = {
        "relabel": _action(window, "Relabel…", "Ctrl+E", labelling.relabel_selection, menu),
        "delete": _action(window, "Delete", "Del", labelling.delete, menu),
        "difficult": _action(window, "Difficult", None, labelling.set_difficult, menu, checkable=True),
        "copy": _action(window, "Copy boxes", "Ctrl+C", labelling.copy, menu),
        "paste": _action(window, "Paste boxes", "Ctrl+V", labelling.paste, menu),
        "default_class": _action(window, "Use default class", None, labelling.set_use_default_class, menu,
                                 checkable=True),
    }
    found["default_class"].setChecked(labelling.use_default_class)
    labelling.bind_actions(found)
    menu.addSeparator()
    return found


def _toolbar(window, found: dict[str, QAction]) -> None:
    bar = window.toolbar = QToolBar("Toolbar", window)
    bar.setObjectName("main toolbar")
    bar.setMovable(False)
    bar.setToolButtonStyle(Qt.ToolButtonIconOnly)
    window.addToolBar(bar)
    for group in TOOLBAR:
        for name in group:
            found[name].setIcon(icon(TOOLBAR_ICONS[name]))
        bar.addActions([found[name] for name in group])
        bar.addSeparator()
    window.model_box = QComboBox(minimumContentsLength=MODEL_BOX_CHARACTERS)
    window.model_box.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
    for name in model_choices():
        window.model_box.addItem(name, name)
    window.model_box.addItem(CHECKPOINT_ITEM, None)
    window.device_box = QComboBox()
    window.device_box.addItems(DEVICES)
    for label, box in (("Model ", window.model_box), (" Device ", window.device_box)):
        bar.addWidget(QLabel(label))
        bar.addWidget(box)
    show_model(window)
    window.model_box.activated.connect(lambda _: _choose_model(window))
    window.device_box.activated.connect(lambda _: window.load_model(window.model_name, window.weights,
                                                                    window.device_box.currentText()))


def show_model(window) -> None:
    """Make the pickers show the window's model and device (after a load, or a failed one)."""
    index = window.model_box.findData(window.model_name)
    if index < 0:
        window.model_box.insertItem(0, model_title(window.model_name), window.model_name)
        window.model_box.setItemData(0, window.model_name, Qt.ToolTipRole)
        index = 0
    window.model_box.setCurrentIndex(index)
    window.device_box.setCurrentText(window.device)


def _choose_model(window) -> None:
    choice = window.model_box.currentData()
    if choice is None:
        choice, _ = QFileDialog.getOpenFileName(window, "Checkpoint", "", "Checkpoints (*.pt *.pth);;All files (*)")
    if choice:
        window.load_model(choice, default_weights(choice))  # a failed load puts the pickers back
    else:
        show_model(window)


def _fill_recent(window, menu) -> None:
    menu.clear()
    for folder in window.recent_folders():
        menu.addAction(folder, lambda folder=folder: window.open_path(Path(folder)))


def _open_image(window) -> None:
    path, _ = QFileDialog.getOpenFileName(window, "Open image", window.settings.value("last_folder", ""),
                                          "Images (*.jpg *.jpeg *.png *.bmp *.tif *.tiff *.webp)")
    if path:
        window.open_path(Path(path))


def _open_folder(window) -> None:
    folder = QFileDialog.getExistingDirectory(window, "Open folder", window.settings.value("last_folder", ""))
    if folder:
        window.open_path(Path(folder))


def _exchange(window, operation: str) -> None:
    """COCO / YOLO import or export of the open folder; problem lines go to the log."""
    if window.document.folder is None:
        window.report("open a folder first")
        return
    if operation.endswith("coco"):
        ask = QFileDialog.getOpenFileName if operation.startswith("import") else QFileDialog.getSaveFileName
        path, _ = ask(window, operation.replace("_", " "), str(window.document.folder), "COCO JSON (*.json)")
    else:
        path = QFileDialog.getExistingDirectory(window, operation.replace("_", " "), str(window.document.folder))
    if not path:
        return
    try:
        problems = getattr(window.document, operation)(path)
    except (InputError, OSError, ValueError) as error:
        window.report(f"{operation.replace('_', ' ')} failed: {error}")
        return
    if operation.startswith("import"):
        window.history.clear()  # the files changed underneath the undo histories
    for line in problems:
        window.log.add(line)
    window.report(f"{operation.replace('_', ' ')}: {path} ({len(problems)} problems, see the log)")
