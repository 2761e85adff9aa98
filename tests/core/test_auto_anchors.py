"""Auto-anchors: coverage against the model's real anchor grid, fits that raise it, anchors kept
when they do not or when the heads are trained, fitted anchors through checkpoints and training."""
from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from torchvision.ops import box_iou

from frcnn_core.data.samples import DetectionDataset, Sample
from frcnn_core.errors import InputError
from frcnn_core.io.images import load_image
from frcnn_core.modeling import transform
from frcnn_core.modeling.anchors import inside_mask
from frcnn_core.modeling.checkpoints import load_weights_file, save_checkpoint
from frcnn_core.modeling.config import AnchorConfig, TransformConfig
from frcnn_core.modeling.zoo import build_model
from frcnn_core.training import auto_anchors
from frcnn_core.training.auto_anchors import (
    Coverage,
    best_anchor_iou,
    choose_anchors,
    level_strides,
    resize_boxes,
)
from frcnn_core.training.train import TrainSettings, train

from datasets import write_tiny_dataset
from reference import PHOTO

NAMES = ["__background__", "thing"]
# 3 sizes x 4 ratios = 12 shapes per cell on each of mobilenet-v2's 4 levels (its own anchors have 6)
TWELVE = AnchorConfig(sizes=((20, 30, 40), (60, 80, 100), (130, 170, 210), (260, 300, 340)),
                      aspect_ratios=((0.5, 1.0, 2.0, 3.0),) * 4)


@pytest.fixture(scope="module")
def model():
    """mobilenet-v2 (strides 8-64, 6 shapes per cell), random weights; its input for 640x480 is 640x480."""
    torch.manual_seed(0)
    return build_model("mobilenet-v2", "none", class_names=NAMES)


def dataset_of(folder, boxes_per_image: list[torch.Tensor], size=(640, 480)) -> DetectionDataset:
    """One black PNG of `size` (W, H) per entry, with those boxes (class 1)."""
    samples = []
    for index, boxes in enumerate(boxes_per_image):
        path = folder / f"img{index}.png"
        Image.new("L", size).save(path)
        samples.append(Sample(str(path), boxes.float().reshape(-1, 4), torch.ones(len(boxes), dtype=torch.int64)))
    return DetectionDataset(samples, NAMES)


def tall_boxes(count: int, seed: int) -> torch.Tensor:
    """(count, 4) boxes about 23 x 69 px (h / w about 3, side about 40) inside a 640x480 image."""
    generator = torch.Generator().manual_seed(seed)
    widths = 21 + 4 * torch.rand(count, generator=generator)
    heights = 3 * widths * (0.9 + 0.2 * torch.rand(count, generator=generator))
    corners = torch.rand(count, 2, generator=generator) * torch.tensor([600.0, 400.0])
    return torch.cat([corners, corners + torch.stack([widths, heights], dim=1)], dim=1)


@pytest.mark.parametrize("size", [(480, 640), (500, 700), (1000, 333), (97, 128), (333, 1000)])
@pytest.mark.parametrize("config", [TransformConfig(480, 640), TransformConfig(),
                                    TransformConfig(fixed_size=(800, 800))])
def test_resized_size_is_the_size_resize_gives(size, config):
    resized = transform.resize(torch.zeros(3, *size), config)
    assert transform.resized_size(*size, config) == tuple(resized.shape[-2:])


@pytest.mark.parametrize(("name", "preset"), [("mobilenet-v2", None), ("mobilenet-v2", "paper"),
                                              ("mobilenet-v2", "seed"), ("mobilenet-v2-fpn", None)])
def test_best_anchor_iou_equals_the_maximum_over_the_models_own_anchors(name, preset):
    """The oracle: box_iou against every anchor the model lays out for the image (only those fully
    inside it where the preset ignores cross-boundary anchors). 500x700 resizes to 457x640 for
    mobilenet-v2, padded to 480: its stride-64 level has 8 rows 60 px apart, not 64."""
    detector = build_model(name, "none", preset=preset)
    strides = level_strides(detector)
    generator = torch.Generator().manual_seed(3)
    for height, width in [(500, 700), (480, 640)]:
        corners = torch.rand(40, 2, generator=generator) * torch.tensor([width * 0.8, height * 0.8])
        sides = 6 + torch.rand(40, 2, generator=generator) * torch.tensor([width * 0.6, height * 0.6])
        boxes = torch.cat([corners, torch.minimum(corners + sides, torch.tensor([width, height]))], dim=1)
        with torch.inference_mode():
            start = detector.backbone_pass([torch.zeros(3, height, width)])
        anchors, input_size = start.anchors.boxes, start.batch.input_sizes[0]
        expected = box_iou(transform.to_input(boxes, start.batch, 0), anchors)
        cross_rule = detector.config.rpn_train.ignore_cross_boundary
        if cross_rule:
            expected = expected * inside_mask(anchors, input_size)
        resized = resize_boxes([boxes], [(height, width)], detector.config.transform)
        got = best_anchor_iou(resized, detector.config.anchors, strides, cross_rule)
        torch.testing.assert_close(got, expected.max(dim=1).values.double(), atol=1e-5, rtol=0)


