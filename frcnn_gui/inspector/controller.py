"""The stage inspector's controller: it keeps the stage panel, one reusable overlay layer and the
current image's `Inspection` in step.

The controller asks the engine for an inspection (one backbone pass) the first time a stage other
than "detections" is shown for an image; the `Inspection` stays in the engine's worker and the
controller gets its trace. After that every re-run is a request to the worker (`reruns.Reruns`):
a GT-box drag re-runs only the anchor labels, a proposal knob only the proposal layer, both from
the inspection's cache; the RoI samples (once per GT edit), the selected RoI's pooling, the
selected detection's provenance and the recall funnel likewise. The newest request of a kind wins
(a fast drag never queues stale work), and the stage keeps showing its previous overlay until the
result arrives; this thread never calls the model. What each stage draws lives in `overlays.py`
and `chains.py` (boxes) and `pictures.py` (heatmaps); the saliency stage is `saliency_view.py`'s.

What the panels say follows the image, the model and the detections panel's score threshold: a
new image or model clears every inspection view at once (until its inspection arrives), and the
threshold moves the stage counts, the texts and the recall funnel without a model call. While a
stage other than "detections" and "anchor-labels" (where moving GT boxes is the point) is shown,
a plain click on the canvas picks what the stage shows and never selects or moves a GT box.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from PySide6.QtCore import QObject, QRectF, Signal
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QGraphicsItem

from frcnn_core.inspect.describe import stage_counts
from frcnn_core.inspect.follow import roi_sample_rows
from frcnn_core.inspect.funnel import at_score_threshold
from frcnn_gui.canvas.layers import BoxSetLayer
from frcnn_gui.inspector.chains import CHAIN_LAYER_Z, chain_overlay
from frcnn_gui.inspector.drawing import stage_overlay
from frcnn_gui.inspector.overlays import EMPTY, STAGE_LAYER_Z, box_at, pre_nms_shown_idx
from frcnn_gui.inspector.pictures import HeatmapLayer, liveliest_level, shape_names
from frcnn_gui.inspector.reruns import Reruns
from frcnn_gui.inspector.saliency_view import SALIENCY_STAGE, SaliencyView
from frcnn_gui.inspector.stage_panel import SHOWN_DEFAULT
from frcnn_gui.inspector.texts import stage_text

GT_EDITING_STAGES = ("detections", "anchor-labels")  # where a plain click still selects and moves GT boxes
RERUN_OF = {"anchors": "proposals", "proposals-pre-nms": "proposals"}  # the re-run a stage draws, if not its own


class StageInspector(QObject):
    """Connects the stage panel, the canvas (one `BoxSetLayer` for every stage but "detections",
    which shows the canvas's own detection layer), the document's GT boxes and the engine.

    `shown(stage)` fires after a stage was drawn from an inspection with no re-run of it on its
    way; `reruns.ms` holds the worker's time of each kind's latest re-run, which the panel shows too."""

    shown = Signal(str)
    funnel_changed = Signal(list, float)  # the FunnelRows of the current image's GT boxes, found at this score
    forgotten = Signal()  # the inspection was dropped: another image or model

    def __init__(self, panel, canvas, document, engine, parent: QObject | None = None):
        super().__init__(parent)
        self.panel, self.canvas, self.document, self.engine = panel, canvas, document, engine
        self.layer = BoxSetLayer()
        # drawn once per overlay, then blitted: a GT box moving under a drag repaints the view
        # without drawing hundreds of anchors again (~12 ms -> ~4 ms a repaint with the seed's labels)
        self.layer.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
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
        self.chain_row: int | None = None  # the funnel row whose chain is drawn
        self.score_thresh = canvas.detection_layer.score_threshold  # the detections panel's
        self.chain_layer = BoxSetLayer()
        canvas.add_layer(self.chain_layer, CHAIN_LAYER_Z)
        self.inspection = None  # the InspectResult of the current image: its trace and config
        self.config = None
        self.trace = None  # the inspection's trace with the latest re-runs swapped in
        self._detect_trace = None  # the current image's detection trace: counts before any inspection
        self.reruns = Reruns(engine)
        self.saliency = SaliencyView(self)
        self.saliency.changed.connect(self._show)
        self.gt_count = 0  # the GT boxes the anchor labels were last matched against
        self._training_outdated = False  # the GT boxes changed since the RoI samples were asked for
        self._pending: int | None = None
        self._layer_stage: str | None = None  # the stage whose overlay the layer holds
        self.point: tuple[float, float] | None = None  # the image point clicked last
        self._drawn_stage: str | None = None
        panel.stage_chosen.connect(self._stage_chosen)
        panel.proposal_knobs_changed.connect(self.rerun_proposals)
        panel.level_chosen.connect(self._level_chosen)
        panel.shape_chosen.connect(self._shape_chosen)
        panel.anchor_filter_changed.connect(lambda anchor_filter: self._choose("anchor_filter", anchor_filter))
        panel.anchor_scope_chosen.connect(lambda scope: self._choose("anchor_scope", scope))
        panel.shown_changed.connect(lambda count: self._choose("drawn", count))
        panel.sample_chosen.connect(lambda index: self._choose("selected_sample", index))
        canvas.point_clicked.connect(self._clicked)
        canvas.box_dragged.connect(self._box_dragged)
        engine.inspected.connect(self._inspected)
        engine.rerun_done.connect(self._rerun_done)
        engine.failed.connect(self._failed)
        engine.result.connect(self._detected)
        engine.model_loaded.connect(self._model_loaded)
        document.subscribe(self._document_changed)
        self._stage_chosen(panel.stage)

    def forget(self) -> None:
        """Drop the inspection (another image or model); ask again if a stage needs one."""
        self.inspection = self.trace = self._detect_trace = self.training_trace = self.selected_roi = None
        self.selected_detection = self.selected_proposal = self.selected_post_proposal = self._pending = None
        self.selected_sample = self.chain_row = None
        self.funnel = []
        self._training_outdated = False
        self.reruns.reset(None)
        self.saliency.forget()
        EMPTY.draw_on(self.chain_layer)
        self.panel.clear_inspection()
        self.forgotten.emit()
        self._stage_chosen(self.panel.stage)

    def _model_loaded(self, loaded) -> None:
        self.class_names = list(loaded.class_names)
        self.forget()

    def _document_changed(self, kind: str) -> None:
        if kind == "image":
            self.point = None
            self.forget()
        elif kind == "boxes" and self.inspection is not None:
            self.relabel(self._gt_boxes())
            self._ask_funnel()

    def _stage_chosen(self, stage: str) -> None:
        self.saliency.stage_chosen(stage)
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
        self.inspection, self.config = result, result.config
        self.trace = result.trace
        self.reruns.reset(result.request_id)
        self.panel.set_proposal_knobs(self.config.rpn_test)
        self.panel.set_anchor_filters(len(self.trace.anchors.grid_sizes), self.config.anchors)
        self.anchor_filter = self.panel.anchor_filter()
        self.level, self.shape = liveliest_level(self.trace), None
        self.panel.set_levels(self.trace.anchors.grid_sizes, self.level)
        self.panel.set_shapes(shape_names(self.config.anchors, self.level))
        detections = self.trace.detections
        found = detections is not None and len(detections.keep_idx) > 0
        self.selected_roi = int(detections.roi_idx[0]) if found else 0
        self.selected_detection = 0 if found else None
        self.relabel(self._gt_boxes())
        self._ask_funnel()
        self._show()

    def _ask_funnel(self) -> None:
        """Ask for the funnel of the document's GT boxes against the inspection's own trace (the
        one whose detections came from its proposals)."""
        gt_boxes, gt_labels = self.known_gt()
        self.reruns.ask("funnel", gt_boxes=gt_boxes, gt_labels=gt_labels, class_names=self.class_names,
                        score_thresh=self.score_thresh, rpn_config=self.config.rpn_train)

    def _rerun_done(self, result) -> None:
        """A re-run's result, taken as it comes (live during a drag) unless another inspection's."""
        if not self.reruns.accept(result):
            return
        kind, value, arguments = result.request.kind, result.value, result.request.arguments
        if kind == "funnel":  # the funnel's rows at the current threshold; the chain shown dropped
            self.funnel = at_score_threshold(value, self.score_thresh,
                                             bg_iou_thresh=self.config.rpn_train.bg_iou_thresh)
            self.chain_row = None
            EMPTY.draw_on(self.chain_layer)
            self.funnel_changed.emit(self.funnel, self.score_thresh)
            return
        if kind == "anchor-labels":
            self.trace, self.gt_count = replace(self.trace, anchor_labels=value), len(arguments["gt_boxes"])
        elif kind == "proposals":
            self.trace = replace(self.trace, proposals=value)
            self.selected_proposal = self.selected_post_proposal = None  # indices into the proposals replaced
        elif kind == "roi-samples":
            self.training_trace, self.selected_sample = value, None
            self.panel.set_roi_samples([] if value is None else roi_sample_rows(value.roi_targets), self.class_names)
        self._show()

    def _failed(self, error) -> None:
        """A re-run failed (the window has logged it and shown its line): the stage waits no more."""
        if self.reruns.failed(error.request_id):
            self._show()

    def show_chain(self, row: int) -> None:
        """Draw the chain of funnel row `row` above everything else."""
        self.chain_row = row
        chain_overlay(self.funnel[row], self.inspection.trace).draw_on(self.chain_layer)

    def set_score_threshold(self, score_thresh: float) -> None:
        """The detections panel's threshold: the counts, the texts and the funnel follow it (the
        funnel re-derived from its rows, the chain shown kept)."""
        self.score_thresh = score_thresh
        if self.funnel:
            self.funnel = at_score_threshold(self.funnel, score_thresh,
                                             bg_iou_thresh=self.config.rpn_train.bg_iou_thresh)
            self.funnel_changed.emit(self.funnel, score_thresh)
            if self.chain_row is not None:
                self.show_chain(self.chain_row)
        self._show()

    def _detected(self, result) -> None:
        if result.trace is not None and Path(result.image_path) == self.document.current_path:
            self._detect_trace = result.trace
            self._show()

    def _gt_boxes(self, dragged_id=None, dragged_coords=None) -> list[tuple]:
        """The document's GT boxes [(x1, y1, x2, y2), ...], the box being dragged at its mid-drag place."""
        coords = {box_id: tuple(box.coords) for box_id, box in self.document.boxes.items()}
        if dragged_coords is not None:
            coords[dragged_id if dragged_id is not None else "new"] = tuple(dragged_coords)
        return list(coords.values())

    def _box_dragged(self, box_id, coords) -> None:
        if self.inspection is not None and self.panel.stage == "anchor-labels":
            self.relabel(self._gt_boxes(box_id, coords))

    def relabel(self, gt_boxes: list[tuple]) -> None:
        """Ask for the anchor labels of gt_boxes (original pixels; none without boxes); the RoI
        samples are out of date from now on."""
        self.reruns.ask("anchor-labels", gt_boxes=gt_boxes)
        self._training_outdated = True

    def rerun_proposals(self, settings: dict) -> None:
        """Ask for the proposal layer alone with `settings`, from the inspection's cached RPN
        outputs (no backbone pass)."""
        if self.inspection is not None:
            self.reruns.ask("proposals", **settings)

    def _level_chosen(self, level: int) -> None:
        self.level, self.shape = level, None
        self.panel.set_shapes(shape_names(self.config.anchors, level))
        self._show()

    def _shape_chosen(self, shape: int) -> None:
        self.shape = None if shape < 0 else shape
        self._show()

    def _choose(self, attribute: str, value) -> None:
        setattr(self, attribute, value)
        self._show()

    def known_gt(self) -> tuple[list[tuple], list[int]]:
        """The document's GT boxes [(x1, y1, x2, y2), ...] of the classes the model knows, and
        their class indices."""
        known = [(tuple(box.coords), self.class_names.index(box.label)) for box in self.document.boxes.values()
                 if box.label in self.class_names[1:]]
        return [coords for coords, _ in known], [label for _, label in known]

    def gt_labels(self) -> tuple[torch.Tensor, torch.Tensor]:
        """`known_gt` as tensors, for drawing: boxes (G, 4) float32 and class indices (G,) int64."""
        boxes, labels = self.known_gt()
        return torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), torch.tensor(labels, dtype=torch.int64)

    def training(self):
        """The latest training trace (None without GT boxes the model knows, or until the first
        arrives); asks the worker for the document's GT boxes when they changed since it last did."""
        if self._training_outdated:
            self._training_outdated = False
            gt_boxes, gt_labels = self.known_gt()
            self.reruns.ask("roi-samples", gt_boxes=gt_boxes, gt_labels=gt_labels)
        return self.training_trace

    def _clickable(self) -> tuple[str, torch.Tensor, torch.Tensor] | None:
        """What a click on the current stage selects: the attribute it sets, and the boxes (N, 4)
        it picks from with their indices (N,) (None: a click selects nothing here)."""
        stage, trace = self.panel.stage, self.trace
        if stage == "roi-pool":  # the inspection's own proposals: the RoIs its detections came from
            boxes = self.inspection.trace.proposals.boxes
            return "selected_roi", boxes, torch.arange(len(boxes))
        if stage == "class-scores":  # the drawn ones: those the detections panel shows
            shown = self.shown_detections()
            return "selected_detection", self.inspection.trace.detections.boxes[shown], shown
        if stage == "proposals":  # the drawn ones
            boxes = trace.proposals.boxes[:self.drawn]
            return "selected_post_proposal", boxes, torch.arange(len(boxes))
        if stage == "proposals-pre-nms":  # the drawn ones, into the current pre-NMS proposals
            shown = pre_nms_shown_idx(trace.proposals, self.drawn)
            return "selected_proposal", trace.proposals.pre_nms_boxes[shown], shown
        if stage == "roi-samples" and self.training() is not None:
            rois = self.training_trace.roi_targets.rois
            return "selected_sample", rois, torch.arange(len(rois))
        return None

    def _clicked(self, x: float, y: float) -> None:
        """Anchors: the cell at (x, y); saliency: the smallest box there is explained; other stages:
        the box of `_clickable` that contains (x, y) with its centre nearest."""
        self.point = (x, y)
        if self.panel.stage == SALIENCY_STAGE and self.inspection is not None:
            self.saliency.pick(x, y)
            return
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
        if stage != self._drawn_stage:  # on a change of stage only: else View > Show detections has its say
            self.canvas.detection_layer.setVisible(stage == "detections")
            self._drawn_stage = stage
        self.canvas.inspecting = stage not in GT_EDITING_STAGES
        self.layer.setVisible(stage != "detections")
        self.heatmap.setVisible(stage == "objectness" and self.trace is not None)
        self.saliency.layer.setVisible(stage == SALIENCY_STAGE and self.trace is not None)
        if self.trace is None:
            EMPTY.draw_on(self.layer)
            self._layer_stage = None
            self.heatmap.set_image(QImage(), QRectF(), QRectF())
            self.panel.set_counts({} if self._detect_trace is None
                                  else stage_counts(self._detect_trace, self.score_thresh))
            if self._pending is not None:
                self.panel.set_explanation("Inspecting this image…")
            else:
                self.panel.set_explanation("Pick a stage to see how the model got to these detections."
                                           if self.document.image_size is not None else "")
            return
        overlay = stage_overlay(self, stage)
        if overlay is None and stage != self._layer_stage:  # on its way: rather nothing than another stage's
            overlay = EMPTY
        if overlay is not None:
            overlay.draw_on(self.layer)
            self._layer_stage = stage
        counts = stage_counts(self.trace, self.score_thresh)
        if self.trace.anchor_labels is None:
            counts["anchor-labels"] = "(draw a GT box)"
            counts["roi-samples"] = "(draw a GT box)"
        elif self.training_trace is not None:
            targets = self.training_trace.roi_targets
            counts["roi-samples"] = f"{int(targets.is_foreground.sum())} fg / {len(targets.labels)}"
        self.panel.set_counts(counts)
        self.panel.set_explanation(stage_text(self, stage))
        if not self.reruns.waiting(RERUN_OF.get(stage, stage)):
            self.shown.emit(stage)

    def provenance(self):
        """The selected detection's Provenance once the worker has sent it (asked for once), else None."""
        return self.reruns.fetched("class-scores", self.selected_detection)

    def shown_detections(self) -> torch.Tensor:
        """The indices (n,) of the inspection's detections the detections panel shows: scoring at
        least its threshold."""
        return torch.nonzero(self.inspection.trace.detections.scores >= self.score_thresh).flatten()

    def own_detections(self):
        """The inspection's detections while the shown proposals are the ones they came from."""
        if self.trace.proposals is self.inspection.trace.proposals:
            return self.inspection.trace.detections
        return None
