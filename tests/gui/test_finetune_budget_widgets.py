"""The time budget in the fine-tuning widgets, with hand-made inputs: the validation curve from a
recorded log (the best point starred and named, a resumed replay replacing points), the run
panel following a plan whose total changes, the budget box (why lines, coverage in words, the
anchor picture), and the dialog's Check with a time budget on a tiny folder."""
from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import torch
from PySide6.QtCore import QTimer

from frcnn_core.modeling.config import AnchorConfig
from frcnn_core.training.auto_anchors import AnchorFit, Coverage
from frcnn_core.training.runs import CANCELLED, FINISHED, RunSummary
from frcnn_core.training.train import Progress
from frcnn_gui.finetune.budget_box import BudgetBox
from frcnn_gui.finetune.dialog import FinetuneDialog
from frcnn_gui.finetune.messages import FinetuneResult
from frcnn_gui.finetune.run_panel import RunPanel
from frcnn_gui.finetune.validation_curve import ValidationCurve

from datasets import TINY_BOXES, write_tiny_dataset

FAST_MODEL = ("mobilenet-v3-320", "mobilenet-v3-320-fpn", "none")  # (label, model, weights)
LOSSES = {"loss_objectness": 0.4, "loss_rpn_box_reg": 0.3, "loss_classifier": 0.2, "loss_box_reg": 0.1}


def progress(event: str, iteration: int, total: int, validation: dict | None = None) -> Progress:
    return Progress(event, iteration, total, 0, LOSSES if event == "iteration" else {}, 0.01, 2.0, 30.0, "",
                    validation)


def validated(iteration: int, ap50: float, best: bool, total: int = 40) -> Progress:
    return progress("validated", iteration, total, {"iteration": iteration, "AP50": ap50, "AP": ap50 / 2,
                                                    "seconds": 1.5, "best": best})


def log(*records: Progress) -> list[dict]:
    """The records as `read_log` returns them from log.jsonl."""
    return [json.loads(record.to_json()) for record in records]


# --- the validation curve -----------------------------------------------------------------
def test_the_validation_curve_stars_the_kept_model_and_replaces_a_replay(qtbot):
    curve = ValidationCurve()
    qtbot.addWidget(curve)
    records = log(progress("started", 0, 0), progress("iteration", 10, 40), validated(10, 0.20, True),
                  validated(20, 0.50, True), validated(30, 0.503, False),  # within MIN_GAIN: not kept
                  progress("checkpoint", 30, 40))
    curve.set_records(records, "final.pt")
    assert not curve.isHidden()
    xs, ys = curve.curve.getData()
    assert xs.tolist() == [10, 20, 30] and ys.tolist() == [20.0, 50.0, 50.3]
    assert curve.best_marker.getData()[0].tolist() == [20]  # the kept model, not the highest point
    assert curve.best_label.text() == "best validation AP50 50.0 at iteration 20 → final.pt"
    # resumed from last.pt at iteration 20: the replayed validations replace the points from there on
    curve.set_records(records + log(validated(20, 0.60, True), validated(30, 0.40, False)), "best.pt")
    assert [point["iteration"] for point in curve.points()] == [10, 20, 30]
    assert curve.best()["AP50"] == 0.60 and curve.best_label.text().endswith("at iteration 20 → best.pt")
    curve.set_records(log(progress("started", 0, 10), progress("iteration", 1, 10)))  # a run by iterations
    assert curve.isHidden() and curve.points() == [] and curve.best_label.text() == ""


# --- the run panel ------------------------------------------------------------------------
def test_the_run_panel_follows_a_budget_whose_plan_changes(qtbot, tmp_path):
    panel = RunPanel()
    qtbot.addWidget(panel)
    panel.show()
    panel.begin(tmp_path / "run", total=0)
    assert panel.progress.text() == "0"
    panel.add(progress("started", 0, 0))
    panel.add(progress("iteration", 5, 0))  # measuring the speed: no plan yet
    assert panel.progress.maximum() == 0 and panel.progress.format().startswith("5 / planning…")
    panel.add(progress("iteration", 9, 60))
    assert (panel.progress.maximum(), panel.progress.value()) == (60, 9)
    assert panel.progress.format().startswith("9 / 60 · 2.0 images/s")
    panel.add(validated(10, 0.25, True, total=48))
    assert panel.status.text() == "run: training · validation AP50 25.0 at iteration 10 (the best so far)"
    assert panel.validation.isVisible() and panel.validation.best_label.text().endswith("→ best.pt")
    panel.add(progress("iteration", 48, 47))  # the plan fell behind the run: the bar stays whole
    assert (panel.progress.maximum(), panel.progress.value()) == (48, 48)
    records = log(progress("iteration", 10, 48), validated(10, 0.25, True), validated(48, 0.5, True))
    panel.finish(FinetuneResult(progress("done", 48, 48), tmp_path / "run", None, None, None, "cpu"), records)
    assert panel.validation.best_label.text() == "best validation AP50 50.0 at iteration 48 → final.pt"
    assert panel.progress.format() == "48 / 48"


