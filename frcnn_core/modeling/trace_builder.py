"""Turn one pass's `StageOutputs` into a `trace.Trace` per image.

Only called when the caller asked for a trace, so none of this costs anything otherwise. The
stages' records are the trace's records: here their boxes go from input to original pixels and
everything is detached and moved to the CPU, so a trace can cross threads safely.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace
from typing import TypeVar

from torch import Tensor

from frcnn_core.modeling import transform
from frcnn_core.modeling.anchors import inside_mask
from frcnn_core.modeling.rpn import AnchorTargets, nms_suppressors
from frcnn_core.modeling.stage_outputs import StageOutputs
from frcnn_core.modeling.trace import (
    AnchorLabelsTrace,
    AnchorsTrace,
    ObjectnessTrace,
    ProposalsTrace,
    RoiPoolTrace,
    Trace,
)

Record = TypeVar("Record")
# input-pixel boxes (..., 4) on any device -> original-pixel boxes, detached, on the CPU
ToOriginal = Callable[[Tensor], Tensor]


def _cpu(tensor: Tensor) -> Tensor:
    return tensor.detach().cpu()


def build_trace(outputs: StageOutputs, index: int, keep_pooled: bool) -> Trace:
    """The Trace of image `index` of the batch."""
    start = outputs.backbone
    batch = start.batch

    def original(boxes: Tensor) -> Tensor:
        return _cpu(transform.to_original(boxes.detach(), batch, index))

    anchors = start.anchors
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
        objectness=ObjectnessTrace(_cpu(start.objectness[index]), _cpu(start.deltas[index])),
        proposals=proposals_trace(outputs.proposals[index], original),
        roi_pool=_roi_pool_trace(outputs, index, original, keep_pooled),
        anchor_labels=anchor_labels_trace(outputs.anchor_targets[index]) if training else None,
        roi_targets=in_original_pixels(outputs.roi_targets[index], original) if training else None,
        detections=None if training else in_original_pixels(outputs.detections[index], original),
    )


def in_original_pixels(record: Record, original: ToOriginal) -> Record:
    """A stage's record (a frozen dataclass of `trace`) as a trace holds it: every tensor detached
    on the CPU, and the fields its `box_fields` names mapped to original pixels by `original`."""
    moved = {
        field.name: original(value) if field.name in record.box_fields else _cpu(value)
        for field in fields(record)
        if isinstance(value := getattr(record, field.name), Tensor)
    }
    return replace(record, **moved)


def proposals_trace(proposals: ProposalsTrace, original: ToOriginal) -> ProposalsTrace:
    """The proposal layer's record as a trace holds it, with `suppressed_by` filled in (computed
    on the stage's own boxes, in input pixels)."""
    suppressed_by = nms_suppressors(
        proposals.pre_nms_boxes,
        proposals.pre_nms_scores,
        proposals.pre_nms_level,
        proposals.valid,
        proposals.nms_keep_idx,
        proposals.nms_thresh,
    )
    return replace(in_original_pixels(proposals, original), suppressed_by=_cpu(suppressed_by))


def anchor_labels_trace(targets: AnchorTargets) -> AnchorLabelsTrace:
    """The anchor labels and the sampled mini-batch of one image (not the regression targets)."""
    return AnchorLabelsTrace(
        labels=_cpu(targets.match.labels),
        matched_gt_idx=_cpu(targets.match.matched_gt_idx),
        max_iou=_cpu(targets.match.max_iou),
        sampled_pos_idx=_cpu(targets.sampled_pos_idx),
        sampled_neg_idx=_cpu(targets.sampled_neg_idx),
    )


def _roi_pool_trace(outputs: StageOutputs, index: int, original: ToOriginal, keep_pooled: bool) -> RoiPoolTrace:
    start = sum(len(r) for r in outputs.rois[:index])
    stop = start + len(outputs.rois[index])
    pooled = outputs.pooled.features[start:stop]
    return RoiPoolTrace(
        boxes=original(outputs.rois[index]),
        level=_cpu(outputs.pooled.level[start:stop]),
        output_shape=tuple(int(s) for s in pooled.shape),
        features=_cpu(pooled) if keep_pooled else None,
    )
