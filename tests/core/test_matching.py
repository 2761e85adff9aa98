"""Tests for frcnn_core.modeling.matching: the 0.7 / 0.3 rule, best-candidate positives, empty GT."""
from __future__ import annotations

import torch
from hypothesis import given, settings, strategies as st
from torchvision.models.detection._utils import Matcher

from frcnn_core.modeling.config import IGNORE, NEG, POS
from frcnn_core.modeling.matching import best_candidates_per_gt, match

HIGH, LOW = 0.7, 0.3


def test_docstring_example():
    iou = torch.tensor([[0.9, 0.5, 0.1], [0.2, 0.25, 0.1]])

    result = match(iou, HIGH, LOW, allow_low_quality=True)

    # thresholds give [POS, IGNORE, NEG]; GT 1's best IoU (0.25) is at candidate 1 -> POS
    assert result.labels.tolist() == [POS, POS, NEG]
    # candidate 1 stays matched to GT 0, its highest-IoU box
    assert result.matched_gt_idx.tolist() == [0, 0, 0]
    torch.testing.assert_close(result.max_iou, torch.tensor([0.9, 0.5, 0.1]))
    assert result.labels.dtype == torch.int8


def test_thresholds_alone_without_low_quality_matches():
    iou = torch.tensor([[0.9, 0.5, 0.1], [0.2, 0.25, 0.1]])

    result = match(iou, HIGH, LOW, allow_low_quality=False)

    assert result.labels.tolist() == [POS, IGNORE, NEG]


def test_threshold_bounds_are_low_inclusive_for_ignore_and_high_inclusive_for_pos():
    iou = torch.tensor([[0.7, 0.3, 0.29, 0.69]])

    result = match(iou, HIGH, LOW, allow_low_quality=False)

    assert result.labels.tolist() == [POS, IGNORE, NEG, IGNORE]


def test_ties_for_a_gt_best_candidate_all_become_positive():
    # GT 0's best IoU 0.4 is reached by candidates 0 and 2
    iou = torch.tensor([[0.4, 0.1, 0.4, 0.35]])

    result = match(iou, HIGH, LOW, allow_low_quality=True)

    assert result.labels.tolist() == [POS, NEG, POS, IGNORE]


def test_best_candidate_below_the_negative_threshold_stays_positive():
    # the walkthrough's bug 3: its best anchor (IoU 0.2 < 0.3) was overwritten as negative
    iou = torch.tensor([[0.2, 0.1, 0.05]])

    result = match(iou, HIGH, LOW, allow_low_quality=True)

    assert result.labels.tolist() == [POS, NEG, NEG]


def test_gt_overlapping_nothing_does_not_make_every_candidate_positive():
    # GT 1 overlaps no candidate; torchvision's Matcher would mark all three as its best match
    iou = torch.tensor([[0.8, 0.0, 0.0], [0.0, 0.0, 0.0]])

    result = match(iou, HIGH, LOW, allow_low_quality=True)

    assert result.labels.tolist() == [POS, NEG, NEG]
    assert best_candidates_per_gt(iou).tolist() == [0]


def test_empty_gt_makes_every_candidate_negative():
    result = match(torch.zeros(0, 5), HIGH, LOW, allow_low_quality=True)

    assert result.labels.tolist() == [NEG] * 5
    assert result.labels.dtype == torch.int8
    assert result.matched_gt_idx.tolist() == [0] * 5
    assert result.max_iou.tolist() == [0.0] * 5


# IoUs on a 0.05 grid make ties common; all > 0 so that torchvision's Matcher has no
# overlap-nothing GT (where it deliberately differs, see above)
_iou_matrices = st.integers(1, 4).flatmap(
    lambda gts: st.integers(1, 12).flatmap(
        lambda cands: st.lists(st.integers(1, 20), min_size=gts * cands, max_size=gts * cands).map(
            lambda cells: torch.tensor(cells, dtype=torch.float32).reshape(gts, cands) / 20
        )
    )
)


@settings(max_examples=50, deadline=None)
@given(iou=_iou_matrices)
def test_match_equals_torchvision_matcher(iou):
    result = match(iou, HIGH, LOW, allow_low_quality=True)
    matches = Matcher(HIGH, LOW, allow_low_quality_matches=True)(iou)

    expected_labels = torch.where(
        matches >= 0, POS, torch.where(matches == Matcher.BELOW_LOW_THRESHOLD, NEG, IGNORE)
    )
    assert result.labels.tolist() == expected_labels.tolist()
    positive = result.labels == POS
    assert torch.equal(result.matched_gt_idx[positive], matches[positive])


@settings(max_examples=50, deadline=None)
@given(iou=_iou_matrices)
def test_every_gt_gets_a_positive_at_its_best_iou(iou):
    result = match(iou, HIGH, LOW, allow_low_quality=True)

    for gt_iou in iou:
        best = gt_iou == gt_iou.max()
        assert bool((result.labels[best] == POS).all())
    negative = result.labels == NEG
    assert bool((result.max_iou[negative] < LOW).all())
