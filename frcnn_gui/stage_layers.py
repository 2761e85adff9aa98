"""The stage inspector on the canvas: what each stage draws, and the controller that keeps the
stage panel, one reusable overlay layer and the current image's `Inspection` in step.

Overlay builders are functions of trace records only (no Qt beyond colours): each returns an
`Overlay` of N boxes in original-image pixels with a colour, a pen width and a tag each, drawn
lowest first. The controller asks the engine for an inspection (one backbone pass) the first time
a stage other than "detections" is shown for an image; after that a GT-box drag re-runs only the
anchor labels and a proposal knob only the proposal layer, both from the inspection's cache.
The objectness stage paints one heatmap item (`HeatmapLayer`) under the box layer; the RoI
samples come from `Inspection.training_trace_for` (no backbone pass), built once per GT edit.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PySide6.QtCore import QObject, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtWidgets import QGraphicsItem

from frcnn_core.config import NEG, POS
from frcnn_core.diagnose import recall_funnel
from frcnn_core.explain import explain
from frcnn_core.trace import AnchorLabelsTrace, AnchorsTrace, ProposalsTrace
from torchvision.ops import box_iou
from frcnn_gui.canvas.layers import PALETTE, BoxSetLayer, class_colour

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


def anchors_overlay(anchors: AnchorsTrace, x: float, y: float) -> Overlay:
    """A faint even sample of the inside anchors, then the anchors of the cell nearest (x, y),
    one colour per level; the largest square shape of each level is tagged with its level and
    size (the largest: their corners lie furthest apart, so the tags do not cover each other)."""
    inside = torch.nonzero(anchors.inside).flatten()
    sample = inside[torch.linspace(0, len(inside) - 1, min(ANCHOR_SAMPLE, len(inside))).long()]
    parts = [(anchors.boxes[sample], SAMPLE, 1.0, None)]
    for level, cell in enumerate(cell_anchor_idx(anchors, x, y)):
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


def _scored(boxes: torch.Tensor, scores: torch.Tensor) -> Overlay:
    """Boxes coloured by score, the best drawn last and the best SCORE_TAGS tagged."""
    order = torch.argsort(scores)  # ascending: the best on top
    values = scores[order].tolist()
    tags = [f"{value:.2f}" if rank >= len(values) - SCORE_TAGS else "" for rank, value in enumerate(values)]
    return _overlay([(boxes[order], [score_colour(value) for value in values], 1.5, tags)])


def proposals_pre_nms_overlay(proposals: ProposalsTrace) -> Overlay:
    """The PRE_NMS_SHOWN best valid boxes before NMS."""
    valid = torch.nonzero(proposals.valid).flatten()
    best = valid[torch.argsort(proposals.pre_nms_scores[valid], descending=True)[:PRE_NMS_SHOWN]]
    return _scored(proposals.pre_nms_boxes[best], proposals.pre_nms_scores[best])


def proposals_overlay(proposals: ProposalsTrace) -> Overlay:
    """The proposals after NMS and the post-NMS top-N."""
    return _scored(proposals.boxes, proposals.scores)


def objectness_map(trace, level: int) -> np.ndarray:
    """(H, W) float32 in [0, 1]: per feature cell of `level`, the highest objectness probability
    over its anchor shapes."""
    start = sum(height * width * shapes for (height, width), shapes
                in zip(trace.anchors.grid_sizes[:level], trace.anchors.shapes_per_cell[:level]))
    (height, width), shapes = trace.anchors.grid_sizes[level], trace.anchors.shapes_per_cell[level]
    logits = trace.objectness.logits[start: start + height * width * shapes]
    # (H*W*shapes,) -> (H, W, shapes): anchors are laid out cell by cell, shapes within a cell
    return torch.sigmoid(logits.float()).reshape(height, width, shapes).amax(dim=2).numpy()


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


def objectness_heatmap(trace, level: int) -> tuple[QImage, QRectF]:
    """The heatmap of `level` and where it lies in original pixels: cell (i, j) covers input
    pixels [j*sx, (j+1)*sx) x [i*sy, (i+1)*sy), so the last cells may reach past the image."""
    scores = objectness_map(trace, level)
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
    suppressed that proposal (red, if any), and the GT box itself (white, thick)."""
    proposals = trace.proposals
    gt_box = torch.tensor(row.box, dtype=torch.float32)
    parts = [(trace.anchors.boxes[row.best_anchor_index].reshape(1, 4), NEGATIVE, 2.0,
              [f"anchor {row.best_anchor_iou:.2f}"])]
    best = best_proposal_index(proposals, gt_box)
    if best is not None:
        parts.append((proposals.pre_nms_boxes[best].reshape(1, 4), POSITIVE, 2.0,
                      [f"proposal {row.best_proposal_iou:.2f}"]))
    if row.suppressed_by is not None:
        parts.append((proposals.pre_nms_boxes[row.suppressed_by].reshape(1, 4), SUPPRESSOR, 2.0, ["suppressor"]))
    parts.append((gt_box.reshape(1, 4), SAMPLE_POINT, 3.0, [f"GT {row.gt_index} {row.label}"]))
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


