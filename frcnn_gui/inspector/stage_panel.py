"""The stage panel: the stages with their live counts, the current stage's explanation,
Previous / Next, the proposal layer's knobs and how many proposals are drawn, the objectness level,
the sampled RoIs' table and the selected RoI's pooled features. A view only: it holds no trace and calls no model;
the stage inspector (`frcnn_gui.inspector.controller.StageInspector`) fills it and listens to it."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QPushButton,
    QScrollArea,
    QSlider,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from frcnn_core.vocabulary import STAGE_TITLES, STAGES

NMS_STEPS = 100  # the NMS IoU slider's resolution: 0.01
FEATURE_PIXELS = 63  # a pooled 7 x 7 map drawn 9 screen pixels per cell
ANCHOR_SCOPES = {"cell": "the clicked cell's", "inside": "all inside the image", "all": "all"}
SHOWN_DEFAULT = 100  # proposals drawn: enough to see where they gather, few enough to see the image
SAMPLE_COLUMNS = ("#", "kind", "IoU", "GT", "from", "dx", "dy", "dw", "dh")


class StagesPanel(QWidget):
    """`stage_chosen(name)` when the user (or `select`) picks a stage; `proposal_knobs_changed
    (settings)` when a proposal knob moves; `level_chosen(level)` when the user
    picks the objectness heatmap's feature level; `anchor_filter_changed(filter)` when an anchor
    filter changes: {"level", "size", "ratio"} -> a value, None for all; `shown_changed(count)`
    when the number of proposals drawn changes; `sample_chosen(row)` when the user picks a row of
    the RoI samples' table."""

    stage_chosen = Signal(str)
    proposal_knobs_changed = Signal(dict)  # rerun_proposals keywords: nms_thresh, pre/post_nms_top_n, min_size
    level_chosen = Signal(int)
    shape_chosen = Signal(int)  # -1: the highest score over the cell's shapes
    anchor_filter_changed = Signal(dict)
    shown_changed = Signal(int)
    anchor_scope_chosen = Signal(str)  # one of ANCHOR_SCOPES
    sample_chosen = Signal(int)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.stage_list = QListWidget()
        self.stage_list.addItems([STAGE_TITLES[name] for name in STAGES])
        self.stage_list.setFixedHeight(self.stage_list.sizeHintForRow(0) * len(STAGES)
                                       + 2 * self.stage_list.frameWidth() + 2)
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
        self.pre_nms_top_n = QSpinBox()
        self.pre_nms_top_n.setRange(1, 100_000)
        self.pre_nms_top_n.setSingleStep(500)
        self.min_size = QDoubleSpinBox()
        self.min_size.setRange(0.0, 1000.0)
        self.min_size.setDecimals(3)
        self.proposal_controls = QWidget()
        nms_row = QHBoxLayout()
        nms_row.addWidget(self.nms_slider)
        nms_row.addWidget(self.nms_value)
        form = QFormLayout(self.proposal_controls)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("NMS IoU", nms_row)
        form.addRow("keep top", self.post_nms_top_n)
        form.addRow("top per level before NMS", self.pre_nms_top_n)
        form.addRow("min size (px)", self.min_size)
        self.shown = QSpinBox()
        self.shown.setRange(1, 100_000)
        self.shown.setSingleStep(50)
        self.shown.setValue(SHOWN_DEFAULT)
        self.shown.setToolTip("How many of the best proposals are drawn (the counts are of all of them)")
        self.shown_controls = QWidget()
        QFormLayout(self.shown_controls).addRow("boxes drawn (best first)", self.shown)
        self.shown_controls.layout().setContentsMargins(0, 0, 0, 0)
        self.shown.valueChanged.connect(self.shown_changed)
        self.level = QComboBox()
        self.shape = QComboBox()
        self.objectness_controls = QWidget()
        QFormLayout(self.objectness_controls).addRow("level", self.level)
        self.objectness_controls.layout().addRow("shape", self.shape)
        self.objectness_controls.layout().setContentsMargins(0, 0, 0, 0)
        self.anchor_filters = {name: QComboBox() for name in ("level", "size", "ratio")}
        self.anchor_controls = QWidget()
        anchor_form = QFormLayout(self.anchor_controls)
        anchor_form.setContentsMargins(0, 0, 0, 0)
        self.anchor_scope = QComboBox()
        for scope, text in ANCHOR_SCOPES.items():
            self.anchor_scope.addItem(text, scope)
        self.anchor_scope.currentIndexChanged.connect(
            lambda: self.anchor_scope_chosen.emit(self.anchor_scope.currentData()))
        anchor_form.addRow("anchors", self.anchor_scope)
        for name, combo in self.anchor_filters.items():
            anchor_form.addRow(name, combo)
            combo.currentIndexChanged.connect(self._anchor_filter_moved)
        self.feature_maps = [QLabel() for _ in range(4)]
        self.feature_captions = [QLabel() for _ in range(4)]
        self.pool_view = QWidget()
        grid = QGridLayout(self.pool_view)
        grid.setContentsMargins(0, 0, 0, 0)
        for column, (picture, caption) in enumerate(zip(self.feature_maps, self.feature_captions, strict=True)):
            picture.setFixedSize(FEATURE_PIXELS, FEATURE_PIXELS)
            caption.setAlignment(Qt.AlignHCenter)
            grid.addWidget(picture, 0, column, Qt.AlignHCenter)
            grid.addWidget(caption, 1, column)
        self.pool_view.setFixedHeight(FEATURE_PIXELS + 2 * self.fontMetrics().height())
        self.class_table = _table(("class", "score"))
        self.class_table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.sample_table = _table(SAMPLE_COLUMNS)
        self.sample_table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.sample_table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.sample_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.sample_table.setMinimumHeight(8 * self.sample_table.verticalHeader().defaultSectionSize())
        self.sample_table.currentCellChanged.connect(
            lambda row, *_: row >= 0 and self.sample_chosen.emit(int(self.sample_table.item(row, 0).text())))
        buttons = QHBoxLayout()
        buttons.addWidget(self.previous)
        buttons.addWidget(self.next)
        layout = QVBoxLayout(self)
        layout.addWidget(self.stage_list)
        layout.addLayout(buttons)
        layout.addWidget(self.proposal_controls)
        layout.addWidget(self.shown_controls)
        layout.addWidget(self.objectness_controls)
        layout.addWidget(self.anchor_controls)
        layout.addWidget(self.pool_view)
        layout.addWidget(self.class_table)
        layout.addWidget(self.sample_table, 1)
        scroller = QScrollArea()  # a long explanation scrolls instead of squeezing the controls
        scroller.setWidgetResizable(True)
        scroller.setFrameShape(QFrame.NoFrame)
        scroller.setWidget(self.explanation)
        layout.addWidget(scroller, 1)
        self.stage_controls: dict[str, QWidget] = {}  # added by the inspector: shown on their stage only
        self.stage_list.currentRowChanged.connect(self._row_changed)
        self.nms_slider.valueChanged.connect(self._knobs_moved)
        for knob in (self.post_nms_top_n, self.pre_nms_top_n, self.min_size):
            knob.valueChanged.connect(self._knobs_moved)
        self.level.currentIndexChanged.connect(lambda level: level >= 0 and self.level_chosen.emit(level))
        self.shape.currentIndexChanged.connect(lambda row: row >= 0 and self.shape_chosen.emit(row - 1))
        self.stage_list.setCurrentRow(STAGES.index("detections"))

    @property
    def stage(self) -> str:
        return STAGES[self.stage_list.currentRow()]

    def select(self, name: str) -> None:
        """Show stage `name` (one of STAGES)."""
        self.stage_list.setCurrentRow(STAGES.index(name))

    def step(self, delta: int) -> None:
        self.stage_list.setCurrentRow(min(max(self.stage_list.currentRow() + delta, 0), len(STAGES) - 1))

    def add_controls(self, stage: str, controls: QWidget) -> None:
        """Controls shown only while `stage` is, above the explanation (the saliency stage's, which
        the inspector adds once the engine is ready)."""
        self.stage_controls[stage] = controls
        layout = self.layout()
        layout.insertWidget(layout.indexOf(self.sample_table), controls)
        controls.setVisible(self.stage == stage)

    def set_counts(self, counts: dict[str, str]) -> None:
        """counts: stage name -> its count text ("" or missing: the title alone)."""
        for row, name in enumerate(STAGES):
            count = counts.get(name, "")
            self.stage_list.item(row).setText(f"{STAGE_TITLES[name]}  {count}" if count else STAGE_TITLES[name])

    def set_explanation(self, text: str) -> None:
        self.explanation.setText(text)

    def set_proposal_knobs(self, config) -> None:
        """Show the model's own proposal settings (an RPNConfig) without emitting a change."""
        values = ((self.nms_slider, round(config.nms_thresh * NMS_STEPS)), (self.post_nms_top_n, config.post_nms_top_n),
                  (self.pre_nms_top_n, config.pre_nms_top_n), (self.min_size, config.min_size))
        for widget, value in values:
            widget.blockSignals(True)
            widget.setValue(value)
            widget.blockSignals(False)
        self._show_nms_value()

    def set_shapes(self, names: list[str]) -> None:
        """The heatmap's shape choices of the current level, "max" first, without emitting."""
        self.shape.blockSignals(True)
        self.shape.clear()
        self.shape.addItems(["highest over the shapes"] + names)
        self.shape.setCurrentIndex(0)
        self.shape.blockSignals(False)

    def set_levels(self, grid_sizes: list[tuple[int, int]], chosen: int) -> None:
        """One entry per feature level, (H, W) cells each, level `chosen` chosen, without
        emitting level_chosen."""
        self.level.blockSignals(True)
        self.level.clear()
        self.level.addItems([f"{level}: {height} x {width} cells" for level, (height, width) in enumerate(grid_sizes)])
        self.level.setCurrentIndex(chosen)
        self.level.blockSignals(False)

    def set_anchor_filters(self, levels: int, config) -> None:
        """"all" and the values of `levels` levels and of the sizes and ratios of config (an
        AnchorConfig) in the anchor filters, all set to "all", without emitting a change."""
        values = {"level": range(levels), "size": sorted({size for sizes in config.sizes for size in sizes}),
                  "ratio": sorted({ratio for ratios in config.aspect_ratios for ratio in ratios})}
        for name, combo in self.anchor_filters.items():
            combo.blockSignals(True)
            combo.clear()
            combo.addItem("all", None)
            for value in values[name]:
                combo.addItem(f"{value:g}", value)
            combo.blockSignals(False)

    def anchor_filter(self) -> dict:
        return {name: combo.currentData() for name, combo in self.anchor_filters.items()}

    def _anchor_filter_moved(self) -> None:
        self.anchor_filter_changed.emit(self.anchor_filter())

    def set_feature_maps(self, maps: list[tuple[QImage, str]]) -> None:
        """The selected RoI's pooled features: up to four (picture, caption) pairs, drawn scaled
        without smoothing so that each pooled cell stays a square."""
        for index, (picture, caption) in enumerate(zip(self.feature_maps, self.feature_captions, strict=True)):
            image, text = maps[index] if index < len(maps) else (QImage(), "")
            picture.setPixmap(QPixmap.fromImage(image.scaled(FEATURE_PIXELS, FEATURE_PIXELS)) if not image.isNull()
                              else QPixmap())
            caption.setText(text)

    def set_class_scores(self, scores: list[tuple[str, float]], chosen: int | None = None) -> None:
        """The selected detection's (class name, softmax score) per class, background first;
        row `chosen` (the detected class) in bold."""
        self.class_table.setRowCount(len(scores))
        for row, (name, score) in enumerate(scores):
            for column, text in enumerate((name, f"{score:.3f}")):
                item = QTableWidgetItem(text)
                font = item.font()
                font.setBold(row == chosen)
                item.setFont(font)
                self.class_table.setItem(row, column, item)
        self.class_table.setFixedHeight(self.class_table.horizontalHeader().sizeHint().height()
                                        + len(scores) * self.class_table.verticalHeader().defaultSectionSize() + 4)

    def set_roi_samples(self, rows: list, class_names: list[str], chosen: int | None = None) -> None:
        """The sampled RoIs (frcnn_core.inspect.follow.RoiSampleRow), foreground first; the row of RoI
        `chosen` selected, without emitting sample_chosen."""
        self.sample_table.blockSignals(True)
        self.sample_table.setRowCount(len(rows))
        for row_index, row in enumerate(rows):
            kind = (class_names[row.label] if row.label < len(class_names) else str(row.label)) if row.foreground \
                else "background"
            texts = (str(row.index), kind, f"{row.iou:.2f}", str(row.gt_index) if row.foreground else "", row.source,
                     *((f"{value:+.2f}" for value in row.targets) if row.foreground else ("",) * 4))
            for column, text in enumerate(texts):
                self.sample_table.setItem(row_index, column, QTableWidgetItem(text))
        self.select_sample(chosen)
        self.sample_table.blockSignals(False)

    def select_sample(self, index: int | None) -> None:
        """Select the row of RoI `index` (None: none) without emitting sample_chosen."""
        blocked = self.sample_table.blockSignals(True)
        self.sample_table.clearSelection()
        for row in range(self.sample_table.rowCount()):
            if index is not None and self.sample_table.item(row, 0).text() == str(index):
                self.sample_table.setCurrentCell(row, 0)
                self.sample_table.scrollToItem(self.sample_table.item(row, 0))
        self.sample_table.blockSignals(blocked)

    def clear_inspection(self) -> None:
        """Another image or model: the views of the previous inspection (RoI samples, class
        scores, pooled features) empty until the new one fills them."""
        self.set_roi_samples([], [])
        self.set_class_scores([])
        self.set_feature_maps([])

    def nms_iou(self) -> float:
        return self.nms_slider.value() / NMS_STEPS

    def _show_nms_value(self) -> None:
        self.nms_value.setText(f"{self.nms_iou():.2f}")

    def _knobs_moved(self) -> None:
        self._show_nms_value()
        self.proposal_knobs_changed.emit({"nms_thresh": self.nms_iou(), "post_nms_top_n": self.post_nms_top_n.value(),
                                          "pre_nms_top_n": self.pre_nms_top_n.value(),
                                          "min_size": self.min_size.value()})

    def _row_changed(self, row: int) -> None:
        self.previous.setEnabled(row > 0)
        self.next.setEnabled(row < len(STAGES) - 1)
        self.proposal_controls.setVisible(STAGES[row] == "proposals")
        self.shown_controls.setVisible(STAGES[row] in ("proposals", "proposals-pre-nms"))
        self.sample_table.setVisible(STAGES[row] == "roi-samples")
        self.objectness_controls.setVisible(STAGES[row] == "objectness")
        self.anchor_controls.setVisible(STAGES[row] == "anchors")
        self.pool_view.setVisible(STAGES[row] == "roi-pool")
        self.class_table.setVisible(STAGES[row] == "class-scores")
        for stage, controls in self.stage_controls.items():
            controls.setVisible(STAGES[row] == stage)
        self.stage_chosen.emit(STAGES[row])


def _table(headers: tuple[str, ...]) -> QTableWidget:
    """A read-only table with compact rows and no row numbers."""
    table = QTableWidget(0, len(headers))
    table.setHorizontalHeaderLabels(headers)
    table.verticalHeader().hide()
    table.setEditTriggers(QAbstractItemView.NoEditTriggers)
    table.verticalHeader().setDefaultSectionSize(table.fontMetrics().height() + 4)
    return table
