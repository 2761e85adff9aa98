"""analysis/errors.py and analysis/labels.py: one hand-made trace whose every hit and error is known
(the FP chains, the FN stages and suppressors, a class the dataset lacks), the report over rows,
and the pass with the bundled model on the bundled BCCD images: unannotated images left out,
tidecv as the oracle on real detections, progress, cancel, batches."""
from __future__ import annotations

import pytest
import torch

from frcnn_core.analysis.errors import analyse_images, error_analysis, image_errors, summarize_errors
from frcnn_core.analysis.evaluate import relabel
from frcnn_core.analysis.labels import LabelSpaces, dataset_labels
from frcnn_core.analysis.tide import BKG, LOC, MAIN_ERRORS, MISS
from frcnn_core.data.formats import open_dataset
from frcnn_core.data.samples import Sample
from frcnn_core.io.images import load_image
from frcnn_core.modeling.config import RPNConfig
from frcnn_core.modeling.trace import (
    AnchorsTrace,
    DetectionsTrace,
    ObjectnessTrace,
    ProposalsTrace,
    RoiPoolTrace,
    Trace,
)
from frcnn_core.modeling.zoo import build_model
from frcnn_core.resources import SAMPLES
from frcnn_core.vocabulary import FUNNEL_STAGES

from tidecv_helpers import TOLERANCE, differences, tidecv_numbers

MODEL_NAMES = ["__background__", "cat", "dog", "bird"]
DATASET_NAMES = ["__background__", "dog", "cat"]  # another order, and no bird

# A 100x100 image. GT (dataset labels): G0 cat, found by detection 0; G1 dog, whose best proposal
# p1 (IoU 0.82) NMS suppressed by p2 (IoU 0.47 with G1), which became a dog detection: a Loc error
# targeting G1; G2 cat, on anchor a3 exactly but with no proposal near: lost before NMS, a Miss.
# RoI 2 gives a bird detection (no such class in the dataset: left out) and a cat one far from
# every box (Bkg).
GT_BOXES = torch.tensor([[10, 10, 30, 30], [48, 48, 68, 68], [0, 60, 20, 80]], dtype=torch.float32)
GT_LABELS = torch.tensor([2, 1, 2])
ANCHORS = torch.tensor([[10, 10, 30, 30], [50, 50, 70, 70], [70, 0, 90, 20], [0, 60, 20, 80], [54, 54, 74, 74]],
                       dtype=torch.float32)
PRE_NMS_BOXES = torch.tensor([[10, 10, 30, 30], [49, 49, 69, 69], [52, 52, 72, 72], [70, 0, 90, 20]],
                             dtype=torch.float32)
PRE_NMS_ANCHOR_IDX = torch.tensor([0, 1, 4, 2])
PRE_NMS_SCORES = torch.tensor([0.9, 0.6, 0.8, 0.7])
POST_NMS_IDX = torch.tensor([0, 2, 3])  # RoI r is pre-NMS proposal POST_NMS_IDX[r]
CLASS_SCORES = torch.tensor([[0.05, 0.9, 0.03, 0.02], [0.2, 0.1, 0.6, 0.1], [0.05, 0.55, 0.0, 0.4]])
# candidates: (RoI, label, score, box); final detections in keep order: cat .9, bird .8 (stand-in
# score), dog .6, cat .55
CANDIDATES = [(0, 1, 0.9, [10, 10, 30, 30]), (1, 2, 0.6, [52, 52, 72, 72]), (2, 3, 0.8, [70, 0, 90, 20]),
              (2, 1, 0.55, [70, 0, 90, 20])]
KEEP_IDX = torch.tensor([0, 2, 1, 3])


def hand_trace() -> Trace:
    anchors = AnchorsTrace(ANCHORS, torch.zeros(5, dtype=torch.int64), torch.ones(5, dtype=torch.bool), [(1, 5)],
                           [(20, 20)], [1])
    proposals = ProposalsTrace(
        pre_nms_boxes=PRE_NMS_BOXES, pre_nms_scores=PRE_NMS_SCORES, pre_nms_anchor_idx=PRE_NMS_ANCHOR_IDX,
        pre_nms_level=torch.zeros(4, dtype=torch.int64), valid=torch.ones(4, dtype=torch.bool),
        nms_keep_idx=torch.tensor([0, 2, 3]), post_nms_idx=POST_NMS_IDX, suppressed_by=torch.tensor([-1, 2, -1, -1]),
        nms_thresh=0.5)
    roi_idx, labels, scores, boxes = zip(*CANDIDATES, strict=True)
    detections = DetectionsTrace(
        class_scores=CLASS_SCORES, class_boxes=torch.zeros(3, 4, 4), candidate_roi_idx=torch.tensor(roi_idx),
        candidate_labels=torch.tensor(labels), candidate_scores=torch.tensor(scores),
        candidate_boxes=torch.tensor(boxes, dtype=torch.float32), keep_idx=KEEP_IDX)
    return Trace(image_size=(100, 100), input_size=(100, 100), scale=(1.0, 1.0), anchors=anchors,
                 objectness=ObjectnessTrace(torch.zeros(5), torch.zeros(5, 4)), proposals=proposals,
                 roi_pool=RoiPoolTrace(PRE_NMS_BOXES[POST_NMS_IDX], torch.zeros(3, dtype=torch.int64), (3, 8, 7, 7),
                                       None),
                 detections=detections)


