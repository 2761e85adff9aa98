"""Journeys: fine-tuning by a time budget from the real window. Train → Fine-tune… opens the dialog
on a 5-minute budget with the base model chosen from the data; Check shows why the plan chose
what it chose, the anchor coverage before and after in words and the picture of the box shapes
and anchors. A budgeted run started from the dialog shows its validation curve with the kept
model starred, leaves final.pt, last.pt and the anchor report in its folder, and shows the same
curve when opened again from the Runs panel. That run trains the window's own (fast, untrained)
model: a base model the user picks wins over the plan's.

The dialog's budget starts at one minute (as the planner's); the run journey lowers both to 0.2
minute (`budget.MIN_MINUTES` monkeypatched, the spin box's minimum set) so that it trains for
12 s, and is slow all the same: it reads, trains, validates and scores for real."""
from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from frcnn_core.data.formats import open_dataset
from frcnn_core.training import budget, validation
from frcnn_core.training.runs import FINAL_CHECKPOINT, LAST_CHECKPOINT, read_log

from datasets import copy_raccoons
from test_finetune_journey import RUN_TIMEOUT_MS, type_number, when_the_dialog_opens

TINY_BUDGET_MINUTES = 0.2
RACCOONS = (2, 3, 4, 5, 7, 8, 9, 10, 12)  # 9 annotated photos: 4 are held out to validate on


def test_the_dialog_offers_a_five_minute_budget_and_explains_its_plan(qtbot, window, journey_folder, tmp_path):
    window.settings.setValue("runs_dir", str(tmp_path / "runs"))
    seen: dict = {}

    def check(dialog) -> None:
        seen.update(budgeted=dialog.by_minutes.isChecked(), minutes=dialog.minutes.value(),
                    automatic=dialog.base_auto.isChecked(), base_enabled=dialog.base.isEnabled(),
                    box_before=dialog.budget_box.isVisible())
        qtbot.mouseClick(dialog.check_button, Qt.LeftButton)
        box = dialog.budget_box
        seen.update(error=dialog.error.text() if dialog.error.isVisible() else "", box=box.isVisible(),
                    why=box.why.toPlainText().splitlines(), coverage=box.coverage.text(),
                    boxes=len(box.picture.boxes.xData), anchors=len(box.picture.model_anchors.xData),
                    picture=box.picture.grab().toImage())

    when_the_dialog_opens(qtbot, check)
    window.actions["finetune"].trigger()
    assert seen["budgeted"] and seen["minutes"] == 5.0 and seen["automatic"] and not seen["base_enabled"]
    assert not seen["box_before"] and not seen["error"] and seen["box"]
    why, boxes = seen["why"], sum(len(sample.boxes) for sample in open_dataset(journey_folder).samples)
    assert why[0].startswith("validation: none (2 images are too few")
    assert any(line.startswith("base: mobilenet-v2") for line in why)
    assert any(line.startswith("anchors: ") for line in why)
    assert seen["coverage"].startswith(f"best-possible recall of the {boxes} training boxes at IoU 0.5 / 0.7:\n"
                                       "the model's anchors ")
    assert seen["boxes"] == boxes and seen["anchors"] > 0  # a dot for every box of the two annotated images
    picture = seen["picture"]
    assert not picture.isNull() and len({picture.pixel(x, y) for x in range(0, picture.width(), 7)
                                         for y in range(0, picture.height(), 7)}) > 3  # drawn, not blank


@pytest.mark.slow
def test_a_budgeted_run_shows_its_validation_curve_and_keeps_the_best_model(qtbot, make_window, tmp_path,
                                                                           monkeypatch):
    monkeypatch.setattr(budget, "MIN_MINUTES", 0.1)
    monkeypatch.setattr(validation, "PATIENCE", 10**6)  # no early stop in so short a run
    window = make_window(copy_raccoons(tmp_path / "raccoons", annotated=RACCOONS))
    window.settings.setValue("runs_dir", str(tmp_path / "runs"))
    finetuning, panel, own_model = window.finetuning, window.finetuning.run_panel, window.model_name

    def start(dialog) -> None:
        qtbot.mouseClick(dialog.base_auto, Qt.LeftButton)  # the current model, the combo's first entry
        assert dialog.base.isEnabled() and dialog.base.currentIndex() == 0
        dialog.minutes.setMinimum(0.1)
        type_number(qtbot, dialog.minutes, TINY_BUDGET_MINUTES)
        type_number(qtbot, dialog.preview, 0)
        qtbot.mouseClick(dialog.start_button, Qt.LeftButton)

    with qtbot.waitSignals([finetuning.runner.finished, window.model_ready], timeout=RUN_TIMEOUT_MS):
        when_the_dialog_opens(qtbot, start)
        window.actions["finetune"].trigger()
    run = Path(finetuning.plan.settings.out)
    plan = finetuning.plan
    assert (plan.settings.minutes, plan.base_model, len(plan.val_images)) == (TINY_BUDGET_MINUTES, own_model, 4)
    assert all((run / name).is_file() for name in (FINAL_CHECKPOINT, LAST_CHECKPOINT, "anchors.json", "anchors.png"))
    assert window.model_name == str(run / FINAL_CHECKPOINT)
    assert f"why: yours: model = {own_model}, weights = none" in window.log.toPlainText()
    curve = panel.validation
    points, best = curve.points(), curve.best()
    assert curve.isVisible() and points and best is not None
    assert curve.curve.getData()[0].tolist() == [point["iteration"] for point in points]
    assert curve.best_marker.getData()[0].tolist() == [best["iteration"]]
    assert curve.best_label.text().startswith("best validation AP50 ")
    assert curve.best_label.text().endswith(f"at iteration {best['iteration']} → final.pt")
    final = read_log(run)[-1]
    assert final["event"] == "done" and panel.progress.value() == panel.progress.maximum() == final["iteration"]

    runs = finetuning.runs_panel
    rect = runs.table.visualItemRect(runs.table.item(0, 0))
    curve.clear()
    qtbot.mousePress(runs.table.viewport(), Qt.LeftButton, pos=rect.center())  # a view acts on a double-click
    qtbot.mouseDClick(runs.table.viewport(), Qt.LeftButton, pos=rect.center())  # only after its press
    assert curve.points() == points and curve.best_label.text().endswith("→ final.pt")
