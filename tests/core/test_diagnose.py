"""The recall funnel on a hand-made scene where each GT box is lost at a known stage, its summary
over a dataset, and its consistency on a real BCCD image with the bundled model."""
from __future__ import annotations

import pytest
import torch

from frcnn_core.data.samples import DetectionDataset, Sample
from frcnn_core.data.voc import read_voc_xml
from frcnn_core.inspect.funnel import (
    DETECTED,
    OUTCOMES,
    FunnelRow,
    ImageFunnel,
    _label_space,
    at_score_threshold,
    image_funnels,
    lost_stage,
    recall_funnel,
    suggest_anchors,
    summarize,
)
from frcnn_core.io.images import load_image
from frcnn_core.modeling.config import IGNORE, NEG, POS, DetectorConfig, RPNConfig
from frcnn_core.modeling.trace import (
    AnchorLabelsTrace,
    AnchorsTrace,
    DetectionsTrace,
    ObjectnessTrace,
    ProposalsTrace,
    RoiPoolTrace,
    Trace,
)
from frcnn_core.modeling.zoo import build_model
from frcnn_core.resources import SAMPLES
from frcnn_core.vocabulary import FUNNEL_STAGES as STAGES

CLASS_NAMES = ["__background__", "cat", "dog"]

# A 100x100 image. Each GT box is lost at one stage (G0 is detected):
# G0 detected; G1 anchors (a thin strip no anchor comes near); G2 proposals-pre-nms (anchor a1 at
# IoU 0.64, but the only good proposal, 5, was filtered before NMS); G3 nms (its best proposal 3
# was suppressed by 2, which covers G3 at IoU 0.48 only); G4 post-nms-top-n (proposal 4 kept by
# NMS, cut by post-NMS top-N = 2); G5 detection (proposal 1 reaches the second stage; the right
# class scores 0.3 < 0.5, the wrong class 0.7).
GT_BOXES = torch.tensor([
    [10, 10, 30, 30], [60, 0, 100, 4], [50, 50, 70, 70], [0, 60, 20, 80], [80, 40, 100, 60], [40, 10, 60, 30],
], dtype=torch.float32)
GT_LABELS = torch.tensor([1, 1, 2, 1, 2, 2])
ANCHORS = torch.tensor([
    [10, 10, 30, 30], [50, 50, 66, 66], [0, 60, 20, 80], [80, 40, 100, 60], [40, 10, 60, 30], [50, 0, 70, 8],
], dtype=torch.float32)
PRE_NMS_BOXES = torch.tensor([
    [10, 10, 30, 30], [40, 10, 60, 30], [0, 67, 20, 87], [0, 64, 20, 84], [80, 40, 100, 60], [52, 52, 72, 72],
    [60, 60, 80, 80],
], dtype=torch.float32)
PRE_NMS_SCORES = torch.tensor([0.9, 0.8, 0.6, 0.5, 0.3, 0.7, 0.1])  # score ranks 0, 1, 3, 4, 5, 2, 6
VALID = torch.tensor([True, True, True, True, True, False, True])
NMS_KEEP_IDX = torch.tensor([0, 1, 2, 4, 6])
POST_NMS_IDX = torch.tensor([0, 1])
SUPPRESSED_BY = torch.tensor([-1, -1, -1, 2, -1, -1, -1])
# candidates: G0's (cat 0.8), G5's wrong class (cat 0.7) and right class (dog 0.3), and a dog on
# G4 (0.9) that class NMS did not keep — the funnel must look at final detections only
CANDIDATE_BOXES = torch.tensor([[10, 10, 30, 30], [40, 10, 60, 30], [40, 10, 60, 30], [80, 40, 100, 60]],
                               dtype=torch.float32)
CANDIDATE_LABELS = torch.tensor([1, 1, 2, 2])
CANDIDATE_SCORES = torch.tensor([0.8, 0.7, 0.3, 0.9])
KEEP_IDX = torch.tensor([0, 1, 2])


