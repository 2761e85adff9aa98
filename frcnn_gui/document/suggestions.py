"""Model suggestions (Qt-free): which detections may become ground-truth boxes, and the review
queue that walks them one at a time, as CVAT and Label Studio review pre-annotations.

Shapes: boxes (N, 4) float64, x1 y1 x2 y2 in image pixels. A *suggestion* is a detection with
the box it would be accepted as: rounded to whole pixels (VOC files hold integers; halves go up)
and clipped to the image. The rule that every way of accepting shares (plan_accept): a suggestion
is skipped when a ground-truth box of its class already covers it (IoU >= SAME_BOX_IOU), when a
better-scored suggestion of its class covers it, when it was decided in review on this image
(rejected, or accepted as another class), or when nothing of it lies inside the image. So accepting never stacks a
box on a box of the same class.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from frcnn_gui.document.boxes import Box, Detection, fit_box

SAME_BOX_IOU = 0.7  # at or above this IoU two boxes of one class are the same object
SKIP_REASONS = {  # why a suggestion was not accepted, as the status bar says it
    "over_gt": f"already a GT box of that class (IoU ≥ {SAME_BOX_IOU:g})",
    "duplicate": f"duplicates of a better detection (IoU ≥ {SAME_BOX_IOU:g})",
    "rejected": "rejected in review",
    "outside": "no area inside the image",
}


def box_iou(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """(N, 4), (M, 4) boxes with positive areas -> (N, M) intersection over union, as
    torchvision.ops.box_iou computes it (continuous coordinates, no +1)."""
    boxes, others = np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(others, np.float64).reshape(-1, 4)
    top_left = np.maximum(boxes[:, None, :2], others[None, :, :2])  # (N, M, 2)
    bottom_right = np.minimum(boxes[:, None, 2:], others[None, :, 2:])
    intersection = np.clip(bottom_right - top_left, 0, None).prod(axis=2)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    other_areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return intersection / (areas[:, None] + other_areas[None, :] - intersection)


def whole_pixel_box(detection: Detection, width: int, height: int) -> Box:
    """The box `detection` is accepted as: corners rounded half up, clipped to the image
    (ValueError when nothing of it is inside or a corner is not finite, see fit_box)."""
    rounded = (math.floor(value + 0.5) if math.isfinite(value) else value for value in detection.box)
    return fit_box(Box(*rounded, detection.label), width, height)


@dataclass(frozen=True)
class Suggestion:
    """A detection and the ground-truth box it would become."""

    detection: Detection
    box: Box


@dataclass
class AcceptPlan:
    """What accepting some detections does: `suggestions` (best first) become boxes; `skipped`
    counts the others by SKIP_REASONS key."""

    suggestions: list[Suggestion]
    skipped: Counter = field(default_factory=Counter)

    @property
    def boxes(self) -> list[Box]:
        return [suggestion.box for suggestion in self.suggestions]

    def summary(self) -> str:
        """One line: "accepted 3 boxes; 15 skipped: already a GT box of that class (IoU ≥ 0.7)";
        with several reasons each gets its count ("17 skipped: 15 already …, 2 rejected in review")."""
        count = len(self.suggestions)
        line = f"accepted {count} box{'' if count == 1 else 'es'}" if count else "nothing accepted"
        reasons = [(text, self.skipped[key]) for key, text in SKIP_REASONS.items() if self.skipped[key]]
        if len(reasons) == 1:
            line += f"; {reasons[0][1]} skipped: {reasons[0][0]}"
        elif reasons:
            line += f"; {sum(self.skipped.values())} skipped: " + ", ".join(f"{n} {text}" for text, n in reasons)
        return line


def plan_accept(detections: Iterable[Detection], ground_truth: Iterable[Box], image_size: tuple[int, int],
                rejected: Collection[Box] = (), iou_threshold: float = SAME_BOX_IOU) -> AcceptPlan:
    """Which of `detections` to add to `ground_truth` (see the module doc). The best score wins
    among duplicates; equal scores keep the given order. Suggestions come out best first."""
    plan = AcceptPlan([])
    candidates: list[Suggestion] = []
    for detection in sorted(detections, key=lambda found: -found.score):
        try:
            candidates.append(Suggestion(detection, whole_pixel_box(detection, *image_size)))
        except ValueError:
            plan.skipped["outside"] += 1
    ground_truth = list(ground_truth)
    coords = np.array([candidate.box.coords for candidate in candidates]).reshape(-1, 4)
    over_gt = box_iou(coords, np.array([box.coords for box in ground_truth]).reshape(-1, 4))  # (N, G)
    over_gt[np.array([c.box.label for c in candidates])[:, None] != np.array([b.label for b in ground_truth])] = 0
    among = box_iou(coords, coords)  # (N, N)
    kept_by_label: dict[str, list[int]] = {}
    for index, candidate in enumerate(candidates):
        kept = kept_by_label.setdefault(candidate.box.label, [])
        if over_gt.shape[1] and over_gt[index].max() >= iou_threshold:
            plan.skipped["over_gt"] += 1
        elif candidate.box in rejected:
            plan.skipped["rejected"] += 1
        elif kept and among[index, kept].max() >= iou_threshold:
            plan.skipped["duplicate"] += 1
        else:
            kept.append(index)
            plan.suggestions.append(candidate)
    return plan


class Rejections:
    """Suggestions decided in review, per image: rejected, or accepted (perhaps as another
    class). Such a box is not suggested on its image again until the decision is undone (an
    accepted one is a GT box of its class anyway). `on_change()` is called after every change."""

    def __init__(self, on_change: Callable[[], None] = lambda: None):
        self.on_change = on_change
        self._by_image: dict[Path, frozenset[Box]] = {}

    def of(self, image: Path | None) -> frozenset[Box]:
        return self._by_image.get(image, frozenset())

    def add(self, image: Path, box: Box) -> None:
        self._by_image[image] = self.of(image) | {box}
        self.on_change()

    def discard(self, image: Path, box: Box) -> None:
        self._by_image[image] = self.of(image) - {box}
        self.on_change()


class ReviewQueue:
    """The suggestions of the current image, best first, and the one under review.

    position: the index under review; it stays put when the list changes, so that after an
    accept or a reject the next suggestion moves into it, and after undoing that decision the
    restored suggestion is current again. label: the class the current suggestion will be
    accepted as (its own until chosen; forgotten when another suggestion becomes current).
    """

    def __init__(self):
        self.suggestions: list[Suggestion] = []
        self.position = 0
        self._chosen_label: str | None = None

    @property
    def current(self) -> Suggestion | None:
        return self.suggestions[self.position] if self.suggestions else None

    @property
    def label(self) -> str | None:
        current = self.current
        return None if current is None else self._chosen_label or current.box.label

    def update(self, suggestions: Sequence[Suggestion], restart: bool = False) -> None:
        """New suggestions (the image, its boxes or the threshold changed); restart: from the best."""
        before = self.current
        self.suggestions = list(suggestions)
        self.position = 0 if restart else min(self.position, max(len(self.suggestions) - 1, 0))
        if self.current != before:
            self._chosen_label = None

    def step(self, delta: int) -> None:
        """Move by `delta` suggestions, round the ends (Tab / Shift+Tab)."""
        if self.suggestions:
            self.go_to((self.position + delta) % len(self.suggestions))

    def go_to(self, index: int) -> None:
        if 0 <= index < len(self.suggestions) and index != self.position:
            self.position, self._chosen_label = index, None

    def choose_label(self, label: str) -> None:
        if self.current is not None:
            self._chosen_label = label

    def decision(self) -> Detection | None:
        """The current suggestion's detection with the chosen class: what accepting adds."""
        current = self.current
        return None if current is None else replace(current.detection, label=self.label)
