"""evaluate.py: hand-computed VOC07 AP, COCO AP through pycocotools, confusion matrix, the JSON
contract, and the whole evaluation on a tiny random model."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from frcnn_core.analysis import evaluate
from frcnn_core.data.samples import DetectionDataset, Sample

CLASS_NAMES = ["__background__", "cat", "dog", "bird"]
DESIGN_KEYS = {"AP", "AP50", "AP75", "per_class_AP50", "voc07_mAP", "images"}


def dataset_of(samples: list[Sample], class_names=CLASS_NAMES) -> DetectionDataset:
    return DetectionDataset(samples, class_names)


def sample(boxes, labels, difficult=None, name="img.png", size=(100, 100)) -> Sample:
    """size None: the annotation states no image size."""
    return Sample(
        image_path=name, boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        labels=torch.tensor(labels, dtype=torch.int64), width=size and size[0], height=size and size[1],
        difficult=None if difficult is None else torch.tensor(difficult, dtype=torch.bool),
    )


def record(image_id, boxes, scores, labels) -> dict:
    return {"image_id": image_id, "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "scores": torch.tensor(scores, dtype=torch.float32), "labels": torch.tensor(labels, dtype=torch.int64)}


def coco_of(dataset, records):
    return evaluate.coco_metrics(evaluate.coco_ground_truth(dataset), evaluate.coco_detections(records),
                                 dataset.class_names)


# --- VOC07 --------------------------------------------------------------------------------------

def test_voc07_two_gt_three_detections_by_hand():
    # scores 0.9 TP, 0.8 FP (no overlap), 0.7 TP -> precision 1, 1/2, 2/3; recall 1/2, 1/2, 1.
    # 11 points: t = 0 .. 0.5 take max precision 1 (6 points), t = 0.6 .. 1.0 take 2/3 (5 points).
    dataset = dataset_of([sample([[0, 0, 10, 10], [50, 50, 70, 70]], [1, 1])])
    detections = [record(0, [[0, 0, 10, 10], [80, 80, 90, 90], [51, 50, 70, 70]], [0.9, 0.8, 0.7], [1, 1, 1])]
    mean_ap, per_class = evaluate.voc07_ap(dataset, detections)
    assert per_class == {"cat": pytest.approx((6 + 5 * 2 / 3) / 11)}
    assert mean_ap == pytest.approx(28 / 33)
    curve = evaluate.voc_pr_curves(dataset, detections)[1]
    np.testing.assert_allclose(curve.precision, [1, 1 / 2, 2 / 3])
    np.testing.assert_allclose(curve.recall, [1 / 2, 1 / 2, 1])
    np.testing.assert_allclose(curve.interpolated, [1] * 6 + [2 / 3] * 5)


def test_voc07_duplicate_is_false_positive_and_order_is_by_score_across_images():
    dataset = dataset_of([sample([[0, 0, 10, 10]], [1]), sample([[0, 0, 10, 10]], [1])])
    # image 1's hit scores highest; image 0's duplicate (0.5) comes after its hit (0.6)
    detections = [record(0, [[0, 0, 10, 10], [0, 0, 10, 10]], [0.5, 0.6], [1, 1]),
                  record(1, [[0, 0, 10, 10]], [0.95], [1])]
    curve = evaluate.voc_pr_curves(dataset, detections)[1]
    np.testing.assert_allclose(curve.recall, [1 / 2, 1, 1])
    np.testing.assert_allclose(curve.precision, [1, 1, 2 / 3])
    assert curve.ap == pytest.approx(1.0)


def test_voc07_difficult_objects_are_neither_found_nor_false_positives():
    dataset = dataset_of([sample([[0, 0, 10, 10], [50, 50, 70, 70]], [1, 1], difficult=[False, True])])
    on_difficult_first = [record(0, [[50, 50, 70, 70], [0, 0, 10, 10]], [0.9, 0.8], [1, 1])]
    assert evaluate.voc07_ap(dataset, on_difficult_first)[1] == {"cat": pytest.approx(1.0)}
    curve = evaluate.voc_pr_curves(dataset, on_difficult_first)[1]
    np.testing.assert_allclose(curve.recall, [0, 1])  # the ignored detection adds neither TP nor FP


def test_voc07_classes_without_ground_truth_are_left_out():
    dataset = dataset_of([sample([[0, 0, 10, 10]], [1]), sample([], [])])
    detections = [record(0, [[0, 0, 10, 10]], [0.9], [1]), record(1, [[5, 5, 9, 9]], [0.9], [2])]
    mean_ap, per_class = evaluate.voc07_ap(dataset, detections)
    assert per_class == {"cat": pytest.approx(1.0)} and mean_ap == pytest.approx(1.0)
    assert math.isnan(evaluate.voc07_ap(dataset_of([sample([], [])]), [])[0])


def test_voc07_no_detections_is_zero():
    dataset = dataset_of([sample([[0, 0, 10, 10]], [1])])
    assert evaluate.voc07_ap(dataset, []) == (0.0, {"cat": 0.0})


# --- COCO ---------------------------------------------------------------------------------------

TWO_IMAGES = [sample([[0, 0, 10, 10], [20, 20, 60, 50]], [1, 2]), sample([[30, 30, 90, 80]], [1])]


def test_coco_perfect_detections_give_one():
    detections = [record(i, s.boxes.tolist(), [0.9] * len(s.boxes), s.labels.tolist())
                  for i, s in enumerate(TWO_IMAGES)]
    metrics = coco_of(dataset_of(TWO_IMAGES), detections)
    assert (metrics["AP"], metrics["AP50"], metrics["AP75"]) == (1.0, 1.0, 1.0)
    assert metrics["per_class_AP50"] == {"cat": pytest.approx(1.0), "dog": pytest.approx(1.0)}  # no bird GT


def test_coco_no_detections_give_zero():
    metrics = coco_of(dataset_of(TWO_IMAGES), [])
    assert (metrics["AP"], metrics["AP50"], metrics["AP75"]) == (0.0, 0.0, 0.0)
    assert metrics["per_class_AP50"] == {"cat": 0.0, "dog": 0.0}


def test_coco_one_of_two_boxes_found():
    # recall reaches 1/2 at precision 1: recall points 0, 0.01, ..., 0.50 score 1, the other 50 score 0
    dataset = dataset_of([sample([[0, 0, 10, 10], [50, 50, 90, 90]], [1, 1])])
    metrics = coco_of(dataset, [record(0, [[0, 0, 10, 10]], [0.9], [1])])
    assert metrics["AP50"] == pytest.approx(51 / 101) and metrics["AP"] == pytest.approx(51 / 101)
    assert metrics["per_class_AP50"] == {"cat": pytest.approx(51 / 101)}


def test_coco_ground_truth_layout_and_difficult_as_crowd():
    dataset = dataset_of([sample([[1, 2, 11, 22], [0, 0, 5, 5]], [3, 1], difficult=[False, True], size=(40, 30))])
    gt = evaluate.coco_ground_truth(dataset)
    assert gt["images"] == [{"id": 0, "file_name": "img.png", "width": 40, "height": 30}]
    assert gt["categories"] == [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "bird"}]
    first, second = gt["annotations"]
    assert first == {"id": 1, "image_id": 0, "category_id": 3, "bbox": [1, 2, 10, 20], "area": 200,
                     "iscrowd": 0, "ignore": 0}
    assert second["iscrowd"] == 1 and second["id"] == 2


def test_coco_detection_on_a_difficult_object_is_ignored():
    dataset = dataset_of([sample([[0, 0, 10, 10], [50, 50, 70, 70]], [1, 1], difficult=[False, True])])
    metrics = coco_of(dataset, [record(0, [[50, 50, 70, 70], [0, 0, 10, 10]], [0.9, 0.8], [1, 1])])
    assert metrics["AP50"] == pytest.approx(1.0)


# one cat found (0.8) and one difficult cat at (50, 50, 70, 70); by hand, per rule:
DIFFICULT_CASES = {
    # never detected: not a miss -> recall 1 from the one real cat
    "difficult missed": ([], [], 1.0, 1.0),
    # two detections on it, IoU 1 and 0.81 (IoU >= 0.5, a crowd box matches many): both ignored
    "hit twice": ([[50, 50, 70, 70], [52, 52, 70, 70]], [0.95, 0.9], 1.0, 1.0),
    # a detection inside it, IoU 25/400 < 0.5: VOC's rule (IoU) makes it a false positive ranked
    # first -> precision 0, 1/2 at recall 0, 1 -> AP 1/2 at every recall point; COCO's crowd rule
    # (intersection / detection area = 1) ignores it -> AP50 1
    "inside it": ([[55, 55, 60, 60]], [0.9], 0.5, 1.0),
}


@pytest.mark.parametrize("case", DIFFICULT_CASES)
def test_difficult_boxes_are_neither_found_nor_missed(case):
    extra_boxes, extra_scores, voc_ap, coco_ap50 = DIFFICULT_CASES[case]
    dataset = dataset_of([sample([[0, 0, 10, 10], [50, 50, 70, 70]], [1, 1], difficult=[False, True])])
    detections = [record(0, [*extra_boxes, [0, 0, 10, 10]], [*extra_scores, 0.8], [1] * (len(extra_boxes) + 1))]
    assert evaluate.voc07_ap(dataset, detections)[1] == {"cat": pytest.approx(voc_ap)}
    assert coco_of(dataset, detections)["AP50"] == pytest.approx(coco_ap50)


def test_coco_detections_are_xywh_in_float64():
    results = evaluate.coco_detections([record(4, [[0.1, 0.2, 10.3, 20.7]], [0.5], [2])])
    x1, y1, x2, y2 = torch.tensor([0.1, 0.2, 10.3, 20.7], dtype=torch.float32).double().tolist()
    assert results == [{"image_id": 4, "category_id": 2, "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "score": pytest.approx(0.5)}]


# --- confusion matrix ---------------------------------------------------------------------------

def test_confusion_matrix_by_hand():
    # cat found as cat, dog found as bird, a bird where nothing is, a dog missed, a low-score box unused
    dataset = dataset_of([sample([[0, 0, 10, 10], [20, 20, 40, 40], [60, 60, 90, 90]], [1, 2, 2])])
    detections = [record(0, [[0, 0, 10, 10], [21, 20, 40, 40], [45, 0, 55, 10], [60, 60, 90, 90]],
                         [0.9, 0.8, 0.7, 0.2], [1, 3, 3, 2])]
    matrix = evaluate.confusion_matrix(dataset, detections, num_classes=4, score_thresh=0.5)
    expected = np.zeros((4, 4), dtype=np.int64)
    expected[1, 1] = 1  # correct
    expected[2, 3] = 1  # wrong class
    expected[0, 3] = 1  # false positive
    expected[2, 0] = 1  # missed
    np.testing.assert_array_equal(matrix, expected)
    assert matrix.sum() == 4


def test_confusion_matrix_difficult_and_duplicates():
    dataset = dataset_of([sample([[0, 0, 10, 10], [50, 50, 70, 70]], [1, 1], difficult=[False, True])])
    detections = [record(0, [[0, 0, 10, 10], [0, 0, 10, 10], [50, 50, 70, 70]], [0.9, 0.8, 0.7], [1, 1, 1])]
    matrix = evaluate.confusion_matrix(dataset, detections, num_classes=4)
    assert matrix[1, 1] == 1 and matrix[0, 1] == 1 and matrix.sum() == 2  # duplicate = FP; difficult unused


def test_confusion_matrix_empty_image():
    matrix = evaluate.confusion_matrix(dataset_of([sample([], [])]), [], num_classes=4)
    assert matrix.shape == (4, 4) and matrix.sum() == 0


# --- relabel, JSON, the whole evaluation --------------------------------------------------------

def test_relabel_maps_by_name_and_drops_unknown_classes():
    records = [record(0, [[0, 0, 1, 1], [0, 0, 2, 2], [0, 0, 3, 3]], [0.9, 0.8, 0.7], [1, 2, 3])]
    mapped = evaluate.relabel(records, ["__background__", "dog", "horse", "cat"], CLASS_NAMES)
    assert mapped[0]["labels"].tolist() == [2, 1]
    assert mapped[0]["scores"].tolist() == pytest.approx([0.9, 0.7])
    assert evaluate.relabel(records, CLASS_NAMES, CLASS_NAMES) is records


def test_to_json_has_design_keys_and_no_nan():
    result = evaluate.EvalResult(
        AP=float("nan"), AP50=0.5, AP75=0.25, per_class_AP50={"cat": 0.5}, voc07_mAP=0.4, images=2,
        per_class_voc07_AP={"cat": 0.4}, per_image_losses=None, confusion=np.zeros((2, 2), dtype=np.int64),
    )
    payload = result.to_json()
    assert set(payload) == DESIGN_KEYS | {"per_class_voc07_AP"}
    assert payload["AP"] is None
    json.loads(json.dumps(payload, allow_nan=False))
    losses = [{"loss_objectness": 1.0, "loss_rpn_box_reg": 2.0, "loss_classifier": 3.0, "loss_box_reg": 4.0, "image": p}
              for p in ("a", "b")]
    with_losses = evaluate.EvalResult(**{**result.__dict__, "per_image_losses": losses}).to_json()
    assert set(with_losses) == DESIGN_KEYS | {"per_class_voc07_AP", "mean_losses"}
    assert with_losses["mean_losses"] == {"loss_objectness": 1.0, "loss_rpn_box_reg": 2.0,
                                          "loss_classifier": 3.0, "loss_box_reg": 4.0}


@pytest.fixture(scope="module")
def tiny_model():
    from frcnn_core.modeling.zoo import build_model

    torch.manual_seed(0)
    return build_model("mobilenet-v3-320-fpn", "none", score_thresh=0.0)


def noise_png(path, size) -> str:
    pixels = np.random.default_rng(len(str(path))).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return str(path)


def test_evaluate_on_a_random_model(tiny_model, tmp_path):
    names = ["__background__", "cat", "person", "dog"]  # a subset of the model's COCO names, other labels
    images = {name: noise_png(tmp_path / name, size) for name, size in
              (("a.png", (96, 64)), ("b.png", (100, 80)), ("empty.png", (64, 64)))}
    samples = [sample([[10, 10, 60, 50]], [1], name=images["a.png"], size=None),
               sample([[5, 5, 40, 40], [50, 10, 90, 60]], [2, 3], difficult=[False, True], name=images["b.png"]),
               sample([], [], name=images["empty.png"])]
    dataset = dataset_of(samples, names)
    plots_dir = tmp_path / "plots"
    result = evaluate.evaluate(tiny_model, dataset, batch_size=2, plots_dir=plots_dir, score_thresh=0.0)
    records = evaluate.relabel(evaluate.run_detections(tiny_model, dataset, "cpu", progress=False),
                               tiny_model.class_names, names)
    assert result.AP50 == coco_of(dataset, records)["AP50"]
    assert (result.voc07_mAP, result.per_class_voc07_AP) == evaluate.voc07_ap(dataset, records)
    assert set(result.per_class_AP50) == {"cat", "person"}
    assert result.images == 3 and result.confusion.shape == (4, 4)
    assert result.confusion[1:].sum() == 2  # each non-difficult GT found or missed exactly once
    uncounted = sum(len(r["scores"]) for r in records) - result.confusion[:, 1:].sum()
    assert uncounted in (0, 1)  # every detection counted, but for at most one on the difficult dog
    assert [losses["image"] for losses in result.per_image_losses] == list(images.values())
    assert all(math.isfinite(losses[name]) for losses in result.per_image_losses for name in evaluate.LOSS_NAMES)
    assert sorted(p.name for p in plots_dir.iterdir()) == ["confusion_matrix.png", "pr_01_cat.png", "pr_02_person.png"]
    json.dumps(result.to_json(), allow_nan=False)


def test_per_image_losses_are_reproducible(tiny_model, tmp_path):
    dataset = dataset_of([sample([[10, 10, 60, 50]], [1], name=noise_png(tmp_path / "a.png", (96, 64)))])
    first = evaluate.per_image_losses(tiny_model, dataset, "cpu")
    assert first == evaluate.per_image_losses(tiny_model, dataset, "cpu")
    assert evaluate.evaluate(tiny_model, dataset, with_losses=False).per_image_losses is None
