"""The saliency stage of the stage inspector: which pixels one detection's score (or one proposal's
objectness) rests on, computed on demand in the engine thread (`EngineClient.saliency`).

The canvas shows the detections the detections panel shows (or, with "explain: a proposal", the
best proposals drawn); a click picks the smallest of them under the mouse and asks for its map
with the method and mask count of the controls (`saliency_panel.py`). D-RISE's map arrives first
as a preview after PREVIEW_MASKS masks and is redrawn as it refines; HiResCAM's in one step. The
map is drawn over the photo (`pictures.saliency_image`), the target outlined above it, and the
stage's text (`texts.saliency_text`) names the method, the target, the masks, the seconds and the
deletion test. Cancel (or leaving the stage, which frees the engine for the other stages) keeps
the map so far; another image or model, or another kind of target, clears it. Changing the
method runs it again on the same target; a new mask count takes effect at the next click.
"""
from __future__ import annotations

import torch
from PySide6.QtCore import QObject, QRectF, Signal
from PySide6.QtGui import QImage

from frcnn_core.inspect.saliency import DETECTION, HIRES_CAM
from frcnn_gui.inspector.chains import detections_part
from frcnn_gui.inspector.overlays import (
    SAMPLE_POINT,
    STAGE_LAYER_Z,
    Overlay,
    class_colour_of,
    overlay_of,
    proposals_overlay,
)
from frcnn_gui.inspector.pictures import HeatmapLayer, saliency_image
from frcnn_gui.inspector.saliency_panel import SaliencyControls

SALIENCY_STAGE = "saliency"
TARGET_WIDTH = 3.0  # screen pixels: the target's outline over the map


def smallest_box_at(boxes: torch.Tensor, x: float, y: float) -> int | None:
    """The index of the smallest (by area) of boxes (N, 4) that contains (x, y); None if none does."""
    inside = (boxes[:, 0] <= x) & (x <= boxes[:, 2]) & (boxes[:, 1] <= y) & (y <= boxes[:, 3])
    if not bool(inside.any()):
        return None
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return int(torch.where(inside, areas, torch.inf).argmin())


