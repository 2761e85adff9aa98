"""Pictures of each stage of one forward pass, drawn with Pillow from a `Trace`.

Shape glossary: H, W the original image's height and width; A anchors, P pre-NMS proposals,
N post-NMS proposals, R RoIs, D detections, G ground-truth boxes — as in `trace.py`.

Every picture is the RGB image at its original size under a caption band that states the stage's
live numbers; ground-truth boxes, when given, are drawn in green on top. All boxes arrive in
original-image pixels, so nothing here rescales coordinates except the objectness grid.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from frcnn_core.io.atomic import write_atomic
from frcnn_core.modeling.config import IGNORE, NEG, POS
from frcnn_core.modeling.trace import Trace

STAGE_PICTURES = (
    "anchors", "anchor-labels", "objectness", "proposals-pre-nms", "proposals", "roi-samples", "detections",
)
# the inspector's other stages (`vocabulary.STAGES`) show one box at a time, picked in the window: no picture
WITHOUT_PICTURE = {"roi-pool": "it shows one RoI's pooling, picked in the stage inspector",
                   "class-scores": "it shows one detection's class scores, picked in the stage inspector",
                   "saliency": "its map is computed on demand for one detection or proposal, picked in the stage"
                               " inspector (frcnn_core.inspect.saliency)"}

# stage -> (the trace field it needs, the pass that records it)
_NEEDS = {"anchor-labels": ("anchor_labels", "a training pass (with GT)"),
          "roi-samples": ("roi_targets", "a training pass (with GT)"),
          "detections": ("detections", "an inference pass (no GT)")}

GT_COLOUR = (0, 230, 0)
_LEVEL_COLOURS = (("red", (235, 40, 40)), ("blue", (40, 110, 255)), ("orange", (255, 150, 0)),
                  ("magenta", (220, 40, 220)), ("cyan", (0, 200, 230)))
_SAMPLE_COLOUR = (255, 255, 255, 90)
_POSITIVE_COLOUR, _NEGATIVE_COLOUR = (255, 60, 40), (60, 140, 255, 140)
_FOREGROUND_COLOUR, _BACKGROUND_COLOUR = (255, 140, 0), (70, 130, 255)
# Distinct colours without green, which belongs to the ground truth.
_CLASS_PALETTE = ((230, 25, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240), (240, 50, 230),
                  (255, 225, 25), (128, 0, 0), (0, 0, 128), (170, 110, 40), (250, 190, 212), (128, 128, 0))
# Colour-map stops (value, (r, g, b)): jet for the heatmap; blue -> magenta -> yellow for box scores.
_JET = ((0.0, (0, 0, 128)), (0.125, (0, 0, 255)), (0.375, (0, 255, 255)), (0.625, (255, 255, 0)),
        (0.875, (255, 0, 0)), (1.0, (128, 0, 0)))
_SCORE_MAP = ((0.0, (40, 60, 255)), (0.5, (230, 40, 200)), (1.0, (255, 230, 0)))
_ANCHOR_SAMPLE_TARGET = 180  # inside anchors drawn: enough to show density, few enough to read
_PRE_NMS_SHOWN, _POST_NMS_SHOWN = 300, 50
_HEAT_ALPHA = 0.55


@dataclass(frozen=True)
class _Style:
    """Fonts and line widths scaled to the image, so text stays legible at 100% zoom."""

    font: ImageFont.ImageFont
    thin: int
    thick: int

    @classmethod
    def for_size(cls, height: int, width: int) -> _Style:
        longest = max(height, width)
        return cls(ImageFont.load_default(size=max(14, round(longest / 40))), max(1, round(longest / 600)),
                   max(3, round(longest / 180)))


def class_colour(label: int) -> tuple[int, int, int]:
    """The stable colour of class id `label` in the detections picture."""
    return _CLASS_PALETTE[int(label) % len(_CLASS_PALETTE)]


def _colour_map(values: np.ndarray, stops) -> np.ndarray:
    """(...,) floats in [0, 1] -> (..., 3) uint8 by linear interpolation between `stops`."""
    positions = [p for p, _ in stops]
    channels = [np.interp(values, positions, [c[i] for _, c in stops]) for i in range(3)]
    return np.stack(channels, axis=-1).round().astype(np.uint8)


def _boxes(draw: ImageDraw.ImageDraw, boxes: torch.Tensor, colour, width: int) -> None:
    for x1, y1, x2, y2 in boxes.tolist():
        draw.rectangle((x1, y1, max(x1, x2), max(y1, y2)), outline=colour, width=width)


def _tag(draw: ImageDraw.ImageDraw, box: list[float], text: str, colour, font) -> None:
    """A filled label at the box's top-left corner: above it, or inside when there is no room;
    shifted left when it would run off the image."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    width, height = right - left + 6, bottom - top + 4
    x = max(0.0, min(box[0], draw.im.size[0] - width))
    y = box[1] - height if box[1] >= height else box[1]
    draw.rectangle((x, y, x + width, y + height), fill=colour)
    ink = (0, 0, 0) if sum(c * w for c, w in zip(colour, (0.299, 0.587, 0.114), strict=True)) > 140 else (255, 255, 255)
    draw.text((x + 3, y + 2 - top), text, fill=ink, font=font)


