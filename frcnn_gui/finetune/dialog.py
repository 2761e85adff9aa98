"""The fine-tuning dialog: which data, which base model, how long and on what device.

How long is a time budget in minutes (the default, 5) or a number of iterations. With minutes
the plan comes from the data (`plan_budgeted_finetune`): the base model is "automatic (from the
data)" unless the user picks one, which then wins, and the validation hold-out, learning rate,
batch, frozen stages and flips are the plan's (their fields are greyed). With iterations every
field is the user's (`plan_finetune`).

Check and Start plan the run (that reads the annotations); a plan that fails shows its one-line
reason in red and the dialog stays open. A plan that works shows the split, what the
before/after comparison will compare (or why the base model cannot be compared), and the
annotation problems by name ("10 images have no annotation file: not used for training"); a
budgeted plan also its "why" lines and the anchor coverage with its picture (`budget_box`).
Planning takes seconds (it builds the base model): it runs in the background
(`background.call_in_background`) under a busy cursor, with Check and Start disabled.

With a QSettings the dialog opens with the settings last checked or started (`dialog_memory`).

`plan_kwargs()` and `budget_kwargs()` are the keyword dicts for `plan_finetune` and
`plan_budgeted_finetune` (frcnn_core.training.finetune). After `exec()` returns Accepted, `plan`
is the FinetunePlan and `preview_every()` how often to preview.
"""
from __future__ import annotations

from pathlib import Path

