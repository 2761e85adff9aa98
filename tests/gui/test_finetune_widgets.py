"""The fine-tuning widgets with hand-made inputs: the dialog's defaults, splits and inline plan
errors, the loss curves, the runs table (a finished and a damaged run), the before/after view
and the run panel's states. The runner, which trains for real, is in test_finetune_runner.py."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog

from frcnn_core.analysis.compare_models import Comparison
from frcnn_core.modeling.zoo import MODELS
from frcnn_core.training.runs import CANCELLED, summarize_run
from frcnn_core.training.train import Progress
from frcnn_gui.finetune.before_after import ComparisonView
from frcnn_gui.finetune.choices import base_model_choices, voc_splits
from frcnn_gui.finetune.curves import LR, TOTAL, LossCurves
from frcnn_gui.finetune.dialog import FinetuneDialog
from frcnn_gui.finetune.messages import FinetuneResult
from frcnn_gui.finetune.run_panel import RunPanel
from frcnn_gui.finetune.runs_panel import COLUMNS, RunsPanel
from frcnn_gui.finetune.text import format_duration

from datasets import write_tiny_dataset

FAST_MODEL = ("mobilenet-v3-320", "mobilenet-v3-320-fpn", "none")  # (label, model, weights)
LOSSES = ("loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg")


def progress(event: str, iteration: int, total: int = 10, losses: dict | None = None, lr: float = 0.01,
             message: str = "") -> Progress:
    if losses is None:
        losses = {name: 0.1 * (index + 1) for index, name in enumerate(LOSSES)} if event == "iteration" else {}
    return Progress(event, iteration, total, 0, losses, lr, 2.0, 4.0, message)


def record(iteration: int, scale: float = 1.0) -> dict:
    return json.loads(progress("iteration", iteration, losses={name: scale * iteration for name in LOSSES}).to_json())


@pytest.fixture
def dialog(qtbot, tmp_path):
    dataset = write_tiny_dataset(tmp_path / "data")
    widget = FinetuneDialog(str(dataset), FAST_MODEL, str(tmp_path / "runs"))
    qtbot.addWidget(widget)
    return widget


# --- dialog -------------------------------------------------------------------------------
def test_dialog_defaults_to_a_five_minute_budget_planned_from_the_open_folder(dialog, tmp_path):
    assert dialog.by_minutes.isChecked() and dialog.minutes.value() == 5.0 and not dialog.iterations.isEnabled()
    assert dialog.base_auto.isChecked() and not dialog.base.isEnabled()
    assert not (dialog.lr.isEnabled() or dialog.batch.isEnabled() or dialog.hflip.isEnabled()
                or dialog.val_percent.isEnabled())  # the plan chooses them
    assert dialog.budget_kwargs() == dict(data=str(tmp_path / "data"), runs_dir=str(tmp_path / "runs"), minutes=5.0,
                                          base_model=None, base_weights=None, split=None, device="auto", name=None)
    assert "ends within 5 min" in dialog.time_hint.text()
    dialog.base_auto.setChecked(False)  # a base model the user picks wins over the plan's
    assert dialog.base.isEnabled()
    assert (dialog.budget_kwargs()["base_model"], dialog.budget_kwargs()["base_weights"]) == FAST_MODEL[1:]


def test_dialog_by_iterations_trains_the_open_folder_briefly(dialog, tmp_path):
    dialog.by_iterations.setChecked(True)
    assert dialog.iterations.isEnabled() and dialog.lr.isEnabled() and dialog.base.isEnabled()
    assert not dialog.base_auto.isEnabled()
    kwargs = dialog.plan_kwargs()
    augment = kwargs.pop("augment")
    assert kwargs == dict(data=str(tmp_path / "data"), runs_dir=str(tmp_path / "runs"),
                          base_model="mobilenet-v3-320-fpn", base_weights="none", val_fraction=0.2, iters=100,
                          lr=0.01, batch_size=2, frozen_stages=None, device="auto", name=None)
    assert (augment.hflip, augment.vflip, augment.photometric, augment.scale) == (0.5, 0.0, False, (1.0, 1.0))
    assert dialog.preview_every() == 25
    assert not dialog.val_voc.isEnabled()  # a labelImg folder has no VOC splits


def test_dialog_maps_every_control_to_plan_arguments(dialog):
    dialog.val_percent.setValue(30)
    dialog.iterations.setValue(250)
    dialog.batch.setValue(4)
    dialog.lr.setValue(0.002)
    dialog.frozen.setCurrentIndex(2)
    dialog.device.setCurrentText("on cpu")
    dialog.hflip.setChecked(False)
    dialog.vflip.setChecked(True)
    dialog.photometric.setChecked(True)
    dialog.name.setText("cells-v1")
    dialog.base.setCurrentIndex(1)
    kwargs = dialog.plan_kwargs()
    assert (kwargs["val_fraction"], kwargs["iters"], kwargs["batch_size"], kwargs["lr"]) == (0.3, 250, 4, 0.002)
    assert (kwargs["frozen_stages"], kwargs["device"], kwargs["name"]) == (2, "cpu", "cells-v1")
    assert (kwargs["augment"].hflip, kwargs["augment"].vflip, kwargs["augment"].photometric) == (0.0, 0.5, True)
    assert (kwargs["base_model"], kwargs["base_weights"]) == ("bccd-demo", "none")


def test_base_model_choices_cover_the_zoo_with_the_weights_each_allows():
    choices = base_model_choices(FAST_MODEL)
    assert choices[0] == ("the current model: mobilenet-v3-320", "mobilenet-v3-320-fpn", "none")
    pairs = {(model, weights) for _, model, weights in choices}
    assert ("bccd-demo", "none") in pairs and ("mobilenet-v2", "imagenet") in pairs
    for name, spec in MODELS.items():
        assert (name, "coco" if spec.coco_weights is not None else "imagenet") in pairs
    assert base_model_choices(None)[0][1] == "bccd-demo"


def test_voc_splits_offered_when_the_folder_has_them(dialog, tmp_path):
    voc = tmp_path / "voc"
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    for split in ("train", "val", "trainval", "cat_train"):
        (voc / "ImageSets" / "Main" / f"{split}.txt").write_text("img0\n")
    assert voc_splits(voc) == ["train", "trainval", "val"]
    dialog.by_iterations.setChecked(True)  # a time budget plans its own hold-out: the row is greyed
    dialog.data_path.setText(str(voc))
    dialog.data_other.setChecked(True)
    assert dialog.val_voc.isEnabled()
    dialog.val_voc.setChecked(True)
    kwargs = dialog.plan_kwargs()
    assert (kwargs["data"], kwargs["train_split"], kwargs["val_split"]) == (str(voc), "train", "val")
    assert "val_fraction" not in kwargs
    assert dialog.budget_kwargs()["split"] == "train"  # a budget trains on "train" and validates on "val"


def test_plan_error_is_shown_inline_and_the_dialog_stays_open(qtbot, tmp_path):
    empty = write_tiny_dataset(tmp_path / "empty", boxes_per_image=[[], []])
    dialog = FinetuneDialog(str(empty), FAST_MODEL, str(tmp_path / "runs"))
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.mouseClick(dialog.start_button, Qt.LeftButton)
    assert dialog.isVisible() and dialog.result() != QDialog.Accepted and dialog.plan is None
    assert dialog.error.isVisible() and dialog.error.text().endswith("2 annotated images, none with a box")
    assert "\n" not in dialog.error.text()
    assert not (tmp_path / "runs").exists()


def test_missing_data_or_runs_folder_is_said_inline(qtbot, dialog):
    dialog.data_other.setChecked(True)
    assert dialog.check() is None and dialog.error.text().startswith("choose the data")
    dialog.data_current.setChecked(True)
    dialog.runs_dir.setText("  ")
    assert dialog.check() is None and dialog.error.text().startswith("choose a runs folder")


def test_check_shows_the_plan_summary_and_start_accepts(qtbot, dialog):
    dialog.by_iterations.setChecked(True)
    plan = dialog.check()
    assert plan is not None and not dialog.error.isVisible()
    assert dialog.summary.text().startswith(f"train: {4 - len(plan.val_images)} images")
    assert "cat " in dialog.summary.text() and "dog " in dialog.summary.text()
    with qtbot.waitSignal(dialog.accepted):
        qtbot.mouseClick(dialog.start_button, Qt.LeftButton)
    assert dialog.plan is not None and dialog.plan.settings.iters == 100


def test_time_hint_follows_the_measured_speed_and_the_iterations(dialog):
    dialog.by_iterations.setChecked(True)
    dialog.set_time_per_iteration(1.5, "cpu")
    assert "1.5 s per iteration on cpu" in dialog.time_hint.text()
    assert format_duration(150) in dialog.time_hint.text()
    dialog.iterations.setValue(40)
    assert format_duration(60) in dialog.time_hint.text()


def test_format_duration():
    assert [format_duration(s) for s in (0.4, 59, 61, 3600 + 7 * 60 + 20, float("inf"), None)] == \
        ["0 s", "59 s", "1 min 01 s", "1 h 07 min", "—", "—"]


# --- curves -------------------------------------------------------------------------------
def test_curves_show_records_with_total_and_lr(qtbot):
    curves = LossCurves()
    qtbot.addWidget(curves)
    curves.set_records([json.loads(progress("started", 0).to_json()), record(1), record(2),
                        json.loads(progress("checkpoint", 2).to_json()), record(3)])
    assert curves.names() == list(LOSSES)
    iterations, totals = curves.data(TOTAL)
    assert iterations.tolist() == [1, 2, 3] and totals.tolist() == [4.0, 8.0, 12.0]
    assert curves.data("loss_classifier")[1].tolist() == [1.0, 2.0, 3.0]
    assert curves.data(LR)[1].tolist() == [0.01] * 3
    curves.clear()
    assert curves.data(TOTAL)[0].size == 0 and curves.names() == []


def test_curves_redraw_on_a_timer_not_per_record(qtbot):
    curves = LossCurves()
    qtbot.addWidget(curves)
    for iteration in range(1, 501):
        curves.add(progress("iteration", iteration, total=500))
    assert curves.data(TOTAL)[0].size == 0  # nothing drawn until the timer fires
    qtbot.waitUntil(lambda: curves.data(TOTAL)[0].size == 500, timeout=2000)
    assert np.array_equal(curves.data(TOTAL)[0], np.arange(1, 501))


def test_curves_replace_replayed_iterations(qtbot):
    curves = LossCurves()
    qtbot.addWidget(curves)
    curves.set_records([record(1), record(2), record(3), record(4), record(3, scale=10), record(4, scale=10)])
    iterations, values = curves.data("loss_box_reg")
    assert iterations.tolist() == [1, 2, 3, 4] and values.tolist() == [1.0, 2.0, 30.0, 40.0]


# --- runs panel ---------------------------------------------------------------------------
def write_run(folder: Path, *, finished: bool, event: str = "done") -> Path:
    folder.mkdir(parents=True)
    (folder / "settings.json").write_text(json.dumps({"model": "mobilenet-v2", "iters": 10}))
    (folder / "plan.json").write_text(json.dumps({"base_model": "bccd-demo"}))
    lines = [progress("started", 0).to_json(), progress("iteration", 10).to_json(), progress(event, 10).to_json()]
    (folder / "log.jsonl").write_text("\n".join(lines) + "\n")
    (folder / ("final.pt" if finished else "last.pt")).write_bytes(b"")
    if finished:
        (folder / "metrics.json").write_text(json.dumps(compared_metrics(
            {"AP": 0.1, "AP50": 0.25, "AP75": 0.05, "per_class_AP50": {"cat": 0.3, "dog": 0.2}},
            {"AP": 0.3, "AP50": 0.612, "AP75": 0.2, "per_class_AP50": {"cat": 0.7, "dog": 0.5}})))
    return folder


def compared_metrics(before: dict, after: dict, changes: dict | None = None) -> dict:
    """score_run's metrics for a run compared with its base on every class (cat, dog)."""
    return {**after, "val_images": 3, "checkpoint": "final.pt",
            "before_after": {"base_model": "base", "verdict": "comparable", "note": "compared on every class: cat, dog",
                             "base_classes": ["cat", "dog"], "classes": ["cat", "dog"], "before": before,
                             "after": after, "changes": changes}}


