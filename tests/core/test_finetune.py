"""Fine-tuning runs: the train/validation split, plans and their errors (and the annotation
problems they name), training on chosen images, the preview hook, run/resume of a run, and its
scoring before/after on the classes both models know (tests/core/test_compare.py: box by box)."""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from frcnn_core.analysis.evaluate import evaluate
from frcnn_core.data.augment import AugmentConfig
from frcnn_core.data.samples import DetectionDataset, Sample
from frcnn_core.data.voc import write_voc, write_voc_xml
from frcnn_core.errors import InputError
from frcnn_core.modeling.zoo import BUNDLED, build_model
from frcnn_core.resources import SAMPLES
from frcnn_core.training.finetune import (
    FinetunePlan,
    class_overlap,
    evaluate_run,
    load_plan,
    plan_finetune,
    run_finetune,
    score_run,
    split_train_val,
    validation_dataset,
)
from frcnn_core.training.runs import FINISHED, ap50_fell, list_runs, read_log
from frcnn_core.training.train import TrainSettings, train
from frcnn_core.vocabulary import COMPARABLE, NO_DETECTOR, NOT_COMPARABLE, SHARED_CLASSES

from datasets import copy_raccoons
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


def trained_start(plan: FinetunePlan):
    """The model `train()` starts the plan's run from: the base weights with the plan's classes."""
    return build_model(plan.settings.model, plan.settings.weights, class_names=plan.class_names)


@pytest.mark.parametrize("base", ["bccd-demo", str(BUNDLED["bccd-demo"])])
def test_fine_tuning_bccd_demo_on_its_classes_keeps_its_trained_predictor(tmp_path, base):
    cells = {f"cell{i}.png": [("RBC", (2, 2, 20, 20)), ("WBC", (30, 10, 60, 40)), ("Platelets", (5, 25, 15, 35))]
             for i in range(3)}  # first appearance RBC, WBC, Platelets: not bccd-demo's order
    data = labelled_folder(tmp_path / "data", cells)
    plan = plan_finetune(str(data), str(tmp_path / "runs"), base)
    demo = build_model("bccd-demo")
    assert plan.class_names == demo.class_names == ["__background__", "WBC", "RBC", "Platelets"]
    assert plan.base_classes == ("WBC", "RBC", "Platelets") and class_overlap(plan).verdict == COMPARABLE
    start = trained_start(plan).state_dict()
    assert all(torch.equal(start[k], v) for k, v in demo.state_dict().items() if k.startswith(PREDICTOR))


def test_fine_tuning_bccd_demo_on_other_classes_starts_a_new_predictor(tmp_path):
    data = labelled_folder(tmp_path / "data", CATS_AND_DOGS)
    plan = plan_finetune(str(data), str(tmp_path / "runs"), "bccd-demo")
    model = trained_start(plan)
    assert model.class_names == ["__background__", "cat", "dog"]
    assert model.roi_heads["box_predictor"].cls_score.out_features == 3
    assert class_overlap(plan).note() == ("not comparable: the base model knows WBC, RBC, Platelets; "
                                          "this run trains cat, dog")


def test_a_plan_records_what_its_base_model_detects_and_reads_back(tmp_path):
    data = labelled_folder(tmp_path / "data", CATS_AND_DOGS)
    untrained = plan_finetune(str(data), str(tmp_path / "runs"), "mobilenet-v2", "none")
    assert untrained.base_classes == () and class_overlap(untrained).verdict == NO_DETECTOR
    demo = plan_finetune(str(data), str(tmp_path / "runs"), "bccd-demo")
    assert FinetunePlan.from_dict(json.loads(json.dumps(demo.to_dict()))) == demo
    older = demo.to_dict()
    del older["base_classes"], older["problems"]  # a plan.json written before they were recorded
    read = FinetunePlan.from_dict(older)
    assert (read.base_classes, read.problems) == (None, ())
    assert class_overlap(read) == class_overlap(demo)  # the base model is built to read its classes