def test_coverage_of_a_hand_computed_case(model, tmp_path):
    """640x480 stays 640x480. Box 1 is the level-0 anchor of size 16, ratio 1 at column 20, row 10
    (centre 160, 80): IoU 1. Box 2 is that box moved 4 px right: the anchors at x 160 and 168
    both overlap it 12 px of 16, IoU 12*16 / (2*256 - 192) = 0.6; no other shape does better
    (size 32: 0.25; ratio 0.5, 22x12: 180 / 340)."""
    dataset = dataset_of(tmp_path, [torch.tensor([[152.0, 72, 168, 88], [156, 72, 172, 88]])])
    boxes = auto_anchors.training_boxes(dataset, model.config.transform)
    assert level_strides(model) == [8, 16, 32, 64]

    best = best_anchor_iou(boxes, model.config.anchors, [8, 16, 32, 64], ignore_cross_boundary=False)

    torch.testing.assert_close(best, torch.tensor([1.0, 0.6], dtype=torch.float64))
    assert Coverage.of(best) == Coverage(boxes=2, recall_50=1.0, recall_70=0.5, below_50=0.0)
    assert Coverage.of(best).line() == ("best-possible recall 100.0% at IoU 0.5, 50.0% at 0.7; "
                                        "0.0% of 2 boxes have no anchor at IoU 0.5")


def test_a_fit_raises_the_coverage_of_tall_boxes(model, tmp_path):
    dataset = dataset_of(tmp_path, [tall_boxes(12, seed) for seed in range(4)])

    fit = choose_anchors(model, dataset, heads_new=True)

    # the model's tallest shape (ratio 2, size 32: 23 x 45) covers about 45 / 69 of a box: IoU 0.65
    assert fit.before.boxes == 48 and fit.before.recall_70 <= 0.05
    assert fit.fitted and fit.after == fit.tried
    # fitted: 2.1% -> 91.7% at IoU 0.7 (the rest are the stride-8 grid's: 4 px off a 23-px width)
    assert fit.after.recall_50 == 1.0 and fit.after.recall_70 >= 0.9
    ratios = {ratio for level in fit.anchors.aspect_ratios for ratio in level}
    assert all(2.5 <= ratio <= 3.5 for ratio in ratios)
    assert len(set(fit.anchors.num_anchors_per_location)) == 1
    assert (fit.anchors.center_offset, fit.anchors.round_base) == (0.0, True)  # the model's grid convention
    assert fit.why.startswith("fitted") and "-> 100.0%" in fit.why
    assert fit.box_shapes.shape == (48, 2)
    assert choose_anchors(model, dataset, heads_new=True).anchors == fit.anchors  # deterministic
    assert json.loads(json.dumps(fit.to_json()))["anchors"]["aspect_ratios"][0] == list(fit.anchors.aspect_ratios[0])


