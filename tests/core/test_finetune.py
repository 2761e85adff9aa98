"""Fine-tuning runs: the train/validation split, plans and their errors, training on chosen images,
the preview hook, run/resume/evaluate of a run, and before/after detection comparisons."""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from frcnn_core.compare import compare_detections, compare_on_image
from frcnn_core.data.augment import AugmentConfig
from frcnn_core.data.dataset import DetectionDataset, Sample
from frcnn_core.data.voc import write_voc, write_voc_xml
from frcnn_core.errors import InputError
from frcnn_core.evaluate import evaluate, run_detections
from frcnn_core.finetune import (
    FinetunePlan, evaluate_run, load_plan, plan_finetune, run_finetune,
    score_run, split_train_val, starting_model, validation_dataset,
)
from frcnn_core.runs import FINISHED, list_runs, read_log
from frcnn_core.train import TrainSettings, train
from frcnn_core.zoo import BUNDLED, build_model

from test_train import settings as train_settings, tiny_dataset  # noqa: F401 (tiny_dataset: a fixture)

PREDICTOR = "roi_heads.box_predictor."


def labelled_folder(folder, images: dict[str, list[tuple[str, tuple]]], size=(64, 48)):
    """A grey image per entry with a labelImg XML beside it: {file name: [(class, box), ...]}."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, objects in images.items():
        path = folder / name
        Image.new("RGB", size, (90, 90, 90)).save(path)
        boxes = torch.tensor([box for _, box in objects], dtype=torch.float32).reshape(-1, 4)
        write_voc_xml(path.with_suffix(".xml"), path, *size, boxes, [cls for cls, _ in objects])
    return folder


CATS_AND_DOGS = {f"img{i}.png": [("cat", (2, 2, 20, 20))] + ([("dog", (30, 10, 60, 40))] if i % 2 else [])
                 for i in range(5)}  # 5 cats, dogs in img1 and img3


def one_thread():
    """Bitwise comparisons of two runs need one summation order."""
    torch.set_num_threads(1)
    return lambda: torch.set_num_threads(max(1, os.cpu_count() or 1))


# --- the split ---------------------------------------------------------------------------------

def test_split_takes_about_the_fraction_deterministically_in_data_order():
    names = [f"{i}.png" for i in range(10)]
    labels = [torch.tensor([1])] * 10
    train_names, val_names = split_train_val(names, labels, 0.2, seed=3)
    assert len(val_names) == 2 and len(train_names) == 8
    assert sorted(train_names + val_names) == sorted(names)
    assert list(val_names) == [n for n in names if n in val_names]  # data order kept
    assert split_train_val(names, labels, 0.2, seed=3) == (train_names, val_names)
    assert len({split_train_val(names, labels, 0.2, seed)[1] for seed in range(10)}) > 1


def test_split_never_takes_the_only_boxes_of_a_class():
    names = [f"{i}.png" for i in range(5)]
    labels = [torch.tensor([1, 2])] + [torch.tensor([1])] * 4  # class 2 lives in image 0 only
    for seed in range(20):
        train_names, val_names = split_train_val(names, labels, 0.2, seed)
        assert "0.png" in train_names and len(val_names) == 1


@pytest.mark.parametrize("labels, fraction, expected_val", [
    ([[1]], 0.5, 0),                        # one image: nothing to validate on
    ([[1], [2]], 0.5, 0),                   # each image holds a class's only box: training wins
    ([[1], [1]], 0.5, 1),
    ([[1], [1], [1]], 0.0, 1),              # at least one when there are two or more images
    ([[1], [1], [1]], 0.9, 2),              # never all
    ([[1], [], []], 0.5, 2),                # images without boxes can validate
])
def test_split_counts(labels, fraction, expected_val):
    names = [f"{i}.png" for i in range(len(labels))]
    _, val_names = split_train_val(names, [torch.tensor(x, dtype=torch.int64) for x in labels], fraction, 0)
    assert len(val_names) == expected_val


# --- plans -------------------------------------------------------------------------------------

def test_plan_splits_the_folder_counts_boxes_and_writes_nothing(tmp_path):
    data = labelled_folder(tmp_path / "data", CATS_AND_DOGS)
    plan = plan_finetune(str(data), str(tmp_path / "runs"), "mobilenet-v2", "none", iters=50, val_fraction=0.2)
    assert not (tmp_path / "runs").exists()
    train_names, val_names = plan.settings.images, plan.val_images
    assert len(val_names) == 1 and sorted(train_names + val_names) == sorted(CATS_AND_DOGS)
    assert plan.class_names == ["__background__", "cat", "dog"] and plan.settings.class_names == tuple(plan.class_names)
    totals = {name: plan.train_boxes[name] + plan.val_boxes[name] for name in ("cat", "dog")}
    assert totals == {"cat": 5, "dog": 2} and min(plan.train_boxes.values()) >= 1
    assert (plan.settings.warmup_iters, plan.settings.checkpoint_every, plan.settings.iters) == (10, 10, 50)
    assert re.fullmatch(r"\d{8}-\d{6}-mobilenet-v2", os.path.basename(plan.settings.out))
    assert plan.base_model == plan.settings.model == "mobilenet-v2"


def test_plan_makes_the_run_name_unique_and_refuses_paths(tmp_path):
    data = labelled_folder(tmp_path / "data", CATS_AND_DOGS)
    (tmp_path / "runs" / "cells").mkdir(parents=True)
    plan = plan_finetune(str(data), str(tmp_path / "runs"), "mobilenet-v2", "none", name="cells")
    assert os.path.basename(plan.settings.out) == "cells-2"
    with pytest.raises(InputError, match="plain folder name"):
        plan_finetune(str(data), str(tmp_path / "runs"), "mobilenet-v2", "none", name="../elsewhere")


@pytest.mark.parametrize("changes, message", [
    ({"iters": 0}, "iterations must be at least 1"),
    ({"lr": 0.0}, "learning rate must be above 0"),
    ({"batch_size": 0}, "batch size must be at least 1"),
    ({"val_fraction": 1.0}, "validation fraction"),
    ({"class_names": ["cat", "dog", "bird"]}, "class 'bird' has no boxes in the 4 training images"),
    ({"val_images": ("img1.png", "img3.png")}, "class 'dog' has no boxes"),
    ({"val_images": ("img9.png",)}, "not annotated images here, e.g. 'img9.png'"),
    ({"val_images": ("img1.png",), "val_split": "val"}, "not both"),
    ({"base_model": "no-such-model"}, "unknown model 'no-such-model'"),
])
def test_plan_errors_are_one_clear_line(tmp_path, changes, message):
    data = labelled_folder(tmp_path / "data", CATS_AND_DOGS)
    arguments = {"base_model": "mobilenet-v2", "base_weights": "none", **changes}
    with pytest.raises(InputError, match=re.escape(message)) as error:
        plan_finetune(str(data), str(tmp_path / "runs"), **arguments)
    assert "\n" not in str(error.value)


def test_plan_without_boxes_names_the_data(tmp_path):
    data = labelled_folder(tmp_path / "data", {"empty.png": []})
    with pytest.raises(InputError, match="no annotated images") as error:
        plan_finetune(str(data), str(tmp_path / "runs"), "mobilenet-v2", "none")
    assert error.value.path == str(data)


def test_plan_with_voc_splits_validates_on_the_val_split_only(tmp_path):
    folder = labelled_folder(tmp_path / "folder", CATS_AND_DOGS)
    samples = [Sample(str(folder / name), torch.tensor([box for _, box in objects], dtype=torch.float32),
                      torch.tensor([1 if cls == "cat" else 2 for cls, _ in objects]), 64, 48)
               for name, objects in CATS_AND_DOGS.items()]
    voc = tmp_path / "voc"
    write_voc(voc, DetectionDataset(samples, ["__background__", "cat", "dog"]))
    (voc / "ImageSets" / "Main" / "train.txt").write_text("img0\nimg1\nimg2\nimg3\n")  # img3 is in both
    (voc / "ImageSets" / "Main" / "val.txt").write_text("img3\nimg4\n")
    plan = plan_finetune(str(voc), str(tmp_path / "runs"), "mobilenet-v2", "none", train_split="train",
                         val_split="val")
    assert plan.settings.images == ("img0.png", "img1.png", "img2.png")
    assert plan.val_images == ("img3.png", "img4.png") and plan.val_boxes == {"cat": 2, "dog": 1}
    assert [os.path.basename(s.image_path) for s in validation_dataset(plan).samples] == ["img3.png", "img4.png"]


@pytest.mark.parametrize("base", ["bccd-demo", str(BUNDLED["bccd-demo"])])
def test_fine_tuning_bccd_demo_on_its_classes_keeps_its_trained_predictor(tmp_path, base):
    cells = {f"cell{i}.png": [("RBC", (2, 2, 20, 20)), ("WBC", (30, 10, 60, 40)), ("Platelets", (5, 25, 15, 35))]
             for i in range(3)}  # first appearance RBC, WBC, Platelets: not bccd-demo's order
    data = labelled_folder(tmp_path / "data", cells)
    plan = plan_finetune(str(data), str(tmp_path / "runs"), base)
    demo = build_model("bccd-demo")
    assert plan.class_names == demo.class_names == ["__background__", "WBC", "RBC", "Platelets"]
    start = starting_model(plan).state_dict()
    assert all(torch.equal(start[k], v) for k, v in demo.state_dict().items() if k.startswith(PREDICTOR))


def test_fine_tuning_bccd_demo_on_other_classes_starts_a_new_predictor(tmp_path):
    data = labelled_folder(tmp_path / "data", CATS_AND_DOGS)
    plan = plan_finetune(str(data), str(tmp_path / "runs"), "bccd-demo")
    model = starting_model(plan)
    assert model.class_names == ["__background__", "cat", "dog"]
    assert model.roi_heads["box_predictor"].cls_score.out_features == 3


# --- training on chosen images; the preview hook -----------------------------------------------

def test_train_settings_round_trip_through_json():
    settings = TrainSettings(data="d", out="o", images=("a.png", "b.png"), class_names=("cat",),
                             augment=AugmentConfig(vflip=0.5, scale=(0.8, 1.2)))
    assert TrainSettings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings


def test_train_keeps_only_the_chosen_images(tiny_dataset, tmp_path):
    run = train(train_settings(tiny_dataset, tmp_path / "run", images=("img0.png", "img2.png", "other.png")))
    started = next(run)
    run.close()
    assert started.event == "started" and started.message.startswith("2 images")
    with pytest.raises(InputError, match="none of the 1 chosen images"):
        next(train(train_settings(tiny_dataset, tmp_path / "none", images=("other.png",))))


def test_preview_sees_the_model_in_eval_mode_and_leaves_training_bit_identical(tiny_dataset, tmp_path):
    image = torch.rand(3, 96, 128)
    seen = []

    def preview(model, iteration):
        detections = model([image])
        torch.rand(5)  # a preview may draw random numbers: the run must not notice
        seen.append((iteration, model.training, torch.is_inference_mode_enabled(), len(detections)))

    restore = one_thread()
    try:
        plain = list(train(train_settings(tiny_dataset, tmp_path / "plain", iters=3, batch_size=1)))
        shown = list(train(train_settings(tiny_dataset, tmp_path / "shown", iters=3, batch_size=1), preview=preview,
                           preview_every=2))
    finally:
        restore()
    assert seen == [(2, False, True, 1)]
    assert [r.losses for r in shown if r.event == "iteration"] == [r.losses for r in plain if r.event == "iteration"]


# --- runs: train, resume, evaluate -------------------------------------------------------------

def test_a_run_trains_evaluates_and_lists_as_finished(tiny_dataset, tmp_path):
    runs = tmp_path / "runs"
    plan = plan_finetune(str(tiny_dataset), str(runs), "mobilenet-v2", "none", iters=2, batch_size=1,
                         val_fraction=0.34, device="cpu", name="tiny")
    events = [record.event for record in run_finetune(plan)]
    assert events[0] == "started" and events[-1] == "done"
    assert load_plan(plan.settings.out) == plan
    with pytest.raises(InputError, match="already holds a run"):
        next(run_finetune(plan))
    metrics = evaluate_run(plan.settings.out)
    assert json.loads((runs / "tiny" / "metrics.json").read_text()) == metrics
    assert metrics["val_images"] == 1 and metrics["checkpoint"] == "final.pt"
    assert {"AP", "AP50", "AP75", "per_class_AP50"} <= set(metrics) and metrics["before"]["model"] == "mobilenet-v2"
    [summary] = list_runs(runs)
    assert (summary.name, summary.state, summary.iteration, summary.total) == ("tiny", FINISHED, 2, 2)
    assert summary.metrics == metrics and summary.base_model == "mobilenet-v2" and summary.error is None


def test_score_run_gives_evaluates_numbers_and_the_comparison_of_the_same_detections(tiny_dataset, tmp_path):
    plan = plan_finetune(str(tiny_dataset), str(tmp_path), "mobilenet-v2", "none", iters=1, batch_size=1,
                         val_fraction=0.34, device="cpu", name="scored")
    for _ in run_finetune(plan):
        pass
    metrics, comparison = score_run(plan)
    val = validation_dataset(plan)
    after_model = build_model(str(Path(plan.settings.out) / "final.pt"), score_thresh=0.0)
    expected = evaluate(after_model, val, with_losses=False, progress=False).to_json()
    assert {key: metrics[key] for key in ("AP", "AP50", "AP75", "per_class_AP50")} == \
        {key: expected[key] for key in ("AP", "AP50", "AP75", "per_class_AP50")}
    before_model = starting_model(plan, score_thresh=0.0)
    again = compare_detections(run_detections(before_model, val, "cpu", progress=False),
                               run_detections(after_model, val, "cpu", progress=False))
    assert (again.gained, again.lost, again.changed_class, again.kept) == \
        (comparison.gained, comparison.lost, comparison.changed_class, comparison.kept)
    assert metrics["validation_changes"] == {"gained": comparison.gained, "lost": comparison.lost,
                                             "changed_class": comparison.changed_class, "kept": comparison.kept}


def test_resuming_a_fine_tune_from_a_checkpoint_model_continues_exactly(tiny_dataset, tmp_path):
    def plan(name: str) -> FinetunePlan:  # the base model is itself a checkpoint: resume must not reload it
        return plan_finetune(str(tiny_dataset), str(tmp_path), "bccd-demo", iters=2, batch_size=1, lr=0.005,
                             val_fraction=0.34, device="cpu", name=name)

    restore = one_thread()
    try:
        list(run_finetune(plan("straight")))
        stopped = iter(range(100))
        cancelled = list(run_finetune(plan("resumed"), cancel=lambda: next(stopped) >= 1))
        assert cancelled[-1].event == "cancelled" and cancelled[-1].iteration == 1
        with open(tmp_path / "resumed" / "log.jsonl", "a") as log:
            log.write('{"event": "iter')  # as if killed while writing a record
        resumed = list(run_finetune(load_plan(tmp_path / "resumed"), resume=True))
        assert [r.iteration for r in resumed if r.event == "iteration"] == [2]
        assert [r["event"] for r in read_log(tmp_path / "resumed")][-4:] == ["started", "iteration", "checkpoint", "done"]
    finally:
        restore()
    straight = build_model(str(tmp_path / "straight" / "final.pt")).state_dict()
    again = build_model(str(tmp_path / "resumed" / "final.pt")).state_dict()
    assert all(torch.equal(straight[k], again[k]) for k in straight)


def test_evaluating_a_run_without_validation_images_reports_nothing(tmp_path):
    data = labelled_folder(tmp_path / "data", {"only.png": [("WBC", (2, 2, 20, 20))]})
    plan = plan_finetune(str(data), str(tmp_path / "runs"), "bccd-demo")
    assert plan.val_images == ()
    with pytest.raises(InputError, match="nothing to evaluate yet"):
        evaluate_run(plan)
    os.makedirs(plan.settings.out)
    shutil.copyfile(BUNDLED["bccd-demo"], os.path.join(plan.settings.out, "last.pt"))
    metrics = evaluate_run(plan)
    assert (metrics["AP50"], metrics["per_class_AP50"], metrics["val_images"], metrics["checkpoint"]) == \
        (None, {}, 0, "last.pt")
    assert metrics["before"]["AP50"] is None


# --- before/after comparisons ------------------------------------------------------------------

def detections(*rows):
    """(x1, y1, x2, y2, label, score) rows -> a model-output dict."""
    table = torch.tensor(rows, dtype=torch.float32).reshape(-1, 6)
    return {"boxes": table[:, :4], "labels": table[:, 4].long(), "scores": table[:, 5]}


def counts(comparison):
    return comparison.kept, comparison.changed_class, comparison.gained, comparison.lost


def test_the_same_box_and_class_is_kept():
    comparison = compare_on_image(detections((0, 0, 10, 10, 1, 0.9)), detections((0, 0, 10, 9, 1, 0.8)))
    assert counts(comparison) == (1, 0, 0, 0)  # IoU 0.9
    assert comparison.per_image == [{"image": None, "gained": [], "lost": [], "changed": []}]


def test_the_same_box_with_another_class_is_changed_and_names_the_best_overlap():
    before = detections((0, 0, 10, 10, 1, 0.9), (0, 0, 10, 6, 3, 0.7))  # IoUs with the after box: 1.0 and 0.6
    comparison = compare_on_image(before, detections((0, 0, 10, 10, 2, 0.8)), image="a.png")
    assert counts(comparison) == (0, 1, 0, 0)
    [changed] = comparison.per_image[0]["changed"]
    assert changed["label"] == 2 and changed["before_label"] == 1 and changed["before_score"] == pytest.approx(0.9)
    assert comparison.per_image[0]["image"] == "a.png"


def test_boxes_apart_are_gained_and_lost():
    comparison = compare_on_image(detections((0, 0, 10, 10, 1, 0.9)), detections((20, 20, 30, 30, 1, 0.6)))
    assert counts(comparison) == (0, 0, 1, 1)
    entry = comparison.per_image[0]
    assert entry["gained"] == [{"box": [20.0, 20.0, 30.0, 30.0], "label": 1, "score": pytest.approx(0.6)}]
    assert entry["lost"][0]["box"] == [0.0, 0.0, 10.0, 10.0]


def test_iou_exactly_at_the_threshold_overlaps_and_low_scores_do_not_count():
    before = detections((0, 0, 10, 10, 1, 0.9))
    assert counts(compare_on_image(before, detections((0, 0, 10, 5, 1, 0.9)))) == (1, 0, 0, 0)  # IoU 0.5
    assert counts(compare_on_image(before, detections((0, 0, 10, 4, 1, 0.9)))) == (0, 0, 1, 1)  # IoU 0.4
    assert counts(compare_on_image(before, detections((0, 0, 10, 10, 1, 0.49)))) == (0, 0, 0, 1)
    assert counts(compare_on_image(before, detections((0, 0, 10, 10, 1, 0.49)), score_thresh=0.4)) == (1, 0, 0, 0)


def test_two_after_boxes_on_one_before_box_are_both_kept():
    comparison = compare_on_image(detections((0, 0, 10, 10, 1, 0.9)),
                                  detections((0, 0, 10, 10, 1, 0.9), (0, 0, 10, 8, 1, 0.8)))
    assert counts(comparison) == (2, 0, 0, 0)


def test_compare_detections_pairs_records_by_image_and_adds_up():
    before = [{"image_id": 0, **detections((0, 0, 10, 10, 1, 0.9))},
              {"image_id": 1, "image": "b.png", **detections((0, 0, 10, 10, 1, 0.9))}]
    after = [{"image_id": 1, **detections((0, 0, 10, 10, 2, 0.9), (50, 50, 60, 60, 1, 0.9))},
             {"image_id": 2, **detections((0, 0, 10, 10, 1, 0.9))}]
    comparison = compare_detections(before, after)
    # image 0: lost 1; image 1: changed 1, gained 1; image 2: gained 1
    assert counts(comparison) == (0, 1, 2, 1)
    assert [entry["image"] for entry in comparison.per_image] == [0, "b.png", 2]
    assert [len(entry["lost"]) for entry in comparison.per_image] == [1, 0, 0]
    empty = compare_detections([], [])
    assert counts(empty) == (0, 0, 0, 0) and empty.per_image == []
