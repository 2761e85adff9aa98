"""Turn one forward pass's stage outputs into a `trace.Trace` per image.

Only called when the caller asked for a trace, so none of this costs anything otherwise. Boxes go
from input to original pixels here; everything is detached and moved to the CPU, so a trace can
cross threads safely.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor

from frcnn_core.modeling import transform
from frcnn_core.modeling.anchors import inside_mask
from frcnn_core.modeling.rpn import nms_suppressors
from frcnn_core.modeling.trace import (
    AnchorLabelsTrace,
    AnchorsTrace,
    DetectionsTrace,
    ObjectnessTrace,
    ProposalsTrace,
    RoiPoolTrace,
    RoiTargetsTrace,
    Trace,
)

if TYPE_CHECKING:
    from frcnn_core.modeling.model import StageOutputs


def _cpu(tensor: Tensor) -> Tensor:
    return tensor.detach().cpu()


def build_trace(outputs: StageOutputs, index: int, keep_pooled: bool) -> Trace:
    """The Trace of image `index` of the batch."""
    batch = outputs.batch

    def original(boxes: Tensor) -> Tensor:
        return _cpu(transform.to_original(boxes.detach(), batch, index))

    anchors = outputs.anchors
    anchors_trace = AnchorsTrace(
        boxes=original(anchors.boxes),
        level=_cpu(anchors.level),
        inside=_cpu(inside_mask(anchors.boxes, batch.input_sizes[index])),
        grid_sizes=anchors.grid_sizes,
        strides=anchors.strides,
        shapes_per_cell=anchors.shapes_per_cell,
    )
    training = outputs.anchor_targets is not None
    return Trace(
        image_size=batch.original_sizes[index],
        input_size=batch.input_sizes[index],
        scale=batch.scale(index),
        anchors=anchors_trace,
        objectness=ObjectnessTrace(_cpu(outputs.objectness[index]), _cpu(outputs.deltas[index])),
        proposals=proposals_trace(outputs, index, original),
        roi_pool=_roi_pool_trace(outputs, index, original, keep_pooled),
        anchor_labels=anchor_labels_trace(outputs.anchor_targets[index]) if training else None,
        roi_targets=_roi_targets_trace(outputs.roi_targets[index], original) if training else None,
        detections=None if training else detections_trace(outputs.detections[index], original),
    )


def proposals_trace(outputs: StageOutputs, index: int, original) -> ProposalsTrace:
    proposals = outputs.proposals[index]
    config = outputs.rpn_config  # the settings that produced these proposals
    suppressed_by = nms_suppressors(
        proposals.pre_nms_boxes,
        proposals.pre_nms_scores,
        proposals.pre_nms_level,
        proposals.valid,
        proposals.nms_keep_idx,
        config.nms_thresh,
    )
    return ProposalsTrace(
        pre_nms_boxes=original(proposals.pre_nms_boxes),
        pre_nms_scores=_cpu(proposals.pre_nms_scores),
        pre_nms_anchor_idx=_cpu(proposals.pre_nms_anchor_idx),
        pre_nms_level=_cpu(proposals.pre_nms_level),
        valid=_cpu(proposals.valid),
        nms_keep_idx=_cpu(proposals.nms_keep_idx),
        post_nms_idx=_cpu(proposals.post_nms_idx),
        suppressed_by=_cpu(suppressed_by),
        nms_thresh=config.nms_thresh,
    )


def anchor_labels_trace(targets) -> AnchorLabelsTrace:
    return AnchorLabelsTrace(
        labels=_cpu(targets.match.labels),
        matched_gt_idx=_cpu(targets.match.matched_gt_idx),
        max_iou=_cpu(targets.match.max_iou),
        sampled_pos_idx=_cpu(targets.sampled_pos_idx),
        sampled_neg_idx=_cpu(targets.sampled_neg_idx),
    )


def _roi_targets_trace(targets, original) -> RoiTargetsTrace:
    return RoiTargetsTrace(
        rois=original(targets.rois),
        candidate_idx=_cpu(targets.candidate_idx),
        num_proposals=targets.num_proposals,
        labels=_cpu(targets.labels),
        matched_gt_idx=_cpu(targets.matched_gt_idx),
        max_iou=_cpu(targets.max_iou),
        regression_targets=_cpu(targets.regression_targets),
        positive_quota=targets.positive_quota,
    )


def _roi_pool_trace(outputs: StageOutputs, index: int, original, keep_pooled: bool) -> RoiPoolTrace:
    start = sum(len(r) for r in outputs.rois[:index])
    stop = start + len(outputs.rois[index])
    pooled = outputs.pooled[start:stop]
    return RoiPoolTrace(
        boxes=original(outputs.rois[index]),
        level=_cpu(outputs.pool_level[start:stop]),
        output_shape=tuple(int(s) for s in pooled.shape),
        features=_cpu(pooled) if keep_pooled else None,
    )


def detections_trace(detections, original) -> DetectionsTrace:
    return DetectionsTrace(
        class_scores=_cpu(detections.class_scores),
        class_boxes=original(detections.class_boxes),
        candidate_roi_idx=_cpu(detections.candidate_roi_idx),
        candidate_labels=_cpu(detections.candidate_labels),
        candidate_scores=_cpu(detections.candidate_scores),
        candidate_boxes=original(detections.candidate_boxes),
        keep_idx=_cpu(detections.keep_idx),
    )
