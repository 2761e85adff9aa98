"""What the fine-tuning runner sends to the UI: plain data and detached CPU tensors only, so
nothing the training thread still uses is ever shared with the UI thread."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the window imports this module before the engine has imported torch
    import torch

    from frcnn_core.analysis.compare_models import ClassOverlap, Comparison
    from frcnn_core.training.train import Progress


@dataclass(frozen=True)
class PreviewDetections:
    """The model under training on the preview image, at `iteration`.

    boxes: (D, 4) float32 x1 y1 x2 y2 in original-image pixels; labels: (D,) int64 into
    `class_names` (0 = background, never present); scores: (D,) float32, best first."""

    iteration: int
    image_path: str
    boxes: torch.Tensor
    labels: torch.Tensor
    scores: torch.Tensor
    class_names: list[str]


@dataclass(frozen=True)
class ImageComparison:
    """The base model (before) and a run's checkpoint (after) on one image, on the classes both know.

    before, after: {"boxes": (D, 4) float32, "labels": (D,) int64, "scores": (D,) float32} in
    original-image pixels, labels into `class_names` (the plan's), only the classes of
    `overlap.shared` kept; comparison: `compare_on_image(before, after)` (scores >= 0.5,
    IoU >= 0.5). When `overlap` is not comparable, before, after and comparison are None."""

    image_path: str
    run_dir: Path
    before: dict[str, torch.Tensor] | None
    after: dict[str, torch.Tensor] | None
    class_names: list[str]
    comparison: Comparison | None
    overlap: ClassOverlap


@dataclass(frozen=True)
class FinetuneResult:
    """How a run ended. `final.event` is "done", "cancelled" or "stopped" (its message says why).
    After "done": `metrics` is score_run's dict and `comparison` the base model's detections
    against the fine-tuned model's over the validation split (None when the two models share no
    class); otherwise both are None.
    `seconds_per_iteration`: the median over this session's iterations after the first few, or
    None when there were too few; `device` the device it trained on ("cpu", "cuda")."""

    final: Progress
    run_dir: Path
    metrics: dict | None
    comparison: Comparison | None
    seconds_per_iteration: float | None
    device: str
