"""The main window: wiring only. The document holds the data, the canvas and panels show it,
undo commands edit it, the engine runs in `EngineClient`'s thread, actions come from actions.py,
fine-tuning runs through `FinetuneController`.

Every path to a new current image (a click in the list, A / D) passes through the document's
"image" notification, and that is where the window reports the image's problem and asks the
engine for its detections. Undo history is per image (history.py): `stack` is the current
image's, and undo never leaves the image.

The window first, the engine after: building and showing the window imports no torch. The engine
thread starts once the canvas has painted for the first time, imports torch and the model code
there, and the window builds the stage inspector when it reports `engine_ready`; meanwhile the
status bar says "loading model…" and the requests made so far wait in the engine's queue."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QEvent, QSettings, QTimer, Signal
from PySide6.QtGui import QUndoStack
from PySide6.QtWidgets import QMainWindow, QMessageBox

from frcnn_core.errors import InputError
from frcnn_gui import actions, window_layout
from frcnn_gui.canvas import Canvas
from frcnn_gui.canvas.layers import class_colour
from frcnn_gui.document.document import Detection, Document
from frcnn_gui.document.save_lines import problem_line, saved_line, up_to_date_line
from frcnn_gui.editing.commands import AcceptDetectionsCommand, SetVerifiedCommand
from frcnn_gui.editing.history import ImageHistories
from frcnn_gui.engine.worker import EngineClient
from frcnn_gui.errors.controller import ErrorsController
from frcnn_gui.finetune.controller import FinetuneController
from frcnn_gui.inspector.funnel_panel import FunnelPanel
from frcnn_gui.inspector.stage_panel import StagesPanel
from frcnn_gui.labelling import Labelling
from frcnn_gui.panels.boxes_table import BoxesTable
from frcnn_gui.panels.classes import ClassesPanel
from frcnn_gui.panels.detections import DetectionsPanel
from frcnn_gui.panels.image_list import ImageListPanel
from frcnn_gui.panels.log import LogPanel
from frcnn_gui.panels.review import ReviewController, ReviewPanel
from frcnn_gui.panels.status import StatusPanel

AUTOSAVE_DELAY_MS = 300
MESSAGE_MS = 10_000  # how long a problem stays in the status bar
RECENT_FOLDERS = 10
TITLE = "Faster R-CNN Studio"


class MainWindow(QMainWindow):
    """`detections_shown` fires after each detection result reached the canvas, `model_ready`
    (the model's name) after each model load, `engine_failed` (one line) after each engine error,
    `engine_ready` once, when the engine has imported and `inspector` (None before) is built.

    model_name / weights / device: what the engine holds now (before the first load: what was
    asked for); a load that fails changes none of them."""

    detections_shown = Signal()
    model_ready = Signal(str)
    engine_failed = Signal(str)
    engine_ready = Signal()

    def __init__(self, model: str, weights: str, device: str = "auto", settings: QSettings | None = None):
        super().__init__()
        self.settings = settings or QSettings("frcnn-studio", "Faster R-CNN Studio")
        self.document = Document()
        self.history = ImageHistories(self.document, self)
        self.engine = EngineClient(self, start=False)  # started after the first paint: see eventFilter
        self.model_name, self.weights, self.device = model, weights, device
        self.loaded = None  # the engine's ModelLoaded, None until the first load succeeds
        self._loads: dict[int, tuple[str, str, str]] = {}  # request id -> (model, weights, device)
        self._best_first: list[Detection] = []  # the shown detections as the panel lists them
        self.canvas = Canvas(self.document, self.history)
        self.setCentralWidget(self.canvas)
        self.canvas.viewport().installEventFilter(self)
        self.inspector = None  # the StageInspector, built once the engine is ready
        self._build_panels()
        self.status = StatusPanel(self.statusBar())
        self.labelling = Labelling(self.document, self.history, self.canvas, self.classes_panel, self.settings,
                                   self.report, self)
        self.actions = actions.install(self)
        self._autosave = QTimer(self, singleShot=True, interval=AUTOSAVE_DELAY_MS, timeout=self.save)
        self.history.indexChanged.connect(lambda _: self._autosave.start())
        self.document.subscribe(self._document_changed)
        self._connect_engine()
        self.setWindowTitle(TITLE)
        self.default_state = self.saveState()  # "Restore default layout" goes back to it
        if not self.restoreGeometry(self.settings.value("geometry", b"")):
            self.resize(window_layout.first_size(self.screen().availableGeometry().size()))
        # first start: the docks get their default sizes for the size the window is first shown at
        self._size_docks_when_shown = not self.restoreState(self.settings.value("window_state", b""))
        self._shown_once = False
        self.load_model(model, weights, device)

    # --- construction -------------------------------------------------------------------
    def _build_panels(self) -> None:
        self.image_list = ImageListPanel(self.document)
        self.detections_panel = DetectionsPanel(threshold=0.5)
        self.boxes_table = BoxesTable(self.document, self.history)
        self.classes_panel = ClassesPanel(self.document, self.history, class_colour)
        self.log = LogPanel()
        self.stages_panel = StagesPanel()
        self.funnel_panel = FunnelPanel()
        self.finetuning = FinetuneController(self)
        self.errors = ErrorsController(self)
        self.docks = window_layout.add_docks(self, {
            "Images": self.image_list, "Stages": self.stages_panel, "Detections": self.detections_panel,
            "Boxes": self.boxes_table, "Classes": self.classes_panel, "Log": self.log,
            "Why missed?": self.funnel_panel, "Training run": self.finetuning.run_panel,
            "Runs": self.finetuning.runs_panel, "Review": ReviewPanel(), "Errors": self.errors.panel})
        self.stages_panel.stage_chosen.connect(lambda _stage: self._fit_stages_dock())
        self.review = ReviewController(self.document, self.canvas, self.docks["Review"],
                                       lambda command: self._push(lambda: command), self.report, self)
        self.image_list.image_chosen.connect(self.open_index)
        self.canvas.selection_changed.connect(self.boxes_table.set_selection)
        self.canvas.image_failed.connect(self.report)
        self.boxes_table.selection_changed.connect(self.canvas.set_selection)
        self.classes_panel.current_label_changed.connect(lambda name: setattr(self.canvas, "current_label", name))
        self.detections_panel.filter_changed.connect(self._filter_detections)
        self.detections_panel.accept_all.connect(self.accept_detections)
        self.detections_panel.accept_rows.connect(self.accept_detections)
        self.detections_panel.review_requested.connect(self.review.start)
        self.detections_panel.filter_changed.connect(lambda *_: self.review.refresh())
        self.detections_panel.picked.connect(lambda rows: self.canvas.detection_layer.set_picked(
            [self._best_first[row] for row in rows if row < len(self._best_first)]))

    def _build_inspector(self, import_seconds: float) -> None:
        """The stage inspector, once the engine is ready (the worker imported its modules)."""
        from frcnn_gui.inspector.controller import StageInspector

        self.inspector = StageInspector(self.stages_panel, self.canvas, self.document, self.engine, self)
        self.inspector.set_score_threshold(self.detections_panel.threshold())
        self.detections_panel.filter_changed.connect(lambda threshold, _: self.inspector.set_score_threshold(threshold))
        self.inspector.funnel_changed.connect(self.funnel_panel.set_rows)
        self.inspector.forgotten.connect(self.funnel_panel.reset)
        self.funnel_panel.row_chosen.connect(self.inspector.show_chain)
        self.funnel_panel.inspect_requested.connect(self.inspector.inspect)
        self.log.add(f"engine ready ({import_seconds:.1f} s to import torch and the model code)")
        self.engine_ready.emit()
        self._fit_stages_dock()  # the inspector added its stages' controls (the saliency stage's)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self._size_docks_when_shown:
            self._size_docks_when_shown = False
            window_layout.size_docks(self, self.docks)
        if not self._shown_once:  # a stage chosen before the window showed (frcnn-gui --stage) gets its room
            self._shown_once = True
            self._fit_stages_dock()

    def _fit_stages_dock(self) -> None:
        """Grow the Stages dock to the chosen stage's controls (window_layout.fit_dock), on the
        next turn of the event loop: the controls are shown and laid out by then."""
        QTimer.singleShot(0, self, lambda: window_layout.fit_dock(self.docks["Stages"]))

    def eventFilter(self, watched, event) -> bool:
        """The canvas's first paint starts the engine (the next turn of the event loop: after the
        window reached the screen); the filter then goes."""
        if watched is self.canvas.viewport() and event.type() == QEvent.Paint:
            watched.removeEventFilter(self)
            QTimer.singleShot(0, self.engine.start)
        return super().eventFilter(watched, event)

    def restore_default_layout(self) -> None:
        """Every dock shown, docked where it starts, sized for the window's current size."""
        window_layout.restore_default(self, self.docks, self.default_state)

    def _connect_engine(self) -> None:
        self.engine.engine_ready.connect(self._build_inspector)
        self.engine.model_loaded.connect(self._model_loaded)
        self.engine.result.connect(self._detections_arrived)
        self.engine.failed.connect(self._engine_failed)
        self.engine.busy.connect(self.status.set_busy)
        self.engine.progress.connect(lambda _id, stage: self.status.show_stage(stage))

    @property
    def stack(self) -> QUndoStack:
        """The current image's undo stack."""
        return self.history.current

    # --- images -------------------------------------------------------------------------
    def open_path(self, path: str | Path) -> None:
        """A folder, or an image (its folder opens, that image first)."""
        path = Path(path)
        folder = path if path.is_dir() else path.parent
        if not self._saved_or_stay():
            return
        try:
            self.document.open_folder(folder)
        except InputError as error:
            self.report(str(error))
            return
        self.history.clear()
        self._remember(folder)
        if not self.document.images:
            self.report(f"{folder}: no images in this folder")
            return
        self.log.add(f"opened {folder} ({len(self.document.images)} images)")
        index = 0
        if path.is_file():
            try:
                index = self.document.image_index(path)
            except ValueError as error:
                self.report(str(error))
        self.open_index(index)

    def _remember(self, folder: Path) -> None:
        recent = [str(folder)] + [name for name in self.recent_folders() if name != str(folder)]
        self.settings.setValue("last_folder", str(folder))
        self.settings.setValue("recent_folders", recent[:RECENT_FOLDERS])

    def recent_folders(self) -> list[str]:
        return [str(name) for name in self.settings.value("recent_folders", [], type=list)]

    def open_index(self, index: int) -> None:
        if 0 <= index < len(self.document.images) and index != self.document.current_index \
                and self._saved_or_stay():
            self.document.open_image(index)

    def _saved_or_stay(self) -> bool:
        """Save the current image before leaving it; False (and we stay) when that failed."""
        if self.save() is None:
            return True
        self.report("stayed on this image: undo its edits to leave it without saving them")
        return False

    def step_image(self, delta: int) -> None:
        current = self.document.current_index
        self.open_index(0 if current is None else min(max(current + delta, 0), len(self.document.images) - 1))

    def _document_changed(self, kind: str) -> None:
        if kind == "image" and self.document.current_index is not None:
            entry = self.document.images[self.document.current_index]
            if entry.error:
                self.report(entry.error)
            for line in self.document.problems:
                self.log.add(line)
            self.detect()
        if kind in ("image", "detections"):
            self._show_counts()
        if kind in ("image", "images", "boxes", "verified", "saved"):
            self._update_title()

    def _update_title(self) -> None:
        path = self.document.current_path
        flags = " (verified)" if self.document.verified else ""
        self.setWindowTitle(f"{path.name}{flags}[*] — {TITLE}" if path else TITLE)
        self.setWindowModified(self.document.dirty)

    def save(self) -> str | None:
        """Save the current image's edits (autosave, leaving an image). Returns None, or the
        problem in one line, reported; the edits then stay in memory."""
        try:
            saved = self.document.save()
        except (OSError, ValueError) as error:
            return self._not_saved(error)
        if saved:
            self.statusBar().showMessage(saved_line(saved, self.document), 1500)
        return None

    def save_now(self) -> None:
        """Ctrl+S: save the current image; one without a file gets its empty annotation
        (labelImg's "seen, nothing here"). The status bar and the log say what was written."""
        document = self.document
        if document.image_size is None:
            self.report(f"nothing to save: {document.read_only_reason or 'no image is open'}")
            return
        try:
            saved = document.save(seen=True)
        except (OSError, ValueError) as error:
            self._not_saved(error)
            return
        if saved:
            line = saved_line(saved, document)
        elif document.read_only_reason:
            line = f"nothing to save: no edits ({document.read_only_reason})"
        else:
            line = up_to_date_line(document.images[document.current_index].annotation_path, document)
        self.log.add(line)
        self.statusBar().showMessage(line, MESSAGE_MS)

    def _not_saved(self, error: OSError | ValueError) -> str:
        problem = problem_line(error)
        self.report(f"not saved: {problem}; the edits are kept in memory")
        return problem

    def report(self, message: str) -> None:
        """A one-line problem: in the log and, for a while, the status bar."""
        self.log.add(message)
        self.statusBar().showMessage(message, MESSAGE_MS)

    def _push(self, make_command) -> None:
        """Push the command `make_command()` builds; a ValueError (no image, nothing to do) is reported."""
        try:
            self.history.push(make_command())
        except ValueError as error:
            self.report(str(error))

    def toggle_verified(self) -> None:
        self._push(lambda: SetVerifiedCommand(self.document, not self.document.verified))

    # --- model and detections ---------------------------------------------------------------
    def load_model(self, model: str, weights: str, device: str | None = None) -> int:
        """Ask the engine for another model; answered by model_ready or engine_failed."""
        device = device or self.device
        request_id = self.engine.load_model(model, weights, device, amp=True)  # AMP applies on CUDA only
        self._loads[request_id] = (model, weights, device)
        self.status.show_loading(model)
        return request_id

    def detect(self) -> int | None:
        """Ask for the current image's detections; None when there is no readable image."""
        if self.document.image_size is None:
            return None
        return self.engine.detect(str(self.document.current_path))

    def _model_loaded(self, loaded) -> None:
        asked = (self.model_name, self.weights, self.device)
        self.model_name, self.weights, self.device = self._loads.pop(loaded.request_id, asked)
        self.loaded = loaded
        for key in ("model", "weights", "device"):
            self.settings.setValue(key, getattr(self, key if key != "model" else "model_name"))
        self.status.show_model(self.model_name, loaded)
        actions.show_model(self)
        self.detections_panel.set_class_names(loaded.class_names[1:])
        self.log.add(f"model {self.model_name} ({loaded.model_name}) ready on {loaded.device} ({loaded.seconds:.1f} s)")
        self.model_ready.emit(self.model_name)
        self.detect()

    def _detections_arrived(self, result) -> None:
        names, found = result.class_names, result.detections
        detections = [
            Detection(tuple(float(v) for v in box), float(score), names[int(label)])
            for box, score, label in zip(found["boxes"].tolist(), found["scores"].tolist(), found["labels"].tolist(),
                                         strict=True)
        ]
        if self.document.current_path is not None and Path(result.image_path) == self.document.current_path:
            self.document.set_detections(detections)  # the layer applies the panel's threshold and filter
        self.status.show_timing(result.seconds)
        self.log.add(f"{Path(result.image_path).name}: {len(detections)} detections in {result.seconds:.2f} s")
        self.detections_shown.emit()

    def _engine_failed(self, error) -> None:
        self.log.add(error.message + (f"\n{error.traceback}" if error.traceback else ""))
        self.statusBar().showMessage(error.message, MESSAGE_MS)
        if self._loads.pop(error.request_id, None) is not None:
            self.status.show_model(self.model_name, self.loaded)
            actions.show_model(self)
            if self.loaded is not None:
                self.log.add(f"still using {self.model_name}")
        self.engine_failed.emit(error.message)

    def _filter_detections(self, threshold: float, class_name: str) -> None:
        layer = self.canvas.detection_layer
        layer.set_class_filter([class_name] if class_name else None)
        layer.set_score_threshold(threshold)
        self._show_counts()

    def _show_counts(self) -> None:
        self._best_first = sorted(self.canvas.detection_layer.shown, key=lambda d: -d.score)
        self.detections_panel.set_shown(self._best_first, len(self.document.detections))

    def accept_detections(self, rows: list[int] | None = None) -> None:
        """Add the shown detections (or the given rows of them) as GT boxes, one undo step; those
        AcceptDetectionsCommand skips (on a GT box of their class, duplicates, rejected in review,
        outside the image) are left out, and the status bar and the log say how many."""
        shown = self.canvas.detection_layer.shown
        chosen = shown if rows is None else [self._best_first[row] for row in rows if row < len(self._best_first)]
        try:
            rejected = self.review.rejections.of(self.document.current_path)
            command = AcceptDetectionsCommand(self.document, chosen, rejected)
        except ValueError as error:
            self.report(str(error))
            return
        self._push(lambda: command)
        self.report(command.summary)

    def closeEvent(self, event) -> None:
        self._autosave.stop()
        if self.save() is not None and not self._may_lose_edits():
            event.ignore()
            return
        if not self.finetuning.confirm_close():  # a run is training and the user keeps it
            event.ignore()
            return
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("window_state", self.saveState())
        self.engine.shutdown()
        super().closeEvent(event)

    def _may_lose_edits(self) -> bool:
        """Asked when the edits could not be saved on closing: True to close all the same."""
        answer = QMessageBox.question(self, "Edits not saved", "This image's edits could not be saved (see the "
                                      "log). Close and lose them?", QMessageBox.Yes | QMessageBox.No, QMessageBox.No)
        return answer == QMessageBox.Yes