def test_a_plan_names_its_annotation_problems(tmp_path):
    data = labelled_folder(tmp_path / "data", {**CATS_AND_DOGS, "empty.png": [], "flat.png": [("cat", (5, 5, 5, 9))]})
    for name in ("raccoon-12.png", "raccoon-13.png"):  # photos nobody annotated yet
        Image.new("RGB", (64, 48)).save(data / name)
    plan = plan_finetune(str(data), str(tmp_path / "runs"), "mobilenet-v2", "none")
    assert plan.problems == (
        "2 images have no annotation file: not used for training (e.g. raccoon-12.png)",
        "1 box skipped: zero-area box (e.g. flat.xml)",
        "2 images have an annotation without boxes: used as background only (e.g. empty.png)",
    )  # flat.png's only box is skipped, so it is an image without boxes too
    assert load_plan_round_trip(plan) == plan


def load_plan_round_trip(plan: FinetunePlan) -> FinetunePlan:
    return FinetunePlan.from_dict(json.loads(json.dumps(plan.to_dict())))


# --- training on chosen images; the preview hook -----------------------------------------------

def test_train_settings_round_trip_through_json():
    settings = TrainSettings(data="d", out="o", images=("a.png", "b.png"), class_names=("cat",),
                             augment=AugmentConfig(vflip=0.5, scale=(0.8, 1.2)))
    assert TrainSettings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings


def test_train_keeps_only_the_chosen_images(tiny_dataset, tmp_path):  # noqa: F811
    run = train(train_settings(tiny_dataset, tmp_path / "run", images=("img0.png", "img2.png", "other.png")))
    started = next(run)
    run.close()
    assert started.event == "started" and started.message.startswith("2 images")
    with pytest.raises(InputError, match="none of the 1 chosen images"):
        next(train(train_settings(tiny_dataset, tmp_path / "none", images=("other.png",))))


def test_preview_sees_the_model_in_eval_mode_and_leaves_training_bit_identical(tiny_dataset, tmp_path):  # noqa: F811
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

def test_a_run_trains_evaluates_and_lists_as_finished(tiny_dataset, tmp_path):  # noqa: F811
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
    assert {"AP", "AP50", "AP75", "per_class_AP50"} <= set(metrics)
    # a random head's scores are no "before": nothing is compared, nothing counted as lost
    assert metrics["before_after"] == {
        "base_model": "mobilenet-v2", "verdict": NO_DETECTOR, "note": class_overlap(plan).note(), "base_classes": [],
        "classes": [], "before": None, "after": None, "changes": None}
    [summary] = list_runs(runs)
    assert (summary.name, summary.state, summary.iteration, summary.total) == ("tiny", FINISHED, 2, 2)
    assert summary.metrics == metrics and summary.base_model == "mobilenet-v2" and summary.error is None


def cells_and_a_raccoon(folder: Path) -> Path:
    """Two BCCD images with their VOC files (RBC, WBC; the second also Platelets) and a photo with
    a raccoon box: a run that shares some classes with bccd-demo and trains one it lacks."""
    folder.mkdir()
    for target, source in (("cells-a", "BloodImage_00002"), ("cells-b", "BloodImage_00014")):
        shutil.copyfile(SAMPLES / f"{source}.jpg", folder / f"{target}.jpg")
        shutil.copyfile(SAMPLES / f"{source}.xml", folder / f"{target}.xml")
    write_voc_xml(folder / "animal.xml", folder / "animal.png", 64, 48, torch.tensor([[4.0, 4.0, 40.0, 40.0]]),
                  ["raccoon"])
    Image.new("RGB", (64, 48), (120, 110, 90)).save(folder / "animal.png")
    return folder


def run_with_the_base_as_checkpoint(plan: FinetunePlan) -> None:
    """A finished-looking run whose model IS the bundled bccd-demo: the "after" model without training."""
    os.makedirs(plan.settings.out)
    shutil.copyfile(BUNDLED["bccd-demo"], os.path.join(plan.settings.out, "final.pt"))


