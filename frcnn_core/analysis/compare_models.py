"""Two models' detections compared box by box (before = a base model, after = its fine-tuned
version): each *after* detection is kept, changed class or gained; each *before* one with no after
box over it is lost. `compare_on_image` for one image's detections, `compare_detections` for the
records of `evaluate.run_detections` over a dataset.

Two models compare only on the classes both detect, matched by NAME (a model's label i means its
class_names[i]): `ClassOverlap` says which classes those are, or why there are none, and
`on_classes` puts both models' detections into the run's label space restricted to them. A
base model with an untrained detection head (an ImageNet backbone) detects no class at all yet.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torchvision.ops import box_iou

from frcnn_core.analysis.evaluate import relabel
from frcnn_core.vocabulary import COMPARABLE, NO_DETECTOR, NOT_COMPARABLE, SHARED_CLASSES


@dataclass(frozen=True)
class ClassOverlap:
    """The classes a base model and the model a run trains from it can be compared on, by name.

    base_classes: the classes the base model detects, background left out; () when its detection
    head is untrained (an ImageNet backbone or random weights: it detects nothing yet).
    run_classes: the classes the run trains, background left out.
    """

    base_classes: tuple[str, ...]
    run_classes: tuple[str, ...]

    @property
    def shared(self) -> tuple[str, ...]:
        """The classes both detect, in the run's order."""
        known = set(self.base_classes)
        return tuple(name for name in self.run_classes if name in known)

    @property
    def verdict(self) -> str:
        """COMPARABLE, SHARED_CLASSES, NOT_COMPARABLE or NO_DETECTOR."""
        if not self.base_classes:
            return NO_DETECTOR
        if not self.shared:
            return NOT_COMPARABLE
        return COMPARABLE if set(self.base_classes) == set(self.run_classes) else SHARED_CLASSES

    @property
    def comparable(self) -> bool:
        """Whether there are classes to compare on (COMPARABLE or SHARED_CLASSES)."""
        return bool(self.shared)

    def note(self) -> str:
        """The one line that says what a before/after comparison compares, e.g.
        'not comparable: the base model knows WBC, RBC, Platelets; this run trains raccoon'."""
        verdict = self.verdict
        if verdict == NO_DETECTOR:
            return ("before: no detector yet (the base model's detection head is untrained); "
                    "only the new model's own scores are shown")
        if verdict == NOT_COMPARABLE:
            return (f"not comparable: the base model knows {_names(self.base_classes)}; "
                    f"this run trains {_names(self.run_classes)}")
        if verdict == COMPARABLE:
            return f"compared on every class: {_names(self.shared)}"
        shared = set(self.shared)
        extra_base = [name for name in self.base_classes if name not in shared]
        extra_run = [name for name in self.run_classes if name not in shared]
        details = ([f"the base model also knows {_names(extra_base)}"] if extra_base else []) + \
                  ([f"this run also trains {_names(extra_run)}"] if extra_run else [])
        return f"compared on the shared classes only: {_names(self.shared)} ({'; '.join(details)})"


def _names(classes: Iterable[str]) -> str:
    return ", ".join(classes)


def on_classes(records: list[dict], model_names: list[str], run_names: list[str],
               classes: Iterable[str]) -> list[dict]:
    """Records (as `evaluate.run_detections` makes them) with labels mapped BY NAME from
    `model_names`, the class names of the model that made them, to `run_names`, the run's; the
    detections of classes outside `classes` are dropped. So a base model's and a fine-tuned
    model's detections meet in one label space, on the classes both know."""
    kept = set(classes)
    # a name outside `classes` becomes None, which no run class matches: relabel drops it
    return relabel(records, [name if name in kept else None for name in model_names], run_names)


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
        for entry, index in zip(changed_entries, best_before_idx.tolist(), strict=True):
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
                detections["scores"][mask].tolist(), strict=True)]
