"""The `tidecv` package as an oracle for our TIDE numbers (frcnn_core.analysis.tide), the way
pycocotools is the oracle for AP: the same images fed to both, every value compared.

An image is (pred_boxes (D, 4), pred_scores (D,), pred_labels (D,), gt_boxes (G, 4), gt_labels (G,),
gt_ignore (G,) bool); boxes x1 y1 x2 y2, which tidecv takes as x, y, w, h.
"""
from __future__ import annotations

import numpy as np
from tidecv import TIDE, Data

from frcnn_core.analysis.tide import MAIN_ERRORS, SPECIAL_ERRORS, TideSummary

TOLERANCE = 0.5  # AP points: the bar for agreeing with the oracle


def _xywh(box) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


def tidecv_numbers(images: list[tuple]) -> dict:
    """{"AP50", "main": {type: dAP}, "special": {type: dAP}} as tidecv computes them (box mode,
    foreground IoU 0.5, background 0.1); every image is registered, with or without boxes."""
    gt, predictions = Data("gt"), Data("predictions")
    for image_id, (pred_boxes, pred_scores, pred_labels, gt_boxes, gt_labels, gt_ignore) in enumerate(images):
        gt.add_image(image_id, str(image_id))
        for box, label, ignore in zip(np.asarray(gt_boxes).reshape(-1, 4), np.asarray(gt_labels),
                                      np.asarray(gt_ignore), strict=True):
            add = gt.add_ignore_region if ignore else gt.add_ground_truth
            add(image_id, int(label), _xywh(box))
        for box, score, label in zip(np.asarray(pred_boxes).reshape(-1, 4), np.asarray(pred_scores),
                                     np.asarray(pred_labels), strict=True):
            predictions.add_detection(image_id, int(label), float(score), _xywh(box))
    tide = TIDE(pos_threshold=0.5, background_threshold=0.1)
    run = tide.evaluate(gt, predictions, mode=TIDE.BOX)
    return {"AP50": run.ap, "main": tide.get_main_errors()["predictions"],
            "special": tide.get_special_errors()["predictions"]}


def differences(ours: TideSummary, theirs: dict) -> dict[str, float]:
    """|ours - tidecv| per value, named "AP50", "Cls", ..., "FalseNeg"."""
    gaps = {"AP50": abs(ours.ap50 - theirs["AP50"])}
    gaps |= {kind: abs(ours.main[kind] - theirs["main"][kind]) for kind in MAIN_ERRORS}
    gaps |= {kind: abs(ours.special[kind] - theirs["special"][kind]) for kind in SPECIAL_ERRORS}
    return gaps