@pytest.fixture
def runs(tmp_path) -> Path:
    """runs/good (finished, with metrics) and runs/damaged (settings.json is not JSON, cancelled)."""
    root = tmp_path / "runs"
    write_run(root / "good", finished=True)
    damaged = write_run(root / "damaged", finished=False, event="cancelled")
    (damaged / "settings.json").write_text("{not json")
    return root


def cells(panel: RunsPanel, row: int) -> dict[str, str]:
    return {title: panel.table.item(row, column).text() for column, title in enumerate(COLUMNS)}


def test_runs_panel_lists_a_finished_and_a_damaged_run(qtbot, runs):
    panel = RunsPanel(runs)
    qtbot.addWidget(panel)
    assert panel.table.rowCount() == 2
    rows = {cells(panel, row)["name"]: cells(panel, row) for row in range(2)}
    good, damaged = rows["good"], rows["damaged"]
    assert (good["base"], good["state"], good["iterations"]) == ("bccd-demo", "finished", "10 / 10")
    assert good["AP50 before → after"] == "25.0 → 61.2"
    assert damaged["state"] == f"{CANCELLED} (unreadable files)" and damaged["AP50 before → after"] == ""
    damaged_row = [panel.runs[row].name for row in range(2)].index("damaged")
    assert "settings.json" in panel.table.item(damaged_row, 0).toolTip()


