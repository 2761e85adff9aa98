"""Tests for frcnn_core.inspect.inspection: re-runs equal the model's own passes, never touch the
backbone, and the pooling geometry reproduces torchvision's RoIAlign / RoIPool."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import roi_align, roi_pool

from frcnn_core.data.voc import read_voc_xml
from frcnn_core.inspect.inspection import Inspection, roi_align_grid, roi_pool_bins
from frcnn_core.io.images import load_image
from frcnn_core.modeling import boxes as box_ops, transform
from frcnn_core.modeling.config import NEG
from frcnn_core.modeling.rpn import anchor_targets
from frcnn_core.modeling.trace_builder import anchor_labels_trace
from frcnn_core.modeling.zoo import build_model
from frcnn_core.resources import SAMPLES

from reference import PHOTO

BCCD_SAMPLE = SAMPLES / "BloodImage_00014"
SEED = 3


def assert_same_fields(ours, expected, fields):
    for name in fields:
        assert torch.equal(getattr(ours, name), getattr(expected, name)), name


PROPOSAL_FIELDS = ("pre_nms_boxes", "pre_nms_scores", "pre_nms_anchor_idx", "pre_nms_level", "valid",
                   "nms_keep_idx", "post_nms_idx", "suppressed_by")
DETECTION_FIELDS = ("class_scores", "class_boxes", "candidate_roi_idx", "candidate_labels", "candidate_scores",
                    "candidate_boxes", "keep_idx")
LABEL_FIELDS = ("labels", "matched_gt_idx", "max_iou", "sampled_pos_idx", "sampled_neg_idx")


@pytest.fixture(scope="module")
def mobilenet():
    torch.manual_seed(0)
    model = build_model("mobilenet-v3-320-fpn", "none", score_thresh=0.0)
    image = load_image(PHOTO).tensor
    return model, image


@pytest.fixture(scope="module")
def bccd():
    """The trained demo model on a BCCD image with its 19 GT boxes, inspected with GT."""
    model = build_model("bccd-demo")
    image = load_image(BCCD_SAMPLE.with_suffix(".jpg")).tensor
    truth = read_voc_xml(BCCD_SAMPLE.with_suffix(".xml"))
    labels = torch.tensor([model.class_names.index(name) for name in truth.names])
    inspection = Inspection.run(model, image, truth.boxes, labels, generator_seed=SEED)
    return model, image, truth.boxes, labels, inspection


# ---------------------------------------------------------------- the one pass


def test_the_trace_equals_the_models_own_trace(mobilenet):
    model, image = mobilenet
    inspection = Inspection.run(model, image)
    _, traces = model([image], trace=True)
    expected = traces[0]

    assert inspection.trace.input_size == expected.input_size and inspection.trace.scale == expected.scale
    assert torch.equal(inspection.trace.anchors.boxes, expected.anchors.boxes)
    assert torch.equal(inspection.trace.objectness.logits, expected.objectness.logits)
    assert_same_fields(inspection.trace.proposals, expected.proposals, PROPOSAL_FIELDS)
    assert_same_fields(inspection.trace.detections, expected.detections, DETECTION_FIELDS)
    assert inspection.trace.anchor_labels is None and inspection.training_trace is None


def test_the_backbone_runs_once_through_every_rerun(mobilenet, monkeypatch):
    model, image = mobilenet
    calls = []
    forward = model.backbone.forward
    monkeypatch.setattr(model.backbone, "forward", lambda *args: calls.append(1) or forward(*args))
    gt_boxes = torch.tensor([[100.0, 80.0, 300.0, 260.0]])

    inspection = Inspection.run(model, image, gt_boxes, torch.tensor([1]))
    inspection.relabel_anchors(gt_boxes + 10)
    inspection.training_trace_for(gt_boxes + 20, torch.tensor([2]))
    proposals = inspection.rerun_proposals(nms_thresh=0.5, pre_nms_top_n=100, post_nms_top_n=50, min_size=2.0)
    inspection.rerun_detections(proposals, score_thresh=0.01, nms_thresh=0.3, detections_per_img=10)
    inspection.rerun_detections(score_thresh=0.0)
    inspection.pooled_features(0)
    inspection.sampling_grid(0)
    inspection.provenance(0)

    assert len(calls) == 1 and inspection.backbone_calls == 1


# ---------------------------------------------------------------- anchor labels


def test_relabel_anchors_equals_a_training_pass(bccd):
    model, image, gt_boxes, labels, inspection = bccd
    target = {"boxes": gt_boxes, "labels": labels}
    _, traces = model([image], [target], trace=True, generator=torch.Generator().manual_seed(SEED))
    expected = traces[0]

    assert_same_fields(inspection.trace.anchor_labels, expected.anchor_labels, LABEL_FIELDS)
    assert_same_fields(inspection.relabel_anchors(gt_boxes), expected.anchor_labels, LABEL_FIELDS)
    training = inspection.training_trace
    assert_same_fields(training.anchor_labels, expected.anchor_labels, LABEL_FIELDS)
    assert_same_fields(training.proposals, expected.proposals, PROPOSAL_FIELDS)
    for name in ("rois", "candidate_idx", "labels", "matched_gt_idx", "max_iou", "regression_targets"):
        assert torch.equal(getattr(training.roi_targets, name), getattr(expected.roi_targets, name)), name
    assert training.roi_pool.output_shape == expected.roi_pool.output_shape


def test_relabel_anchors_follows_a_moved_gt_box(bccd):
    _, _, gt_boxes, _, inspection = bccd
    moved = gt_boxes.clone()
    moved[0] += torch.tensor([40.0, 30.0, 40.0, 30.0])

    before, after = inspection.relabel_anchors(gt_boxes), inspection.relabel_anchors(moved)

    matched_to_moved = (after.labels == 1) & (after.matched_gt_idx == 0)
    assert matched_to_moved.any()
    assert not torch.equal(before.labels, after.labels)
    # the other boxes did not move: anchors matched to them with a high IoU keep their label
    others = (before.labels == 1) & (before.matched_gt_idx != 0) & (before.max_iou >= 0.7)
    assert (after.labels[others] == 1).all()


def test_relabel_anchors_during_a_drag_equals_labelling_from_scratch(bccd, monkeypatch):
    """The relabel keeps the IoU rows of boxes that did not move: each step of a drag (one box
    moved, then put back, then a box deleted) labels exactly as anchor_targets from scratch, and
    the rows kept stay within their memory bound."""
    model, _, gt_boxes, _, inspection = bccd
    monkeypatch.setattr("frcnn_core.inspect.inspection.IOU_ELEMENTS_KEPT", 23 * len(inspection.trace.anchors.boxes))
    first = (torch.arange(len(gt_boxes)) == 0)[:, None]
    moves = [gt_boxes + torch.tensor([3.0, 2.0, 3.0, 2.0]) * step * first for step in range(6)]
    steps = [*moves, gt_boxes, gt_boxes[1:]]
    for boxes in steps:
        kept = inspection.relabel_anchors(boxes)
        generator = torch.Generator().manual_seed(SEED)
        expected = anchor_targets(inspection._start.anchors.boxes, inspection._inside, inspection._to_input(boxes),
                                  model.config.rpn_train, generator)
        assert_same_fields(kept, anchor_labels_trace(expected), LABEL_FIELDS)
        assert len(inspection._iou_rows) <= 23


def test_relabel_anchors_without_gt_boxes_makes_every_anchor_negative(bccd):
    _, _, _, _, inspection = bccd

    result = inspection.relabel_anchors(torch.zeros(0, 4))

    assert (result.labels == NEG).all()  # the torchvision preset keeps cross-boundary anchors
    assert len(result.sampled_pos_idx) == 0 and len(result.sampled_neg_idx) == 256


# ---------------------------------------------------------------- proposals and detections


@pytest.mark.parametrize("fixture", ["mobilenet", "bccd"])
def test_reruns_with_the_models_settings_equal_the_trace(fixture, request):
    model, image = request.getfixturevalue(fixture)[:2]
    inspection = Inspection.run(model, image)

    assert_same_fields(inspection.rerun_proposals(), inspection.trace.proposals, PROPOSAL_FIELDS)
    assert_same_fields(inspection.rerun_detections(), inspection.trace.detections, DETECTION_FIELDS)


def test_a_lower_nms_threshold_keeps_fewer_proposals(bccd):
    inspection = bccd[-1]

    runs = [inspection.rerun_proposals(nms_thresh=thresh) for thresh in (0.7, 0.5, 0.3, 0.2)]

    kept = [len(run.nms_keep_idx) for run in runs]
    assert kept == sorted(kept, reverse=True) and kept[0] > kept[-1]
    assert len(runs[-1].post_nms_idx) < len(runs[0].post_nms_idx) == 300  # the model's post-NMS top-N
    for run in runs:  # every box that entered NMS is kept or names the kept box that suppressed it
        entered = int(run.valid.sum())
        assert len(run.nms_keep_idx) + int((run.suppressed_by >= 0).sum()) == entered


def test_rerun_detections_on_new_proposals_equals_the_model_with_those_settings(mobilenet, monkeypatch):
    model, image = mobilenet
    inspection = Inspection.run(model, image)
    proposals = inspection.rerun_proposals(nms_thresh=0.5, post_nms_top_n=80)
    detections = inspection.rerun_detections(proposals, nms_thresh=0.3, detections_per_img=30)
    stricter = inspection.rerun_detections(score_thresh=0.011)  # post-processing alone (random scores ~ 1/91)

    config = model.config
    monkeypatch.setattr(model, "config", replace(
        config, rpn_test=replace(config.rpn_test, nms_thresh=0.5, post_nms_top_n=80),
        roi_test=replace(config.roi_test, nms_thresh=0.3, detections_per_img=30)))
    _, traces = model([image], trace=True)

    assert_same_fields(proposals, traces[0].proposals, PROPOSAL_FIELDS)
    assert_same_fields(detections, traces[0].detections, DETECTION_FIELDS)
    assert len(detections.keep_idx) == 30
    assert 0 < len(stricter.candidate_scores) < len(detections.candidate_scores)
    assert set(stricter.candidate_scores.tolist()) <= set(detections.candidate_scores.tolist())


def test_provenance_chains_anchor_to_proposal_to_roi_to_box(bccd):
    model, _, _, _, inspection = bccd
    detections = inspection.trace.detections
    height, width = inspection.trace.image_size

    for index in range(len(detections.keep_idx)):
        chain = inspection.provenance(index)
        proposals = chain.proposals
        assert chain.roi_index == int(detections.roi_idx[index])
        assert chain.proposal_index == int(proposals.post_nms_idx[chain.roi_index])
        assert chain.anchor_index == int(proposals.pre_nms_anchor_idx[chain.proposal_index])
        assert torch.equal(chain.detection_box, detections.boxes[index])
        assert chain.label == int(detections.labels[index])
        # box coding commutes with the resize, so the deltas replay the chain in original pixels
        proposal = box_ops.decode(chain.anchor_deltas[None], chain.anchor_box[None], model.config.rpn_test.box_weights)
        assert torch.allclose(box_ops.clip(proposal[0, 0], (height, width)), chain.proposal_box, atol=1e-2)
        assert torch.allclose(chain.roi_box, chain.proposal_box, atol=1e-3)
        box = box_ops.decode(chain.class_deltas[None], chain.roi_box[None], model.config.roi_test.box_weights)
        assert torch.allclose(box_ops.clip(box[0, 0], (height, width)), chain.detection_box, atol=1e-2)


# ---------------------------------------------------------------- RoI pooling


def test_pooled_features_equal_the_models_pooled_features(mobilenet):
    model, image = mobilenet
    inspection = Inspection.run(model, image)
    _, traces = model([image], trace=True, keep_pooled=True)
    pool = traces[0].roi_pool
    chosen = [int(torch.nonzero(pool.level == level)[0]) for level in pool.level.unique()]

    for roi_index in chosen:
        assert torch.equal(inspection.pooled_features(roi_index), pool.features[roi_index])


def test_the_sampling_grid_tiles_the_roi_in_original_pixels(mobilenet):
    model, image = mobilenet
    inspection = Inspection.run(model, image)
    boxes = inspection.trace.roi_pool.boxes
    # the largest RoI: RoIAlign widens RoIs narrower than one feature pixel, so only large ones tile exactly
    largest = int(((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).argmax())
    roi = boxes[largest]

    grid = inspection.sampling_grid(largest)

    assert grid.bins.shape == (7, 7, 4) and grid.sample_points.shape == (7, 7, 4, 2)
    assert grid.level == int(inspection.trace.roi_pool.level[largest])
    assert torch.allclose(grid.bins[0, 0, :2], roi[:2], atol=1e-3)
    assert torch.allclose(grid.bins[-1, -1, 2:], roi[2:], atol=1e-3)
    points, bins = grid.sample_points, grid.bins[:, :, None, :]
    assert ((points >= bins[..., :2]) & (points <= bins[..., 2:])).all()


def test_the_paper_models_grid_is_roi_pool_bins_whose_maxima_are_the_pooled_features():
    torch.manual_seed(0)
    model = build_model("paper-vgg16", "none")
    model.config = replace(model.config, transform=replace(model.config.transform, fixed_size=(160, 192)))
    image = load_image(PHOTO).tensor
    inspection = Inspection.run(model, image)
    scale = torch.tensor(inspection.trace.scale[::-1] * 2)  # (sx, sy, sx, sy): original -> input
    with torch.inference_mode():
        feature = model.backbone(transform.prepare([image], model.config.transform).tensor)[0][0]

    for roi_index in range(0, len(inspection.trace.roi_pool.boxes), 37):
        grid = inspection.sampling_grid(roi_index)
        pooled = inspection.pooled_features(roi_index)
        assert grid.sample_points is None and grid.bins.shape == (7, 7, 4)
        cells = torch.round(grid.bins * scale / 16).to(torch.int64)  # feature cells [x1, x2) x [y1, y2)
        for row in range(7):
            for col in range(7):
                x1, y1, x2, y2 = cells[row, col].tolist()
                expected = feature[:, y1:y2, x1:x2].amax(dim=(1, 2)) if x2 > x1 and y2 > y1 else 0
                assert torch.allclose(pooled[:, row, col], torch.as_tensor(expected), atol=1e-6)


def test_roi_align_grid_hand_case():
    bins, points = roi_align_grid(torch.tensor([0.0, 0.0, 14.0, 14.0]), 7, 1.0, 2)

    assert bins[0, 0].tolist() == [0, 0, 2, 2] and bins[6, 6].tolist() == [12, 12, 14, 14]
    assert bins[1, 3].tolist() == [6, 2, 8, 4]  # row 1, column 3
    assert points[0, 0].tolist() == [[0.5, 0.5], [1.5, 0.5], [0.5, 1.5], [1.5, 1.5]]


def test_roi_align_grid_reproduces_torchvision_roi_align():
    generator = torch.Generator().manual_seed(0)
    feature = torch.randn(1, 3, 20, 24, generator=generator)
    spatial_scale = 0.25  # stride 4: the feature map covers 96 x 80 input pixels
    for box in ([10.0, 8.0, 70.0, 60.0], [30.0, 20.0, 33.0, 22.0], [4.0, 4.0, 90.0, 75.0]):
        box = torch.tensor(box)
        expected = roi_align(feature, torch.cat([torch.zeros(1), box])[None], 7, spatial_scale, 2)[0]
        _, points = roi_align_grid(box, 7, spatial_scale, 2)
        # bilinear samples at the points (feature pixel centres at integer coordinates), averaged
        at = points * spatial_scale
        normalised = torch.stack([at[..., 0] / 23 * 2 - 1, at[..., 1] / 19 * 2 - 1], dim=-1)
        samples = F.grid_sample(feature, normalised.reshape(1, 49, 4, 2), align_corners=True)
        assert torch.allclose(samples.mean(dim=-1).reshape(3, 7, 7), expected, atol=1e-5)


def test_roi_pool_bins_hand_case_and_torchvision():
    bins = roi_pool_bins(torch.tensor([0.0, 0.0, 6.0, 13.0]), 7, 1.0, (20, 20))
    # 7 x 14 cells: one column and two rows of cells per bin
    assert bins[0, 0].tolist() == [0, 0, 1, 2] and bins[6, 6].tolist() == [6, 12, 7, 14]

    generator = torch.Generator().manual_seed(1)
    feature = torch.randn(1, 2, 12, 15, generator=generator)
    for box in ([5.0, 7.0, 150.0, 100.0], [40.0, 40.0, 60.0, 52.0], [0.0, 0.0, 239.0, 191.0]):
        box = torch.tensor(box)
        expected = roi_pool(feature, torch.cat([torch.zeros(1), box])[None], 7, 1 / 16)[0]
        cells = (roi_pool_bins(box, 7, 1 / 16, (12, 15)) / 16).to(torch.int64)
        for row in range(7):
            for col in range(7):
                x1, y1, x2, y2 = cells[row, col].tolist()
                pooled = feature[0, :, y1:y2, x1:x2].amax(dim=(1, 2)) if x2 > x1 and y2 > y1 else torch.zeros(2)
                assert torch.equal(pooled, expected[:, row, col])