def hand_row(difficult=None):
    sample = Sample("hand.png", GT_BOXES, GT_LABELS, 100, 100, difficult)
    return image_errors(hand_trace(), sample, LabelSpaces.of(MODEL_NAMES, DATASET_NAMES), RPNConfig(), 0.05)


def test_label_spaces_match_classes_by_name():
    spaces = LabelSpaces.of(MODEL_NAMES, ["__background__", "dog", "cat", "fox"])
    assert spaces.to_dataset.tolist() == [-1, 2, 1, -1]  # background and bird have no dataset label
    assert spaces.joint_names == [*MODEL_NAMES, "fox"] and spaces.to_joint.tolist() == [0, 2, 1, 4]
    assert dataset_labels(["__background__", "a", None], ["__background__", "a", "a"]).tolist() == [-1, 1, -1]


def test_the_hit_and_the_false_positives_with_their_chains():
    row = hand_row()
    assert [(hit.detection, hit.gt_index, hit.label) for hit in row.hits] == [(0, 0, "cat")]
    assert [(fp.detection, fp.type, fp.label, fp.gt_index) for fp in row.false_positives] == [
        (2, LOC, "dog", 1), (3, BKG, "cat", None)]  # detection 1 (bird) is no class of the dataset
    loc = row.false_positives[0]
    assert (loc.roi, loc.proposal, loc.anchor) == (1, 2, 4)
    assert loc.proposal_box == (52, 52, 72, 72) and loc.anchor_box == (54, 54, 74, 74)
    assert loc.objectness == pytest.approx(0.8) and loc.score == pytest.approx(0.6) and loc.counted
    assert loc.class_scores == pytest.approx({"__background__": 0.2, "cat": 0.1, "dog": 0.6, "bird": 0.1})
    assert row.false_positives[1].roi == 2 and row.false_positives[1].anchor == 2


def test_the_false_negatives_with_their_stages():
    row = hand_row()
    targeted, missed = row.false_negatives
    assert (targeted.gt_index, targeted.type, targeted.label, targeted.by_detection) == (1, LOC, "dog", 2)
    assert targeted.stage == "nms" and targeted.suppressor_box == (52, 52, 72, 72)
    assert targeted.funnel.suppressed_by == 2 and targeted.funnel.best_proposal_iou == pytest.approx(361 / 439)
    assert (missed.gt_index, missed.type, missed.stage, missed.suppressor_box) == (2, MISS, "proposals-pre-nms", None)
    # the chain the funnel followed: G1's best anchor a1 and best proposal p1; G2 sits on a3, no proposal near
    assert (targeted.anchor_box, targeted.proposal_box) == ((50, 50, 70, 70), (49, 49, 69, 69))
    assert (missed.anchor_box, missed.proposal_box) == ((0, 60, 20, 80), None)
    assert row.types() == {LOC: 1, BKG: 1, MISS: 1} and row.error_count == 4


def test_the_json_row():
    record = hand_row().to_json()
    assert (record["TP"], record["FP"], record["FN"]) == (1, 2, 2)
    kinds = [(error["kind"], error["type"]) for error in record["errors"]]
    assert kinds == [("FP", LOC), ("FP", BKG), ("FN", LOC), ("FN", MISS)]
    assert record["errors"][0]["anchor_box"] == [54, 54, 74, 74] and record["errors"][3]["stage"] == "proposals-pre-nms"
    assert record["errors"][2]["proposal_box"] == [49, 49, 69, 69] and record["errors"][3]["proposal_box"] is None


def test_a_difficult_box_is_an_ignore_region_not_a_miss():
    row = hand_row(difficult=torch.tensor([True, False, False]))  # G0 difficult: its detection is ignored
    assert [(fn.gt_index, fn.funnel.gt_index) for fn in row.false_negatives] == [(1, 1), (2, 2)]
    assert not row.hits and row.false_positives[0].detection == 0 and not row.false_positives[0].counted
    assert row.tide.gt_ignore.tolist() == [True, False, False] and row.to_json()["FP"] == 2


