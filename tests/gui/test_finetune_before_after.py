"""Before/after told honestly by the fine-tuning widgets, with hand-made metrics: the comparison
view and the Runs panel when the models share every class, some, none, or the base model had
no detector yet; the dialog names annotation problems and what the comparison will compare, and
opens with the settings last checked."""
from __future__ import annotations

import pytest
from PIL import Image
from PySide6.QtCore import QSettings

from frcnn_core.vocabulary import COMPARABLE, NO_DETECTOR, NOT_COMPARABLE, SHARED_CLASSES
from frcnn_gui.finetune.before_after import BEFORE_COLUMN, CHANGE_COLUMN, ComparisonView
from frcnn_gui.finetune.dialog import FinetuneDialog
from frcnn_gui.finetune.text import ap50_before_after, verdict_line

from datasets import write_tiny_dataset

FAST_MODEL = ("mobilenet-v3-320", "mobilenet-v3-320-fpn", "none")  # (label, model, weights)
NOT_COMPARABLE_NOTE = "not comparable: the base model knows WBC, RBC, Platelets; this run trains raccoon"


def scores(ap50: float | None, per_class: dict) -> dict:
    return {"AP": None if ap50 is None else ap50 / 2, "AP50": ap50, "AP75": None, "per_class_AP50": per_class}


def metrics(verdict: str, note: str, classes: list[str], before: dict | None, after: dict | None, own: dict) -> dict:
    """score_run's metrics: the new model's own scores `own` and the before_after block."""
    return {**own, "val_images": 2, "checkpoint": "final.pt",
            "before_after": {"base_model": "bccd-demo", "verdict": verdict, "note": note,
                             "base_classes": ["WBC", "RBC", "Platelets"], "classes": classes, "before": before,
                             "after": after, "changes": None if before is None else
                             {"gained": 1, "lost": 0, "changed_class": 0, "kept": 3}}}


NOT_COMPARED = metrics(NOT_COMPARABLE, NOT_COMPARABLE_NOTE, [], None, None, scores(0.4, {"raccoon": 0.4}))
SHARED_NOTE = "compared on the shared classes only: RBC (the base model also knows WBC, Platelets; this run also " \
              "trains raccoon)"
SHARED = metrics(SHARED_CLASSES, SHARED_NOTE, ["RBC"], scores(0.6, {"RBC": 0.6}), scores(0.7, {"RBC": 0.7}),
                 scores(0.5, {"raccoon": 0.3, "RBC": 0.7}))
UNTRAINED = metrics(NO_DETECTOR, "before: no detector yet (the base model's detection head is untrained); only the "
                    "new model's own scores are shown", [], None, None, scores(0.25, {"cat": 0.25}))
SAME = metrics(COMPARABLE, "compared on every class: RBC", ["RBC"], scores(0.6, {"RBC": 0.6}),
               scores(0.55, {"RBC": 0.55}), scores(0.55, {"RBC": 0.55}))


def table_texts(view: ComparisonView) -> dict[str, list[str]]:
    """Row title -> the texts of the columns a user sees."""
    table = view.table
    shown = [column for column in range(table.columnCount()) if not table.isColumnHidden(column)]
    return {table.verticalHeaderItem(row).text(): [table.item(row, column).text() for column in shown]
            for row in range(table.rowCount())}


@pytest.fixture
def view(qtbot) -> ComparisonView:
    widget = ComparisonView()
    qtbot.addWidget(widget)
    widget.show()
    return widget


def test_not_comparable_shows_the_reason_and_the_new_model_alone(view):
    view.set_metrics(NOT_COMPARED)
    assert view.note.isVisible() and view.note.text() == NOT_COMPARABLE_NOTE
    assert view.table.isColumnHidden(BEFORE_COLUMN) and view.table.isColumnHidden(CHANGE_COLUMN)
    assert table_texts(view) == {"AP": ["20.0"], "AP50": ["40.0"], "AP75": ["—"], "AP50 raccoon": ["40.0"]}
    assert not any(label.isVisible() for label in view.changes.values())  # no "lost" to count


def test_shared_classes_compare_on_those_and_a_new_class_has_no_before(view):
    view.set_metrics(SHARED)
    assert view.note.text() == SHARED_NOTE
    assert not view.table.isColumnHidden(BEFORE_COLUMN)
    assert table_texts(view) == {"AP": ["30.0", "35.0", "+5.0"], "AP50": ["60.0", "70.0", "+10.0"],
                                 "AP75": ["—", "—", "—"], "AP50 raccoon": ["—", "30.0", "—"],
                                 "AP50 RBC": ["60.0", "70.0", "+10.0"]}
    assert view.changes["validation"].isVisible()
    view.set_metrics(NOT_COMPARED)  # the view follows the run it shows
    view.set_metrics(SAME)
    assert not view.table.isColumnHidden(BEFORE_COLUMN) and view.changes["image"].isVisible()


