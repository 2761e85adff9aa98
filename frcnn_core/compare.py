"""Two models' detections compared box by box (before = a base model, after = its fine-tuned
version): each *after* detection is kept, changed class or gained; each *before* one with no after
box over it is lost. `compare_on_image` for one image's detections, `compare_detections` for the
records of `evaluate.run_detections` over a dataset.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.ops import box_iou


@dataclass(frozen=True)
class Comparison:
    """Two models' detections (before, after) on a set of images, counting only scores >= the
    threshold. Each *after* detection is kept (a before box of its class at IoU >= iou), changed
    class (before boxes at IoU >= iou, none of its class) or gained (no before box at IoU >= iou);
    a *before* detection with no after box at IoU >= iou is lost. Matching is not one-to-one: two
    after boxes on one before box are both kept.

    per_image: one dict per image, {"image": the record's "image" or else its "image_id" (for
    `compare_on_image`, its `image` argument), "gained": [...], "lost": [...], "changed": [...]}, each
    detection {"box": [x1, y1, x2, y2], "label": int, "score": float}; a changed one adds the
    best-overlapping before box's "before_label" and "before_score".
    """

    gained: int
    lost: int
    changed_class: int
    kept: int
    per_image: list[dict]


def compare_on_image(before_detections: dict, after_detections: dict, iou: float = 0.5, score_thresh: float = 0.5,
                     image: str | int | None = None) -> Comparison:
    """Compare one image's detections: dicts of boxes (D, 4), labels (D,), scores (D,) as the
    model returns them; `image` names the image in `per_image`."""
    before, after = _confident(before_detections, score_thresh), _confident(after_detections, score_thresh)
    ious = box_iou(after["boxes"], before["boxes"])  # (D_after, D_before)
    overlaps = ious >= iou
    same_class = after["labels"][:, None] == before["labels"][None, :]
    kept = (overlaps & same_class).any(dim=1)
    gained = ~overlaps.any(dim=1)
    changed = ~kept & ~gained
    lost = ~overlaps.any(dim=0)
    changed_entries = _listing(after, changed)
    if changed.any():
        best_before_idx = ious[changed].argmax(dim=1)  # every overlapping before box has another class
        for entry, index in zip(changed_entries, best_before_idx.tolist()):
            entry.update(before_label=int(before["labels"][index]), before_score=float(before["scores"][index]))
    entry = {"image": image, "gained": _listing(after, gained), "lost": _listing(before, lost),
             "changed": changed_entries}
    return Comparison(int(gained.sum()), int(lost.sum()), int(changed.sum()), int(kept.sum()), [entry])


def compare_detections(before: list[dict], after: list[dict], iou: float = 0.5,
                       score_thresh: float = 0.5) -> Comparison:
    """Compare records of `evaluate.run_detections` image by image (paired by "image_id"; an
    image missing on one side has no detections there) and add the counts up."""
    before_by_id = {record["image_id"]: record for record in before}
    after_by_id = {record["image_id"]: record for record in after}
    comparisons = []
    for image_id in sorted(before_by_id.keys() | after_by_id.keys()):
        first, second = before_by_id.get(image_id, {}), after_by_id.get(image_id, {})
        image = second.get("image", first.get("image", image_id))
        comparisons.append(compare_on_image(first, second, iou, score_thresh, image=image))
    return Comparison(sum(c.gained for c in comparisons), sum(c.lost for c in comparisons),
                      sum(c.changed_class for c in comparisons), sum(c.kept for c in comparisons),
                      [entry for c in comparisons for entry in c.per_image])


def _confident(detections: dict, score_thresh: float) -> dict[str, torch.Tensor]:
    """boxes float64 (D, 4), labels int64 (D,), scores (D,) of the detections scoring >= score_thresh."""
    scores = torch.as_tensor(detections.get("scores", []), dtype=torch.float64).cpu().reshape(-1)
    keep = scores >= score_thresh
    boxes = torch.as_tensor(detections.get("boxes", []), dtype=torch.float64).cpu().reshape(-1, 4)
    labels = torch.as_tensor(detections.get("labels", []), dtype=torch.int64).cpu().reshape(-1)
    return {"boxes": boxes[keep], "labels": labels[keep], "scores": scores[keep]}


def _listing(detections: dict[str, torch.Tensor], mask: torch.Tensor) -> list[dict]:
    return [{"box": box, "label": label, "score": score} for box, label, score in
            zip(detections["boxes"][mask].tolist(), detections["labels"][mask].tolist(),
                detections["scores"][mask].tolist())]
