"""What each stage draws as boxes: overlay builders, functions of trace records only (no Qt beyond
colours). Each returns an `Overlay` of N boxes in original-image pixels with a colour, a pen width
and a tag each, drawn lowest first. The heatmaps (objectness, pooled features) are in
`stage_pictures.py`."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PySide6.QtGui import QColor
from torchvision.ops import box_iou

from frcnn_core.config import NEG, POS
from frcnn_core.explain import explain
from frcnn_core.follow import AnchorFate, RoiSampleRow, anchor_fate, roi_sample_rows
from frcnn_core.trace import AnchorLabelsTrace, AnchorsTrace, ProposalsTrace
from frcnn_gui.canvas.layers import PALETTE, class_colour

STAGE_LAYER_Z = 15  # above the detections (10), below the GT boxes (20) they are judged against
ANCHORS_DRAWN = 4000  # the most anchors drawn at once: a repaint takes about 20 ms on this CPU (38,280: 300-800 ms)
ANCHOR_SAMPLE = 60  # inside anchors drawn faintly, to show how densely they cover the image
CLASS_BOXES_SHOWN = 2  # a RoI's boxes for its next most likely classes, besides the detected one
PROPOSALS_SHOWN = 100  # the best proposals drawn by default: more make a busy picture
SCORE_TAGS = 10  # the best proposals carry their score
# yellow and cyan: apart from the GT class colours, which are drawn on top of them
POSITIVE, NEGATIVE, SAMPLE = QColor("#ffe119"), QColor("#42d4f4"), QColor(200, 200, 200)
BACKGROUND_ROI = QColor(170, 170, 170)
GRID, SAMPLE_POINT, SELECTED = QColor("#f58231"), QColor("#ffffff"), QColor("#ffe119")
POINT_RADIUS = 0.75  # original pixels: a sample point is drawn as a box this far around it
CHAIN_LAYER_Z = 25  # the funnel's chain: above the GT boxes, one of which it highlights
FUNNEL_SCORE_THRESH = 0.5  # a GT box counts as detected at the detections panel's default threshold
SUPPRESSOR = QColor("#e6194b")


@dataclass(frozen=True)
class Overlay:
    """boxes (N, 4) float64 original pixels; colours N QColors; widths (N,) screen pixels; tags N."""

    boxes: np.ndarray
    colours: list[QColor]
    widths: np.ndarray
    tags: list[str]


def _overlay(parts: list[tuple[torch.Tensor, QColor | list[QColor], float, list[str] | None]]) -> Overlay:
    """Concatenate (boxes (n, 4), colour or n colours, width, tags or None) parts, first drawn first."""
    boxes, colours, widths, tags = [], [], [], []
    for part_boxes, colour, width, part_tags in parts:
        count = len(part_boxes)
        boxes.append(part_boxes.double().numpy().reshape(-1, 4))
        colours += colour if isinstance(colour, list) else [colour] * count
        widths.append(np.full(count, width))
        tags += part_tags if part_tags is not None else [""] * count
    return Overlay(np.concatenate(boxes), colours, np.concatenate(widths), tags)


def cell_anchor_idx(anchors: AnchorsTrace, x: float, y: float) -> list[torch.Tensor]:
    """Per level, the anchor indices of the feature cell whose anchors are centred nearest to
    (x, y) in original pixels. Anchors are laid out level by level, cell by cell, shapes within
    a cell: (H*W*A,) per level."""
    centres = (anchors.boxes[:, :2] + anchors.boxes[:, 2:]) / 2  # (A, 2)
    distance = ((centres - torch.tensor([x, y], dtype=centres.dtype)) ** 2).sum(dim=1)
    cells, start = [], 0
    for (height, width), shapes in zip(anchors.grid_sizes, anchors.shapes_per_cell):
        count = height * width * shapes
        nearest = int(distance[start: start + count].argmin())
        cells.append(start + (nearest // shapes) * shapes + torch.arange(shapes))
        start += count
    return cells


def anchor_shape_mask(anchors: AnchorsTrace, config, level: int | None = None, size: float | None = None,
                      ratio: float | None = None) -> torch.Tensor:
    """(A,) bool: the anchors of the chosen level, size and ratio (None: any). config is the
    model's AnchorConfig; shapes within a cell are ratio-major, then size (frcnn_core.anchors)."""
    masks = []
    for index, ((height, width), sizes, ratios) in enumerate(zip(anchors.grid_sizes, config.sizes,
                                                                 config.aspect_ratios)):
        # (len(ratios), len(sizes)) -> (shapes,), ratio-major as the cell's shapes
        shape_keep = (torch.tensor([size is None or size == value for value in sizes])[None, :]
                      & torch.tensor([ratio is None or ratio == value for value in ratios])[:, None]).reshape(-1)
        masks.append(shape_keep.repeat(height * width) & (level is None or level == index))
    return torch.cat(masks)


