"""Why was a GT box missed: the recall funnel of each GT box, and its summary over a dataset.

Shapes: G GT boxes, A anchors, P pre-NMS proposals, D final detections. Boxes are (x1, y1, x2, y2)
in original-image pixels, as every trace hands them out (IoU does not change when both axes are
scaled, so original and input pixels give the same IoUs).

A GT box passes through `FUNNEL_STAGES` in order; `lost_at` is the first one it does not pass, None when
it is detected ("found"; `frcnn_core.inspect.describe.outcome_words` names each outcome for the texts).
With `iou` = 0.5 and the RPN's background threshold `bg` (0.3):

- detected: a final detection of the GT's class with IoU >= iou scores >= score_thresh
  (no one-to-one matching as in AP: one detection may cover two overlapping GT boxes);
- "anchors": no valid pre-NMS proposal reaches IoU >= iou and no anchor reaches IoU >= bg — the box
  is far from every anchor shape, so the RPN had nothing close to refine (training still makes its
  best anchor positive through the low-quality rule, but a single far anchor rarely regresses onto it);
- "proposals-pre-nms": some anchor reaches bg, but no valid pre-NMS proposal (one that passed the
  min-size and score filters) reaches iou: the objectness ranked the good boxes out of the
  per-level top-N, the regression missed, or the filters dropped them;
- "nms": a pre-NMS proposal reaches iou, but every such proposal was suppressed by NMS;
- "post-nms-top-n": one survived NMS, but all such survivors fell after the post-NMS top-N;
- "detection": the second stage saw a proposal with IoU >= iou and still gave no detection of the
  right class at IoU >= iou scoring >= score_thresh.

Each row also follows the single best pre-NMS proposal (highest IoU): its rank, whether NMS kept
it, which kept box suppressed it, whether it made the post-NMS top-N. The best one may be
suppressed by a box that covers the GT just as well — `best_kept_iou` and `best_post_nms_iou`
(the best IoU among the NMS survivors and among the final proposals) are what decide `lost_at`.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields, replace

import torch
from torch import Tensor
from torchvision.ops import box_iou
from tqdm import tqdm

from frcnn_core.io.images import load_image
from frcnn_core.modeling.config import RPNConfig
from frcnn_core.modeling.rpn import anchor_targets
from frcnn_core.modeling.trace import AnchorLabelsTrace, DetectionsTrace, ProposalsTrace, Trace
from frcnn_core.vocabulary import FUNNEL_STAGES

DETECTED = "detected"
OUTCOMES = (*FUNNEL_STAGES, DETECTED)
SIZE_BUCKETS = ("small", "medium", "large")  # COCO's: area < 32^2, < 96^2, the rest (original pixels)


@dataclass(frozen=True)
class FunnelRow:
    """One GT box through the stages (module docstring). Indices: best_anchor_index into
    `trace.anchors`, suppressed_by into the pre-NMS proposals; best_proposal_rank is the best
    pre-NMS proposal's place among all P pre-NMS proposals by score (0 = highest), None (and the
    fields after it False / None) when no valid pre-NMS proposal overlaps the box at all."""

    gt_index: int
    label: str
    box: tuple[float, float, float, float]
    best_anchor_iou: float
    best_anchor_index: int
    best_anchor_label: int
    best_proposal_iou: float
    best_proposal_rank: int | None
    survived_nms: bool
    suppressed_by: int | None
    suppressor_iou: float | None
    in_post_nms_top_n: bool
    best_kept_iou: float
    best_post_nms_iou: float
    detection_score: float | None
    detected: bool
    lost_at: str | None

    def to_json(self) -> dict:
        return asdict(self) | {"box": list(self.box)}


def lost_stage(best_anchor_iou: float, best_proposal_iou: float, best_kept_iou: float, best_post_nms_iou: float,
               detected: bool, iou: float, bg_iou_thresh: float) -> str | None:
    """The first stage of `FUNNEL_STAGES` a GT box did not pass (module docstring), None if detected."""
    if detected:
        return None
    if best_proposal_iou < iou:
        return "anchors" if best_anchor_iou < bg_iou_thresh else "proposals-pre-nms"
    if best_kept_iou < iou:
        return "nms"
    return "post-nms-top-n" if best_post_nms_iou < iou else "detection"


def _best_where(iou: Tensor, allowed: Tensor) -> tuple[Tensor, Tensor]:
    """Per GT row of iou (G, P): the highest IoU among the allowed (P,) columns and its column;
    (0, -1) where no column is allowed."""
    masked = torch.where(allowed[None, :], iou, torch.full_like(iou, -1.0))
    if masked.shape[1] == 0:
        return torch.zeros(len(iou)), torch.full((len(iou),), -1, dtype=torch.int64)
    best_iou, best_idx = masked.max(dim=1)
    return best_iou.clamp(min=0.0), torch.where(best_iou >= 0, best_idx, -1)


def _anchor_labels(trace: Trace, gt_boxes: Tensor, rpn_config: RPNConfig) -> Tensor:
    """(A,) int8: the anchor labelling of the training pass (with its own generator: the sampling
    it also does must not touch the global random state)."""
    generator = torch.Generator().manual_seed(0)
    return anchor_targets(trace.anchors.boxes, trace.anchors.inside, gt_boxes, rpn_config, generator).match.labels


def _pair_iou(boxes: Tensor, first: int, second: int) -> float:
    return float(box_iou(boxes[first, None], boxes[second, None])[0, 0])


def _proposal_fields(proposals: ProposalsTrace, gt_boxes: Tensor) -> list[dict]:
    """Per GT box, the FunnelRow fields about proposals: the best valid pre-NMS proposal's IoU,
    rank and fate through NMS and the top-N, and the best IoU among NMS survivors and proposals."""
    num_pre = len(proposals.pre_nms_boxes)
    proposal_iou = box_iou(gt_boxes, proposals.pre_nms_boxes)  # (G, P)
    is_kept = torch.zeros(num_pre, dtype=torch.bool)
    is_kept[proposals.nms_keep_idx] = True
    is_post = torch.zeros(num_pre, dtype=torch.bool)
    is_post[proposals.post_nms_idx] = True
    best_iou, best_idx = _best_where(proposal_iou, proposals.valid)
    best_kept_iou, _ = _best_where(proposal_iou, is_kept)
    best_post_iou, _ = _best_where(proposal_iou, is_post)
    rank = torch.empty(num_pre, dtype=torch.int64)
    rank[torch.argsort(proposals.pre_nms_scores, descending=True, stable=True)] = torch.arange(num_pre)
    fields_per_gt = []
    for gt_index in range(len(gt_boxes)):
        best = int(best_idx[gt_index]) if best_iou[gt_index] > 0 else -1
        suppressor = int(proposals.suppressed_by[best]) if best >= 0 else -1
        fields_per_gt.append(dict(
            best_proposal_iou=float(best_iou[gt_index]),
            best_proposal_rank=int(rank[best]) if best >= 0 else None,
            survived_nms=best >= 0 and bool(is_kept[best]),
            suppressed_by=suppressor if suppressor >= 0 else None,
            suppressor_iou=_pair_iou(proposals.pre_nms_boxes, best, suppressor) if suppressor >= 0 else None,
            in_post_nms_top_n=best >= 0 and bool(is_post[best]),
            best_kept_iou=float(best_kept_iou[gt_index]),
            best_post_nms_iou=float(best_post_iou[gt_index]),
        ))
    return fields_per_gt


def _detection_scores(detections: DetectionsTrace, gt_boxes: Tensor, gt_labels: Tensor, iou: float) -> list:
    """Per GT box, the best score of a final detection of its class at IoU >= iou, else None."""
    covers = box_iou(gt_boxes, detections.boxes) >= iou  # (G, D)
    covers &= detections.labels[None, :] == gt_labels[:, None]
    scores = torch.where(covers, detections.scores[None, :], torch.full(covers.shape, -1.0))
    return [float(scores[gt_index].max()) if covers[gt_index].any() else None for gt_index in range(len(gt_boxes))]


def recall_funnel(
    inference_trace: Trace,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    class_names: list[str],
    anchor_labels: AnchorLabelsTrace | None = None,
    iou: float = 0.5,
    score_thresh: float = 0.05,
    rpn_config: RPNConfig | None = None,
) -> list[FunnelRow]:
    """One FunnelRow per GT box.

    inference_trace: a trace with detections; gt_boxes (G, 4) original pixels; gt_labels (G,)
    int64 indices into class_names (the detections' label space). anchor_labels: the training
    pass's labelling, else recomputed with `rpn_config` (default: RPNConfig(), the 0.7 / 0.3 rule),
    whose bg_iou_thresh is also the "anchors" threshold.
    """
    rpn_config = rpn_config or RPNConfig()
    gt_boxes = gt_boxes.float().reshape(-1, 4)
    if len(gt_boxes) == 0:
        return []
    labels = _anchor_labels(inference_trace, gt_boxes, rpn_config) if anchor_labels is None else anchor_labels.labels
    best_anchor_iou, best_anchor_idx = box_iou(gt_boxes, inference_trace.anchors.boxes).max(dim=1)
    proposal_fields = _proposal_fields(inference_trace.proposals, gt_boxes)
    scores = _detection_scores(inference_trace.detections, gt_boxes, gt_labels, iou)
    rows = []
    for gt_index, (proposal, score) in enumerate(zip(proposal_fields, scores, strict=True)):
        detected = score is not None and score >= score_thresh
        anchor_iou = float(best_anchor_iou[gt_index])
        lost_at = lost_stage(anchor_iou, proposal["best_proposal_iou"], proposal["best_kept_iou"],
                             proposal["best_post_nms_iou"], detected, iou, rpn_config.bg_iou_thresh)
        rows.append(FunnelRow(
            gt_index=gt_index, label=class_names[int(gt_labels[gt_index])],
            box=tuple(float(v) for v in gt_boxes[gt_index]), best_anchor_iou=anchor_iou,
            best_anchor_index=int(best_anchor_idx[gt_index]), best_anchor_label=int(labels[best_anchor_idx[gt_index]]),
            detection_score=score, detected=detected, lost_at=lost_at, **proposal,
        ))
    return rows


def at_score_threshold(rows: list[FunnelRow], score_thresh: float, iou: float = 0.5,
                       bg_iou_thresh: float = RPNConfig().bg_iou_thresh) -> list[FunnelRow]:
    """The funnel rows as `recall_funnel` gives them at another detection score threshold, from
    the rows alone: each keeps its best covering detection's score whatever the threshold, so
    only `detected` and `lost_at` change. iou and bg_iou_thresh: those the rows were made with."""
    rethresholded = []
    for row in rows:
        detected = row.detection_score is not None and row.detection_score >= score_thresh
        lost_at = lost_stage(row.best_anchor_iou, row.best_proposal_iou, row.best_kept_iou, row.best_post_nms_iou,
                             detected, iou, bg_iou_thresh)
        rethresholded.append(replace(row, detected=detected, lost_at=lost_at))
    return rethresholded


@dataclass(frozen=True)
class ImageFunnel:
    """One image's funnel rows; scale (sy, sx) = model input / original pixels."""

    image_path: str
    scale: tuple[float, float]
    rows: list[FunnelRow]


def _label_space(model_names: list[str], dataset_names: list[str]) -> tuple[list[str], Tensor]:
    """The model's class names followed by the dataset classes it lacks, and (C_data,) the index
    of each dataset label in that list. Detections never carry the added labels, so a box of a
    class the model lacks is never detected."""
    names = list(model_names) + [name for name in dataset_names[1:] if name not in model_names[1:]]
    return names, torch.tensor([0] + [names.index(name, 1) for name in dataset_names[1:]], dtype=torch.int64)


def image_funnels(model, dataset, device="cpu", iou: float = 0.5,
                  score_thresh: float = 0.05) -> Iterator[ImageFunnel]:
    """An inference pass with trace per image and the funnel of its GT boxes, one image per
    yield (a caller can show progress or stop between images).

    Difficult boxes are left out, as evaluation ignores them (gt_index still counts all boxes).
    Labels match the model's by class name; detected needs a score >= score_thresh; the anchor
    labels follow the model's training RPN settings.
    """
    names, to_model = _label_space(model.class_names, dataset.class_names)
    for sample in dataset.samples:
        image = load_image(sample.image_path).tensor.to(device)
        with torch.inference_mode():
            _, traces = model([image], trace=True)
        difficult = torch.zeros(len(sample.boxes), dtype=torch.bool) if sample.difficult is None else sample.difficult
        kept_idx = torch.nonzero(~difficult).flatten()
        rows = recall_funnel(traces[0], sample.boxes[kept_idx], to_model[sample.labels[kept_idx]], names, iou=iou,
                             score_thresh=score_thresh, rpn_config=model.config.rpn_train)
        rows = [replace(row, gt_index=int(kept_idx[row.gt_index])) for row in rows]
        yield ImageFunnel(sample.image_path, traces[0].scale, rows)


@dataclass(frozen=True)
class DatasetDiagnosis:
    """The funnel over a dataset. Counts are dicts outcome -> count over `OUTCOMES` (the stages
    where boxes were lost, then "detected"); by_size uses COCO's buckets on original-pixel area.
    anchor_coverage: share of GT boxes whose best anchor IoU is >= fg, in [bg, fg), < bg
    (`anchor_iou_thresholds` = (bg, fg) of the training RPN). anchor_sizes / aspect_ratios: the
    model's (all levels), for comparison with the suggestions (see `suggest_anchors`)."""

    images: int
    gt_boxes: int
    lost_at: dict[str, int]
    by_class: dict[str, dict[str, int]]
    by_size: dict[str, dict[str, int]]
    anchor_coverage: dict[str, float]
    suggested_anchor_sizes: list[float]
    suggested_aspect_ratios: list[float]
    anchor_sizes: list[float]
    aspect_ratios: list[float]
    anchor_iou_thresholds: tuple[float, float]
    iou: float
    score_thresh: float
    funnels: list[ImageFunnel] = field(repr=False)

    def best_anchor_ious_by_class(self) -> dict[str, list[float]]:
        values: dict[str, list[float]] = {name: [] for name in self.by_class}
        for row in (row for funnel in self.funnels for row in funnel.rows):
            values[row.label].append(row.best_anchor_iou)
        return values

    def to_json(self) -> dict:
        """Every field but the funnels, plus "stages" (their order) and "missed": one record per
        GT box not detected, its FunnelRow plus "image"."""
        payload = {item.name: getattr(self, item.name) for item in fields(self) if item.name != "funnels"}
        missed = [{"image": funnel.image_path, **row.to_json()}
                  for funnel in self.funnels for row in funnel.rows if row.lost_at is not None]
        return {"stages": list(FUNNEL_STAGES)} | payload | {"anchor_iou_thresholds": list(self.anchor_iou_thresholds),
                                                      "missed": missed}


def _counts(outcomes: list[str]) -> dict[str, int]:
    return {outcome: outcomes.count(outcome) for outcome in OUTCOMES}


def _size_bucket(box: tuple[float, float, float, float]) -> str:
    area = (box[2] - box[0]) * (box[3] - box[1])
    return SIZE_BUCKETS[0] if area < 32**2 else SIZE_BUCKETS[1] if area < 96**2 else SIZE_BUCKETS[2]


def suggest_anchors(sizes: Tensor, ratios: Tensor, num_sizes: int, num_ratios: int) -> tuple[list[float], list[float]]:
    """Anchor sizes and aspect ratios (h / w) for GT boxes of the given sqrt(area) sizes and
    ratios, both (G,) in model-input pixels: the quantiles at (i + 0.5) / n, i.e. the middle of n
    equal-count slices of the boxes, so each anchor shape serves about as many boxes. Sizes are
    rounded to whole pixels, ratios to 0.01; duplicates are merged."""
    if len(sizes) == 0:
        return [], []

    def quantiles(values: Tensor, count: int, digits: int) -> list[float]:
        levels = (torch.arange(count, dtype=torch.float64) + 0.5) / count
        return sorted({round(float(v), digits) for v in torch.quantile(values.double(), levels)})

    return quantiles(sizes, num_sizes, 0), quantiles(ratios, num_ratios, 2)


def summarize(funnels: list[ImageFunnel], class_names: list[str], model_config, iou: float = 0.5,
              score_thresh: float = 0.05) -> DatasetDiagnosis:
    """Aggregate per-image funnels; class_names orders by_class (classes without GT left out);
    model_config (a DetectorConfig) gives the anchors and the training RPN's thresholds."""
    rows = [row for funnel in funnels for row in funnel.rows]
    outcome = [row.lost_at or DETECTED for row in rows]
    present = {row.label for row in rows}
    class_order = [name for name in class_names[1:] if name in present] + sorted(present - set(class_names))
    by_class = {name: _counts([o for o, row in zip(outcome, rows, strict=True) if row.label == name])
                for name in class_order}
    by_size = {bucket: _counts([o for o, row in zip(outcome, rows, strict=True) if _size_bucket(row.box) == bucket])
               for bucket in SIZE_BUCKETS}
    bg, fg = model_config.rpn_train.bg_iou_thresh, model_config.rpn_train.fg_iou_thresh
    best = torch.tensor([row.best_anchor_iou for row in rows], dtype=torch.float64)
    share = (lambda mask: float(mask.double().mean())) if len(rows) else (lambda mask: 0.0)
    coverage = {f"iou>={fg:g}": share(best >= fg), f"{bg:g}<=iou<{fg:g}": share((best >= bg) & (best < fg)),
                f"iou<{bg:g}": share(best < bg)}
    # (G,) box sides in model-input pixels
    widths = torch.tensor([(row.box[2] - row.box[0]) * funnel.scale[1] for funnel in funnels for row in funnel.rows])
    heights = torch.tensor([(row.box[3] - row.box[1]) * funnel.scale[0] for funnel in funnels for row in funnel.rows])
    anchors = model_config.anchors
    anchor_sizes = sorted({float(size) for level in anchors.sizes for size in level})
    aspect_ratios = sorted({float(ratio) for level in anchors.aspect_ratios for ratio in level})
    sizes, ratios = suggest_anchors((widths * heights).sqrt(), heights / widths.clamp(min=1e-6),
                                    len(anchor_sizes), len(aspect_ratios))
    return DatasetDiagnosis(
        images=len(funnels), gt_boxes=len(rows), lost_at=_counts(outcome), by_class=by_class, by_size=by_size,
        anchor_coverage=coverage, suggested_anchor_sizes=sizes, suggested_aspect_ratios=ratios,
        anchor_sizes=anchor_sizes, aspect_ratios=aspect_ratios, anchor_iou_thresholds=(bg, fg), iou=iou,
        score_thresh=score_thresh, funnels=funnels,
    )


def diagnose_dataset(model, dataset, device="cpu", progress: bool = True, iou: float = 0.5,
                     score_thresh: float | None = None) -> DatasetDiagnosis:
    """`image_funnels` over the whole dataset (a progress bar on stderr), then `summarize`.
    score_thresh: default the model's own, so that any detection it reports counts."""
    score_thresh = model.config.roi_test.score_thresh if score_thresh is None else score_thresh
    funnels = list(tqdm(image_funnels(model, dataset, device, iou, score_thresh), total=len(dataset),
                        desc="diagnose", unit="image", disable=not progress))
    return summarize(funnels, dataset.class_names, model.config, iou, score_thresh)
