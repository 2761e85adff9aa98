"""The stage inspector's re-runs, computed in the engine worker's thread from its latest `Inspection`.

Each entry of `RERUNS` takes the inspection and a `RerunRequest`'s arguments (plain Python data:
boxes are (x1, y1, x2, y2) tuples in original pixels, labels class indices) and returns detached
CPU data, which the UI only reads:

    "anchor-labels"  gt_boxes                         -> AnchorLabelsTrace; None without GT boxes
    "proposals"      nms_thresh, pre_nms_top_n,       -> ProposalsTrace (None keeps a knob at the
                     post_nms_top_n, min_size            model's value)
    "roi-samples"    gt_boxes, gt_labels              -> the training Trace; None without GT boxes
    "roi-pool"       index (a RoI of the inspection)  -> Pooling
    "class-scores"   index (one of its detections)    -> Provenance
    "funnel"         gt_boxes, gt_labels,             -> list[FunnelRow] (`recall_funnel` of the
                     class_names, score_thresh,          inspection's own trace)
                     rpn_config

None of them runs the backbone: they start from the inspection's cache (see `inspection.py`).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from frcnn_core.inspect.funnel import recall_funnel
from frcnn_core.inspect.inspection import Inspection, PoolingGrid


class Pooling(NamedTuple):
    """One RoI's pooled features (C, h, w) and where the pooler looked for them."""

    features: Tensor
    grid: PoolingGrid


def gt_tensors(gt_boxes: list, gt_labels: list | None = None) -> tuple[Tensor, Tensor | None]:
    """gt_boxes as (G, 4) float32 and gt_labels (when given) as (G,) int64."""
    boxes = torch.tensor(gt_boxes, dtype=torch.float32).reshape(-1, 4)
    return boxes, None if gt_labels is None else torch.tensor(gt_labels, dtype=torch.int64).reshape(-1)


def _anchor_labels(inspection: Inspection, gt_boxes: list):
    boxes, _ = gt_tensors(gt_boxes)
    return inspection.relabel_anchors(boxes) if len(boxes) else None


def _roi_samples(inspection: Inspection, gt_boxes: list, gt_labels: list):
    boxes, labels = gt_tensors(gt_boxes, gt_labels)
    return inspection.training_trace_for(boxes, labels) if len(boxes) else None


def _funnel(inspection: Inspection, gt_boxes: list, gt_labels: list, class_names: list[str], score_thresh: float,
            rpn_config) -> list:
    boxes, labels = gt_tensors(gt_boxes, gt_labels)
    return recall_funnel(inspection.trace, boxes, labels, class_names, score_thresh=score_thresh,
                         rpn_config=rpn_config)


RERUNS: dict[str, Callable] = {
    "anchor-labels": _anchor_labels,
    "proposals": lambda inspection, **knobs: inspection.rerun_proposals(**knobs),
    "roi-samples": _roi_samples,
    "roi-pool": lambda inspection, index: Pooling(inspection.pooled_features(index), inspection.sampling_grid(index)),
    "class-scores": lambda inspection, index: inspection.provenance(index),
    "funnel": _funnel,
}
