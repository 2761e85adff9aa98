"""The fine-tuning loop inside the main window: annotate, train, compare, correct, repeat.

`FinetuneController` connects the Fine-tune dialog, the runner (training in its own thread), the
Training run panel (live curves, progress, Cancel / Resume, metrics before and after) and the Runs
panel to the window: previews of the model being trained replace the current image's detections
while it trains. A finished run's model becomes the current one when its validation AP50 is not
lower than the base model's on the classes both know; when it is lower the window asks ("Use the
new model" / "Keep the current model"). When the two cannot be compared (no shared class, or the
base model had no trained detection head) the window switches, since the user trained the new
model for these classes, and the log says why. The model a switch replaced stays one click away
(`use_previous_model`, and in the model picker). The base and the fine-tuned model are compared on
each image shown, on their shared classes, in the run panel's counts and, when asked, on the
canvas (gained green, lost red, changed class orange). Closing the window during a run asks first.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QDialog, QMessageBox

from frcnn_core.errors import InputError
from frcnn_core.training.runs import FINAL_CHECKPOINT, ap50_fell, read_log, summarize_run
from frcnn_gui.canvas.layers import BoxSetLayer
from frcnn_gui.document.document import Detection
from frcnn_gui.finetune.run_panel import RunPanel
from frcnn_gui.finetune.runner import FinetuneRunner
from frcnn_gui.finetune.runs_panel import RunsPanel
from frcnn_gui.finetune.text import before_after, format_ap, is_compared, verdict_line
from frcnn_gui.panels.status import model_title
from frcnn_gui.window_layout import dock_of

if TYPE_CHECKING:  # the window imports this module before the engine has imported torch
    from frcnn_core.training.finetune import FinetunePlan
    from frcnn_gui.finetune.dialog import FinetuneDialog

DEFAULT_RUNS_DIR = Path.home() / "frcnn-studio" / "runs"
RUN_DOCK_MAX = 0.4  # of the window's height: the most the Training run dock grows to show a run whole
COMPARE_LAYER_Z = 12  # above the detections (10), below the stage overlays (15) and the GT boxes (20)
GAINED, LOST, CHANGED = QColor("#3cb44b"), QColor("#e6194b"), QColor("#f58231")


class FinetuneController(QObject):
    """`model_switched(checkpoint)` fires when a finished run's model is asked for as the current
    one. `plan` is the run last started or opened (None before any). `switch_question`: the
    open "Use the new model?" box while the window waits for the answer, else None."""

    model_switched = Signal(str)

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.runner = FinetuneRunner(self)
        self.run_panel = RunPanel()
        self.runs_panel = RunsPanel(self.runs_dir)
        self.plan: FinetunePlan | None = None
        self.previous_model: tuple[str, str] | None = None  # (model, weights) a finished run replaced
        self.switch_question: QMessageBox | None = None
        self.compare_layer = BoxSetLayer()
        self.compare_layer.setVisible(False)
        window.canvas.add_layer(self.compare_layer, COMPARE_LAYER_Z)
        self.runner.progress.connect(self.run_panel.add)
        self.runner.preview.connect(self._preview)
        self.runner.finished.connect(self._finished)
        self.runner.failed.connect(self._failed)
        self.runner.log_message.connect(window.log.add)
        self.runner.image_compared.connect(self._image_compared)
        self.run_panel.cancel_requested.connect(self.runner.cancel)
        self.run_panel.resume_requested.connect(self.resume)
        self.runs_panel.open_run.connect(self.open_run)
        self.runs_panel.use_model.connect(lambda checkpoint: self._use(checkpoint))
        window.document.subscribe(self._document_changed)

    @property
    def runs_dir(self) -> Path:
        return Path(self.window.settings.value("runs_dir", str(DEFAULT_RUNS_DIR)))

    # --- starting --------------------------------------------------------------------------
    def dialog(self) -> FinetuneDialog:
        """The Fine-tune dialog for the open folder and the current model (saved first: the
        dialog reads the annotations from disk)."""
        from frcnn_gui.finetune.dialog import FinetuneDialog  # torch: imported when first needed, not with the window

        window = self.window
        window.save()
        folder = window.document.folder
        current = (model_title(window.model_name), window.model_name, window.weights) if window.loaded else None
        dialog = FinetuneDialog(str(folder) if folder else None, current, str(self.runs_dir), window, window.settings)
        if self.runner.last_timing is not None:
            dialog.set_time_per_iteration(*self.runner.last_timing)
        return dialog

    def open_dialog(self) -> None:
        if self.runner.is_running():
            self.window.report("a fine-tuning run is already running: cancel it first")
            return
        dialog = self.dialog()
        if dialog.exec() == QDialog.Accepted and dialog.plan is not None:
            self.start(dialog.plan, dialog.preview_every())

    def start(self, plan: FinetunePlan, preview_every: int = 0, resume: bool = False) -> None:
        """Train `plan` (resume: from its last.pt), previewing the current image every
        `preview_every` iterations (0: never)."""
        self.plan = plan
        runs_dir = Path(plan.settings.out).parent
        self.window.settings.setValue("runs_dir", str(runs_dir))
        self.runs_panel.set_runs_dir(runs_dir)
        records = _log(Path(plan.settings.out), self.window) if resume else []
        self.run_panel.begin(plan.settings.out, plan.settings.iters or 0, records)
        self._show_run_panel()
        image = self.window.document.current_path
        self.runner.start(plan, str(image) if image else None, preview_every, resume)
        length = f"{plan.settings.minutes:g} minutes" if plan.settings.minutes else f"{plan.settings.iters} iterations"
        self.window.log.add(f"fine-tuning {plan.base_model} → {plan.settings.out} ({'resumed' if resume else length})")
        for line in () if resume else plan.why:
            self.window.log.add(f"why: {line}")
        self.runs_panel.refresh()

    def resume(self, run_dir: Path) -> None:
        from frcnn_core.training.finetune import load_plan  # torch: imported when first needed, not with the window

        try:
            plan = load_plan(run_dir)
        except InputError as error:
            self.window.report(str(error))
            return
        self.start(plan, resume=True)

    def open_run(self, run_dir: Path) -> None:
        """Show a past run: its curves, state and metrics; its model is compared on the image shown."""
        from frcnn_core.training.finetune import load_plan  # torch: imported when first needed, not with the window

        self.run_panel.show_run(summarize_run(run_dir), _log(run_dir, self.window))
        self._show_run_panel()
        try:
            self.plan = load_plan(run_dir)
        except InputError as error:
            self.window.report(str(error))
            self.plan = None
            return
        self._compare_current()

    # --- while it runs and after -------------------------------------------------------------
    def _preview(self, preview) -> None:
        """The model being trained on the current image: shown as its detections meanwhile."""
        document = self.window.document
        if document.current_path is None or Path(preview.image_path) != document.current_path:
            return
        rows = zip(preview.boxes.tolist(), preview.labels.tolist(), preview.scores.tolist(), strict=True)
        document.set_detections([Detection(tuple(box), score, preview.class_names[label])
                                 for box, label, score in rows])
        self.window.status.show_stage(f"preview: iteration {preview.iteration}")

    def _finished(self, result) -> None:
        self.run_panel.finish(result, _log(result.run_dir, self.window))
        self._fit_run_dock()  # room for the metrics that came with the end
        self.runs_panel.refresh()
        final = result.final
        self.window.log.add(f"{result.run_dir.name}: {final.event} at iteration {final.iteration}"
                            + (f" — {final.message}" if final.message and final.event != "done" else ""))
        if final.event == "done":
            self._offer(result)
        self._compare_current()

    def _offer(self, result) -> None:
        """Switch to the finished run's model, or ask first when its validation AP50 fell."""
        name, checkpoint, metrics = result.run_dir.name, result.run_dir / FINAL_CHECKPOINT, result.metrics or {}
        self.window.log.add(f"{name}: {verdict_line(metrics)}")
        if not ap50_fell(metrics):
            self.window.log.add(f"{name}: switching to the new model — {_switch_reason(metrics)}")
            self._use(checkpoint)
            return
        block = before_after(metrics)
        box = QMessageBox(QMessageBox.Question, "The new model scores lower",
                          f"Validation AP50 on {', '.join(block['classes'])} fell from "
                          f"{format_ap(block['before']['AP50'])} (the base model) to "
                          f"{format_ap(block['after']['AP50'])} (the new model). Use the new model anyway?",
                          parent=self.window)
        use = box.addButton("Use the new model", QMessageBox.AcceptRole)
        keep = box.addButton("Keep the current model", QMessageBox.RejectRole)
        box.setDefaultButton(keep)
        box.setEscapeButton(keep)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.finished.connect(lambda _result: self._answered(box.clickedButton() is use, name, checkpoint))
        self.switch_question = box
        box.open()

    def _answered(self, use_new: bool, name: str, checkpoint: Path) -> None:
        self.switch_question = None
        if use_new:
            self.window.log.add(f"{name}: switching to the new model, as asked")
            self._use(checkpoint)
        else:
            self.window.log.add(f"{name}: kept the current model; the new one is in the Runs panel")

    def _failed(self, message: str) -> None:
        self.run_panel.fail(message)
        self.window.report(message)
        self.runs_panel.refresh()

    def _use(self, checkpoint: Path) -> None:
        """Make `checkpoint` the current model, remembering the one it replaces."""
        window = self.window
        if str(checkpoint) != window.model_name:
            self.previous_model = (window.model_name, window.weights)
        window.load_model(str(checkpoint), "none")
        self.model_switched.emit(str(checkpoint))

    def use_previous_model(self) -> None:
        """Back to the model the last switch replaced (and the switch stays one click away too)."""
        if self.previous_model is None:
            self.window.report("no previous model: no fine-tuned model was switched to yet")
            return
        model, weights = self.previous_model
        self.previous_model = (self.window.model_name, self.window.weights)
        self.window.load_model(model, weights)

    # --- before / after on the image shown ---------------------------------------------------
    def set_comparison_shown(self, shown: bool) -> None:
        self.compare_layer.setVisible(shown)

    def _document_changed(self, kind: str) -> None:
        if kind == "image":
            self.compare_layer.set_boxes(np.zeros((0, 4)), GAINED)
            self._compare_current()

    def _compare_current(self) -> None:
        """Ask for the base and the fine-tuned model on the current image once the run has a
        checkpoint and is not training."""
        path = self.window.document.current_path
        run = None if self.plan is None else Path(self.plan.settings.out)
        if path is None or run is None or self.runner.is_running():
            return
        if (run / "final.pt").exists() or (run / "last.pt").exists():
            self.runner.compare_image(self.plan, str(path))

    def _image_compared(self, compared) -> None:
        if Path(compared.image_path) != self.window.document.current_path:
            return
        view = self.run_panel.comparison
        view.setVisible(True)
        view.set_note(compared.overlap.note(), comparable=compared.comparison is not None)
        if compared.comparison is None:  # nothing to compare on: no boxes drawn, the reason shown
            self.compare_layer.set_boxes(np.zeros((0, 4)), GAINED)
            return
        view.set_comparison(compared.comparison, "image")
        entry = compared.comparison.per_image[0]
        names = compared.class_names

        def name(label: int) -> str:
            return names[label] if label < len(names) else str(label)

        drawn = ([(item, LOST, f"lost: {name(item['label'])}") for item in entry["lost"]]
                 + [(item, CHANGED, f"{name(item['before_label'])} → {name(item['label'])}")
                    for item in entry["changed"]]
                 + [(item, GAINED, f"gained: {name(item['label'])}") for item in entry["gained"]])
        boxes = np.array([item["box"] for item, _, _ in drawn], dtype=np.float64).reshape(-1, 4)
        self.compare_layer.set_boxes(boxes, [colour for _, colour, _ in drawn], 2.5,
                                     [f"{tag} {item['score']:.2f}" for item, _, tag in drawn])

    # --- closing ---------------------------------------------------------------------------
    def confirm_close(self) -> bool:
        """True when the window may close: no run, or the user agreed to cancel it (then it is
        cancelled and its thread joined; last.pt keeps the run)."""
        if self.runner.is_running():
            answer = QMessageBox.question(self.window, "Fine-tuning is running",
                                          "A fine-tuning run is in progress. Cancel it (its last checkpoint is kept) "
                                          "and quit?", QMessageBox.Yes | QMessageBox.No, QMessageBox.No)
            if answer != QMessageBox.Yes:
                return False
        self.runner.shutdown()
        return True

    def _show_run_panel(self) -> None:
        dock = dock_of(self.run_panel)
        if dock is not None:
            dock.show()
            dock.raise_()
            self._fit_run_dock()

    def _fit_run_dock(self) -> None:
        """The Training run dock tall enough to show the run panel as it likes (its curves and
        metrics without scrolling), at most RUN_DOCK_MAX of the window; never made lower."""
        dock = dock_of(self.run_panel)
        if dock is None or dock.isFloating() or not dock.isVisible():
            return
        chrome = dock.height() - dock.widget().viewport().height()  # title bar, tabs, frame
        wanted = min(self.run_panel.sizeHint().height() + chrome, round(RUN_DOCK_MAX * self.window.height()))
        if dock.height() < wanted:
            self.window.resizeDocks([dock], [wanted], Qt.Vertical)


def _log(run_dir: Path, window) -> list[dict]:
    try:
        return read_log(run_dir)
    except InputError as error:
        window.report(str(error))
        return []


def _switch_reason(metrics: dict) -> str:
    """Why a finished run's model is used without asking (its AP50 did not fall)."""
    if not is_compared(metrics):
        return "the base model cannot be compared with it, and it was trained for these classes"
    if before_after(metrics)["after"].get("AP50") is None:
        return "no validation images to compare on"
    return "its validation AP50 is not lower than the base model's"
