"""What the stage inspector draws for each stage: its `Overlay` of boxes from the inspector's trace,
the pictures beside it (the objectness heatmap, the pooled features, the class scores), and the
results the worker sent for the selected RoI or detection (`Reruns.fetched`), asking for them when
they are not there yet; the saliency stage's boxes are its view's (`saliency_view.py`). The
builders are in `overlays.py`, `chains.py` and `pictures.py`; what the panel says about a stage is
in `texts.py`."""
from __future__ import annotations

from PySide6.QtCore import QRectF

from frcnn_gui.inspector.chains import class_parts, detections_part, forward_parts, proposal_chain, provenance_overlay
from frcnn_gui.inspector.overlays import (
    EMPTY,
    SAMPLE,
    Overlay,
    anchor_labels_overlay,
    anchor_shape_mask,
    anchors_overlay,
    cell_fates,
    pooling_overlay,
    proposals_overlay,
    proposals_pre_nms_overlay,
    roi_samples_overlay,
)
from frcnn_gui.inspector.pictures import feature_maps, objectness_heatmap


def stage_overlay(inspector, stage: str) -> Overlay | None:
    """What `stage` draws for a StageInspector that holds an inspection (None: the canvas's own
    detections, or nothing new until a re-run's result arrives); the pictures beside it too."""
    trace = inspector.trace
    if stage == "saliency":
        return inspector.saliency.overlay()
    if stage == "anchors":
        height, width = inspector.document.image_size[1], inspector.document.image_size[0]
        x, y = inspector.point or (width / 2, height / 2)
        keep = anchor_shape_mask(trace.anchors, inspector.config.anchors, **inspector.anchor_filter)
        fates = cell_fates(trace, x, y, keep) if inspector.point is not None else []
        best = max(fates, key=lambda fate: fate.score, default=None)
        return anchors_overlay(trace.anchors, x, y, keep, forward_parts(trace, best) if best else None,
                               inspector.anchor_scope)
    if stage == "anchor-labels":
        if trace.anchor_labels is None:
            return EMPTY
        return anchor_labels_overlay(trace.anchors, trace.anchor_labels)
    if stage == "proposals-pre-nms":
        return proposals_pre_nms_overlay(trace.proposals, inspector.selected_proposal, inspector.drawn)
    if stage == "proposals":
        chain = None
        if inspector.selected_post_proposal is not None:
            chain, _ = proposal_chain(trace, inspector.selected_post_proposal, inspector.own_detections())
        return proposals_overlay(trace.proposals, chain, inspector.drawn)
    if stage == "objectness":
        image, target = objectness_heatmap(trace, inspector.level, inspector.shape)
        width, height = inspector.document.image_size
        inspector.heatmap.set_image(image, target, QRectF(0, 0, width, height))
        return EMPTY
    if stage == "roi-samples":
        training = inspector.training()
        if training is None:
            return EMPTY
        return roi_samples_overlay(training.roi_targets, inspector.class_names, inspector.selected_sample,
                                   inspector.gt_labels()[0])
    if stage == "roi-pool":
        roi, proposals = inspector.selected_roi, inspector.inspection.trace.proposals
        pooling = inspector.reruns.fetched("roi-pool", roi)
        if pooling is None:
            return None
        inspector.panel.set_feature_maps(feature_maps(pooling.features))
        others = [index for index in dict.fromkeys(
            inspector.inspection.trace.detections.roi_idx[inspector.shown_detections()].tolist()) if index != roi]
        behind = (proposals.boxes[others], SAMPLE, 1.0, None, [f"RoI #{index}" for index in others])
        return pooling_overlay(proposals.boxes[roi], pooling.grid, [behind])
    if stage == "class-scores":
        if inspector.selected_detection is None:
            inspector.panel.set_class_scores([])
            return EMPTY
        provenance = inspector.provenance()
        if provenance is None:
            return None
        scores = inspector.inspection.trace.detections.class_scores[provenance.roi_index].tolist()
        inspector.panel.set_class_scores(list(zip(inspector.class_names, scores, strict=True)), provenance.label)
        detections, shown = inspector.inspection.trace.detections, inspector.shown_detections()
        under = [detections_part(detections, shown[shown != inspector.selected_detection], inspector.class_names),
                 *class_parts(detections, inspector.selected_detection, inspector.class_names)]
        return provenance_overlay(provenance, inspector.class_names[provenance.label], under)
    return None