def scene(pre_nms_boxes=PRE_NMS_BOXES, keep_idx=KEEP_IDX) -> Trace:
    num_pre = len(pre_nms_boxes)
    empty = num_pre != len(PRE_NMS_BOXES)
    proposals = ProposalsTrace(
        pre_nms_boxes=pre_nms_boxes,
        pre_nms_scores=PRE_NMS_SCORES[:num_pre],
        pre_nms_anchor_idx=torch.zeros(num_pre, dtype=torch.int64),
        pre_nms_level=torch.zeros(num_pre, dtype=torch.int64),
        valid=VALID[:num_pre],
        nms_keep_idx=NMS_KEEP_IDX[:0] if empty else NMS_KEEP_IDX,
        post_nms_idx=POST_NMS_IDX[:0] if empty else POST_NMS_IDX,
        suppressed_by=SUPPRESSED_BY[:num_pre],
        nms_thresh=0.7,
    )
    detections = DetectionsTrace(
        class_scores=torch.zeros(2, 3), class_boxes=torch.zeros(2, 3, 4), candidate_roi_idx=torch.tensor([0, 1, 1, 0]),
        candidate_labels=CANDIDATE_LABELS, candidate_scores=CANDIDATE_SCORES, candidate_boxes=CANDIDATE_BOXES,
        keep_idx=keep_idx,
    )
    return Trace(
        image_size=(100, 100), input_size=(200, 200), scale=(2.0, 2.0),
        anchors=AnchorsTrace(ANCHORS, torch.zeros(6, dtype=torch.int64), torch.ones(6, dtype=torch.bool),
                             [(2, 3)], [(50, 50)], [1]),
        objectness=ObjectnessTrace(torch.zeros(6), torch.zeros(6, 4)),
        proposals=proposals,
        roi_pool=RoiPoolTrace(PRE_NMS_BOXES[:2], torch.zeros(2, dtype=torch.int64), (2, 1, 7, 7), None),
        detections=detections,
    )


def expected_rows() -> list[FunnelRow]:
    def row(gt_index, label, best_anchor_iou, best_anchor_index, best_proposal_iou, rank, survived_nms,
            in_post, best_kept_iou, best_post_nms_iou, detection_score, lost_at, suppressed_by=None,
            suppressor_iou=None):
        return FunnelRow(
            gt_index=gt_index, label=label, box=tuple(GT_BOXES[gt_index].tolist()), best_anchor_iou=best_anchor_iou,
            best_anchor_index=best_anchor_index, best_anchor_label=POS, best_proposal_iou=best_proposal_iou,
            best_proposal_rank=rank, survived_nms=survived_nms, suppressed_by=suppressed_by,
            suppressor_iou=suppressor_iou, in_post_nms_top_n=in_post, best_kept_iou=best_kept_iou,
            best_post_nms_iou=best_post_nms_iou, detection_score=detection_score, detected=lost_at is None,
            lost_at=lost_at,
        )

    return [
        row(0, "cat", 1.0, 0, 1.0, 0, True, True, 1.0, 1.0, 0.8, None),
        # strip 40x4 vs anchor 5 (20x8): overlap 10x4 = 40, union 160 + 160 - 40
        row(1, "cat", 40 / 280, 5, 0.0, None, False, False, 0.0, 0.0, None, "anchors"),
        # anchor 1: 16x16 inside the 20x20 box; proposal 6: 10x10 overlap, union 700
        row(2, "dog", 256 / 400, 1, 100 / 700, 6, True, False, 100 / 700, 0.0, None, "proposals-pre-nms"),
        # proposal 3 overlaps 16 rows of 20 (320 / 480); suppressor 2 vs 3: 17 rows (340 / 460);
        # 2 vs G3: 13 rows (260 / 540)
        row(3, "cat", 1.0, 2, 320 / 480, 4, False, False, 260 / 540, 0.0, None, "nms", 2, 340 / 460),
        row(4, "dog", 1.0, 3, 1.0, 5, True, False, 1.0, 0.0, None, "post-nms-top-n"),
        row(5, "dog", 1.0, 4, 1.0, 1, True, True, 1.0, 1.0, 0.3, "detection"),
    ]


def assert_rows_equal(rows: list[FunnelRow], expected: list[FunnelRow]) -> None:
    assert len(rows) == len(expected)
    for got, want in zip(rows, expected, strict=True):
        for name, value in vars(want).items():
            if isinstance(value, float):
                assert getattr(got, name) == pytest.approx(value, abs=1e-6), (got.gt_index, name)
            else:
                assert getattr(got, name) == value, (got.gt_index, name)


def test_each_gt_box_of_the_scene_is_lost_where_it_was_built_to_be():
    rows = recall_funnel(scene(), GT_BOXES, GT_LABELS, CLASS_NAMES, score_thresh=0.5)
    assert_rows_equal(rows, expected_rows())
    assert [row.lost_at for row in rows] == [None, *STAGES]


