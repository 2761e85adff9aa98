"""What each stage draws as boxes: overlay builders, functions of trace records only (no Qt beyond
colours). Each returns an `Overlay` of N boxes in original-image pixels with a colour, a pen width,
a tag and a hover tag each, drawn lowest first. Where a box is selected, it is drawn last, white
and thick, and the rest of the stage dimmed; only the selection and the best few (TOP_TAGS) carry
a tag, every box shows its own under the mouse. Following one box through the stages is in
`stage_chains.py`; the heatmaps (objectness, pooled features) are in `stage_pictures.py`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from PySide6.QtGui import QColor
from torchvision.ops import box_iou

from frcnn_core.inspect.describe import explain
from frcnn_core.inspect.follow import AnchorFate, RoiSampleRow, anchor_fate, roi_sample_rows
from frcnn_core.modeling.config import NEG, POS
from frcnn_core.modeling.trace import AnchorLabelsTrace, AnchorsTrace, ProposalsTrace
from frcnn_gui.canvas.layers import PALETTE, TOP_TAGS, class_colour, dimmed

STAGE_LAYER_Z = 15  # above the detections (10), below the GT boxes (20) they are judged against
ANCHORS_DRAWN = 4000  # the most anchors drawn at once: a repaint takes about 20 ms on this CPU (38,280: 300-800 ms)
ANCHOR_SAMPLE = 60  # inside anchors drawn faintly, to show how densely they cover the image
PROPOSALS_SHOWN = 100  # the best proposals drawn by default: more make a busy picture
# yellow and cyan: apart from the GT class colours, which are drawn on top of them
POSITIVE, NEGATIVE, SAMPLE = QColor("#ffe119"), QColor("#42d4f4"), QColor(200, 200, 200)
BACKGROUND_ROI = QColor(170, 170, 170)
GRID, SAMPLE_POINT, SELECTED = QColor("#f58231"), QColor("#ffffff"), QColor("#ffe119")
POINT_RADIUS = 0.75  # original pixels: a sample point is drawn as a box this far around it
SUPPRESSOR = QColor("#e6194b")


class Part(NamedTuple):
    """Boxes (n, 4) drawn alike: one colour or n, a pen width, n tags or None, n hover tags or None
    (None: the tags), faint: without the dark halo (the dimmed boxes behind a selection). Builders
    may pass a plain tuple of the first four."""

    boxes: torch.Tensor
    colour: QColor | list[QColor]
    width: float
    tags: list[str] | None = None
    hover: list[str] | None = None
    faint: bool = False


@dataclass(frozen=True)
class Overlay:
    """boxes (N, 4) float64 original pixels; colours N QColors; widths (N,) screen pixels; tags N
    ("" for none); hover_tags N: what each box shows under the mouse; halos (N,) bool."""

    boxes: np.ndarray
    colours: list[QColor]
    widths: np.ndarray
    tags: list[str]
    hover_tags: list[str]
    halos: np.ndarray

    def draw_on(self, layer) -> None:
        """Show this overlay on a BoxSetLayer."""
        layer.set_boxes(self.boxes, self.colours, self.widths, self.tags, hover_labels=self.hover_tags,
                        halos=self.halos)


EMPTY = Overlay(np.zeros((0, 4)), [], np.zeros(0), [], [], np.zeros(0, dtype=bool))


def overlay_of(parts: list[tuple]) -> Overlay:
    """Concatenate parts (`Part`s or tuples of its first four fields), first drawn first."""
    boxes, colours, widths, tags, hover_tags, halos = [], [], [], [], [], []
    for part in (Part(*fields) for fields in parts):
        count = len(part.boxes)
        part_tags = part.tags if part.tags is not None else [""] * count
        boxes.append(part.boxes.double().numpy().reshape(-1, 4))
        colours += part.colour if isinstance(part.colour, list) else [part.colour] * count
        widths.append(np.full(count, part.width))
        tags += part_tags
        hover_tags += part.hover if part.hover is not None else part_tags
        halos.append(np.full(count, not part.faint))
    return Overlay(np.concatenate(boxes), colours, np.concatenate(widths), tags, hover_tags, np.concatenate(halos))


def dimmed_part(part: tuple) -> Part:
    """A part pushed behind a selection: dimmed colours, thin, faint, its tags only under the mouse."""
    part = Part(*part)
    colours = [dimmed(each) for each in part.colour] if isinstance(part.colour, list) else dimmed(part.colour)
    return Part(part.boxes, colours, 1.0, None, part.hover if part.hover is not None else part.tags, faint=True)


def cell_anchor_idx(anchors: AnchorsTrace, x: float, y: float) -> list[torch.Tensor]:
    """Per level, the anchor indices of the feature cell whose anchors are centred nearest to
    (x, y) in original pixels. Anchors are laid out level by level, cell by cell, shapes within
    a cell: (H*W*A,) per level."""
    centres = (anchors.boxes[:, :2] + anchors.boxes[:, 2:]) / 2  # (A, 2)
    distance = ((centres - torch.tensor([x, y], dtype=centres.dtype)) ** 2).sum(dim=1)
    cells, start = [], 0
    for (height, width), shapes in zip(anchors.grid_sizes, anchors.shapes_per_cell, strict=True):
        count = height * width * shapes
        nearest = int(distance[start: start + count].argmin())
        cells.append(start + (nearest // shapes) * shapes + torch.arange(shapes))
        start += count
    return cells


def anchor_shape_mask(anchors: AnchorsTrace, config, level: int | None = None, size: float | None = None,
                      ratio: float | None = None) -> torch.Tensor:
    """(A,) bool: the anchors of the chosen level, size and ratio (None: any). config is the
    model's AnchorConfig; shapes within a cell are ratio-major, then size (frcnn_core.modeling.anchors)."""
    masks = []
    for index, ((height, width), sizes, ratios) in enumerate(zip(anchors.grid_sizes, config.sizes,
                                                                 config.aspect_ratios, strict=True)):
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
        return overlay_of(parts + (highlighted or []))
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
    return overlay_of(parts + (highlighted or []))


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


