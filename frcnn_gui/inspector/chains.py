"""Following one box through the stages, as overlay parts and sentences: an anchor forward to its
proposal (`forward_parts`), a proposal to its anchor and detections (`proposal_chain`), a
detection back to its anchor and RoI with the class NMS around it (`provenance_overlay`,
`class_parts`), and a GT box through the recall funnel (`chain_overlay`). Functions of trace
records only; the parts are `stage_overlays.overlay_of`'s."""
from __future__ import annotations

import torch
from PySide6.QtGui import QColor
from torchvision.ops import box_iou

from frcnn_core.inspect.follow import AnchorFate
from frcnn_core.modeling.trace import ProposalsTrace
from frcnn_core.vocabulary import outcome_words
from frcnn_gui.canvas.layers import PALETTE, class_colour
from frcnn_gui.inspector.overlays import (
    NEGATIVE,
    POSITIVE,
    SAMPLE_POINT,
    SUPPRESSOR,
    Overlay,
    class_colour_of,
    dimmed_part,
    overlay_of,
)

CHAIN_LAYER_Z = 25  # the funnel's chain: above the GT boxes, one of which it highlights
CLASS_BOXES_SHOWN = 2  # a RoI's boxes for its next most likely classes, besides the detected one


def forward_parts(trace, fate: AnchorFate) -> list:
    """Where one anchor went: its proposal (white, thick) if it made one, and the kept box that
    suppressed it (red), as `overlay_of` parts."""
    proposals = trace.proposals
    if fate.pre_index is None:
        return []
    tag = f"→ proposal #{fate.post_index}" if fate.post_index is not None else f"→ lost at {fate.lost_at}"
    parts = [(proposals.pre_nms_boxes[fate.pre_index].reshape(1, 4), SAMPLE_POINT, 3.0, [tag])]
    if fate.suppressed_by is not None:
        parts.append((proposals.pre_nms_boxes[fate.suppressed_by].reshape(1, 4), SUPPRESSOR, 2.0,
                      None, [f"#{fate.suppressed_by} kept"]))
    return parts


def proposal_chain(trace, post_index: int, detections) -> tuple[list, str]:
    """Cross-highlight from a post-NMS proposal: the anchor it grew from (cyan), the proposal
    (white, the one tagged) and the detections its RoI gave (class colours; only when `detections`
    came from these very proposals, else None), with one sentence on the chain."""
    proposals = trace.proposals
    pre_index = int(proposals.post_nms_idx[post_index])
    anchor = int(proposals.pre_nms_anchor_idx[pre_index])
    level = int(trace.anchors.level[anchor])
    parts = [(trace.anchors.boxes[anchor].reshape(1, 4), NEGATIVE, 2.0, None, [f"anchor #{anchor}"]),
             (proposals.boxes[post_index].reshape(1, 4), SAMPLE_POINT, 3.0, [f"proposal #{post_index}"])]
    text = (f"Proposal #{post_index} (score {float(proposals.scores[post_index]):.2f}) grew from anchor #{anchor} "
            f"(cyan, level {level}) by the RPN's deltas.")
    if detections is not None:
        mine = torch.nonzero(detections.roi_idx == post_index).flatten()
        for index in mine.tolist():
            label = int(detections.labels[index])
            parts.append((detections.boxes[index].reshape(1, 4), QColor(PALETTE[label % len(PALETTE)]), 2.0,
                          None, [f"{float(detections.scores[index]):.2f}"]))
        text += (f" As a RoI it gave {len(mine)} final detection{'s' if len(mine) != 1 else ''}"
                 + (": " + ", ".join(f"{float(detections.scores[i]):.2f}" for i in mine.tolist()) if len(mine) else "")
                 + ".")
    return parts, text


NEIGHBOUR_IOU = 0.3  # the candidates drawn around a detection: those overlapping it at least this much