def test_anchor_labels_follow_the_given_labelling_or_the_rpn_rule():
    # default rule (0.7 / 0.3 with low-quality matches): every box's best anchor is positive
    assert [row.best_anchor_label for row in recall_funnel(scene(), GT_BOXES, GT_LABELS, CLASS_NAMES)] == [POS] * 6
    # without low-quality matches: anchor 1 (IoU 0.64) is ignored, anchor 5 (0.14) negative
    strict = RPNConfig(allow_low_quality_matches=False)
    rows = recall_funnel(scene(), GT_BOXES, GT_LABELS, CLASS_NAMES, rpn_config=strict)
    assert [row.best_anchor_label for row in rows] == [POS, NEG, IGNORE, POS, POS, POS]
    given = AnchorLabelsTrace(torch.tensor([NEG, NEG, NEG, IGNORE, POS, POS], dtype=torch.int8),
                              torch.zeros(6, dtype=torch.int64), torch.zeros(6), torch.zeros(0), torch.zeros(0))
    rows = recall_funnel(scene(), GT_BOXES, GT_LABELS, CLASS_NAMES, anchor_labels=given)
    assert [row.best_anchor_label for row in rows] == [NEG, POS, NEG, NEG, IGNORE, POS]


def test_a_lower_score_threshold_detects_the_low_scoring_box():
    rows = recall_funnel(scene(), GT_BOXES, GT_LABELS, CLASS_NAMES, score_thresh=0.05)
    assert rows[5].detected and rows[5].lost_at is None and rows[5].detection_score == pytest.approx(0.3)


@pytest.mark.parametrize("score_thresh", [0.05, 0.3, 0.31, 0.8, 0.81, 1.0])
def test_another_score_threshold_from_the_rows_alone_equals_a_new_funnel(score_thresh):
    rows = recall_funnel(scene(), GT_BOXES, GT_LABELS, CLASS_NAMES, score_thresh=0.5)
    assert_rows_equal(at_score_threshold(rows, score_thresh),
                      recall_funnel(scene(), GT_BOXES, GT_LABELS, CLASS_NAMES, score_thresh=score_thresh))


def test_no_gt_gives_no_rows_and_no_proposals_loses_every_box_before_nms():
    assert recall_funnel(scene(), torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), CLASS_NAMES) == []
    rows = recall_funnel(scene(PRE_NMS_BOXES[:0], KEEP_IDX[:0]), GT_BOXES, GT_LABELS, CLASS_NAMES)
    assert [row.lost_at for row in rows] == ["proposals-pre-nms", "anchors", *["proposals-pre-nms"] * 4]
    assert all(row.best_proposal_rank is None and not row.survived_nms and row.detection_score is None for row in rows)


@pytest.mark.parametrize("values, lost_at", [
    ((0.2, 0.4, 0.0, 0.0, False), "anchors"),
    ((0.3, 0.4, 0.0, 0.0, False), "proposals-pre-nms"),
    ((0.1, 0.6, 0.4, 0.0, False), "nms"),
    ((0.5, 0.6, 0.6, 0.4, False), "post-nms-top-n"),
    ((0.5, 0.6, 0.6, 0.6, False), "detection"),
    ((0.1, 0.0, 0.0, 0.0, True), None),  # the second stage can rescue a box the RPN missed
])
def test_lost_stage_is_the_first_failing_stage(values, lost_at):
    assert lost_stage(*values, iou=0.5, bg_iou_thresh=0.3) == lost_at


def test_suggested_anchors_are_equal_count_quantiles():
    sizes, ratios = suggest_anchors(torch.tensor([10.0, 20, 30, 40, 50]), torch.tensor([0.5, 1.0, 2.0]), 2, 3)
    assert sizes == [20.0, 40.0]  # quantiles 0.25 and 0.75
    assert ratios == [0.67, 1.0, 1.67]  # quantiles 1/6, 1/2, 5/6
    assert suggest_anchors(torch.zeros(0), torch.zeros(0), 2, 3) == ([], [])


def test_summary_of_the_scene_counts_each_stage_once():
    rows = recall_funnel(scene(), GT_BOXES, GT_LABELS, CLASS_NAMES, score_thresh=0.5)
    diagnosis = summarize([ImageFunnel("scene.png", (2.0, 2.0), rows)], CLASS_NAMES, DetectorConfig("torchvision"))
    assert diagnosis.images == 1 and diagnosis.gt_boxes == 6
    assert diagnosis.lost_at == dict.fromkeys(OUTCOMES, 1)
    assert diagnosis.by_class == {
        "cat": {"anchors": 1, "proposals-pre-nms": 0, "nms": 1, "post-nms-top-n": 0, "detection": 0, DETECTED: 1},
        "dog": {"anchors": 0, "proposals-pre-nms": 1, "nms": 0, "post-nms-top-n": 1, "detection": 1, DETECTED: 0},
    }
    assert diagnosis.by_size["small"] == dict.fromkeys(OUTCOMES, 1)  # every box is under 32^2 px
    assert sum(diagnosis.by_size["large"].values()) == 0
    # best anchor IoUs 1, 0.14, 0.64, 1, 1, 1
    assert diagnosis.anchor_coverage == pytest.approx({"iou>=0.7": 4 / 6, "0.3<=iou<0.7": 1 / 6, "iou<0.3": 1 / 6})
    # sizes in input pixels (scale 2): 40 for five boxes, sqrt(80 * 8) = 25.3 for the strip
    assert diagnosis.suggested_anchor_sizes == [33.0, 40.0]
    assert diagnosis.anchor_sizes == [32.0, 64.0, 128.0, 256.0, 512.0]
    record = diagnosis.to_json()
    assert record["stages"] == list(STAGES) and record["gt_boxes"] == 6
    assert [(m["image"], m["gt_index"], m["lost_at"]) for m in record["missed"]] == [
        ("scene.png", index, stage) for index, stage in zip(range(1, 6), STAGES, strict=True)]
    assert "funnels" not in record
    assert diagnosis.best_anchor_ious_by_class()["dog"] == pytest.approx([0.64, 1.0, 1.0])


