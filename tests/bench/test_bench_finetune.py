"""bench_finetune.py: seeded, disjoint splits; the tutorial recipe's shape; the scorer; a smoke run end to end."""
from __future__ import annotations

import json
import math

import pytest
import torch
from torchvision.ops import FrozenBatchNorm2d

from frcnn_core.data.formats import open_dataset

import bench_finetune
import tutorial_recipe
from finetune_splits import build_split


def test_raccoon_split_is_seeded_and_disjoint(tmp_path):
    first = build_split("raccoon", tmp_path / "a", seed=0)
    again = build_split("raccoon", tmp_path / "b", seed=0)
    other = build_split("raccoon", tmp_path / "c", seed=1)
    assert (first.train_images, first.test_images) == (again.train_images, again.test_images)
    assert set(first.train_images) != set(other.train_images)
    assert not set(first.train_images) & set(first.test_images)
    assert (len(first.train_images), len(first.test_images)) == (128, 32)  # 80/20 of the 160 photos
    written = sorted(path.name for path in first.train_dir.glob("*.jpg"))
    assert written == sorted(first.train_images)
    assert all((first.train_dir / name).with_suffix(".xml").is_file() for name in written)


def test_bccd_splits_take_train_images_and_test_on_val(tmp_path):
    twenty = build_split("bccd20", tmp_path / "a", seed=0)
    again = build_split("bccd20", tmp_path / "b", seed=0)
    everything = build_split("bccd205", tmp_path / "c", seed=0)
    assert twenty.train_images == again.train_images and len(twenty.train_images) == 20
    assert set(twenty.train_images) < set(everything.train_images) and len(everything.train_images) == 205
    assert twenty.test_images == everything.test_images
    assert not set(everything.train_images) & set(everything.test_images)
    # both sides number the classes alike, whatever order the chosen files name them in
    assert (twenty.train_dir / "classes.txt").read_text() == (twenty.test_dir / "classes.txt").read_text()


def test_tutorial_model_has_the_tutorial_shape():
    model = tutorial_recipe.tutorial_model(num_classes=3)
    features = model.backbone(torch.zeros(1, 3, 64, 64))
    assert len(features) == 3 and model.backbone.out_channels == 256
    assert isinstance(model.backbone.body["0"][1], FrozenBatchNorm2d)
    assert model.rpn.head.cls_logits.out_channels == 15  # 5 sizes x 3 aspect ratios per position
    assert (model.transform.min_size, model.transform.max_size) == ((800,), 1333)
    assert model.roi_heads.box_predictor.cls_score.out_features == 3


def test_the_scorer_gives_ground_truth_full_marks_and_shifted_boxes_less(tmp_path):
    test = open_dataset(build_split("raccoon", tmp_path, seed=0, test_limit=5).test_dir)
    truth = [{"image_id": index, "boxes": sample.boxes, "scores": torch.ones(len(sample.boxes)),
              "labels": sample.labels} for index, sample in enumerate(test.samples)]
    assert bench_finetune.score(truth, test) == {"AP50": 1.0, "AP": 1.0}
    shifted = []
    for record in truth:  # every box moved right by a fifth of its width: IoU 0.8 / 1.2 = 0.67
        step = 0.2 * (record["boxes"][:, 2] - record["boxes"][:, 0])
        shifted.append({**record, "boxes": record["boxes"] + torch.stack([step, 0 * step, step, 0 * step], dim=1)})
    # matched at IoU 0.5, 0.55, 0.6, 0.65 and at none of the six thresholds from 0.7: AP = 4 / 10
    assert bench_finetune.score(shifted, test) == {"AP50": 1.0, "AP": pytest.approx(0.4)}


def test_table_subtracts_the_tutorial_from_ours():
    row = {"dataset": "raccoon", "train_images": 128, "test_images": 32, "minutes": 5.0, "iterations": 10,
           "seconds": 300.0}
    text = bench_finetune.table([{**row, "recipe": "ours", "AP50": 0.9, "AP": 0.4},
                                 {**row, "recipe": "tutorial", "AP50": 0.85, "AP": 0.45}])
    assert "| raccoon | | 5 | ours − tutorial | +0.050 | -0.050 | | |" in text.splitlines()

    ablated = bench_finetune.table([{**row, "recipe": "ours", "AP50": 0.9, "AP": 0.4},
                                    {**row, "recipe": "ours/step-schedule", "AP50": 0.8, "AP": 0.45}])
    assert "| raccoon | | 5 | ours/step-schedule − ours | -0.100 | +0.050 | | |" in ablated.splitlines()


def test_an_ablation_passes_its_flag_and_one_repeating_the_plan_is_skipped(tmp_path, monkeypatch):
    split = build_split("raccoon", tmp_path, seed=0)  # large boxes: the plan's model is the coarse one
    calls = []
    monkeypatch.setattr(bench_finetune, "run_ours", lambda *args: calls.append(args[4]))
    assert bench_finetune.runner("ours/coarse-shape", split, 5.0) is None
    bench_finetune.runner("ours/fine-shape", split, 5.0)(split, 5.0, 0, tmp_path / "run")
    bench_finetune.runner("ours/tutorial-size", split, 5.0)(split, 5.0, 0, tmp_path / "run")
    assert calls == [["--model", "mobilenet-v2"], ["--input-size", "800", "1333"]]
    assert bench_finetune.ours_command(split, 5.0, tmp_path / "run", calls[1])[-3:] == calls[1]


@pytest.mark.slow
def test_tutorial_smoke_run_scores_within_zero_and_one(tmp_path, capsys):
    out = tmp_path / "records.json"
    bench_finetune.main(["--smoke", "--datasets", "raccoon", "--json", str(out), "--scratch", str(tmp_path / "s")])
    (record,) = json.loads(out.read_text())
    assert (record["dataset"], record["recipe"], record["minutes"]) == ("raccoon", "tutorial", 0.2)
    assert (record["train_images"], record["test_images"]) == (4, 3)
    for metric in ("AP50", "AP"):
        assert math.isfinite(record[metric]) and 0.0 <= record[metric] <= 1.0
    assert record["iterations"] >= 1 and record["seconds"] >= 0.2 * 60  # trained until the budget was spent
    assert "| raccoon | 4 / 3 | 0.2 | tutorial |" in capsys.readouterr().out