def _scored_boxes(draw, boxes: torch.Tensor, scores: torch.Tensor, width: int) -> str:
    """Boxes coloured by score (stretched over the shown range), best drawn last; returns the legend."""
    if len(scores) == 0:
        return "none to show"
    low, high = float(scores.min()), float(scores.max())
    shades = _colour_map(((scores - low) / max(high - low, 1e-12)).numpy(), _SCORE_MAP)
    for index in torch.argsort(scores).tolist():
        _boxes(draw, boxes[index:index + 1], tuple(int(c) for c in shades[index]), width)
    return f"colour = score {low:.3f} (blue) to {high:.3f} (yellow)"


def _draw_anchors(image: Image.Image, trace: Trace, style: _Style, class_names, score_thresh) -> str:
    """The centre cell's anchors per level, over a light sample of the inside anchors."""
    anchors = trace.anchors
    draw = ImageDraw.Draw(image, "RGBA")
    inside_idx = torch.nonzero(anchors.inside).flatten()
    step = max(1, round(len(inside_idx) / _ANCHOR_SAMPLE_TARGET))
    _boxes(draw, anchors.boxes[inside_idx[::step]], _SAMPLE_COLOUR, 1)
    centre = torch.tensor([trace.image_size[1] / 2, trace.image_size[0] / 2])
    level_start, names = 0, []
    for level, ((rows, cols), shapes) in enumerate(zip(anchors.grid_sizes, anchors.shapes_per_cell, strict=True)):
        # Level `level` holds rows*cols*shapes anchors, ordered (row, col, shape).
        level_boxes = anchors.boxes[level_start:level_start + rows * cols * shapes]
        distance = ((level_boxes[:, :2] + level_boxes[:, 2:]) / 2 - centre).norm(dim=1)
        cell = int(torch.argmin(distance)) // shapes
        name, colour = _LEVEL_COLOURS[level % len(_LEVEL_COLOURS)]
        # Finer levels drawn wider, so a coarser level with the same shapes leaves their rim visible.
        width = style.thin + 1 + 2 * (len(anchors.grid_sizes) - 1 - level)
        _boxes(draw, level_boxes[cell * shapes:(cell + 1) * shapes], colour, width)
        names.append(name)
        level_start += rows * cols * shapes
    levels = f"per level: {', '.join(names)}" if len(names) > 1 else names[0]
    return (f"anchors: {len(anchors.boxes):,} total, {len(inside_idx):,} inside; showing the "
            f"{anchors.shapes_per_cell[0]} shapes of the centre cell ({levels}) + inside anchors sampled "
            f"1 in {step} (white)")


