"""Journeys: fine-tuning from the real window. Train → Fine-tune… opens the dialog (it names the
annotation problems and what the before/after will compare, and remembers its settings); Start,
Cancel and Resume are clicked; a run on classes the base model does not know says "not
comparable" and draws no "lost" boxes; a random-weight base has "no detector yet"; a run whose
validation AP50 fell asks before the window switches to it.

Training runs for real, one or a few iterations on CPU, so the first two journeys are slow."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication

from frcnn_core.modeling.zoo import BUNDLED
from frcnn_core.training.train import Progress
from frcnn_gui.finetune.before_after import BEFORE_COLUMN, CHANGE_COLUMN
from frcnn_gui.finetune.dialog import FinetuneDialog
from frcnn_gui.finetune.messages import FinetuneResult

from datasets import copy_raccoons
from journeys_helpers import canvas_pixels, changed_fraction

RUN_TIMEOUT_MS = 300_000  # two shared CPU cores: a bccd-demo iteration takes 4-15 s
NOT_COMPARABLE_NOTE = "not comparable: the base model knows WBC, RBC, Platelets; this run trains raccoon"


def when_the_dialog_opens(qtbot, handle) -> None:
    """Call handle(dialog) once the Fine-tune dialog is shown modal (its exec() blocks the caller);
    the dialog is closed (rejected) afterwards if `handle` left it open, even when it failed."""
    def poll() -> None:
        dialog = QApplication.activeModalWidget()
        if not isinstance(dialog, FinetuneDialog) or not dialog.isVisible():
            QTimer.singleShot(20, poll)
            return
        try:
            handle(dialog)
        finally:
            if dialog.isVisible():
                dialog.reject()

    QTimer.singleShot(0, poll)


def type_number(qtbot, spin_box, value: int) -> None:
    """Select the spin box's number and type another, as a user does."""
    spin_box.setFocus()
    spin_box.selectAll()
    qtbot.keyClicks(spin_box, str(value))
    assert spin_box.value() == value


def fill_and_start(qtbot, iterations: int, seen: dict):
    """A dialog handler: a short run by iterations, batch 1, no live preview; Check, note what the
    dialog says, Start."""
    def handle(dialog: FinetuneDialog) -> None:
        qtbot.mouseClick(dialog.by_iterations, Qt.LeftButton)
        type_number(qtbot, dialog.iterations, iterations)
        type_number(qtbot, dialog.batch, 1)
        type_number(qtbot, dialog.preview, 0)
        qtbot.mouseClick(dialog.check_button, Qt.LeftButton)
        seen.update(summary=dialog.summary.text(), problems=dialog.problems.text(), error=dialog.error.text())
        qtbot.mouseClick(dialog.start_button, Qt.LeftButton)
    return handle


def start_from_the_menu(qtbot, window, iterations: int) -> dict:
    """Train → Fine-tune…, fill in the dialog, Start; returns what the dialog showed."""
    seen: dict = {}
    when_the_dialog_opens(qtbot, fill_and_start(qtbot, iterations, seen))
    window.actions["finetune"].trigger()
    assert not seen.get("error"), seen
    return seen


def comparison_columns_shown(window) -> bool:
    table = window.finetuning.run_panel.comparison.table
    return not (table.isColumnHidden(BEFORE_COLUMN) or table.isColumnHidden(CHANGE_COLUMN))


@pytest.mark.slow
def test_raccoons_on_the_blood_cell_model_are_not_comparable_and_nothing_is_lost(qtbot, make_window, tmp_path):
    folder = copy_raccoons(tmp_path / "raccoons", annotated=(2, 3, 4, 5), unannotated=(7,))
    window = make_window(folder, "bccd-demo", "none")
    window.settings.setValue("runs_dir", str(tmp_path / "runs"))
    finetuning = window.finetuning
    ended = [finetuning.runner.finished, finetuning.runner.image_compared, window.model_ready, window.detections_shown]
    with qtbot.waitSignals(ended, timeout=RUN_TIMEOUT_MS):
        seen = start_from_the_menu(qtbot, window, iterations=1)
    assert seen["problems"] == "annotation problem: 1 image has no annotation file: not used for training " \
                               "(e.g. raccoon-7.jpg)"
    assert seen["summary"].endswith(f"before/after: {NOT_COMPARABLE_NOTE}")
    run = Path(finetuning.plan.settings.out)
    assert window.model_name == str(run / "final.pt")  # trained for raccoons: used, and the log says why
    log = window.log.toPlainText()
    assert f"{run.name}: {NOT_COMPARABLE_NOTE} — the new model's validation AP50:" in log
    assert f"{run.name}: switching to the new model — the base model cannot be compared with it" in log
    view = finetuning.run_panel.comparison
    assert view.isVisibleTo(window) and view.note.text() == NOT_COMPARABLE_NOTE and not comparison_columns_shown(window)
    assert not view.changes["image"].isVisibleTo(window)
    assert finetuning.runs_panel.table.item(0, 4).text().startswith("not comparable → ")
    # no "lost: raccoon" boxes: showing the before/after draws nothing over the image
    shown = canvas_pixels(window)
    window.actions["show_comparison"].trigger()
    assert finetuning.compare_layer.isVisible() and len(finetuning.compare_layer._boxes) == 0
    assert changed_fraction(shown, canvas_pixels(window)) == 0.0
    # the dialog, reopened, shows the settings of the last run
    reopened: dict = {}
    when_the_dialog_opens(qtbot, lambda dialog: reopened.update(
        budgeted=dialog.by_minutes.isChecked(), iterations=dialog.iterations.value(), batch=dialog.batch.value(),
        preview=dialog.preview_every(),
        base=dialog.base.currentData(), current=dialog.base.itemText(0)))
    window.actions["finetune"].trigger()
    assert reopened == {"budgeted": False, "iterations": 1, "batch": 1, "preview": 0, "base": ("bccd-demo", "none"),
                        "current": f"the current model: {run.name}/final.pt"}


