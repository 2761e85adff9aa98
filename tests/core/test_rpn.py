"""Tests for frcnn_core.modeling.rpn: head layout vs torchvision, the proposal layer, NMS bookkeeping,
anchor targets and the loss."""
from __future__ import annotations

import torch
from hypothesis import given, settings, strategies as st
from torchvision.models.detection import rpn as tv_rpn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import batched_nms, box_iou, nms

from frcnn_core.modeling.config import IGNORE, NEG, POS, RPNConfig
from frcnn_core.modeling.rpn import RPNHead, anchor_targets, nms_suppressors, propose, rpn_loss


def propose_one(objectness, deltas, anchors, levels, num_per_level, image_size, config):
    """The proposal layer on one image (the batch API with N = 1)."""
    return propose(objectness[None], deltas[None], anchors, levels, num_per_level, [image_size], config)[0]


def test_batched_proposals_equal_per_image_proposals():
    generator = torch.Generator().manual_seed(5)
    anchors = torch.rand(30, 2, generator=generator) * 60
    anchors = torch.cat([anchors, anchors + 5 + torch.rand(30, 2, generator=generator) * 30], dim=1)
    levels = torch.tensor([0] * 20 + [1] * 10)
    logits = torch.randn(2, 30, generator=generator)
    deltas = torch.randn(2, 30, 4, generator=generator) * 0.1
    config = RPNConfig(pre_nms_top_n=8, post_nms_top_n=6, nms_thresh=0.5)
    sizes = [(70, 80), (60, 90)]
    batched = propose(logits, deltas, anchors, levels, [20, 10], sizes, config)
    for i, size in enumerate(sizes):
        single = propose_one(logits[i], deltas[i], anchors, levels, [20, 10], size, config)
        assert torch.equal(batched[i].pre_nms_boxes, single.pre_nms_boxes)
        assert torch.equal(batched[i].post_nms_idx, single.post_nms_idx)

def _random_boxes(count: int, generator: torch.Generator, extent: float) -> torch.Tensor:
    corner = torch.rand(count, 2, generator=generator) * extent
    size = torch.rand(count, 2, generator=generator) * extent / 3 + 1.0
    return torch.cat([corner, corner + size], dim=1)


# ---------------------------------------------------------------- head


def test_head_matches_torchvision_layout_with_the_same_weights():
    torch.manual_seed(0)
    reference = tv_rpn.RPNHead(8, 3, conv_depth=2)
    for parameter in reference.parameters():
        torch.nn.init.normal_(parameter)
    head = RPNHead(8, 3, conv_depth=2)
    head.load_state_dict(reference.state_dict())
    features = [torch.randn(2, 8, 5, 7), torch.randn(2, 8, 3, 4)]

    objectness, deltas = head(features)
    expected_logits, expected_deltas = tv_rpn.concat_box_prediction_layers(*reference(features))

    assert head.state_dict().keys() == reference.state_dict().keys()
    num_anchors = 3 * (5 * 7 + 3 * 4)
    assert objectness.shape == (2, num_anchors) and deltas.shape == (2, num_anchors, 4)
    # torchvision flattens to (N * A, 1) and (N * A, 4) in the same anchor order
    torch.testing.assert_close(objectness.reshape(-1, 1), expected_logits, rtol=0, atol=0)
    torch.testing.assert_close(deltas.reshape(-1, 4), expected_deltas, rtol=0, atol=0)


# ---------------------------------------------------------------- proposal layer

