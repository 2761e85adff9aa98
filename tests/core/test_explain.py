"""Tests for frcnn_core.inspect.describe: the sentences carry the live numbers of a hand-made tiny trace and
of the seed walkthrough, and a stage whose inputs are missing says what is missing."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from frcnn_core.inspect.describe import FOUND, LOST_AT_WORDS, explain, outcome_words, stage_counts
from frcnn_core.inspect.inspection import Inspection
from frcnn_core.io.images import load_image
from frcnn_core.modeling.anchors import inside_mask, make_anchors
from frcnn_core.modeling.config import AnchorConfig, make_config
from frcnn_core.modeling.trace import (
    AnchorLabelsTrace,
    AnchorsTrace,
    DetectionsTrace,
    ObjectnessTrace,
    ProposalsTrace,
    RoiPoolTrace,
    RoiTargetsTrace,
    Trace,
)
from frcnn_core.modeling.zoo import build_model
from frcnn_core.vocabulary import FUNNEL_STAGES

from reference import SAMPLES

# One level of 2 x 2 cells (stride 16 on a 32 x 32 input), sizes 16 px at ratios 0.5 / 1 / 2,
# centred in their cells (8, 24): only the four squares [0, 16] / [16, 32] lie inside.
TINY_ANCHORS = AnchorConfig(sizes=((16,),), aspect_ratios=((0.5, 1.0, 2.0),), center_offset=0.5, round_base=False)
TINY_CONFIG = make_config("seed", TINY_ANCHORS)


def tiny_trace() -> Trace:
    """An inference trace with anchor labels, every count small enough to check by hand."""
    anchors = make_anchors(TINY_ANCHORS, [(2, 2)], (32, 32))
    box = torch.tensor([[0.0, 0.0, 16.0, 16.0]])
    return Trace(
        image_size=(32, 32),
        input_size=(32, 32),
        scale=(1.0, 1.0),
        anchors=AnchorsTrace(anchors.boxes, anchors.level, inside_mask(anchors.boxes, (32, 32)), anchors.grid_sizes,
                             anchors.strides, anchors.shapes_per_cell),
        # 3 logits above 0 (probability above 0.5); the best is 2.0 -> sigmoid 0.881
        objectness=ObjectnessTrace(torch.tensor([2.0, 0.5, 0.1] + [-1.0] * 9), torch.zeros(12, 4)),
        # 5 boxes before NMS, 4 valid; NMS kept 2 and suppressed 2; the best 1 is the proposal
        proposals=ProposalsTrace(
            pre_nms_boxes=box.repeat(5, 1), pre_nms_scores=torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5]),
            pre_nms_anchor_idx=torch.arange(5), pre_nms_level=torch.zeros(5, dtype=torch.int64),
            valid=torch.tensor([True, True, True, True, False]), nms_keep_idx=torch.tensor([0, 2]),
            post_nms_idx=torch.tensor([0]), suppressed_by=torch.tensor([-1, 0, -1, 2, -1]), nms_thresh=0.7),
        roi_pool=RoiPoolTrace(box, torch.zeros(1, dtype=torch.int64), (1, 8, 7, 7), None),
        # 1 positive, 3 negative, 8 ignored; sampled 1 + 3
        anchor_labels=AnchorLabelsTrace(
            labels=torch.tensor([1, 0, 0, 0] + [-1] * 8, dtype=torch.int8), matched_gt_idx=torch.zeros(12),
            max_iou=torch.zeros(12), sampled_pos_idx=torch.tensor([0]), sampled_neg_idx=torch.tensor([1, 2, 3])),
        # 1 RoI over 2 classes + background; 2 candidates, 1 kept
        detections=DetectionsTrace(
            class_scores=torch.tensor([[0.2, 0.7, 0.1]]), class_boxes=box.repeat(3, 1)[None],
            candidate_roi_idx=torch.tensor([0, 0]), candidate_labels=torch.tensor([1, 2]),
            candidate_scores=torch.tensor([0.7, 0.1]), candidate_boxes=box.repeat(2, 1), keep_idx=torch.tensor([0])),
    )


def tiny_training_trace() -> Trace:
    """The tiny trace as a training pass: 1 proposal + 1 GT box, 1 foreground RoI of a quota of 2."""
    samples = RoiTargetsTrace(
        rois=torch.zeros(3, 4), candidate_idx=torch.tensor([1, 0, 0]), num_proposals=1,
        labels=torch.tensor([1, 0, 0]), matched_gt_idx=torch.zeros(3, dtype=torch.int64),
        max_iou=torch.tensor([1.0, 0.2, 0.2]), regression_targets=torch.zeros(3, 4), positive_quota=2)
    return replace(tiny_trace(), roi_targets=samples, detections=None)


def test_anchors_hand_case():
    text = explain("anchors", tiny_trace(), TINY_CONFIG)

    assert text.startswith("2 x 2 feature cells x 3 shapes = 12 anchors; 4 lie fully inside the image.")
    assert "every 16 px" in text and "sizes 16 px" in text and "ratios 0.5, 1, 2" in text


def test_anchor_labels_hand_case():
    text = explain("anchor-labels", tiny_trace(), TINY_CONFIG, gt_count=1)

    assert text.startswith("Matched against 1 GT box, 1 anchor became positive (IoU >= 0.7 with a GT box, or the "
                           "best anchor of one), 3 negative (IoU < 0.3) and 8 ignored")
    assert "crossing the image border" in text  # the seed preset ignores cross-boundary anchors
    assert "The loss samples 4 anchors, 1 of them positive (at most 128 of 256)" in text


def test_objectness_and_proposals_hand_case():
    trace = tiny_trace()

    assert "12 anchors" in explain("objectness", trace, TINY_CONFIG)
    assert "Above 0.5, i.e. more likely an object than background: 3 anchors; the highest score is 0.881" in (
        explain("objectness", trace, TINY_CONFIG))
    pre_nms = explain("proposals-pre-nms", trace, TINY_CONFIG)
    assert "Up to the 6,000 highest-scoring anchors" in pre_nms  # the seed's inference top-N
    assert "5 boxes before NMS. Boxes with a side under 16 px are dropped: 1, leaving 4." in pre_nms
    proposals = explain("proposals", trace, TINY_CONFIG)
    assert "IoU > 0.7: it suppressed 2 of 4 boxes and kept 2. The best 1 go on to the second stage" in proposals


def test_second_stage_hand_case():
    trace = tiny_trace()

    assert "8 x 7 x 7 = 392 features per RoI" in explain("roi-pool", trace, TINY_CONFIG)
    scores = explain("class-scores", trace, TINY_CONFIG)
    assert "every RoI (1 RoI) over 2 classes plus background" in scores
    assert "most likely background: 0 RoIs" in scores and "per-class NMS: 2." in scores
    detections = explain("detections", trace, TINY_CONFIG)
    assert "kept 1 of the 2 candidates" in detections
    assert "The best score is 0.700; scoring at least 0.5: 1 detection." in detections
    # the detections panel's threshold moves the sentence and the stage list's count alike
    assert "The best score is 0.700; scoring at least 0.75: 0 detections." in explain(
        "detections", trace, TINY_CONFIG, score_thresh=0.75)
    assert stage_counts(trace, 0.75)["detections"] == "0 (score ≥ 0.75; 1 in all)"
    assert stage_counts(trace)["detections"] == "1 (score ≥ 0.5; 1 in all)"


def test_every_funnel_outcome_has_one_name():
    assert list(LOST_AT_WORDS) == list(FUNNEL_STAGES)
    words = [outcome_words(None), *map(outcome_words, FUNNEL_STAGES)]
    assert words == [FOUND, "lost at anchors", "lost before NMS", "lost at NMS", "lost at post-NMS top-N",
                     "lost at detection"]
    assert len(set(words)) == len(words)
    with pytest.raises(KeyError):
        outcome_words("detected")  # the JSON's outcome key is not a stage a box is lost at


def test_roi_samples_hand_case_warns_when_the_quota_is_not_filled():
    text = explain("roi-samples", tiny_training_trace(), TINY_CONFIG, gt_count=1)

    assert text.startswith("From the 1 proposal plus 1 GT box added as proposals, the second stage's training "
                           "batch takes 3 RoIs: 1 foreground (IoU >= 0.5 with a GT box, at most 2) and 2 background "
                           "(IoU in [0, 0.5)).")
    assert text.endswith("The foreground quota of 2 was not filled: no more candidates overlap a GT box that well.")


def test_training_traces_quote_the_training_settings():
    assert "Up to the 12,000 highest-scoring anchors" in explain("proposals-pre-nms", tiny_training_trace(),
                                                                 TINY_CONFIG)


@pytest.mark.parametrize("stage, trace, missing", [
    ("anchor-labels", replace(tiny_trace(), anchor_labels=None), "ground-truth boxes"),
    ("roi-samples", tiny_trace(), "a training trace"),
    ("class-scores", tiny_training_trace(), "an inference trace"),
    ("detections", tiny_training_trace(), "an inference trace"),
    ("funnels", tiny_trace(), "unknown stage"),
])
def test_a_stage_without_its_inputs_says_what_is_missing(stage, trace, missing):
    with pytest.raises(ValueError, match=missing):
        explain(stage, trace, TINY_CONFIG)


def test_fpn_anchors_list_every_level():
    anchors = make_anchors(AnchorConfig(), [(200, 304), (100, 152), (50, 76), (25, 38), (13, 19)], (800, 1216))
    trace = replace(tiny_trace(), input_size=(800, 1216), anchors=AnchorsTrace(
        anchors.boxes, anchors.level, inside_mask(anchors.boxes, (800, 1216)), anchors.grid_sizes, anchors.strides,
        anchors.shapes_per_cell))

    text = explain("anchors", trace, make_config("torchvision", AnchorConfig()))

    assert text.startswith("5 feature levels, cells x shapes: 200 x 304 x 3 (stride 4) + 100 x 152 x 3 (stride 8) "
                           "+ 50 x 76 x 3 (stride 16) + 25 x 38 x 3 (stride 32) + 13 x 19 x 3 (stride 64) = "
                           "242,991 anchors")
    assert "level 0: 32 px" in text and "level 4: 512 px" in text


@pytest.mark.slow
def test_the_seed_walkthrough_numbers():
    torch.manual_seed(0)
    model = build_model("paper-vgg16", "none", preset="seed")
    photo = load_image(SAMPLES / "astronaut.png").tensor
    image = F.interpolate(photo[None], size=(800, 800), mode="bilinear", align_corners=False)[0]
    gt_boxes = torch.tensor([[250.0, 50.0, 460.0, 330.0], [0.0, 0.0, 230.0, 460.0], [650.0, 200.0, 780.0, 780.0],
                             [500.0, 500.0, 700.0, 700.0]])
    inspection = Inspection.run(model, image, gt_boxes, torch.ones(4, dtype=torch.int64))
    training = inspection.training_trace

    anchors = explain("anchors", inspection.trace, model.config)
    assert anchors.startswith("50 x 50 feature cells x 9 shapes = 22,500 anchors; 8,940 lie fully inside the image.")
    labels = explain("anchor-labels", inspection.trace, model.config, gt_count=4)
    positive = int((inspection.trace.anchor_labels.labels == 1).sum())
    assert f"Matched against 4 GT boxes, {positive:,} anchors became positive" in labels
    assert "The loss samples 256 anchors" in labels
    assert "The best 2,000 go on to the second stage" in explain("proposals", training, model.config)
    assert "training batch takes 128 RoIs" in explain("roi-samples", training, model.config, gt_count=4)
    assert "512 x 7 x 7 = 25,088 features per RoI" in explain("roi-pool", training, model.config)
    assert "The best 300 go on to the second stage" in explain("proposals", inspection.trace, model.config)
