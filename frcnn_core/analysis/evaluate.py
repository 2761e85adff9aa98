"""Evaluation: COCO AP through pycocotools, VOC07 11-point AP, per-image losses, confusion matrix.

Shapes: G ground-truth boxes of one image, D detections of one image, C classes incl. background.
Boxes are (x1, y1, x2, y2) in original-image pixels; COCO files use (x, y, w, h).

A *record* is one image's detections: {"image_id": index into the dataset, "boxes": (D, 4),
"scores": (D,), "labels": (D,) int64 in the dataset's label space}.

Difficult objects (VOC's `difficult` flag) are ignored everywhere, as VOC2007 does: they count
neither as ground truth to find nor, when a detection lands on one, as a false positive. In the
COCO ground truth they become `iscrowd: 1` (plus `ignore: 1` for other readers), because
pycocotools overwrites `ignore` with `iscrowd`; a crowd box matches a detection by
intersection over the detection's area, so a detection inside a difficult object is ignored
(VOC07's AP, which matches by IoU, counts it as a false positive when its IoU is below 0.5),
and it matches any number of detections (each ignored, as in VOC07).

Undefined AP: a class with no (non-difficult) ground truth has no AP — pycocotools marks it -1,
VOC divides by zero. Such classes are left out of the per-class dicts and of the means; a mean
over no class at all is nan (and null in JSON).
"""
from __future__ import annotations

import contextlib
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchvision.ops import box_iou
from tqdm import tqdm

from frcnn_core.analysis.labels import dataset_labels
from frcnn_core.data.samples import image_size

LOSS_NAMES = ("loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg")
NO_DETECTIONS = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}


@dataclass(frozen=True)
class EvalResult:
    """Metrics of one model on one dataset. `confusion` is (C, C) int64: rows = GT class (row 0 =
    false positives), columns = predicted class (column 0 = missed GT)."""

    AP: float
    AP50: float
    AP75: float
    per_class_AP50: dict[str, float]
    voc07_mAP: float
    images: int
    per_class_voc07_AP: dict[str, float]
    per_image_losses: list[dict[str, float]] | None
    confusion: np.ndarray

    def to_json(self) -> dict:
        """DESIGN.md's `eval --json` plus "per_class_voc07_AP" and, with losses, "mean_losses"."""
        payload = {
            "AP": _json_float(self.AP), "AP50": _json_float(self.AP50), "AP75": _json_float(self.AP75),
            "per_class_AP50": {name: _json_float(ap) for name, ap in self.per_class_AP50.items()},
            "voc07_mAP": _json_float(self.voc07_mAP), "images": self.images,
            "per_class_voc07_AP": {name: _json_float(ap) for name, ap in self.per_class_voc07_AP.items()},
        }
        if self.per_image_losses:
            payload["mean_losses"] = {
                name: float(np.mean([losses[name] for losses in self.per_image_losses])) for name in LOSS_NAMES
            }
        return payload


@dataclass(frozen=True)
class PrCurve:
    """One class's VOC precision/recall, float64 (D,) each, in descending-score order;
    `interpolated` (11,): the highest precision at recall >= 0, 0.1, ..., 1 (0 where never
    reached), whose mean is the 11-point `ap`."""

    precision: np.ndarray
    recall: np.ndarray
    interpolated: np.ndarray

    @property
    def ap(self) -> float:
        return float(self.interpolated.mean())


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _nanmean(values) -> float:
    values = list(values)
    return float(np.mean(values)) if values else float("nan")


def _difficult(sample) -> torch.Tensor:
    """(G,) bool; all False when the dataset records no difficult flags."""
    if sample.difficult is None:
        return torch.zeros(len(sample.boxes), dtype=torch.bool)
    return sample.difficult.bool()


