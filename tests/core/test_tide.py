"""analysis/tide.py: each error type on a hand-made image, hand-computed AP deltas, properties
(counts add up, deltas never negative, order does not matter, AP50 equals pycocotools'), and the
`tidecv` package as the oracle on random detections."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from frcnn_core.analysis import evaluate
from frcnn_core.analysis.tide import (
    BKG,
    BOTH,
    CLS,
    DUPE,
    FALSE_NEG,
    FALSE_POS,
    LOC,
    MAIN_ERRORS,
    MISS,
    TP,
    class_ap,
    classify_image,
    summarize_tide,
)
from frcnn_core.data.samples import DetectionDataset, Sample

from tidecv_helpers import TOLERANCE, differences, tidecv_numbers

A, B = [0, 0, 10, 10], [50, 50, 60, 60]  # two GT boxes far apart


def image(pred_boxes, scores, labels, gt_boxes=(A,), gt_labels=(1,), gt_ignore=None) -> tuple:
    return (np.array(pred_boxes, float).reshape(-1, 4), np.array(scores, float), np.array(labels, int),
            np.array(gt_boxes, float).reshape(-1, 4), np.array(gt_labels, int),
            np.zeros(len(gt_labels), bool) if gt_ignore is None else np.array(gt_ignore, bool))


@pytest.mark.parametrize(("box", "label", "kind", "target"), [
    ([0, 0, 10, 4], 1, LOC, 0),     # right class, IoU 0.4 in [0.1, 0.5]
    ([0, 0, 10, 10], 2, CLS, 0),    # perfect box, wrong class
    ([50, 50, 60, 60], 1, BKG, -1),  # IoU 0 with every box
    ([0, 0, 10, 3], 2, BOTH, -1),   # wrong class and IoU 0.3: neither Cls nor Bkg
    ([0, 0, 10, 10], 1, TP, 0),
])
def test_each_error_type_on_one_box(box, label, kind, target):
    verdict = classify_image(*image([box], [0.9], [label]))
    assert verdict.kinds == (kind,) and verdict.det_gt.tolist() == [target]


def test_a_second_detection_of_a_taken_box_is_a_duplicate():
    verdict = classify_image(*image([A, [0, 0, 10, 9]], [0.9, 0.8], [1, 1]))
    assert verdict.kinds == (TP, DUPE) and verdict.det_gt.tolist() == [0, 0] and verdict.gt_det.tolist() == [0]


def test_loc_comes_before_cls():
    # IoU 0.4 with the class-1 box and 1.0 with a class-2 box of the same place: Loc, as TIDE tests it first
    verdict = classify_image(*image([[0, 0, 10, 4]], [0.9], [1], gt_boxes=[A, [0, 0, 10, 4]], gt_labels=[1, 2]))
    assert verdict.kinds == (LOC,) and verdict.det_gt.tolist() == [0]


def test_every_detection_of_an_image_without_gt_is_background():
    verdict = classify_image(*image([A, B], [0.9, 0.8], [1, 2], gt_boxes=[], gt_labels=[]))
    assert verdict.kinds == (BKG, BKG) and not verdict.missed.any()


def test_detections_are_taken_by_score_and_cut_at_max_dets():
    verdict = classify_image(*image([B, A, [0, 0, 10, 9]], [0.2, 0.5, 0.9], [1, 1, 1]), max_dets=2)
    assert verdict.order.tolist() == [2, 1]  # by score; the 0.2 one is past max_dets
    assert verdict.kinds == (TP, DUPE)


def test_a_missed_box_is_miss_unless_an_error_targets_it():
    verdict = classify_image(*image([[0, 0, 10, 4]], [0.9], [1], gt_boxes=[A, B], gt_labels=[1, 1]))
    assert verdict.kinds == (LOC,)
    assert verdict.false_negatives.tolist() == [True, True] and verdict.missed.tolist() == [False, True]


def test_only_the_best_error_on_a_free_box_is_fixed():
    # a Loc (0.6) and a Cls (0.7) error on the same box: the Cls one would be its TP, the Loc one goes
    verdict = classify_image(*image([[0, 0, 10, 4], A], [0.6, 0.7], [1, 2]))
    assert verdict.kinds == (CLS, LOC) and verdict.fixed_label.tolist() == [1, -1]
    summary = summarize_tide([verdict])
    assert summary.ap50 == 0.0
    assert summary.main[CLS] == pytest.approx(100.0)  # class 1 found at 0.7; class 2 has nothing left
    assert summary.main[LOC] == 0.0  # fixing Loc alone removes the Loc error: class 1 still found by nothing


def test_an_error_on_a_taken_box_is_not_fixable():
    verdict = classify_image(*image([A, [0, 0, 10, 4]], [0.9, 0.8], [1, 1]))
    assert verdict.kinds == (TP, LOC) and verdict.fixed_label.tolist() == [-1, -1]


def test_a_detection_inside_a_difficult_box_is_ignored():
    verdict = classify_image(*image([A, B], [0.9, 0.8], [1, 1], gt_boxes=[A, B], gt_labels=[1, 1],
                                    gt_ignore=[True, False]))
    assert verdict.ignored.tolist() == [True, False] and verdict.kinds == (BKG, TP)
    assert not verdict.false_negatives.any()
    summary = summarize_tide([verdict])
    assert summary.ap50 == pytest.approx(100.0) and all(value == 0.0 for value in summary.main.values())


# Two boxes found at 0.9 and 0.7 with one false positive at 0.8 in between: precision 1, 1/2, 2/3 at
# recall 1/2, 1/2, 1 -> interpolated 1 at the 51 recalls 0 .. 0.5 and 2/3 at the 50 above.
IN_BETWEEN_AP = (51 + 50 * 2 / 3) / 101 * 100


@pytest.mark.parametrize(("false_positive", "kind"), [([0, 0, 10, 9], DUPE), ([80, 80, 90, 90], BKG)])
def test_fixing_the_false_positive_between_two_hits(false_positive, kind):
    verdict = classify_image(*image([A, false_positive, B], [0.9, 0.8, 0.7], [1, 1, 1], gt_boxes=[A, B],
                                    gt_labels=[1, 1]))
    summary = summarize_tide([verdict])
    assert summary.ap50 == pytest.approx(IN_BETWEEN_AP)
    assert summary.main == pytest.approx({k: 100 - IN_BETWEEN_AP if k == kind else 0.0 for k in MAIN_ERRORS})
    assert summary.special == pytest.approx({FALSE_POS: 100 - IN_BETWEEN_AP, FALSE_NEG: 0.0})
    assert summary.counts[kind] == 1


def test_a_class_with_detections_and_no_gt_counts_as_zero_until_fixed():
    # the class-2 detection on the taken box A is a Cls error that cannot become a TP: fixing Cls
    # removes it, and class 2, left with neither boxes nor detections, leaves the mean (TIDE's rule)
    summary = summarize_tide([classify_image(*image([A, A, B], [0.9, 0.8, 0.7], [1, 2, 1], gt_boxes=[A, B],
                                                    gt_labels=[1, 1]))])
    assert summary.ap50 == pytest.approx(50.0)  # class 1: 100, class 2: 0
    assert summary.main[CLS] == pytest.approx(50.0) and summary.counts[CLS] == 1


def test_fixing_a_miss():
    summary = summarize_tide([classify_image(*image([A], [0.9], [1], gt_boxes=[A, B], gt_labels=[1, 1]))])
    assert summary.ap50 == pytest.approx(51 / 101 * 100)  # precision 1 up to recall 0.5, nothing after
    assert summary.main[MISS] == pytest.approx(100 - 51 / 101 * 100)
    assert summary.special[FALSE_NEG] == pytest.approx(100 - 51 / 101 * 100) and summary.counts[MISS] == 1


def test_a_false_positive_above_every_hit():
    summary = summarize_tide([classify_image(*image([B, A], [0.9, 0.8], [1, 1]))])
    assert summary.ap50 == pytest.approx(50.0)  # precision 1/2 at recall 1, everywhere after interpolation
    assert summary.main[BKG] == pytest.approx(50.0) and summary.special[FALSE_POS] == pytest.approx(50.0)


def test_class_ap_by_hand():
    assert class_ap(np.array([0.9, 0.8, 0.7]), np.array([True, False, True]), 2) == pytest.approx(IN_BETWEEN_AP)
    assert class_ap(np.array([0.9]), np.array([False]), 0) == 0.0  # no GT: 0, as TIDE scores it
    assert class_ap(np.zeros(0), np.zeros(0, bool), 3) == 0.0


def random_images(seed: int, count: int = 12, classes: int = 3) -> list[tuple]:
    """Images of 0-5 GT boxes (some difficult), 0-2 jittered detections per box (some of another
    class) and 0-3 stray ones; continuous scores, so no two tie."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        corners = rng.uniform(0, 200, (rng.integers(0, 6), 2))
        gt_boxes = np.concatenate([corners, corners + rng.uniform(10, 60, corners.shape)], axis=1)
        gt_labels = rng.integers(1, classes + 1, len(gt_boxes))
        boxes, labels = [], []
        for box, label in zip(gt_boxes, gt_labels, strict=True):
            for _ in range(rng.integers(0, 3)):
                boxes.append(box + rng.normal(0, rng.choice([2, 8, 20]), 4))
                labels.append(label if rng.random() < 0.8 else rng.integers(1, classes + 1))
        for _ in range(rng.integers(0, 4)):
            corner = rng.uniform(0, 200, 2)
            boxes.append(np.concatenate([corner, corner + rng.uniform(10, 60, 2)]))
            labels.append(rng.integers(1, classes + 1))
        boxes = np.array(boxes).reshape(-1, 4)
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        images.append((boxes, rng.random(len(boxes)), np.array(labels, int), gt_boxes, gt_labels,
                       rng.random(len(gt_boxes)) < 0.1))
    return images


