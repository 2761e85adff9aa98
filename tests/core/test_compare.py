"""Before/after comparisons: detections compared box by box, and only on the classes both models
know, matched by name (a base model whose classes are disjoint from the run's is not comparable;
an untrained head has no detector yet)."""
from __future__ import annotations

import pytest
import torch

from frcnn_core.analysis.compare_models import (
    COMPARABLE,
    NO_DETECTOR,
    NOT_COMPARABLE,
    SHARED_CLASSES,
    ClassOverlap,
    compare_detections,
    compare_on_image,
    on_classes,
)

BCCD_DEMO = ["__background__", "WBC", "RBC", "Platelets"]  # the bundled model's label order


def detections(*rows):
    """(x1, y1, x2, y2, label, score) rows -> a model-output dict."""
    table = torch.tensor(rows, dtype=torch.float32).reshape(-1, 6)
    return {"boxes": table[:, :4], "labels": table[:, 4].long(), "scores": table[:, 5]}


def counts(comparison):
    return comparison.kept, comparison.changed_class, comparison.gained, comparison.lost


# --- which classes two models compare on -------------------------------------------------------

def test_disjoint_classes_are_not_comparable_and_say_so():
    overlap = ClassOverlap(("WBC", "RBC", "Platelets"), ("raccoon",))
    assert (overlap.verdict, overlap.shared, overlap.comparable) == (NOT_COMPARABLE, (), False)
    assert overlap.note() == "not comparable: the base model knows WBC, RBC, Platelets; this run trains raccoon"


def test_partly_shared_classes_compare_on_the_shared_ones_in_run_order():
    overlap = ClassOverlap(("WBC", "RBC", "Platelets"), ("raccoon", "RBC", "WBC"))
    assert (overlap.verdict, overlap.shared, overlap.comparable) == (SHARED_CLASSES, ("RBC", "WBC"), True)
    assert overlap.note() == ("compared on the shared classes only: RBC, WBC (the base model also knows Platelets; "
                              "this run also trains raccoon)")
    subset = ClassOverlap(("WBC", "RBC", "Platelets"), ("RBC",))
    assert subset.verdict == SHARED_CLASSES
    assert subset.note() == "compared on the shared classes only: RBC (the base model also knows WBC, Platelets)"


def test_the_same_classes_in_another_order_are_comparable():
    overlap = ClassOverlap(("WBC", "RBC", "Platelets"), ("RBC", "Platelets", "WBC"))
    assert (overlap.verdict, overlap.shared) == (COMPARABLE, ("RBC", "Platelets", "WBC"))
    assert overlap.note() == "compared on every class: RBC, Platelets, WBC"


def test_an_untrained_head_has_no_detector_yet():
    overlap = ClassOverlap((), ("cat", "dog"))
    assert (overlap.verdict, overlap.comparable) == (NO_DETECTOR, False)
    assert overlap.note().startswith("before: no detector yet")


# --- detections on the shared classes, by name --------------------------------------------------

def test_disjoint_classes_leave_nothing_to_call_lost():
    """bccd-demo's RBC boxes (its label 2) must not count as the run's label 2, nor become 'lost'."""
    run_names = ["__background__", "raccoon"]
    base = [{"image_id": 0, **detections((0, 0, 10, 10, 2, 0.9), (20, 0, 30, 10, 1, 0.8))}]
    after = [{"image_id": 0, **detections((40, 40, 90, 90, 1, 0.9))}]
    shared = ClassOverlap(tuple(BCCD_DEMO[1:]), tuple(run_names[1:])).shared
    before_shared = on_classes(base, BCCD_DEMO, run_names, shared)
    after_shared = on_classes(after, run_names, run_names, shared)
    assert len(before_shared[0]["labels"]) == 0 and len(after_shared[0]["labels"]) == 0
    assert counts(compare_detections(before_shared, after_shared)) == (0, 0, 0, 0)


