"""TIDE error analysis (Bolya et al., ECCV 2020): which kinds of mistakes cost a detector how much AP.

Shapes: D detections and G ground-truth boxes of one image; K = min(D, max_dets) the detections
evaluated. Boxes are (x1, y1, x2, y2) pixels; labels are ints >= 1 of one label space (the
dataset's). numpy only: the per-image verdicts and the re-scoring need no model.

The definitions are TIDE's (the `tidecv` package, which the tests run as an oracle), with its
thresholds: foreground IoU `pos` = 0.5, background IoU `bg` = 0.1.

Matching, per image. The detections are taken by descending score, at most `max_dets` of them;
each is a true positive (TP) when a GT box of its class that no earlier detection took overlaps
it at IoU >= pos (of those, the one of highest IoU). A GT box marked `ignore` (VOC's difficult) is
an ignore region: a detection that took no box and lies inside one of its class (intersection
over the detection's own area > pos) is *ignored* — it counts neither way in AP.

Errors. Every other detection (ignored ones too, as TIDE does) is a false positive (FP) of the
first type that fits:

- Bkg: the image has no GT box at all;
- Loc: its best IoU with a GT box of its class lies in [bg, pos] (right class, poor box);
- Cls: IoU >= pos with a GT box of another class (good box, wrong class);
- Dupe: IoU >= pos with a GT box of its class that a higher-scoring TP took;
- Bkg: IoU <= bg with every GT box (background taken for an object);
- Both: anything else (a wrong class on a poor box).

A Loc or Cls error *targets* the box its test picked; a GT box that no TP took is a false
negative (FN), and a *Miss* when no Loc or Cls error targets it.

AP (the same at every step): per class, COCO's interpolated precision at the 101 recalls 0, 0.01,
..., 1 (ties in score keep image order, then rank), averaged over the classes that have GT boxes
or non-ignored detections — a class with detections and no GT box scores 0, as in TIDE — times 100.

Fixing one error type (the oracle "fix it and score again"):

- Loc, Cls: of the errors targeting a GT box that no TP took, the highest-scoring one becomes a TP
  (of the box's class for Cls, of its own for Loc) when its type is the one fixed; every other
  error of the fixed type is removed (a box can be found only once);
- Dupe, Bkg, Both: the errors are removed;
- Miss: the missed boxes leave the count of GT boxes.

`main[type]` = max(0, AP(fixed) - AP). Special errors, not clipped: FalsePos = AP with every FP
scored below every TP, minus AP; FalseNeg = AP with every FN left out of the GT count, minus AP.

Agreement with tidecv: exact (to float rounding) when no two detections of a class share a
score. On tied scores tidecv's re-scoring puts the errors before the hits (an artefact of the
order it collects them in) while its first scoring keeps image order; here every scoring keeps
image order, then rank.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

TP = "TP"
CLS, LOC, BOTH, DUPE, BKG, MISS = "Cls", "Loc", "Both", "Dupe", "Bkg", "Miss"
FP_TYPES = (CLS, LOC, BOTH, DUPE, BKG)
MAIN_ERRORS = (CLS, LOC, BOTH, DUPE, BKG, MISS)  # TIDE's order
FALSE_POS, FALSE_NEG = "FalsePos", "FalseNeg"
SPECIAL_ERRORS = (FALSE_POS, FALSE_NEG)
POS_IOU, BG_IOU, MAX_DETS = 0.5, 0.1, 100
RECALL_POINTS = np.arange(101) / 100  # COCO's 101 recall thresholds


@dataclass(frozen=True)
class ImageTide:
    """One image's TIDE verdicts; the (K,) arrays follow the evaluated detections by descending score.

    order (K,) int64: each evaluated detection's index among the image's D detections;
    labels (K,) int64, scores (K,) float64; kinds: K strings, TP or an FP type;
    det_gt (K,) int64: the GT box a TP took, a Loc / Cls error targets or a Dupe repeats, else -1;
    ignored (K,) bool: inside an ignore region (module docstring);
    fixed_label (K,) int64: the class a Loc / Cls error is a TP of once its type is fixed, -1 when
    fixing removes it;
    gt_labels (G,) int64; gt_ignore (G,) bool; gt_det (G,) int64: the position in `order` of
    the TP that took the box, -1 for none (and for ignore regions); missed (G,) bool: Miss.
    """

    order: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    kinds: tuple[str, ...]
    det_gt: np.ndarray
    ignored: np.ndarray
    fixed_label: np.ndarray
    gt_labels: np.ndarray
    gt_ignore: np.ndarray
    gt_det: np.ndarray
    missed: np.ndarray

    @property
    def false_negatives(self) -> np.ndarray:
        """(G,) bool: GT boxes (not ignore regions) that no TP took."""
        return ~self.gt_ignore & (self.gt_det < 0)

    def count(self, kind: str) -> int:
        """How many detections are of `kind` (TP or an FP type), or, for Miss, how many boxes."""
        return int(self.missed.sum()) if kind == MISS else self.kinds.count(kind)


def box_iou(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """(N, 4), (M, 4) -> (N, M) float64 intersection over union."""
    intersection, area, other_area = _intersections(boxes, others)
    union = area[:, None] + other_area[None, :] - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def _inside_share(boxes: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """(N, M): the share of each box's area inside each region (COCO's overlap with a crowd region)."""
    intersection, area, _ = _intersections(boxes, regions)
    return np.divide(intersection, area[:, None], out=np.zeros_like(intersection), where=area[:, None] > 0)


def _intersections(boxes: np.ndarray, others: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    boxes, others = boxes.reshape(-1, 4), others.reshape(-1, 4)
    # (N, 1, 2) against (1, M, 2): the overlap's corners
    top_left = np.maximum(boxes[:, None, :2], others[None, :, :2])
    bottom_right = np.minimum(boxes[:, None, 2:], others[None, :, 2:])
    intersection = np.clip(bottom_right - top_left, 0, None).prod(axis=2)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    other_area = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return intersection, area, other_area


def _array(values, dtype, shape=(-1,)) -> np.ndarray:
    return np.asarray(values, dtype=dtype).reshape(shape)


def classify_image(pred_boxes, pred_scores, pred_labels, gt_boxes, gt_labels, gt_ignore=None,
                   pos: float = POS_IOU, bg: float = BG_IOU, max_dets: int = MAX_DETS) -> ImageTide:
    """TIDE's verdicts on one image (module docstring).

    pred_boxes (D, 4), pred_scores (D,), pred_labels (D,); gt_boxes (G, 4), gt_labels (G,);
    gt_ignore (G,) bool or None (no ignore regions). Arrays or CPU tensors. Ties in score keep the
    given order.
    """
    scores = _array(pred_scores, np.float64)
    order = np.argsort(-scores, kind="stable")[:max_dets]
    boxes = _array(pred_boxes, np.float64, (-1, 4))[order]
    labels, scores = _array(pred_labels, np.int64)[order], scores[order]
    all_gt_boxes, all_gt_labels = _array(gt_boxes, np.float64, (-1, 4)), _array(gt_labels, np.int64)
    gt_ignore = np.zeros(len(all_gt_labels), bool) if gt_ignore is None else _array(gt_ignore, bool)
    real = np.flatnonzero(~gt_ignore)  # the GT boxes proper, as indices into all G
    iou = box_iou(boxes, all_gt_boxes[real])  # (K, G_real)
    same_class = labels[:, None] == all_gt_labels[real][None, :]
    taken_by = _match(iou * same_class, pos)  # (G_real,) position of the TP, -1
    det_gt = np.full(len(order), -1, np.int64)
    det_gt[taken_by[taken_by >= 0]] = np.flatnonzero(taken_by >= 0)
    regions = np.flatnonzero(gt_ignore)
    inside = _inside_share(boxes, all_gt_boxes[regions]) > pos
    inside &= labels[:, None] == all_gt_labels[regions][None, :]
    ignored = (det_gt < 0) & inside.any(axis=1)
    kinds = [TP if gt >= 0 else BKG for gt in det_gt]
    if len(real):
        for position in np.flatnonzero(det_gt < 0):
            kinds[position], det_gt[position] = _error_type(iou[position], same_class[position], taken_by >= 0, pos, bg)
    fixed_label = _fixed_labels(kinds, det_gt, labels, scores, all_gt_labels[real], taken_by >= 0)
    targeted = np.zeros(len(real), bool)
    targeted[[gt for kind, gt in zip(kinds, det_gt, strict=True) if kind in (LOC, CLS)]] = True
    gt_det = np.full(len(all_gt_labels), -1, np.int64)
    gt_det[real] = taken_by
    missed = np.zeros(len(all_gt_labels), bool)
    missed[real] = (taken_by < 0) & ~targeted
    det_gt = np.where(det_gt >= 0, real[np.clip(det_gt, 0, None)] if len(real) else -1, -1)  # -> indices into G
    return ImageTide(order, labels, scores, tuple(kinds), det_gt, ignored, fixed_label, all_gt_labels, gt_ignore,
                     gt_det, missed)


def _match(class_iou: np.ndarray, pos: float) -> np.ndarray:
    """Greedy matching, detections in row order: (K, G) IoUs with same-class boxes (0 elsewhere)
    -> (G,) the row that took each box, -1 for none."""
    taken_by = np.full(class_iou.shape[1], -1, np.int64)
    free = np.ones(class_iou.shape[1], bool)
    for position, row in enumerate(class_iou):
        if not free.any():
            break
        candidates = np.where(free, row, 0.0)
        best = int(candidates.argmax())
        if candidates[best] >= pos:
            taken_by[best] = position
            free[best] = False
    return taken_by


def _error_type(iou: np.ndarray, same_class: np.ndarray, taken: np.ndarray, pos: float, bg: float) -> tuple[str, int]:
    """The FP type of one unmatched detection (module docstring's order) and the GT box it refers to.

    iou, same_class: (G,) against the image's GT boxes (at least one); taken (G,): a TP took the box.
    """
    class_iou = iou * same_class
    best = int(class_iou.argmax())
    if bg <= class_iou[best] <= pos:
        return LOC, best
    other_class_iou = iou * ~same_class
    best = int(other_class_iou.argmax())
    if other_class_iou[best] >= pos:
        return CLS, best
    taken_iou = class_iou * taken
    best = int(taken_iou.argmax())
    if taken_iou[best] >= pos:
        return DUPE, best
    return (BKG, -1) if iou.max() <= bg else (BOTH, -1)


def _fixed_labels(kinds: list[str], det_gt: np.ndarray, labels: np.ndarray, scores: np.ndarray, gt_labels: np.ndarray,
                  taken: np.ndarray) -> np.ndarray:
    """(K,) the class each Loc / Cls error is a TP of once fixed: only the highest-scoring error
    (the first on a tie) targeting a box no TP took; -1 for every other detection."""
    best_for_gt: dict[int, int] = {}
    for position, (kind, gt) in enumerate(zip(kinds, det_gt, strict=True)):
        if kind in (LOC, CLS) and not taken[gt]:
            current = best_for_gt.get(int(gt))
            if current is None or scores[position] > scores[current]:
                best_for_gt[int(gt)] = position
    fixed = np.full(len(kinds), -1, np.int64)
    for gt, position in best_for_gt.items():
        fixed[position] = gt_labels[gt] if kinds[position] == CLS else labels[position]
    return fixed


@dataclass(frozen=True)
class TideSummary:
    """A dataset's TIDE numbers, all in AP points (0-100): ap50, main (dAP per MAIN_ERRORS type),
    special (dAP per SPECIAL_ERRORS type); counts: how many of each main type (Miss: boxes)."""

    ap50: float
    main: dict[str, float]
    special: dict[str, float]
    counts: dict[str, int]

    def to_json(self) -> dict:
        return {"AP50": self.ap50, "main": dict(self.main), "special": dict(self.special),
                "counts": dict(self.counts)}


@dataclass(frozen=True)
class _Points:
    """Every evaluated detection and GT box of a dataset, images in order, as flat arrays."""

    labels: np.ndarray
    scores: np.ndarray
    kinds: np.ndarray
    ignored: np.ndarray
    fixed_label: np.ndarray
    gt_labels: np.ndarray  # GT boxes proper (no ignore regions) from here on
    gt_missed: np.ndarray
    gt_found: np.ndarray


def _points(images: Sequence[ImageTide]) -> _Points:
    def joined(values, dtype) -> np.ndarray:
        return np.concatenate([np.asarray(v, dtype=dtype) for v in values]) if values else np.zeros(0, dtype)

    real = [~image.gt_ignore for image in images]
    return _Points(
        labels=joined([i.labels for i in images], np.int64), scores=joined([i.scores for i in images], np.float64),
        kinds=joined([np.asarray(i.kinds, dtype=object) for i in images], object),
        ignored=joined([i.ignored for i in images], bool),
        fixed_label=joined([i.fixed_label for i in images], np.int64),
        gt_labels=joined([i.gt_labels[r] for i, r in zip(images, real, strict=True)], np.int64),
        gt_missed=joined([i.missed[r] for i, r in zip(images, real, strict=True)], bool),
        gt_found=joined([i.gt_det[r] >= 0 for i, r in zip(images, real, strict=True)], bool),
    )


def class_ap(scores: np.ndarray, is_true: np.ndarray, num_gt: int) -> float:
    """One class's AP in points: COCO's 101-point interpolated precision. scores, is_true (N,),
    ties in score kept in the given order; 0 when the class has no GT box."""
    if num_gt <= 0 or len(scores) == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    true_pos = np.cumsum(is_true[order])
    precision = true_pos / np.arange(1, len(order) + 1)
    recall = true_pos / num_gt
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # the best precision at this recall or beyond
    at = np.searchsorted(recall, RECALL_POINTS, side="left")
    sampled = np.where(at < len(precision), precision[np.minimum(at, len(precision) - 1)], 0.0)
    return float(sampled.mean() * 100)


def _mean_ap(labels: np.ndarray, scores: np.ndarray, is_true: np.ndarray, num_gt: dict[int, int]) -> float:
    """The mean of class_ap over the classes of num_gt that have a GT box or a detection."""
    values = [class_ap(scores[labels == label], is_true[labels == label], count)
              for label, count in num_gt.items() if count > 0 or (labels == label).any()]
    return float(np.mean(values)) if values else 0.0


def _gt_counts(points: _Points, leave_out: np.ndarray | None = None) -> dict[int, int]:
    """GT boxes per class (every class TIDE scores: those with a box or a counted detection),
    without the boxes where leave_out (G,) is True."""
    counted = points.gt_labels if leave_out is None else points.gt_labels[~leave_out]
    classes = sorted(set(points.gt_labels.tolist()) | set(points.labels[~points.ignored].tolist()))
    return {label: int((counted == label).sum()) for label in classes}


def _fixed_ap(points: _Points, kind: str, classes: dict[int, int]) -> float:
    """AP once every error of `kind` is fixed (module docstring)."""
    if kind == MISS:
        counts = {label: classes[label] - int((points.gt_labels[points.gt_missed] == label).sum()) for label in classes}
        keep = ~points.ignored
        return _mean_ap(points.labels[keep], points.scores[keep], points.kinds[keep] == TP, counts)
    of_kind = points.kinds == kind
    becomes_tp = of_kind & (points.fixed_label >= 0)
    keep = (~points.ignored & ~of_kind) | becomes_tp
    labels = np.where(becomes_tp, points.fixed_label, points.labels)
    is_true = (points.kinds == TP) | becomes_tp
    return _mean_ap(labels[keep], points.scores[keep], is_true[keep], classes)


def summarize_tide(images: Sequence[ImageTide]) -> TideSummary:
    """TIDE's AP50, main and special errors over images (each from `classify_image`)."""
    points = _points(images)
    classes = _gt_counts(points)
    keep = ~points.ignored
    labels, scores, is_true = points.labels[keep], points.scores[keep], points.kinds[keep] == TP
    ap = _mean_ap(labels, scores, is_true, classes)
    main = {kind: max(_fixed_ap(points, kind, classes) - ap, 0.0) for kind in MAIN_ERRORS}
    perfect_precision = _mean_ap(labels, is_true.astype(np.float64), is_true, classes)
    perfect_recall = _mean_ap(labels, scores, is_true, _gt_counts(points, leave_out=~points.gt_found))
    counts = {kind: sum(image.count(kind) for image in images) for kind in MAIN_ERRORS}
    return TideSummary(ap50=ap, main=main, special={FALSE_POS: perfect_precision - ap, FALSE_NEG: perfect_recall - ap},
                       counts=counts)
