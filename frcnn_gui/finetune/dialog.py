"""The fine-tuning dialog: which data, which validation images, which base model, how long and on
what device. Check and Start plan the run (that reads the annotations); a plan that fails shows
its one-line reason in red and the dialog stays open. A plan that works shows the split, what
the before/after comparison will compare (or why the base model cannot be compared), and the
annotation problems by name ("10 images have no annotation file: not used for training").

With a QSettings the dialog opens with the settings last checked or started (every field but the
run name, which is new for each run; the runs folder is the window's).

`plan_kwargs()` is the keyword dict for `frcnn_core.training.finetune.plan_finetune`. After `exec()`
returns Accepted, `plan` is the FinetunePlan and `preview_every()` how often to preview.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import (
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
from frcnn_core.modeling.zoo import MODELS
from frcnn_core.training.finetune import FinetunePlan, class_overlap, plan_finetune
from frcnn_gui.finetune.text import counted, format_duration

DEFAULT_ITERATIONS, DEFAULT_BATCH, DEFAULT_LR, DEFAULT_PREVIEW_EVERY = 100, 2, 0.01, 25
FLIP_PROBABILITY = 0.5
MAX_FROZEN_STAGES = 4
# VOC's per-class lists (cat_train.txt ...) are not splits
_CLASS_LIST = re.compile(r".+_(train|val|trainval|test)$")
SETTINGS_GROUP = "finetune"
PROBLEM_STYLE, WARNING_STYLE = "color: #c62828", "color: #b35900"


def base_model_choices(current: tuple[str, str, str] | None = None) -> list[tuple[str, str, str]]:
    """(label, model, weights) for the base-model combo: the current model first when given as
    (label, model, weights), then the bundled demo, MobileNetV2 on ImageNet, and every other zoo
    model with its COCO weights when it has them, else ImageNet's."""
    choices = [(f"the current model: {current[0]}", current[1], current[2])] if current else []
    choices += [("bccd-demo (bundled, blood cells)", "bccd-demo", "none"),
                ("mobilenet-v2, ImageNet backbone", "mobilenet-v2", "imagenet")]
    for name, spec in MODELS.items():
        if name != "mobilenet-v2":
            weights = "coco" if spec.coco_weights is not None else "imagenet"
            choices.append((f"{name}, {'COCO' if weights == 'coco' else 'ImageNet backbone'}", name, weights))
    return choices


def voc_splits(data: str | Path) -> list[str]:
    """The split names of a VOC folder (ImageSets/Main/<split>.txt), sorted; [] for other data."""
    folder = Path(data) / "ImageSets" / "Main"
    if not folder.is_dir():
        return []
    return sorted(path.stem for path in folder.glob("*.txt") if not _CLASS_LIST.fullmatch(path.stem))