def coco_ground_truth(dataset) -> dict:
    """COCO-format ground truth: image id = dataset index, category id = label index (names from
    `dataset.class_names`, background left out), annotation ids from 1 (pycocotools reads id 0
    as "unmatched"), difficult objects as crowd regions (see the module docstring)."""
    images, annotations = [], []
    for index, sample in enumerate(dataset.samples):
        width, height = sample.width, sample.height
        if width is None or height is None:
            width, height = image_size(sample.image_path)
        images.append({"id": index, "file_name": sample.image_path, "width": width, "height": height})
        for box, label, difficult in zip(sample.boxes.double().tolist(), sample.labels.tolist(),
                                         _difficult(sample).tolist(), strict=True):
            x1, y1, x2, y2 = box
            annotations.append({
                "id": len(annotations) + 1, "image_id": index, "category_id": int(label),
                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                "iscrowd": int(difficult), "ignore": int(difficult),
            })
    categories = [{"id": label, "name": name} for label, name in enumerate(dataset.class_names) if label > 0]
    return {"images": images, "annotations": annotations, "categories": categories}


def coco_detections(records: list[dict]) -> list[dict]:
    """COCO results list from records; boxes go to float64 before (x, y, w, h) so that widths are
    exactly x2 - x1 of the stored numbers."""
    results = []
    for record in records:
        boxes = torch.as_tensor(record["boxes"], dtype=torch.float64).reshape(-1, 4).tolist()
        for box, score, label in zip(boxes, torch.as_tensor(record["scores"]).tolist(),
                                     torch.as_tensor(record["labels"]).tolist(), strict=True):
            x1, y1, x2, y2 = box
            results.append({"image_id": int(record["image_id"]), "category_id": int(label),
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(score)})
    return results


def coco_metrics(gt: dict, results: list[dict], class_names: list[str]) -> dict:
    """pycocotools' bbox evaluation: {"AP", "AP50", "AP75" (COCOeval's stats[0:3]), "per_class_AP50"}.

    Per-class AP50 is `precision[IoU 0.5, :, class, area all, maxDets 100]` averaged over its 101
    recall points; a class whose precision is all -1 (no ground truth) is left out; -1 stats
    become nan.
    """
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress and tables
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(results) if results else _empty_results(gt)
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    ap, ap50, ap75 = (float(v) if v > -1 else float("nan") for v in evaluator.stats[:3])
    precision = evaluator.eval["precision"]  # (IoU thresholds, recall points, classes, areas, max dets)
    per_class = {}
    for class_pos, category_id in enumerate(evaluator.params.catIds):
        curve = precision[0, :, class_pos, 0, -1]
        if (curve > -1).any():
            per_class[class_names[category_id]] = float(np.mean(curve[curve > -1]))
    return {"AP": ap, "AP50": ap50, "AP75": ap75, "per_class_AP50": per_class}


def _empty_results(gt: dict) -> COCO:
    """`COCO.loadRes([])` fails on its first element; an empty result set is a COCO with no boxes."""
    coco_dt = COCO()
    coco_dt.dataset = {"images": gt["images"], "categories": gt["categories"], "annotations": []}
    coco_dt.createIndex()
    return coco_dt


def _by_image(detections: list[dict]) -> dict[int, dict]:
    return {int(record["image_id"]): record for record in detections}


def voc_pr_curves(dataset, detections: list[dict], iou: float = 0.5) -> dict[int, PrCurve]:
    """VOC2007 precision/recall and 11-point AP per label that has non-difficult ground truth.

    Detections of a class are taken by descending score (ties: image order, then record order);
    each matches the GT of its image and class with the highest IoU; IoU >= `iou` (pycocotools'
    rule; VOC's devkit says >) makes it a true positive if that GT is free, a duplicate (false
    positive) if taken, ignored if that GT is difficult; otherwise it is a false positive.
    """
    by_image = _by_image(detections)
    curves = {}
    for label in range(1, len(dataset.class_names)):
        # one entry per detection of this class over all images
        scores, best_ious, matched_gt_idx, image_ids = [], [], [], []
        gt_difficult = {}
        for image_id, sample in enumerate(dataset.samples):
            gt_difficult[image_id] = _difficult(sample)[sample.labels == label].tolist()
            if image_id in by_image:
                image_scores, image_ious, image_matched = _best_gt(by_image[image_id], sample, label)
                scores += image_scores
                best_ious += image_ious
                matched_gt_idx += image_matched
                image_ids += [image_id] * len(image_scores)
        num_positive = sum(flags.count(False) for flags in gt_difficult.values())
        if num_positive == 0:
            continue
        order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
        is_tp, is_fp = np.zeros(len(order)), np.zeros(len(order))
        taken = set()
        for rank, pred_idx in enumerate(order):
            image_id, gt_idx = image_ids[pred_idx], matched_gt_idx[pred_idx]
            if gt_idx < 0 or best_ious[pred_idx] < iou:
                is_fp[rank] = 1
            elif gt_difficult[image_id][gt_idx]:
                continue
            elif (image_id, gt_idx) in taken:
                is_fp[rank] = 1
            else:
                is_tp[rank] = 1
                taken.add((image_id, gt_idx))
        curves[label] = _pr_curve(np.cumsum(is_tp), np.cumsum(is_fp), num_positive)
    return curves


