"""Following boxes forward through the stages of one trace: what became of an anchor (did its
proposal make the level's top-N, the filters, NMS, the post-NMS top-N?), and the rows of the RoI
samples a training pass would take (matched GT box, IoU, regression targets).

These are the inspector's "follow it forward" views; the recall funnel (`diagnose.py`) follows a
GT box instead. Functions of trace records only.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.ops import box_iou

from frcnn_core.modeling.trace import ProposalsTrace, RoiTargetsTrace, Trace

NOT_IN_TOP_N = "top-N per level"  # the proposal layer took only the best anchors of each level
FILTERED = "min-size / score filter"
SUPPRESSED = "NMS"
POST_NMS_TOP_N = "post-NMS top-N"


@dataclass(frozen=True)
class AnchorFate:
    """What the proposal layer did with one anchor's proposal. score: its objectness probability;
    level_rank: its rank by score within its level (0 = best); pre_index / post_index: its place
    among the pre-NMS proposals / the proposals (None when it did not get there); suppressed_by:
    the pre-NMS index of the kept box that suppressed it, with their IoU; lost_at: the first stage
    that dropped it (one of the constants above), None when it became a proposal."""

    anchor: int
    level: int
    score: float
    level_rank: int
    pre_index: int | None
    post_index: int | None
    suppressed_by: int | None
    suppressor_iou: float | None
    lost_at: str | None


def anchor_fate(trace: Trace, anchor: int) -> AnchorFate:
    """Follow anchor `anchor` of trace forward to the proposals."""
    anchors, proposals = trace.anchors, trace.proposals
    level = int(anchors.level[anchor])
    logits = trace.objectness.logits
    same_level = anchors.level == level
    score = float(torch.sigmoid(logits[anchor]))
    level_rank = int((same_level & (logits > logits[anchor])).sum())
    found = torch.nonzero(proposals.pre_nms_anchor_idx == anchor).flatten()
    if len(found) == 0:
        return AnchorFate(anchor, level, score, level_rank, None, None, None, None, NOT_IN_TOP_N)
    pre_index = int(found[0])
    suppressor = int(proposals.suppressed_by[pre_index])
    if suppressor >= 0:
        iou = float(box_iou(proposals.pre_nms_boxes[[pre_index]], proposals.pre_nms_boxes[[suppressor]])[0, 0])
        return AnchorFate(anchor, level, score, level_rank, pre_index, None, suppressor, iou, SUPPRESSED)
    if not bool(proposals.valid[pre_index]):
        return AnchorFate(anchor, level, score, level_rank, pre_index, None, None, None, FILTERED)
    post = torch.nonzero(proposals.post_nms_idx == pre_index).flatten()
    if len(post) == 0:
        return AnchorFate(anchor, level, score, level_rank, pre_index, None, None, None, POST_NMS_TOP_N)
    return AnchorFate(anchor, level, score, level_rank, pre_index, int(post[0]), None, None, None)


def fate_text(fate: AnchorFate, proposals: ProposalsTrace) -> str:
    """One sentence: where anchor `fate.anchor`'s proposal went."""
    head = (f"Anchor #{fate.anchor} (level {fate.level}, objectness {fate.score:.2f}, rank {fate.level_rank + 1:,}"
            f" in its level)")
    if fate.lost_at == NOT_IN_TOP_N:
        return f"{head} was not among its level's best before NMS: no proposal."
    made = f"{head} → pre-NMS proposal #{fate.pre_index}"
    if fate.lost_at == SUPPRESSED:
        return f"{made}, suppressed by #{fate.suppressed_by} (IoU {fate.suppressor_iou:.2f})."
    if fate.lost_at == FILTERED:
        return f"{made}, dropped by the min-size / score filter."
    if fate.lost_at == POST_NMS_TOP_N:
        return f"{made}, survived NMS but fell outside the post-NMS top {len(proposals.post_nms_idx):,}."
    return f"{made} → proposal #{fate.post_index} (rank {fate.post_index + 1:,} after NMS)."


@dataclass(frozen=True)
class RoiSampleRow:
    """One sampled RoI: foreground or not, its class, its best IoU with a GT box and that box's
    index, where it came from ("proposal #i" or "GT #g" — training adds the GT boxes to the
    candidates), and the regression targets (dx, dy, dw, dh) that would move it onto that GT box
    (with the second stage's box weights; meaningful for foreground RoIs)."""

    index: int
    foreground: bool
    label: int
    iou: float
    gt_index: int
    source: str
    targets: tuple[float, float, float, float]


def roi_sample_rows(targets: RoiTargetsTrace) -> list[RoiSampleRow]:
    """The sampled RoIs in the batch's order (foreground first, as the sampler lays them out)."""
    rows = []
    for index in range(len(targets.labels)):
        candidate = int(targets.candidate_idx[index])
        source = (f"proposal #{candidate}" if candidate < targets.num_proposals
                  else f"GT #{candidate - targets.num_proposals}")
        rows.append(RoiSampleRow(index, bool(targets.labels[index] > 0), int(targets.labels[index]),
                                 float(targets.max_iou[index]), int(targets.matched_gt_idx[index]), source,
                                 tuple(float(v) for v in targets.regression_targets[index])))
    return rows