def test_the_run_panel_shows_a_past_budgeted_run_from_its_log(qtbot, tmp_path):
    panel = RunPanel()
    qtbot.addWidget(panel)
    panel.show()
    records = log(progress("iteration", 12, 30), validated(12, 0.3, True, total=30), progress("cancelled", 14, 30))
    summary = RunSummary("run", str(tmp_path / "run"), 0.0, "mobilenet-v2-fpn", CANCELLED, 14, 30, None,
                         str(tmp_path / "run" / "last.pt"))
    panel.show_run(summary, records)
    assert panel.validation.best_label.text() == "best validation AP50 30.0 at iteration 12 → best.pt"
    panel.show_run(RunSummary("run", str(tmp_path / "run"), 0.0, "mobilenet-v2-fpn", FINISHED, 30, 30, None,
                              str(tmp_path / "run" / "final.pt")), records)
    assert panel.validation.best_label.text().endswith("→ final.pt") and panel.resume_button.isHidden()


# --- the budget box -----------------------------------------------------------------------
def anchor_fit(fitted: bool) -> AnchorFit:
    """Three boxes, a model with 2 levels x 3 shapes and, when fitted, 2 levels x 2 shapes."""
    model = AnchorConfig(sizes=((32,), (64,)), aspect_ratios=((0.5, 1.0, 2.0),) * 2)
    fit = AnchorConfig(sizes=((20,), (90,)), aspect_ratios=((0.8, 1.25),) * 2)
    before, after = Coverage(3, 1 / 3, 0.0, 2 / 3), Coverage(3, 1.0, 2 / 3, 0.0)
    return AnchorFit(before, after if fitted else before, after, fit if fitted else model, model, fitted,
                     "fitted" if fitted else "kept", torch.tensor([[20.0, 18.0], [85.0, 100.0], [0.0, 30.0]]))


def test_the_budget_box_shows_the_why_lines_the_coverage_and_the_anchor_picture(qtbot):
    box = BudgetBox()
    qtbot.addWidget(box)
    box.show_plan(("validation: none", "base: mobilenet-v2-fpn"), anchor_fit(fitted=True))
    assert box.why.toPlainText().splitlines() == ["validation: none", "base: mobilenet-v2-fpn"]
    assert box.coverage.text() == ("best-possible recall of the 3 training boxes at IoU 0.5 / 0.7:\n"
                                   "the model's anchors 33.3% / 0.0% → fitted anchors 100.0% / 66.7%")
    widths, heights = box.picture.boxes.xData, box.picture.boxes.yData
    assert widths.tolist() == [20.0, 85.0, 0.5] and heights.tolist() == [18.0, 100.0, 30.0]  # 0 px: drawn at 0.5
    assert len(box.picture.model_anchors.xData) == 6
    assert [len(item.xData) for item in box.picture.fitted] == [2, 2]
    box.show_plan(("why",), anchor_fit(fitted=False))  # the model's anchors kept: no circles
    assert box.picture.fitted == []
    assert box.coverage.text().endswith("anchors 33.3% / 0.0%, kept: the best fit covers no more (100.0% / 66.7%)")


# --- the dialog ---------------------------------------------------------------------------
def test_check_with_a_time_budget_shows_the_plan_and_start_hands_it_over(qtbot, tmp_path):
    dialog = FinetuneDialog(str(write_tiny_dataset(tmp_path / "data")), FAST_MODEL, str(tmp_path / "runs"))
    qtbot.addWidget(dialog)
    dialog.show()
    ticks: list[float] = []  # the event loop keeps running while Check plans in the background
    timer = QTimer(interval=10, timeout=lambda: ticks.append(time.perf_counter()))
    timer.start()
    began = time.perf_counter()
    plan = dialog.check()
    took = time.perf_counter() - began
    timer.stop()
    gaps = [later - earlier for earlier, later in itertools.pairwise([began, *ticks])]
    print(f"Check with a 5-minute budget (automatic base) took {took:.2f} s; the event loop ticked {len(ticks)} "
          f"times, the longest gap {max(gaps, default=took):.2f} s")
    assert ticks and dialog.check_button.isEnabled() and dialog.start_button.isEnabled()
    assert plan is not None and not dialog.error.isVisible() and dialog.budget_box.isVisible()
    assert plan.settings.minutes == 5.0 and plan.settings.iters is None and plan.anchor_fit is not None
    assert dialog.budget_box.why.toPlainText().splitlines() == list(plan.why)
    assert "recall" in dialog.budget_box.coverage.text()
    assert len(dialog.budget_box.picture.boxes.xData) == sum(len(boxes) for boxes in TINY_BOXES)
    assert dialog.summary.text().startswith("train: 4 images")  # 4 images are too few to hold some out
    dialog.base_auto.setChecked(False)  # the user's base model wins, and the plan says so
    with qtbot.waitSignal(dialog.accepted):
        dialog.start()
    assert (dialog.plan.base_model, dialog.plan.base_weights) == FAST_MODEL[1:]
    assert dialog.plan.why[-1] == "yours: model = mobilenet-v3-320-fpn, weights = none"
    assert not Path(dialog.plan.settings.out).exists()  # planning writes nothing