@pytest.mark.parametrize("seed", range(8))
def test_tidecv_agrees_on_random_detections(seed):
    images = random_images(seed)
    ours = summarize_tide([classify_image(*one) for one in images])
    gaps = differences(ours, tidecv_numbers(images))
    assert max(gaps.values()) <= TOLERANCE, gaps


@pytest.mark.parametrize("seed", range(4))
def test_counts_add_up_and_deltas_are_never_negative(seed):
    verdicts = [classify_image(*one) for one in random_images(seed)]
    for verdict in verdicts:
        counted = ~verdict.ignored
        false_positives = sum(verdict.count(kind) for kind in (CLS, LOC, BOTH, DUPE, BKG))
        assert verdict.kinds.count(TP) + false_positives == len(verdict.order)
        assert verdict.kinds.count(TP) + int(verdict.false_negatives.sum()) == int((~verdict.gt_ignore).sum())
        assert all(kind != TP for kind, kept in zip(verdict.kinds, counted, strict=True) if not kept)
        targeted = {int(g) for kind, g in zip(verdict.kinds, verdict.det_gt, strict=True) if kind in (LOC, CLS)}
        for gt in np.flatnonzero(verdict.false_negatives):
            assert verdict.missed[gt] == (int(gt) not in targeted)
    summary = summarize_tide(verdicts)
    assert all(value >= 0 for value in summary.main.values())
    assert all(value >= -1e-9 for value in summary.special.values())


