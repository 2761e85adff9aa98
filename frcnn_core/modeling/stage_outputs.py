"""What one pass through the stages computed: the typed records `FasterRCNN.run_stages` builds once.

Shapes: N images, L feature levels, A anchors per image, R RoIs over the batch (the proposals at
inference, the sampled RoIs in training), C classes with background 0, (h, w) the pooled size.
Boxes are in input (resized) pixels; tensors are on the model's device, made in the caller's grad
mode. `trace_builder` turns them into one `trace.Trace` per image.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from frcnn_core.modeling.anchors import LevelAnchors
from frcnn_core.modeling.config import RPNConfig
from frcnn_core.modeling.rpn import AnchorTargets
from frcnn_core.modeling.trace import DetectionsTrace, ProposalsTrace, RoiTargetsTrace
from frcnn_core.modeling.transform import ImageBatch


@dataclass(frozen=True)
class BackbonePass:
    """The backbone and the RPN head on a batch: what every later stage starts from, and what the
    inspector keeps so that its re-runs never touch the backbone.

    batch: the prepared images; features: L maps (N, Cl, Hl, Wl), finest first; anchors: those of
    the padded input; objectness (N, A) logits; deltas (N, A, 4), the RPN's box deltas.
    """

    batch: ImageBatch
    features: list[Tensor]
    anchors: LevelAnchors
    objectness: Tensor
    deltas: Tensor


@dataclass(frozen=True)
class PooledRois:
    """RoI pooling of R RoIs: features (R, C, h, w); level (R,) int64, the feature level each RoI
    was pooled from."""

    features: Tensor
    level: Tensor


@dataclass(frozen=True)
class BoxHeadOutputs:
    """The box head and the predictor on R pooled RoIs: class_logits (R, C); box_deltas (R, 4C)."""

    class_logits: Tensor
    box_deltas: Tensor


@dataclass(frozen=True)
class StageOutputs:
    """Every stage of one pass over a batch; the lists hold one entry per image.

    rpn_config: the RPN settings the proposals were made with (training ones when the pass had
    targets); anchor_targets, roi_targets: only in a pass with targets, else None; rois (Ri, 4):
    what RoI pooling saw, the proposals or (with targets) the sampled RoIs, in `pooled`'s order;
    box_head: None when the pass stopped after RoI pooling; detections: only in a pass without
    targets that ran the box head, else None.
    """

    backbone: BackbonePass
    rpn_config: RPNConfig
    proposals: list[ProposalsTrace]
    anchor_targets: list[AnchorTargets] | None
    roi_targets: list[RoiTargetsTrace] | None
    rois: list[Tensor]
    pooled: PooledRois
    box_head: BoxHeadOutputs | None
    detections: list[DetectionsTrace] | None
