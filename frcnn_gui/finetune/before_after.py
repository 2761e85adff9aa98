"""Before and after fine-tuning, side by side: COCO AP, AP50, AP75 and AP50 per class of the base
model and of the fine-tuned one on the validation split, and how the detections changed (gained,
lost, changed class) over the validation split and on the current image.

The two models are compared only on the classes both know: a note above the table says which
(or why none). When they share no class, or the base model had no trained detection head, only
the new model's own metrics are shown: the before and change columns and the change lines hide.

The view holds nothing but what it shows: `set_metrics` takes `score_run`'s dict, `set_note` a
`ClassOverlap` note, and `set_comparison` a `frcnn_core.analysis.compare_models.Comparison` for one of the two scopes.
"""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from frcnn_gui.finetune.text import NO_VALUE, before_after, format_ap, format_change, is_compared

SCOPES = ("validation", "image")
SUMMARY_METRICS = ("AP", "AP50", "AP75")
ROWS_SHOWN = 7  # the table asks for this many rows of height; more scroll
BETTER, WORSE = QColor("#2e7d32"), QColor("#c62828")
BEFORE_COLUMN, CHANGE_COLUMN = 0, 2


def comparison_line(comparison) -> str:
    """'3 gained · 1 lost · 2 changed class · 12 kept' for a Comparison."""
    return (f"{comparison.gained} gained · {comparison.lost} lost · {comparison.changed_class} changed class · "
            f"{comparison.kept} kept")


class ComparisonView(QWidget):
    """A note on what is compared, a metrics table (rows: AP, AP50, AP75 on the compared classes,
    then AP50 per class; columns: before, after, change) and one line of detection changes per scope."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["before", "after", "change"])
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.NoSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.table.verticalHeader().setDefaultSectionSize(self.table.fontMetrics().height() + 6)
        self.table.setToolTip("COCO AP (%) on the validation split: the base model before, the fine-tuned one after")
        self.changes = {scope: QLabel(wordWrap=True) for scope in SCOPES}
        self.note = QLabel(wordWrap=True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.note)
        layout.addWidget(self.table)
        for label in self.changes.values():
            layout.addWidget(label)
        self.clear()

    def clear(self) -> None:
        self.table.setRowCount(0)
        self.set_note("", comparable=True)
        for scope in SCOPES:
            self.set_comparison(None, scope)

    def set_note(self, note: str, comparable: bool) -> None:
        """What the comparison compares (a `ClassOverlap` note); without a comparison the before and
        change columns and the change lines hide."""
        self.note.setText(note)
        self.note.setVisible(bool(note))
        self.table.setColumnHidden(BEFORE_COLUMN, not comparable)
        self.table.setColumnHidden(CHANGE_COLUMN, not comparable)
        for label in self.changes.values():
            label.setVisible(comparable)

    def set_metrics(self, metrics: dict | None) -> None:
        """`score_run`'s dict, or None. Compared: the summary rows are both models on the shared
        classes, and a class only the new model knows has no before. Not compared: the new
        model's own metrics alone."""
        if not metrics:
            self.table.setRowCount(0)
            self.table.setMinimumHeight(0)
            self.set_note("", comparable=True)
            return
        block, compared = before_after(metrics), is_compared(metrics)
        before = block["before"] if compared else {}
        summary = block["after"] if compared else metrics
        rows = [(name, before.get(name), summary.get(name)) for name in SUMMARY_METRICS]
        per_class_before = before.get("per_class_AP50") or {}
        per_class_after = metrics.get("per_class_AP50") or {}
        rows += [(f"AP50 {name}", per_class_before.get(name), per_class_after.get(name))
                 for name in dict.fromkeys([*per_class_after, *per_class_before])]
        self.set_note(block.get("note", ""), compared)
        self.table.setRowCount(len(rows))
        self.table.setVerticalHeaderLabels([title for title, _, _ in rows])
        self.table.setMinimumHeight(self.table.horizontalHeader().sizeHint().height() + 2 * self.table.frameWidth()
                                    + min(len(rows), ROWS_SHOWN) * self.table.verticalHeader().defaultSectionSize())
        for row, (_, old, new) in enumerate(rows):
            change = format_change(old, new)
            for column, text in enumerate((format_ap(old), format_ap(new), change)):
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                if column == 2 and change != NO_VALUE and float(change) != 0:
                    item.setForeground(QBrush(BETTER if float(change) > 0 else WORSE))
                self.table.setItem(row, column, item)

    def set_comparison(self, comparison, scope: str) -> None:
        """A Comparison of the base model's detections with the fine-tuned model's, or None."""
        where = "validation split" if scope == "validation" else "current image"
        text = comparison_line(comparison) if comparison is not None else NO_VALUE
        self.changes[scope].setText(f"{where}: {text}")