def class_neighbours(detections, detection: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The candidates (before class NMS) of detection `detection`'s class that overlap it by IoU >=
    NEIGHBOUR_IOU, other than itself: their candidate indices (n,) and IoUs (n,)."""
    candidate = int(detections.keep_idx[detection])
    label = detections.candidate_labels[candidate]
    iou = box_iou(detections.candidate_boxes[candidate].reshape(1, 4), detections.candidate_boxes)[0]
    near = (detections.candidate_labels == label) & (iou >= NEIGHBOUR_IOU)
    near[candidate] = False
    indices = torch.nonzero(near).flatten()
    return indices, iou[indices]


def detections_part(detections, shown: torch.Tensor, class_names: list[str]) -> tuple:
    """The detections of indices `shown` (n,) as one dimmed `overlay_of` part, each "class score"
    under the mouse: the ones a click can pick, behind the selected one."""
    labels, scores = detections.labels[shown].tolist(), detections.scores[shown].tolist()
    names = [class_names[label] if label < len(class_names) else str(label) for label in labels]
    return dimmed_part((detections.boxes[shown], [class_colour_of(class_names, label) for label in labels], 1.0,
                        None, [f"{name} {score:.2f}" for name, score in zip(names, scores, strict=True)]))


def class_parts(detections, detection: int, class_names: list[str], others: int = CLASS_BOXES_SHOWN) -> list:
    """The class stage around detection `detection`: the candidates of its class that overlap it
    (thin: the ones class NMS weighed against it), and its RoI's refined boxes for the `others`
    next most likely classes (medium, class and score under the mouse), as `overlay_of` parts."""
    roi_index, label = int(detections.roi_idx[detection]), int(detections.labels[detection])
    neighbours, _ = class_neighbours(detections, detection)
    parts = [(detections.candidate_boxes[neighbours], class_colour_of(class_names, label), 1.0, None)]
    scores = detections.class_scores[roi_index].clone()
    scores[[0, label]] = -1.0  # background has no box; the detected class is drawn by the chain
    for other in torch.argsort(scores, descending=True)[:others].tolist():
        if scores[other] >= 0:
            name = class_names[other] if other < len(class_names) else str(other)
            parts.append((detections.class_boxes[roi_index, other].reshape(1, 4), class_colour_of(class_names, other),
                          1.5, None, [f"{name} {float(scores[other]):.2f}"]))
    return parts


def class_text(detections, detection: int, class_names: list[str], nms_thresh: float) -> str:
    """Class NMS around detection `detection`, in a sentence."""
    label = int(detections.labels[detection])
    name = class_names[label] if label < len(class_names) else str(label)
    candidates = int((detections.candidate_labels == label).sum())
    neighbours, iou = class_neighbours(detections, detection)
    score = float(detections.scores[detection])
    removed = int(((iou > nms_thresh) & (detections.candidate_scores[neighbours] <= score)).sum())
    return (f"{name} had {candidates:,} candidate boxes before class NMS; {len(neighbours):,} overlap this detection"
            f" by IoU ≥ {NEIGHBOUR_IOU:g} (thin), and {removed:,} of them, overlapping by more than {nms_thresh:g} with"
            f" a lower score, were removed in its favour. Medium: this RoI's boxes for other classes (class and score"
            f" under the mouse).")


def provenance_overlay(provenance, class_name: str, under: list | None = None) -> Overlay:
    """`under` parts, then one detection's chain: its anchor (cyan), the proposal (= RoI) the RPN
    made of it (yellow) and the final box (class colour, thick), only the final box tagged: the
    chain's boxes share corners (the others' tags show under the mouse)."""
    return overlay_of([*(under or []), (provenance.anchor_box.reshape(1, 4), NEGATIVE, 2.0, None, ["anchor"]),
                     (provenance.proposal_box.reshape(1, 4), POSITIVE, 2.0, None, ["proposal = RoI"]),
                     (provenance.detection_box.reshape(1, 4), class_colour(class_name), 3.0,
                      [f"{class_name} {provenance.score:.2f}"])])


def provenance_text(provenance, class_name: str) -> str:
    """The chain in words, with the deltas of each step."""
    def box(values) -> str:
        return "(" + ", ".join(f"{v:.0f}" for v in values.tolist()) + ")"

    def deltas(values) -> str:
        return "(" + ", ".join(f"{v:+.2f}" for v in values.tolist()) + ")"

    return (f"Detection {provenance.detection_index}: anchor {provenance.anchor_index} {box(provenance.anchor_box)}"
            f" → RPN deltas {deltas(provenance.anchor_deltas)}, objectness {provenance.objectness:.2f}"
            f" → proposal {provenance.proposal_index} {box(provenance.proposal_box)} = RoI {provenance.roi_index}"
            f" → {class_name} deltas {deltas(provenance.class_deltas)} → box {box(provenance.detection_box)},"
            f" score {provenance.score:.2f}.")


def best_proposal_index(proposals: ProposalsTrace, gt_box: torch.Tensor) -> int | None:
    """The valid pre-NMS proposal with the highest IoU with gt_box (4,), as the funnel follows it;
    None when none overlaps it."""
    iou = torch.where(proposals.valid, box_iou(gt_box.reshape(1, 4), proposals.pre_nms_boxes)[0], -1.0)
    return int(iou.argmax()) if len(iou) and float(iou.max()) > 0 else None


def chain_overlay(row, trace) -> Overlay:
    """A funnel row's chain: its best anchor (cyan), best proposal (yellow), the box that
    suppressed that proposal (red, if any), and the GT box itself (white, thick). Only the GT box
    is tagged: the chain's boxes share corners, so their tags would cover each other (the funnel
    panel gives the colours)."""
    proposals = trace.proposals
    gt_box = torch.tensor(row.box, dtype=torch.float32)
    parts = [(trace.anchors.boxes[row.best_anchor_index].reshape(1, 4), NEGATIVE, 2.0, None)]
    best = best_proposal_index(proposals, gt_box)
    if best is not None:
        parts.append((proposals.pre_nms_boxes[best].reshape(1, 4), POSITIVE, 2.0, None))
    if row.suppressed_by is not None:
        parts.append((proposals.pre_nms_boxes[row.suppressed_by].reshape(1, 4), SUPPRESSOR, 2.0, None))
    tag = f"GT {row.gt_index} {row.label}: {outcome_words(row.lost_at)}"
    parts.append((gt_box.reshape(1, 4), SAMPLE_POINT, 3.0, [tag]))
    return overlay_of(parts)
