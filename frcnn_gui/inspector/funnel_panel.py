"""The recall funnel dock, "Why was this object missed?": one row per GT box of the current image
(`frcnn_core.inspect.funnel.FunnelRow`), its outcome last in the words of `frcnn_core.inspect.describe`
("found", "lost at NMS", ...) at the detections panel's score threshold. A view only: the stage
inspector fills it from its inspection and draws the chain of the row the user clicks."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from frcnn_core.modeling.config import IGNORE, NEG, POS
from frcnn_core.vocabulary import outcome_words

COLUMNS = ("GT", "class", "best anchor", "best proposal", "NMS", "post-NMS top-N", "score", "outcome")
ANCHOR_LABELS = {POS: "pos", NEG: "neg", IGNORE: "ign"}
LOST = QColor("#ffd8d8")  # the rows of missed boxes, so that they stand out in a long table


def row_cells(row) -> list[str]:
    """The texts of one FunnelRow's table cells, in COLUMNS order."""
    if row.best_proposal_rank is None:
        proposal, nms, top_n = "none", "", ""
    else:
        proposal = f"{row.best_proposal_iou:.2f} (#{row.best_proposal_rank + 1})"
        nms = "kept" if row.survived_nms else (f"by #{row.suppressed_by} ({row.suppressor_iou:.2f})"
                                                 if row.suppressed_by is not None else "filtered")
        top_n = "yes" if row.in_post_nms_top_n else "no"
    score = "" if row.detection_score is None else f"{row.detection_score:.2f}"
    return [str(row.gt_index), row.label, f"{row.best_anchor_iou:.2f} {ANCHOR_LABELS[row.best_anchor_label]}",
            proposal, nms, top_n, score, outcome_words(row.lost_at)]


class FunnelPanel(QWidget):
    """`row_chosen(row)` when the user clicks a row (its index in the rows last set);
    `inspect_requested` when the user asks for the current image's funnel."""

    row_chosen = Signal(int)
    inspect_requested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.summary = QLabel("Trace the image to see where each GT box was lost.")
        self.summary.setWordWrap(True)
        self.trace_button = QPushButton("Trace this image")
        self.trace_button.clicked.connect(self.inspect_requested)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        self._boxes: list = []  # (gt_index, label, box) of the rows shown
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addWidget(self.trace_button)
        layout.addWidget(self.table, 1)

    def set_rows(self, rows: list, score_thresh: float) -> None:
        """Show these FunnelRows (an empty list: none, or no GT box), found at score_thresh, without
        emitting row_chosen; the chosen row stays chosen when the rows are of the same GT boxes
        (another threshold), else none is."""
        boxes = [(row.gt_index, row.label, row.box) for row in rows]
        chosen = self.table.currentRow() if boxes == self._boxes else -1
        self._boxes = boxes
        self.table.blockSignals(True)
        self.table.clearSelection()
        self.table.setRowCount(len(rows))
        for row_index, row in enumerate(rows):
            for column, text in enumerate(row_cells(row)):
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignVCenter | (Qt.AlignLeft if column in (1, 4, 7) else Qt.AlignRight))
                if row.lost_at is not None:
                    item.setBackground(LOST)
                self.table.setItem(row_index, column, item)
        if chosen >= 0:
            self.table.selectRow(chosen)
        self.table.blockSignals(False)
        missed = sum(row.lost_at is not None for row in rows)
        self.summary.setText(f"{len(rows)} GT boxes, {len(rows) - missed} found, {missed} lost (found: a detection"
                             f" of its class with IoU ≥ 0.5 scoring ≥ {score_thresh:.2f}, the detections panel's"
                             " threshold). "
                             "Click a row: its GT box (white), best anchor (cyan), best proposal (yellow) "
                             "and the box that suppressed it (red)." if rows else
                             "No GT box of a class the model knows on this image.")
        self.trace_button.hide()

    def choose(self, row: int) -> None:
        """Select row `row` (row_chosen follows) and scroll it into view."""
        self.table.selectRow(row)
        self.table.scrollToItem(self.table.item(row, 0))

    def reset(self) -> None:
        """Another image or model: nothing traced yet."""
        self.table.setRowCount(0)
        self._boxes = []
        self.summary.setText("Trace the image to see where each GT box was lost.")
        self.trace_button.show()

    def _selection_changed(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if rows:
            self.row_chosen.emit(rows[0].row())