def anchors_overlay(anchors: AnchorsTrace, x: float, y: float, keep: torch.Tensor | None = None,
                    highlighted: list | None = None, scope: str = "cell") -> Overlay:
    """Scope "cell": a faint even sample of the inside anchors, then the anchors of the cell nearest
    (x, y), one colour per level; "inside" / "all": every anchor inside the image / every anchor,
    thin, one colour per level. Then `highlighted` parts. keep (A,) bool (None: all) restricts the
    anchors drawn to some shapes. In a cell, the largest square(st) shape of each level is tagged
    with its level and size (the largest: their corners lie furthest apart, so the tags do not
    cover each other)."""
    keep = torch.ones(len(anchors.boxes), dtype=torch.bool) if keep is None else keep
    if scope != "cell":
        chosen = scoped_anchor_idx(anchors, keep, scope)
        parts = [(anchors.boxes[chosen[anchors.level[chosen] == level]], QColor(PALETTE[level % len(PALETTE)]), 1.0,
                  None) for level in range(len(anchors.grid_sizes))]
        return _overlay(parts + (highlighted or []))
    inside = torch.nonzero(anchors.inside & keep).flatten()
    sample = inside[torch.linspace(0, len(inside) - 1, min(ANCHOR_SAMPLE, len(inside))).long()]
    parts = [(anchors.boxes[sample], SAMPLE, 1.0, None)]
    for level, cell in enumerate(cell_anchor_idx(anchors, x, y)):
        cell = cell[keep[cell]]
        if not len(cell):
            continue
        boxes = anchors.boxes[cell]
        sides = boxes[:, 2:] - boxes[:, :2]
        squareness = (sides[:, 0] / sides[:, 1]).log().abs()
        square = squareness <= squareness.min() + 1e-3
        squarest = int(torch.where(square, sides.prod(dim=1), -1.0).argmax())
        tags = [f"level {level}: {sides[row, 0]:.0f} px" if row == squarest else "" for row in range(len(cell))]
        parts.append((boxes, QColor(PALETTE[level % len(PALETTE)]), 2.0, tags))
    return _overlay(parts + (highlighted or []))


def scoped_anchor_idx(anchors: AnchorsTrace, keep: torch.Tensor, scope: str) -> torch.Tensor:
    """The indices of the kept anchors inside the image ("inside") or of all kept anchors ("all"),
    an even sample of ANCHORS_DRAWN of them when there are more (tens of thousands of boxes take
    most of a second to paint)."""
    chosen = torch.nonzero(keep & anchors.inside if scope == "inside" else keep).flatten()
    if len(chosen) > ANCHORS_DRAWN:
        chosen = chosen[torch.linspace(0, len(chosen) - 1, ANCHORS_DRAWN).long()]
    return chosen


def cell_fates(trace, x: float, y: float, keep: torch.Tensor) -> list[AnchorFate]:
    """Per level with a kept anchor in the cell nearest (x, y): the fate of that cell's
    highest-scoring kept anchor."""
    fates = []
    for cell in cell_anchor_idx(trace.anchors, x, y):
        cell = cell[keep[cell]]
        if len(cell):
            fates.append(anchor_fate(trace, int(cell[trace.objectness.logits[cell].argmax()])))
    return fates


