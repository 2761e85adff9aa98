"""The stage inspector's engine: one forward pass, then fast re-runs of single stages (issue 5).

`Inspection.run` runs the model's own stage sequence (`FasterRCNN.run_stages`) once and keeps what
the later stages need: the backbone pass (feature maps, anchors, the RPN's objectness logits and
box deltas, in input pixels) and the second stage's outputs. A slider then re-runs only the stage
it drives, never the backbone:

    relabel_anchors     GT boxes moved     -> IoU matching + sampling (training RPN settings)
    training_trace_for  GT boxes and labels -> the model's later stages with the training settings
    rerun_proposals     NMS IoU, top-N     -> the proposal layer from the cached RPN outputs
    rerun_detections    new proposals      -> RoI pooling + box head + post-processing
                        score/NMS/top-K    -> post-processing only

Shape glossary: A anchors, G GT boxes, R RoIs (the proposals the box head saw), C classes with
background 0, (h, w) the pooled size, S the RoIAlign sampling ratio.

Everything handed out is in original-image pixels, as in `trace.py`; the cache is in input pixels.
Each re-run starts from the model's own settings (`config.rpn_test`, `roi_test`; the anchor labels
`rpn_train`) and changes only the knobs passed, so results never depend on earlier slider moves.
The "current" second stage (the RoIs and detections of the latest `rerun_detections`, at first
those of `trace`) is what `pooled_features`, `sampling_grid` and `provenance` refer to. The runs
and re-runs compute under `torch.inference_mode()` on the caller's thread and change no
process-wide setting.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor
from torchvision.ops import box_iou

from frcnn_core.errors import InputError
from frcnn_core.inspect.saliency import DETECTION, PROPOSAL, SaliencyTarget, proposal_target
from frcnn_core.modeling import trace_builder as tracing, transform
from frcnn_core.modeling.anchors import inside_mask
from frcnn_core.modeling.model import FasterRCNN
from frcnn_core.modeling.roi_heads import postprocess
from frcnn_core.modeling.roi_pool import infer_scale
from frcnn_core.modeling.rpn import anchor_targets
from frcnn_core.modeling.stage_outputs import BoxHeadOutputs, PooledRois, StageOutputs
from frcnn_core.modeling.trace import AnchorLabelsTrace, DetectionsTrace, ProposalsTrace, Trace

IOU_ELEMENTS_KEPT = 16_000_000  # the relabel's remembered IoU rows: 64 MB of floats at most


@dataclass(frozen=True)
class PoolingGrid:
    """Where RoI pooling looked for one RoI, in original pixels.

    bins (h, w, 4): the box each pooled cell summarises; sample_points (h, w, S*S, 2) (x, y):
    RoIAlign's bilinear sample points of each bin (row-major within the bin), None for RoIPool,
    which max-pools every feature cell a bin covers; level: the feature level pooled from.
    """

    bins: Tensor
    sample_points: Tensor | None
    level: int


@dataclass(frozen=True)
class Provenance:
    """One detection's chain anchor -> proposal -> RoI -> box, in original pixels.

    proposal_index indexes the pre-NMS proposals of `proposals` (the ProposalsTrace the RoIs came
    from); anchor_deltas (4,) are the RPN's deltas that moved the anchor onto the proposal;
    class_deltas (4,) the box head's deltas for `label` that moved the RoI onto the detection.
    """

    detection_index: int
    roi_index: int
    proposal_index: int
    anchor_index: int
    anchor_box: Tensor
    anchor_deltas: Tensor
    objectness: float
    proposal_box: Tensor
    roi_box: Tensor
    class_deltas: Tensor
    label: int
    score: float
    detection_box: Tensor
    proposals: ProposalsTrace = field(repr=False)


@dataclass(frozen=True)
class _SecondStage:
    """The second stage on one set of RoIs: proposals (their ProposalsTrace, in original pixels),
    rois (R, 4) in input pixels, their pooling and the box head's outputs."""

    proposals: ProposalsTrace
    rois: Tensor
    pooled: PooledRois
    head: BoxHeadOutputs


