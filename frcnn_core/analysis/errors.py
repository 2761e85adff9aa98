"""Where a detector fails across a dataset, and at which stage: TIDE's error types
(`analysis.tide`) joined with each image's trace.

Per image (`image_errors`: one trace and its ground truth, no model call):

- the detections, in the dataset's label space (a detection of a class the dataset lacks is left
  out, as evaluation does), get TIDE's verdicts: hits (TP) and false positives (FP) by type;
- each FP carries the chain it grew from: anchor -> pre-NMS proposal (its objectness) -> RoI ->
  the RoI's class scores, i.e. the class it was taken for and what else it might have been;
- each false negative (FN: a GT box no hit took) carries its recall-funnel row
  (`inspect.funnel.recall_funnel`, as `frcnn trace --gt` shows it): the stage that lost it
  (`FUNNEL_STAGES`) and, where NMS lost it, the kept box that suppressed its best proposal. A box
  that a detection of its class covers, but which that detection's match to another box left
  unmatched, counts as lost at "detection": the second stage gave it no detection of its own.

Over a dataset: `analyse_images` yields one row per image, running the model on batches;
`error_analysis` adds progress, cancel and the share of each process under torchrun, then
`summarize_errors` makes the report. A sample without an annotation file (`Sample.annotated`) is
left out and listed, never counted as all false positives; difficult boxes are TIDE's ignore
regions. Boxes are (x1, y1, x2, y2) in original-image pixels.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor
from torchvision.ops import box_iou

from frcnn_core.analysis.labels import LabelSpaces
from frcnn_core.analysis.tide import (
    BG_IOU,
    FP_TYPES,
    MAIN_ERRORS,
    MISS,
    POS_IOU,
    TP,
    ImageTide,
    TideSummary,
    classify_image,
    summarize_tide,
)
from frcnn_core.data.samples import Sample
from frcnn_core.distributed import gather_shares, share
from frcnn_core.inspect.funnel import FunnelRow, recall_funnel
from frcnn_core.io.images import load_image
from frcnn_core.modeling.config import RPNConfig
from frcnn_core.modeling.trace import Trace
from frcnn_core.vocabulary import FUNNEL_STAGES

Box = tuple[float, float, float, float]
LOST_TO_A_NEIGHBOUR = "detection"  # the funnel's stage for a box whose covering detection another box took


def _box(values: Tensor) -> Box:
    return tuple(float(v) for v in values)


@dataclass(frozen=True)
class Hit:
    """A true positive: detection index (into the trace's detections), the GT box it took."""

    detection: int
    gt_index: int
    box: Box
    label: str
    score: float


@dataclass(frozen=True)
class FalsePositive:
    """type: one of FP_TYPES; gt_index: the box a Loc / Cls error was measured against or a Dupe
    repeats (index into the sample's boxes), else None; counted: False inside a difficult box
    (TIDE's ignore region: it costs no AP). The chain: roi (into the RoIs), proposal (into the
    pre-NMS proposals) with its objectness, anchor (into the anchors); class_scores: the RoI's
    softmax over the model's classes, background included."""

    detection: int
    type: str
    box: Box
    label: str
    score: float
    gt_index: int | None
    counted: bool
    roi: int
    proposal: int
    anchor: int
    proposal_box: Box
    anchor_box: Box
    objectness: float
    class_scores: dict[str, float]


@dataclass(frozen=True)
class FalseNegative:
    """A GT box no hit took. type: Miss, or Loc / Cls when such an FP (`by_detection`) targets it
    (fixing that error would find it); stage: where the funnel lost it; the chain the funnel
    followed: anchor_box, its best anchor, proposal_box, its best valid pre-NMS proposal (None
    when none overlaps it), suppressor_box, the kept pre-NMS proposal that suppressed that one,
    when NMS did; funnel: the whole row."""

    gt_index: int
    type: str
    box: Box
    label: str
    stage: str
    by_detection: int | None
    anchor_box: Box
    proposal_box: Box | None
    suppressor_box: Box | None
    funnel: FunnelRow


@dataclass(frozen=True)
class ImageErrors:
    """One image's row: its TIDE verdicts and every hit and error, each with what the trace says."""

    image_path: str
    tide: ImageTide
    hits: list[Hit]
    false_positives: list[FalsePositive]
    false_negatives: list[FalseNegative]

    @property
    def error_count(self) -> int:
        """Counted FPs plus FNs: what `worst` sorts by."""
        return sum(fp.counted for fp in self.false_positives) + len(self.false_negatives)

    def types(self) -> dict[str, int]:
        """How many errors of each of TIDE's main types (FP types over counted FPs; Miss) it has."""
        counted = [fp.type for fp in self.false_positives if fp.counted]
        found = {kind: counted.count(kind) for kind in FP_TYPES} | {MISS: self.tide.count(MISS)}
        return {kind: found[kind] for kind in MAIN_ERRORS if found[kind]}

    def to_json(self) -> dict:
        errors = [{"kind": "FP", "type": fp.type, "box": list(fp.box), "class": fp.label, "score": fp.score,
                   "detection": fp.detection, "gt": fp.gt_index, "counted": fp.counted, "roi": fp.roi,
                   "proposal": fp.proposal, "proposal_box": list(fp.proposal_box), "objectness": fp.objectness,
                   "anchor": fp.anchor, "anchor_box": list(fp.anchor_box), "class_scores": fp.class_scores}
                  for fp in self.false_positives]
        errors += [{"kind": "FN", "type": fn.type, "box": list(fn.box), "class": fn.label, "score": None,
                    "gt": fn.gt_index, "stage": fn.stage, "by_detection": fn.by_detection,
                    "anchor_box": list(fn.anchor_box),
                    "proposal_box": None if fn.proposal_box is None else list(fn.proposal_box),
                    "suppressor_box": None if fn.suppressor_box is None else list(fn.suppressor_box),
                    "funnel": fn.funnel.to_json()} for fn in self.false_negatives]
        return {"image": self.image_path, "TP": len(self.hits), "FP": sum(fp.counted for fp in self.false_positives),
                "FN": len(self.false_negatives), "types": self.types(), "errors": errors}


def image_errors(trace: Trace, sample: Sample, spaces: LabelSpaces, rpn_config: RPNConfig,
                 score_thresh: float) -> ImageErrors:
    """One image's row from an inference trace (with detections) and its ground truth.

    sample: boxes (G, 4) and labels (G,) in spaces.dataset_names' label space, difficult or None;
    rpn_config: the training RPN settings (the funnel's anchor labelling); score_thresh: the
    lowest detection score the model reports (a funnel box counts as detected from it).
    """
    detections = trace.detections
    data_labels = spaces.to_dataset[detections.labels]
    kept_idx = torch.nonzero(data_labels > 0).flatten()  # detections of classes the dataset has
    difficult = torch.zeros(len(sample.boxes), dtype=torch.bool) if sample.difficult is None else sample.difficult
    verdict = classify_image(detections.boxes[kept_idx], detections.scores[kept_idx], data_labels[kept_idx],
                             sample.boxes, sample.labels, difficult)
    detection_idx = kept_idx[torch.as_tensor(verdict.order)].tolist()  # evaluated position -> trace detection
    names = spaces.dataset_names
    hits, false_positives = [], []
    for position, (detection, kind) in enumerate(zip(detection_idx, verdict.kinds, strict=True)):
        gt = int(verdict.det_gt[position])
        box, label = _box(detections.boxes[detection]), names[int(verdict.labels[position])]
        score = float(verdict.scores[position])
        if kind == TP:
            hits.append(Hit(detection, gt, box, label, score))
        else:
            false_positives.append(FalsePositive(detection, kind, box, label, score, None if gt < 0 else gt,
                                                 not verdict.ignored[position], **_chain(trace, detection, spaces)))
    return ImageErrors(sample.image_path, verdict, hits, false_positives,
                       _false_negatives(trace, sample, verdict, detection_idx, spaces, rpn_config, score_thresh))


def _chain(trace: Trace, detection: int, spaces: LabelSpaces) -> dict:
    """The FalsePositive fields about where a detection came from (at inference the RoIs are the
    post-NMS proposals, so RoI r is pre-NMS proposal post_nms_idx[r])."""
    proposals = trace.proposals
    roi = int(trace.detections.roi_idx[detection])
    proposal = int(proposals.post_nms_idx[roi])
    anchor = int(proposals.pre_nms_anchor_idx[proposal])
    scores = trace.detections.class_scores[roi].tolist()
    return dict(roi=roi, proposal=proposal, anchor=anchor, proposal_box=_box(proposals.pre_nms_boxes[proposal]),
                anchor_box=_box(trace.anchors.boxes[anchor]), objectness=float(proposals.pre_nms_scores[proposal]),
                class_scores=dict(zip(spaces.model_names, scores, strict=True)))


def _false_negatives(trace: Trace, sample: Sample, verdict: ImageTide, detection_idx: list[int],
                     spaces: LabelSpaces, rpn_config: RPNConfig, score_thresh: float) -> list[FalseNegative]:
    """One FalseNegative per GT box no hit took, with its funnel row (the funnel sees every box
    but the difficult ones, as `frcnn diagnose` does)."""
    missing = verdict.false_negatives
    if not missing.any():
        return []
    real_idx = torch.nonzero(~torch.as_tensor(verdict.gt_ignore)).flatten()
    rows = recall_funnel(trace, sample.boxes[real_idx], spaces.to_joint[sample.labels[real_idx]], spaces.joint_names,
                         iou=POS_IOU, score_thresh=score_thresh, rpn_config=rpn_config)
    # the one Loc / Cls error per free box that fixing would turn into its hit
    fixable = np.flatnonzero(verdict.fixed_label >= 0)
    targeted_by = {int(verdict.det_gt[position]): int(position) for position in fixable}
    proposals = trace.proposals
    best_proposals = _best_valid_proposals(proposals, sample.boxes[real_idx])
    false_negatives = []
    for row, gt, best in zip(rows, real_idx.tolist(), best_proposals, strict=True):
        if not missing[gt]:
            continue
        position = targeted_by.get(gt)
        suppressor = row.suppressed_by
        false_negatives.append(FalseNegative(
            gt_index=gt, type=MISS if verdict.missed[gt] else verdict.kinds[position], box=_box(sample.boxes[gt]),
            label=spaces.dataset_names[int(sample.labels[gt])], stage=row.lost_at or LOST_TO_A_NEIGHBOUR,
            by_detection=None if position is None else detection_idx[position],
            anchor_box=_box(trace.anchors.boxes[row.best_anchor_index]),
            proposal_box=None if best is None else _box(proposals.pre_nms_boxes[best]),
            suppressor_box=None if suppressor is None else _box(proposals.pre_nms_boxes[suppressor]),
            funnel=replace(row, gt_index=gt)))  # the funnel counted the boxes it saw; gt counts them all
    return false_negatives


def _best_valid_proposals(proposals, gt_boxes: Tensor) -> list[int | None]:
    """Per GT box (G, 4): the valid pre-NMS proposal with the highest IoU, the one the funnel
    follows (`FunnelRow.best_proposal_rank`), None when no valid one overlaps it."""
    iou = box_iou(gt_boxes.float().reshape(-1, 4), proposals.pre_nms_boxes)  # (G, P)
    iou = torch.where(proposals.valid[None, :], iou, torch.full_like(iou, -1.0))
    if iou.shape[1] == 0:
        return [None] * len(iou)
    best_iou, best_idx = iou.max(dim=1)
    return [int(index) if value > 0 else None
            for value, index in zip(best_iou.tolist(), best_idx.tolist(), strict=True)]


def analyse_images(model, samples: Sequence[Sample], class_names: list[str], device,
                   batch_size: int = 4) -> Iterator[ImageErrors]:
    """One ImageErrors per sample, in order: the model runs with its trace on batches of
    `batch_size` images, so a caller can show progress or stop between yields.

    model: a FasterRCNN in eval mode whose score threshold is the one the analysis should see;
    class_names: the samples' label space (background first).
    """
    spaces = LabelSpaces.of(model.class_names, class_names)
    score_thresh = model.config.roi_test.score_thresh
    for start in range(0, len(samples), batch_size):
        batch = samples[start:start + batch_size]
        images = [load_image(sample.image_path).tensor.to(device) for sample in batch]
        with torch.inference_mode():  # here, not around the loop: a generator's caller runs between yields
            _, traces = model(images, trace=True)
        for sample, trace in zip(batch, traces, strict=True):
            yield image_errors(trace, sample, spaces, model.config.rpn_train, score_thresh)


@dataclass(frozen=True)
class ErrorReport:
    """A dataset's errors: TIDE's numbers, one row per analysed image (dataset order), and the
    images left out (one line each: no annotation). score_thresh: the lowest detection score seen."""

    model: str
    class_names: list[str]
    score_thresh: float
    tide: TideSummary
    images: list[ImageErrors]
    left_out: list[str]

    def gt_by_class(self) -> dict[str, int]:
        """GT boxes (difficult ones aside) per class that has any, in class order."""
        labels = [int(label) for row in self.images for label in row.tide.gt_labels[~row.tide.gt_ignore]]
        return {name: labels.count(label) for label, name in enumerate(self.class_names) if label in labels}

    def missed_by_class(self) -> dict[str, dict[str, int]]:
        """Per class with GT boxes: how many FNs each funnel stage lost (every stage listed)."""
        counts = {name: dict.fromkeys(FUNNEL_STAGES, 0) for name in self.gt_by_class()}
        for fn in (fn for row in self.images for fn in row.false_negatives):
            counts[fn.label][fn.stage] += 1
        return counts

    def errors_by_class(self) -> dict[str, dict[str, int]]:
        """Per class with GT boxes or errors: its counted FPs by type (the class they were
        detected as) and its Miss boxes (their GT class), every main type listed."""
        counts = {name: dict.fromkeys(MAIN_ERRORS, 0) for name in self.gt_by_class()}
        for row in self.images:
            for fp in (fp for fp in row.false_positives if fp.counted):
                counts.setdefault(fp.label, dict.fromkeys(MAIN_ERRORS, 0))[fp.type] += 1
            for fn in (fn for fn in row.false_negatives if fn.type == MISS):
                counts[fn.label][MISS] += 1
        return counts

    def missed_by_stage(self) -> dict[str, int]:
        by_class = self.missed_by_class().values()
        return {stage: sum(counts[stage] for counts in by_class) for stage in FUNNEL_STAGES}

    def worst(self, count: int = 5) -> list[ImageErrors]:
        """The `count` images with the most errors (counted FPs + FNs), ties in dataset order."""
        return sorted((row for row in self.images if row.error_count), key=lambda row: -row.error_count)[:count]

    def to_json(self) -> dict:
        return {"model": self.model, "images_analysed": len(self.images), "left_out": list(self.left_out),
                "score_thresh": self.score_thresh, "iou": {"foreground": POS_IOU, "background": BG_IOU},
                "tide": self.tide.to_json(), "stages": list(FUNNEL_STAGES), "missed_by_stage": self.missed_by_stage(),
                "missed_by_class": self.missed_by_class(), "gt_by_class": self.gt_by_class(),
                "images": [row.to_json() for row in self.images]}


def summarize_errors(rows: Sequence[ImageErrors], class_names: list[str], model_name: str, score_thresh: float,
                     left_out: Sequence[str] = ()) -> ErrorReport:
    """The report over rows from `image_errors` / `analyse_images` (cheap: no model call, so a
    view can rerun it after one image's row changed)."""
    return ErrorReport(model_name, list(class_names), score_thresh, summarize_tide([row.tide for row in rows]),
                       list(rows), list(left_out))


def error_analysis(model, samples: Sequence[Sample], class_names: list[str], device, batch_size: int = 4,
                   progress: Callable[[int, int], None] | None = None, cancel: Callable[[], bool] = lambda: False,
                   rank: int = 0, world: int = 1, model_name: str | None = None,
                   left_out: Sequence[str] = ()) -> ErrorReport | None:
    """`analyse_images` over the annotated samples, then `summarize_errors`.

    progress(done, total) after each image of this process; cancel() is asked after each image
    and stops the pass (returns None). Under torchrun (world > 1) each process takes its `share`
    of the images and rank 0 gathers the rows in dataset order: it alone returns the report,
    every other rank None (no cancelling there: every process must reach the gather).
    model_name: how the report names the model (default: its architecture's name); left_out:
    images the caller already left out (a reader's "no annotation file" lines), listed first.
    """
    annotated = [sample for sample in samples if sample.annotated]
    left_out = [*left_out, *(f"{sample.image_path}: no annotation file" for sample in samples if not sample.annotated)]
    mine = [annotated[index] for index in share(len(annotated), rank, world)]
    rows = []
    for row in analyse_images(model, mine, class_names, device, batch_size):
        rows.append(row)
        if progress is not None:
            progress(len(rows), len(mine))
        if cancel():
            return None
    gathered = gather_shares(rows, rank, world)
    if gathered is None:
        return None
    return summarize_errors(gathered, class_names, model_name or getattr(model, "model_name", type(model).__name__),
                            model.config.roi_test.score_thresh, left_out)
