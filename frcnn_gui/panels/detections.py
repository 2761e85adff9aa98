"""Detection controls: score threshold and class filter (instant: no re-run) and model-assisted
labelling (accept the selected or all shown detections as GT boxes, or review them one by one)."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QPushButton,
    QSlider,
    QWidget,
)

ALL_CLASSES = "all classes"


class DetectionsPanel(QWidget):
    filter_changed = Signal(float, str)  # score threshold, class name or "" for all
    accept_all = Signal()
    accept_rows = Signal(list)  # rows of the shown list: accept just those
    picked = Signal(list)  # rows of the shown list the user selected, to be highlighted on the canvas
    review_requested = Signal()

    def __init__(self, parent=None, threshold: float = 0.5):
        super().__init__(parent)
        self.slider = QSlider(Qt.Horizontal)
        self.slider.setRange(0, 100)
        self.slider.setValue(round(threshold * 100))
        self.value = QLabel()
        self.value.setMinimumWidth(self.value.fontMetrics().horizontalAdvance("0.00 "))
        self.count = QLabel("no detections yet")
        self.classes = QComboBox()
        self.classes.addItem(ALL_CLASSES)
        accept = QPushButton("Accept shown as GT")
        accept.setToolTip("Add every detection above the threshold as a ground-truth box (one undo step), "
                          "but none on a GT box of its class")
        accept.clicked.connect(self.accept_all)
        review = QPushButton("Review suggestions…")
        review.setToolTip("Accept or reject the detections one at a time (Ctrl+Shift+R)")
        review.clicked.connect(self.review_requested)
        self.shown_list = QListWidget()
        self.shown_list.setSelectionMode(QAbstractItemView.ExtendedSelection)
        self.shown_list.setMaximumHeight(120)
        self.shown_list.setToolTip("The shown detections, best first; double-click or select + Accept selected")
        accept_selected = QPushButton("Accept selected")
        accept_selected.clicked.connect(lambda: self._accept_selected())
        self.shown_list.itemDoubleClicked.connect(lambda item: self.accept_rows.emit([self.shown_list.row(item)]))
        self.shown_list.itemSelectionChanged.connect(lambda: self.picked.emit(self._selected_rows()))
        row = QHBoxLayout()
        row.addWidget(self.slider)
        row.addWidget(self.value)
        form = QFormLayout(self)
        form.addRow("score ≥", row)
        form.addRow("class", self.classes)
        form.addRow("shown", self.count)
        form.addRow(self.shown_list)
        form.addRow(accept_selected, accept)
        form.addRow(review)
        self.slider.valueChanged.connect(self._emit)
        self.classes.currentTextChanged.connect(self._emit)
        self._emit()
        self.setMaximumHeight(self.sizeHint().height())  # the dock gives the rest to the boxes table

    def threshold(self) -> float:
        return self.slider.value() / 100

    def class_filter(self) -> str:
        text = self.classes.currentText()
        return "" if text == ALL_CLASSES else text

    def set_class_names(self, names: list[str]) -> None:
        current = self.classes.currentText()
        self.classes.blockSignals(True)
        self.classes.clear()
        self.classes.addItems([ALL_CLASSES] + names)
        self.classes.setCurrentText(current if current in names else ALL_CLASSES)
        self.classes.blockSignals(False)

    def set_shown(self, shown: list, total: int) -> None:
        """The shown detections (best first) and how many there are in all; the pick is dropped
        (`picked` emits no rows)."""
        self.count.setText(f"{len(shown)} of {total} detections")
        self.shown_list.clearSelection()  # emits the empty pick: the canvas drops its highlight
        self.shown_list.clear()
        self.shown_list.addItems([f"{d.label}  {d.score:.2f}" for d in shown])

    def _selected_rows(self) -> list[int]:
        return sorted(self.shown_list.row(item) for item in self.shown_list.selectedItems())

    def _accept_selected(self) -> None:
        rows = self._selected_rows()
        if rows:
            self.accept_rows.emit(rows)

    def _emit(self, *_) -> None:
        self.value.setText(f"{self.threshold():.2f}")
        self.filter_changed.emit(self.threshold(), self.class_filter())
