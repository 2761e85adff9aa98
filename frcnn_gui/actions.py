"""Menus, toolbar and shortcuts (labelImg's where they exist): W draw, A / D previous / next image,
Del delete, Ctrl+Z / Ctrl+Shift+Z undo / redo, Ctrl+S save, Space verified, F fit, 1 actual size,
Ctrl+T fine-tune, Ctrl+Shift+M the previous model; the model and device pickers."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QComboBox, QFileDialog, QLabel, QToolBar

from frcnn_core.errors import InputError
from frcnn_core.zoo import BUNDLED, MODELS
from frcnn_gui.panels.status import model_title

CHECKPOINT_ITEM = "checkpoint file…"
DEVICES = ("auto", "cpu", "cuda")


def _action(window, text: str, shortcut, slot, menu, checkable: bool = False) -> QAction:
    action = QAction(text, window, checkable=checkable)
    if shortcut:
        action.setShortcut(QKeySequence(shortcut))
        action.setToolTip(f"{text} ({action.shortcut().toString(QKeySequence.NativeText)})")
    action.triggered.connect(slot)
    menu.addAction(action)
    window.addAction(action)
    return action


def _model_choices() -> list[str]:
    return list(BUNDLED) + list(MODELS)


def default_weights(name: str) -> str:
    """The weights a model name gets unless told otherwise: its file for a bundled model or a
    checkpoint, COCO when torchvision has them, else the ImageNet backbone."""
    if name in BUNDLED or name not in MODELS:
        return "none"
    return "coco" if MODELS[name].coco_weights is not None else "imagenet"


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
    for text, slot in (("Import COCO JSON…", lambda: _exchange(window, "import_coco")),
                       ("Import YOLO folder…", lambda: _exchange(window, "import_yolo")),
                       ("Export COCO JSON…", lambda: _exchange(window, "export_coco")),
                       ("Export YOLO folder…", lambda: _exchange(window, "export_yolo"))):
        _action(window, text, None, slot, exchange)
    found.update(
        save=_action(window, "Save", "Ctrl+S", window.save, file_menu),
        previous=_action(window, "Previous image", "A", lambda: window.step_image(-1), file_menu),
        next=_action(window, "Next image", "D", lambda: window.step_image(1), file_menu),
        draw=_action(window, "Draw boxes", "W", lambda on: canvas.set_mode("draw" if on else "select"), edit_menu,
                     checkable=True),
        verified=_action(window, "Mark verified", "Space", window.toggle_verified, edit_menu),
        review=_action(window, "Review suggestions", "Ctrl+Shift+R", window.review.start, edit_menu),
        accept=_action(window, "Accept shown detections", "Ctrl+Return", lambda: window.accept_detections(), edit_menu),
        fit=_action(window, "Fit", "F", canvas.fit, view_menu),
        actual=_action(window, "Actual size", "1", canvas.actual_size, view_menu),
        detect=_action(window, "Detect again", "Ctrl+R", window.detect, view_menu),
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
    found["verified"].setAutoRepeat(False)  # holding Space must not flip the flag on and off
    found["show_detections"].setChecked(True)
    found["show_boxes"].setChecked(True)
    canvas.mode_changed.connect(lambda mode: found["draw"].setChecked(mode == "draw"))
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
    bar.setMovable(False)
    window.addToolBar(bar)
    for group in (("open_folder", "previous", "next"), ("draw", "undo", "redo"),
                  ("fit", "actual", "show_detections", "show_boxes"), ("finetune",)):
        bar.addActions([found[name] for name in group])
        bar.addSeparator()
    window.model_box = QComboBox(minimumContentsLength=18)
    window.model_box.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
    for name in _model_choices():
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
        window.stack.clear()  # the files changed underneath the undo history
    for line in problems:
        window.log.add(line)
    window.report(f"{operation.replace('_', ' ')}: {path} ({len(problems)} problems, see the log)")