def test_the_runs_panel_and_the_log_say_what_the_run_panel_says():
    assert ap50_before_after(SAME) == "60.0 → 55.0"
    assert ap50_before_after(SHARED) == "60.0 → 70.0 on RBC"
    assert ap50_before_after(NOT_COMPARED) == "not comparable → 40.0"
    assert ap50_before_after(UNTRAINED) == "no detector yet → 25.0"
    assert ap50_before_after({"AP50": 0.5}) == "— → 50.0"  # a metrics.json from before the comparison by name
    assert ap50_before_after(None) == ""
    assert verdict_line(NOT_COMPARED) == f"{NOT_COMPARABLE_NOTE} — the new model's validation AP50: 40.0"
    assert verdict_line(SHARED) == f"validation AP50 60.0 → 70.0 ({SHARED_NOTE})"
    assert verdict_line(UNTRAINED).startswith("before: no detector yet")


# --- the dialog ---------------------------------------------------------------------------
@pytest.fixture
def settings(tmp_path) -> QSettings:
    return QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)


def test_the_dialog_names_annotation_problems_and_what_will_be_compared(qtbot, tmp_path, settings):
    data = write_tiny_dataset(tmp_path / "data")
    Image.new("RGB", (32, 24)).save(data / "new-photo.png")  # not annotated yet
    dialog = FinetuneDialog(str(data), FAST_MODEL, str(tmp_path / "runs"), settings=settings)
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.by_iterations.setChecked(True)
    assert dialog.check() is not None
    assert dialog.problems.isVisible()
    assert dialog.problems.text() == ("annotation problem: 1 image has no annotation file: not used for training "
                                      "(e.g. new-photo.png)")
    assert dialog.summary.text().endswith("before/after: before: no detector yet (the base model's detection head is "
                                          "untrained); only the new model's own scores are shown")
    dialog.base.setCurrentIndex(1)  # bccd-demo
    assert dialog.base.currentData() == ("bccd-demo", "none") and dialog.check() is not None
    assert dialog.summary.text().endswith(
        "before/after: not comparable: the base model knows WBC, RBC, Platelets; this run trains cat, dog")


def test_the_dialog_opens_with_the_settings_last_checked(qtbot, tmp_path, settings):
    data = write_tiny_dataset(tmp_path / "data")
    first = FinetuneDialog(str(data), FAST_MODEL, str(tmp_path / "runs"), settings=settings)
    qtbot.addWidget(first)
    first.by_iterations.setChecked(True)
    first.minutes.setValue(12.5)
    first.base.setCurrentIndex(1)
    first.val_percent.setValue(35)
    first.iterations.setValue(7)
    first.lr.setValue(0.005)
    first.batch.setValue(1)
    first.frozen.setCurrentIndex(3)
    first.device.setCurrentIndex(1)
    first.hflip.setChecked(False)
    first.photometric.setChecked(True)
    first.preview.setValue(0)
    first.name.setText("once")
    assert first.check() is not None
    expected = first.plan_kwargs()
    second = FinetuneDialog(str(data), FAST_MODEL, str(tmp_path / "runs"), settings=settings)
    qtbot.addWidget(second)
    assert {**second.plan_kwargs(), "name": "once"} == expected  # every field but the run name
    assert second.preview_every() == 0 and second.name.text() == ""
    assert second.by_iterations.isChecked() and second.minutes.value() == 12.5
    third = FinetuneDialog(str(data), ("another", "mobilenet-v2", "imagenet"), str(tmp_path / "runs"),
                           settings=settings)  # the remembered base is still offered, as its own entry
    qtbot.addWidget(third)
    assert third.base.currentData() == ("bccd-demo", "none")


def test_a_remembered_choice_that_is_gone_keeps_the_default(qtbot, tmp_path, settings):
    settings.setValue("finetune/base_model", "/gone/final.pt")
    settings.setValue("finetune/base_weights", "none")
    settings.setValue("finetune/data_other", True)
    settings.setValue("finetune/data_path", str(tmp_path / "elsewhere"))
    settings.setValue("finetune/val_voc", True)  # the data has no VOC splits
    dialog = FinetuneDialog(str(tmp_path), FAST_MODEL, str(tmp_path / "runs"), settings=settings)
    qtbot.addWidget(dialog)
    assert dialog.base.currentIndex() == 0 and dialog.val_auto.isChecked()
    assert dialog.data() == str(tmp_path / "elsewhere")