def test_runs_panel_opens_and_offers_the_best_checkpoint(qtbot, runs):
    panel = RunsPanel(runs)
    qtbot.addWidget(panel)
    panel.show()
    good_row = [run.name for run in panel.runs].index("good")
    assert not panel.use_button.isEnabled()
    panel.table.selectRow(good_row)
    with qtbot.waitSignal(panel.use_model) as used:
        qtbot.mouseClick(panel.use_button, Qt.LeftButton)
    assert used.args == [runs / "good" / "final.pt"]
    rect = panel.table.visualItemRect(panel.table.item(good_row, 0))
    with qtbot.waitSignal(panel.open_run) as opened:  # a view acts on a double-click only after its press
        qtbot.mousePress(panel.table.viewport(), Qt.LeftButton, pos=rect.center())
        qtbot.mouseDClick(panel.table.viewport(), Qt.LeftButton, pos=rect.center())
    assert opened.args == [runs / "good"]


def test_runs_panel_refresh_keeps_the_selection_and_sees_new_runs(qtbot, runs):
    panel = RunsPanel(runs)
    qtbot.addWidget(panel)
    panel.table.selectRow([run.name for run in panel.runs].index("damaged"))
    write_run(runs / "newer", finished=False, event="stopped")
    panel.refresh()
    assert panel.table.rowCount() == 3 and panel.selected().name == "damaged"
    assert RunsPanel(None).table.rowCount() == 0


