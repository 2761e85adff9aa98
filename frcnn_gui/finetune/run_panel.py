"""The dock content for one run: a status line, the progress bar with speed and time left, Cancel
and Resume, the loss curves, a budgeted run's validation curve with its best checkpoint, and once
the run is done the before/after metrics. A budgeted run's total is its current plan, which may
change with every record (none before the first plan: the bar then only shows that it works).

It shows either the live run (`begin`, `add`, `finish`, `fail`, fed from FinetuneRunner's
signals) or a past one (`show_run`, fed from the run folder). It holds no run state of its own
beyond the folder it shows, which Resume hands back.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from frcnn_core.training.runs import BEST_CHECKPOINT, CANCELLED, FINAL_CHECKPOINT, FINISHED, STOPPED, RunSummary
from frcnn_gui.finetune.before_after import ComparisonView
from frcnn_gui.finetune.curves import LossCurves
from frcnn_gui.finetune.text import before_after, format_ap, format_duration
from frcnn_gui.finetune.validation_curve import ValidationCurve

if TYPE_CHECKING:  # the window imports this module before the engine has imported torch
    from frcnn_gui.finetune.messages import FinetuneResult

PROBLEM_STYLE = "color: #c62828"
ENDED = {"done": "finished", "cancelled": "cancelled", "stopped": "stopped"}


def progress_text(progress) -> str:
    """'37 / 100 · 2.4 images/s · about 1 min 15 s left' for a Progress; '37 / planning…' for a
    budgeted run that has not planned its iterations yet."""
    speed = f" · {progress.images_per_s:.1f} images/s" if progress.images_per_s > 0 else ""
    left = format_duration(progress.eta_s)
    total = progress.total or "planning…"
    return f"{progress.iteration} / {total}{speed}" + (f" · about {left} left" if progress.eta_s > 0 else "")


def validated_text(validation: dict) -> str:
    """'validation AP50 41.2 at iteration 120 (the best so far)' for a "validated" record's dict."""
    best = " (the best so far)" if validation.get("best") else ""
    return f"validation AP50 {format_ap(validation['AP50'])} at iteration {validation['iteration']}{best}"


