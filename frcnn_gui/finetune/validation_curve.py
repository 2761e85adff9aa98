"""The validation curve of a budgeted run: its validation AP50 on the hold-out against the iteration,
the best point (the model the run keeps) marked with a star and named in a line above the plot,
e.g. "best validation AP50 87.0 at iteration 240 → final.pt".

The points are the run's "validated" records (`Progress.validation`, and the same dicts in its
log.jsonl): {"iteration", "AP50", "AP", "seconds", "best"}. `best` is true for a validation whose
model became the run's best.pt, so the kept model is the last point marked best (the run keeps
a better AP50 only when it gains enough, so it need not be the highest point). A replay after
resuming from an earlier checkpoint replaces the points from that iteration on, as the loss
curves do. The widget hides while it has no point: a run by iterations validates only when it
is scored, after training.
"""
from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from frcnn_core.training.runs import BEST_CHECKPOINT
from frcnn_gui.finetune.text import format_ap

CURVE_COLOUR, BEST_COLOUR = "#1f77b4", "#e6a800"


def best_line(best: dict, checkpoint: str) -> str:
    """'best validation AP50 87.0 at iteration 240 → final.pt' for a validation record."""
    return f"best validation AP50 {format_ap(best['AP50'])} at iteration {best['iteration']} → {checkpoint}"


class ValidationCurve(QWidget):
    """AP50 (in %, as the other panels write it) against the iteration, with the best point starred."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        background, foreground = self.palette().base().color(), self.palette().text().color()
        self.best_label = QLabel()
        self.plot = pg.PlotWidget(background=background)
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        for axis in ("left", "bottom"):
            self.plot.getAxis(axis).setTextPen(foreground)
        self.plot.getAxis("left").setWidth(56)  # as the loss curves' axes: the x axes line up
        self.plot.setLabel("left", "val AP50 (%)")
        self.plot.setLabel("bottom", "iteration")
        self.plot.setMinimumHeight(120)
        self.curve = self.plot.plot(pen=pg.mkPen(CURVE_COLOUR, width=1.5), symbol="o", symbolSize=6,
                                    symbolBrush=CURVE_COLOUR, symbolPen=None)
        self.best_marker = self.plot.plot(pen=None, symbol="star", symbolSize=18, symbolBrush=BEST_COLOUR,
                                          symbolPen=pg.mkPen(foreground, width=1))
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.best_label)
        layout.addWidget(self.plot, stretch=1)
        self._points: list[dict] = []
        self._checkpoint = BEST_CHECKPOINT
        self.setVisible(False)

    def add(self, progress) -> None:
        """A `Progress` of the live run; other events than "validated" are ignored."""
        if progress.event == "validated" and progress.validation:
            self._append(progress.validation)
            self._redraw()

    def set_records(self, records: list[dict], checkpoint: str = BEST_CHECKPOINT) -> None:
        """A run's log.jsonl records (dicts), replacing all; `checkpoint`: the file that holds the
        best model now (final.pt once the run is done, best.pt before)."""
        self._points = []
        self._checkpoint = checkpoint
        for record in records:
            if record.get("event") == "validated" and isinstance(record.get("validation"), dict):
                self._append(record["validation"])
        self._redraw()

    def clear(self) -> None:
        self.set_records([])

    def points(self) -> list[dict]:
        """The validation records drawn, in iteration order."""
        return list(self._points)

    def best(self) -> dict | None:
        """The validation whose model the run keeps (the last marked best), None before any."""
        return next((point for point in reversed(self._points) if point.get("best")), None)

    def _append(self, point: dict) -> None:
        self._points = [kept for kept in self._points if kept["iteration"] < point["iteration"]]
        self._points.append(point)

    def _redraw(self) -> None:
        self.curve.setData([point["iteration"] for point in self._points],
                           [100 * point["AP50"] for point in self._points])
        best = self.best()
        self.best_marker.setData([best["iteration"]] if best else [], [100 * best["AP50"]] if best else [])
        self.best_label.setText(best_line(best, self._checkpoint) if best else "")
        self.setVisible(bool(self._points))
