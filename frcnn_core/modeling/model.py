"""Faster R-CNN, wiring only: each step calls a stage from its own module.

`model(images)` returns detections, free of autograd graph unless `keep_graph=True`;
`model(images, targets)` the four losses; `trace=True` adds one `trace.Trace` per image. Both run
`run_stages`, the one stage sequence, which the inspector runs too. Which settings drive the
stages follows from the call, never from `self.training`: with targets the training settings
(`rpn_train`, `roi_train`), without them the inference settings. (`train()` / `eval()` still
switch dropout and batch norm.)

Images are (3, H, W) float in [0, 1]; targets are dicts with "boxes" (G, 4) in original pixels
and "labels" (G,) int64 >= 1. Detections are dicts with "boxes" (D, 4) in original pixels,
"scores" (D,) and "labels" (D,) int64.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import Tensor, nn

from frcnn_core.modeling import transform
from frcnn_core.modeling.anchors import LevelAnchors, inside_mask, make_anchors
from frcnn_core.modeling.config import DetectorConfig, RPNConfig
from frcnn_core.modeling.roi_heads import fast_rcnn_loss, postprocess
from frcnn_core.modeling.roi_targets import roi_targets
from frcnn_core.modeling.rpn import anchor_targets, propose, rpn_loss
from frcnn_core.modeling.stage_outputs import BackbonePass, BoxHeadOutputs, PooledRois, StageOutputs
from frcnn_core.modeling.trace import ProposalsTrace
from frcnn_core.modeling.trace_builder import build_trace

# (features, per-image RoIs, input sizes) -> (pooled (R, C, h, w), level (R,))
Pooler = Callable[[list[Tensor], list[Tensor], list[tuple[int, int]]], tuple[Tensor, Tensor]]

# Anchor layouts a model keeps: a folder of photos has a handful of input sizes; more are made again.
ANCHOR_CACHE_SIZE = 8


class FasterRCNN(nn.Module):
    """backbone -> RPN head -> proposal layer -> RoI pooling -> box head -> predictor.

    Submodule names (`backbone`, `rpn.head`, `roi_heads.box_head`, `roi_heads.box_predictor`)
    match torchvision's, so its state_dicts load unchanged.
    """

    def __init__(
        self,
        backbone: nn.Module,
        rpn_head: nn.Module,
        pooler: Pooler,
        box_head: nn.Module,
        box_predictor: nn.Module,
        config: DetectorConfig,
        class_names: list[str],
    ):
        super().__init__()
        self.backbone = backbone
        self.rpn = nn.ModuleDict({"head": rpn_head})
        self.roi_heads = nn.ModuleDict({"box_head": box_head, "box_predictor": box_predictor})
        self.pooler = pooler
        self.config = config
        self.class_names = list(class_names)
        self._anchor_cache: OrderedDict[tuple, LevelAnchors] = OrderedDict()  # least recently used first
        self.memory_format = torch.contiguous_format

    def use_channels_last(self, enabled: bool = True) -> FasterRCNN:
        """Run convolutions in channels-last layout: about 20% faster on this CPU (make bench), but the
        floats differ from torchvision's contiguous layout at the 1e-6 relative level, so near-tied
        scores can swap order. Off by default; `--fast` in the CLI."""
        self.memory_format = torch.channels_last if enabled else torch.contiguous_format
        return self.to(memory_format=self.memory_format)

    def anchors_for(self, grid_sizes: list[tuple[int, int]], padded_size: tuple[int, int], device) -> LevelAnchors:
        """Anchors for a feature-grid layout. They depend on shapes only, so the latest
        `ANCHOR_CACHE_SIZE` layouts are kept (the least recently used goes first).

        Made outside inference mode even when called inside it: a layout first met in an
        inference-mode pass must never hand inference tensors to a later training pass.
        """
        key = (tuple(grid_sizes), tuple(padded_size), str(device), self.config.anchors)
        if key in self._anchor_cache:
            self._anchor_cache.move_to_end(key)
            return self._anchor_cache[key]
        with torch.inference_mode(False):
            made = make_anchors(self.config.anchors, grid_sizes, padded_size)
            anchors = LevelAnchors(made.boxes.to(device), made.level.to(device), made.grid_sizes, made.strides,
                                   made.shapes_per_cell)
        self._anchor_cache[key] = anchors
        if len(self._anchor_cache) > ANCHOR_CACHE_SIZE:
            self._anchor_cache.popitem(last=False)
        return anchors

    def forward(
        self,
        images: list[Tensor],
        targets: list[dict[str, Tensor]] | None = None,
        trace: bool = False,
        keep_pooled: bool = False,
        generator: torch.Generator | None = None,
        keep_graph: bool = False,
    ):
        """Detections (no targets) or losses (targets); with `trace`, also a list of Traces.

        Detections carry no autograd graph: the stages run under `torch.no_grad()`, unless
        `keep_graph` leaves the caller's grad mode on, so that a score or box can be
        back-propagated (saliency). A caller that wants speed wraps the call in
        `torch.inference_mode()`. `generator` drives the anchor and RoI sampling; `keep_pooled`
        keeps the pooled RoI features in the trace.
        """
        if targets is None:
            with torch.set_grad_enabled(keep_graph and torch.is_grad_enabled()):
                outputs = self.run_stages(images, None, generator)
            result = self._detections(outputs)
        else:
            outputs = self.run_stages(images, targets, generator)
            result = self._losses(outputs)
        if not trace:
            return result
        traces = [build_trace(outputs, index, keep_pooled) for index in range(len(images))]
        return result, traces

    def run_stages(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None,
                   generator: torch.Generator | None = None) -> StageOutputs:
        """The stage sequence, the one `forward` and the inspector (`Inspection.run`) run:
        `backbone_pass`, then `later_stages`. Runs in the caller's grad mode."""
        return self.later_stages(self.backbone_pass(images), targets, generator)

    def features_of(self, images: list[Tensor], memory_format: torch.memory_format | None = None,
                    ) -> tuple[transform.ImageBatch, list[Tensor]]:
        """Prepare the images and run the backbone: the batch and its feature maps, finest first.
        `memory_format` overrides the model's layout for this call (the input's layout decides the
        convolutions')."""
        batch = transform.prepare(images, self.config.transform)
        features = self.backbone(batch.tensor.contiguous(memory_format=memory_format or self.memory_format))
        return batch, list(features.values()) if isinstance(features, dict) else features

    def backbone_pass(self, images: list[Tensor], memory_format: torch.memory_format | None = None) -> BackbonePass:
        """Prepare the images, run the backbone and the RPN head, lay out the anchors
        (`memory_format`: as in `features_of`)."""
        batch, features = self.features_of(images, memory_format)
        objectness, deltas = self.rpn["head"](features)
        grid_sizes = [(int(f.shape[-2]), int(f.shape[-1])) for f in features]
        anchors = self.anchors_for(grid_sizes, tuple(batch.tensor.shape[-2:]), batch.tensor.device)
        return BackbonePass(batch, features, anchors, objectness, deltas)

    def later_stages(self, start: BackbonePass, targets: list[dict[str, Tensor]] | None = None,
                     generator: torch.Generator | None = None, score_rois: bool = True) -> StageOutputs:
        """Every stage after the backbone pass: proposals; with targets (training settings) the
        anchor labels and the sampled RoIs, which `generator` draws in that order, image by image;
        RoI pooling; the box head; without targets (inference settings) the detections.
        `score_rois=False` stops after RoI pooling (the inspector's training trace shows no scores)."""
        training = targets is not None
        rpn_config = self.config.rpn_train if training else self.config.rpn_test
        roi_config = self.config.roi_train if training else self.config.roi_test
        batch = start.batch
        proposals = self.proposals_for(start, rpn_config)
        rois = [p.boxes for p in proposals]
        anchor_labels = roi_samples = head = detections = None
        if training:
            gt_boxes = [transform.to_input(t["boxes"].to(batch.tensor.device), batch, i) for i, t in enumerate(targets)]
            anchor_labels = [
                anchor_targets(start.anchors.boxes, inside_mask(start.anchors.boxes, size), gt, rpn_config, generator)
                for gt, size in zip(gt_boxes, batch.input_sizes, strict=True)
            ]
            roi_samples = [
                roi_targets(r.detach(), gt, t["labels"].to(gt.device), roi_config, generator)
                for r, gt, t in zip(rois, gt_boxes, targets, strict=True)
            ]
            rois = [samples.rois for samples in roi_samples]
        pooled = self.pool_rois(start.features, rois, batch.input_sizes)
        if score_rois:
            head = self.score_rois(pooled)
            if not training:
                detections = postprocess(head.class_logits, head.box_deltas, rois, batch.input_sizes, roi_config)
        return StageOutputs(backbone=start, rpn_config=rpn_config, proposals=proposals, anchor_targets=anchor_labels,
                            roi_targets=roi_samples, rois=rois, pooled=pooled, box_head=head, detections=detections)

    def proposals_for(self, start: BackbonePass, config: RPNConfig) -> list[ProposalsTrace]:
        """The proposal layer on a backbone pass's RPN outputs, with `config`; per image."""
        anchors = start.anchors
        return propose(start.objectness, start.deltas, anchors.boxes, anchors.level, anchors.num_per_level,
                       start.batch.input_sizes, config)

    def pool_rois(self, features: list[Tensor], rois: list[Tensor], input_sizes: list[tuple[int, int]]) -> PooledRois:
        """RoI pooling of per-image RoIs (Ri, 4) in input pixels."""
        return PooledRois(*self.pooler(features, rois, input_sizes))

    def score_rois(self, pooled: PooledRois) -> BoxHeadOutputs:
        """The box head and the predictor on pooled RoIs."""
        return BoxHeadOutputs(*self.roi_heads["box_predictor"](self.roi_heads["box_head"](pooled.features)))

    def _losses(self, outputs: StageOutputs) -> dict[str, Tensor]:
        start, head = outputs.backbone, outputs.box_head
        loss_objectness, loss_rpn_box_reg = rpn_loss(
            list(start.objectness), list(start.deltas), outputs.anchor_targets, outputs.rpn_config.smooth_l1_beta
        )
        loss_classifier, loss_box_reg = fast_rcnn_loss(
            head.class_logits,
            head.box_deltas,
            torch.cat([t.labels for t in outputs.roi_targets]),
            torch.cat([t.regression_targets for t in outputs.roi_targets]),
            self.config.roi_train.smooth_l1_beta,
        )
        return {
            "loss_classifier": loss_classifier,
            "loss_box_reg": loss_box_reg,
            "loss_objectness": loss_objectness,
            "loss_rpn_box_reg": loss_rpn_box_reg,
        }

    def _detections(self, outputs: StageOutputs) -> list[dict[str, Tensor]]:
        batch = outputs.backbone.batch
        return [
            {"boxes": transform.to_original(d.boxes, batch, i), "scores": d.scores, "labels": d.labels}
            for i, d in enumerate(outputs.detections)
        ]
