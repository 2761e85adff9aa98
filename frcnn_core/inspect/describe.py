"""Each stage in two or three plain sentences, built from the live numbers of one image's trace.

`explain(stage, trace, config)` is what the stage panel shows under the picture, so that a student
can walk through the paper on their own image: "50 x 50 feature cells x 9 shapes = 22,500
anchors; 8,940 lie fully inside the image. ..." Stage names are the CLI's and the GUI's
(`anchors`, `anchor-labels`, ..., `detections`). Counts are formatted with thousands separators.

Which settings a sentence quotes follows from the trace: anchor labels always come from the
training RPN settings; proposals and RoI pooling from the training ones for a training trace (one
with RoI samples), else from the inference ones. Thresholds recorded in the trace (the NMS IoU of
the proposals) are quoted from the trace. `stage_counts(trace)` gives the stage list's short
count beside each stage name.

One vocabulary for every view (`frcnn_core.vocabulary`, torch-free): `STAGE_TITLES` names the stages as the
Stages dock lists them, and
`outcome_words(lost_at)` names where the recall funnel (`frcnn_core.inspect.funnel`) lost a GT box —
"found", "lost at anchors", "lost before NMS", "lost at NMS", "lost at post-NMS top-N", "lost at
detection" — in the funnel panel, the stage texts, `frcnn trace --gt` and `frcnn diagnose` alike.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from frcnn_core.modeling.config import IGNORE, NEG, POS, DetectorConfig
from frcnn_core.modeling.trace import Trace
from frcnn_core.vocabulary import (  # noqa: F401  (re-exported: the explanations' words)
    DEFAULT_SCORE_THRESH,
    FOUND,
    LOST_AT_WORDS,
    STAGE_TITLES,
    outcome_words,
)


def explain(stage: str, trace: Trace, config: DetectorConfig, gt_count: int | None = None,
            score_thresh: float = DEFAULT_SCORE_THRESH) -> str:
    """Two or three sentences about `stage` of `trace`; gt_count, when known, names how many GT
    boxes the labels were matched against; score_thresh is the score a detection needs to be
    shown. Raises ValueError for an unknown stage, and naming what is missing when the stage needs
    GT boxes, a training trace or an inference trace."""
    if stage not in _STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose one of {', '.join(_STAGES)}")
    return _STAGES[stage](trace, config, gt_count, score_thresh)


def _count(value) -> str:
    return f"{int(value):,}"


def _counted(value, noun: str, plural: str | None = None) -> str:
    """1 -> '1 anchor', 22500 -> '22,500 anchors'."""
    return f"{_count(value)} {noun if int(value) == 1 else plural or noun + 's'}"


def _number(value: float) -> str:
    """0.7 -> '0.7', 16.0 -> '16', 0.001 -> '0.001'."""
    return f"{value:g}"


def _join(values) -> str:
    return ", ".join(_number(v) for v in values)


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def _is_training(trace: Trace) -> bool:
    return trace.roi_targets is not None


def _anchors(trace: Trace, config: DetectorConfig, gt_count: int | None, score_thresh: float) -> str:
    anchors = trace.anchors
    total, inside = len(anchors.boxes), int(anchors.inside.sum())
    input_h, input_w = trace.input_size
    shapes = config.anchors
    if len(anchors.grid_sizes) == 1:
        (grid_h, grid_w), stride_w = anchors.grid_sizes[0], anchors.strides[0][1]
        return (f"{grid_h} x {grid_w} feature cells x {anchors.shapes_per_cell[0]} shapes = {_count(total)} anchors; "
                f"{_count(inside)} lie fully inside the image. Each cell, every {stride_w} px of the "
                f"{input_w} x {input_h} input, carries sizes {_join(shapes.sizes[0])} px at height:width ratios "
                f"{_join(shapes.aspect_ratios[0])}.")
    levels = " + ".join(
        f"{h} x {w} x {count} (stride {stride_w})"
        for (h, w), (_, stride_w), count in zip(anchors.grid_sizes, anchors.strides, anchors.shapes_per_cell,
                                                strict=True)
    )
    sizes = "; ".join(f"level {index}: {_join(level_sizes)} px"
                      for index, level_sizes in enumerate(shapes.sizes[: len(anchors.grid_sizes)]))
    return (f"{len(anchors.grid_sizes)} feature levels, cells x shapes: {levels} = {_count(total)} anchors; "
            f"{_count(inside)} lie fully inside the {input_w} x {input_h} input. Finer levels carry smaller "
            f"anchors ({sizes}), at height:width ratios {_join(shapes.aspect_ratios[0])}.")


def _anchor_labels(trace: Trace, config: DetectorConfig, gt_count: int | None, score_thresh: float) -> str:
    labels = trace.anchor_labels
    if labels is None:
        raise ValueError("the anchor-labels stage needs ground-truth boxes: this trace has no anchor labels")
    rpn = config.rpn_train
    positive, negative = int((labels.labels == POS).sum()), int((labels.labels == NEG).sum())
    ignored = int((labels.labels == IGNORE).sum())
    against = f"Matched against {_counted(gt_count, 'GT box', 'GT boxes')}, " if gt_count is not None else ""
    best = ", or the best anchor of one" if rpn.allow_low_quality_matches else ""
    border = ", as is every anchor crossing the image border" if rpn.ignore_cross_boundary else ""
    sampled = len(labels.sampled_pos_idx) + len(labels.sampled_neg_idx)
    quota = int(rpn.batch_size_per_image * rpn.positive_fraction)
    return (f"{_capitalised(against + _counted(positive, 'anchor'))} became positive (IoU >= "
            f"{_number(rpn.fg_iou_thresh)} with a GT box{best}), {_count(negative)} negative (IoU < "
            f"{_number(rpn.bg_iou_thresh)}) and {_count(ignored)} ignored{border}. The loss samples "
            f"{_counted(sampled, 'anchor')}, {_count(len(labels.sampled_pos_idx))} of them positive (at most "
            f"{_count(quota)} of {_count(rpn.batch_size_per_image)}).")


def _objectness(trace: Trace, config: DetectorConfig, gt_count: int | None, score_thresh: float) -> str:
    probabilities = torch.sigmoid(trace.objectness.logits.float())
    likely = int((probabilities > 0.5).sum())
    maps = sum(trace.anchors.shapes_per_cell)
    return (f"The RPN gave each of the {_count(len(probabilities))} anchors an objectness score and four box "
            f"deltas (one score map per anchor shape and level: {_counted(maps, 'map')}). Above 0.5, i.e. more "
            f"likely an object than background: {_counted(likely, 'anchor')}; the highest score is "
            f"{float(probabilities.max()):.3f}.")


def _rpn_config(trace: Trace, config: DetectorConfig):
    return config.rpn_train if _is_training(trace) else config.rpn_test


def _proposals_pre_nms(trace: Trace, config: DetectorConfig, gt_count: int | None, score_thresh: float) -> str:
    proposals, rpn = trace.proposals, _rpn_config(trace, config)
    count, valid = len(proposals.pre_nms_boxes), int(proposals.valid.sum())
    per_level = " of each level" if len(trace.anchors.grid_sizes) > 1 else ""
    score = f" or a score under {_number(rpn.score_thresh)}" if rpn.score_thresh > 0 else ""
    return (f"Up to the {_count(rpn.pre_nms_top_n)} highest-scoring anchors{per_level} were moved by their deltas "
            f"and clipped to the image: {_counted(count, 'box', 'boxes')} before NMS. Boxes with a side under "
            f"{_number(rpn.min_size)} px{score} are dropped: {_count(count - valid)}, leaving {_count(valid)}.")


def _proposals(trace: Trace, config: DetectorConfig, gt_count: int | None, score_thresh: float) -> str:
    proposals = trace.proposals
    valid, kept = int(proposals.valid.sum()), len(proposals.nms_keep_idx)
    final = len(proposals.post_nms_idx)
    per_level = " within each level" if len(trace.anchors.grid_sizes) > 1 else ""
    chosen = f"The best {_count(final)}" if final < kept else "All of them"
    return (f"NMS{per_level} drops every box that overlaps a higher-scoring kept box by IoU > "
            f"{_number(proposals.nms_thresh)}: it suppressed {_count(valid - kept)} of "
            f"{_counted(valid, 'box', 'boxes')} and kept {_count(kept)}. {chosen} go on to the second stage as "
            f"proposals.")


def _roi_samples(trace: Trace, config: DetectorConfig, gt_count: int | None, score_thresh: float) -> str:
    samples = trace.roi_targets
    if samples is None:
        raise ValueError("the roi-samples stage needs a training trace with ground-truth boxes: this trace has "
                         "no RoI samples")
    roi = config.roi_train
    foreground = int(samples.is_foreground.sum())
    background = len(samples.labels) - foreground
    plus_gt = ""
    if roi.add_gt_as_proposals:
        gt_boxes = _counted(gt_count, "GT box", "GT boxes") if gt_count is not None else "the GT boxes"
        plus_gt = f" plus {gt_boxes} added as proposals"
    text = (f"From the {_counted(samples.num_proposals, 'proposal')}{plus_gt}, the second stage's training batch "
            f"takes {_counted(len(samples.labels), 'RoI')}: {_count(foreground)} foreground (IoU >= "
            f"{_number(roi.fg_iou_thresh)} with a GT box, at most {_count(samples.positive_quota)}) and "
            f"{_count(background)} background (IoU in [{_number(roi.bg_iou_thresh_lo)}, "
            f"{_number(roi.bg_iou_thresh_hi)})).")
    if not samples.quota_filled:
        text += (f" The foreground quota of {_count(samples.positive_quota)} was not filled: no more candidates "
                 f"overlap a GT box that well.")
    return text


def _roi_pool(trace: Trace, config: DetectorConfig, gt_count: int | None, score_thresh: float) -> str:
    pool = trace.roi_pool
    rois, channels, height, width = pool.output_shape
    per_roi = f"{channels} x {height} x {width} = {_count(channels * height * width)} features per RoI"
    if len(trace.anchors.grid_sizes) == 1:
        stride = trace.anchors.strides[0][1]
        return (f"Each RoI ({_counted(rois, 'RoI')} in all) was cut into {height} x {width} bins on the "
                f"stride-{stride} feature map and each bin pooled to one value per channel: {per_roi}. The box head "
                f"sees only these numbers, whatever the RoI's size.")
    counts = torch.bincount(pool.level, minlength=len(trace.anchors.strides))
    levels = ", ".join(f"{_count(n)} from stride {trace.anchors.strides[level][1]}"
                       for level, n in enumerate(counts.tolist()) if n)
    return (f"Each RoI ({_counted(rois, 'RoI')} in all) was pooled by RoIAlign from the feature level that suits "
            f"its size (larger RoIs from coarser levels: {levels}) into {height} x {width} bins: {per_roi}. The box "
            f"head sees only these numbers, whatever the RoI's size.")


def _detections_of(trace: Trace, stage: str):
    if trace.detections is None:
        raise ValueError(f"the {stage} stage needs an inference trace: this training trace has no detections")
    return trace.detections


def _class_scores(trace: Trace, config: DetectorConfig, gt_count: int | None, score_thresh: float) -> str:
    detections = _detections_of(trace, "class-scores")
    rois, classes = detections.class_scores.shape
    background = int((detections.class_scores.argmax(dim=1) == 0).sum()) if rois else 0
    roi = config.roi_test
    return (f"The box head scored every RoI ({_counted(rois, 'RoI')}) over {_counted(classes - 1, 'class', 'classes')} "
            f"plus background (softmax) and proposed one refined box per class; most likely background: "
            f"{_counted(background, 'RoI')}. Class-box pairs scoring above {_number(roi.score_thresh)} with both "
            f"sides at least {_number(roi.min_size)} px, the candidates for per-class NMS: "
            f"{_count(len(detections.candidate_scores))}.")


def _detections(trace: Trace, config: DetectorConfig, gt_count: int | None, score_thresh: float) -> str:
    detections = _detections_of(trace, "detections")
    roi = config.roi_test
    candidates, kept = len(detections.candidate_scores), len(detections.keep_idx)
    text = (f"NMS within each class (IoU > {_number(roi.nms_thresh)}) and the limit of "
            f"{_count(roi.detections_per_img)} per image kept {_count(kept)} of the "
            f"{_counted(candidates, 'candidate')}.")
    if kept:
        confident = int((detections.scores >= score_thresh).sum())
        text += (f" The best score is {float(detections.scores.max()):.3f}; scoring at least {_number(score_thresh)}: "
                 f"{_counted(confident, 'detection')}.")
    return text


_STAGES: dict[str, Callable[[Trace, DetectorConfig, int | None, float], str]] = {
    "anchors": _anchors,
    "anchor-labels": _anchor_labels,
    "objectness": _objectness,
    "proposals-pre-nms": _proposals_pre_nms,
    "proposals": _proposals,
    "roi-samples": _roi_samples,
    "roi-pool": _roi_pool,
    "class-scores": _class_scores,
    "detections": _detections,
}


def stage_counts(trace, score_thresh: float = DEFAULT_SCORE_THRESH) -> dict[str, str]:
    """The stage list's count texts for `trace` (anchor labels only when it has them)."""
    anchors, proposals, detections = trace.anchors, trace.proposals, trace.detections
    counts = {"anchors": f"{len(anchors.boxes):,} ({int(anchors.inside.sum()):,} inside)",
              "proposals-pre-nms": f"{len(proposals.pre_nms_boxes):,}",
              "proposals": f"{len(proposals.pre_nms_boxes):,} → {len(proposals.post_nms_idx):,} after NMS"}
    if detections is not None:
        confident = int((detections.scores >= score_thresh).sum())
        counts["detections"] = f"{confident} (score ≥ {score_thresh:g}; {len(detections.keep_idx)} in all)"
    if trace.anchor_labels is not None:
        labels = trace.anchor_labels
        counts["anchor-labels"] = (f"{int((labels.labels == POS).sum()):,} positive, "
                                   f"{len(labels.sampled_pos_idx) + len(labels.sampled_neg_idx):,} sampled")
    return counts