def _draw_anchor_labels(image: Image.Image, trace: Trace, style: _Style, class_names, score_thresh) -> str:
    """Positive anchors (sampled thick) and sampled negatives; ignored ones are only counted."""
    anchor_labels = trace.anchor_labels
    draw = ImageDraw.Draw(image, "RGBA")
    boxes, labels = trace.anchors.boxes, anchor_labels.labels
    _boxes(draw, boxes[anchor_labels.sampled_neg_idx], _NEGATIVE_COLOUR, style.thin)
    _boxes(draw, boxes[labels == POS], _POSITIVE_COLOUR, style.thin)
    _boxes(draw, boxes[anchor_labels.sampled_pos_idx], _POSITIVE_COLOUR, style.thick)
    sampled_pos, sampled_neg = len(anchor_labels.sampled_pos_idx), len(anchor_labels.sampled_neg_idx)
    return (f"anchor labels: {int((labels == POS).sum()):,} positive (red; sampled thick), "
            f"{int((labels == NEG).sum()):,} negative, {int((labels == IGNORE).sum()):,} ignored (not drawn); "
            f"sampled {sampled_pos:,} positive + {sampled_neg:,} negative (blue) = {sampled_pos + sampled_neg:,}")


def _draw_objectness(image: Image.Image, trace: Trace, style: _Style, class_names, score_thresh) -> str:
    """Level 0's best objectness per location as a jet heatmap over the image."""
    (rows, cols), shapes = trace.anchors.grid_sizes[0], trace.anchors.shapes_per_cell[0]
    (stride_y, stride_x), (scale_y, scale_x) = trace.anchors.strides[0], trace.scale
    # (rows*cols*shapes,) ordered (row, col, shape) -> (rows, cols): best shape per location.
    level_logits = trace.objectness.logits[:rows * cols * shapes].reshape(rows, cols, shapes)
    heat = torch.sigmoid(level_logits.float()).amax(dim=2)
    # The grid covers the (possibly padded) input; map its extent back to original pixels.
    extent = (round(cols * stride_x / scale_x), round(rows * stride_y / scale_y))
    heat_image = Image.fromarray(heat.numpy().astype(np.float32), mode="F").resize(extent, Image.BILINEAR)
    heat_values = np.asarray(heat_image.crop((0, 0, image.width, image.height)), dtype=np.float32)
    overlay = Image.fromarray(_colour_map(np.clip(heat_values, 0.0, 1.0), _JET))
    image.paste(Image.blend(image, overlay, _HEAT_ALPHA))
    return (f"objectness: max sigmoid over {shapes} shapes at level 0 ({rows}x{cols} grid), "
            f"range {float(heat.min()):.3f} to {float(heat.max()):.3f}; colour 0 (dark blue) to 1 (dark red)")


def _draw_pre_nms(image: Image.Image, trace: Trace, style: _Style, class_names, score_thresh) -> str:
    """The best valid pre-NMS proposals, coloured by score."""
    proposals = trace.proposals
    valid_idx = torch.nonzero(proposals.valid).flatten()
    shown_idx = valid_idx[torch.argsort(proposals.pre_nms_scores[valid_idx], descending=True)[:_PRE_NMS_SHOWN]]
    legend = _scored_boxes(ImageDraw.Draw(image), proposals.pre_nms_boxes[shown_idx],
                           proposals.pre_nms_scores[shown_idx], style.thin)
    invalid = len(proposals.valid) - len(valid_idx)
    return (f"proposals before NMS: {len(proposals.valid):,}, {invalid:,} invalid (too small or low score); "
            f"showing the top {len(shown_idx):,} valid; {legend}")