@pytest.mark.slow
def test_start_cancel_and_resume_from_the_controls(qtbot, window, tmp_path):
    window.settings.setValue("runs_dir", str(tmp_path / "runs"))
    finetuning, panel = window.finetuning, window.finetuning.run_panel
    with qtbot.waitSignal(finetuning.runner.progress, timeout=RUN_TIMEOUT_MS,
                          check_params_cb=lambda progress: progress.event == "iteration"):
        seen = start_from_the_menu(qtbot, window, iterations=4)
    assert "2 images have no annotation file: not used for training (e.g. photo-1.png)" in seen["problems"]
    assert panel.cancel_button.isVisible() and not panel.resume_button.isVisible()
    with qtbot.waitSignal(finetuning.runner.finished, timeout=RUN_TIMEOUT_MS) as cancelled:
        qtbot.mouseClick(panel.cancel_button, Qt.LeftButton)
    assert cancelled.args[0].final.event == "cancelled" and cancelled.args[0].final.iteration < 4
    assert "cancelled" in panel.status.text() and panel.resume_button.isVisible()
    assert window.model_name != str(cancelled.args[0].run_dir / "final.pt")  # a cancelled run is not switched to
    with qtbot.waitSignal(finetuning.runner.finished, timeout=RUN_TIMEOUT_MS) as done:
        qtbot.mouseClick(panel.resume_button, Qt.LeftButton)
    result = done.args[0]
    assert (result.final.event, result.final.iteration, result.run_dir) == ("done", 4, cancelled.args[0].run_dir)
    qtbot.waitUntil(lambda: window.model_name == str(result.run_dir / "final.pt"), timeout=RUN_TIMEOUT_MS)
    # random weights detect nothing yet: no "before" score, no lost boxes, and the window says so
    assert result.comparison is None and not comparison_columns_shown(window)
    assert panel.comparison.note.text().startswith("before: no detector yet")
    assert finetuning.runs_panel.table.item(0, 4).text().startswith("no detector yet → ")


def test_a_run_whose_validation_ap50_fell_asks_before_switching(qtbot, window, tmp_path):
    run = tmp_path / "runs" / "worse"
    run.mkdir(parents=True)
    shutil.copyfile(BUNDLED["bccd-demo"], run / "final.pt")
    scores = ({"AP": 0.01, "AP50": 0.020, "AP75": 0.0, "per_class_AP50": {"RBC": 0.020}},
              {"AP": 0.01, "AP50": 0.016, "AP75": 0.0, "per_class_AP50": {"RBC": 0.016}})
    metrics = {**scores[1], "val_images": 3, "checkpoint": "final.pt",
               "before_after": {"base_model": "bccd-demo", "verdict": "comparable",
                                "note": "compared on every class: RBC",
                                "base_classes": ["RBC"], "classes": ["RBC"], "before": scores[0], "after": scores[1],
                                "changes": {"gained": 0, "lost": 2, "changed_class": 0, "kept": 5}}}
    result = FinetuneResult(Progress("done", 5, 5, 0, {}, 0.01, 1.0, 0.0), run, metrics, None, None, "cpu")
    finetuning, current = window.finetuning, window.model_name

    finetuning.runner.finished.emit(result)
    question = finetuning.switch_question
    assert question is not None and question.isVisible()
    assert "fell from 2.0 (the base model) to 1.6 (the new model)" in question.text()
    keep = next(button for button in question.buttons() if button.text() == "Keep the current model")
    qtbot.mouseClick(keep, Qt.LeftButton)
    assert finetuning.switch_question is None and window.model_name == current
    assert "worse: kept the current model; the new one is in the Runs panel" in window.log.toPlainText()

    finetuning.runner.finished.emit(result)
    use = next(button for button in finetuning.switch_question.buttons() if button.text() == "Use the new model")
    with qtbot.waitSignal(window.model_ready, timeout=RUN_TIMEOUT_MS) as switched:
        qtbot.mouseClick(use, Qt.LeftButton)
    assert switched.args[0] == str(run / "final.pt")
    assert "worse: switching to the new model, as asked" in window.log.toPlainText()
    with qtbot.waitSignal(window.model_ready, timeout=RUN_TIMEOUT_MS) as back:
        window.actions["previous_model"].trigger()  # Train > Use the previous model
    assert back.args[0] == current and window.model_name == current
