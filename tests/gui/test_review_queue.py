"""review.py: the skip rule of accepting detections and the review queue, on hand-checked boxes;
torchvision's box_iou as the oracle of ours."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou as torchvision_box_iou

from frcnn_gui.document.boxes import Box, Detection
from frcnn_gui.document.suggestions import Rejections, ReviewQueue, box_iou, plan_accept, whole_pixel_box

SIZE = (100, 80)
GT = [Box(10, 10, 30, 30, "RBC")]


def test_box_iou_by_hand_and_against_torchvision():
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 40]], dtype=np.float64)
    iou = box_iou(boxes, boxes)
    assert iou[0, 1] == pytest.approx(50 / 150) and iou[0, 2] == 0 and np.allclose(np.diag(iou), 1)
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 50, (20, 2))
    random_boxes = np.hstack([corners, corners + rng.uniform(1, 30, (20, 2))])
    expected = torchvision_box_iou(torch.tensor(random_boxes), torch.tensor(random_boxes[:7])).numpy()
    assert np.allclose(box_iou(random_boxes, random_boxes[:7]), expected)
    assert box_iou(random_boxes, np.zeros((0, 4))).shape == (20, 0)


def test_whole_pixels_round_halves_up_and_clip():
    assert whole_pixel_box(Detection((10.5, 11.49, 20.5, 99.7), 0.9, "RBC"), *SIZE).coords == (11, 11, 21, 80)
    for outside in ((120, 10, 130, 20), (float("inf"), 10, 130, 20), (float("nan"), 1, 2, 3)):
        with pytest.raises(ValueError):
            whole_pixel_box(Detection(outside, 0.9, "RBC"), *SIZE)


def test_a_detection_on_a_gt_box_of_its_class_is_skipped_another_class_is_not():
    # IoU with the GT box: (11, 11, 31, 31) -> 361 / 439 = 0.82; (10, 10, 30, 36) -> 400 / 520 = 0.77;
    # (10, 10, 30, 40) -> 400 / 600 = 0.67
    on_gt, just_over, under = (Detection((11, 11, 31, 31), 0.9, "RBC"), Detection((10, 10, 30, 36), 0.8, "RBC"),
                               Detection((10, 10, 30, 40), 0.7, "RBC"))
    other_class = Detection((10, 10, 30, 30), 0.6, "WBC")
    plan = plan_accept([under, other_class, on_gt, just_over], GT, SIZE)
    assert [s.detection for s in plan.suggestions] == [under, other_class]
    assert plan.skipped == {"over_gt": 2}
    assert plan.summary() == "accepted 2 boxes; 2 skipped: already a GT box of that class (IoU ≥ 0.7)"


def test_duplicates_among_the_detections_keep_the_best_and_rejections_and_outside_count():
    best, duplicate = Detection((50, 40, 70, 60), 0.9, "RBC"), Detection((51, 41, 71, 61), 0.5, "RBC")
    rejected, outside = Detection((70, 0, 90, 20), 0.8, "RBC"), Detection((200, 0, 210, 5), 0.99, "RBC")
    plan = plan_accept([duplicate, rejected, best, outside], [], SIZE, rejected={Box(70, 0, 90, 20, "RBC")})
    assert [s.detection for s in plan.suggestions] == [best]
    assert plan.skipped == {"duplicate": 1, "rejected": 1, "outside": 1}
    assert plan.summary() == ("accepted 1 box; 3 skipped: 1 duplicates of a better detection (IoU ≥ 0.7), "
                              "1 rejected in review, 1 no area inside the image")
    assert plan_accept([], GT, SIZE).summary() == "nothing accepted"


def suggestions(count):
    return plan_accept([Detection((10 * i, 0, 10 * i + 8, 8), 1 - i / 10, "RBC") for i in range(count)],
                       [], SIZE).suggestions


def test_queue_steps_round_the_ends_and_keeps_its_place_when_the_list_changes():
    queue = ReviewQueue()
    assert queue.current is None and queue.decision() is None
    five = suggestions(5)
    queue.update(five)
    queue.step(-1)
    assert queue.current == five[4]
    queue.step(1)
    queue.step(2)
    assert queue.position == 2
    queue.choose_label("WBC")
    assert queue.decision() == Detection(five[2].detection.box, five[2].detection.score, "WBC")
    queue.update(five[:2] + five[3:])  # the current one was decided: the next takes its place
    assert queue.current == five[3] and queue.label == "RBC"
    queue.update(five)  # undone: it is back in its place
    assert queue.current == five[2]
    queue.update(five[:2])
    assert queue.current == five[1]
    queue.update(five, restart=True)
    assert queue.position == 0


def test_rejections_are_per_image_and_tell_every_change():
    changes = []
    rejections = Rejections(on_change=lambda: changes.append(1))
    box = Box(1, 2, 3, 4, "RBC")
    rejections.add(Path("a.jpg"), box)
    assert rejections.of(Path("a.jpg")) == {box} and rejections.of(Path("b.jpg")) == frozenset()
    rejections.discard(Path("a.jpg"), box)
    assert rejections.of(Path("a.jpg")) == frozenset() and len(changes) == 2