def forward_parts(trace, fate: AnchorFate) -> list:
    """Where one anchor went: its proposal (white, thick) if it made one, and the kept box that
    suppressed it (red), as `_overlay` parts."""
    proposals = trace.proposals
    if fate.pre_index is None:
        return []
    tag = f"→ proposal #{fate.post_index}" if fate.post_index is not None else f"→ lost at {fate.lost_at}"
    parts = [(proposals.pre_nms_boxes[fate.pre_index].reshape(1, 4), SAMPLE_POINT, 3.0, [tag])]
    if fate.suppressed_by is not None:
        parts.append((proposals.pre_nms_boxes[fate.suppressed_by].reshape(1, 4), SUPPRESSOR, 2.0,
                      [f"#{fate.suppressed_by} kept"]))
    return parts


def anchor_labels_overlay(anchors: AnchorsTrace, labels: AnchorLabelsTrace) -> Overlay:
    """The sampled negatives (thin cyan), every positive (yellow), the sampled positives thicker."""
    positive = torch.nonzero(labels.labels == POS).flatten()
    sampled_neg = labels.sampled_neg_idx[labels.labels[labels.sampled_neg_idx] == NEG]
    return _overlay([(anchors.boxes[sampled_neg], NEGATIVE, 1.0, None),
                     (anchors.boxes[positive], POSITIVE, 1.0, None),
                     (anchors.boxes[labels.sampled_pos_idx], POSITIVE, 3.0, None)])


def score_colour(score: float) -> QColor:
    """Blue (0) through green and yellow to red (1)."""
    return QColor.fromHsvF(0.66 * (1.0 - min(max(score, 0.0), 1.0)), 0.9, 1.0)


def _scored(boxes: torch.Tensor, scores: torch.Tensor) -> tuple:
    """An `_overlay` part: boxes coloured by score, the best drawn last and the best SCORE_TAGS tagged."""
    order = torch.argsort(scores)  # ascending: the best on top
    values = scores[order].tolist()
    tags = [f"{value:.2f}" if rank >= len(values) - SCORE_TAGS else "" for rank, value in enumerate(values)]
    return boxes[order], [score_colour(value) for value in values], 1.5, tags


def pre_nms_shown_idx(proposals: ProposalsTrace, shown: int = PROPOSALS_SHOWN) -> torch.Tensor:
    """The pre-NMS indices of the `shown` best valid boxes, the ones drawn and clickable."""
    valid = torch.nonzero(proposals.valid).flatten()
    return valid[torch.argsort(proposals.pre_nms_scores[valid], descending=True)[:shown]]


def proposals_pre_nms_overlay(proposals: ProposalsTrace, selected: int | None = None,
                              shown: int = PROPOSALS_SHOWN) -> Overlay:
    """The `shown` best valid boxes before NMS; then the selected one (white, thick) and, if NMS
    suppressed it, the kept box that did (red, thick)."""
    best = pre_nms_shown_idx(proposals, shown)
    parts = [_scored(proposals.pre_nms_boxes[best], proposals.pre_nms_scores[best])]
    if selected is not None:
        parts.append((proposals.pre_nms_boxes[selected].reshape(1, 4), SAMPLE_POINT, 3.0, [f"#{selected}"]))
        suppressor = int(proposals.suppressed_by[selected])
        if suppressor >= 0:
            parts.append((proposals.pre_nms_boxes[suppressor].reshape(1, 4), SUPPRESSOR, 3.0, [f"#{suppressor} kept"]))
    return _overlay(parts)


def suppression_text(proposals: ProposalsTrace, selected: int) -> str:
    """What became of pre-NMS proposal `selected`: kept, suppressed by #k with their IoU, or
    filtered out before NMS."""
    suppressor = int(proposals.suppressed_by[selected])
    if suppressor >= 0:
        boxes = proposals.pre_nms_boxes[[selected, suppressor]]
        iou = float(box_iou(boxes[:1], boxes[1:])[0, 0])
        return (f"Proposal #{selected} (score {float(proposals.pre_nms_scores[selected]):.2f}, white) was"
                f" suppressed by #{suppressor}, IoU {iou:.2f} (red, score"
                f" {float(proposals.pre_nms_scores[suppressor]):.2f}).")
    kept = bool((proposals.nms_keep_idx == selected).any())
    return f"Proposal #{selected} " + ("survived NMS." if kept else "was filtered out before NMS.")


