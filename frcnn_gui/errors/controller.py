"""The Errors view inside the main window: where the current model fails across the open folder.

`open()` (View > Errors across the folder…) shows the dock and, when it has no analysis of this
folder with this model, runs one: the engine thread analyses every image against its annotation
file as saved (the current image's edits are saved first), at the Detections panel's score
threshold, with progress and Cancel in the dock. Images without an annotation file are left out
and listed. The table lists the analysed images, worst first; a click opens the image, whose
hits and errors the canvas draws in one colour per verdict, and a click on one of its errors
draws that error's chain and says it in words. The image list shows each image's error count.

Editing an image's annotation makes its row again once it is saved (autosave, Ctrl+S): the
engine runs the model on that image alone and the report is summarized again; an image left out
for want of a file joins the table once it has one. When the model changes,
the view asks whether to run again (when it is shown; else it runs again when opened).
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QMessageBox

from frcnn_core.data.samples import BACKGROUND
from frcnn_gui.canvas.layers import BoxSetLayer
from frcnn_gui.engine.messages import FolderImage
from frcnn_gui.errors import drawing
from frcnn_gui.errors.panel import ErrorsPanel
from frcnn_gui.errors.rows import errors_of, table_lines
from frcnn_gui.errors.texts import chain_text, error_line
from frcnn_gui.panels.status import model_title
from frcnn_gui.window_layout import dock_of, show_aside


class ErrorsController(QObject):
    """`report` is the analysis shown (None before one, after another folder opens); `running`
    the request id of the pass under way (None when none is); `listed` the current image's errors
    as the dock lists them. `rerun_question` is the open "Run again?" box while the window waits
    for the answer. report_shown, image_shown and chain_shown
    fire after each report, image's errors and chain reached the view."""

    report_shown = Signal()
    image_shown = Signal()
    chain_shown = Signal()

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.panel = ErrorsPanel()
        self.report = None
        self.running: int | None = None
        self.rerun_question: QMessageBox | None = None
        self._pass_id: int | None = None  # the request id of the pass `report` belongs to
        self._folder: Path | None = None  # the folder `report` or the running pass is of
        self._made_with: tuple[str, str] | None = None  # (model, weights) of `report`
        self._running_with: tuple[str, str] | None = None
        self._waiting: set[Path] = set()  # images saved while a pass ran: made again after it
        self.listed: list = []
        self.verdicts = BoxSetLayer()
        self.chain = BoxSetLayer()
        window.canvas.add_layer(self.verdicts, drawing.VERDICTS_Z)
        window.canvas.add_layer(self.chain, drawing.CHAIN_Z)
        self._set_layers_visible(False)
        engine = window.engine
        engine.errors_done.connect(self._arrived)
        engine.errors_progress.connect(self._progress)
        engine.failed.connect(self._failed)
        self.panel.run_requested.connect(self.run)
        self.panel.cancel_requested.connect(self.cancel)
        self.panel.view_changed.connect(self._show_all)
        self.panel.image_chosen.connect(self._open_image)
        self.panel.error_chosen.connect(self._show_chain)
        self.panel.visibility_changed.connect(self._set_layers_visible)
        window.model_ready.connect(self._model_changed)
        window.document.subscribe(self._document_changed)

    # --- the pass ---------------------------------------------------------------------------
    def open(self) -> None:
        """Show the dock; run the analysis when it holds none of this folder with this model."""
        show_aside(dock_of(self.panel))
        if self.running is None and (self.report is None or self._made_with != self._model()):
            self.run()

    def run(self) -> None:
        """Analyse every image of the open folder with the current model (the current image's
        edits saved first: the engine reads the annotation files)."""
        window, document = self.window, self.window.document
        if document.folder is None:
            window.report("open a folder first: the error analysis looks at its images")
            return
        window.save()
        images = [FolderImage(str(entry.path), str(entry.annotation_path)) for entry in document.images]
        self.running = window.engine.analyse_errors(images, [BACKGROUND, *document.classes],
                                                    window.detections_panel.threshold(), window.model_name)
        self._folder, self._running_with = document.folder, self._model()
        self.panel.set_running(0, len(images))
        window.log.add(f"error analysis of {len(images)} images with {model_title(window.model_name)} started")

    def cancel(self) -> None:
        """Stop the pass under way (after its current image); the previous analysis stays shown."""
        if self.running is None:
            return
        self.window.engine.cancel_errors()
        self.running = None
        self.panel.set_idle("cancelled" + ("; the previous analysis is shown" if self.report else ""),
                            "Run again" if self.report else "Run")
        self.window.log.add("error analysis cancelled")

    def _model(self) -> tuple[str, str]:
        return self.window.model_name, self.window.weights

    def _progress(self, request_id: int, done: int, total: int) -> None:
        if request_id == self.running:
            self.panel.set_running(done, total)

    def _failed(self, error) -> None:
        if error.request_id == self.running:
            self.running = None
            self.panel.set_idle(f"the analysis failed: {error.message}")

    def _arrived(self, result) -> None:
        if result.request.update_of is None:
            if result.request.request_id != self.running:
                return
            self.running, self._made_with = None, self._running_with
            report = result.report
            self.panel.set_idle(f"{len(report.images)} images analysed in {result.seconds:.1f} s; "
                                f"{len(report.left_out)} left out")
            self.window.log.add(f"error analysis: {len(report.images)} images in {result.seconds:.1f} s, "
                                f"AP50 {report.tide.ap50:.1f}")
        elif result.pass_id != self._pass_id:
            return  # an update of an analysis no longer shown
        self.report, self._pass_id = result.report, result.pass_id
        self._show_all()
        self.report_shown.emit()
        if self._waiting and self.running is None:
            self._update(self._waiting)
            self._waiting = set()

    def _update(self, paths: set[Path]) -> None:
        """Ask for the rows of these images again, from their files as saved now."""
        document, report = self.window.document, self.report
        entries = [entry for entry in document.images if entry.path in paths]
        self.window.engine.analyse_errors([FolderImage(str(entry.path), str(entry.annotation_path))
                                           for entry in entries], report.class_names, report.score_thresh,
                                          report.model, update_of=self._pass_id)

    # --- what the view shows ------------------------------------------------------------------
    def _show_all(self) -> None:
        """The report's summary, its table, the image list's counts, the current image's errors."""
        report, document = self.report, self.window.document
        if report is None:
            return
        self.panel.show_report(report, self._folder)
        places = {str(entry.path): place for place, entry in enumerate(document.images)}
        class_name, error_type = self.panel.filters()
        lines = table_lines(report.images, places, class_name, error_type, self.panel.sort_column,
                            self.panel.descending)
        self.panel.show_lines(lines, str(document.current_path))
        self.window.image_list.set_error_counts({Path(row.image_path): row.error_count for row in report.images})
        self._show_current()

    def _row(self, path: Path | None):
        if self.report is None or path is None:
            return None
        return next((row for row in self.report.images if Path(row.image_path) == path), None)

    def _show_current(self) -> None:
        """Draw the current image's hits and errors and list its errors (those the filters keep)."""
        path = self.window.document.current_path
        row = self._row(path)
        drawing.clear(self.chain)
        self.verdicts.setOpacity(1.0)
        if row is None:
            drawing.clear(self.verdicts)
            self.listed = []
            self.panel.show_errors(f"{path.name}: not analysed" if path and self.report else "", [])
            return
        drawing.show_verdicts(self.verdicts, row)
        self.listed = errors_of(row, *self.panel.filters())
        self.panel.show_errors(f"{path.name}: {row.error_count} errors, {len(row.hits)} hits", [
            error_line(error) for error in self.listed])
        self.panel.select_image(str(path))
        self.image_shown.emit()

    def _show_chain(self, index: int) -> None:
        error = self.listed[index]
        drawing.show_chain(self.chain, error)
        self.verdicts.setOpacity(drawing.DIMMED_OPACITY)
        self.panel.chain.setText(chain_text(error))
        self.chain_shown.emit()

    def _open_image(self, path: str) -> None:
        document = self.window.document
        try:
            index = document.image_index(path)
        except ValueError as error:
            self.window.report(str(error))
            return
        if index == document.current_index:
            self._show_current()
        else:
            self.window.open_index(index)
            self.panel.select_image(str(document.current_path))  # still the current one when it could not be left

    def _set_layers_visible(self, visible: bool) -> None:
        self.verdicts.setVisible(visible)
        self.chain.setVisible(visible)

    # --- what changes underneath ---------------------------------------------------------------
    def _document_changed(self, kind: str) -> None:
        document = self.window.document
        if kind == "images" and document.folder != self._folder:
            self._forget()
        elif kind == "image":
            self._show_current()
        elif kind == "saved":  # the image saved is the current one, also when it is being left
            if self.running is not None:
                self._waiting.add(document.current_path)
            elif self.report is not None:
                self._update({document.current_path})

    def _forget(self) -> None:
        """Another folder is open: the analysis of the last one goes, a pass under way stops."""
        if self.running is not None:
            self.window.engine.cancel_errors()
        self.report = self.running = self._pass_id = self._made_with = None
        self._folder, self._waiting = self.window.document.folder, set()
        self.panel.clear()
        self.window.image_list.set_error_counts({})
        self._show_current()

    def _model_changed(self, _name: str) -> None:
        if self.report is None or self._made_with == self._model():
            return
        made_with = model_title(self._made_with[0])
        self.panel.set_idle(f"made with {made_with}; the current model is {model_title(self.window.model_name)}")
        if self.panel.isVisible() and self.rerun_question is None:
            self._ask_to_run(made_with)

    def _ask_to_run(self, made_with: str) -> None:
        box = QMessageBox(QMessageBox.Question, "The model changed",
                          f"The Errors view shows the errors of {made_with}. Analyse the folder again with "
                          f"{model_title(self.window.model_name)}?", parent=self.window)
        run = box.addButton("Run again", QMessageBox.AcceptRole)
        later = box.addButton("Not now", QMessageBox.RejectRole)
        box.setDefaultButton(run)
        box.setEscapeButton(later)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.finished.connect(lambda _result: self._answered(box.clickedButton() is run))
        self.rerun_question = box
        box.open()

    def _answered(self, run: bool) -> None:
        self.rerun_question = None
        if run:
            self.run()