# Two levels over a 100 x 100 image; zero deltas so that decoded boxes are the anchors.
#   level 0 (anchors 0-3)                        level 1 (anchors 4-5)
#   0: [0, 0, 10, 10]   p = 0.73                 4: [0, 0, 10, 10]        p = 0.62
#   1: [0, 0, 10, 11]   p = 0.95                 5: [80, 80, 80.5, 90]    p = 0.98  (0.5 wide)
#   2: [50, 50, 60, 60] p = 0.88
#   3: [20, 20, 30, 30] p = 0.27
_HAND_ANCHORS = torch.tensor(
    [
        [0.0, 0.0, 10.0, 10.0],
        [0.0, 0.0, 10.0, 11.0],
        [50.0, 50.0, 60.0, 60.0],
        [20.0, 20.0, 30.0, 30.0],
        [0.0, 0.0, 10.0, 10.0],
        [80.0, 80.0, 80.5, 90.0],
    ]
)
_HAND_LOGITS = torch.tensor([1.0, 3.0, 2.0, -1.0, 0.5, 4.0])
_HAND_LEVELS = torch.tensor([0, 0, 0, 0, 1, 1])
_HAND_CONFIG = RPNConfig(pre_nms_top_n=3, post_nms_top_n=2, nms_thresh=0.7, min_size=1.0)


def _propose_hand_case():
    return propose_one(
        _HAND_LOGITS, torch.zeros(6, 4), _HAND_ANCHORS, _HAND_LEVELS, [4, 2], (100, 100), _HAND_CONFIG
    )


def test_propose_takes_the_top_n_of_each_level_best_first():
    proposals = _propose_hand_case()

    # level 0: logits 3, 2, 1 (anchor 3 with -1 is fourth, dropped); level 1: both anchors
    assert proposals.pre_nms_anchor_idx.tolist() == [1, 2, 0, 5, 4]
    assert proposals.pre_nms_level.tolist() == [0, 0, 0, 1, 1]
    assert torch.equal(proposals.pre_nms_boxes, _HAND_ANCHORS[[1, 2, 0, 5, 4]])
    torch.testing.assert_close(proposals.pre_nms_scores, torch.sigmoid(_HAND_LOGITS[[1, 2, 0, 5, 4]]))


def test_propose_marks_small_boxes_invalid():
    proposals = _propose_hand_case()

    # position 3 is anchor 5, 0.5 px wide < min_size 1: it never enters NMS
    assert proposals.valid.tolist() == [True, True, True, False, True]
    assert 3 not in proposals.nms_keep_idx.tolist()


def test_propose_runs_nms_per_level_and_cuts_a_prefix():
    proposals = _propose_hand_case()

    # level 0: anchor 0 overlaps anchor 1 with IoU 100 / 110 = 0.91 > 0.7 -> suppressed;
    # level 1: anchor 4 is the very box of anchor 0 but lies in another level -> kept.
    # Kept, by score: position 0 (0.95), 1 (0.88), 4 (0.62); post-NMS top-2 is the prefix.
    assert proposals.nms_keep_idx.tolist() == [0, 1, 4]
    assert proposals.post_nms_idx.tolist() == [0, 1]
    assert torch.equal(proposals.boxes, _HAND_ANCHORS[[1, 2]])
    torch.testing.assert_close(proposals.scores, torch.sigmoid(torch.tensor([3.0, 2.0])))


def test_propose_score_threshold_marks_low_scores_invalid():
    config = RPNConfig(pre_nms_top_n=3, post_nms_top_n=10, min_size=1.0, score_thresh=0.7)

    proposals = propose_one(_HAND_LOGITS, torch.zeros(6, 4), _HAND_ANCHORS, _HAND_LEVELS, [4, 2], (100, 100), config)

    # scores 0.95, 0.88, 0.73, (small), 0.62 -> the last falls under 0.7
    assert proposals.valid.tolist() == [True, True, True, False, False]


def test_propose_clips_to_the_image():
    anchors = torch.tensor([[-20.0, -10.0, 50.0, 40.0], [90.0, 10.0, 130.0, 60.0]])

    proposals = propose_one(
        torch.tensor([1.0, 0.0]), torch.zeros(2, 4), anchors, torch.zeros(2, dtype=torch.int64), [2], (50, 100),
        RPNConfig(),
    )

    assert torch.equal(proposals.pre_nms_boxes, torch.tensor([[0.0, 0.0, 50.0, 40.0], [90.0, 10.0, 100.0, 50.0]]))