import torch
from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import (
    QApplication,
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from frcnn_core.data.augment import AugmentConfig
from frcnn_core.errors import InputError
from frcnn_core.training.budget import MAX_MINUTES, MIN_MINUTES
from frcnn_core.training.finetune import FinetunePlan, class_overlap, plan_budgeted_finetune, plan_finetune
from frcnn_gui.finetune.background import call_in_background
from frcnn_gui.finetune.budget_box import BudgetBox
from frcnn_gui.finetune.choices import base_model_choices, voc_splits
from frcnn_gui.finetune.dialog_memory import remember, restore
from frcnn_gui.finetune.text import format_duration, plan_summary

DEFAULT_MINUTES, DEFAULT_ITERATIONS, DEFAULT_BATCH, DEFAULT_LR, DEFAULT_PREVIEW_EVERY = 5.0, 100, 2, 0.01, 25
FLIP_PROBABILITY = 0.5
MAX_FROZEN_STAGES = 4
PROBLEM_STYLE, WARNING_STYLE = "color: #c62828", "color: #b35900"


class FinetuneDialog(QDialog):
    """current_data: the open folder (its annotations are the default data), or None.
    current_model: (label, model, weights) of the model the window holds, or None.
    runs_dir: where new runs go by default. settings: where the last settings are kept, or None."""

    def __init__(self, current_data: str | None, current_model: tuple[str, str, str] | None, runs_dir: str,
                 parent: QWidget | None = None, settings: QSettings | None = None):
        super().__init__(parent)
        self._settings = settings
        self.setWindowTitle("Fine-tune a model")
        self.plan: FinetunePlan | None = None
        self._closed_while_planning = False
        self._seconds_per_iteration: float | None = None
        self._device_measured = ""
        self.current_data = current_data
        self.form_fields = QWidget()
        form = QFormLayout(self.form_fields)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Data", self._data_row())
        form.addRow("Length", self._length_row())
        form.addRow("Base model", self._base_row(current_model))
        form.addRow("Validation", self._validation_row())
        form.addRow("Training", self._training_row())
        form.addRow("Augment", self._augment_row())
        form.addRow("Runs folder", self._runs_row(runs_dir))
        self.name = QLineEdit(placeholderText="automatic (date and time)")
        form.addRow("Run name", self.name)
        self.preview = QSpinBox(minimum=0, maximum=100_000, value=DEFAULT_PREVIEW_EVERY, suffix=" iterations",
                                specialValueText="off")
        self.preview.setToolTip("Run the model on the current image every N iterations while it trains (0 = off)")
        form.addRow("Live preview every", self.preview)
        self.time_hint = QLabel(wordWrap=True)
        self.time_hint.setStyleSheet("color: palette(mid)")
        self.summary = QLabel(wordWrap=True)
        self.problems = QLabel(wordWrap=True, visible=False)
        self.problems.setStyleSheet(WARNING_STYLE)
        self.error = QLabel(wordWrap=True, visible=False)
        self.error.setStyleSheet(PROBLEM_STYLE)
        self.budget_box = BudgetBox()
        self.budget_box.setVisible(False)
        buttons = QDialogButtonBox(QDialogButtonBox.Cancel)
        self.check_button = buttons.addButton("Check", QDialogButtonBox.ActionRole)
        self.start_button = buttons.addButton("Start", QDialogButtonBox.AcceptRole)
        self.start_button.setDefault(True)
        self.check_button.clicked.connect(self.check)
        buttons.accepted.connect(self.start)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.form_fields)
        for label in (self.time_hint, self.summary, self.problems, self.budget_box, self.error):
            layout.addWidget(label)
        layout.addWidget(buttons)
        self.iterations.valueChanged.connect(self._show_time_hint)
        self.minutes.valueChanged.connect(self._show_time_hint)
        self.by_minutes.toggled.connect(self._mode_changed)
        self.base_auto.toggled.connect(self._mode_changed)
        self.data_changed()
        if settings is not None:
            restore(self, settings)
        self._mode_changed()

    # --- rows -------------------------------------------------------------------------------
    def _data_row(self) -> QWidget:
        self.data_current = QRadioButton(f"the open folder ({Path(self.current_data).name})" if self.current_data
                                         else "the open folder (none is open)")
        self.data_current.setEnabled(self.current_data is not None)
        self.data_other = QRadioButton("another dataset:")
        self.data_path = QLineEdit(placeholderText="a VOC folder or a COCO .json")
        folder, json_file = QPushButton("Folder…"), QPushButton("COCO JSON…")
        folder.clicked.connect(lambda: self._browse_data(json_file=False))
        json_file.clicked.connect(lambda: self._browse_data(json_file=True))
        (self.data_current if self.current_data else self.data_other).setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.data_current)
        group.addButton(self.data_other)
        group.buttonToggled.connect(self.data_changed)
        self.data_path.editingFinished.connect(self.data_changed)
        other = QHBoxLayout()
        for widget in (self.data_other, self.data_path, folder, json_file):
            other.addWidget(widget)
        return _column(self.data_current, other)

    def _validation_row(self) -> QWidget:
        self.val_auto = QRadioButton("random", checked=True)
        self.val_percent = QSpinBox(minimum=5, maximum=90, value=20, suffix=" % of the annotated images")
        self.val_voc = QRadioButton("VOC splits: train on")
        self.train_split, self.val_split = QComboBox(), QComboBox()
        group = QButtonGroup(self)
        group.addButton(self.val_auto)
        group.addButton(self.val_voc)
        auto, voc = QHBoxLayout(), QHBoxLayout()
        auto.addWidget(self.val_auto)
        auto.addWidget(self.val_percent)
        auto.addStretch()
        for widget in (self.val_voc, self.train_split, QLabel("validate on"), self.val_split):
            voc.addWidget(widget)
        voc.addStretch()
        self.validation_fields = _column(auto, voc)
        return self.validation_fields

    def _base_row(self, current_model: tuple[str, str, str] | None) -> QWidget:
        self.base_auto = QCheckBox("automatic (from the data)", checked=True)
        self.base_auto.setToolTip("With a time budget: COCO weights when they are on this machine, else an "
                                  "ImageNet backbone in the shape that suits the boxes")
        self.base = QComboBox()
        for label, model, weights in base_model_choices(current_model):
            self.base.addItem(label, (model, weights))
        row = QHBoxLayout()
        row.addWidget(self.base_auto)
        row.addWidget(self.base, stretch=1)
        return _column(row)

    def _length_row(self) -> QWidget:
        self.by_minutes = QRadioButton("a time budget of", checked=True)
        self.minutes = QDoubleSpinBox(decimals=1, minimum=MIN_MINUTES, maximum=MAX_MINUTES, value=DEFAULT_MINUTES,
                                      singleStep=1.0, suffix=" min")
        self.by_iterations = QRadioButton("a number of iterations:")
        self.iterations = QSpinBox(minimum=1, maximum=1_000_000, value=DEFAULT_ITERATIONS, singleStep=50,
                                   suffix=" iterations")
        group = QButtonGroup(self)
        row = QHBoxLayout()
        for button, spin_box in ((self.by_minutes, self.minutes), (self.by_iterations, self.iterations)):
            group.addButton(button)
            row.addWidget(button)
            row.addWidget(spin_box)
        row.addStretch()
        return _column(row)

    def _training_row(self) -> QWidget:
        self.lr = QDoubleSpinBox(decimals=4, minimum=1e-4, maximum=1.0, value=DEFAULT_LR, singleStep=0.001,
                                 prefix="lr ")
        self.batch = QSpinBox(minimum=1, maximum=64, value=DEFAULT_BATCH, prefix="batch ")
        self.frozen = QComboBox()
        self.frozen.addItem("frozen stages: model default", None)
        for count in range(1, MAX_FROZEN_STAGES + 1):
            self.frozen.addItem(f"frozen stages: {count}", count)
        self.frozen.setToolTip("Backbone stages whose weights stay fixed (fewer trainable weights: faster, "
                               "less overfitting on few images)")
        self.device = QComboBox()
        for device in ("auto", "cpu", "cuda") if torch.cuda.is_available() else ("auto", "cpu"):
            self.device.addItem(f"on {device}", device)
        self.device.setToolTip("auto: the GPU when there is one, else the CPU")
        row = QHBoxLayout()
        for widget in (self.lr, self.batch, self.frozen, self.device):
            row.addWidget(widget)
        return _column(row)

    def _augment_row(self) -> QWidget:
        self.hflip = QCheckBox("horizontal flip", checked=True)
        self.vflip = QCheckBox("vertical flip")
        self.photometric = QCheckBox("brightness / contrast / saturation")
        row = QHBoxLayout()
        for widget in (self.hflip, self.vflip, self.photometric):
            row.addWidget(widget)
        row.addStretch()
        self.augment_fields = _column(row)
        return self.augment_fields

    def _runs_row(self, runs_dir: str) -> QWidget:
        self.runs_dir = QLineEdit(runs_dir)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse_runs)
        row = QHBoxLayout()
        row.addWidget(self.runs_dir)
        row.addWidget(browse)
        return _column(row)

    # --- values -----------------------------------------------------------------------------
    def data(self) -> str:
        """The chosen dataset path; "" when none is chosen."""
        return (self.current_data or "") if self.data_current.isChecked() else self.data_path.text().strip()

    def preview_every(self) -> int:
        return self.preview.value()

    def plan_kwargs(self) -> dict:
        """Keyword arguments for `plan_finetune`, as the dialog stands."""
        model, weights = self.base.currentData()
        split = {"train_split": self.train_split.currentText(), "val_split": self.val_split.currentText()} \
            if self.val_voc.isChecked() else {"val_fraction": self.val_percent.value() / 100}
        return dict(
            data=self.data(), runs_dir=self.runs_dir.text().strip(), base_model=model, base_weights=weights,
            **split, iters=self.iterations.value(), lr=self.lr.value(), batch_size=self.batch.value(),
            frozen_stages=self.frozen.currentData(), device=self.device.currentData(),
            augment=AugmentConfig(hflip=FLIP_PROBABILITY if self.hflip.isChecked() else 0.0,
                                  vflip=FLIP_PROBABILITY if self.vflip.isChecked() else 0.0,
                                  photometric=self.photometric.isChecked()),
            name=self.name.text().strip() or None,
        )

    def budget_kwargs(self) -> dict:
        """Keyword arguments for `plan_budgeted_finetune`, as the dialog stands; the base model is
        None (the plan's) while "automatic" is ticked. A VOC folder trains on its "train" split."""
        model, weights = (None, None) if self.base_auto.isChecked() else self.base.currentData()
        data = self.data()
        return dict(data=data, runs_dir=self.runs_dir.text().strip(), minutes=self.minutes.value(), base_model=model,
                    base_weights=weights, split="train" if "train" in voc_splits(data) else None,
                    device=self.device.currentData(), name=self.name.text().strip() or None)

    def set_time_per_iteration(self, seconds: float | None, device: str) -> None:
        """A measured (or estimated) time per training iteration on `device`, for the hint line."""
        self._seconds_per_iteration, self._device_measured = seconds, device
        self._show_time_hint()

    # --- actions ----------------------------------------------------------------------------
    def check(self) -> FinetunePlan | None:
        """Plan the run: show its summary, or the reason it cannot run (and return None)."""
        budgeted = self.by_minutes.isChecked()
        kwargs = self.budget_kwargs() if budgeted else self.plan_kwargs()
        self.budget_box.setVisible(False)
        self.summary.setText("planning: reading the annotations and building the base model…")
        QApplication.setOverrideCursor(Qt.BusyCursor)
        self._set_planning(True)
        try:
            if not kwargs["data"]:
                raise InputError(None, "choose the data: the open folder, a VOC folder or a COCO .json")
            if not kwargs["runs_dir"]:
                raise InputError(None, "choose a runs folder: each run gets a folder inside it")
            plan = call_in_background(plan_budgeted_finetune if budgeted else plan_finetune, **kwargs)
        except InputError as error:
            self.error.setText(str(error))
            self.error.setVisible(True)
            self.summary.clear()
            self.problems.setVisible(False)
            return None
        finally:
            self._set_planning(False)
            QApplication.restoreOverrideCursor()
            if self._settings is not None:
                remember(self, self._settings)
        if plan.anchor_fit is not None:
            self.budget_box.show_plan(plan.why, plan.anchor_fit)
            self.budget_box.setVisible(True)
        self.error.setVisible(False)
        self.summary.setText(f"{plan_summary(plan)}\nbefore/after: {class_overlap(plan).note()}")
        self.problems.setText("\n".join(f"annotation problem: {line}" for line in plan.problems))
        self.problems.setVisible(bool(plan.problems))
        self.layout().activate()  # the size hint with all that shown
        self.resize(self.size().expandedTo(self.sizeHint()))  # not adjustSize: it keeps to 2/3 of the screen
        return plan

    def start(self) -> None:
        self._closed_while_planning = False
        plan = self.check()
        if plan is not None and not self._closed_while_planning:
            self.plan = plan
            self.accept()

    # --- reactions ------------------------------------------------------------------------
    def data_changed(self, *_) -> None:
        splits = voc_splits(self.data()) if self.data() else []
        for combo, preferred in ((self.train_split, "train"), (self.val_split, "val")):
            combo.clear()
            combo.addItems(splits)
            if preferred in splits:
                combo.setCurrentText(preferred)
        for widget in (self.val_voc, self.train_split, self.val_split):
            widget.setEnabled(bool(splits))
        if not splits:
            self.val_auto.setChecked(True)
        self.summary.clear()

    def _browse_data(self, json_file: bool) -> None:
        if json_file:
            path, _ = QFileDialog.getOpenFileName(self, "COCO annotations", "", "COCO JSON (*.json)")
        else:
            path = QFileDialog.getExistingDirectory(self, "VOC folder or folder of images with XML")
        if path:
            self.data_path.setText(path)
            self.data_other.setChecked(True)
            self.data_changed()

    def _browse_runs(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Runs folder", self.runs_dir.text())
        if path:
            self.runs_dir.setText(path)

    def reject(self) -> None:
        self._closed_while_planning = not self.check_button.isEnabled()  # Start then leaves it closed
        super().reject()

    def _set_planning(self, planning: bool) -> None:
        for widget in (self.check_button, self.start_button, self.form_fields):
            widget.setEnabled(not planning)

    def _mode_changed(self, *_) -> None:
        """Grey what a time budget plans; the base model combo while "automatic" is ticked."""
        budgeted = self.by_minutes.isChecked()
        self.minutes.setEnabled(budgeted)
        self.iterations.setEnabled(not budgeted)
        self.base_auto.setEnabled(budgeted)
        self.base.setEnabled(not (budgeted and self.base_auto.isChecked()))
        for planned in (self.validation_fields, self.lr, self.batch, self.frozen, self.augment_fields):
            planned.setEnabled(not budgeted)
        self.summary.clear()
        self.budget_box.setVisible(False)
        self._show_time_hint()

    def _show_time_hint(self, *_) -> None:
        if self.by_minutes.isChecked():
            self.time_hint.setText(f"The run ends within {self.minutes.value():g} min, validating and saving "
                                   "included; final.pt is the model that scored best on the validation images. The "
                                   "plan chooses the greyed fields: choose iterations to set them yourself.")
            return
        seconds = self._seconds_per_iteration
        if seconds is None:
            self.time_hint.setText("On a CPU, small models take about a second per iteration; "
                                   "the first few are slower.")
            return
        total = format_duration(seconds * self.iterations.value())
        self.time_hint.setText(f"About {seconds:.2g} s per iteration on {self._device_measured} after the first few: "
                               f"{self.iterations.value()} iterations take about {total}.")


def _column(*rows) -> QWidget:
    """Rows (layouts or widgets) stacked without margins, as one form field."""
    widget = QWidget()
    layout = QVBoxLayout(widget)
    layout.setContentsMargins(0, 0, 0, 0)
    for row in rows:
        if isinstance(row, QWidget):
            layout.addWidget(row)
        else:
            layout.addLayout(row)
    return widget
