"""The stage inspector's controller: it keeps the stage panel, one reusable overlay layer and the
current image's `Inspection` in step.

The controller asks the engine for an inspection (one backbone pass) the first time a stage other
than "detections" is shown for an image; after that a GT-box drag re-runs only the anchor labels
and a proposal knob only the proposal layer, both from the inspection's cache. The RoI samples
come from `Inspection.training_trace_for` (no backbone pass), built once per GT edit. What each
stage draws lives in `stage_overlays.py` (boxes) and `stage_pictures.py` (heatmaps).
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PySide6.QtCore import QObject, QRectF, Signal
from PySide6.QtGui import QImage

from frcnn_core.diagnose import recall_funnel
from frcnn_core.explain import explain, stage_counts
from frcnn_core.follow import fate_text, roi_sample_rows
from frcnn_gui.canvas.layers import BoxSetLayer
from frcnn_gui.stage_overlays import (
    CHAIN_LAYER_Z, FUNNEL_SCORE_THRESH, SAMPLE, STAGE_LAYER_Z, Overlay, anchor_labels_overlay, anchor_shape_mask,
    anchors_overlay, box_at, cell_fates, scoped_anchor_idx, class_parts, class_text, chain_overlay, forward_parts, pooling_overlay, pre_nms_shown_idx,
    proposals_overlay, proposals_pre_nms_overlay, provenance_overlay, provenance_text, proposal_chain,
    roi_samples_overlay, roi_samples_text, suppression_text,
)
from frcnn_gui.panels.stages import SHOWN_DEFAULT
from frcnn_gui.stage_pictures import HeatmapLayer, feature_maps, objectness_heatmap, shape_names


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
        self.selected_proposal: int | None = None  # into the current pre-NMS proposals
        self.selected_post_proposal: int | None = None  # into the current post-NMS proposals
        self.selected_sample: int | None = None  # into the training trace's sampled RoIs
        self.drawn = SHOWN_DEFAULT  # how many proposals are drawn
        self.anchor_filter: dict = {}  # anchor_shape_mask keywords: level, size, ratio
        self.anchor_scope = "cell"  # which anchors the anchors stage draws: a key of ANCHOR_SCOPES
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
        panel.shape_chosen.connect(self._shape_chosen)
        panel.anchor_filter_changed.connect(self._anchor_filter_chosen)
        panel.anchor_scope_chosen.connect(lambda scope: self._choose("anchor_scope", scope))
        panel.shown_changed.connect(lambda count: self._choose("drawn", count))
        panel.sample_chosen.connect(lambda index: self._choose("selected_sample", index))
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
        self.selected_detection = self.selected_proposal = self.selected_post_proposal = self._pending = None
        self.selected_sample = None
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
        self.panel.set_proposal_knobs(self.config.rpn_test)
        self.panel.set_levels(self.trace.anchors.grid_sizes)
        self.panel.set_anchor_filters(len(self.trace.anchors.grid_sizes), self.config.anchors)
        self.anchor_filter = self.panel.anchor_filter()
        self.level, self.shape = 0, None
        self.panel.set_shapes(shape_names(self.config.anchors, 0))
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
        self.training_trace = self.selected_sample = None
        self._update("anchor-labels", replace(self.trace, anchor_labels=labels), start, len(gt_boxes))

    def rerun_proposals(self, settings: dict) -> None:
        """Only the proposal layer, from the inspection's cached RPN outputs (no backbone pass)."""
        if self.inspection is None:
            return
        start = time.perf_counter()
        proposals = self.inspection.rerun_proposals(**settings)
        self.selected_proposal = self.selected_post_proposal = None  # indices into the proposals replaced
        self._update("proposals", replace(self.trace, proposals=proposals), start, len(self.document.boxes))

    def _update(self, stage: str, trace, start: float, gt_count: int) -> None:
        self.trace, self._gt_count = trace, gt_count
        self.rerun_ms[stage] = (time.perf_counter() - start) * 1000
        self._show()

    def _level_chosen(self, level: int) -> None:
        self.level, self.shape = level, None
        self.panel.set_shapes(shape_names(self.config.anchors, level))
        self._show()

    def _shape_chosen(self, shape: int) -> None:
        self.shape = None if shape < 0 else shape
        self._show()

    def _anchor_filter_chosen(self, anchor_filter: dict) -> None:
        self.anchor_filter = anchor_filter
        self._show()

    def _choose(self, attribute: str, value) -> None:
        setattr(self, attribute, value)
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
                self.panel.set_roi_samples(roi_sample_rows(self.training_trace.roi_targets), self.class_names)
        return self.training_trace

    def _clickable(self) -> tuple[str, torch.Tensor, torch.Tensor] | None:
        """What a click on the current stage selects: the attribute it sets, and the boxes (N, 4)
        it picks from with their indices (N,) (None: a click selects nothing here)."""
        stage, trace = self.panel.stage, self.trace
        if stage == "roi-pool":  # the inspection's own proposals: the RoIs its detections came from
            boxes = self.inspection.trace.proposals.boxes
            return "selected_roi", boxes, torch.arange(len(boxes))
        if stage == "class-scores":
            boxes = self.inspection.trace.detections.boxes
            return "selected_detection", boxes, torch.arange(len(boxes))
        if stage == "proposals":  # the drawn ones
            boxes = trace.proposals.boxes[:self.drawn]
            return "selected_post_proposal", boxes, torch.arange(len(boxes))
        if stage == "proposals-pre-nms":  # the drawn ones, into the current pre-NMS proposals
            shown = pre_nms_shown_idx(trace.proposals, self.drawn)
            return "selected_proposal", trace.proposals.pre_nms_boxes[shown], shown
        if stage == "roi-samples" and self._training() is not None:
            rois = self.training_trace.roi_targets.rois
            return "selected_sample", rois, torch.arange(len(rois))
        return None

    def _clicked(self, x: float, y: float) -> None:
        """Anchors: the cell at (x, y); other stages: the box of `_clickable` that contains (x, y)
        with its centre nearest."""
        self._point = (x, y)
        clickable = self._clickable() if self.inspection is not None else None
        index = None if clickable is None else box_at(clickable[1], x, y)
        if index is not None:
            attribute, _, indices = clickable
            setattr(self, attribute, int(indices[index]))
            if attribute == "selected_sample":
                self.panel.select_sample(self.selected_sample)
        if self.panel.stage == "anchors" or index is not None:
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
            keep = anchor_shape_mask(trace.anchors, self.config.anchors, **self.anchor_filter)
            fates = cell_fates(trace, x, y, keep) if self._point is not None else []
            best = max(fates, key=lambda fate: fate.score, default=None)
            return anchors_overlay(trace.anchors, x, y, keep, forward_parts(trace, best) if best else None,
                                   self.anchor_scope)
        if stage == "anchor-labels":
            if trace.anchor_labels is None:
                return Overlay(np.zeros((0, 4)), [], np.zeros(0), [])
            return anchor_labels_overlay(trace.anchors, trace.anchor_labels)
        if stage == "proposals-pre-nms":
            return proposals_pre_nms_overlay(trace.proposals, self.selected_proposal, self.drawn)
        if stage == "proposals":
            chain = None
            if self.selected_post_proposal is not None:
                chain, _ = proposal_chain(trace, self.selected_post_proposal, self._own_detections())
            return proposals_overlay(trace.proposals, chain, self.drawn)
        if stage == "objectness":
            image, target = objectness_heatmap(trace, self.level, self.shape)
            width, height = self.document.image_size
            self.heatmap.set_image(image, target, QRectF(0, 0, width, height))
            return Overlay(np.zeros((0, 4)), [], np.zeros(0), [])
        if stage == "roi-samples":
            training = self._training()
            if training is None:
                return Overlay(np.zeros((0, 4)), [], np.zeros(0), [])
            return roi_samples_overlay(training.roi_targets, self.class_names, self.selected_sample,
                                       self._gt_labels()[0])
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
            under = class_parts(self.inspection.trace.detections, self.selected_detection, self.class_names)
            return provenance_overlay(provenance, self.class_names[provenance.label], under)
        return None

    def _explanation(self, stage: str) -> str:
        if stage == "anchor-labels" and self.trace.anchor_labels is None:
            return "Draw a GT box (W, then drag) to see which anchors become positive and negative."
        if stage == "roi-samples":
            training = self._training()
            if training is None:
                return "Draw a GT box of a class the model knows to see which RoIs training would sample."
            return roi_samples_text(training, self.config, self.class_names, self.selected_sample,
                                    len(self._gt_labels()[1]))
        text = explain(stage, self.trace, self.config, self._gt_count if stage == "anchor-labels" else None)
        if stage == "objectness":
            which = ("the highest score of its anchor shapes" if self.shape is None
                     else f"the score of shape {shape_names(self.config.anchors, self.level)[self.shape]}")
            text += f" Heatmap: level {self.level}, per cell {which} (dark 0 → red → yellow/white 1)."
        if stage == "class-scores" and self.selected_detection is not None:
            provenance = self.inspection.provenance(self.selected_detection)
            text += "\n" + provenance_text(provenance, self.class_names[provenance.label])
            text += "\n" + class_text(self.inspection.trace.detections, self.selected_detection, self.class_names,
                                       self.config.roi_test.nms_thresh)
            text += " Click a detection to follow another."
        if stage == "roi-pool":
            text += (f" Selected RoI {self.selected_roi}: its bins (orange) and sample points (white); click"
                     " a proposal to pick another. Pictures: its pooled 7 x 7 features.")
        if stage == "anchors":
            text += " Click the image to see the anchors of the cell there; filter them by level, size, ratio."
            if self.anchor_scope != "cell":
                keep = anchor_shape_mask(self.trace.anchors, self.config.anchors, **self.anchor_filter)
                chosen = int((keep & self.trace.anchors.inside).sum() if self.anchor_scope == "inside" else keep.sum())
                drawn = len(scoped_anchor_idx(self.trace.anchors, keep, self.anchor_scope))
                text += (f" Drawn: {drawn:,} of the {chosen:,} chosen anchors" + (" (an even sample: filter to see"
                         " them all)." if drawn < chosen else "."))
            if self._point is not None:  # what became of the clicked cell's anchors comes first
                keep = anchor_shape_mask(self.trace.anchors, self.config.anchors, **self.anchor_filter)
                fates = cell_fates(self.trace, *self._point, keep)
                text = ("The clicked cell's best-scoring anchor on each level, followed forward (the best one's"
                        " proposal in white):\n" + "\n".join(fate_text(fate, self.trace.proposals) for fate in fates)
                        + "\n\n" + text)
        if stage.startswith("proposals"):
            text += f" Drawn: the best {self.drawn:,}; colour: objectness score, blue 0 → red 1."
        if stage == "proposals-pre-nms":
            text += ("\n" + suppression_text(self.trace.proposals, self.selected_proposal)
                     if self.selected_proposal is not None else " Click a proposal to see what NMS did with it.")
        if stage == "proposals":
            text += ("\n" + proposal_chain(self.trace, self.selected_post_proposal, self._own_detections())[1]
                     if self.selected_post_proposal is not None
                     else " Click a proposal: its anchor and the detections it became.")
        if stage in self.rerun_ms:
            text += f"\n(re-run in {self.rerun_ms[stage]:.0f} ms, no backbone pass)"
        return text

    def _own_detections(self):
        """The inspection's detections while the shown proposals are the ones they came from."""
        if self.trace.proposals is self.inspection.trace.proposals:
            return self.inspection.trace.detections
        return None