def _random_rpn_outputs(seed: int, num_per_level: list[int], extent: float):
    generator = torch.Generator().manual_seed(seed)
    total = sum(num_per_level)
    anchors = _random_boxes(total, generator, extent)
    logits = torch.randn(total, generator=generator) * 3
    deltas = torch.randn(total, 4, generator=generator) * 0.3
    levels = torch.cat([torch.full((n,), i, dtype=torch.int64) for i, n in enumerate(num_per_level)])
    return logits, deltas, anchors, levels


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    num_per_level=st.lists(st.integers(1, 40), min_size=1, max_size=3),
    pre_nms_top_n=st.integers(1, 30),
    post_nms_top_n=st.integers(1, 30),
    nms_thresh=st.sampled_from([0.3, 0.5, 0.7]),
)
def test_propose_nms_is_a_sorted_subset_equal_to_batched_nms(
    seed, num_per_level, pre_nms_top_n, post_nms_top_n, nms_thresh
):
    logits, deltas, anchors, levels = _random_rpn_outputs(seed, num_per_level, extent=60.0)
    config = RPNConfig(
        pre_nms_top_n=pre_nms_top_n, post_nms_top_n=post_nms_top_n, nms_thresh=nms_thresh, min_size=2.0
    )

    proposals = propose_one(logits, deltas, anchors, levels, num_per_level, (80, 80), config)

    pre_idx = proposals.pre_nms_anchor_idx
    # per level: min(top_n, level size) anchors, best logit first
    for level, count in enumerate(num_per_level):
        in_level = pre_idx[levels[pre_idx] == level]
        assert len(in_level) == min(pre_nms_top_n, count)
        assert bool((logits[in_level].diff() <= 0).all())
    keep = proposals.nms_keep_idx
    assert len(set(keep.tolist())) == len(keep)
    assert bool(proposals.valid[keep].all())
    for level in range(len(num_per_level)):
        level_scores = proposals.pre_nms_scores[keep][proposals.pre_nms_level[keep] == level]
        assert bool((level_scores.diff() <= 0).all())
    valid_idx = torch.nonzero(proposals.valid).flatten()
    expected = valid_idx[
        batched_nms(
            proposals.pre_nms_boxes[valid_idx], proposals.pre_nms_scores[valid_idx],
            proposals.pre_nms_level[valid_idx], nms_thresh,
        )
    ]
    assert torch.equal(keep, expected)
    assert torch.equal(proposals.post_nms_idx, keep[:post_nms_top_n])


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), num_per_level=st.lists(st.integers(1, 60), min_size=1, max_size=3))
def test_propose_equals_torchvision_filter_proposals(seed, num_per_level):
    logits, deltas, anchors, levels = _random_rpn_outputs(seed, num_per_level, extent=60.0)
    config = RPNConfig(pre_nms_top_n=25, post_nms_top_n=15, nms_thresh=0.6, min_size=1e-3, score_thresh=0.1)
    reference = tv_rpn.RegionProposalNetwork(
        AnchorGenerator(), tv_rpn.RPNHead(1, 1), 0.7, 0.3, 256, 0.5,
        dict(training=1, testing=25), dict(training=1, testing=15), nms_thresh=0.6, score_thresh=0.1,
    ).eval()
    decoded = reference.box_coder.decode(deltas, [anchors]).view(1, -1, 4)

    proposals = propose_one(logits, deltas, anchors, levels, num_per_level, (70, 80), config)
    expected_boxes, expected_scores = reference.filter_proposals(decoded, logits[None], [(70, 80)], num_per_level)

    assert torch.equal(proposals.boxes, expected_boxes[0])
    assert torch.equal(proposals.scores, expected_scores[0])


# ---------------------------------------------------------------- NMS bookkeeping