class Inspection:
    """One image's forward pass, cached so that each stage can re-run on its own (module docstring).

    Attributes: image — the (3, H, W) image, on the model's device; trace — the inference Trace,
    plus the anchor labels when GT boxes were given;
    training_trace — the training-settings Trace (anchor labels, training proposals, RoI samples),
    when GT boxes and labels were given; backbone_calls — backbone passes made (always 1).
    Besides the feature maps it keeps the current RoIs' pooled features (R x C x 7 x 7 floats:
    50 MB for resnet50-fpn's 1,000 proposals).
    """

    def __init__(self, model: FasterRCNN, outputs: StageOutputs, generator_seed: int, image: Tensor):
        """From a one-image pass of `model.run_stages` without targets on `image` (3, H, W)."""
        self._model = model
        self.image = image
        self._start = outputs.backbone
        self._inside = inside_mask(self._start.anchors.boxes, self._start.batch.input_sizes[0])
        self._generator_seed = generator_seed
        self._iou_rows: dict[tuple[float, ...], Tensor] = {}  # GT box in input pixels -> its (A,) IoU row
        self.backbone_calls = 1
        self.trace = tracing.build_trace(outputs, 0, keep_pooled=False)
        self.training_trace: Trace | None = None
        self._second = _SecondStage(self.trace.proposals, outputs.rois[0], outputs.pooled, outputs.box_head)
        self._detections = self.trace.detections
        # ProposalsTrace -> its boxes in input pixels, for the first and the latest one: pooling
        # them needs no round trip through original pixels, so the floats stay the model's
        self._known_rois = [(self.trace.proposals, outputs.rois[0])] * 2

    @classmethod
    def run(cls, model: FasterRCNN, image: Tensor, gt_boxes: Tensor | None = None, gt_labels: Tensor | None = None,
            generator_seed: int = 0) -> Inspection:
        """Run `model` (as it is: call `eval()` first) once on `image` (3, H, W) float in [0, 1].

        gt_boxes (G, 4) in original pixels add the anchor labels to `trace`; with gt_labels (G,)
        int64 >= 1 as well, `training_trace` is built too. `generator_seed` seeds the sampling, so
        that the labels equal a training pass's with `torch.Generator().manual_seed(seed)`.
        """
        with torch.inference_mode():
            image = image.to(_device(model))
            outputs = model.run_stages([image])
        inspection = cls(model, outputs, generator_seed, image)
        if gt_boxes is not None:
            inspection.trace = replace(inspection.trace, anchor_labels=inspection.relabel_anchors(gt_boxes))
            if gt_labels is not None:
                inspection.training_trace = inspection.training_trace_for(gt_boxes, gt_labels)
        return inspection

    def relabel_anchors(self, gt_boxes: Tensor) -> AnchorLabelsTrace:
        """The anchor-labels stage alone for gt_boxes (G, 4) in original pixels (G may be 0):
        IoU matching and balanced sampling with the training RPN settings and a generator freshly
        seeded with the inspection's seed. It is the stage re-run while a GT box is dragged."""
        generator = torch.Generator().manual_seed(self._generator_seed)
        with torch.inference_mode():
            boxes = self._to_input(gt_boxes)
            targets = anchor_targets(self._start.anchors.boxes, self._inside, boxes, self._model.config.rpn_train,
                                     generator, iou=self._anchor_iou(boxes))
        return tracing.anchor_labels_trace(targets)

    def _anchor_iou(self, boxes: Tensor) -> Tensor:
        """box_iou(boxes, anchors) (G, A), reusing the rows of boxes seen before: a drag moves one
        box, so only its row is computed again. The rows kept hold at most IOU_ELEMENTS_KEPT floats."""
        anchors = self._start.anchors.boxes
        rows_kept = IOU_ELEMENTS_KEPT // max(len(anchors), 1)
        keys = [tuple(box) for box in boxes.tolist()]
        if len(keys) > rows_kept:
            return box_iou(boxes, anchors)
        missing = [index for index, key in enumerate(keys) if key not in self._iou_rows]
        if len(self._iou_rows) + len(missing) > rows_kept:
            wanted = set(keys)
            self._iou_rows = {key: row for key, row in self._iou_rows.items() if key in wanted}
        if missing:
            for index, row in zip(missing, box_iou(boxes[missing], anchors), strict=True):
                self._iou_rows[keys[index]] = row
        if not keys:
            return anchors.new_zeros((0, len(anchors)))
        return torch.stack([self._iou_rows[key] for key in keys])

    def training_trace_for(self, gt_boxes: Tensor, gt_labels: Tensor) -> Trace:
        """The Trace a training pass would give (training settings: anchor labels, proposals, RoI
        samples, pooling): the model's `later_stages` on the cached backbone pass, up to RoI
        pooling; gt_boxes (G, 4) in original pixels, gt_labels (G,) int64 >= 1. The generator is
        consumed in the model's order."""
        generator = torch.Generator().manual_seed(self._generator_seed)
        target = {"boxes": gt_boxes, "labels": gt_labels}
        with torch.inference_mode():
            outputs = self._model.later_stages(self._start, [target], generator, score_rois=False)
        return tracing.build_trace(outputs, 0, keep_pooled=False)

    def rerun_proposals(self, nms_thresh: float | None = None, pre_nms_top_n: int | None = None,
                        post_nms_top_n: int | None = None, min_size: float | None = None) -> ProposalsTrace:
        """The proposal layer (and NMS's suppressors) alone, with the inference RPN settings
        changed by the knobs given (None keeps the model's value); min_size in input pixels."""
        config = _turned(self._model.config.rpn_test, nms_thresh=nms_thresh, pre_nms_top_n=pre_nms_top_n,
                         post_nms_top_n=post_nms_top_n, min_size=min_size)
        with torch.inference_mode():
            (proposals,) = self._model.proposals_for(self._start, config)
            record = tracing.proposals_trace(proposals, self._to_original)
        self._known_rois[1] = (record, proposals.boxes)
        return record

    def rerun_detections(self, proposals: ProposalsTrace | None = None, score_thresh: float | None = None,
                         nms_thresh: float | None = None, detections_per_img: int | None = None) -> DetectionsTrace:
        """The second stage for `proposals` (None: the current ones), with the inference RoI
        settings changed by the knobs given. The RoIs are pooled and scored again only when the
        proposal boxes changed; otherwise only post-processing runs. Becomes the current stage."""
        config = _turned(self._model.config.roi_test, score_thresh=score_thresh, nms_thresh=nms_thresh,
                         detections_per_img=detections_per_img)
        with torch.inference_mode():
            if proposals is not None and proposals is not self._second.proposals:
                self._second = self._second_stage(proposals)
            second = self._second
            (detections,) = postprocess(second.head.class_logits, second.head.box_deltas, [second.rois],
                                        self._start.batch.input_sizes, config)
            self._detections = tracing.in_original_pixels(detections, self._to_original)
        return self._detections

    def pooled_features(self, roi_index: int) -> Tensor:
        """(C, h, w): the pooled features of one current RoI."""
        return self._second.pooled.features[roi_index].detach().cpu()

    def sampling_grid(self, roi_index: int) -> PoolingGrid:
        """Where the pooler looked for one current RoI: RoIAlign's bins and sample points, or
        RoIPool's bins (the paper model), in original pixels."""
        settings = getattr(self._model.pooler, "keywords", {})  # the zoo's poolers are functools.partial
        level = int(self._second.pooled.level[roi_index])
        box = self._second.rois[roi_index].cpu()
        feature = self._start.features[level]
        if "sampling_ratio" in settings:
            scale = infer_scale(feature.shape[-2:], self._start.batch.input_sizes[0])
            bins, points = roi_align_grid(box, settings["output_size"], scale, settings["sampling_ratio"])
        elif "spatial_scale" in settings:
            bins = roi_pool_bins(box, settings["output_size"], settings["spatial_scale"], tuple(feature.shape[-2:]))
            points = None
        else:
            raise TypeError(f"unknown pooler {self._model.pooler!r}: expected RoIAlign or RoIPool settings")
        bins = self._to_original(bins.reshape(-1, 4)).reshape(bins.shape)
        if points is not None:  # (x, y) as degenerate boxes (x, y, x, y), to share the box scaling
            points = self._to_original(points.repeat(1, 1, 1, 2).reshape(-1, 4))[:, :2].reshape(points.shape)
        return PoolingGrid(bins, points, level)

    def provenance(self, detection_index: int) -> Provenance:
        """The chain of one current detection (index into its final detections)."""
        detections, second = self._detections, self._second
        roi = int(detections.roi_idx[detection_index])
        label = int(detections.labels[detection_index])
        proposal = int(second.proposals.post_nms_idx[roi])
        anchor = int(second.proposals.pre_nms_anchor_idx[proposal])
        box_deltas = second.head.box_deltas
        # (R, 4C) -> (R, C, 4): the RoI's deltas for the detected class
        class_deltas = box_deltas.reshape(len(box_deltas), -1, 4)[roi, label]
        return Provenance(
            detection_index=detection_index,
            roi_index=roi,
            proposal_index=proposal,
            anchor_index=anchor,
            anchor_box=self.trace.anchors.boxes[anchor],
            anchor_deltas=self.trace.objectness.deltas[anchor],
            objectness=float(second.proposals.pre_nms_scores[proposal]),
            proposal_box=second.proposals.pre_nms_boxes[proposal],
            roi_box=self._to_original(second.rois[roi: roi + 1])[0],
            class_deltas=class_deltas.detach().cpu(),
            label=label,
            score=float(detections.scores[detection_index]),
            detection_box=detections.boxes[detection_index],
            proposals=second.proposals,
        )

    def saliency_target(self, kind: str, index: int) -> SaliencyTarget:
        """The saliency target (`saliency.py`) of current detection `index` (kind DETECTION) or of
        current proposal `index` (PROPOSAL, after NMS: its objectness)."""
        if kind == PROPOSAL:
            return proposal_target(self._second.proposals, index)
        if not 0 <= index < len(self._detections.keep_idx):
            raise InputError(None, f"there is no detection {index}: the image has {len(self._detections.keep_idx)}")
        chain = self.provenance(index)
        return SaliencyTarget(kind=DETECTION, box=chain.detection_box.float(), roi=chain.roi_box.float(),
                              label=chain.label, anchor_index=-1, level=int(self._second.pooled.level[chain.roi_index]),
                              score=chain.score)

    def _second_stage(self, proposals: ProposalsTrace) -> _SecondStage:
        known = [boxes for record, boxes in self._known_rois if record is proposals]
        rois = known[0] if known else self._to_input(proposals.boxes)
        if torch.equal(rois, self._second.rois):  # same boxes under other indices: keep the scores
            return replace(self._second, proposals=proposals)
        pooled = self._model.pool_rois(self._start.features, [rois], self._start.batch.input_sizes)
        return _SecondStage(proposals, rois, pooled, self._model.score_rois(pooled))

    def _to_input(self, boxes: Tensor) -> Tensor:
        device = self._start.anchors.boxes.device
        return transform.to_input(boxes.to(device, torch.float32).reshape(-1, 4), self._start.batch, 0)

    def _to_original(self, boxes: Tensor) -> Tensor:
        return transform.to_original(boxes.detach(), self._start.batch, 0).cpu()