def proposals_overlay(proposals: ProposalsTrace, highlighted: list | None = None,
                      shown: int = PROPOSALS_SHOWN) -> Overlay:
    """The `shown` best proposals (after NMS and the post-NMS top-N, best first); then
    `highlighted` parts on top."""
    return _overlay([_scored(proposals.boxes[:shown], proposals.scores[:shown]), *(highlighted or [])])


def proposal_chain(trace, post_index: int, detections) -> tuple[list, str]:
    """Cross-highlight from a post-NMS proposal: the anchor it grew from (cyan), the proposal
    (white) and the detections its RoI gave (class colours; only when `detections` came from these
    very proposals, else None), with one sentence on the chain."""
    proposals = trace.proposals
    pre_index = int(proposals.post_nms_idx[post_index])
    anchor = int(proposals.pre_nms_anchor_idx[pre_index])
    level = int(trace.anchors.level[anchor])
    parts = [(trace.anchors.boxes[anchor].reshape(1, 4), NEGATIVE, 2.0, [f"anchor #{anchor}"]),
             (proposals.boxes[post_index].reshape(1, 4), SAMPLE_POINT, 3.0, [f"proposal #{post_index}"])]
    text = (f"Proposal #{post_index} (score {float(proposals.scores[post_index]):.2f}) grew from anchor #{anchor} "
            f"(cyan, level {level}) by the RPN's deltas.")
    if detections is not None:
        mine = torch.nonzero(detections.roi_idx == post_index).flatten()
        for index in mine.tolist():
            label = int(detections.labels[index])
            parts.append((detections.boxes[index].reshape(1, 4), QColor(PALETTE[label % len(PALETTE)]), 2.0,
                          [f"{float(detections.scores[index]):.2f}"]))
        text += (f" As a RoI it gave {len(mine)} final detection{'s' if len(mine) != 1 else ''}"
                 + (": " + ", ".join(f"{float(detections.scores[i]):.2f}" for i in mine.tolist()) if len(mine) else "")
                 + ".")
    return parts, text


def roi_samples_overlay(targets, class_names: list[str], selected: int | None = None,
                        gt_boxes: torch.Tensor | None = None) -> Overlay:
    """The sampled background RoIs (thin grey), then the foreground ones in their class colour;
    then the selected RoI (white, thick) and, when it is foreground, the GT box of gt_boxes (G, 4)
    it is matched to (its class colour, thick)."""
    foreground = targets.is_foreground
    labels = targets.labels[foreground].tolist()
    colours = [_class_colour(class_names, label) for label in labels]
    parts = [(targets.rois[~foreground], BACKGROUND_ROI, 1.0, None), (targets.rois[foreground], colours, 2.0, None)]
    if selected is not None:
        parts.append((targets.rois[selected].reshape(1, 4), SAMPLE_POINT, 3.0, [f"RoI #{selected}"]))
        label, gt_index = int(targets.labels[selected]), int(targets.matched_gt_idx[selected])
        if label > 0 and gt_boxes is not None and gt_index < len(gt_boxes):
            parts.append((gt_boxes[gt_index].reshape(1, 4), _class_colour(class_names, label), 3.0,
                          [f"GT {gt_index}"]))
    return _overlay(parts)


def _class_colour(class_names: list[str], label: int) -> QColor:
    return class_colour(class_names[label]) if label < len(class_names) else POSITIVE


def roi_samples_text(training, config, class_names: list[str], selected: int | None, gt_count: int) -> str:
    """The RoI samples stage in words for a training trace of gt_count GT boxes: the stage's
    explanation, the selected RoI, and a warning when the positive quota could not be filled."""
    targets = training.roi_targets
    text = explain("roi-samples", training, config, gt_count)
    text += " Foreground RoIs in their class colour, background grey. Click a RoI or a row of the table."
    if selected is not None:
        text += "\n" + roi_sample_text(roi_sample_rows(targets)[selected], class_names)
    if not targets.quota_filled:
        text += (f"\n⚠ Positive quota not filled: {int(targets.is_foreground.sum())} foreground RoIs"
                 f" of the {targets.positive_quota} the batch could take.")
    return text


