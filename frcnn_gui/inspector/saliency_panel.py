"""The saliency stage's controls in the Stages dock: what a click explains (a detection or a
proposal), the method, D-RISE's mask count, the progress in masks and Cancel. A view only: the
saliency view (`saliency_view.SaliencyView`) fills it and listens to it; it adds it to the dock
once the engine is ready, so this module may import the engine's saliency words (torch)."""
from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QFormLayout, QHBoxLayout, QProgressBar, QPushButton, QSpinBox, QWidget

from frcnn_core.inspect.saliency import DETECTION, DRISE, METHODS, PREVIEW_MASKS, PROPOSAL, REFINED_MASKS

TARGET_KINDS = {DETECTION: "a detection", PROPOSAL: "a proposal (objectness)"}
FEWEST_MASKS = 16  # fewer masks give a map of noise
MOST_MASKS = 100_000


class SaliencyControls(QWidget):
    """`kind_chosen(kind)` (a key of TARGET_KINDS) and `method_chosen(method)` (a key of METHODS)
    when the user picks them; `cancel_requested` on Cancel. `masks` is D-RISE's mask count."""

    kind_chosen = Signal(str)
    method_chosen = Signal(str)
    cancel_requested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.kind = QComboBox()
        for kind, text in TARGET_KINDS.items():
            self.kind.addItem(text, kind)
        self.method = QComboBox()
        for method, text in METHODS.items():
            self.method.addItem(text, method)
        self.masks = QSpinBox()
        self.masks.setRange(FEWEST_MASKS, MOST_MASKS)
        self.masks.setSingleStep(100)
        self.masks.setValue(REFINED_MASKS)
        self.masks.setToolTip(f"D-RISE's random masks: the first map after {PREVIEW_MASKS}, then it refines;"
                              " the count takes effect at the next click")
        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m masks")
        self.cancel = QPushButton("Cancel")
        self.reset()
        row = QHBoxLayout()
        row.addWidget(self.progress, 1)
        row.addWidget(self.cancel)
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("explain", self.kind)
        form.addRow("method", self.method)
        form.addRow("D-RISE masks", self.masks)
        form.addRow(row)
        self.kind.currentIndexChanged.connect(lambda: self.kind_chosen.emit(self.kind.currentData()))
        self.method.currentIndexChanged.connect(self._method_moved)
        self.cancel.clicked.connect(self.cancel_requested)

    @property
    def chosen_method(self) -> str:
        return self.method.currentData()

    def set_running(self, done: int, total: int) -> None:
        """A map under way: D-RISE's `done` of `total` masks; total 0: one step (HiResCAM), no count."""
        self.progress.setRange(0, total)  # (0, 0): a busy bar
        self.progress.setValue(done)
        self.progress.setTextVisible(total > 0)
        self.cancel.setEnabled(True)

    def set_idle(self, done: int | None = None) -> None:
        """No map under way: the bar shows `done` masks (None: the count it reached); a HiResCAM
        busy bar empties."""
        if self.progress.maximum() == 0:
            self.reset()
        elif done is not None:
            self.progress.setValue(done)
        self.cancel.setEnabled(False)

    def reset(self) -> None:
        """No map: an empty bar without a count, Cancel disabled."""
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setTextVisible(False)
        self.cancel.setEnabled(False)

    def _method_moved(self) -> None:
        self.masks.setEnabled(self.chosen_method == DRISE)
        self.method_chosen.emit(self.chosen_method)