def test_order_of_images_and_detections_does_not_matter():
    images = random_images(5)
    shuffled = []
    rng = np.random.default_rng(0)
    for boxes, scores, labels, *gt in reversed(images):
        order = rng.permutation(len(scores))
        shuffled.append((boxes[order], scores[order], labels[order], *gt))
    first = summarize_tide([classify_image(*one) for one in images])
    second = summarize_tide([classify_image(*one) for one in shuffled])
    assert second.ap50 == pytest.approx(first.ap50)
    assert second.main == pytest.approx(first.main) and second.special == pytest.approx(first.special)


def test_ap50_equals_pycocotools_when_every_class_has_gt():
    images = random_images(11, count=20)
    images = [(*detections, g, gl, np.zeros(len(gl), bool)) for *detections, g, gl, _ in images]  # no difficult
    images.append(image([], [], [], gt_boxes=[A, B, [100, 100, 120, 130]], gt_labels=[1, 2, 3]))
    samples = [Sample(f"{index}.png", torch.tensor(g, dtype=torch.float32).reshape(-1, 4),
                      torch.tensor(gl, dtype=torch.int64), 400, 400) for index, (*_, g, gl, _) in enumerate(images)]
    dataset = DetectionDataset(samples, ["__background__", "a", "b", "c"])
    records = [{"image_id": index, "boxes": torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4),
                "scores": torch.tensor(scores), "labels": torch.tensor(labels)}
               for index, (boxes, scores, labels, *_) in enumerate(images)]
    coco = evaluate.coco_metrics(evaluate.coco_ground_truth(dataset), evaluate.coco_detections(records),
                                 dataset.class_names)
    ours = summarize_tide([classify_image(*one) for one in images])
    assert ours.ap50 == pytest.approx(coco["AP50"] * 100, abs=1e-6)


def test_tied_scores_keep_one_order_in_every_scoring():
    # a hit and a background error at the same score, then a second hit: with one order for every
    # scoring, fixing a type that has no error changes nothing (tidecv's re-scoring would move the
    # error before the hit and report AP lost to FalseNeg although nothing was missed)
    summary = summarize_tide([classify_image(*image([A, [80, 80, 90, 90], B], [0.9, 0.9, 0.7], [1, 1, 1],
                                                    gt_boxes=[A, B], gt_labels=[1, 1]))])
    assert summary.special[FALSE_NEG] == 0.0 and summary.counts[BKG] == 1
    assert all(summary.main[kind] == 0.0 for kind in MAIN_ERRORS if kind != BKG)
