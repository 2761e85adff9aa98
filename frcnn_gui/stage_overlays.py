"""What each stage draws: overlay builders, functions of trace records only (no Qt beyond colours
and images). Each returns an `Overlay` of N boxes in original-image pixels with a colour, a pen
width and a tag each, drawn lowest first; the objectness stage is one heatmap item
(`HeatmapLayer`) under the box layer."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PySide6.QtCore import QRectF
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtWidgets import QGraphicsItem
from torchvision.ops import box_iou

from frcnn_core.config import NEG, POS
from frcnn_core.trace import AnchorLabelsTrace, AnchorsTrace, ProposalsTrace
from frcnn_gui.canvas.layers import PALETTE, class_colour

STAGE_LAYER_Z = 15  # above the detections (10), below the GT boxes (20) they are judged against
ANCHOR_SAMPLE = 60  # inside anchors drawn faintly, to show how densely they cover the image
PRE_NMS_SHOWN = 300
SCORE_TAGS = 10  # the best proposals carry their score
# yellow and cyan: apart from the GT class colours, which are drawn on top of them
POSITIVE, NEGATIVE, SAMPLE = QColor("#ffe119"), QColor("#42d4f4"), QColor(200, 200, 200)
HEATMAP_ALPHA, HEATMAP_FLOOR = 210, 70  # the opacity of a score-1 and a score-0 cell
BACKGROUND_ROI = QColor(170, 170, 170)
GRID, SAMPLE_POINT, SELECTED = QColor("#f58231"), QColor("#ffffff"), QColor("#ffe119")
POINT_RADIUS = 0.75  # original pixels: a sample point is drawn as a box this far around it
STRONGEST_CHANNELS = 3
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


def anchors_overlay(anchors: AnchorsTrace, x: float, y: float, keep: torch.Tensor | None = None) -> Overlay:
    """A faint even sample of the inside anchors, then the anchors of the cell nearest (x, y),
    one colour per level; keep (A,) bool (None: all) restricts both to some shapes. The largest
    square(st) shape of each level is tagged with its level and size (the largest: their corners
    lie furthest apart, so the tags do not cover each other)."""
    keep = torch.ones(len(anchors.boxes), dtype=torch.bool) if keep is None else keep
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
    return _overlay(parts)


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


def pre_nms_shown_idx(proposals: ProposalsTrace) -> torch.Tensor:
    """The pre-NMS indices of the PRE_NMS_SHOWN best valid boxes, the ones drawn and clickable."""
    valid = torch.nonzero(proposals.valid).flatten()
    return valid[torch.argsort(proposals.pre_nms_scores[valid], descending=True)[:PRE_NMS_SHOWN]]


def proposals_pre_nms_overlay(proposals: ProposalsTrace, selected: int | None = None) -> Overlay:
    """The PRE_NMS_SHOWN best valid boxes before NMS; then the selected one (white, thick) and,
    if NMS suppressed it, the kept box that did (red, thick)."""
    best = pre_nms_shown_idx(proposals)
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


def proposals_overlay(proposals: ProposalsTrace, highlighted: list | None = None) -> Overlay:
    """The proposals after NMS and the post-NMS top-N; then `highlighted` parts on top."""
    return _overlay([_scored(proposals.boxes, proposals.scores), *(highlighted or [])])


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


def objectness_map(trace, level: int, shape: int | None = None) -> np.ndarray:
    """(H, W) float32 in [0, 1]: per feature cell of `level`, the objectness probability of anchor
    shape `shape` (ratio-major, then size), or the highest over the cell's shapes when None."""
    start = sum(height * width * shapes for (height, width), shapes
                in zip(trace.anchors.grid_sizes[:level], trace.anchors.shapes_per_cell[:level]))
    (height, width), shapes = trace.anchors.grid_sizes[level], trace.anchors.shapes_per_cell[level]
    logits = trace.objectness.logits[start: start + height * width * shapes]
    # (H*W*shapes,) -> (H, W, shapes): anchors are laid out cell by cell, shapes within a cell
    per_shape = torch.sigmoid(logits.float()).reshape(height, width, shapes)
    return (per_shape.amax(dim=2) if shape is None else per_shape[:, :, shape]).numpy()


def shape_names(config_anchors, level: int) -> list[str]:
    """The anchor shapes of one cell of `level` in layout order (ratio-major, then size)."""
    return [f"ratio {ratio:g}, size {size:g}" for ratio in config_anchors.aspect_ratios[level]
            for size in config_anchors.sizes[level]]


def heat_image(values: np.ndarray, alpha: np.ndarray | None = None) -> QImage:
    """values (H, W) in [0, 1] as an RGBA QImage, black through red and yellow to white ("hot");
    alpha (H, W) uint8, opaque when None."""
    ramp = np.clip(values.astype(np.float32)[..., None] * 3 - np.arange(3, dtype=np.float32), 0, 1)  # (H, W, 3)
    opacity = np.full(values.shape, 255, np.uint8) if alpha is None else alpha
    pixels = np.ascontiguousarray(np.dstack([(ramp * 255).astype(np.uint8), opacity]))
    height, width = values.shape
    return QImage(pixels.data, width, height, width * 4, QImage.Format_RGBA8888).copy()