def roi_align_grid(box: Tensor, output_size: int, spatial_scale: float, sampling_ratio: int) -> tuple[Tensor, Tensor]:
    """torchvision's `roi_align` (aligned=False) geometry for one box (4,) in input pixels.

    The box is scaled to feature coordinates, widened to at least 1 feature pixel, and cut into
    output_size x output_size bins; each bin averages S x S bilinear samples at the centres of its
    S x S sub-cells (S = sampling_ratio, or ceil(bin side) when sampling_ratio <= 0).
    Returns bins (h, w, 4) and sample points (h, w, Sy*Sx, 2) (x, y), both in input pixels.
    """
    x1, y1, x2, y2 = (float(v) * spatial_scale for v in box.tolist())
    roi_w, roi_h = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    bin_w, bin_h = roi_w / output_size, roi_h / output_size
    grid_w = sampling_ratio if sampling_ratio > 0 else math.ceil(bin_w)
    grid_h = sampling_ratio if sampling_ratio > 0 else math.ceil(bin_h)
    cells = torch.arange(output_size, dtype=torch.float64)
    left, top = x1 + cells * bin_w, y1 + cells * bin_h  # (w,), (h,)
    bins = torch.stack(torch.broadcast_tensors(left[None, :], top[:, None], left[None, :] + bin_w,
                                               top[:, None] + bin_h), dim=-1)
    sub_x = (torch.arange(grid_w, dtype=torch.float64) + 0.5) * bin_w / grid_w
    sub_y = (torch.arange(grid_h, dtype=torch.float64) + 0.5) * bin_h / grid_h
    # (h, w, Sy, Sx) sample coordinates -> (h, w, Sy*Sx, 2)
    xs = (left[None, :, None, None] + sub_x[None, None, None, :]).expand(output_size, output_size, grid_h, grid_w)
    ys = (top[:, None, None, None] + sub_y[None, None, :, None]).expand(output_size, output_size, grid_h, grid_w)
    points = torch.stack([xs, ys], dim=-1).reshape(output_size, output_size, grid_h * grid_w, 2)
    return (bins / spatial_scale).float(), (points / spatial_scale).float()