def test_dataset_classes_missing_from_the_model_get_labels_of_their_own():
    names, to_model = _label_space(["__background__", "WBC", "RBC"], ["__background__", "RBC", "cat", "WBC"])
    assert names == ["__background__", "WBC", "RBC", "cat"]
    assert to_model.tolist() == [0, 2, 3, 1]


@pytest.fixture(scope="module")
def bccd_demo():
    return build_model("bccd-demo")


def test_funnel_of_a_bccd_val_image_is_consistent(bccd_demo):
    image = load_image(SAMPLES / "BloodImage_00014.jpg").tensor
    truth = read_voc_xml(SAMPLES / "BloodImage_00014.xml")
    labels = torch.tensor([bccd_demo.class_names.index(name) for name in truth.names])
    _, traces = bccd_demo([image], trace=True)
    generator = torch.Generator().manual_seed(0)
    _, training = bccd_demo([image], [{"boxes": truth.boxes, "labels": labels}], trace=True, generator=generator)
    rows = recall_funnel(traces[0], truth.boxes, labels, bccd_demo.class_names,
                         anchor_labels=training[0].anchor_labels, rpn_config=bccd_demo.config.rpn_train)
    assert len(rows) == len(truth.boxes)
    assert sum(row.detected for row in rows) >= 0.8 * len(rows)
    recomputed = recall_funnel(traces[0], truth.boxes, labels, bccd_demo.class_names,
                               rpn_config=bccd_demo.config.rpn_train)
    assert [row.best_anchor_label for row in recomputed] == [row.best_anchor_label for row in rows]
    proposals = traces[0].proposals
    kept = set(proposals.nms_keep_idx.tolist())
    for row in rows:
        assert row.detected == (row.lost_at is None)
        assert 0 <= row.best_proposal_rank < len(proposals.pre_nms_boxes)
        assert row.survived_nms == (row.suppressed_by is None)
        if row.suppressed_by is not None:
            assert row.suppressed_by in kept and row.suppressor_iou > proposals.nms_thresh
        assert not row.in_post_nms_top_n or row.survived_nms
        assert row.best_post_nms_iou <= row.best_kept_iou <= row.best_proposal_iou
        assert row.best_anchor_label == POS  # low-quality matches make every box's best anchor positive
    for score_thresh in (0.25, 0.5, 0.9):  # the GUI's score slider: the rows re-derived, not recomputed
        assert at_score_threshold(rows, score_thresh, bg_iou_thresh=bccd_demo.config.rpn_train.bg_iou_thresh) == \
            recall_funnel(traces[0], truth.boxes, labels, bccd_demo.class_names,
                          anchor_labels=training[0].anchor_labels, score_thresh=score_thresh,
                          rpn_config=bccd_demo.config.rpn_train)


def test_image_funnels_skip_difficult_boxes_but_keep_their_indices(bccd_demo):
    truth = read_voc_xml(SAMPLES / "BloodImage_00014.xml")
    names = ["__background__", "RBC", "WBC", "Platelets"]
    difficult = torch.zeros(len(truth.boxes), dtype=torch.bool)
    difficult[[0, 2]] = True
    sample = Sample(str(SAMPLES / "BloodImage_00014.jpg"), truth.boxes,
                    torch.tensor([names.index(name) for name in truth.names]), difficult=difficult)
    (funnel,) = image_funnels(bccd_demo, DetectionDataset([sample], names))
    assert [row.gt_index for row in funnel.rows] == [i for i in range(len(truth.boxes)) if i not in (0, 2)]
    assert [row.label for row in funnel.rows] == [truth.names[row.gt_index] for row in funnel.rows]
    assert funnel.scale == (1.0, 1.0)
