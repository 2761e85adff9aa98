"""Typed per-stage records of one forward pass, linked by indices: the only record types.

Shape glossary: A anchors, P pre-NMS proposals, N post-NMS proposals, R RoIs (the proposals the
second stage saw: the N proposals at inference, the sampled RoIs in training), C classes with
background 0, M candidate detections (class-box pairs above the score threshold), D detections.

Links: `ProposalsTrace.pre_nms_anchor_idx` -> anchor; `RoiTargetsTrace.candidate_idx` -> proposal
(or a GT box added as a proposal); `DetectionsTrace.roi_idx` -> RoI -> proposal.

Two places hold them. A stage (`rpn.propose`, `roi_targets.roi_targets`, `roi_heads.postprocess`)
returns its record in input pixels, on the model's device, in the caller's grad mode. A `Trace`
holds them as detached CPU tensors with every box in original-image pixels (the model works at
`input_size`; `scale` = input / original per axis): `trace_builder` converts the fields that
each record's `box_fields` names, and fills in what only a trace computes (`suppressed_by`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor


@dataclass(frozen=True)
class AnchorsTrace:
    """boxes (A, 4); level (A,) int64; inside (A,) bool — fully inside the image; per level:
    grid_sizes (H, W), strides (sy, sx) in input pixels, shapes_per_cell."""

    boxes: Tensor
    level: Tensor
    inside: Tensor
    grid_sizes: list[tuple[int, int]]
    strides: list[tuple[int, int]]
    shapes_per_cell: list[int]


@dataclass(frozen=True)
class AnchorLabelsTrace:
    """labels (A,) int8 {-1, 0, 1}; matched_gt_idx (A,) (meaningful where POS); max_iou (A,);
    sampled_pos_idx, sampled_neg_idx: anchor indices of the loss mini-batch."""

    labels: Tensor
    matched_gt_idx: Tensor
    max_iou: Tensor
    sampled_pos_idx: Tensor
    sampled_neg_idx: Tensor


@dataclass(frozen=True)
class ObjectnessTrace:
    """logits (A,) objectness before the sigmoid; deltas (A, 4) the RPN's box deltas."""

    logits: Tensor
    deltas: Tensor


@dataclass(frozen=True)
class ProposalsTrace:
    """The proposal layer, with what it dropped and why.

    pre_nms_boxes (P, 4) decoded and clipped; pre_nms_scores (P,) probabilities; pre_nms_anchor_idx
    (P,); pre_nms_level (P,); valid (P,) bool — passed the min-size and score filters;
    nms_keep_idx (K,) into pre-NMS, best first; post_nms_idx (N,) into pre-NMS — the proposals;
    nms_thresh: the NMS IoU threshold used; suppressed_by (P,) int64 — the pre-NMS index of the
    kept box that suppressed each box, -1 when it was not suppressed (kept, or filtered out before
    NMS); None as the stage returns it (only a trace pays for it).
    """

    box_fields: ClassVar[tuple[str, ...]] = ("pre_nms_boxes",)

    pre_nms_boxes: Tensor
    pre_nms_scores: Tensor
    pre_nms_anchor_idx: Tensor
    pre_nms_level: Tensor
    valid: Tensor
    nms_keep_idx: Tensor
    post_nms_idx: Tensor
    nms_thresh: float
    suppressed_by: Tensor | None = None

    @property
    def boxes(self) -> Tensor:
        return self.pre_nms_boxes[self.post_nms_idx]

    @property
    def scores(self) -> Tensor:
        return self.pre_nms_scores[self.post_nms_idx]


@dataclass(frozen=True)
class RoiTargetsTrace:
    """Proposal-target layer. rois (R, 4); candidate_idx (R,) into the candidate list =
    proposals followed by the GT boxes (index >= num_proposals means GT box index - num_proposals);
    labels (R,) class (0 = background); matched_gt_idx (R,); max_iou (R,); regression_targets
    (R, 4); positive_quota: the most positives the batch could take. rois are foreground first,
    then background; matched_gt_idx is meaningful where labels > 0."""

    box_fields: ClassVar[tuple[str, ...]] = ("rois",)

    rois: Tensor
    candidate_idx: Tensor
    num_proposals: int
    labels: Tensor
    matched_gt_idx: Tensor
    max_iou: Tensor
    regression_targets: Tensor
    positive_quota: int

    @property
    def is_foreground(self) -> Tensor:
        return self.labels > 0

    @property
    def quota_filled(self) -> bool:
        return int(self.is_foreground.sum()) >= self.positive_quota


@dataclass(frozen=True)
class RoiPoolTrace:
    """boxes (R, 4); level (R,) int64 the feature level pooled from; output_shape [R, C, h, w];
    features (R, C, h, w) only when asked for (they are big), else None."""

    boxes: Tensor
    level: Tensor
    output_shape: tuple[int, int, int, int]
    features: Tensor | None


@dataclass(frozen=True)
class DetectionsTrace:
    """Second-stage outputs. class_scores (R, C) softmax; class_boxes (R, C, 4) decoded and clipped;
    candidate_roi_idx, candidate_labels, candidate_scores, candidate_boxes (M,) / (M, 4) — the
    class-box pairs above the score threshold, before class-wise NMS; keep_idx (D,) into the
    candidates, best first; roi_idx, labels, scores, boxes — the final detections."""

    box_fields: ClassVar[tuple[str, ...]] = ("class_boxes", "candidate_boxes")

    class_scores: Tensor
    class_boxes: Tensor
    candidate_roi_idx: Tensor
    candidate_labels: Tensor
    candidate_scores: Tensor
    candidate_boxes: Tensor
    keep_idx: Tensor

    @property
    def roi_idx(self) -> Tensor:
        return self.candidate_roi_idx[self.keep_idx]

    @property
    def labels(self) -> Tensor:
        return self.candidate_labels[self.keep_idx]

    @property
    def scores(self) -> Tensor:
        return self.candidate_scores[self.keep_idx]

    @property
    def boxes(self) -> Tensor:
        return self.candidate_boxes[self.keep_idx]


@dataclass(frozen=True)
class Trace:
    """All stages of one image's forward pass. image_size and input_size are (h, w)."""

    image_size: tuple[int, int]
    input_size: tuple[int, int]
    scale: tuple[float, float]
    anchors: AnchorsTrace
    objectness: ObjectnessTrace
    proposals: ProposalsTrace
    roi_pool: RoiPoolTrace
    anchor_labels: AnchorLabelsTrace | None = None
    roi_targets: RoiTargetsTrace | None = None
    detections: DetectionsTrace | None = None
