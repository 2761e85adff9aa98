"""A fine-tuning run planned from a time budget (`plan_budgeted_finetune`), as the application
starts it: the plan's hold-out and classes, the user's base model winning, plan.json without the
anchor fit, the anchor report in the run folder, and a resumed run scored before/after."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from frcnn_core.training import validation
from frcnn_core.training.budget import ANCHOR_PICTURE, ANCHOR_REPORT, COARSE_MODEL
from frcnn_core.training.finetune import load_plan, plan_budgeted_finetune, run_finetune, score_run
from frcnn_core.training.runs import FINAL_CHECKPOINT, LAST_CHECKPOINT, PLAN_FILE, read_log
from frcnn_core.vocabulary import NO_DETECTOR

from datasets import photo_folder

FAST = ("mobilenet-v3-320-fpn", "none")


def test_a_budgeted_plan_trains_on_what_it_does_not_hold_out_and_says_why(tmp_path):
    plan = plan_budgeted_finetune(str(photo_folder(tmp_path / "data", 10, 50)), str(tmp_path / "runs"), 5)
    settings = plan.settings
    assert (settings.minutes, settings.iters) == (5, None)
    assert set(plan.val_images) == set(settings.val_images) and len(plan.val_images) == 4
    assert not set(plan.val_images) & set(settings.images) and len(settings.images) == 6
    assert (plan.base_model, plan.base_weights) == (settings.model, settings.weights) == (COARSE_MODEL, "imagenet")
    assert plan.base_classes == () and plan.class_names == list(settings.class_names)
    assert sum(plan.train_boxes.values()) == 12 and sum(plan.val_boxes.values()) == 8
    assert Path(settings.out).parent == tmp_path / "runs" and Path(settings.out).name.endswith(COARSE_MODEL)
    assert any(line.startswith("anchors: ") for line in plan.why) and plan.anchor_fit is not None
    assert settings.anchors == (plan.anchor_fit.anchors if plan.anchor_fit.fitted else None)
    assert not (tmp_path / "runs").exists()  # planning writes nothing


def test_the_user_s_base_model_wins_and_a_voc_val_split_is_the_hold_out(tmp_path):
    data = photo_folder(tmp_path / "voc", 12, 40, voc_val=3)
    plan = plan_budgeted_finetune(str(data), str(tmp_path / "runs"), 5, *FAST, split="train", name="mine")
    assert (plan.val_split, plan.val_images) == ("val", ("img09.jpg", "img10.jpg", "img11.jpg"))
    assert plan.settings.val_split == "val" and len(plan.settings.images) == 9
    assert (plan.settings.model, plan.settings.weights) == FAST and Path(plan.settings.out).name == "mine"
    assert plan.why[-1] == "yours: model = mobilenet-v3-320-fpn, weights = none"


@pytest.mark.slow
def test_a_budgeted_run_writes_its_anchor_report_resumes_its_plan_and_is_scored(tmp_path, monkeypatch):
    monkeypatch.setattr(validation, "PATIENCE", 10**6)  # an untrained model plateaus at once; here: no early stop
    planned = plan_budgeted_finetune(str(photo_folder(tmp_path / "data", 10, 50)), str(tmp_path / "runs"), 1, *FAST)
    plan = replace(planned, settings=replace(planned.settings, minutes=0.1, input_size=(96, 128), warmup_iters=2))
    run = Path(plan.settings.out)
    cancelled = list(run_finetune(plan, cancel=lambda: True))  # stopped before its first iteration
    assert cancelled[-1].event == "cancelled"
    report = json.loads((run / ANCHOR_REPORT).read_text())
    assert (run / ANCHOR_PICTURE).stat().st_size > 0 and report["before"] == plan.anchor_fit.before.to_json()
    saved = json.loads((run / PLAN_FILE).read_text())
    assert "anchor_fit" not in saved and saved["why"] == list(plan.why)
    loaded = load_plan(run)
    assert loaded == plan and loaded.anchor_fit is None  # the fit is not part of the plan's equality

    (run / ANCHOR_PICTURE).unlink()
    records = list(run_finetune(loaded, resume=True))
    assert not (run / ANCHOR_PICTURE).exists()  # a resumed run does not report again
    assert records[-1].event == "done"
    validated = [record["validation"] for record in read_log(run) if record["event"] == "validated"]
    assert validated and validated[0]["best"]
    assert (run / FINAL_CHECKPOINT).is_file() and (run / LAST_CHECKPOINT).is_file()
    metrics, comparison = score_run(loaded)
    assert metrics["checkpoint"] == FINAL_CHECKPOINT and metrics["val_images"] == 4
    assert metrics["before_after"]["verdict"] == NO_DETECTOR and comparison is None