class SaliencyView(QObject):
    """The saliency stage for a StageInspector (its panel, canvas, engine and inspection).

    `target` indexes the inspection's detections (kind DETECTION) or its proposals after NMS;
    `running` is the request id of the map under way (None when none is); `update` its latest
    SaliencyUpdate; `result` the SaliencyResult of the target's last map; `drawn_masks` the masks of
    the map on the canvas (None: no map drawn). `changed` asks the inspector to redraw the stage;
    `map_drawn(masks)` fires after each map reaches the canvas, `finished` after a result did."""

    changed = Signal()
    map_drawn = Signal(int)
    finished = Signal()

    def __init__(self, inspector):
        super().__init__(inspector)
        self.inspector = inspector
        self.link = inspector.engine.saliency
        self.controls = SaliencyControls()
        inspector.panel.add_controls(SALIENCY_STAGE, self.controls)
        self.layer = HeatmapLayer()
        inspector.canvas.add_layer(self.layer, STAGE_LAYER_Z - 1)  # over the photo, under the outlines
        self.kind = DETECTION
        self.method = self.controls.chosen_method
        self.target: int | None = None
        self.running: int | None = None
        self.update = self.result = None
        self.drawn_masks: int | None = None
        self.link.progress.connect(self._progress)
        self.link.done.connect(self._done)
        inspector.engine.failed.connect(self._failed)
        self.controls.kind_chosen.connect(self._kind_chosen)
        self.controls.method_chosen.connect(self._method_chosen)
        self.controls.cancel_requested.connect(self.cancel)

    # --- asking ---------------------------------------------------------------------------------
    def pick(self, x: float, y: float) -> None:
        """A click at image point (x, y): explain the smallest box drawn there, if any."""
        boxes, indices = self._clickable()
        index = smallest_box_at(boxes, x, y)
        if index is not None:
            self.explain(int(indices[index]))

    def explain(self, target: int) -> None:
        """Ask for the map of `target` (of the current kind) with the controls' method and masks;
        the map shown goes, and so does any map under way."""
        self.target, self.update, self.result = target, None, None
        self._draw(None)
        self.method = self.controls.chosen_method
        self.running = self.link.explain(self.inspector.inspection.request_id, self.kind, target, self.method,
                                         self.controls.masks.value())
        self.controls.set_running(0, 0 if self.method == HIRES_CAM else self.controls.masks.value())
        self.changed.emit()

    def cancel(self) -> None:
        """Stop the map under way; its result brings the map so far."""
        if self.running is not None:
            self.link.cancel()
            self.controls.cancel.setEnabled(False)

    def stage_chosen(self, stage: str) -> None:
        """Leaving the stage stops the map under way: the engine thread is wanted for the others."""
        if stage != SALIENCY_STAGE:
            self.cancel()

    def forget(self) -> None:
        """Another image or model: no target, no map; the map under way stops and is never shown."""
        if self.running is not None:
            self.link.cancel()
        self.target = self.running = self.update = self.result = None
        self._draw(None)
        self.controls.reset()

    # --- answers --------------------------------------------------------------------------------
    def _progress(self, update) -> None:
        if update.request_id != self.running:
            return
        self.update = update
        self.controls.set_running(update.done, update.total)
        if update.heatmap is not None:
            self._draw(update.heatmap, update.done)
        self.changed.emit()

    def _done(self, result) -> None:
        if result.request.request_id != self.running:
            return
        self.running, self.result = None, result
        self._draw(result.heatmap, result.masks)
        self.controls.set_idle(result.masks)
        self.changed.emit()
        self.finished.emit()

    def _failed(self, error) -> None:
        if error.request_id == self.running:  # the window has logged it and shown its line
            self.running = None
            self.controls.set_idle()
            self.changed.emit()

    def _kind_chosen(self, kind: str) -> None:
        self.forget()
        self.kind = kind
        self.changed.emit()

    def _method_chosen(self, _method: str) -> None:
        if self.target is not None and self.inspector.inspection is not None:
            self.explain(self.target)

    # --- what the stage shows -------------------------------------------------------------------
    def _draw(self, heatmap, masks: int | None = None) -> None:
        """The map (H, W) over the whole image, or none."""
        image = None if heatmap is None else saliency_image(heatmap)
        if image is None:
            self.layer.set_image(QImage(), QRectF(), QRectF())
            self.drawn_masks = None
            return
        height, width = heatmap.shape
        self.layer.set_image(image, QRectF(0, 0, width, height), QRectF(0, 0, width, height))
        self.drawn_masks = masks
        self.map_drawn.emit(masks)

    def _clickable(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The boxes (N, 4) a click picks from, with their indices (N,) into the inspection's
        detections or proposals: the ones drawn."""
        trace = self.inspector.inspection.trace
        if self.kind == DETECTION:
            shown = self.inspector.shown_detections()
            return trace.detections.boxes[shown], shown
        boxes = trace.proposals.boxes[:self.inspector.drawn]
        return boxes, torch.arange(len(boxes))

    def target_box(self) -> torch.Tensor:
        trace = self.inspector.inspection.trace
        return (trace.detections if self.kind == DETECTION else trace.proposals).boxes[self.target]

    def overlay(self) -> Overlay:
        """The boxes a click picks from (dimmed once a target is picked) and the target, white and thick."""
        inspector = self.inspector
        trace, names = inspector.inspection.trace, inspector.class_names
        target = []
        if self.target is not None:
            target = [(self.target_box().reshape(1, 4), SAMPLE_POINT, TARGET_WIDTH, [self.target_words()])]
        if self.kind != DETECTION:
            return proposals_overlay(trace.proposals, target, inspector.drawn)
        shown = inspector.shown_detections()
        part = detections_part(trace.detections, shown, names)
        if not target:  # nothing picked yet: the detections in their colours, to be clicked
            labels = trace.detections.labels[shown].tolist()
            part = (part[0], [class_colour_of(names, label) for label in labels], 1.5, None, part.hover)
        return overlay_of([part, *target])

    def target_words(self) -> str:
        """The target in a few words: "WBC 0.99" for a detection, "proposal #3, objectness 0.97"."""
        trace = self.inspector.inspection.trace
        if self.kind == DETECTION:
            label = int(trace.detections.labels[self.target])
            names = self.inspector.class_names
            name = names[label] if label < len(names) else str(label)
            return f"{name} {float(trace.detections.scores[self.target]):.2f}"
        return f"proposal #{self.target}, objectness {float(trace.proposals.scores[self.target]):.2f}"
