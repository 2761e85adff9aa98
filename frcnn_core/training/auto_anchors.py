"""Auto-anchors: how well a model's anchors cover the training boxes, and anchors fitted to them.

Shapes: N training boxes, L feature levels, S anchor shapes per cell (the same on every level:
the RPN head is shared), R aspect ratios and S / R sizes per level.

Coverage is YOLOv5's best-possible recall, measured as the training RPN meets the boxes: each box
in model-input pixels (the model's resize of its image, whose size is read from the file's header
with its EXIF orientation), against the anchors of the model's own grid on that image padded alone
(strides, centre offset, rounded shapes, and with `ignore_cross_boundary` only the anchors fully
inside the image). A box's best anchor IoU is found without laying out the grid: for one anchor
shape the intersection is the product of a width and a height overlap, each non-increasing in the
distance between centres along its axis, so the best anchor of a shape sits in the column and row
nearest the box's centre (clamped to the cells whose anchors are allowed).

Fitting (`fit_anchors`): a level's shapes are all its sizes times all its ratios, so sizes and
ratios are fitted apart, each by a 1-D k-means in log space (for two centred shapes of one ratio
the IoU is (smaller / larger side) squared, a function of the log distance; likewise for ratios at
one area). k-means starts at the quantiles, so a fit is deterministic. Sizes are assigned to levels
by the boxes they come from (see `fit_anchors`): larger boxes to coarser strides. `choose_anchors`
fits every split of S into sizes x ratios, with and without balancing the levels, and keeps the
best fit only when it covers more boxes at IoU 0.5, or as many and more at 0.7.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import Tensor

from frcnn_core.data.samples import DetectionDataset, image_size
from frcnn_core.errors import InputError
from frcnn_core.modeling.anchors import base_anchors
from frcnn_core.modeling.config import AnchorConfig, TransformConfig
from frcnn_core.modeling.transform import padded_size, resized_size

SIDE_PER_STRIDE = 4.0  # a level suits boxes whose side spans this many of its strides (centres <= 1/8 side off)
PROBE_SIDE = 256  # the zero input whose feature grids give each level's stride
KMEANS_ITERATIONS = 100


@dataclass(frozen=True)
class Coverage:
    """Best-possible recall of a set of anchors over `boxes` boxes: the share whose best anchor
    IoU is >= 0.5 (`recall_50`), >= 0.7 (`recall_70`), and < 0.5 (`below_50` = 1 - recall_50)."""

    boxes: int
    recall_50: float
    recall_70: float
    below_50: float

    @classmethod
    def of(cls, best_iou: Tensor) -> Coverage:
        """From (N,) best anchor IoUs, N >= 1."""
        recall_50 = float((best_iou >= 0.5).double().mean())
        return cls(len(best_iou), recall_50, float((best_iou >= 0.7).double().mean()), 1.0 - recall_50)

    def to_json(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        return (f"best-possible recall {self.recall_50:.1%} at IoU 0.5, {self.recall_70:.1%} at 0.7; "
                f"{self.below_50:.1%} of {self.boxes} boxes have no anchor at IoU 0.5")


@dataclass(frozen=True)
class ResizedBoxes:
    """Training boxes in model-input pixels and the image each lies in.

    boxes: (N, 4) float64 x1 y1 x2 y2; input_sizes: (N, 2) int64 (h, w) of the resized image;
    padded_sizes: (N, 2) int64 (h, w) of that image padded alone to the model's size_divisible.
    """

    boxes: Tensor
    input_sizes: Tensor
    padded_sizes: Tensor

    @property
    def shapes(self) -> Tensor:
        """(N, 2) float64 width, height."""
        return self.boxes[:, 2:] - self.boxes[:, :2]


def resize_boxes(boxes_per_image: list[Tensor], image_sizes: list[tuple[int, int]],
                 transform: TransformConfig) -> ResizedBoxes:
    """Boxes (Gi, 4) in original pixels of images of (h, w), as the model's resize scales them."""
    boxes, input_sizes, padded_sizes = [], [], []
    for image_boxes, (height, width) in zip(boxes_per_image, image_sizes, strict=True):
        input_height, input_width = resized_size(height, width, transform)
        scale = torch.tensor([input_width / width, input_height / height] * 2, dtype=torch.float64)
        boxes.append(image_boxes.double().reshape(-1, 4) * scale)
        count = len(boxes[-1])
        input_sizes.append(torch.tensor([[input_height, input_width]]).expand(count, 2))
        padded = padded_size(input_height, input_width, transform.size_divisible)
        padded_sizes.append(torch.tensor([padded]).expand(count, 2))
    return ResizedBoxes(torch.cat(boxes), torch.cat(input_sizes), torch.cat(padded_sizes))


