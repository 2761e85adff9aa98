"""What a score rests on: saliency maps for one detection or one proposal, and the deletion test
that measures whether a map is faithful.

A *target* is one score of one image's pass: a detection's class probability (the box head on the
detection's own RoI) or a proposal's objectness (the RPN head at its anchor). `TargetScorer`
computes that score again on changed copies of the image, the RoI or the anchor held fixed, so on
the unchanged image it gives the score the pass gave.

Two methods, each giving a map over the image's pixels (higher: the score rests more on it):

- `drise` — D-RISE (Petsiuk et al., "Black-box Explanation of Object Detectors via Saliency
  Maps", CVPR 2021): random smooth masks keep part of the image (the rest filled with its mean
  colour); each masked copy is scored with D-RISE's similarity to the target (a detection: the IoU
  of its box with the target's times the cosine of the class probabilities; a proposal: its
  objectness). The map is the covariance of a pixel's mask value with that weight over the masks
  (D-RISE's weighted sum of masks, less what the weights' mean gives every pixel: the same ranking
  in expectation, less noise). No gradients: any model in the zoo. A generator, one
  `SaliencyProgress` per batch of masks, so that a caller shows the map as it refines and stops
  when told.
- `hires_cam` — HiResCAM (Draelos & Carin, 2020): the gradient of the target's logit times the
  activation, element by element, summed over the channels (captum's `LayerGradientXActivation`),
  on the feature map the target was computed from (the FPN level its RoI was pooled from, or its
  anchor's level), up-sampled to the image. Grad-CAM proper averages the gradient over the map
  first, which spreads a RoI's score onto every place with like features: on BCCD val its top 10 %
  cost the score 3x what a random 10 % cost, HiResCAM's 8x (12 detections of 3 images).

`deletion_test` fills the most salient share of the pixels with the image's mean colour and
compares the target's score drop with that of deleting a random share of the same size.

Shapes: image (3, H, W) float in [0, 1], original pixels; masks and maps (H, W) float32; boxes
(4,) x1, y1, x2, y2 in original pixels.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import box_iou

from frcnn_core.errors import InputError
from frcnn_core.modeling import boxes as box_ops, transform
from frcnn_core.modeling.model import FasterRCNN
from frcnn_core.modeling.trace import ProposalsTrace, Trace

DETECTION, PROPOSAL = "detection", "proposal"
DRISE, HIRES_CAM = "drise", "hirescam"
METHODS = {DRISE: "D-RISE (random masks)", HIRES_CAM: "HiResCAM (gradient x activation)"}
PREVIEW_MASKS = 64  # D-RISE's first map, in a few seconds on a CPU
REFINED_MASKS = 1000  # D-RISE's default count: the paper's 4,000-5,000 is a GPU's budget
MASK_PROBABILITY = 0.5  # the share of grid cells a mask keeps (D-RISE's p)
DELETED_SHARE = 0.1  # the deletion test's share of pixels
RANDOM_DRAWS = 4  # random deletions averaged per target
MASK_BATCH = 4  # masked copies a pass: more cost a CPU memory (and its page faults) for no speed


@dataclass(frozen=True)
class SaliencyTarget:
    """One score to explain. box: the detection's or proposal's box (drawn, and D-RISE's IoU
    reference); roi: the RoI the box head scores (a detection; None for a proposal); label: the
    class (0 for a proposal); anchor_index: the proposal's anchor (-1 for a detection); level: the
    feature level the score was computed from; score: on the unchanged image."""

    kind: str
    box: Tensor
    roi: Tensor | None
    label: int
    anchor_index: int
    level: int
    score: float


@dataclass(frozen=True)
class TargetScores:
    """A target's score on N images: score (N,) and its logit (N,) (before the softmax or the
    sigmoid); for a detection also the class probabilities (N, C) and each class's box (N, C, 4)
    in original pixels, else None."""

    score: Tensor
    logit: Tensor
    probabilities: Tensor | None
    class_boxes: Tensor | None


@dataclass(frozen=True)
class SaliencyProgress:
    """done of total masks scored; heatmap (H, W): the map so far (None before the first batch)."""

    done: int
    total: int
    heatmap: Tensor | None


@dataclass(frozen=True)
class DeletionTest:
    """The target's score on the unchanged image, with the `share` most salient pixels deleted, and
    with a random `share` deleted (the mean of `RANDOM_DRAWS` draws)."""

    score: float
    salient: float
    random: float
    share: float

    @property
    def salient_drop(self) -> float:
        return self.score - self.salient

    @property
    def random_drop(self) -> float:
        return self.score - self.random


def detection_target(trace: Trace, index: int) -> SaliencyTarget:
    """The target of final detection `index` of a trace (inference settings)."""
    detections = trace.detections
    if not 0 <= index < len(detections.keep_idx):
        raise InputError(None, f"there is no detection {index}: the image has {len(detections.keep_idx)}")
    roi = int(detections.roi_idx[index])
    return SaliencyTarget(kind=DETECTION, box=detections.boxes[index].float(), roi=trace.proposals.boxes[roi].float(),
                          label=int(detections.labels[index]), anchor_index=-1, level=int(trace.roi_pool.level[roi]),
                          score=float(detections.scores[index]))


def proposal_target(proposals: ProposalsTrace, index: int) -> SaliencyTarget:
    """The target of proposal `index` (after NMS): its objectness at its anchor."""
    if not 0 <= index < len(proposals.post_nms_idx):
        raise InputError(None, f"there is no proposal {index}: the image has {len(proposals.post_nms_idx)}")
    pre_nms = int(proposals.post_nms_idx[index])
    return SaliencyTarget(kind=PROPOSAL, box=proposals.pre_nms_boxes[pre_nms].float(), roi=None, label=0,
                          anchor_index=int(proposals.pre_nms_anchor_idx[pre_nms]),
                          level=int(proposals.pre_nms_level[pre_nms]), score=float(proposals.pre_nms_scores[pre_nms]))


def box_target(model: FasterRCNN, image: Tensor, box: Tensor, label: int | None = None) -> SaliencyTarget:
    """A box of the user's as a RoI: the box head's probability for `label` (default: its likeliest
    class). InputError when the box is empty or not inside the image."""
    height, width = image.shape[-2:]
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise InputError(None, f"box {x1:g},{y1:g},{x2:g},{y2:g} is not a box of numbers")
    if x2 - x1 < 1 or y2 - y1 < 1:
        raise InputError(None, f"box {x1:g},{y1:g},{x2:g},{y2:g} is empty: it must be at least 1 pixel wide and high")
    if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
        raise InputError(None, f"box {x1:g},{y1:g},{x2:g},{y2:g} is not inside the {width}x{height} image")
    if label is not None and not 1 <= label < len(model.class_names):
        raise InputError(None, f"class {label} is not one of the model's classes 1-{len(model.class_names) - 1}")
    roi = torch.tensor([x1, y1, x2, y2])
    probe = SaliencyTarget(kind=DETECTION, box=roi, roi=roi, label=0, anchor_index=-1, level=-1, score=math.nan)
    with torch.inference_mode():
        scores, level = TargetScorer(model, probe).score_with_level(image[None])
    chosen = int(scores.probabilities[0, 1:].argmax()) + 1 if label is None else label
    return SaliencyTarget(kind=DETECTION, box=scores.class_boxes[0, chosen].cpu(), roi=roi, label=chosen,
                          anchor_index=-1, level=level, score=float(scores.probabilities[0, chosen]))


class TargetScorer:
    """The target's score on (N, 3, H, W) copies of its image, in the caller's grad mode, with the
    RoI (a detection) or the anchor (a proposal) held fixed. `channels_last`: run the convolutions
    in that layout (faster on a CPU; the floats differ from the pass's at the 1e-6 level, so a
    caller compares scores from one scorer only)."""

    def __init__(self, model: FasterRCNN, target: SaliencyTarget, channels_last: bool = False):
        self.model = model
        self.target = target
        self.memory_format = torch.channels_last if channels_last else None

    def __call__(self, images: Tensor) -> TargetScores:
        return self.score_with_level(images)[0]

    def score_with_level(self, images: Tensor) -> tuple[TargetScores, int]:
        """The scores, and the feature level they were computed from."""
        model, target = self.model, self.target
        device = next(model.parameters()).device
        if target.kind == PROPOSAL:
            start = model.backbone_pass(list(images.to(device)), self.memory_format)
            logit = start.objectness[:, target.anchor_index].float()
            return TargetScores(torch.sigmoid(logit), logit, None, None), int(start.anchors.level[target.anchor_index])
        batch, features = model.features_of(list(images.to(device)), self.memory_format)  # no RPN needed
        roi = transform.to_input(target.roi.to(device, torch.float32)[None], batch, 0)
        pooled = model.pool_rois(features, [roi] * len(images), batch.input_sizes)
        head = model.score_rois(pooled)
        probabilities = F.softmax(head.class_logits.float(), -1)
        # (N, 4C) deltas on N copies of the one RoI -> (N, C, 4) boxes
        weights = model.config.roi_test.box_weights
        class_boxes = box_ops.decode(head.box_deltas.float(), roi.expand(len(images), 4), weights)
        class_boxes = transform.to_original(box_ops.clip(class_boxes, batch.input_sizes[0]), batch, 0)
        scores = TargetScores(probabilities[:, target.label], head.class_logits[:, target.label].float(), probabilities,
                              class_boxes)
        return scores, int(pooled.level[0])


def random_masks(count: int, image_size: tuple[int, int], cell: float, generator: torch.Generator) -> Tensor:
    """(count, H, W) smooth masks in [0, 1]: a grid of cells `cell` pixels wide, each kept with
    MASK_PROBABILITY, up-sampled bilinearly and shifted by a random fraction of a cell (RISE's masks)."""
    height, width = image_size
    cell_px = max(1, round(cell))
    rows, columns = math.ceil(height / cell_px) + 1, math.ceil(width / cell_px) + 1
    grid = (torch.rand(count, 1, rows, columns, generator=generator) < MASK_PROBABILITY).float()
    smooth = F.interpolate(grid, size=(rows * cell_px, columns * cell_px), mode="bilinear", align_corners=False)
    smooth = smooth[:, 0].clamp(0, 1)  # the interpolation overshoots 1 by a rounding error
    shifts = torch.randint(0, cell_px, (count, 2), generator=generator)
    return torch.stack([mask[dy: dy + height, dx: dx + width] for mask, (dy, dx) in zip(smooth, shifts.tolist(),
                                                                                         strict=True)])


def mask_cell(target: SaliencyTarget, image_size: tuple[int, int]) -> float:
    """The masks' cell in pixels: half the target box's shorter side, so that a mask hides parts
    of the object, kept between 1/32 and 1/4 of the image's longer side."""
    x1, y1, x2, y2 = (float(v) for v in target.box)
    longer = max(image_size)
    return min(max(min(x2 - x1, y2 - y1) / 2, longer / 32), longer / 4)


def _fill(image: Tensor, keep: Tensor) -> Tensor:
    """(N, 3, H, W): the image where keep (N, H, W) is 1, its mean colour where it is 0."""
    mean = image.mean(dim=(1, 2))[:, None, None]
    keep = keep[:, None]
    return image[None] * keep + mean[None] * (1 - keep)


def _drise_weights(scores: TargetScores, target: SaliencyTarget, reference: TargetScores) -> Tensor:
    """D-RISE's similarity of each masked copy to the target: objectness for a proposal; for a
    detection the IoU of the boxes times the cosine of the class probabilities."""
    if target.kind == PROPOSAL:
        return scores.score
    boxes = scores.class_boxes[:, target.label]
    overlap = box_iou(boxes, target.box[None].to(boxes))[:, 0]
    cosine = F.cosine_similarity(scores.probabilities, reference.probabilities.to(scores.probabilities), dim=1)
    return overlap * cosine


class MaskStatistics:
    """Running sums over weighted masks: `heatmap()` is, per pixel, the covariance of the mask value
    with the weight over the masks added so far, E[w m] - E[w] E[m] (D-RISE's map, centred)."""

    def __init__(self, size: tuple[int, int], device: torch.device):
        self.weighted = torch.zeros(size, device=device)  # sum of weight x mask
        self.kept = torch.zeros(size, device=device)  # sum of masks
        self.weight_sum = 0.0
        self.count = 0

    def add(self, weights: Tensor, masks: Tensor) -> None:
        """weights (N,) and masks (N, H, W), on the statistics' device."""
        self.weighted += torch.einsum("n,nhw->hw", weights.float(), masks)
        self.kept += masks.sum(0)
        self.weight_sum += float(weights.sum())
        self.count += len(masks)

    def heatmap(self) -> Tensor:
        """(H, W) on the CPU."""
        return (self.weighted / self.count - (self.weight_sum / self.count) * (self.kept / self.count)).cpu()


def drise(model: FasterRCNN, image: Tensor, target: SaliencyTarget, masks: int = REFINED_MASKS,
          batch_size: int = MASK_BATCH, generator: torch.Generator | None = None,
          cell: float | None = None) -> Iterator[SaliencyProgress]:
    """D-RISE over `masks` masks (module docstring), `batch_size` at a time; yields no map at
    first, then the map after each batch (the last is the result). Under inference mode;
    `cell`: mask_cell's by default; `generator` draws the masks (seed 0 by default)."""
    generator = generator or torch.Generator().manual_seed(0)
    size = (int(image.shape[-2]), int(image.shape[-1]))
    cell = cell or mask_cell(target, size)
    scorer = TargetScorer(model, target, channels_last=True)  # the reference, too
    device = next(model.parameters()).device
    image = image.to(device)
    statistics = MaskStatistics(size, device)
    yield SaliencyProgress(0, masks, None)
    with torch.inference_mode():
        reference = scorer(image[None])
        while statistics.count < masks:
            chunk = random_masks(min(batch_size, masks - statistics.count), size, cell, generator).to(device)
            statistics.add(_drise_weights(scorer(_fill(image, chunk)), target, reference), chunk)
            yield SaliencyProgress(statistics.count, masks, statistics.heatmap())


def drise_map(model: FasterRCNN, image: Tensor, target: SaliencyTarget, masks: int = REFINED_MASKS,
              generator: torch.Generator | None = None) -> Tensor:
    """D-RISE's final map (H, W), without the progress."""
    *_, last = drise(model, image, target, masks, generator=generator)
    return last.heatmap


def feature_layer(model: FasterRCNN, level: int) -> nn.Module:
    """The module whose output is feature level `level`: an FPN's output convolution for it (the
    last one for the extra max-pooled level, which is computed from it), or a single-map backbone's
    body. ValueError for a backbone of another shape."""
    backbone = model.backbone
    fpn = getattr(backbone, "fpn", None)
    if fpn is not None:
        return fpn.layer_blocks[min(level, len(fpn.layer_blocks) - 1)]
    body = getattr(backbone, "body", None)
    if body is not None:
        return body
    raise ValueError(f"HiResCAM does not know which layer of a {type(backbone).__name__} backbone to use")


def hires_cam(model: FasterRCNN, image: Tensor, target: SaliencyTarget) -> Tensor:
    """HiResCAM of the target's logit (as the CAM papers: a confident probability's gradient
    vanishes) at its feature level, ReLU'd, as a map (H, W) over the image: the feature cells cover
    the padded input, so the map is up-sampled to it, cut to the resized image and resized to the
    original."""
    from captum.attr import LayerGradientXActivation

    scorer = TargetScorer(model, target)
    explainer = LayerGradientXActivation(lambda images: scorer(images).logit, feature_layer(model, target.level))
    device = next(model.parameters()).device
    with torch.inference_mode(False), torch.enable_grad():
        inputs = image[None].to(device).clone().requires_grad_(True)
        # (1, C, h, w) gradient x activation -> (1, 1, h, w)
        cam = explainer.attribute(inputs).detach().float().sum(1, keepdim=True).clamp(min=0)
    transform_config = model.config.transform
    resized = transform.resized_size(*image.shape[-2:], transform_config)
    padded = F.interpolate(cam, size=transform.padded_size(*resized, transform_config.size_divisible),
                           mode="bilinear", align_corners=False)
    cut = padded[:, :, : resized[0], : resized[1]]
    return F.interpolate(cut, size=tuple(image.shape[-2:]), mode="bilinear", align_corners=False)[0, 0].cpu()


def saliency_map(model: FasterRCNN, image: Tensor, target: SaliencyTarget, method: str,
                 masks: int = REFINED_MASKS, generator: torch.Generator | None = None) -> Tensor:
    """The map (H, W) of `method` (DRISE or HIRES_CAM) for the target."""
    if method == DRISE:
        return drise_map(model, image, target, masks, generator)
    if method == HIRES_CAM:
        return hires_cam(model, image, target)
    raise ValueError(f"unknown saliency method {method!r}: {', '.join(METHODS)}")


def most_salient(heatmap: Tensor, share: float = DELETED_SHARE) -> Tensor:
    """(H, W) bool: the `share` of the pixels where the map is highest (ties by position)."""
    flat = heatmap.flatten()
    chosen = torch.zeros(flat.shape, dtype=torch.bool)
    chosen[torch.topk(flat, max(1, round(share * len(flat)))).indices] = True
    return chosen.reshape(heatmap.shape)


def deletion_test(model: FasterRCNN, image: Tensor, target: SaliencyTarget, heatmap: Tensor,
                  share: float = DELETED_SHARE, generator: torch.Generator | None = None) -> DeletionTest:
    """The target's score with the map's most salient `share` of the pixels filled with the image's
    mean colour, against RANDOM_DRAWS random deletions of the same size (module docstring)."""
    generator = generator or torch.Generator().manual_seed(0)
    height, width = heatmap.shape
    salient = most_salient(heatmap.detach().float().cpu(), share)  # the map may be on the model's device
    count = int(salient.sum())
    random = torch.zeros(RANDOM_DRAWS, height * width, dtype=torch.bool)
    for row in random:
        row[torch.randperm(height * width, generator=generator)[:count]] = True
    deleted = torch.cat([salient[None], random.reshape(RANDOM_DRAWS, height, width)])
    keep = torch.cat([torch.ones(1, height, width), (~deleted).float()]).to(image.device)
    with torch.inference_mode():
        scores = TargetScorer(model, target)(_fill(image, keep)).score.float().cpu()
    return DeletionTest(score=float(scores[0]), salient=float(scores[1]), random=float(scores[2:].mean()), share=share)