def anchor_labels_overlay(anchors: AnchorsTrace, labels: AnchorLabelsTrace) -> Overlay:
    """The sampled negatives (thin cyan), every positive (yellow), the sampled positives thicker."""
    positive = torch.nonzero(labels.labels == POS).flatten()
    sampled_neg = labels.sampled_neg_idx[labels.labels[labels.sampled_neg_idx] == NEG]
    return overlay_of([(anchors.boxes[sampled_neg], NEGATIVE, 1.0, None),
                     (anchors.boxes[positive], POSITIVE, 1.0, None),
                     (anchors.boxes[labels.sampled_pos_idx], POSITIVE, 3.0, None)])


def score_colour(score: float) -> QColor:
    """Blue (0) through green and yellow to red (1)."""
    return QColor.fromHsvF(0.66 * (1.0 - min(max(score, 0.0), 1.0)), 0.9, 1.0)


def _scored(boxes: torch.Tensor, scores: torch.Tensor) -> tuple:
    """An `overlay_of` part: boxes coloured by score, the best drawn last and the best TOP_TAGS
    tagged, every one with its score under the mouse."""
    order = torch.argsort(scores)  # ascending: the best on top
    values = scores[order].tolist()
    texts = [f"{value:.2f}" for value in values]
    tags = [text if rank >= len(values) - TOP_TAGS else "" for rank, text in enumerate(texts)]
    return boxes[order], [score_colour(value) for value in values], 1.5, tags, texts


def pre_nms_shown_idx(proposals: ProposalsTrace, shown: int = PROPOSALS_SHOWN) -> torch.Tensor:
    """The pre-NMS indices of the `shown` best valid boxes, the ones drawn and clickable."""
    valid = torch.nonzero(proposals.valid).flatten()
    return valid[torch.argsort(proposals.pre_nms_scores[valid], descending=True)[:shown]]


