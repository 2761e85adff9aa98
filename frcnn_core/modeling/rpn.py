"""Region proposal network: the head (learned), anchor targets, the proposal layer and the loss.

Shapes: N images, A anchors per image (all levels, order of `anchors.py`), P pre-NMS proposals,
K boxes kept by NMS. The head's parameter names match torchvision's `RPNHead`, so its
state_dicts load unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import batched_nms, box_iou

from frcnn_core.modeling import boxes as box_ops
from frcnn_core.modeling.config import IGNORE, NEG, POS, RPNConfig
from frcnn_core.modeling.matching import MatchResult, match
from frcnn_core.modeling.sampling import sample_balanced
from frcnn_core.modeling.trace import ProposalsTrace


class RPNHead(nn.Module):
    """`conv_depth` 3x3 conv + ReLU layers, then 1x1 convs for objectness (one logit per anchor
    shape) and box deltas (4 per shape). Shared by all feature levels."""

    def __init__(self, in_channels: int, num_anchors: int, conv_depth: int = 1):
        super().__init__()
        self.conv = nn.Sequential(
            *[
                nn.Sequential(nn.Conv2d(in_channels, in_channels, 3, padding=1), nn.ReLU(inplace=True))
                for _ in range(conv_depth)
            ]
        )
        self.cls_logits = nn.Conv2d(in_channels, num_anchors, 1)
        self.bbox_pred = nn.Conv2d(in_channels, num_anchors * 4, 1)
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.normal_(layer.weight, std=0.01)
                nn.init.constant_(layer.bias, 0)

    def forward(self, features: list[Tensor]) -> tuple[Tensor, Tensor]:
        """features: per level (N, C, Hl, Wl). Returns objectness (N, A) and deltas (N, A, 4)."""
        logits, deltas = [], []
        for feature in features:
            hidden = self.conv(feature)
            level_logits = self.cls_logits(hidden)
            level_deltas = self.bbox_pred(hidden)
            batch, shapes, height, width = level_logits.shape
            # (N, S, H, W) -> (N, H*W*S): anchor order is row, column, shape
            logits.append(level_logits.permute(0, 2, 3, 1).reshape(batch, -1))
            # (N, S*4, H, W) -> (N, S, 4, H, W) -> (N, H*W*S, 4)
            level_deltas = level_deltas.view(batch, shapes, 4, height, width).permute(0, 3, 4, 1, 2)
            deltas.append(level_deltas.reshape(batch, -1, 4))
        return torch.cat(logits, dim=1), torch.cat(deltas, dim=1)


@dataclass(frozen=True)
class AnchorTargets:
    """One image's RPN training targets: the match, the sampled mini-batch and the regression
    targets (A, 4) (meaningful where labels == POS)."""

    match: MatchResult
    sampled_pos_idx: Tensor
    sampled_neg_idx: Tensor
    regression_targets: Tensor


def anchor_targets(
    anchors: Tensor, inside: Tensor, gt_boxes: Tensor, config: RPNConfig, generator: torch.Generator | None,
    iou: Tensor | None = None,
) -> AnchorTargets:
    """Label anchors against GT boxes (0.7/0.3 rule + best anchor per GT), then sample the batch.

    anchors: (A, 4); inside: (A,) bool; gt_boxes: (G, 4), G may be 0. With
    `config.ignore_cross_boundary`, anchors not fully inside the image are IGNORE (the paper).
    iou: box_iou(gt_boxes, anchors) when the caller has it already (the inspector keeps the rows
    of the boxes a drag does not move).
    """
    iou = box_iou(gt_boxes, anchors) if iou is None else iou
    if config.ignore_cross_boundary:
        iou = iou * inside  # outside anchors take part in no match, best-anchor ones included
    result = match(iou, config.fg_iou_thresh, config.bg_iou_thresh, config.allow_low_quality_matches)
    if config.ignore_cross_boundary:
        result.labels[~inside] = IGNORE
    sampled_pos, sampled_neg = sample_balanced(
        result.labels == POS, result.labels == NEG, config.batch_size_per_image, config.positive_fraction, generator
    )
    if len(gt_boxes):
        targets = box_ops.encode(gt_boxes[result.matched_gt_idx], anchors, config.box_weights)
    else:
        targets = torch.zeros_like(anchors)
    return AnchorTargets(result, sampled_pos, sampled_neg, targets)


def rpn_loss(
    objectness: list[Tensor], deltas: list[Tensor], targets: list[AnchorTargets], beta: float
) -> tuple[Tensor, Tensor]:
    """Binary cross-entropy over the sampled anchors and smooth-L1 over the sampled positives, both
    normalised by the number of sampled anchors in the batch (as torchvision). Per image lists of
    (A,) logits, (A, 4) deltas and targets. Returns (loss_objectness, loss_rpn_box_reg)."""
    sampled = [torch.cat([t.sampled_pos_idx, t.sampled_neg_idx]) for t in targets]
    logits = torch.cat([o[idx] for o, idx in zip(objectness, sampled, strict=True)])
    labels = torch.cat([(t.match.labels[idx] == POS).to(logits.dtype) for t, idx in zip(targets, sampled, strict=True)])
    pred = torch.cat([d[t.sampled_pos_idx] for d, t in zip(deltas, targets, strict=True)])
    wanted = torch.cat([t.regression_targets[t.sampled_pos_idx] for t in targets])
    num_sampled = max(labels.numel(), 1)
    box_loss = F.smooth_l1_loss(pred, wanted, beta=beta, reduction="sum") / num_sampled
    if labels.numel() == 0:
        return logits.sum() * 0, box_loss
    return F.binary_cross_entropy_with_logits(logits, labels), box_loss


def top_n_per_level(objectness: Tensor, num_per_level: list[int], top_n: int) -> Tensor:
    """Anchor indices of the `top_n` highest logits of each level, level by level, best first.

    objectness: (A,) or (N, A); returns (P,) or (N, P) — one top-k per level for the whole batch.
    """
    chosen, offset = [], 0
    for level_logits in objectness.split(num_per_level, dim=-1):
        count = min(top_n, level_logits.shape[-1])
        chosen.append(level_logits.topk(count, dim=-1).indices + offset)
        offset += level_logits.shape[-1]
    return torch.cat(chosen, dim=-1)


def propose(
    objectness: Tensor,
    deltas: Tensor,
    anchors: Tensor,
    levels: Tensor,
    num_per_level: list[int],
    image_sizes: list[tuple[int, int]],
    config: RPNConfig,
) -> list[ProposalsTrace]:
    """Top-N per level, decode, clip, drop small and low-scoring boxes, NMS per level, top-N.

    objectness: (N, A) logits; deltas: (N, A, 4); anchors: (A, 4); levels: (A,) level id;
    image_sizes: (h, w) of each resized image. Returns one record per image, in input pixels
    (`suppressed_by` left None). Top-N, decoding and the sigmoid run once for the batch; filtering
    and NMS per image. Invariants: post_nms_idx is a prefix of nms_keep_idx;
    scores along nms_keep_idx are non-increasing within each level. Boxes and scores are float32
    whatever the head's dtype (AMP), as NMS needs one dtype for both.
    """
    objectness = objectness.detach().float()
    pre_idx = top_n_per_level(objectness, num_per_level, config.pre_nms_top_n)  # (N, P)
    picked_deltas = torch.gather(deltas.detach(), 1, pre_idx[..., None].expand(-1, -1, 4))
    # (N, P, 4) -> (N*P, 4) for decoding, then back
    decoded = box_ops.decode(picked_deltas.reshape(-1, 4), anchors[pre_idx.reshape(-1)], config.box_weights)
    decoded = decoded.reshape(pre_idx.shape + (4,))
    pre_scores = torch.sigmoid(torch.gather(objectness, 1, pre_idx))
    pre_levels = levels[pre_idx]
    return [
        _filter_and_nms(pre_idx[i], box_ops.clip(decoded[i], size), pre_scores[i], pre_levels[i], config)
        for i, size in enumerate(image_sizes)
    ]


def _filter_and_nms(pre_idx: Tensor, pre_boxes: Tensor, pre_scores: Tensor, pre_levels: Tensor,
                    config: RPNConfig) -> ProposalsTrace:
    valid = box_ops.small_box_mask(pre_boxes, config.min_size) & (pre_scores >= config.score_thresh)
    valid_idx = torch.nonzero(valid).flatten()
    keep = valid_idx[batched_nms(pre_boxes[valid_idx], pre_scores[valid_idx], pre_levels[valid_idx], config.nms_thresh)]
    return ProposalsTrace(pre_nms_boxes=pre_boxes, pre_nms_scores=pre_scores, pre_nms_anchor_idx=pre_idx,
                          pre_nms_level=pre_levels, valid=valid, nms_keep_idx=keep,
                          post_nms_idx=keep[: config.post_nms_top_n], nms_thresh=config.nms_thresh)


def nms_suppressors(boxes: Tensor, scores: Tensor, groups: Tensor, valid: Tensor, keep: Tensor,
                    thresh: float) -> Tensor:
    """For each box removed by greedy NMS, the kept box that removed it.

    boxes (P, 4), scores (P,), groups (P,) (NMS runs per group), valid (P,) bool (boxes that
    entered NMS), keep (K,) NMS output, best first. Returns (P,) int64: the index of the first kept
    box, in processing order, of the same group with IoU > thresh and a score at least as high;
    -1 for kept boxes and for boxes that never entered NMS.
    """
    suppressed_by = torch.full((len(boxes),), -1, dtype=torch.int64, device=boxes.device)
    is_kept = torch.zeros(len(boxes), dtype=torch.bool, device=boxes.device)
    is_kept[keep] = True
    removed = torch.nonzero(valid & ~is_kept).flatten()
    if removed.numel() == 0 or keep.numel() == 0:
        return suppressed_by
    # one group (FPN level) at a time: the IoU matrix stays removed x kept of that group, not of all
    for group in torch.unique(groups[removed]):
        lost, kept = removed[groups[removed] == group], keep[groups[keep] == group]
        if kept.numel() == 0:
            continue
        overlaps = box_iou(boxes[lost], boxes[kept]) > thresh
        earlier = scores[kept][None, :] >= scores[lost][:, None]
        candidates = overlaps & earlier
        # first True column in keep order (kept keeps keep's order); argmax on int finds the first maximum
        first = candidates.to(torch.int8).argmax(dim=1)
        found = candidates.any(dim=1)
        suppressed_by[lost[found]] = kept[first[found]]
    return suppressed_by
