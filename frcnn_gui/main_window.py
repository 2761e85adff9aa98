"""The main window: wiring only. The document holds the data, the canvas and panels show it,
undo commands edit it, the engine runs in `EngineClient`'s thread, actions come from actions.py."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QUndoStack
from PySide6.QtWidgets import QDockWidget, QLabel, QMainWindow, QMessageBox, QProgressBar

from frcnn_gui import actions
from frcnn_gui.canvas import Canvas
from frcnn_gui.canvas.layers import class_colour
from frcnn_gui.commands import AcceptDetectionsCommand, SetVerifiedCommand
from frcnn_gui.document import Detection, Document
from frcnn_gui.panels.boxes_table import BoxesTable
from frcnn_gui.panels.classes import ClassesPanel
from frcnn_gui.panels.detections import DetectionsPanel
from frcnn_gui.panels.image_list import ImageListPanel
from frcnn_gui.panels.log import LogPanel
from frcnn_gui.worker import EngineClient

AUTOSAVE_DELAY_MS = 300


class MainWindow(QMainWindow):
    """`detections_shown` fires after each detection result reached the canvas (for --screenshot)."""

    detections_shown = Signal()
    engine_failed = Signal(str)

    def __init__(self, model: str, weights: str, device: str = "auto", settings: QSettings | None = None):
        super().__init__()
        self.settings = settings or QSettings("frcnn-studio", "Faster R-CNN Studio")
        self.document = Document()
        self.stack = QUndoStack(self)
        self.engine = EngineClient(self)
        self.model_name, self.weights, self.device = model, weights, device
        self.canvas = Canvas(self.document, self.stack)
        self.setCentralWidget(self.canvas)
        self._build_panels()
        self._build_status_bar()
        self.actions = actions.install(self)
        self._autosave = QTimer(self, singleShot=True, interval=AUTOSAVE_DELAY_MS, timeout=self.save)
        self.stack.indexChanged.connect(lambda _: self._autosave.start())
        self._connect_engine()
        self.setWindowTitle("Faster R-CNN Studio")
        self.resize(1400, 900)
        self.load_model(model, weights, device)

    # --- construction -------------------------------------------------------------------
    def _dock(self, title: str, widget, area) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(title)
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _build_panels(self) -> None:
        self.image_list = ImageListPanel(self.document)
        self.detections_panel = DetectionsPanel(threshold=0.5)
        self.boxes_table = BoxesTable(self.document, self.stack)
        self.classes_panel = ClassesPanel(self.document, self.stack, class_colour)
        self.log = LogPanel()
        self._dock("Images", self.image_list, Qt.LeftDockWidgetArea)
        self._dock("Detections", self.detections_panel, Qt.RightDockWidgetArea)
        self._dock("Boxes", self.boxes_table, Qt.RightDockWidgetArea)
        self._dock("Classes", self.classes_panel, Qt.RightDockWidgetArea)
        log_dock = self._dock("Log", self.log, Qt.BottomDockWidgetArea)
        self.resizeDocks([log_dock], [110], Qt.Vertical)
        self.image_list.image_chosen.connect(self.open_index)
        self.canvas.selection_changed.connect(self.boxes_table.set_selection)
        self.boxes_table.selection_changed.connect(self.canvas.set_selection)
        self.classes_panel.current_label_changed.connect(lambda name: setattr(self.canvas, "current_label", name))
        self.detections_panel.filter_changed.connect(self._filter_detections)
        self.detections_panel.accept_all.connect(self.accept_detections)

    def _build_status_bar(self) -> None:
        self.device_label, self.model_label, self.timing_label = QLabel(), QLabel(), QLabel()
        self.progress = QProgressBar(maximumWidth=160, maximum=0, visible=False)
        for widget in (self.model_label, self.device_label, self.timing_label):
            self.statusBar().addPermanentWidget(widget)
        self.statusBar().addPermanentWidget(self.progress)

    def _connect_engine(self) -> None:
        self.engine.model_loaded.connect(self._model_loaded)
        self.engine.result.connect(self._detections_arrived)
        self.engine.failed.connect(self._engine_failed)
        self.engine.busy.connect(self.progress.setVisible)
        self.engine.progress.connect(lambda _id, stage: self.statusBar().showMessage(stage, 2000))

    # --- images -------------------------------------------------------------------------
    def open_path(self, path: str | Path) -> None:
        """A folder, or an image (its folder opens, that image first)."""
        path = Path(path)
        folder = path if path.is_dir() else path.parent
        self.save()
        self.document.open_folder(folder)
        self.stack.clear()
        self.settings.setValue("last_folder", str(folder))
        if not self.document.images:
            self.log.add(f"{folder}: no images in this folder")
            return
        index = self.document.image_index(path) if path.is_file() else 0
        self.log.add(f"opened {folder} ({len(self.document.images)} images)")
        self.open_index(index)

    def open_index(self, index: int) -> None:
        if not 0 <= index < len(self.document.images):
            return
        self.save()
        self.document.open_image(index)
        entry = self.document.images[index]
        self.canvas.set_image(entry.path)
        self.canvas.fit()
        if entry.status == "error" or self.document.read_only_reason:
            self.log.add(f"{entry.error or self.document.read_only_reason}")
        self.detect()

    def step_image(self, delta: int) -> None:
        current = self.document.current_index
        self.open_index((current or 0) + delta if current is not None else 0)

    def save(self) -> None:
        try:
            saved = self.document.save()
        except (OSError, ValueError) as error:
            self.log.add(f"not saved: {error}")
            self.statusBar().showMessage(f"not saved: {error}", 5000)
            return
        if saved:
            self.statusBar().showMessage(f"saved {saved.name}", 1500)

    def toggle_verified(self) -> None:
        if self.document.current_index is not None:
            self.stack.push(SetVerifiedCommand(self.document, not self.document.verified))

    # --- model and detections ---------------------------------------------------------------
    def load_model(self, model: str, weights: str, device: str | None = None) -> None:
        self.device = device or self.device
        self.model_label.setText(f"model: {model} (loading…)")
        self.engine.load_model(model, weights, self.device)
        self.settings.setValue("model", model)

    def detect(self) -> None:
        entry = self.document.images[self.document.current_index] if self.document.current_index is not None else None
        if entry is not None and entry.status != "error":
            self.engine.detect(str(entry.path))

    def _model_loaded(self, loaded) -> None:
        self.model_label.setText(f"model: {Path(self.model_name).name} ({loaded.model_name})")
        self.device_label.setText(f"device: {loaded.device}")
        self.detections_panel.set_class_names(loaded.class_names[1:])
        self.log.add(f"model {loaded.model_name} ready on {loaded.device} ({loaded.seconds:.1f} s)")
        self.detect()

    def _detections_arrived(self, result) -> None:
        names = result.class_names
        found = result.detections
        detections = [
            Detection(tuple(float(v) for v in box), float(score), names[int(label)])
            for box, score, label in zip(found["boxes"], found["scores"], found["labels"])
        ]
        if self.document.current_path is not None and Path(result.image_path) == self.document.current_path:
            self.document.set_detections(detections)
            self._filter_detections(self.detections_panel.threshold(), self.detections_panel.class_filter())
        self.timing_label.setText(f"last: {result.seconds * 1000:.0f} ms")
        self.log.add(f"{Path(result.image_path).name}: {len(detections)} detections in {result.seconds:.2f} s")
        self.detections_shown.emit()

    def _engine_failed(self, error) -> None:
        self.log.add(error.message + (f"\n{error.traceback}" if error.traceback else ""))
        self.statusBar().showMessage(error.message, 8000)
        self.engine_failed.emit(error.message)

    def _filter_detections(self, threshold: float, class_name: str) -> None:
        self.canvas.detection_layer.set_score_threshold(threshold)
        self.canvas.detection_layer.set_class_filter([class_name] if class_name else None)

    def accept_detections(self) -> None:
        shown = list(self.canvas.detection_layer.shown)
        if shown:
            self.stack.push(AcceptDetectionsCommand(self.document, shown))

    def closeEvent(self, event) -> None:
        self.save()
        self.settings.setValue("geometry", self.saveGeometry())
        self.engine.shutdown()
        super().closeEvent(event)

    def warn(self, title: str, text: str) -> None:
        QMessageBox.warning(self, title, text)