class StageInspector(QObject):
    """Connects the stage panel, the canvas (one `BoxSetLayer` for every stage but "detections",
    which shows the canvas's own detection layer), the document's GT boxes and the engine.

    `shown(stage)` fires after a stage was drawn from an inspection; `rerun_ms` maps "anchor-labels"
    and "proposals" to the time of their latest re-run, which the panel shows too."""

    shown = Signal(str)
    funnel_changed = Signal(list)  # the FunnelRows of the current image's GT boxes
    forgotten = Signal()  # the inspection was dropped: another image or model

    def __init__(self, panel, canvas, document, engine, parent: QObject | None = None):
        super().__init__(parent)
        self.panel, self.canvas, self.document, self.engine = panel, canvas, document, engine
        self.layer = BoxSetLayer()
        canvas.add_layer(self.layer, STAGE_LAYER_Z)
        self.heatmap = HeatmapLayer()
        canvas.add_layer(self.heatmap, STAGE_LAYER_Z - 1)
        self.level = 0  # the objectness heatmap's feature level
        self.class_names: list[str] = []
        self.training_trace = None  # for the GT boxes of the latest relabel; built when first shown
        self.selected_roi: int | None = None  # into the inspection's proposals (= its RoIs)
        self.selected_detection: int | None = None  # into the inspection's detections
        self.funnel: list = []
        self.chain_layer = BoxSetLayer()
        canvas.add_layer(self.chain_layer, CHAIN_LAYER_Z)
        self.inspection = None
        self.config = None
        self.trace = None  # the inspection's trace with the latest re-runs swapped in
        self._detect_trace = None  # the current image's detection trace: counts before any inspection
        self.rerun_ms: dict[str, float] = {}
        self._gt_count = 0
        self._pending: int | None = None
        self._point: tuple[float, float] | None = None
        panel.stage_chosen.connect(self._stage_chosen)
        panel.proposal_knobs_changed.connect(self.rerun_proposals)
        panel.level_chosen.connect(self._level_chosen)
        canvas.point_clicked.connect(self._clicked)
        canvas.box_dragged.connect(self._box_dragged)
        engine.inspected.connect(self._inspected)
        engine.result.connect(self._detected)
        engine.model_loaded.connect(self._model_loaded)
        document.subscribe(self._document_changed)
        self._stage_chosen(panel.stage)

    def forget(self) -> None:
        """Drop the inspection (another image or model); ask again if a stage needs one."""
        self.inspection = self.trace = self._detect_trace = self.training_trace = self.selected_roi = None
        self.selected_detection = None
        self._pending = None
        self.funnel = []
        self.chain_layer.set_boxes(np.zeros((0, 4)), SAMPLE)
        self.forgotten.emit()
        self.rerun_ms.clear()
        self._stage_chosen(self.panel.stage)

    def _model_loaded(self, loaded) -> None:
        self.class_names = list(loaded.class_names)
        self.forget()

    def _document_changed(self, kind: str) -> None:
        if kind == "image":
            self._point = None
            self.forget()
        elif kind == "boxes" and self.inspection is not None:
            self.relabel(self._gt_boxes())
            self._update_funnel()

    def _stage_chosen(self, stage: str) -> None:
        if stage != "detections":
            self.inspect()
        self._show()

    def inspect(self) -> None:
        """Ask the engine for the current image's inspection, unless it is there or on its way."""
        if self.inspection is None and self._pending is None and self.document.image_size is not None:
            self._pending = self.engine.inspect(str(self.document.current_path))

    def _inspected(self, result) -> None:
        if result.request_id != self._pending or Path(result.image_path) != self.document.current_path:
            return
        self._pending = None
        self.inspection, self.config = result.inspection, result.config
        self.trace = result.inspection.trace
        self.panel.set_proposal_knobs(self.config.rpn_test.nms_thresh, self.config.rpn_test.post_nms_top_n)
        self.panel.set_levels(self.trace.anchors.grid_sizes)
        self.level = 0
        detections = self.trace.detections
        found = detections is not None and len(detections.keep_idx) > 0
        self.selected_roi = int(detections.roi_idx[0]) if found else 0
        self.selected_detection = 0 if found else None
        self.relabel(self._gt_boxes())
        self._update_funnel()

    def _update_funnel(self) -> None:
        """The funnel of the document's GT boxes against the inspection's own trace (the one
        whose detections came from its proposals); the chain shown is dropped."""
        gt_boxes, gt_labels = self._gt_labels()
        self.funnel = recall_funnel(self.inspection.trace, gt_boxes, gt_labels, self.class_names,
                                    score_thresh=FUNNEL_SCORE_THRESH, rpn_config=self.config.rpn_train)
        self.chain_layer.set_boxes(np.zeros((0, 4)), SAMPLE)
        self.funnel_changed.emit(self.funnel)

    def show_chain(self, row: int) -> None:
        """Draw the chain of funnel row `row` above everything else."""
        overlay = chain_overlay(self.funnel[row], self.inspection.trace)
        self.chain_layer.set_boxes(overlay.boxes, overlay.colours, overlay.widths, overlay.tags)

    def _detected(self, result) -> None:
        if result.trace is not None and Path(result.image_path) == self.document.current_path:
            self._detect_trace = result.trace
            self._show()

    def _gt_boxes(self, dragged_id=None, dragged_coords=None) -> torch.Tensor:
        """The document's GT boxes (G, 4), with the box being dragged at its mid-drag place."""
        coords = {box_id: box.coords for box_id, box in self.document.boxes.items()}
        if dragged_coords is not None:
            coords[dragged_id if dragged_id is not None else "new"] = dragged_coords
        return torch.tensor(list(coords.values()), dtype=torch.float32).reshape(-1, 4)

    def _box_dragged(self, box_id, coords) -> None:
        if self.inspection is not None and self.panel.stage == "anchor-labels":
            self.relabel(self._gt_boxes(box_id, coords))

    def relabel(self, gt_boxes: torch.Tensor) -> None:
        """Anchor labels for gt_boxes (G, 4) original pixels; none when G is 0."""
        start = time.perf_counter()
        labels = self.inspection.relabel_anchors(gt_boxes) if len(gt_boxes) else None
        self.training_trace = None
        self._update("anchor-labels", replace(self.trace, anchor_labels=labels), start, len(gt_boxes))

    def rerun_proposals(self, nms_iou: float, post_nms_top_n: int) -> None:
        if self.inspection is None:
            return
        start = time.perf_counter()
        proposals = self.inspection.rerun_proposals(nms_thresh=nms_iou, post_nms_top_n=post_nms_top_n)
        self._update("proposals", replace(self.trace, proposals=proposals), start, len(self.document.boxes))

    def _update(self, stage: str, trace, start: float, gt_count: int) -> None:
        self.trace, self._gt_count = trace, gt_count
        self.rerun_ms[stage] = (time.perf_counter() - start) * 1000
        self._show()

    def _level_chosen(self, level: int) -> None:
        self.level = level
        self._show()

    def _gt_labels(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The document's GT boxes (G, 4) and class indices (G,) of the classes the model knows."""
        known = [(box.coords, self.class_names.index(box.label)) for box in self.document.boxes.values()
                 if box.label in self.class_names[1:]]
        boxes = torch.tensor([coords for coords, _ in known], dtype=torch.float32).reshape(-1, 4)
        return boxes, torch.tensor([label for _, label in known], dtype=torch.int64)

    def _training(self):
        """The training trace for the document's GT boxes (None without any the model knows)."""
        if self.training_trace is None:
            gt_boxes, gt_labels = self._gt_labels()
            if len(gt_boxes):
                self.training_trace = self.inspection.training_trace_for(gt_boxes, gt_labels)
        return self.training_trace

    def select_roi(self, x: float, y: float) -> None:
        """Select the RoI (an inference proposal) containing (x, y) whose centre is nearest."""
        index = box_at(self.inspection.trace.proposals.boxes, x, y)
        if index is not None:
            self.selected_roi = index
            self._show()

    def _clicked(self, x: float, y: float) -> None:
        self._point = (x, y)
        if self.panel.stage == "anchors":
            self._show()
        elif self.panel.stage == "roi-pool" and self.inspection is not None:
            self.select_roi(x, y)
        elif self.panel.stage == "class-scores" and self.inspection is not None:
            self.select_detection(x, y)

    def select_detection(self, x: float, y: float) -> None:
        """Select the final detection containing (x, y) whose centre is nearest."""
        index = box_at(self.inspection.trace.detections.boxes, x, y)
        if index is not None:
            self.selected_detection = index
            self._show()

    def _show(self) -> None:
        stage = self.panel.stage
        self.canvas.detection_layer.setVisible(stage == "detections")
        self.layer.setVisible(stage != "detections")
        self.heatmap.setVisible(stage == "objectness" and self.trace is not None)
        if self.trace is None:
            self.layer.set_boxes(np.zeros((0, 4)), SAMPLE)
            self.heatmap.set_image(QImage(), QRectF(), QRectF())
            self.panel.set_counts({} if self._detect_trace is None else stage_counts(self._detect_trace))
            if self._pending is not None:
                self.panel.set_explanation("Inspecting this image…")
            else:
                self.panel.set_explanation("Pick a stage to see how the model got to these detections."
                                           if self.document.image_size is not None else "")
            return
        overlay = self._overlay(stage)
        if overlay is not None:
            self.layer.set_boxes(overlay.boxes, overlay.colours, overlay.widths, overlay.tags)
        counts = stage_counts(self.trace)
        if self.trace.anchor_labels is None:
            counts["anchor-labels"] = "(draw a GT box)"
            counts["roi-samples"] = "(draw a GT box)"
        elif self.training_trace is not None:
            targets = self.training_trace.roi_targets
            counts["roi-samples"] = f"{int(targets.is_foreground.sum())} fg / {len(targets.labels)}"
        self.panel.set_counts(counts)
        self.panel.set_explanation(self._explanation(stage))
        self.shown.emit(stage)

    def _overlay(self, stage: str) -> Overlay | None:
        trace = self.trace
        if stage == "anchors":
            height, width = self.document.image_size[1], self.document.image_size[0]
            x, y = self._point or (width / 2, height / 2)
            return anchors_overlay(trace.anchors, x, y)
        if stage == "anchor-labels":
            if trace.anchor_labels is None:
                return Overlay(np.zeros((0, 4)), [], np.zeros(0), [])
            return anchor_labels_overlay(trace.anchors, trace.anchor_labels)
        if stage == "proposals-pre-nms":
            return proposals_pre_nms_overlay(trace.proposals)
        if stage == "proposals":
            return proposals_overlay(trace.proposals)
        if stage == "objectness":
            image, target = objectness_heatmap(trace, self.level)
            width, height = self.document.image_size
            self.heatmap.set_image(image, target, QRectF(0, 0, width, height))
            return Overlay(np.zeros((0, 4)), [], np.zeros(0), [])
        if stage == "roi-samples":
            training = self._training()
            if training is None:
                return Overlay(np.zeros((0, 4)), [], np.zeros(0), [])
            return roi_samples_overlay(training.roi_targets, self.class_names)
        if stage == "roi-pool":
            roi = self.selected_roi
            self.panel.set_feature_maps(feature_maps(self.inspection.pooled_features(roi)))
            return pooling_overlay(self.inspection.trace.proposals.boxes[roi], self.inspection.sampling_grid(roi))
        if stage == "class-scores":
            if self.selected_detection is None:
                self.panel.set_class_scores([])
                return Overlay(np.zeros((0, 4)), [], np.zeros(0), [])
            provenance = self.inspection.provenance(self.selected_detection)
            scores = self.inspection.trace.detections.class_scores[provenance.roi_index].tolist()
            self.panel.set_class_scores(list(zip(self.class_names, scores)), provenance.label)
            return provenance_overlay(provenance, self.class_names[provenance.label])
        return None

    def _explanation(self, stage: str) -> str:
        if stage == "anchor-labels" and self.trace.anchor_labels is None:
            return "Draw a GT box (W, then drag) to see which anchors become positive and negative."
        if stage == "roi-samples":
            return self._roi_samples_explanation()
        text = explain(stage, self.trace, self.config, self._gt_count if stage == "anchor-labels" else None)
        if stage == "objectness":
            text += (f" Heatmap: level {self.level}, per cell the highest score of its anchor shapes"
                     " (dark 0 → red → yellow/white 1).")
        if stage == "class-scores" and self.selected_detection is not None:
            provenance = self.inspection.provenance(self.selected_detection)
            text += "\n" + provenance_text(provenance, self.class_names[provenance.label])
            text += " Click a detection to follow another."
        if stage == "roi-pool":
            text += (f" Selected RoI {self.selected_roi}: its bins (orange) and sample points (white); click"
                     " a proposal to pick another. Pictures: its pooled 7 x 7 features.")
        if stage == "anchors":
            text += " Click the image to see the anchors of the cell there."
        if stage.startswith("proposals"):
            text += " Colour: objectness score, blue 0 → red 1."
        if stage in self.rerun_ms:
            text += f"\n(re-run in {self.rerun_ms[stage]:.0f} ms, no backbone pass)"
        return text

    def _roi_samples_explanation(self) -> str:
        training = self._training()
        if training is None:
            return "Draw a GT box of a class the model knows to see which RoIs training would sample."
        targets = training.roi_targets
        text = explain("roi-samples", training, self.config, len(self._gt_labels()[1]))
        text += " Foreground RoIs in their class colour, background grey."
        if not targets.quota_filled:
            text += (f"\n⚠ Positive quota not filled: {int(targets.is_foreground.sum())} foreground RoIs"
                     f" of the {targets.positive_quota} the batch could take.")
        return text
