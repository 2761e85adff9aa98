"""The stage panel: the stages with their live counts, the current stage's explanation,
Previous / Next, and the proposal layer's knobs. A view only: it holds no trace and calls no model;
the stage inspector (`frcnn_gui.stage_layers.StageInspector`) fills it and listens to it."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QFormLayout, QHBoxLayout, QLabel, QListWidget, QPushButton, QSlider, QSpinBox,
                               QVBoxLayout, QWidget)

# The stages the inspector can show, in the paper's order (names as in frcnn_core.cli.STAGES).
STAGES = ("anchors", "anchor-labels", "proposals-pre-nms", "proposals", "detections")
TITLES = {"anchors": "anchors", "anchor-labels": "anchor labels", "proposals-pre-nms": "proposals before NMS",
          "proposals": "proposals", "detections": "detections"}
NMS_STEPS = 100  # the NMS IoU slider's resolution: 0.01


class StagesPanel(QWidget):
    """`stage_chosen(name)` when the user (or `select`) picks a stage; `proposal_knobs_changed
    (nms_iou, post_nms_top_n)` when a proposal knob moves."""

    stage_chosen = Signal(str)
    proposal_knobs_changed = Signal(float, int)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.stage_list = QListWidget()
        self.stage_list.addItems([TITLES[name] for name in STAGES])
        self.stage_list.setMaximumHeight(self.stage_list.sizeHintForRow(0) * (len(STAGES) + 1))
        self.explanation = QLabel("Open an image to see its stages.")
        self.explanation.setWordWrap(True)
        self.explanation.setAlignment(Qt.AlignTop | Qt.AlignLeft)
        self.explanation.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.previous = QPushButton("◀ Previous")
        self.next = QPushButton("Next ▶")
        self.previous.clicked.connect(lambda: self.step(-1))
        self.next.clicked.connect(lambda: self.step(1))
        self.nms_slider = QSlider(Qt.Horizontal)
        self.nms_slider.setRange(1, NMS_STEPS)
        self.nms_value = QLabel()
        self.post_nms_top_n = QSpinBox()
        self.post_nms_top_n.setRange(1, 10_000)
        self.post_nms_top_n.setSingleStep(50)
        self.proposal_controls = QWidget()
        nms_row = QHBoxLayout()
        nms_row.addWidget(self.nms_slider)
        nms_row.addWidget(self.nms_value)
        form = QFormLayout(self.proposal_controls)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("NMS IoU", nms_row)
        form.addRow("keep top", self.post_nms_top_n)
        buttons = QHBoxLayout()
        buttons.addWidget(self.previous)
        buttons.addWidget(self.next)
        layout = QVBoxLayout(self)
        layout.addWidget(self.stage_list)
        layout.addLayout(buttons)
        layout.addWidget(self.proposal_controls)
        layout.addWidget(self.explanation, 1)
        self.stage_list.currentRowChanged.connect(self._row_changed)
        self.nms_slider.valueChanged.connect(self._knobs_moved)
        self.post_nms_top_n.valueChanged.connect(self._knobs_moved)
        self.stage_list.setCurrentRow(STAGES.index("detections"))

    @property
    def stage(self) -> str:
        return STAGES[self.stage_list.currentRow()]

    def select(self, name: str) -> None:
        """Show stage `name` (one of STAGES)."""
        self.stage_list.setCurrentRow(STAGES.index(name))

    def step(self, delta: int) -> None:
        self.stage_list.setCurrentRow(min(max(self.stage_list.currentRow() + delta, 0), len(STAGES) - 1))

    def set_counts(self, counts: dict[str, str]) -> None:
        """counts: stage name -> its count text ("" or missing: the title alone)."""
        for row, name in enumerate(STAGES):
            count = counts.get(name, "")
            self.stage_list.item(row).setText(f"{TITLES[name]}  {count}" if count else TITLES[name])

    def set_explanation(self, text: str) -> None:
        self.explanation.setText(text)

    def set_proposal_knobs(self, nms_iou: float, post_nms_top_n: int) -> None:
        """Show the model's own settings without emitting proposal_knobs_changed."""
        for widget, value in ((self.nms_slider, round(nms_iou * NMS_STEPS)), (self.post_nms_top_n, post_nms_top_n)):
            widget.blockSignals(True)
            widget.setValue(value)
            widget.blockSignals(False)
        self._show_nms_value()

    def nms_iou(self) -> float:
        return self.nms_slider.value() / NMS_STEPS

    def _show_nms_value(self) -> None:
        self.nms_value.setText(f"{self.nms_iou():.2f}")

    def _knobs_moved(self) -> None:
        self._show_nms_value()
        self.proposal_knobs_changed.emit(self.nms_iou(), self.post_nms_top_n.value())

    def _row_changed(self, row: int) -> None:
        self.previous.setEnabled(row > 0)
        self.next.setEnabled(row < len(STAGES) - 1)
        self.proposal_controls.setVisible(STAGES[row] == "proposals")
        self.stage_chosen.emit(STAGES[row])
