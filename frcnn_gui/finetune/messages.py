"""What the fine-tuning runner sends to the UI: plain data and detached CPU tensors only, so
nothing the training thread still uses is ever shared with the UI thread."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the window imports this module before the engine has imported torch
    import torch

    from frcnn_core.train import Progress


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
    """The starting model (before) and a run's checkpoint (after) on one image.

    before, after: {"boxes": (D, 4) float32, "labels": (D,) int64, "scores": (D,) float32} in
    original-image pixels, labels into `class_names` (the plan's: the same for both models);
    comparison: `compare_on_image(before, after)` (scores >= 0.5, IoU >= 0.5)."""

    image_path: str
    run_dir: Path
    before: dict[str, torch.Tensor]
    after: dict[str, torch.Tensor]
    class_names: list[str]
    comparison: object


@dataclass(frozen=True)
class FinetuneResult:
    """How a run ended. `final.event` is "done", "cancelled" or "stopped" (its message says why).
    After "done": `metrics` is evaluate_run's dict and `comparison` the base model's detections
    against the fine-tuned model's over the validation split; otherwise both are None.
    `seconds_per_iteration`: the median over this session's iterations after the first few, or
    None when there were too few; `device` the device it trained on ("cpu", "cuda")."""

    final: Progress
    run_dir: Path
    metrics: dict | None
    comparison: object | None
    seconds_per_iteration: float | None
    device: str