def test_partial_overlap_maps_labels_by_name_and_compares_only_shared_classes():
    run_names = ["__background__", "raccoon", "RBC", "WBC"]
    # the base model: WBC (its 1) at A, RBC (its 2) at B, Platelets (its 3) at C
    base = [{"image_id": 0, **detections((0, 0, 10, 10, 1, 0.9), (20, 0, 30, 10, 2, 0.8), (40, 0, 50, 10, 3, 0.7))}]
    # the new model: WBC (run 3) at A, RBC (run 2) at B, a raccoon (run 1) at D
    after = [{"image_id": 0, **detections((0, 0, 10, 10, 3, 0.9), (20, 0, 30, 10, 2, 0.8), (60, 0, 99, 40, 1, 0.9))}]
    shared = ClassOverlap(tuple(BCCD_DEMO[1:]), tuple(run_names[1:])).shared
    before_shared = on_classes(base, BCCD_DEMO, run_names, shared)
    after_shared = on_classes(after, run_names, run_names, shared)
    assert before_shared[0]["labels"].tolist() == [3, 2]  # WBC and RBC in the run's labels; Platelets dropped
    assert after_shared[0]["labels"].tolist() == [3, 2]  # the raccoon is not compared
    assert counts(compare_detections(before_shared, after_shared)) == (2, 0, 0, 0)
    # by index, as before the fix: WBC (1) read as raccoon and Platelets (3) as WBC, all "changed" or "lost"
    assert counts(compare_detections(base, after)) != (2, 0, 0, 0)


# --- box by box --------------------------------------------------------------------------------

def test_the_same_box_and_class_is_kept():
    comparison = compare_on_image(detections((0, 0, 10, 10, 1, 0.9)), detections((0, 0, 10, 9, 1, 0.8)))
    assert counts(comparison) == (1, 0, 0, 0)  # IoU 0.9
    assert comparison.per_image == [{"image": None, "gained": [], "lost": [], "changed": []}]


def test_the_same_box_with_another_class_is_changed_and_names_the_best_overlap():
    before = detections((0, 0, 10, 10, 1, 0.9), (0, 0, 10, 6, 3, 0.7))  # IoUs with the after box: 1.0 and 0.6
    comparison = compare_on_image(before, detections((0, 0, 10, 10, 2, 0.8)), image="a.png")
    assert counts(comparison) == (0, 1, 0, 0)
    [changed] = comparison.per_image[0]["changed"]
    assert changed["label"] == 2 and changed["before_label"] == 1 and changed["before_score"] == pytest.approx(0.9)
    assert comparison.per_image[0]["image"] == "a.png"


def test_boxes_apart_are_gained_and_lost():
    comparison = compare_on_image(detections((0, 0, 10, 10, 1, 0.9)), detections((20, 20, 30, 30, 1, 0.6)))
    assert counts(comparison) == (0, 0, 1, 1)
    entry = comparison.per_image[0]
    assert entry["gained"] == [{"box": [20.0, 20.0, 30.0, 30.0], "label": 1, "score": pytest.approx(0.6)}]
    assert entry["lost"][0]["box"] == [0.0, 0.0, 10.0, 10.0]


def test_iou_exactly_at_the_threshold_overlaps_and_low_scores_do_not_count():
    before = detections((0, 0, 10, 10, 1, 0.9))
    assert counts(compare_on_image(before, detections((0, 0, 10, 5, 1, 0.9)))) == (1, 0, 0, 0)  # IoU 0.5
    assert counts(compare_on_image(before, detections((0, 0, 10, 4, 1, 0.9)))) == (0, 0, 1, 1)  # IoU 0.4
    assert counts(compare_on_image(before, detections((0, 0, 10, 10, 1, 0.49)))) == (0, 0, 0, 1)
    assert counts(compare_on_image(before, detections((0, 0, 10, 10, 1, 0.49)), score_thresh=0.4)) == (1, 0, 0, 0)


def test_two_after_boxes_on_one_before_box_are_both_kept():
    comparison = compare_on_image(detections((0, 0, 10, 10, 1, 0.9)),
                                  detections((0, 0, 10, 10, 1, 0.9), (0, 0, 10, 8, 1, 0.8)))
    assert counts(comparison) == (2, 0, 0, 0)


def test_compare_detections_pairs_records_by_image_and_adds_up():
    before = [{"image_id": 0, **detections((0, 0, 10, 10, 1, 0.9))},
              {"image_id": 1, "image": "b.png", **detections((0, 0, 10, 10, 1, 0.9))}]
    after = [{"image_id": 1, **detections((0, 0, 10, 10, 2, 0.9), (50, 50, 60, 60, 1, 0.9))},
             {"image_id": 2, **detections((0, 0, 10, 10, 1, 0.9))}]
    comparison = compare_detections(before, after)
    # image 0: lost 1; image 1: changed 1, gained 1; image 2: gained 1
    assert counts(comparison) == (0, 1, 2, 1)
    assert [entry["image"] for entry in comparison.per_image] == [0, "b.png", 2]
    assert [len(entry["lost"]) for entry in comparison.per_image] == [1, 0, 0]
    empty = compare_detections([], [])
    assert counts(empty) == (0, 0, 0, 0) and empty.per_image == []