def _best_gt(record: dict, sample, label: int) -> tuple[list[float], list[float], list[int]]:
    """One image's detections of `label`: their scores, their highest IoU with a GT box of that
    label (0 when there is none) and the index of that box among the label's GT boxes."""
    is_pred = torch.as_tensor(record["labels"]) == label
    pred_boxes = torch.as_tensor(record["boxes"], dtype=torch.float64).reshape(-1, 4)[is_pred]
    gt_boxes = sample.boxes[sample.labels == label].double()
    if len(gt_boxes) == 0:
        return torch.as_tensor(record["scores"])[is_pred].tolist(), [0.0] * len(pred_boxes), [-1] * len(pred_boxes)
    best_iou, matched_gt_idx = box_iou(pred_boxes, gt_boxes).max(dim=1)  # (D, G) -> (D,)
    return torch.as_tensor(record["scores"])[is_pred].tolist(), best_iou.tolist(), matched_gt_idx.tolist()


def _pr_curve(true_pos: np.ndarray, false_pos: np.ndarray, num_positive: int) -> PrCurve:
    """Cumulative TP/FP counts (D,) -> precision, recall and the 11-point interpolated AP."""
    recall = true_pos / num_positive
    precision = true_pos / np.maximum(true_pos + false_pos, np.finfo(np.float64).eps)
    interpolated = np.array([precision[recall >= t].max() if (recall >= t).any() else 0.0
                             for t in np.linspace(0, 1, 11)])
    return PrCurve(precision, recall, interpolated)


def voc07_ap(dataset, detections: list[dict], iou: float = 0.5) -> tuple[float, dict[str, float]]:
    """VOC2007 11-point mAP and per-class AP (classes with non-difficult ground truth only)."""
    return _voc_summary(voc_pr_curves(dataset, detections, iou), dataset.class_names)


def _voc_summary(curves: dict[int, PrCurve], class_names: list[str]) -> tuple[float, dict[str, float]]:
    per_class = {class_names[label]: curve.ap for label, curve in curves.items()}
    return _nanmean(per_class.values()), per_class


def confusion_matrix(dataset, detections: list[dict], num_classes: int, iou: float = 0.5,
                     score_thresh: float = 0.5) -> np.ndarray:
    """(C, C) int64 counts: rows GT class, columns predicted class, index 0 background.

    Per image, detections scoring >= `score_thresh` are taken by descending score and each matches
    the free GT box (any class) of highest IoU >= `iou`: a match counts at [gt, pred], no match at
    [0, pred] (false positive); GT left free count at [gt, 0] (missed). A match with a difficult
    GT is not counted, nor is a difficult GT left free.
    """
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    by_image = _by_image(detections)
    for image_id, sample in enumerate(dataset.samples):
        record = by_image.get(image_id, NO_DETECTIONS)
        scores = torch.as_tensor(record["scores"])
        keep = torch.nonzero(scores >= score_thresh).flatten()
        keep = keep[torch.argsort(scores[keep], descending=True, stable=True)]
        pred_boxes = torch.as_tensor(record["boxes"], dtype=torch.float64).reshape(-1, 4)[keep]
        pred_labels = torch.as_tensor(record["labels"])[keep].tolist()
        difficult = _difficult(sample)
        ious = box_iou(pred_boxes, sample.boxes.double())  # (D, G)
        free = torch.ones(len(sample.boxes), dtype=torch.bool)
        for pred_idx, pred_label in enumerate(pred_labels):
            candidate_ious = torch.where(free, ious[pred_idx], torch.full_like(ious[pred_idx], -1.0))
            if len(candidate_ious) and candidate_ious.max() >= iou:
                matched_gt_idx = int(candidate_ious.argmax())
                free[matched_gt_idx] = False
                if not difficult[matched_gt_idx]:
                    matrix[int(sample.labels[matched_gt_idx]), pred_label] += 1
            else:
                matrix[0, pred_label] += 1
        for gt_label in sample.labels[free & ~difficult].tolist():
            matrix[gt_label, 0] += 1
    return matrix