def plan_summary(plan: FinetunePlan) -> str:
    """'train: 12 images, 30 boxes · validation: 3 images, 8 boxes — per class (train/val): cat 20/5, dog 10/3'."""
    per_class = ", ".join(f"{name} {count}/{plan.val_boxes.get(name, 0)}" for name, count in plan.train_boxes.items())
    train_boxes, val_boxes = (counted(sum(boxes.values()), "box", "boxes")
                              for boxes in (plan.train_boxes, plan.val_boxes))
    return (f"train: {counted(len(plan.settings.images or ()), 'image')}, {train_boxes} · "
            f"validation: {counted(len(plan.val_images), 'image')}, {val_boxes} — per class (train/val): {per_class}")


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
        self._seconds_per_iteration: float | None = None
        self._device_measured = ""
        self._current_data = current_data
        form = QFormLayout()
        form.addRow("Data", self._data_row())
        form.addRow("Validation", self._validation_row())
        self.base = QComboBox()
        for label, model, weights in base_model_choices(current_model):
            self.base.addItem(label, (model, weights))
        form.addRow("Base model", self.base)
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
        buttons = QDialogButtonBox(QDialogButtonBox.Cancel)
        self.check_button = buttons.addButton("Check", QDialogButtonBox.ActionRole)
        self.start_button = buttons.addButton("Start", QDialogButtonBox.AcceptRole)
        self.start_button.setDefault(True)
        self.check_button.clicked.connect(self.check)
        buttons.accepted.connect(self.start)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        for label in (self.time_hint, self.summary, self.problems, self.error):
            layout.addWidget(label)
        layout.addWidget(buttons)
        self.iterations.valueChanged.connect(self._show_time_hint)
        self._data_changed()
        if settings is not None:
            self._restore(settings)
        self._show_time_hint()

    # --- rows -------------------------------------------------------------------------------
    def _data_row(self) -> QWidget:
        self.data_current = QRadioButton(f"the open folder ({Path(self._current_data).name})" if self._current_data
                                         else "the open folder (none is open)")
        self.data_current.setEnabled(self._current_data is not None)
        self.data_other = QRadioButton("another dataset:")
        self.data_path = QLineEdit(placeholderText="a VOC folder or a COCO .json")
        folder, json_file = QPushButton("Folder…"), QPushButton("COCO JSON…")
        folder.clicked.connect(lambda: self._browse_data(json_file=False))
        json_file.clicked.connect(lambda: self._browse_data(json_file=True))
        (self.data_current if self._current_data else self.data_other).setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.data_current)
        group.addButton(self.data_other)
        group.buttonToggled.connect(self._data_changed)
        self.data_path.editingFinished.connect(self._data_changed)
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
        return _column(auto, voc)

    def _training_row(self) -> QWidget:
        self.iterations = QSpinBox(minimum=1, maximum=1_000_000, value=DEFAULT_ITERATIONS, singleStep=50,
                                   suffix=" iterations")
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
        for widget in (self.iterations, self.lr, self.batch, self.frozen, self.device):
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
        return _column(row)

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
        return (self._current_data or "") if self.data_current.isChecked() else self.data_path.text().strip()

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

    def set_time_per_iteration(self, seconds: float | None, device: str) -> None:
        """A measured (or estimated) time per training iteration on `device`, for the hint line."""
        self._seconds_per_iteration, self._device_measured = seconds, device
        self._show_time_hint()

    # --- actions ----------------------------------------------------------------------------
    def check(self) -> FinetunePlan | None:
        """Plan the run: show its summary, or the reason it cannot run (and return None)."""
        kwargs = self.plan_kwargs()
        try:
            if not kwargs["data"]:
                raise InputError(None, "choose the data: the open folder, a VOC folder or a COCO .json")
            if not kwargs["runs_dir"]:
                raise InputError(None, "choose a runs folder: each run gets a folder inside it")
            plan = plan_finetune(**kwargs)
        except InputError as error:
            self.error.setText(str(error))
            self.error.setVisible(True)
            self.summary.clear()
            self.problems.setVisible(False)
            return None
        finally:
            if self._settings is not None:
                self._remember(self._settings)
        self.error.setVisible(False)
        self.summary.setText(f"{plan_summary(plan)}\nbefore/after: {class_overlap(plan).note()}")
        self.problems.setText("\n".join(f"annotation problem: {line}" for line in plan.problems))
        self.problems.setVisible(bool(plan.problems))
        return plan

    def start(self) -> None:
        plan = self.check()
        if plan is not None:
            self.plan = plan
            self.accept()

    # --- remembered settings -----------------------------------------------------------------
    def _remember(self, settings: QSettings) -> None:
        """Keep the fields as they stand (all but the run name and the runs folder)."""
        settings.beginGroup(SETTINGS_GROUP)
        model, weights = self.base.currentData()
        for key, value in (("data_other", self.data_other.isChecked()), ("data_path", self.data_path.text()),
                           ("val_voc", self.val_voc.isChecked()), ("val_percent", self.val_percent.value()),
                           ("train_split", self.train_split.currentText()), ("val_split", self.val_split.currentText()),
                           ("base_model", model), ("base_weights", weights), ("iterations", self.iterations.value()),
                           ("lr", self.lr.value()), ("batch", self.batch.value()),
                           ("frozen", self.frozen.currentIndex()), ("device", self.device.currentData()),
                           ("hflip", self.hflip.isChecked()), ("vflip", self.vflip.isChecked()),
                           ("photometric", self.photometric.isChecked()), ("preview", self.preview.value())):
            settings.setValue(key, value)
        settings.endGroup()

    def _restore(self, settings: QSettings) -> None:
        """The fields as `_remember` kept them; a field never kept, or whose choice is gone (a
        base model no longer offered, a split the data lacks), keeps its default."""
        settings.beginGroup(SETTINGS_GROUP)
        try:
            def value(key: str, default, kind=str):
                return settings.value(key, default, type=kind) if settings.contains(key) else default

            self.data_path.setText(value("data_path", ""))
            if value("data_other", False, bool) or not self._current_data:
                self.data_other.setChecked(True)
            self._data_changed()
            _choose(self.base, (value("base_model", ""), value("base_weights", "")))
            for combo, key in ((self.train_split, "train_split"), (self.val_split, "val_split")):
                if combo.findText(value(key, "")) >= 0:
                    combo.setCurrentText(value(key, ""))
            if value("val_voc", False, bool) and self.val_voc.isEnabled():
                self.val_voc.setChecked(True)
            self.val_percent.setValue(value("val_percent", self.val_percent.value(), int))
            self.iterations.setValue(value("iterations", self.iterations.value(), int))
            self.lr.setValue(value("lr", self.lr.value(), float))
            self.batch.setValue(value("batch", self.batch.value(), int))
            self.frozen.setCurrentIndex(min(value("frozen", 0, int), self.frozen.count() - 1))
            _choose(self.device, value("device", "auto"))
            for box, key in ((self.hflip, "hflip"), (self.vflip, "vflip"), (self.photometric, "photometric")):
                box.setChecked(value(key, box.isChecked(), bool))
            self.preview.setValue(value("preview", self.preview.value(), int))
        finally:
            settings.endGroup()

    def _data_changed(self, *_) -> None:
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
            self._data_changed()

    def _browse_runs(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Runs folder", self.runs_dir.text())
        if path:
            self.runs_dir.setText(path)

    def _show_time_hint(self, *_) -> None:
        seconds = self._seconds_per_iteration
        if seconds is None:
            self.time_hint.setText("On a CPU, small models take about a second per iteration; "
                                   "the first few are slower.")
            return
        total = format_duration(seconds * self.iterations.value())
        self.time_hint.setText(f"About {seconds:.2g} s per iteration on {self._device_measured} after the first few: "
                               f"{self.iterations.value()} iterations take about {total}.")


def _choose(combo: QComboBox, data) -> None:
    """Select the combo entry whose data is `data`, when there is one."""
    index = next((index for index in range(combo.count()) if combo.itemData(index) == data), -1)
    if index >= 0:
        combo.setCurrentIndex(index)


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
