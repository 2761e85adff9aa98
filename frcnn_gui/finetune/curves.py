"""Loss curves of a training run: one curve per loss term plus their total, and the learning rate
in a small plot below (x = iteration in both, linked).

`add(progress)` is cheap (an append to numpy buffers); the plots are redrawn at most every
REDRAW_MS by a single-shot timer, never per iteration. Only "iteration" records carry points.
A run that goes back in iterations (resumed from an earlier checkpoint after a stop) replaces the
points from that iteration on, so the curves always show one value per iteration.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QVBoxLayout, QWidget

REDRAW_MS = 100
TOTAL, LR = "total", "lr"
LOSS_TITLES = {"loss_objectness": "RPN objectness", "loss_rpn_box_reg": "RPN box",
               "loss_classifier": "RoI class", "loss_box_reg": "RoI box", TOTAL: "total"}
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")


class _Series:
    """Growing (x, y) float64 buffers: amortised O(1) append, and cut back to x < some iteration."""

    def __init__(self) -> None:
        self._xy = np.empty((2, 256))
        self.size = 0

    def append(self, x: float, y: float) -> None:
        if self.size == self._xy.shape[1]:
            self._xy = np.concatenate([self._xy, np.empty_like(self._xy)], axis=1)
        self._xy[:, self.size] = (x, y)
        self.size += 1

    def cut_from(self, x: float) -> None:
        """Forget every point at x or later (x is increasing)."""
        self.size = int(np.searchsorted(self._xy[0, :self.size], x, side="left"))

    def data(self) -> tuple[np.ndarray, np.ndarray]:
        return self._xy[0, :self.size], self._xy[1, :self.size]


class LossCurves(QWidget):
    """The run's loss terms (named from the records' `losses` keys as they come), total and lr."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        background, foreground = self.palette().base().color(), self.palette().text().color()
        self.loss_plot = pg.PlotWidget(background=background)
        self.lr_plot = pg.PlotWidget(background=background)
        for plot in (self.loss_plot, self.lr_plot):
            plot.showGrid(x=True, y=True, alpha=0.2)
            for axis in ("left", "bottom"):
                plot.getAxis(axis).setTextPen(foreground)
            plot.getAxis("left").setWidth(56)  # equal widths keep the two x axes aligned
        self.loss_plot.setLabel("left", "loss")
        self.loss_plot.addLegend(offset=(-10, 10), labelTextColor=foreground)
        self.lr_plot.setLabel("left", LR)
        self.lr_plot.getAxis("left").enableAutoSIPrefix(False)  # "lr (x0.001)" would not fit
        self.loss_plot.getAxis("bottom").setStyle(showValues=False)  # the lr plot below numbers the iterations
        self.lr_plot.setLabel("bottom", "iteration")
        self.lr_plot.setXLink(self.loss_plot)
        self.lr_plot.setMinimumHeight(70)
        self.lr_plot.setMaximumHeight(110)
        self.loss_plot.setMinimumHeight(140)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.loss_plot, stretch=4)
        layout.addWidget(self.lr_plot, stretch=1)
        self._series: dict[str, _Series] = {}
        self._curves: dict[str, pg.PlotDataItem] = {}
        self._last_iteration = -1
        self._redraw_timer = QTimer(self, singleShot=True, interval=REDRAW_MS, timeout=self._redraw)

    def add(self, progress) -> None:
        """Append a `frcnn_core.training.train.Progress`; other events than "iteration" are ignored."""
        if progress.event == "iteration":
            self._append(progress.iteration, progress.losses, progress.lr)
            if not self._redraw_timer.isActive():
                self._redraw_timer.start()

    def set_records(self, records: list[dict]) -> None:
        """Show a run's log.jsonl records (dicts as `Progress.to_json` writes them), replacing all."""
        self.clear()
        for record in records:
            if record.get("event") == "iteration":
                self._append(record["iteration"], record.get("losses") or {}, record.get("lr", float("nan")))
        self._redraw()

    def clear(self) -> None:
        self._redraw_timer.stop()
        self._series.clear()
        self._last_iteration = -1
        self.lr_plot.getAxis("left").setTicks(None)
        for name, curve in self._curves.items():
            (self.lr_plot if name == LR else self.loss_plot).removeItem(curve)
        self._curves.clear()

    def data(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The (iterations, values) drawn for a loss key, TOTAL or LR; empty arrays when none."""
        curve = self._curves.get(name)
        if curve is None or curve.xData is None:
            return np.empty(0), np.empty(0)
        return curve.xData, curve.yData

    def names(self) -> list[str]:
        """The loss keys seen so far, in order of appearance (TOTAL and LR not included)."""
        return [name for name in self._series if name not in (TOTAL, LR)]

    def _append(self, iteration: int, losses: dict[str, float], lr: float) -> None:
        if iteration <= self._last_iteration:  # a replay after resuming from an earlier checkpoint
            for series in self._series.values():
                series.cut_from(iteration)
        self._last_iteration = iteration
        values = {**losses, TOTAL: sum(losses.values()), LR: lr} if losses else {LR: lr}
        for name, value in values.items():
            self._series.setdefault(name, _Series()).append(iteration, value)

    def _redraw(self) -> None:
        for name, series in self._series.items():
            if name not in self._curves:
                self._curves[name] = self._new_curve(name)
            self._curves[name].setData(*series.data())
        lrs = self._series[LR].data()[1] if LR in self._series else np.empty(0)
        if lrs.size and np.isfinite(lrs).any():  # the low lr plot has room for two ticks: 0 and the peak
            peak = float(np.nanmax(lrs))
            self.lr_plot.getAxis("left").setTicks([[(0.0, "0"), (peak, f"{peak:.2g}")]])
            self.lr_plot.setYRange(0.0, peak * 1.2 or 1.0, padding=0)

    def _new_curve(self, name: str) -> pg.PlotDataItem:
        if name == LR:
            return self.lr_plot.plot(pen=pg.mkPen("#7f7f7f", width=1.5))
        if name == TOTAL:
            pen = pg.mkPen(self.palette().text().color(), width=2.5)
        else:
            pen = pg.mkPen(COLOURS[self.names().index(name) % len(COLOURS)], width=1.5)
        return self.loss_plot.plot(pen=pen, name=LOSS_TITLES.get(name, name))
