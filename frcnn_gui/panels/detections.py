"""Detection controls: score threshold and class filter (instant: no re-run) and model-assisted
labelling (accept the selected or all shown detections as GT boxes)."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QFormLayout, QHBoxLayout, QLabel, QPushButton, QSlider, QWidget

ALL_CLASSES = "all classes"


class DetectionsPanel(QWidget):
    filter_changed = Signal(float, str)  # score threshold, class name or "" for all
    accept_all = Signal()

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
        accept.setToolTip("Add every detection above the threshold as a ground-truth box (one undo step)")
        accept.clicked.connect(self.accept_all)
        row = QHBoxLayout()
        row.addWidget(self.slider)
        row.addWidget(self.value)
        form = QFormLayout(self)
        form.addRow("score ≥", row)
        form.addRow("class", self.classes)
        form.addRow("shown", self.count)
        form.addRow(accept)
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

    def set_counts(self, shown: int, total: int) -> None:
        self.count.setText(f"{shown} of {total} detections")

    def _emit(self, *_) -> None:
        self.value.setText(f"{self.threshold():.2f}")
        self.filter_changed.emit(self.threshold(), self.class_filter())
