"""What a budgeted plan decided, as the Fine-tune dialog shows it after Check: the plan's "why"
lines as a list (scrolling when long) beside a small picture, and under both the anchor coverage
of the training boxes before and after the fit in words. The picture: each training box's width and height at the
model's input as a dot, the model's anchors as grey crosses, the fitted anchors as circles (one
colour per feature level), on log axes ticked at powers of two. The picture is drawn here from
the plan's `AnchorFit`, quickly and at a size that stays readable; the run folder's anchors.png
is the same picture drawn by matplotlib (`frcnn_core.render.anchor_fit`).
"""
from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QTextBrowser, QVBoxLayout, QWidget

from frcnn_core.modeling.anchors import anchor_sides

if TYPE_CHECKING:
    from frcnn_core.training.auto_anchors import AnchorFit

PICTURE_SIDE = 260  # px: the picture's width and height
BOX_COLOUR, MODEL_ANCHOR_COLOUR = (26, 152, 80, 200), "#8c8c8c"  # green dots: apart from the circles' colours
TICKS = tuple(2 ** power for power in range(0, 13))  # px: 1 to 4096, every other one labelled
LEVEL_COLOURS = ("#0d0887", "#7e03a8", "#cc4778", "#f89540", "#f0f921")  # plasma, finest level first
SMALLEST_SIDE = 0.5  # px: log axes need a positive width and height
PICTURE_KEY = "dots: training boxes · grey ×: the model's anchors · circles: fitted anchors"


def coverage_text(fit: AnchorFit) -> str:
    """Two short lines (they never wrap), e.g. "best-possible recall of the 36 training boxes at
    IoU 0.5 / 0.7:" and "the model's anchors 62.5% / 20.0% → fitted anchors 100.0% / 97.2%", or
    the model's kept and why."""
    def recall(coverage) -> str:
        return f"{coverage.recall_50:.1%} / {coverage.recall_70:.1%}"

    before = f"best-possible recall of the {fit.before.boxes} training boxes at IoU 0.5 / 0.7:\n" \
             f"the model's anchors {recall(fit.before)}"
    if fit.fitted:
        return f"{before} → fitted anchors {recall(fit.after)}"
    if fit.tried is None:
        return f"{before}, kept: the base model's trained detection head belongs to them"
    return f"{before}, kept: the best fit covers no more ({recall(fit.tried)})"


class AnchorPicture(pg.PlotWidget):
    """Box shapes and anchor shapes, width against height in model-input pixels, log axes."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent, background=parent.palette().base().color() if parent else "w")
        foreground = self.palette().text().color()
        self.setFixedSize(PICTURE_SIDE, PICTURE_SIDE)
        self.setLogMode(x=True, y=True)
        self.showGrid(x=True, y=True, alpha=0.2)
        for axis in ("left", "bottom"):
            self.getAxis(axis).setTextPen(foreground)
        for axis, title in (("bottom", "width (px)"), ("left", "height (px)")):
            self.setLabel(axis, title)
            self.getAxis(axis).setTicks([[(math.log10(side), str(side)) for side in TICKS[::2]],  # log mode: log10
                                         [(math.log10(side), "") for side in TICKS[1::2]]])
        self.setMouseEnabled(x=False, y=False)
        self.boxes = self.plot(pen=None, symbol="o", symbolSize=5, symbolBrush=BOX_COLOUR, symbolPen=None)
        self.model_anchors = self.plot(pen=None, symbol="x", symbolSize=9, symbolBrush=MODEL_ANCHOR_COLOUR,
                                       symbolPen=None)
        self.boxes.setZValue(1)  # the dots over the circles of the anchors
        self.fitted: list[pg.PlotDataItem] = []

    def show_fit(self, fit: AnchorFit) -> None:
        for item in self.fitted:
            self.removeItem(item)
        self.fitted = []
        shapes = fit.box_shapes.clamp(min=SMALLEST_SIDE).numpy()
        self.boxes.setData(shapes[:, 0], shapes[:, 1])
        model = np.concatenate([sides.clamp(min=SMALLEST_SIDE).numpy() for sides in anchor_sides(fit.model_anchors)])
        self.model_anchors.setData(model[:, 0], model[:, 1])
        if fit.fitted:
            for level, sides in enumerate(anchor_sides(fit.anchors)):
                colour = LEVEL_COLOURS[level % len(LEVEL_COLOURS)]
                self.fitted.append(self.plot(sides[:, 0].numpy(), sides[:, 1].numpy(), pen=None, symbol="o",
                                             symbolSize=9, symbolBrush=None, symbolPen=pg.mkPen(colour, width=1.5)))
        self.autoRange()


class BudgetBox(QWidget):
    """The why lines (`why`), the coverage in words (`coverage`) and the picture (`picture`)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.why = QTextBrowser(frameShape=QFrame.NoFrame)  # as tall as the picture; scrolls when longer
        self.why.setStyleSheet("QTextBrowser { background: transparent }")
        self.coverage = QLabel()
        self.picture = AnchorPicture(self)
        key = QLabel(PICTURE_KEY, wordWrap=True)
        key.setFixedSize(PICTURE_SIDE, key.heightForWidth(PICTURE_SIDE))  # a window's layout counts one line
        key.setStyleSheet("color: palette(mid)")
        picture = QVBoxLayout()
        picture.setContentsMargins(0, 0, 0, 0)
        picture.addWidget(self.picture)
        picture.addWidget(key)
        row = QHBoxLayout()
        row.addWidget(self.why, stretch=1)
        row.addLayout(picture)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.coverage)

    def show_plan(self, why: tuple[str, ...], fit: AnchorFit) -> None:
        self.why.setHtml("<ul style='margin-left: 0; -qt-list-indent: 1'>"
                         + "".join(f"<li>{html.escape(line)}</li>" for line in why) + "</ul>")
        self.coverage.setText(coverage_text(fit))
        self.picture.show_fit(fit)
