"""The Fine-tune dialog's fields kept between sessions in QSettings: every field but the run name
(new for each run) and the runs folder (the window's). `remember` writes them as the dialog
stands; `restore` puts them back, leaving at its default a field never kept or whose choice is
gone (a base model no longer offered, a split the data lacks)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QComboBox

if TYPE_CHECKING:
    from frcnn_gui.finetune.dialog import FinetuneDialog

SETTINGS_GROUP = "finetune"


def remember(dialog: FinetuneDialog, settings: QSettings) -> None:
    """Keep the dialog's fields as they stand."""
    settings.beginGroup(SETTINGS_GROUP)
    model, weights = dialog.base.currentData()
    for key, value in (("data_other", dialog.data_other.isChecked()), ("data_path", dialog.data_path.text()),
                       ("val_voc", dialog.val_voc.isChecked()), ("val_percent", dialog.val_percent.value()),
                       ("train_split", dialog.train_split.currentText()),
                       ("val_split", dialog.val_split.currentText()), ("base_auto", dialog.base_auto.isChecked()),
                       ("base_model", model), ("base_weights", weights), ("budgeted", dialog.by_minutes.isChecked()),
                       ("minutes", dialog.minutes.value()), ("iterations", dialog.iterations.value()),
                       ("lr", dialog.lr.value()), ("batch", dialog.batch.value()),
                       ("frozen", dialog.frozen.currentIndex()), ("device", dialog.device.currentData()),
                       ("hflip", dialog.hflip.isChecked()), ("vflip", dialog.vflip.isChecked()),
                       ("photometric", dialog.photometric.isChecked()), ("preview", dialog.preview.value())):
        settings.setValue(key, value)
    settings.endGroup()


def restore(dialog: FinetuneDialog, settings: QSettings) -> None:
    """The dialog's fields as `remember` kept them."""
    settings.beginGroup(SETTINGS_GROUP)
    try:
        def value(key: str, default, kind=str):
            return settings.value(key, default, type=kind) if settings.contains(key) else default

        dialog.data_path.setText(value("data_path", ""))
        if value("data_other", False, bool) or not dialog.current_data:
            dialog.data_other.setChecked(True)
        dialog.data_changed()
        _choose(dialog.base, (value("base_model", ""), value("base_weights", "")))
        dialog.base_auto.setChecked(value("base_auto", True, bool))
        (dialog.by_minutes if value("budgeted", True, bool) else dialog.by_iterations).setChecked(True)
        dialog.minutes.setValue(value("minutes", dialog.minutes.value(), float))
        for combo, key in ((dialog.train_split, "train_split"), (dialog.val_split, "val_split")):
            if combo.findText(value(key, "")) >= 0:
                combo.setCurrentText(value(key, ""))
        if value("val_voc", False, bool) and dialog.val_voc.isEnabled():
            dialog.val_voc.setChecked(True)
        dialog.val_percent.setValue(value("val_percent", dialog.val_percent.value(), int))
        dialog.iterations.setValue(value("iterations", dialog.iterations.value(), int))
        dialog.lr.setValue(value("lr", dialog.lr.value(), float))
        dialog.batch.setValue(value("batch", dialog.batch.value(), int))
        dialog.frozen.setCurrentIndex(min(value("frozen", 0, int), dialog.frozen.count() - 1))
        _choose(dialog.device, value("device", "auto"))
        for box, key in ((dialog.hflip, "hflip"), (dialog.vflip, "vflip"), (dialog.photometric, "photometric")):
            box.setChecked(value(key, box.isChecked(), bool))
        dialog.preview.setValue(value("preview", dialog.preview.value(), int))
    finally:
        settings.endGroup()


def _choose(combo: QComboBox, data) -> None:
    """Select the combo entry whose data is `data`, when there is one."""
    index = next((index for index in range(combo.count()) if combo.itemData(index) == data), -1)
    if index >= 0:
        combo.setCurrentIndex(index)
