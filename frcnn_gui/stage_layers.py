"""The stage inspector on the canvas: what each stage draws, and the controller that keeps the
stage panel, one reusable overlay layer and the current image's `Inspection` in step.

Overlay builders are functions of trace records only (no Qt beyond colours): each returns an
`Overlay` of N boxes in original-image pixels with a colour, a pen width and a tag each, drawn
lowest first. The controller asks the engine for an inspection (one backbone pass) the first time
a stage other than "detections" is shown for an image; after that a GT-box drag re-runs only the
anchor labels and a proposal knob only the proposal layer, both from the inspection's cache.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QColor

from frcnn_core.config import NEG, POS
from frcnn_core.explain import explain
from frcnn_core.trace import AnchorLabelsTrace, AnchorsTrace, ProposalsTrace
from frcnn_gui.canvas.layers import PALETTE, BoxSetLayer

STAGE_LAYER_Z = 15  # above the detections (10), below the GT boxes (20) they are judged against
ANCHOR_SAMPLE = 60  # inside anchors drawn faintly, to show how densely they cover the image
PRE_NMS_SHOWN = 300
SCORE_TAGS = 10  # the best proposals carry their score
# yellow and cyan: apart from the GT class colours, which are drawn on top of them
POSITIVE, NEGATIVE, SAMPLE = QColor("#ffe119"), QColor("#42d4f4"), QColor(200, 200, 200)


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

    def __init__(self, panel, canvas, document, engine, parent: QObject | None = None):
        super().__init__(parent)
        self.panel, self.canvas, self.document, self.engine = panel, canvas, document, engine
        self.layer = BoxSetLayer()
        canvas.add_layer(self.layer, STAGE_LAYER_Z)
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
        canvas.point_clicked.connect(self._clicked)
        canvas.box_dragged.connect(self._box_dragged)
        engine.inspected.connect(self._inspected)
        engine.result.connect(self._detected)
        engine.model_loaded.connect(lambda _loaded: self.forget())
        document.subscribe(self._document_changed)
        self._stage_chosen(panel.stage)

    def forget(self) -> None:
        """Drop the inspection (another image or model); ask again if a stage needs one."""
        self.inspection = self.trace = self._detect_trace = None
        self._pending = None
        self.rerun_ms.clear()
        self._stage_chosen(self.panel.stage)

    def _document_changed(self, kind: str) -> None:
        if kind == "image":
            self._point = None
            self.forget()
        elif kind == "boxes" and self.inspection is not None:
            self.relabel(self._gt_boxes())

    def _stage_chosen(self, stage: str) -> None:
        if stage != "detections" and self.inspection is None and self._pending is None \
                and self.document.image_size is not None:
            self._pending = self.engine.inspect(str(self.document.current_path))
        self._show()

    def _inspected(self, result) -> None:
        if result.request_id != self._pending or Path(result.image_path) != self.document.current_path:
            return
        self._pending = None
        self.inspection, self.config = result.inspection, result.config
        self.trace = result.inspection.trace
        self.panel.set_proposal_knobs(self.config.rpn_test.nms_thresh, self.config.rpn_test.post_nms_top_n)
        self.relabel(self._gt_boxes())

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

    def _clicked(self, x: float, y: float) -> None:
        self._point = (x, y)
        if self.panel.stage == "anchors":
            self._show()

    def _show(self) -> None:
        stage = self.panel.stage
        self.canvas.detection_layer.setVisible(stage == "detections")
        self.layer.setVisible(stage != "detections")
        if self.trace is None:
            self.layer.set_boxes(np.zeros((0, 4)), SAMPLE)
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
        return None

    def _explanation(self, stage: str) -> str:
        if stage == "anchor-labels" and self.trace.anchor_labels is None:
            return "Draw a GT box (W, then drag) to see which anchors become positive and negative."
        text = explain(stage, self.trace, self.config, self._gt_count if stage == "anchor-labels" else None)
        if stage == "anchors":
            text += " Click the image to see the anchors of the cell there."
        if stage.startswith("proposals"):
            text += " Colour: objectness score, blue 0 → red 1."
        if stage in self.rerun_ms:
            text += f"\n(re-run in {self.rerun_ms[stage]:.0f} ms, no backbone pass)"
        return text
