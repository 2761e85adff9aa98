"""Tests for frcnn_core.modeling.roi_targets: the proposal-target layer on hand cases and properties."""
from __future__ import annotations

import math

import torch
from hypothesis import given, settings, strategies as st

from frcnn_core.modeling.config import RoIConfig
from frcnn_core.modeling.roi_targets import roi_targets

GT_BOXES = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
GT_LABELS = torch.tensor([3])
# IoU with the GT [0, 0, 10, 10] (area 100): each proposal lies inside it, so IoU = area / 100
PROPOSALS = torch.tensor(
    [
        [0.0, 0.0, 10.0, 8.0],  # IoU 0.8  -> foreground
        [0.0, 0.0, 10.0, 3.0],  # IoU 0.3  -> background
        [0.0, 0.0, 10.0, 0.5],  # IoU 0.05 -> below the paper's 0.1: neither
    ]
)
PAPER = RoIConfig(batch_size_per_image=128, bg_iou_thresh_lo=0.1)


def test_hand_case_labels_order_and_targets():
    targets = roi_targets(PROPOSALS, GT_BOXES, GT_LABELS, PAPER, torch.Generator().manual_seed(0))

    # candidates: proposals 0-2, then the GT as candidate 3. Foreground first (0, 3), then background (1)
    assert targets.candidate_idx.tolist() == [0, 3, 1]
    assert targets.num_proposals == 3
    assert targets.labels.tolist() == [3, 3, 0]
    assert torch.equal(targets.rois, torch.cat([PROPOSALS, GT_BOXES])[[0, 3, 1]])
    assert targets.matched_gt_idx.tolist() == [0, 0, 0]
    torch.testing.assert_close(targets.max_iou, torch.tensor([0.8, 1.0, 0.3]))
    # proposal 0: centre (5, 4), 10 x 8; GT: centre (5, 5), 10 x 10; weights (10, 10, 5, 5)
    #   tx = 10 * 0 / 10 = 0, ty = 10 * 1 / 8 = 1.25, tw = 5 * log(1) = 0, th = 5 * log(10 / 8)
    torch.testing.assert_close(targets.regression_targets[0], torch.tensor([0.0, 1.25, 0.0, 5 * math.log(1.25)]))
    # the GT as its own RoI: IoU 1 and nothing to regress
    assert torch.equal(targets.regression_targets[1], torch.zeros(4))


def test_background_range_is_low_inclusive_high_exclusive():
    proposals = torch.tensor(
        [
            [0.0, 0.0, 10.0, 1.0],  # IoU 0.1: background (the low end is inclusive)
            [0.0, 0.0, 10.0, 5.0],  # IoU 0.5: foreground, not background (the high end is exclusive)
            [0.0, 0.0, 10.0, 0.9],  # IoU 0.09: ignored
        ]
    )
    config = RoIConfig(bg_iou_thresh_lo=0.1, add_gt_as_proposals=False)

    targets = roi_targets(proposals, GT_BOXES, GT_LABELS, config, None)

    assert targets.candidate_idx.tolist() == [1, 0]
    assert targets.labels.tolist() == [3, 0]


def test_zero_low_threshold_keeps_every_low_overlap_as_background():
    targets = roi_targets(PROPOSALS, GT_BOXES, GT_LABELS, RoIConfig(bg_iou_thresh_lo=0.0), None)

    assert targets.candidate_idx.tolist() == [0, 3, 1, 2]
    assert targets.labels.tolist() == [3, 3, 0, 0]


def test_empty_gt_makes_every_proposal_background():
    targets = roi_targets(PROPOSALS, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), RoIConfig(), None)

    assert targets.candidate_idx.tolist() == [0, 1, 2]
    assert targets.labels.tolist() == [0, 0, 0]
    assert torch.equal(targets.rois, PROPOSALS)
    assert torch.equal(targets.regression_targets, torch.zeros(3, 4))


def test_empty_proposals_still_sample_the_gt():
    targets = roi_targets(torch.zeros(0, 4), GT_BOXES, GT_LABELS, PAPER, None)

    assert targets.candidate_idx.tolist() == [0]
    assert targets.num_proposals == 0
    assert targets.labels.tolist() == [3]
    assert torch.equal(targets.rois, GT_BOXES)
    assert torch.equal(targets.regression_targets, torch.zeros(1, 4))


def test_each_foreground_roi_takes_its_best_gt_class():
    gt_boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 70.0, 70.0]])
    gt_labels = torch.tensor([2, 5])
    proposals = torch.tensor([[50.0, 50.0, 70.0, 68.0], [0.0, 0.0, 10.0, 9.0]])  # IoU 0.9 with GT 1, 0.9 with GT 0

    targets = roi_targets(proposals, gt_boxes, gt_labels, RoIConfig(add_gt_as_proposals=False), None)

    assert targets.candidate_idx.tolist() == [0, 1]
    assert targets.matched_gt_idx.tolist() == [1, 0]
    assert targets.labels.tolist() == [5, 2]


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    num_proposals=st.integers(0, 200),
    num_gt=st.integers(0, 5),
    batch_size=st.sampled_from([8, 32, 128]),
    positive_fraction=st.sampled_from([0.25, 0.5]),
)
def test_positive_quota_and_batch_size_hold(seed, num_proposals, num_gt, batch_size, positive_fraction):
    generator = torch.Generator().manual_seed(seed)
    gt_corner = torch.rand(num_gt, 2, generator=generator) * 50
    gt_boxes = torch.cat([gt_corner, gt_corner + 20], dim=1)
    # proposals jittered around the GT boxes (many foreground) or anywhere (many background)
    corner = torch.rand(num_proposals, 2, generator=generator) * 60
    proposals = torch.cat([corner, corner + 10 + torch.rand(num_proposals, 2, generator=generator) * 20], dim=1)
    gt_labels = torch.randint(1, 4, (num_gt,), generator=generator)
    config = RoIConfig(batch_size_per_image=batch_size, positive_fraction=positive_fraction)

    targets = roi_targets(proposals, gt_boxes, gt_labels, config, generator)

    num_fg = int((targets.labels > 0).sum())
    assert targets.positive_quota == int(batch_size * positive_fraction)
    assert num_fg <= targets.positive_quota
    assert len(targets.rois) <= batch_size
    # foreground first, then background
    assert targets.labels[:num_fg].gt(0).all() and targets.labels[num_fg:].eq(0).all()
    assert bool((targets.max_iou[:num_fg] >= config.fg_iou_thresh).all())
    assert bool((targets.max_iou[num_fg:] < config.bg_iou_thresh_hi).all())
    if num_gt:
        # every GT is a candidate with IoU 1, so at least one foreground RoI is always drawn
        assert num_fg >= 1
