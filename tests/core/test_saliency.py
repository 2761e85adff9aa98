"""Tests for frcnn_core.inspect.saliency: the targets score what the pass scored, the masks and the
D-RISE statistics by hand, the deletion test's bookkeeping, and on the trained demo model both
maps rest on the object (deleting their top 10 % costs more than a random 10 %)."""
from __future__ import annotations

import math

import pytest
import torch

from frcnn_core.errors import InputError
from frcnn_core.inspect import saliency
from frcnn_core.inspect.inspection import Inspection
from frcnn_core.inspect.saliency import (
    DETECTION,
    DRISE,
    HIRES_CAM,
    PROPOSAL,
    MaskStatistics,
    TargetScorer,
    box_target,
    deletion_test,
    detection_target,
    drise,
    feature_layer,
    most_salient,
    proposal_target,
    random_masks,
    saliency_map,
)
from frcnn_core.io.images import load_image
from frcnn_core.modeling.zoo import build_model

from reference import PHOTO
from test_inspect_stages import BCCD_SAMPLE


@pytest.fixture(scope="module")
def bccd():
    """The trained demo model, a BCCD image and its inspection."""
    model = build_model("bccd-demo")
    image = load_image(BCCD_SAMPLE.with_suffix(".jpg")).tensor
    return model, image, Inspection.run(model, image)


@pytest.fixture(scope="module")
def untrained():
    torch.manual_seed(0)
    model = build_model("mobilenet-v3-320-fpn", "none", score_thresh=0.0)
    image = load_image(PHOTO).tensor
    return model, image, Inspection.run(model, image)


# ---------------------------------------------------------------- the targets


def test_a_detection_target_scores_what_the_pass_scored(bccd):
    model, image, inspection = bccd
    for index in range(3):
        target = detection_target(inspection.trace, index)
        with torch.inference_mode():
            scores = TargetScorer(model, target)(image[None])
        assert target.kind == DETECTION and target.label == int(inspection.trace.detections.labels[index])
        assert float(scores.score[0]) == pytest.approx(target.score, abs=1e-4)
        # the class's box from the fixed RoI is the detection's box
        assert torch.allclose(scores.class_boxes[0, target.label], target.box, atol=0.05)


def test_a_proposal_target_scores_its_objectness(untrained):
    model, image, inspection = untrained
    target = proposal_target(inspection.trace.proposals, 0)
    with torch.inference_mode():
        scores = TargetScorer(model, target)(image[None].expand(2, -1, -1, -1))
    assert target.kind == PROPOSAL and target.roi is None
    assert scores.score.tolist() == pytest.approx([target.score] * 2, abs=1e-5)
    assert torch.allclose(torch.sigmoid(scores.logit), scores.score)


def test_the_inspections_target_equals_the_traces(bccd):
    _, _, inspection = bccd
    ours, expected = inspection.saliency_target(DETECTION, 1), detection_target(inspection.trace, 1)
    assert (ours.label, ours.level, ours.score) == (expected.label, expected.level, pytest.approx(expected.score))
    assert torch.allclose(ours.box, expected.box) and torch.allclose(ours.roi, expected.roi, atol=1e-3)
    assert inspection.saliency_target(PROPOSAL, 0).anchor_index == proposal_target(inspection.trace.proposals,
                                                                                    0).anchor_index


@pytest.mark.parametrize("index", [-1, 10_000])
def test_a_target_that_is_not_there_is_one_line(bccd, index):
    _, _, inspection = bccd
    with pytest.raises(InputError, match="there is no detection"):
        detection_target(inspection.trace, index)
    with pytest.raises(InputError, match="there is no proposal"):
        inspection.saliency_target(PROPOSAL, index)


def test_a_users_box_is_scored_as_a_roi_of_its_likeliest_class(bccd):
    model, image, inspection = bccd
    detection = detection_target(inspection.trace, 0)
    target = box_target(model, image, detection.roi)
    assert target.label == detection.label and target.score == pytest.approx(detection.score, abs=1e-3)
    other = 1 + detection.label % (len(model.class_names) - 1)
    assert box_target(model, image, detection.roi, label=other).score < target.score


@pytest.mark.parametrize(("box", "words"), [
    ((10, 10, 10, 40), "is empty"),
    ((40, 10, 20, 30), "is empty"),
    ((-5, 0, 20, 20), "is not inside the 640x480 image"),
    ((600, 400, 700, 470), "is not inside"),
    ((0, 0, math.nan, 20), "not a box of numbers"),
])
def test_an_absurd_box_is_one_line(bccd, box, words):
    model, image, _ = bccd
    with pytest.raises(InputError, match=words) as caught:
        box_target(model, image, torch.tensor(box, dtype=torch.float32))
    assert "\n" not in str(caught.value)