def test_score_run_compares_on_the_shared_classes_by_name(tmp_path):
    data = cells_and_a_raccoon(tmp_path / "data")
    plan = plan_finetune(str(data), str(tmp_path / "runs"), "bccd-demo", class_names=["raccoon", "RBC", "WBC"],
                         val_images=("cells-b.jpg",))
    assert plan.class_names == ["__background__", "raccoon", "RBC", "WBC"]  # not bccd-demo's label order
    assert plan.problems == ("2 boxes skipped: unknown class (e.g. cells-b.xml)",)  # its Platelets
    run_with_the_base_as_checkpoint(plan)
    metrics, comparison = score_run(plan)
    block = metrics["before_after"]
    assert (block["verdict"], block["classes"], block["base_classes"]) == (SHARED_CLASSES, ["RBC", "WBC"],
                                                                          ["WBC", "RBC", "Platelets"])
    assert block["note"] == ("compared on the shared classes only: RBC, WBC (the base model also knows Platelets; "
                             "this run also trains raccoon)")
    # the same model on both sides, matched by name: the same scores, and no box lost, gained or changed
    assert block["before"] == block["after"] and block["before"]["AP50"] > 0.5
    assert set(block["before"]["per_class_AP50"]) == {"RBC", "WBC"}
    assert (comparison.lost, comparison.gained, comparison.changed_class) == (0, 0, 0) and comparison.kept > 10
    assert block["changes"] == {"gained": 0, "lost": 0, "changed_class": 0, "kept": comparison.kept}
    expected = evaluate(build_model("bccd-demo", score_thresh=0.0), validation_dataset(plan), with_losses=False,
                        progress=False).to_json()  # evaluate maps labels by name too
    assert block["before"]["per_class_AP50"] == {name: expected["per_class_AP50"][name] for name in ("RBC", "WBC")}
    assert metrics["per_class_AP50"] == expected["per_class_AP50"] and not ap50_fell(metrics)


def test_score_run_does_not_compare_disjoint_classes(tmp_path):
    data = copy_raccoons(tmp_path / "data", annotated=(2, 3, 4))
    plan = plan_finetune(str(data), str(tmp_path / "runs"), "bccd-demo", val_images=("raccoon-4.jpg",))
    run_with_the_base_as_checkpoint(plan)
    metrics, comparison = score_run(plan)
    block = metrics["before_after"]
    assert comparison is None and (block["before"], block["after"], block["changes"]) == (None, None, None)
    assert (block["verdict"], block["classes"]) == (NOT_COMPARABLE, [])
    assert block["note"] == "not comparable: the base model knows WBC, RBC, Platelets; this run trains raccoon"
    assert metrics["AP50"] == 0.0 and metrics["per_class_AP50"] == {"raccoon": 0.0}  # blood cells are no raccoons
    assert json.loads((Path(plan.settings.out) / "metrics.json").read_text()) == metrics


@pytest.mark.parametrize("before, after, fell", [(0.020, 0.016, True), (0.020, 0.020, False), (0.5, 0.6, False),
                                                 (None, None, False)])
def test_ap50_fell_only_when_the_comparison_shows_it(before, after, fell):
    compared = {"before_after": {"before": {"AP50": before}, "after": {"AP50": after}}}
    assert ap50_fell(compared) is fell
    assert ap50_fell({"AP50": 0.0, "before_after": {"before": None, "after": None}}) is False
    assert ap50_fell({}) is False


def test_resuming_a_fine_tune_from_a_checkpoint_model_continues_exactly(tiny_dataset, tmp_path):  # noqa: F811
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
        events = [r["event"] for r in read_log(tmp_path / "resumed")]
        assert events[-4:] == ["started", "iteration", "checkpoint", "done"]
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
    assert metrics["before_after"]["before"]["AP50"] is None and metrics["before_after"]["classes"] == ["WBC"]