def test_the_models_anchors_stay_when_no_fit_covers_more(model, tmp_path):
    """One box equal to the middle anchor of each shape of each level: every box at IoU 1."""
    with torch.inference_mode():
        start = model.backbone_pass([torch.zeros(3, 480, 640)])
    picked, offset = [], 0
    for (rows, columns), shapes in zip(start.anchors.grid_sizes, start.anchors.shapes_per_cell, strict=True):
        middle = offset + ((rows // 2) * columns + columns // 2) * shapes
        picked.append(start.anchors.boxes[middle:middle + shapes])
        offset += rows * columns * shapes
    dataset = dataset_of(tmp_path, [torch.cat(picked)])

    fit = choose_anchors(model, dataset, heads_new=True)

    assert fit.before == Coverage(24, 1.0, 1.0, 0.0)
    assert not fit.fitted and fit.anchors == model.config.anchors and fit.after == fit.before
    assert fit.tried is not None and fit.why.startswith("kept the model's anchors: the best fit")


def test_trained_heads_are_measured_never_refitted(model, tmp_path, monkeypatch):
    def no_fit(*args, **kwargs):
        raise AssertionError("fitted anchors for trained heads")

    monkeypatch.setattr(auto_anchors, "fit_anchors", no_fit)
    dataset = dataset_of(tmp_path, [tall_boxes(12, 0)])

    fit = choose_anchors(model, dataset, heads_new=False)

    assert not fit.fitted and fit.tried is None and fit.anchors == model.config.anchors
    assert fit.after == fit.before and fit.before.recall_70 == 0.0
    assert fit.why.startswith("kept the model's anchors, which its trained RPN belongs to")


def test_a_dataset_without_boxes_is_one_line(model, tmp_path):
    dataset = dataset_of(tmp_path, [torch.zeros(0, 4), torch.zeros(0, 4)])
    with pytest.raises(InputError) as error:
        choose_anchors(model, dataset, heads_new=True)
    assert str(error.value) == "none of the 2 training images has a box: nothing to train on"


def test_the_picture_is_a_png(model, tmp_path):
    fitted = choose_anchors(model, dataset_of(tmp_path, [tall_boxes(30, 1)]), heads_new=True)
    kept = choose_anchors(model, dataset_of(tmp_path, [tall_boxes(30, 1)]), heads_new=False)
    for fit, name in ((fitted, "fitted.png"), (kept, "kept.png")):
        path = fit.save_picture(tmp_path / name)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
        with Image.open(path) as picture:
            assert picture.size == (600, 550)


def test_a_checkpoint_with_fitted_anchors_reloads_and_detects(tmp_path):
    torch.manual_seed(0)
    fitted = build_model("mobilenet-v2", "none", score_thresh=0.0, class_names=NAMES, anchors=TWELVE)
    assert fitted.rpn["head"].cls_logits.out_channels == 12 and fitted.rpn["head"].bbox_pred.out_channels == 48
    path = tmp_path / "fitted.pt"
    save_checkpoint(path, fitted.model_name, fitted.config, fitted.class_names, fitted.state_dict())

    loaded = build_model(str(path))

    assert loaded.config.anchors == TWELVE and loaded.rpn["head"].cls_logits.out_channels == 12
    photo = load_image(PHOTO).tensor
    with torch.inference_mode():
        expected, got = fitted([photo])[0], loaded([photo])[0]
        _, traces = loaded([photo], trace=True)
    assert len(got["boxes"]) > 0
    assert torch.equal(got["boxes"], expected["boxes"]) and torch.equal(got["scores"], expected["scores"])
    anchors = traces[0].anchors
    assert len(anchors.boxes) == sum(rows * columns * 12 for rows, columns in anchors.grid_sizes)
    other_preset = build_model(str(path), preset="paper")  # another preset keeps the anchors trained with
    assert other_preset.config.anchors.sizes == TWELVE.sizes
    assert torch.equal(other_preset.rpn["head"].cls_logits.weight, fitted.rpn["head"].cls_logits.weight)


def test_new_anchors_on_trained_weights_start_the_rpn_outputs_fresh(tmp_path):
    torch.manual_seed(0)
    trained = build_model("mobilenet-v2", "none", class_names=NAMES)
    path = tmp_path / "trained.pt"
    save_checkpoint(path, trained.model_name, trained.config, trained.class_names, trained.state_dict())
    head = trained.rpn["head"]

    refitted = build_model("mobilenet-v2", str(path), anchors=TWELVE)
    same = build_model("mobilenet-v2", str(path), anchors=trained.config.anchors)

    assert refitted.rpn["head"].cls_logits.out_channels == 12
    assert torch.equal(refitted.rpn["head"].conv[0][0].weight, head.conv[0][0].weight)
    assert torch.equal(refitted.roi_heads["box_predictor"].cls_score.weight,
                       trained.roi_heads["box_predictor"].cls_score.weight)
    assert torch.equal(same.rpn["head"].cls_logits.weight, head.cls_logits.weight)
    with pytest.raises(InputError, match="anchors for 1 feature levels; model mobilenet-v2 has 4"):
        build_model("mobilenet-v2", "none", anchors=AnchorConfig(sizes=((32,),), aspect_ratios=((1.0,),)))


def test_train_settings_carry_the_anchors_into_a_fresh_run(tmp_path):
    data = write_tiny_dataset(tmp_path / "data")
    settings = TrainSettings(data=str(data), out=str(tmp_path / "run"), split=None, weights="none", iters=1,
                             checkpoint_every=1, warmup_iters=1, anchors=TWELVE)
    assert TrainSettings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings
    assert TrainSettings.from_dict(json.loads(json.dumps(TrainSettings("d", "o").to_dict()))).anchors is None

    events = [progress.event for progress in train(settings)]

    assert events[-1] == "done"
    assert load_weights_file(tmp_path / "run" / "final.pt").config.anchors == TWELVE
    assert build_model(str(tmp_path / "run" / "final.pt")).rpn["head"].cls_logits.out_channels == 12
    saved = json.loads((tmp_path / "run" / "settings.json").read_text())
    assert saved["anchors"]["sizes"] == [list(level) for level in TWELVE.sizes]