def roi_sample_text(row: RoiSampleRow, class_names: list[str]) -> str:
    """One sampled RoI in words: what it was sampled as, against which GT box, and the targets
    its regression learns."""
    targets = ", ".join(f"{value:+.2f}" for value in row.targets)
    if not row.foreground:
        return (f"RoI #{row.index} ({row.source}) is background: its best IoU with a GT box is {row.iou:.2f};"
                f" it teaches the classifier \"background\" and no box regression.")
    name = class_names[row.label] if row.label < len(class_names) else str(row.label)
    return (f"RoI #{row.index} ({row.source}) is foreground {name}: IoU {row.iou:.2f} with GT {row.gt_index}."
            f" Regression targets (dx, dy, dw, dh) = ({targets}): the deltas that move it onto GT {row.gt_index}.")


def box_at(boxes: torch.Tensor, x: float, y: float) -> int | None:
    """The index of the box of boxes (N, 4) that contains (x, y) with its centre nearest to it."""
    inside = (boxes[:, 0] <= x) & (x <= boxes[:, 2]) & (boxes[:, 1] <= y) & (y <= boxes[:, 3])
    if not bool(inside.any()):
        return None
    distance = (((boxes[:, :2] + boxes[:, 2:]) / 2 - torch.tensor([x, y], dtype=boxes.dtype)) ** 2).sum(dim=1)
    return int(torch.where(inside, distance, torch.inf).argmin())


def pooling_overlay(roi_box: torch.Tensor, grid) -> Overlay:
    """One RoI (thick), its pooling bins (thin) and, for RoIAlign, its sample points (dots)."""
    parts = [(grid.bins.reshape(-1, 4), GRID, 1.0, None),
             (roi_box.reshape(1, 4), SELECTED, 2.5, [f"level {grid.level}"])]
    if grid.sample_points is not None:
        points = grid.sample_points.reshape(-1, 2)
        parts.append((torch.cat([points - POINT_RADIUS, points + POINT_RADIUS], dim=1), SAMPLE_POINT, 2.0, None))
    return _overlay(parts)


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


def class_parts(detections, detection: int, class_names: list[str], others: int = CLASS_BOXES_SHOWN) -> list:
    """The class stage around detection `detection`: the candidates of its class that overlap it
    (thin: the ones class NMS weighed against it), and its RoI's refined boxes for the `others`
    next most likely classes (medium, tagged with class and score), as `_overlay` parts."""
    roi_index, label = int(detections.roi_idx[detection]), int(detections.labels[detection])
    neighbours, _ = class_neighbours(detections, detection)
    parts = [(detections.candidate_boxes[neighbours], _class_colour(class_names, label), 1.0, None)]
    scores = detections.class_scores[roi_index].clone()
    scores[[0, label]] = -1.0  # background has no box; the detected class is drawn by the chain
    for other in torch.argsort(scores, descending=True)[:others].tolist():
        if scores[other] >= 0:
            name = class_names[other] if other < len(class_names) else str(other)
            parts.append((detections.class_boxes[roi_index, other].reshape(1, 4), _class_colour(class_names, other),
                          1.5, [f"{name} {float(scores[other]):.2f}"]))
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
            f" a lower score, were removed in its favour. Tagged: this RoI's boxes for other classes.")


def provenance_overlay(provenance, class_name: str, under: list | None = None) -> Overlay:
    """`under` parts, then one detection's chain: its anchor (cyan), the proposal (= RoI) the RPN
    made of it (yellow) and the final box (class colour, thick)."""
    return _overlay([*(under or []), (provenance.anchor_box.reshape(1, 4), NEGATIVE, 2.0, ["anchor"]),
                     (provenance.proposal_box.reshape(1, 4), POSITIVE, 2.0, ["proposal = RoI"]),
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
    tag = f"GT {row.gt_index} {row.label}: {row.lost_at or 'detected'}"
    parts.append((gt_box.reshape(1, 4), SAMPLE_POINT, 3.0, [tag]))
    return _overlay(parts)


