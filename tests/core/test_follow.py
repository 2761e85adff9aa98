"""Following an anchor forward to the proposals, and the rows of the sampled RoIs, on a hand-made
scene whose every fate is known, and as properties of a real BCCD inspection."""
from __future__ import annotations

import pytest
import torch

from frcnn_core.inspect.follow import (
    FILTERED,
    NOT_IN_TOP_N,
    POST_NMS_TOP_N,
    SUPPRESSED,
    anchor_fate,
    fate_text,
    roi_sample_rows,
)
from frcnn_core.modeling import boxes as box_ops
from frcnn_core.modeling.trace import (
    AnchorsTrace,
    ObjectnessTrace,
    ProposalsTrace,
    RoiPoolTrace,
    RoiTargetsTrace,
    Trace,
)

from test_inspect_stages import bccd  # noqa: F401 (a fixture: bccd-demo inspecting a BCCD image with its GT)

# Six anchors on two levels (0: anchors 0-3, 1: anchors 4-5). The proposal layer took the best
# three of level 0 (anchors 0, 1, 2; anchor 3 scored lowest) and both of level 1. Pre-NMS order:
# 0 <- anchor 0 (kept, proposal 0), 1 <- anchor 1 (suppressed by 0, IoU 0.81), 2 <- anchor 2
# (filtered: too small), 3 <- anchor 4 (kept, proposal 1), 4 <- anchor 5 (kept by NMS, cut by
# the post-NMS top 2).
LOGITS = torch.tensor([3.0, 2.0, 1.0, -1.0, 0.5, 0.0])
PRE_NMS_BOXES = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 9], [50, 50, 51, 51], [20, 20, 40, 40], [60, 0, 90, 30]],
                             dtype=torch.float32)


def scene() -> Trace:
    proposals = ProposalsTrace(
        pre_nms_boxes=PRE_NMS_BOXES, pre_nms_scores=torch.sigmoid(LOGITS[[0, 1, 2, 4, 5]]),
        pre_nms_anchor_idx=torch.tensor([0, 1, 2, 4, 5]), pre_nms_level=torch.tensor([0, 0, 0, 1, 1]),
        valid=torch.tensor([True, True, False, True, True]), nms_keep_idx=torch.tensor([0, 3, 4]),
        post_nms_idx=torch.tensor([0, 3]), suppressed_by=torch.tensor([-1, 0, -1, -1, -1]), nms_thresh=0.7)
    anchors = AnchorsTrace(torch.zeros(6, 4), torch.tensor([0, 0, 0, 0, 1, 1]), torch.ones(6, dtype=torch.bool),
                           [(2, 2), (1, 2)], [(8, 8), (16, 16)], [1, 1])
    return Trace(image_size=(100, 100), input_size=(100, 100), scale=(1.0, 1.0), anchors=anchors,
                 objectness=ObjectnessTrace(LOGITS, torch.zeros(6, 4)), proposals=proposals,
                 roi_pool=RoiPoolTrace(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), (0, 1, 7, 7), None))


def test_each_anchor_of_the_scene_is_followed_to_where_it_was_built_to_go():
    trace = scene()
    fates = [anchor_fate(trace, anchor) for anchor in range(6)]
    assert [fate.lost_at for fate in fates] == [None, SUPPRESSED, FILTERED, NOT_IN_TOP_N, None, POST_NMS_TOP_N]
    assert [fate.pre_index for fate in fates] == [0, 1, 2, None, 3, 4]
    assert [fate.post_index for fate in fates] == [0, None, None, None, 1, None]
    assert [fate.level_rank for fate in fates] == [0, 1, 2, 3, 0, 1]
    assert fates[1].suppressed_by == 0 and fates[1].suppressor_iou == pytest.approx(0.9)  # 90 / 100
    assert fates[0].score == pytest.approx(float(torch.sigmoid(torch.tensor(3.0))))


def test_fate_sentences_name_the_stage_and_the_numbers():
    trace = scene()
    texts = [fate_text(anchor_fate(trace, anchor), trace.proposals) for anchor in range(6)]
    assert texts[0].endswith("→ proposal #0 (rank 1 after NMS).")
    assert "suppressed by #0 (IoU 0.90)" in texts[1]
    assert "min-size / score filter" in texts[2]
    assert "no proposal" in texts[3] and "rank 4 in its level" in texts[3]
    assert "post-NMS top 2" in texts[5]


def test_the_anchors_that_become_proposals_are_exactly_those_followed_there(bccd):  # noqa: F811
    inspection = bccd[4]
    trace = inspection.trace
    proposals = trace.proposals
    reached = {}
    for pre_index, anchor in enumerate(proposals.pre_nms_anchor_idx.tolist()):
        fate = anchor_fate(trace, anchor)
        assert fate.pre_index == pre_index
        if fate.post_index is not None:
            reached[fate.post_index] = anchor
    assert sorted(reached) == list(range(len(proposals.post_nms_idx)))
    assert [reached[i] for i in range(len(reached))] == proposals.pre_nms_anchor_idx[proposals.post_nms_idx].tolist()
    outside = sorted(set(range(len(trace.anchors.boxes))) - set(proposals.pre_nms_anchor_idx.tolist()))[:50]
    assert all(anchor_fate(trace, anchor).lost_at == NOT_IN_TOP_N for anchor in outside)


def test_foreground_rows_decode_onto_their_matched_gt_box(bccd):  # noqa: F811
    model, _, gt_boxes, gt_labels, inspection = bccd
    targets = inspection.training_trace_for(gt_boxes, gt_labels).roi_targets
    rows = roi_sample_rows(targets)
    assert len(rows) == len(targets.labels)
    foreground = [row for row in rows if row.foreground]
    assert foreground and all(row.iou >= model.config.roi_train.fg_iou_thresh for row in foreground)
    assert all(row.label == int(gt_labels[row.gt_index]) for row in foreground)
    indices = [row.index for row in foreground]
    decoded = box_ops.decode(torch.tensor([row.targets for row in foreground]), targets.rois[indices],
                             model.config.roi_train.box_weights)
    assert torch.allclose(decoded.reshape(-1, 4), gt_boxes[[row.gt_index for row in foreground]], atol=0.05)
    assert any(row.source.startswith("GT #") for row in rows)  # training adds the GT boxes as candidates


def test_rows_name_their_source_and_background_has_label_zero():
    targets = RoiTargetsTrace(rois=torch.tensor([[0, 0, 10, 10], [5, 5, 9, 9]], dtype=torch.float32),
                              candidate_idx=torch.tensor([3, 0]), num_proposals=2, labels=torch.tensor([2, 0]),
                              matched_gt_idx=torch.tensor([1, 0]), max_iou=torch.tensor([1.0, 0.2]),
                              regression_targets=torch.zeros(2, 4), positive_quota=1)
    rows = roi_sample_rows(targets)
    assert [(row.foreground, row.label, row.gt_index, row.source) for row in rows] == [
        (True, 2, 1, "GT #1"), (False, 0, 0, "proposal #0")]