def test_nms_suppressors_hand_case():
    boxes = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],  # A 0.9: kept
            [1.0, 0.0, 11.0, 10.0],  # B 0.8: IoU(A, B) = 90 / 110 = 0.82 -> removed by A
            [2.0, 0.0, 12.0, 10.0],  # C 0.7: IoU(A, C) = 80 / 120 = 0.67, IoU(B, C) = 0.82 -> removed
            #                          by A, not by B, which was itself removed
            [50.0, 50.0, 60.0, 60.0],  # D 0.6: kept
            [0.0, 0.0, 10.0, 10.0],  # E 0.95 but invalid: never entered NMS
        ]
    )
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.95])
    groups = torch.zeros(5, dtype=torch.int64)
    valid = torch.tensor([True, True, True, True, False])
    keep = torch.nonzero(valid).flatten()[nms(boxes[valid], scores[valid], 0.5)]
    assert keep.tolist() == [0, 3]

    suppressed_by = nms_suppressors(boxes, scores, groups, valid, keep, 0.5)

    assert suppressed_by.tolist() == [-1, 0, 0, -1, -1]


def test_nms_suppressors_stay_within_a_group():
    # B overlaps A but sits in another group, so NMS kept it: -1 for both
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0], [2.0, 0.0, 12.0, 10.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    groups = torch.tensor([0, 1, 1])
    valid = torch.ones(3, dtype=torch.bool)
    keep = batched_nms(boxes, scores, groups, 0.5)
    assert keep.tolist() == [0, 1]

    # C is removed by B (its group), though A overlaps it more than 0.5 and scores higher
    assert nms_suppressors(boxes, scores, groups, valid, keep, 0.5).tolist() == [-1, -1, 1]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), count=st.integers(1, 40))
def test_nms_suppressors_point_at_an_overlapping_better_kept_box(seed, count):
    generator = torch.Generator().manual_seed(seed)
    boxes = _random_boxes(count, generator, 40.0)
    scores = torch.rand(count, generator=generator)
    groups = torch.randint(0, 4, (count,), generator=generator)  # four FPN levels
    valid = torch.rand(count, generator=generator) > 0.2
    valid_idx = torch.nonzero(valid).flatten()
    keep = valid_idx[batched_nms(boxes[valid_idx], scores[valid_idx], groups[valid_idx], 0.5)]

    suppressed_by = nms_suppressors(boxes, scores, groups, valid, keep, 0.5)

    removed = valid.clone()
    removed[keep] = False
    assert bool((suppressed_by[~removed] == -1).all())
    for box, suppressor in zip(torch.nonzero(removed).flatten().tolist(), suppressed_by[removed].tolist(), strict=True):
        assert suppressor in keep.tolist()
        assert int(groups[suppressor]) == int(groups[box])
        assert float(scores[suppressor]) >= float(scores[box])
        assert float(box_iou(boxes[suppressor, None], boxes[box, None])) > 0.5
        earlier = keep.tolist()[: keep.tolist().index(suppressor)]  # and no kept box before it fits
        assert not any(int(groups[k]) == int(groups[box]) and float(scores[k]) >= float(scores[box])
                       and float(box_iou(boxes[k, None], boxes[box, None])) > 0.5 for k in earlier)


# ---------------------------------------------------------------- anchor targets and loss


def _targets_setup():
    # a 100 x 100 image; a 10 x 10 grid of 20 x 20 anchors with stride 10, centred on the cell
    # corners (0, 10, .., 90), so the first row and column stick out of the image
    centres = torch.arange(10, dtype=torch.float32) * 10
    cy, cx = torch.meshgrid(centres, centres, indexing="ij")
    anchors = torch.stack([cx - 10, cy - 10, cx + 10, cy + 10], dim=-1).reshape(-1, 4)
    inside = (anchors[:, :2] >= 0).all(dim=1) & (anchors[:, 2:] <= 100).all(dim=1)
    gt_boxes = torch.tensor([[0.0, 0.0, 18.0, 22.0], [40.0, 40.0, 80.0, 80.0]])
    return anchors, inside, gt_boxes


