"""Proposal-target layer: which proposals train the second stage, and towards what.

Shapes: N proposals, G GT boxes, R sampled RoIs. Candidates are the N proposals followed by the G
GT boxes (when `add_gt_as_proposals`, so that every GT box has at least one perfect RoI early in
training). A candidate is foreground when its best IoU with a GT box is >= `fg_iou_thresh`,
background when it lies in [`bg_iou_thresh_lo`, `bg_iou_thresh_hi`), ignored otherwise.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import box_iou

from frcnn_core.modeling import boxes as box_ops
from frcnn_core.modeling.config import BACKGROUND, RoIConfig
from frcnn_core.modeling.sampling import sample_balanced
from frcnn_core.modeling.trace import RoiTargetsTrace


def roi_targets(
    proposals: Tensor, gt_boxes: Tensor, gt_labels: Tensor, config: RoIConfig, generator: torch.Generator | None
) -> RoiTargetsTrace:
    """Sample RoIs among proposals (+ GT boxes) and compute their class and box targets.

    proposals: (N, 4); gt_boxes: (G, 4), in the same pixels; gt_labels: (G,) int64, >= 1. Returns
    the record in those pixels. Invariants: at most `positive_quota` foreground RoIs and at most
    `batch_size_per_image` in all.
    """
    candidates = torch.cat([proposals, gt_boxes]) if config.add_gt_as_proposals else proposals
    if len(gt_boxes):
        max_iou, matched_gt_idx = box_iou(gt_boxes, candidates).max(dim=0)
    else:
        max_iou = torch.zeros(len(candidates), dtype=candidates.dtype, device=candidates.device)
        matched_gt_idx = torch.zeros(len(candidates), dtype=torch.int64, device=candidates.device)
    foreground = max_iou >= config.fg_iou_thresh
    background = (max_iou < config.bg_iou_thresh_hi) & (max_iou >= config.bg_iou_thresh_lo)
    pos_idx, neg_idx = sample_balanced(
        foreground, background, config.batch_size_per_image, config.positive_fraction, generator
    )
    sampled = torch.cat([pos_idx, neg_idx])
    labels = torch.full((len(sampled),), BACKGROUND, dtype=torch.int64, device=candidates.device)
    if len(gt_boxes):
        labels[: len(pos_idx)] = gt_labels[matched_gt_idx[pos_idx]]
        targets = box_ops.encode(gt_boxes[matched_gt_idx[sampled]], candidates[sampled], config.box_weights)
    else:
        targets = torch.zeros((len(sampled), 4), dtype=candidates.dtype, device=candidates.device)
    return RoiTargetsTrace(
        rois=candidates[sampled],
        candidate_idx=sampled,
        num_proposals=len(proposals),
        labels=labels,
        matched_gt_idx=matched_gt_idx[sampled],
        max_iou=max_iou[sampled],
        regression_targets=targets,
        positive_quota=int(config.batch_size_per_image * config.positive_fraction),
    )
