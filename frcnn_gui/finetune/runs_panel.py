"""The Runs panel: every run folder of the runs folder, newest first, with its base model, state,
iterations, AP50 before -> after (or why there is no before) and when it began. Double-click (or Open)
asks the window to show a run's curves and metrics; "Use this model" hands over its best checkpoint.

A run whose files cannot be read still gets its row, with the reason in red; it can be opened
(its log may still be readable) but offers no model unless it has a checkpoint.
"""
from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from frcnn_core.training.runs import RunSummary, list_runs
from frcnn_gui.finetune.text import ap50_before_after, counted

COLUMNS = ("name", "base", "state", "iterations", "AP50 before → after", "created")
PROBLEM = QColor("#c62828")


def run_cells(run: RunSummary) -> tuple[str, ...]:
    """The texts of a run's row, in COLUMNS order."""
    iterations = f"{run.iteration} / {run.total}" if run.total else str(run.iteration)
    state = f"{run.state} (unreadable files)" if run.error else run.state
    created = time.strftime("%Y-%m-%d %H:%M", time.localtime(run.created))
    return run.name, run.base_model or "?", state, iterations, ap50_before_after(run.metrics), created


class RunsPanel(QWidget):
    open_run = Signal(Path)  # a run folder to show
    use_model = Signal(Path)  # a checkpoint to load as the current model

    def __init__(self, runs_dir: str | Path | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.runs_dir = Path(runs_dir) if runs_dir else None
        self.runs: list[RunSummary] = []
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.cellDoubleClicked.connect(lambda row, _column: self._open(row))
        self.table.itemSelectionChanged.connect(self._selection_changed)
        self.folder_label = QLabel(wordWrap=True)
        refresh, self.open_button = QPushButton("Refresh"), QPushButton("Open")
        self.use_button = QPushButton("Use this model")
        self.use_button.setToolTip("Load the run's best checkpoint (final.pt, else last.pt) as the current model")
        refresh.clicked.connect(self.refresh)
        self.open_button.clicked.connect(lambda: self._open(self.table.currentRow()))
        self.use_button.clicked.connect(self._use)
        buttons = QHBoxLayout()
        buttons.addWidget(refresh)
        buttons.addStretch()
        buttons.addWidget(self.open_button)
        buttons.addWidget(self.use_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.folder_label)
        layout.addWidget(self.table)
        layout.addLayout(buttons)
        self.refresh()

    def set_runs_dir(self, runs_dir: str | Path | None) -> None:
        self.runs_dir = Path(runs_dir) if runs_dir else None
        self.refresh()

    def refresh(self) -> None:
        """Read the runs folder again; the selected run stays selected when it is still there."""
        selected = self.selected()
        self.runs = list_runs(self.runs_dir) if self.runs_dir else []
        self.folder_label.setText(f"{self.runs_dir}: {counted(len(self.runs), 'run')}" if self.runs_dir
                                  else "no runs folder")
        self.table.setRowCount(len(self.runs))
        for row, run in enumerate(self.runs):
            for column, text in enumerate(run_cells(run)):
                item = QTableWidgetItem(text)
                item.setToolTip(run.error or run.message or run.path)
                if run.error:
                    item.setForeground(QBrush(PROBLEM))
                self.table.setItem(row, column, item)
        paths = [run.path for run in self.runs]
        if selected is not None and selected.path in paths:
            self.table.selectRow(paths.index(selected.path))
        self._selection_changed()

    def selected(self) -> RunSummary | None:
        rows = self.table.selectionModel().selectedRows()
        return self.runs[rows[0].row()] if rows and rows[0].row() < len(self.runs) else None

    def _open(self, row: int) -> None:
        if 0 <= row < len(self.runs):
            self.open_run.emit(Path(self.runs[row].path))

    def _use(self) -> None:
        run = self.selected()
        if run is not None and run.best_checkpoint:
            self.use_model.emit(Path(run.best_checkpoint))

    def _selection_changed(self) -> None:
        run = self.selected()
        self.open_button.setEnabled(run is not None)
        self.use_button.setEnabled(run is not None and run.best_checkpoint is not None)