class RunPanel(QWidget):
    cancel_requested = Signal()
    resume_requested = Signal(Path)  # the shown run folder (a cancelled or stopped run)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.run_dir: Path | None = None
        # one line, cut at the dock's edge (the tooltip holds it whole): a wrapping label would make the
        # dock's scroll area hold the panel at its preferred height, the curves then scrolling out of view
        self.status = QLabel("No fine-tuning run yet.")
        self.status.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        self.progress = QProgressBar(textVisible=True)
        self.progress.setFormat("")
        self.cancel_button, self.resume_button = QPushButton("Cancel"), QPushButton("Resume")
        self.cancel_button.setToolTip("Stop after the current iteration; last.pt keeps the run so far")
        self.resume_button.setToolTip("Continue the run from its last checkpoint")
        self.cancel_button.clicked.connect(self._cancel)
        self.resume_button.clicked.connect(lambda: self.run_dir and self.resume_requested.emit(self.run_dir))
        self.curves = LossCurves()
        self.validation = ValidationCurve()
        self.validation.plot.setXLink(self.curves.loss_plot)
        self.comparison = ComparisonView()
        self.comparison.setMinimumWidth(340)  # before, after and change readable beside the curves
        row = QHBoxLayout()
        row.addWidget(self.progress, stretch=1)
        row.addWidget(self.cancel_button)
        row.addWidget(self.resume_button)
        splitter = QSplitter(Qt.Horizontal)  # side by side: the dock stays short, the canvas tall
        for widget, stretch in ((self.curves, 3), (self.validation, 2), (self.comparison, 2)):
            splitter.addWidget(widget)
            splitter.setStretchFactor(splitter.count() - 1, stretch)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.status)
        layout.addLayout(row)
        layout.addWidget(splitter, stretch=1)
        self.comparison.setVisible(False)  # until a run has metrics
        self._set_running(False, resumable=False)

    # --- the live run -----------------------------------------------------------------------
    def begin(self, run_dir: str | Path, total: int, records: list[dict] = ()) -> None:
        """A run starts (or resumes) in `run_dir`; `records`: its log so far when resuming."""
        self.run_dir = Path(run_dir)
        self._show_status("starting…")
        self._show_iterations(0, total)
        self.curves.set_records(list(records))
        self.validation.set_records(list(records))
        self.comparison.clear()
        self.comparison.setVisible(False)
        self._set_running(True, resumable=False)

    def add(self, progress) -> None:
        """A Progress of the live run."""
        self.progress.setRange(0, max(progress.total, progress.iteration) if progress.total else 0)  # 0: busy
        self.progress.setValue(progress.iteration)
        self.progress.setFormat(progress_text(progress))
        self.curves.add(progress)
        self.validation.add(progress)
        if progress.event == "started":
            self._show_status(f"training · {progress.message.splitlines()[0]}" if progress.message else "training")
        elif progress.event == "validated" and progress.validation:
            self._show_status(f"training · {validated_text(progress.validation)}")
        elif progress.event == "checkpoint":
            self._show_status(f"training · checkpoint saved at iteration {progress.iteration}")
        elif progress.event == "done":  # the runner scores the run next
            self._show_status("trained · scoring it on the validation images…")

    def finish(self, result: FinetuneResult, records: list[dict]) -> None:
        """The run ended; `records`: its whole log (the live curves saw a thinned stream)."""
        final = result.final
        self.run_dir = result.run_dir
        self.curves.set_records(records)
        self.validation.set_records(records, FINAL_CHECKPOINT if final.event == "done" else BEST_CHECKPOINT)
        self._show_iterations(final.iteration, final.total)
        self.comparison.set_metrics(result.metrics)
        self.comparison.set_comparison(result.comparison, "validation")
        self.comparison.setVisible(result.metrics is not None)
        detail = final.message if final.event != "done" else ""
        self._show_status(ENDED.get(final.event, final.event), detail, problem=final.event == "stopped")
        self._set_running(False, resumable=final.event in ("cancelled", "stopped"))

    def fail(self, message: str) -> None:
        self._show_status("failed", message, problem=True)
        self._set_running(False, resumable=False)

    # --- a past run -------------------------------------------------------------------------
    def show_run(self, run: RunSummary, records: list[dict]) -> None:
        """A run folder as `frcnn_core.training.runs` reads it: its summary and its log records."""
        from frcnn_core.analysis.compare_models import (
            Comparison,  # torch: imported when first needed, not with the window
        )

        self.run_dir = Path(run.path)
        self.curves.set_records(records)
        self.validation.set_records(records, FINAL_CHECKPOINT if run.state == FINISHED else BEST_CHECKPOINT)
        self._show_iterations(run.iteration, run.total)
        self.comparison.clear()
        self.comparison.set_metrics(run.metrics)
        changes = before_after(run.metrics).get("changes")
        if isinstance(changes, dict):  # what the run's scoring saved of its validation comparison
            self.comparison.set_comparison(Comparison(**{key: int(changes.get(key, 0)) for key in
                                                         ("gained", "lost", "changed_class", "kept")}, per_image=[]),
                                           "validation")
        self.comparison.setVisible(run.metrics is not None)
        detail = run.error or (run.message if run.state != FINISHED else "")
        self._show_status(run.state, detail, problem=bool(run.error) or run.state == STOPPED)
        self._set_running(False, resumable=run.state in (CANCELLED, STOPPED) and run.best_checkpoint is not None)

    def _cancel(self) -> None:
        self.cancel_button.setEnabled(False)
        self._show_status("cancelling after this iteration…")
        self.cancel_requested.emit()

    def _show_iterations(self, iteration: int, total: int) -> None:
        self.progress.setRange(0, max(total, iteration, 1))
        self.progress.setValue(iteration)
        self.progress.setFormat(f"{iteration} / {total}" if total else str(iteration))  # 0: a budget not planned yet

    def _set_running(self, running: bool, resumable: bool) -> None:
        self.cancel_button.setVisible(running)
        self.cancel_button.setEnabled(running)
        self.resume_button.setVisible(resumable)

    def _show_status(self, state: str, detail: str = "", problem: bool = False) -> None:
        """'<run folder>: <state> · <detail>' (red for a problem)."""
        text = f"{state} · {detail}" if detail else state
        self.status.setText(f"{self.run_dir.name}: {text}" if self.run_dir else text)
        self.status.setToolTip(self.status.text())
        self.status.setStyleSheet(PROBLEM_STYLE if problem else "")