def _draw_proposals(image: Image.Image, trace: Trace, style: _Style, class_names, score_thresh) -> str:
    """The best post-NMS proposals, coloured by score, with the NMS counts."""
    proposals = trace.proposals
    scores = proposals.scores
    shown = torch.argsort(scores, descending=True)[:_POST_NMS_SHOWN]
    legend = _scored_boxes(ImageDraw.Draw(image), proposals.boxes[shown], scores[shown], style.thin + 1)
    suppressed = int((proposals.suppressed_by >= 0).sum())
    return (f"proposals: {len(proposals.pre_nms_scores):,} pre-NMS, {suppressed:,} suppressed by NMS at IoU "
            f"{proposals.nms_thresh:g}, {len(proposals.nms_keep_idx):,} survive, {len(scores):,} kept; "
            f"showing the top {len(shown):,}; {legend}")


def _draw_roi_samples(image: Image.Image, trace: Trace, style: _Style, class_names, score_thresh) -> str:
    """Foreground RoIs tagged with their class, and background RoIs."""
    targets = trace.roi_targets
    draw = ImageDraw.Draw(image)
    foreground = targets.is_foreground
    _boxes(draw, targets.rois[~foreground], _BACKGROUND_COLOUR, style.thin)
    _boxes(draw, targets.rois[foreground], _FOREGROUND_COLOUR, style.thin + 1)
    # One tag per GT box, on its best-overlapping foreground RoI: a tag per RoI would bury the image.
    for gt_idx in targets.matched_gt_idx[foreground].unique().tolist():
        group_idx = torch.nonzero(foreground & (targets.matched_gt_idx == gt_idx)).flatten()
        best_idx = group_idx[torch.argmax(targets.max_iou[group_idx])]
        text = f"{class_names[int(targets.labels[best_idx])]}: {len(group_idx)} RoIs"
        _tag(draw, targets.rois[best_idx].tolist(), text, _FOREGROUND_COLOUR, style.font)
    fg_count = int(foreground.sum())
    caption = (f"RoI samples: {len(targets.rois):,} = {fg_count:,} foreground (orange; one tag per GT: class, "
               f"RoI count) + {len(targets.rois) - fg_count:,} background (blue)")
    if not targets.quota_filled:
        caption += f"; positive quota not filled ({fg_count} of {targets.positive_quota})"
    return caption


def _draw_detections(image: Image.Image, trace: Trace, style: _Style, class_names, score_thresh) -> str:
    """Detections at or above `score_thresh`, coloured by class, with name-and-score tags."""
    detections = trace.detections
    draw = ImageDraw.Draw(image)
    shown = torch.nonzero(detections.scores >= score_thresh).flatten()
    # Lowest score first, so the best detection's outline and tag end up on top.
    order = shown[torch.argsort(detections.scores[shown])].tolist()
    for index in order:
        _boxes(draw, detections.boxes[index:index + 1], class_colour(detections.labels[index]), style.thick)
    for index in order:
        label, box = int(detections.labels[index]), detections.boxes[index].tolist()
        _tag(draw, box, f"{class_names[label]} {float(detections.scores[index]):.2f}", class_colour(label), style.font)
    return f"detections: {len(shown):,} with score >= {score_thresh:.3g} (of {len(detections.scores):,})"


# Each drawer draws its stage onto the image in place and returns the caption's live numbers.
_DRAWERS = {"anchors": _draw_anchors, "anchor-labels": _draw_anchor_labels, "objectness": _draw_objectness,
            "proposals-pre-nms": _draw_pre_nms, "proposals": _draw_proposals, "roi-samples": _draw_roi_samples,
            "detections": _draw_detections}


def _unsupported(trace: Trace, stage: str) -> str | None:
    """Why `trace` cannot show `stage`, or None when it can. Raises ValueError for unknown stages
    and for the stages without a picture (`WITHOUT_PICTURE`), saying why."""
    if stage in WITHOUT_PICTURE:
        raise ValueError(f"stage {stage!r} has no picture: {WITHOUT_PICTURE[stage]}")
    if stage not in _DRAWERS:
        raise ValueError(f"unknown stage {stage!r}; choose one of {', '.join(STAGE_PICTURES)}")
    field, recorded_by = _NEEDS.get(stage, (None, None))
    if field is not None and getattr(trace, field) is None:
        return f"stage {stage!r} needs trace.{field}, which only {recorded_by} records"
    return None