def test_anchor_targets_ignore_cross_boundary_anchors_and_respect_the_quota():
    anchors, inside, gt_boxes = _targets_setup()
    config = RPNConfig(ignore_cross_boundary=True, batch_size_per_image=16, positive_fraction=0.25)

    targets = anchor_targets(anchors, inside, gt_boxes, config, torch.Generator().manual_seed(0))

    labels = targets.match.labels
    # centres 0, 10, .., 90: only the first row and the first column stick out (10 + 10 - 1)
    assert int((~inside).sum()) == 19
    assert bool((labels[~inside] == IGNORE).all())
    assert bool((labels[inside] == POS).any())
    assert len(targets.sampled_pos_idx) <= int(16 * 0.25)
    assert len(targets.sampled_pos_idx) + len(targets.sampled_neg_idx) <= 16
    sampled = torch.cat([targets.sampled_pos_idx, targets.sampled_neg_idx])
    assert bool(inside[sampled].all())
    assert bool((labels[targets.sampled_pos_idx] == POS).all())
    assert bool((labels[targets.sampled_neg_idx] == NEG).all())


def test_anchor_targets_best_anchor_of_a_gt_near_the_border_is_inside():
    anchors, inside, gt_boxes = _targets_setup()
    config = RPNConfig(ignore_cross_boundary=True)

    targets = anchor_targets(anchors, inside, gt_boxes[:1], config, None)

    # GT [0, 0, 18, 22] overlaps the corner anchor [-10, -10, 10, 10] (outside) and
    # [0, 0, 20, 20] (anchor 11, inside, IoU 18*20 / (396 + 400 - 360) = 0.83): only the inside one counts
    assert torch.nonzero(targets.match.labels == POS).flatten().tolist() == [11]


def test_anchor_targets_match_torchvision_without_the_boundary_rule():
    anchors, inside, gt_boxes = _targets_setup()
    reference = tv_rpn.RegionProposalNetwork(
        AnchorGenerator(), tv_rpn.RPNHead(1, 1), 0.7, 0.3, 256, 0.5, dict(training=1, testing=1),
        dict(training=1, testing=1), 0.7,
    )

    targets = anchor_targets(anchors, inside, gt_boxes, RPNConfig(), None)
    (expected_labels,), (matched_boxes,) = reference.assign_targets_to_anchors([anchors], [{"boxes": gt_boxes}])

    assert targets.match.labels.tolist() == expected_labels.to(torch.int64).tolist()
    positive = targets.match.labels == POS
    expected_targets = reference.box_coder.encode_single(matched_boxes, anchors)
    torch.testing.assert_close(targets.regression_targets[positive], expected_targets[positive])


def test_anchor_targets_with_empty_gt_are_all_negative():
    anchors, inside, _ = _targets_setup()

    targets = anchor_targets(anchors, inside, torch.zeros(0, 4), RPNConfig(batch_size_per_image=32), None)

    assert bool((targets.match.labels == NEG).all())
    assert len(targets.sampled_pos_idx) == 0 and len(targets.sampled_neg_idx) == 32
    assert torch.equal(targets.regression_targets, torch.zeros(100, 4))


def test_rpn_loss_is_finite_with_zero_positives():
    anchors, inside, _ = _targets_setup()
    targets = anchor_targets(anchors, inside, torch.zeros(0, 4), RPNConfig(batch_size_per_image=32), None)
    objectness = torch.randn(100, requires_grad=True)
    deltas = torch.randn(100, 4, requires_grad=True)

    loss_objectness, loss_box = rpn_loss([objectness], [deltas], [targets], 1 / 9)

    assert torch.isfinite(loss_objectness.detach()) and float(loss_box.detach()) == 0.0
    (loss_objectness + loss_box).backward()
    assert torch.isfinite(objectness.grad).all()


def test_rpn_loss_is_finite_with_nothing_sampled():
    anchors, inside, gt_boxes = _targets_setup()
    targets = anchor_targets(anchors, inside, gt_boxes, RPNConfig(batch_size_per_image=0), None)

    loss_objectness, loss_box = rpn_loss([torch.randn(100)], [torch.randn(100, 4)], [targets], 1 / 9)

    assert float(loss_objectness) == 0.0 and float(loss_box) == 0.0