def roi_pool_bins(box: Tensor, output_size: int, spatial_scale: float, feature_size: tuple[int, int]) -> Tensor:
    """torchvision's `roi_pool` bins for one box (4,) in input pixels: the box's corners rounded
    to feature cells, cut into output_size x output_size bins of whole cells (floor / ceil),
    clipped to the feature map of (height, width). Returns (h, w, 4) in input pixels; a bin covers
    feature cells [x1, x2) x [y1, y2) scaled by 1 / spatial_scale, empty bins have zero size."""
    # C++ round(): half away from zero; the boxes are clipped to the image, so never negative
    start_x, start_y, end_x, end_y = (math.floor(float(v) * spatial_scale + 0.5) for v in box.tolist())
    roi_w, roi_h = max(end_x - start_x + 1, 1), max(end_y - start_y + 1, 1)
    bin_w, bin_h = roi_w / output_size, roi_h / output_size
    height, width = feature_size
    cells = torch.arange(output_size, dtype=torch.float64)
    left = (torch.floor(cells * bin_w) + start_x).clamp(0, width)
    right = (torch.ceil((cells + 1) * bin_w) + start_x).clamp(0, width)
    top = (torch.floor(cells * bin_h) + start_y).clamp(0, height)
    bottom = (torch.ceil((cells + 1) * bin_h) + start_y).clamp(0, height)
    bins = torch.stack(torch.broadcast_tensors(left[None, :], top[:, None], right[None, :], bottom[:, None]), dim=-1)
    return (bins / spatial_scale).float()


def _turned(config, **knobs):
    """`config` with the knobs that are not None changed (None keeps the model's value)."""
    return replace(config, **{name: value for name, value in knobs.items() if value is not None})


def _device(model: FasterRCNN) -> torch.device:
    return next(model.parameters()).device