def test_a_class_the_model_lacks_is_one_line(bccd):
    model, image, _ = bccd
    with pytest.raises(InputError, match="not one of the model's classes 1-3"):
        box_target(model, image, torch.tensor([10.0, 10.0, 60.0, 60.0]), label=4)


# ---------------------------------------------------------------- the pieces, by hand


def test_random_masks_are_smooth_reproducible_and_keep_half():
    masks = random_masks(64, (30, 40), 10, torch.Generator().manual_seed(3))
    assert masks.shape == (64, 30, 40) and masks.min() >= 0 and masks.max() <= 1
    assert float(masks.mean()) == pytest.approx(0.5, abs=0.05)
    assert torch.equal(masks, random_masks(64, (30, 40), 10, torch.Generator().manual_seed(3)))
    # bilinear between cells 10 px apart: neighbours differ by at most a tenth
    assert float((masks[:, :, 1:] - masks[:, :, :-1]).abs().max()) <= 0.1 + 1e-6


def test_mask_statistics_is_the_covariance_of_mask_and_weight():
    statistics = MaskStatistics((1, 2), torch.device("cpu"))
    # two masks, each keeping one pixel; only the first keeps the score
    statistics.add(torch.tensor([1.0, 0.0]), torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]]))
    # E[wm] = (0.5, 0), E[w] = 0.5, E[m] = (0.5, 0.5)
    assert statistics.heatmap().tolist() == [[0.25, -0.25]]
    statistics.add(torch.tensor([1.0]), torch.tensor([[[1.0, 1.0]]]))
    # three masks: E[wm] = (2/3, 1/3), E[w] = 2/3, E[m] = (2/3, 2/3)
    assert statistics.heatmap().flatten().tolist() == pytest.approx([2 / 3 - 4 / 9, 1 / 3 - 4 / 9])


def test_most_salient_takes_the_share_with_the_highest_values():
    heatmap = torch.arange(20.0).reshape(4, 5)
    chosen = most_salient(heatmap, 0.1)
    assert int(chosen.sum()) == 2 and chosen[3, 3] and chosen[3, 4]


def test_feature_layer_names_the_fpn_level_or_the_single_map(bccd):
    model, _, _ = bccd
    blocks = model.backbone.fpn.layer_blocks
    assert feature_layer(model, 0) is blocks[0] and feature_layer(model, 99) is blocks[-1]
    vgg = build_model("paper-vgg16", "none")
    assert feature_layer(vgg, 0) is vgg.backbone.body


# ---------------------------------------------------------------- D-RISE and HiResCAM


def test_drise_yields_a_refining_map_and_ends_with_the_full_count(untrained):
    model, image, inspection = untrained
    target = proposal_target(inspection.trace.proposals, 0)
    steps = list(drise(model, image, target, masks=10, batch_size=4))
    assert [(step.done, step.total) for step in steps] == [(0, 10), (4, 10), (8, 10), (10, 10)]
    assert steps[0].heatmap is None and steps[-1].heatmap.shape == image.shape[-2:]
    again = saliency_map(model, image, target, DRISE, masks=10)
    assert torch.allclose(again, list(drise(model, image, target, masks=10))[-1].heatmap)


def test_deletion_test_scores_the_unchanged_image_and_deletes_the_share(bccd, monkeypatch):
    model, image, inspection = bccd
    target = detection_target(inspection.trace, 0)
    seen = []
    original = saliency._fill
    monkeypatch.setattr(saliency, "_fill", lambda image, keep: seen.append(keep) or original(image, keep))
    heatmap = torch.rand(image.shape[-2:], generator=torch.Generator().manual_seed(0))
    result = deletion_test(model, image, target, heatmap)
    assert result.score == pytest.approx(target.score, abs=1e-4)
    deleted = (1 - seen[0]).flatten(1).sum(1)
    pixels = image.shape[-2] * image.shape[-1]
    assert deleted.tolist() == [0] + [round(0.1 * pixels)] * (1 + saliency.RANDOM_DRAWS)
    assert torch.equal(seen[0][1] == 0, most_salient(heatmap))


@pytest.mark.parametrize("method", [DRISE, HIRES_CAM])
def test_both_maps_rest_on_the_detected_cell(bccd, method):
    """The demo model's best detection: deleting its map's top 10 % lowers the score more than
    twice as much as a random 10 % (the benchmark's criterion, here on one detection)."""
    model, image, inspection = bccd
    target = detection_target(inspection.trace, 0)
    heatmap = saliency_map(model, image, target, method, masks=64)
    assert heatmap.shape == image.shape[-2:] and torch.isfinite(heatmap).all()
    result = deletion_test(model, image, target, heatmap)
    assert result.salient_drop > 2 * max(result.random_drop, 0.0) and result.salient_drop > 0.05