def training_boxes(dataset: DetectionDataset, transform: TransformConfig) -> ResizedBoxes:
    """Every box of the dataset (difficult ones too, as training sees them) after the model's
    resize; image sizes come from the files' headers, no pixel is decoded. InputError when the
    dataset has no box at all, or for an unreadable image."""
    samples = [sample for sample in dataset.samples if len(sample.boxes)]
    if not samples:
        raise InputError(None, f"none of the {len(dataset)} training images has a box: nothing to train on")
    sizes = [image_size(sample.image_path)[::-1] for sample in samples]  # (W, H) -> (h, w)
    return resize_boxes([sample.boxes for sample in samples], sizes, transform)


def level_strides(model) -> list[int]:
    """Each feature level's stride in input pixels: the side of a zero square input over the side
    of the level's grid, from one backbone pass in eval mode (every module's mode restored)."""
    modes = [(module, module.training) for module in model.modules()]
    parameter = next(model.parameters())
    probe = torch.zeros(1, 3, PROBE_SIDE, PROBE_SIDE, dtype=parameter.dtype, device=parameter.device)
    try:
        model.eval()
        with torch.inference_mode():
            features = model.backbone(probe)
    finally:
        for module, training in modes:
            module.training = training
    features = list(features.values()) if isinstance(features, dict) else features
    return [PROBE_SIDE // int(feature.shape[-1]) for feature in features]


def _best_overlap(box_lo: Tensor, box_hi: Tensor, shape_lo: Tensor, shape_hi: Tensor, step: Tensor, cells: Tensor,
                  extent: Tensor, center_offset: float, inside_only: bool) -> Tensor:
    """Along one axis: per box and anchor shape, the longest overlap of the box with that shape in
    any allowed cell. box_lo, box_hi, step, cells, extent: (N,) (edges, the grid's step and cell
    count, the resized image's side); shape_lo, shape_hi: (S,) the shape's edges about its
    anchor's position. Returns (N, S) float64, 0 where no cell is allowed."""
    step = step.double()[:, None]
    origin = step * center_offset  # cell j's anchors sit at j * step + origin
    first = torch.zeros_like(origin)
    last = (cells - 1).double()[:, None]
    if inside_only:  # the anchor fully inside [0, extent]
        first = torch.maximum(first, torch.ceil((-origin - shape_lo) / step))
        last = torch.minimum(last, torch.floor((extent.double()[:, None] - origin - shape_hi) / step))
    centre_cell = ((box_lo + box_hi)[:, None] / 2 - origin - (shape_lo + shape_hi) / 2) / step
    nearest = torch.floor(centre_cell)
    cell = torch.stack([nearest, nearest + 1]).clamp(first, torch.maximum(first, last))  # (2, N, S)
    anchor_lo = cell * step + origin + shape_lo
    anchor_hi = cell * step + origin + shape_hi
    overlap = (torch.minimum(anchor_hi, box_hi[:, None]) - torch.maximum(anchor_lo, box_lo[:, None])).clamp(min=0)
    return torch.where(first <= last, overlap.amax(dim=0), 0.0)


def best_anchor_iou(boxes: ResizedBoxes, anchors: AnchorConfig, strides: list[int],
                    ignore_cross_boundary: bool) -> Tensor:
    """(N,) float64: each box's highest IoU with any anchor of the grid `make_anchors` lays over
    its image padded alone (levels of the given nominal strides, grid = ceil(padded / stride),
    step = padded // grid); with `ignore_cross_boundary` only anchors fully inside the image count."""
    widths, heights = boxes.shapes.unbind(1)
    best = torch.zeros(len(boxes.boxes), dtype=torch.float64)
    for sizes, ratios, stride in zip(anchors.sizes, anchors.aspect_ratios, strides, strict=True):
        shapes = base_anchors(sizes, ratios, anchors.round_base).double()  # (S, 4) about the anchor's position
        cells = -(-boxes.padded_sizes // stride)  # (N, 2) rows, columns: ceil, as the backbones' grids come out
        step = boxes.padded_sizes // cells  # make_anchors' stride
        intersection = torch.ones(len(best), len(shapes), dtype=torch.float64)
        for axis, side in ((0, 1), (1, 0)):  # x: columns, width (index 1 of (h, w)); y: rows, height
            intersection = intersection * _best_overlap(
                boxes.boxes[:, axis], boxes.boxes[:, axis + 2], shapes[:, axis], shapes[:, axis + 2], step[:, side],
                cells[:, side], boxes.input_sizes[:, side], anchors.center_offset, ignore_cross_boundary)
        anchor_areas = (shapes[:, 2] - shapes[:, 0]) * (shapes[:, 3] - shapes[:, 1])
        iou = intersection / ((widths * heights)[:, None] + anchor_areas[None, :] - intersection)
        best = torch.maximum(best, iou.amax(dim=1))
    return best


def kmeans_1d(values: Tensor, count: int) -> Tensor:
    """(count,) float64 centres of Lloyd's k-means on (M,) values (M >= 1), started at the
    quantiles (i + 0.5) / count, sorted ascending. A centre left without values stays put."""
    values = values.double()
    centres = torch.quantile(values, (torch.arange(count, dtype=torch.float64) + 0.5) / count)
    for _ in range(KMEANS_ITERATIONS):
        nearest = (values[:, None] - centres[None, :]).abs().argmin(dim=1)
        members = torch.bincount(nearest, minlength=count)
        sums = torch.zeros(count, dtype=torch.float64).index_add_(0, nearest, values)
        updated = torch.where(members > 0, sums / members.clamp(min=1), centres)
        if torch.equal(updated, centres):
            break
        centres = updated
    return centres.sort().values


def fit_anchors(shapes: Tensor, strides: list[int], sizes_per_level: int, ratios_per_level: int,
                like: AnchorConfig, balanced: bool = True) -> AnchorConfig:
    """Anchors fitted to box shapes (N, 2) w, h (N >= 1) for levels of the given strides (finest
    first), with `sizes_per_level` sizes and `ratios_per_level` ratios on every level; sizes
    rounded to whole pixels, ratios to 0.01; the grid convention (centre offset, rounding) is `like`'s.

    Ratios: k-means on log(h / w) over all boxes. Sizes: the boxes go to levels coarsest level
    first, largest box first: a level takes the boxes whose side sqrt(w * h) spans its stride at
    least `SIDE_PER_STRIDE` times (with `balanced`, at most an even share of the boxes still
    left, so that every level gets boxes to learn from), the finest level takes the rest, and
    each level's sizes are a k-means on its boxes' log sides. A level left without boxes gets an
    octave of sizes from `SIDE_PER_STRIDE` strides up.
    """
    widths, heights = shapes.double().clamp(min=1e-6).unbind(1)
    ratios = tuple(round(math.exp(float(c)), 2) for c in kmeans_1d(torch.log(heights / widths), ratios_per_level))
    left = (0.5 * torch.log(widths * heights)).sort(descending=True).values  # log sides, largest first
    sizes: list[tuple[float, ...]] = [()] * len(strides)
    for level in reversed(range(len(strides))):
        spanning = len(left) if level == 0 else int((left >= math.log(SIDE_PER_STRIDE * strides[level])).sum())
        taken = min(spanning, -(-len(left) // (level + 1))) if balanced else spanning
        members, left = left[:taken], left[taken:]
        if len(members):
            centres = torch.exp(kmeans_1d(members, sizes_per_level))
        else:
            centres = SIDE_PER_STRIDE * strides[level] * 2 ** (torch.arange(sizes_per_level) / sizes_per_level)
        sizes[level] = tuple(float(max(1, round(float(c)))) for c in centres)
    return replace(like, sizes=tuple(sizes), aspect_ratios=(ratios,) * len(strides))


def anchor_shapes_json(anchors: AnchorConfig) -> dict:
    """{"sizes": [[...] per level], "aspect_ratios": [[...] per level]}: what a log or a dialog shows."""
    return {"sizes": [list(level) for level in anchors.sizes],
            "aspect_ratios": [list(level) for level in anchors.aspect_ratios]}


@dataclass(frozen=True)
class AnchorFit:
    """What `choose_anchors` found. before: the model's anchors' coverage; after: the chosen
    anchors' (== before unless fitted); tried: the best fit's coverage when one was tried (None
    when the heads were not new); box_shapes: (N, 2) float64 w, h in model-input pixels."""

    before: Coverage
    after: Coverage
    tried: Coverage | None
    anchors: AnchorConfig
    model_anchors: AnchorConfig
    fitted: bool
    why: str
    box_shapes: Tensor

    def to_json(self) -> dict:
        """Everything but the box shapes, JSON-ready (for a run folder or a log)."""
        return {"fitted": self.fitted, "why": self.why, "before": self.before.to_json(),
                "after": self.after.to_json(), "tried": self.tried.to_json() if self.tried else None,
                "anchors": anchor_shapes_json(self.anchors), "model_anchors": anchor_shapes_json(self.model_anchors)}

    def save_picture(self, path: str | os.PathLike) -> Path:
        """The box shapes with the anchors before and after, as a PNG (`render.anchor_fit`)."""
        from frcnn_core.render.anchor_fit import save_anchor_fit  # here: matplotlib only for a picture

        return save_anchor_fit(self.box_shapes, self.model_anchors, (self.before.recall_50, self.before.recall_70),
                               self.anchors if self.fitted else None, (self.after.recall_50, self.after.recall_70),
                               path)


def _rank(best_iou: Tensor) -> tuple[int, int, float]:
    """How good a set of anchors is: boxes covered at IoU 0.5, then at 0.7, then the mean best IoU."""
    return int((best_iou >= 0.5).sum()), int((best_iou >= 0.7).sum()), float(best_iou.mean())


def choose_anchors(model, dataset: DetectionDataset, heads_new: bool) -> AnchorFit:
    """Measure the model's anchors on the dataset's boxes and, when the detection heads are new
    (`heads_new`: an ImageNet base, another class set, or asked for), fit anchors and keep them
    only when they cover more boxes at IoU 0.5, or as many there and more at 0.7. With trained
    heads it only measures: the trained RPN's outputs belong to the anchors it was trained on.
    `model` is a FasterRCNN (its config's transform, anchors and training RPN rule; its backbone
    gives the strides). InputError when the dataset has no box."""
    boxes = training_boxes(dataset, model.config.transform)
    strides = level_strides(model)
    own = model.config.anchors
    cross_rule = model.config.rpn_train.ignore_cross_boundary
    own_iou = best_anchor_iou(boxes, own, strides, cross_rule)
    before = Coverage.of(own_iou)
    if not heads_new:
        why = f"kept the model's anchors, which its trained RPN belongs to: {before.line()}"
        return AnchorFit(before, before, None, own, own, False, why, boxes.shapes)
    shapes_per_cell = own.num_anchors_per_location[0]
    candidates = [fit_anchors(boxes.shapes, strides, sizes, shapes_per_cell // sizes, own, balanced)
                  for balanced in (True, False)
                  for sizes in range(1, shapes_per_cell + 1) if shapes_per_cell % sizes == 0]
    fit_ious = [best_anchor_iou(boxes, candidate, strides, cross_rule) for candidate in candidates]
    best = max(range(len(candidates)), key=lambda index: _rank(fit_ious[index]))  # the first of equals
    fit, tried = candidates[best], Coverage.of(fit_ious[best])
    if _rank(fit_ious[best])[:2] > _rank(own_iou)[:2]:
        why = (f"fitted {len(fit.sizes[0])} sizes x {len(fit.aspect_ratios[0])} aspect ratios per level to the "
               f"{before.boxes} training boxes: best-possible recall at IoU 0.5 {before.recall_50:.1%} -> "
               f"{tried.recall_50:.1%}, at 0.7 {before.recall_70:.1%} -> {tried.recall_70:.1%}")
        return AnchorFit(before, tried, tried, fit, own, True, why, boxes.shapes)
    why = (f"kept the model's anchors: the best fit to the {before.boxes} training boxes reaches {tried.recall_50:.1%} "
           f"at IoU 0.5 and {tried.recall_70:.1%} at 0.7, no more than theirs ({before.recall_50:.1%}, "
           f"{before.recall_70:.1%})")
    return AnchorFit(before, before, tried, own, own, False, why, boxes.shapes)