def normalised(values: np.ndarray) -> np.ndarray:
    """values scaled to [0, 1] by their own range (all 0 when constant)."""
    low, high = float(values.min()), float(values.max())
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


def objectness_heatmap(trace, level: int, shape: int | None = None) -> tuple[QImage, QRectF]:
    """The heatmap of `level` and where it lies in original pixels: cell (i, j) covers input
    pixels [j*sx, (j+1)*sx) x [i*sy, (i+1)*sy), so the last cells may reach past the image."""
    scores = objectness_map(trace, level, shape)
    stride_y, stride_x = trace.anchors.strides[level]
    per_input_y = trace.image_size[0] / trace.input_size[0]
    per_input_x = trace.image_size[1] / trace.input_size[1]
    height, width = scores.shape
    target = QRectF(0, 0, width * stride_x * per_input_x, height * stride_y * per_input_y)
    # a floor of opacity: the low-score cells darken the image, so the map reads as a map
    alpha = HEATMAP_FLOOR + scores * (HEATMAP_ALPHA - HEATMAP_FLOOR)
    return heat_image(scores, alpha.astype(np.uint8)), target


def roi_samples_overlay(targets, class_names: list[str]) -> Overlay:
    """The sampled background RoIs (thin grey), then the foreground ones in their class colour."""
    foreground = targets.is_foreground
    labels = targets.labels[foreground].tolist()
    colours = [class_colour(class_names[label]) if label < len(class_names) else POSITIVE for label in labels]
    return _overlay([(targets.rois[~foreground], BACKGROUND_ROI, 1.0, None),
                     (targets.rois[foreground], colours, 2.0, None)])


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


def feature_maps(pooled: torch.Tensor) -> list[tuple[QImage, str]]:
    """pooled (C, h, w) as small heatmaps: the channel mean, then the STRONGEST_CHANNELS channels
    with the highest mean activation, each normalised to its own range."""
    strength = pooled.float().mean(dim=(1, 2))
    strongest = torch.argsort(strength, descending=True)[:STRONGEST_CHANNELS].tolist()
    maps = [(pooled.float().mean(dim=0), "mean")] + [(pooled[channel].float(), f"ch {channel}")
                                                     for channel in strongest]
    return [(heat_image(normalised(values.numpy())), caption) for values, caption in maps]


def provenance_overlay(provenance, class_name: str) -> Overlay:
    """One detection's chain: its anchor (cyan), the proposal (= RoI) the RPN made of it (yellow)
    and the final box (class colour, thick)."""
    return _overlay([(provenance.anchor_box.reshape(1, 4), NEGATIVE, 2.0, ["anchor"]),
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


class HeatmapLayer(QGraphicsItem):
    """One image drawn scaled onto a rectangle of the scene (original pixels), clipped to the
    image, cells kept square-edged (no smoothing)."""

    def __init__(self, parent: QGraphicsItem | None = None):
        super().__init__(parent)
        self.image, self.target, self.clip = QImage(), QRectF(), QRectF()

    def set_image(self, image: QImage, target: QRectF, clip: QRectF) -> None:
        self.prepareGeometryChange()
        self.image, self.target, self.clip = image, target, clip
        self.update()

    def boundingRect(self) -> QRectF:
        return self.target.intersected(self.clip)

    def paint(self, painter: QPainter, option, widget=None) -> None:
        if self.image.isNull():
            return
        painter.setClipRect(self.clip)
        painter.setRenderHint(QPainter.SmoothPixmapTransform, False)
        painter.drawImage(self.target, self.image)


def stage_counts(trace, score_thresh: float = 0.5) -> dict[str, str]:
    """The stage list's count texts for `trace` (anchor labels only when it has them)."""
    anchors, proposals, detections = trace.anchors, trace.proposals, trace.detections
    counts = {"anchors": f"{len(anchors.boxes):,} ({int(anchors.inside.sum()):,} inside)",
              "proposals-pre-nms": f"{len(proposals.pre_nms_boxes):,}",
              "proposals": f"{len(proposals.pre_nms_boxes):,} → {len(proposals.post_nms_idx):,} after NMS"}
    if detections is not None:
        confident = int((detections.scores >= score_thresh).sum())
        counts["detections"] = f"{confident} (score ≥ {score_thresh:g}; {len(detections.keep_idx)} in all)"
    if trace.anchor_labels is not None:
        labels = trace.anchor_labels
        counts["anchor-labels"] = (f"{int((labels.labels == POS).sum()):,} positive, "
                                   f"{len(labels.sampled_pos_idx) + len(labels.sampled_neg_idx):,} sampled")
    return counts