def proposals_pre_nms_overlay(proposals: ProposalsTrace, selected: int | None = None,
                              shown: int = PROPOSALS_SHOWN) -> Overlay:
    """The `shown` best valid boxes before NMS; then the selected one (white, thick) and, if NMS
    suppressed it, the kept box that did (red, thick), the others dimmed."""
    best = pre_nms_shown_idx(proposals, shown)
    parts = [_scored(proposals.pre_nms_boxes[best], proposals.pre_nms_scores[best])]
    if selected is not None:
        parts = [dimmed_part(parts[0]),
                 (proposals.pre_nms_boxes[selected].reshape(1, 4), SAMPLE_POINT, 3.0, [f"#{selected}"])]
        suppressor = int(proposals.suppressed_by[selected])
        if suppressor >= 0:
            parts.append((proposals.pre_nms_boxes[suppressor].reshape(1, 4), SUPPRESSOR, 3.0, None,
                          [f"#{suppressor} kept"]))
    return overlay_of(parts)


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
    `highlighted` parts on top, the proposals dimmed under them."""
    scored = _scored(proposals.boxes[:shown], proposals.scores[:shown])
    return overlay_of([dimmed_part(scored) if highlighted else scored, *(highlighted or [])])


def roi_samples_overlay(targets, class_names: list[str], selected: int | None = None,
                        gt_boxes: torch.Tensor | None = None) -> Overlay:
    """The sampled background RoIs (thin grey), then the foreground ones in their class colour,
    each "RoI #i" with its IoU under the mouse; then the selected RoI (white, thick) and, when it is
    foreground, the GT box of gt_boxes (G, 4) it is matched to (its class colour, thick), the
    other RoIs dimmed."""
    foreground = targets.is_foreground
    colours = [class_colour_of(class_names, label) for label in targets.labels[foreground].tolist()]
    ious = targets.max_iou.tolist()

    def hover(chosen: torch.Tensor) -> list[str]:
        return [f"RoI #{index} IoU {ious[index]:.2f}" for index in torch.nonzero(chosen).flatten().tolist()]

    parts = [(targets.rois[~foreground], BACKGROUND_ROI, 1.0, None, hover(~foreground)),
             (targets.rois[foreground], colours, 2.0, None, hover(foreground))]
    if selected is not None:
        parts = [dimmed_part(part) for part in parts]
        parts.append((targets.rois[selected].reshape(1, 4), SAMPLE_POINT, 3.0, [f"RoI #{selected}"]))
        label, gt_index = int(targets.labels[selected]), int(targets.matched_gt_idx[selected])
        if label > 0 and gt_boxes is not None and gt_index < len(gt_boxes):
            parts.append((gt_boxes[gt_index].reshape(1, 4), class_colour_of(class_names, label), 3.0,
                          None, [f"GT {gt_index}"]))
    return overlay_of(parts)


def class_colour_of(class_names: list[str], label: int) -> QColor:
    """The colour of class index `label` (yellow for an index past the names)."""
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


def pooling_overlay(roi_box: torch.Tensor, grid, under: list | None = None) -> Overlay:
    """`under` parts dimmed, then one RoI (thick), its pooling bins (thin) and, for RoIAlign, its
    sample points (dots)."""
    parts = [*(dimmed_part(part) for part in under or []), (grid.bins.reshape(-1, 4), GRID, 1.0, None),
             (roi_box.reshape(1, 4), SELECTED, 2.5, [f"level {grid.level}"])]
    if grid.sample_points is not None:
        points = grid.sample_points.reshape(-1, 2)
        parts.append((torch.cat([points - POINT_RADIUS, points + POINT_RADIUS], dim=1), SAMPLE_POINT, 2.0, None))
    return overlay_of(parts)