# --- comparison and run panel -------------------------------------------------------------
METRICS = compared_metrics({"AP": 0.1, "AP50": 0.25, "AP75": None, "per_class_AP50": {"cat": 0.3, "dog": 0.5}},
                           {"AP": 0.3, "AP50": 0.612, "AP75": None, "per_class_AP50": {"cat": 0.7, "dog": 0.5}})


def table_texts(view: ComparisonView) -> dict[str, list[str]]:
    table = view.table
    return {table.verticalHeaderItem(row).text(): [table.item(row, column).text() for column in range(3)]
            for row in range(table.rowCount())}


def test_comparison_view_shows_before_after_and_changes(qtbot):
    view = ComparisonView()
    qtbot.addWidget(view)
    view.set_metrics(METRICS)
    assert table_texts(view) == {"AP": ["10.0", "30.0", "+20.0"], "AP50": ["25.0", "61.2", "+36.2"],
                                 "AP75": ["—", "—", "—"], "AP50 cat": ["30.0", "70.0", "+40.0"],
                                 "AP50 dog": ["50.0", "50.0", "+0.0"]}
    view.set_comparison(Comparison(3, 1, 2, 10, []), "validation")
    view.set_comparison(Comparison(1, 0, 0, 4, []), "image")
    assert view.changes["validation"].text() == "validation split: 3 gained · 1 lost · 2 changed class · 10 kept"
    assert view.changes["image"].text() == "current image: 1 gained · 0 lost · 0 changed class · 4 kept"
    view.clear()
    assert view.table.rowCount() == 0 and view.changes["image"].text() == "current image: —"


def test_run_panel_follows_a_live_run_to_its_end(qtbot, tmp_path):
    panel = RunPanel()
    qtbot.addWidget(panel)
    panel.show()
    panel.begin(tmp_path / "run", total=10)
    assert panel.cancel_button.isVisible() and not panel.resume_button.isVisible()
    panel.add(progress("started", 0, message="4 images, no annotation problems"))
    panel.add(progress("iteration", 3))
    assert panel.progress.value() == 3 and panel.progress.text().startswith("3 / 10 · 2.0 images/s · about 4 s left")
    with qtbot.waitSignal(panel.cancel_requested):
        qtbot.mouseClick(panel.cancel_button, Qt.LeftButton)
    cancelled = progress("cancelled", 3, message="cancelled at iteration 3")
    panel.finish(FinetuneResult(cancelled, tmp_path / "run", None, None, None, "cpu"), [record(i) for i in (1, 2, 3)])
    assert "cancelled" in panel.status.text() and panel.resume_button.isVisible()
    assert not panel.cancel_button.isVisible()
    assert panel.curves.data(TOTAL)[0].tolist() == [1, 2, 3]
    with qtbot.waitSignal(panel.resume_requested) as resumed:
        qtbot.mouseClick(panel.resume_button, Qt.LeftButton)
    assert resumed.args == [tmp_path / "run"]
    done = FinetuneResult(progress("done", 10), tmp_path / "run", METRICS, Comparison(3, 1, 2, 10, []), 0.5, "cpu")
    panel.finish(done, [record(i) for i in range(1, 11)])
    assert not panel.resume_button.isVisible() and table_texts(panel.comparison)["AP50"][1] == "61.2"
    panel.fail("internal error: RuntimeError: boom")
    assert "boom" in panel.status.text() and "c62828" in panel.status.styleSheet()


def test_run_panel_shows_a_past_run(qtbot, runs):
    panel = RunPanel()
    qtbot.addWidget(panel)
    panel.show()
    run = summarize_run(runs / "good")
    panel.show_run(run, [record(i) for i in range(1, 11)])
    assert panel.status.text() == "good: finished"
    assert table_texts(panel.comparison)["AP50"] == ["25.0", "61.2", "+36.2"]
    assert not panel.resume_button.isVisible() and not panel.cancel_button.isVisible()