def run_detections(model, dataset, device, batch_size: int = 1, progress: bool = True) -> list[dict]:
    """The model's records for every dataset image (labels in the model's label space), on the CPU."""
    records = []
    with torch.inference_mode():
        for start in tqdm(range(0, len(dataset), batch_size), desc="detect", unit="batch", disable=not progress):
            image_ids = range(start, min(start + batch_size, len(dataset)))
            outputs = model([dataset[i][0].to(device) for i in image_ids])
            records += [{"image_id": i, **{k: out[k].cpu() for k in ("boxes", "scores", "labels")}}
                        for i, out in zip(image_ids, outputs, strict=True)]
    return records


def relabel(records: list[dict], model_names: list[str], dataset_names: list[str]) -> list[dict]:
    """Records with labels mapped from the model's class names to the dataset's, by name;
    detections of classes the dataset does not have are dropped (no GT could ever match them)."""
    if list(model_names) == list(dataset_names):
        return records
    mapping = dataset_labels(model_names, dataset_names)
    mapped = []
    for record in records:
        labels = mapping[record["labels"]]
        keep = labels > 0
        mapped.append({"image_id": record["image_id"], "boxes": record["boxes"][keep],
                       "scores": record["scores"][keep], "labels": labels[keep]})
    return mapped


def per_image_losses(model, dataset, device) -> list[dict]:
    """The four training losses of each image with the model in eval mode (no dropout, frozen BN
    statistics) and no gradients; sampling uses a generator seeded 0 afresh per image, so an
    image's losses do not depend on which images came before it. Adds "image": its path."""
    model.eval()
    losses = []
    with torch.no_grad():
        for index in range(len(dataset)):
            image, target = dataset[index]
            target = {"boxes": target["boxes"].to(device), "labels": target["labels"].to(device)}
            values = model([image.to(device)], [target], generator=torch.Generator().manual_seed(0))
            losses.append({name: float(values[name]) for name in LOSS_NAMES}
                          | {"image": dataset.samples[index].image_path})
    return losses


def evaluate(model, dataset, device="cpu", batch_size: int = 1, with_losses: bool = True, plots_dir=None,
             score_thresh: float = 0.5, progress: bool = True) -> EvalResult:
    """Every metric of `model` on `dataset` (which should apply no augmentation); with `plots_dir`,
    also a PR-curve PNG per class and a confusion-matrix PNG there. Model labels are matched to the
    dataset's by class name. progress: a tqdm bar on stderr (off in the GUI)."""
    records = relabel(run_detections(model, dataset, device, batch_size, progress), model.class_names,
                      dataset.class_names)
    coco = coco_metrics(coco_ground_truth(dataset), coco_detections(records), dataset.class_names)
    curves = voc_pr_curves(dataset, records)
    voc_map, per_class_voc = _voc_summary(curves, dataset.class_names)
    confusion = confusion_matrix(dataset, records, len(dataset.class_names), score_thresh=score_thresh)
    if plots_dir is not None:
        from frcnn_core.render import plots  # matplotlib is imported only when pictures are asked for

        plots.save_pr_curves(curves, dataset.class_names, plots_dir)
        plots.save_confusion_matrix(confusion, dataset.class_names, Path(plots_dir) / "confusion_matrix.png")
    return EvalResult(
        AP=coco["AP"], AP50=coco["AP50"], AP75=coco["AP75"], per_class_AP50=coco["per_class_AP50"],
        voc07_mAP=voc_map, images=len(dataset), per_class_voc07_AP=per_class_voc,
        per_image_losses=per_image_losses(model, dataset, device) if with_losses else None, confusion=confusion,
    )