def _wrap(text: str, font, width: int) -> list[str]:
    """Greedy word wrap of `text` into lines no wider than `width` pixels (a long word stays whole)."""
    lines = [""]
    for word in text.split(" "):
        candidate = f"{lines[-1]} {word}".strip()
        if lines[-1] and font.getlength(candidate) > width:
            lines.append(word)
        else:
            lines[-1] = candidate
    return lines


def _with_caption(picture: Image.Image, caption: str, font) -> Image.Image:
    """`picture` under a dark band holding `caption`, wrapped only when the image is too narrow."""
    margin = 6
    lines = _wrap(caption, font, picture.width - 2 * margin)
    ascent, descent = font.getmetrics()
    line_height = ascent + descent + 2
    band = len(lines) * line_height + 2 * margin
    framed = Image.new("RGB", (picture.width, picture.height + band), (25, 25, 25))
    framed.paste(picture, (0, band))
    draw = ImageDraw.Draw(framed)
    for row, line in enumerate(lines):
        draw.text((margin, margin + row * line_height), line, fill=(255, 255, 255), font=font)
    return framed


def render_stage(image: torch.Tensor, trace: Trace, stage: str, class_names: list[str],
                 gt_boxes: torch.Tensor | None = None, score_thresh: float = 0.0) -> Image.Image:
    """The picture of one stage: the image under a caption band, with the stage drawn over it.

    image: (3, H, W) float in [0, 1], the original image the trace was made from; gt_boxes: (G, 4)
    in original pixels, drawn green; score_thresh: the lowest detection score drawn.
    Returns an RGB image of size (W, H + caption band). Raises ValueError naming the stage when the
    trace lacks what the stage needs, when the stage is unknown, or when the image is not the
    trace's image size.
    """
    reason = _unsupported(trace, stage)
    if reason is not None:
        raise ValueError(reason)
    if tuple(image.shape[-2:]) != tuple(trace.image_size):
        raise ValueError(f"stage {stage!r}: image is {tuple(image.shape[-2:])}, the trace's is {trace.image_size}")
    pixels = (image.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    picture = Image.fromarray(np.ascontiguousarray(pixels), mode="RGB")
    style = _Style.for_size(*trace.image_size)
    caption = _DRAWERS[stage](picture, trace, style, class_names, score_thresh)
    if gt_boxes is not None and len(gt_boxes):
        gt_boxes = gt_boxes.detach().cpu().float()
        draw = ImageDraw.Draw(picture)
        # A dark rim keeps the green legible over green heatmaps and bright backgrounds.
        _boxes(draw, gt_boxes + torch.tensor([-1.0, -1.0, 1.0, 1.0]), (0, 0, 0), style.thick + 2)
        _boxes(draw, gt_boxes, GT_COLOUR, style.thick)
        caption += f"; {len(gt_boxes)} GT (green)"
    return _with_caption(picture, caption, style.font)


def save_stage_pictures(image: torch.Tensor, trace: Trace, out_dir, class_names: list[str],
                        gt_boxes: torch.Tensor | None = None, stages=STAGE_PICTURES) -> list[Path]:
    """Write `<out_dir>/<stage>.png` for each of `stages` the trace supports; skip the others.

    Each file is written to a temporary file in `out_dir` and moved into place, so a reader never
    sees half a picture. Returns the written paths in `stages` order; raises ValueError for an
    unknown stage name before anything is written.
    """
    supported = [stage for stage in stages if _unsupported(trace, stage) is None]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for stage in supported:
        picture = render_stage(image, trace, stage, class_names, gt_boxes)
        write_atomic(out_dir / f"{stage}.png", lambda stream, picture=picture: picture.save(stream, format="PNG"))
        written.append(out_dir / f"{stage}.png")
    return written