def test_the_report_counts_missed_boxes_by_stage_and_class():
    report = summarize_errors([hand_row(), hand_row()], DATASET_NAMES, "hand", 0.05, ["x.png: no annotation file"])
    assert report.gt_by_class() == {"dog": 2, "cat": 4}
    assert report.missed_by_class() == {"dog": dict.fromkeys(FUNNEL_STAGES, 0) | {"nms": 2},
                                        "cat": dict.fromkeys(FUNNEL_STAGES, 0) | {"proposals-pre-nms": 2}}
    assert report.missed_by_stage()["nms"] == 2 and sum(report.missed_by_stage().values()) == 4
    assert report.errors_by_class() == {"dog": dict.fromkeys(MAIN_ERRORS, 0) | {LOC: 2},
                                        "cat": dict.fromkeys(MAIN_ERRORS, 0) | {BKG: 2, MISS: 2}}
    assert report.tide.counts[LOC] == 2 and report.tide.counts[MISS] == 2
    payload = report.to_json()
    assert payload["left_out"] == ["x.png: no annotation file"] and len(payload["images"]) == 2
    assert set(payload["tide"]) >= {"AP50", "main", "special"} and payload["stages"] == list(FUNNEL_STAGES)
    assert [row.image_path for row in report.worst(1)] == ["hand.png"]


@pytest.fixture(scope="module")
def bccd():
    """The bundled samples folder (three BCCD val images with their XML; two photos without) and
    the bundled model."""
    return open_dataset(SAMPLES), build_model("bccd-demo")


def test_the_pass_leaves_unannotated_images_out(bccd):
    dataset, model = bccd
    assert len(dataset) == 3 and len(dataset.problems) == 2  # the photos without XML: the reader left them out
    samples = [*dataset.samples, Sample(str(SAMPLES / "chelsea.png"), torch.zeros(0, 4),
                                        torch.zeros(0, dtype=torch.int64), annotated=False)]
    seen = []
    report = error_analysis(model, samples, dataset.class_names, "cpu", batch_size=2,
                            progress=lambda done, total: seen.append((done, total)))
    assert [row.image_path for row in report.images] == [sample.image_path for sample in dataset.samples]
    assert report.left_out == [f"{SAMPLES / 'chelsea.png'}: no annotation file"]
    assert seen == [(1, 3), (2, 3), (3, 3)]
    for row, sample in zip(report.images, dataset.samples, strict=True):
        assert len(row.hits) + len(row.false_negatives) == len(sample.boxes)  # no difficult boxes here
    assert sum(len(row.hits) for row in report.images) > 30 and any(row.false_positives for row in report.images)


def test_tidecv_agrees_on_the_bundled_models_detections(bccd):
    dataset, model = bccd
    report = error_analysis(model, dataset.samples, dataset.class_names, "cpu")
    images = []
    for index, sample in enumerate(dataset.samples):  # the detections of a plain call, as eval takes them
        detections = model([load_image(sample.image_path).tensor])[0]
        record = relabel([{"image_id": index, **detections}], model.class_names, dataset.class_names)[0]
        images.append((record["boxes"].numpy(), record["scores"].numpy(), record["labels"].numpy(),
                       sample.boxes.numpy(), sample.labels.numpy(), torch.zeros(len(sample.boxes), dtype=bool).numpy()))
    gaps = differences(report.tide, tidecv_numbers(images))
    assert max(gaps.values()) <= TOLERANCE, gaps
    assert report.tide.ap50 > 80  # the bundled model finds most cells: a comparison that means something


def test_cancel_stops_the_pass(bccd):
    dataset, model = bccd
    calls = []
    assert error_analysis(model, dataset.samples, dataset.class_names, "cpu", batch_size=1,
                          cancel=lambda: calls.append(1) or True) is None
    assert len(calls) == 1


def test_batches_give_the_rows_one_image_at_a_time_gives(bccd):
    dataset, model = bccd
    one = list(analyse_images(model, dataset.samples, dataset.class_names, "cpu", batch_size=1))
    batched = list(analyse_images(model, dataset.samples, dataset.class_names, "cpu", batch_size=3))
    for single, joint in zip(one, batched, strict=True):
        assert [(hit.detection, hit.gt_index) for hit in single.hits] == [(hit.detection, hit.gt_index)
                                                                          for hit in joint.hits]
        assert [(fp.detection, fp.type, fp.anchor) for fp in single.false_positives] == [
            (fp.detection, fp.type, fp.anchor) for fp in joint.false_positives]
        assert [(fn.gt_index, fn.stage) for fn in single.false_negatives] == [
            (fn.gt_index, fn.stage) for fn in joint.false_negatives]
