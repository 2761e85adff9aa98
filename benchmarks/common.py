"""What the benchmarks share: the calibrated weights file, the photos, output comparison, timing.

COCO weights cannot be downloaded here, so every benchmark uses the same stand-in: torchvision's
`fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None)` built after `torch.manual_seed(0)`,
whose BatchNorm running statistics are reset and then set by ONE train-mode forward pass over a
real photo (momentum=None: a cumulative average, i.e. exactly that batch's statistics). Without
that, random weights and unit BatchNorm statistics give degenerate scores. With weights=None
torchvision builds trainable `BatchNorm2d` (COCO weights would give `FrozenBatchNorm2d`); both
models then run that BatchNorm2d in eval mode.
"""
from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models.detection import fasterrcnn_resnet50_fpn

from frcnn_core.io.atomic import write_bytes_atomic
from frcnn_core.io.images import load_image
from frcnn_core.modeling.zoo import build_model

SAMPLES_DIR = Path(os.environ.get("FRCNN_SAMPLES", Path(__file__).resolve().parents[1].parent / "shared" / "samples"))
BENCH_PHOTO = "astronaut.png"  # 512x512: both models resize it to 800x800
CALIBRATION_PHOTO = "coffee.png"
BOX_TOLERANCE_PX = 1e-3
SCORE_TOLERANCE = 1e-4


def load_photo(name: str, samples_dir: Path = SAMPLES_DIR) -> Tensor:
    """(3, H, W) float32 in [0, 1] of a sample photo, read with our image loader."""
    return load_image(samples_dir / name).tensor


def calibrated_torchvision(device: str = "cpu", samples_dir: Path = SAMPLES_DIR) -> nn.Module:
    """torchvision's resnet50-fpn with seeded random weights and real BatchNorm statistics, in eval mode."""
    torch.manual_seed(0)
    model = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None).to(device)
    for layer in model.modules():
        if isinstance(layer, nn.BatchNorm2d):
            layer.reset_running_stats()
            layer.momentum = None  # cumulative average: after one batch, that batch's statistics
    photo = load_photo(CALIBRATION_PHOTO, samples_dir).to(device)
    height, width = photo.shape[1:]
    dummy_target = {
        "boxes": torch.tensor([[width * 0.25, height * 0.25, width * 0.75, height * 0.75]], device=device),
        "labels": torch.tensor([1], device=device),
    }
    model.train()
    with torch.no_grad():
        model([photo], [dummy_target])
    return model.eval()


def norm_layer_name(model: nn.Module) -> str:
    """The class name of the backbone's first norm layer (BatchNorm2d or FrozenBatchNorm2d)."""
    return type(model.backbone.body.bn1).__name__


def write_weights_file(model: nn.Module, directory: str) -> str:
    """torch.save the model's state_dict (on the CPU) into `directory`; returns the path."""
    path = os.path.join(directory, "resnet50_fpn_calibrated.pth")
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, path)
    return path


def make_weights_file(directory: str, device: str = "cpu", samples_dir: Path = SAMPLES_DIR) -> tuple[str, str]:
    """Calibrate (see module docstring) and save; returns (path, norm layer class name)."""
    model = calibrated_torchvision(device, samples_dir)
    return write_weights_file(model, directory), norm_layer_name(model)


def torchvision_from_file(path: str, device: str = "cpu") -> nn.Module:
    """torchvision's resnet50-fpn (BatchNorm2d, as with weights=None) loaded from a state_dict file."""
    model = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.to(device).eval()


def ours_from_file(path: str, device: str = "cpu") -> nn.Module:
    """Our resnet50-fpn from the same file, torchvision's score threshold (0.05)."""
    return build_model("resnet50-fpn", path, score_thresh=0.05).to(device)


@dataclass(frozen=True)
class Comparison:
    """How two lists of detections (one dict per image) differ."""

    equal: bool
    counts: tuple[list[int], list[int]]
    max_box_diff_px: float
    max_score_diff: float
    reason: str

    def summary(self) -> str:
        counts = f"{sum(self.counts[0])} vs {sum(self.counts[1])} detections"
        if not self.equal:
            sizes = "" if self.max_box_diff_px != self.max_box_diff_px else (
                f", largest box difference {self.max_box_diff_px:.1e} px, score {self.max_score_diff:.1e}")
            return f"no: {self.reason} ({counts}{sizes})"
        return (f"yes: {counts}, largest box difference {self.max_box_diff_px:.1e} px, "
                f"largest score difference {self.max_score_diff:.1e}")


def compare_detections(ours: list[dict], theirs: list[dict]) -> Comparison:
    """Equal when, image by image, counts and labels match, boxes within BOX_TOLERANCE_PX and
    scores within SCORE_TOLERANCE (detections in the order each model returns them)."""
    counts = ([len(d["scores"]) for d in ours], [len(d["scores"]) for d in theirs])
    box_diff = score_diff = 0.0
    for index, (mine, other) in enumerate(zip(ours, theirs, strict=True)):
        if len(mine["scores"]) != len(other["scores"]):
            return Comparison(False, counts, float("nan"), float("nan"), f"image {index}: counts differ")
        if not torch.equal(mine["labels"].cpu(), other["labels"].cpu()):
            differing = int((mine["labels"].cpu() != other["labels"].cpu()).sum())
            return Comparison(False, counts, float("nan"), float("nan"),
                              f"image {index}: labels differ at {differing} of {len(mine['labels'])} ranks "
                              "(near-tied scores swapped order)")
        if len(mine["scores"]):
            box_diff = max(box_diff, (mine["boxes"] - other["boxes"]).abs().max().item())
            score_diff = max(score_diff, (mine["scores"] - other["scores"]).abs().max().item())
    equal = box_diff <= BOX_TOLERANCE_PX and score_diff <= SCORE_TOLERANCE
    reason = "" if equal else "boxes or scores beyond tolerance"
    return Comparison(equal, counts, box_diff, score_diff, reason)


def interleaved_timings(runs: dict[str, Callable[[], object]], repeats: int, warmup: int = 1,
                        sync: Callable[[], None] = lambda: None) -> tuple[dict[str, list[float]], dict[str, object]]:
    """Wall times in seconds of each callable, `repeats` times after `warmup` untimed calls, taking
    turns round by round so that load from other processes hits all of them alike.

    Returns (times per name, the last result per name).
    """
    results = {name: None for name in runs}
    times = {name: [] for name in runs}
    for round_index in range(warmup + repeats):
        for name, run in runs.items():
            sync()
            start = time.perf_counter()
            results[name] = run()
            sync()
            if round_index >= warmup:
                times[name].append(time.perf_counter() - start)
    return times, results


def summary(times: list[float], unit: float = 1.0) -> dict:
    """{"median", "min", "n"} of `times`, multiplied by `unit` (1000 for milliseconds)."""
    return {"median": statistics.median(times) * unit, "min": min(times) * unit, "n": len(times)}


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` atomically (the project's one atomic-write helper)."""
    write_bytes_atomic(path, text.encode("utf-8"))


def cpu_model() -> str:
    """lscpu's model name, else platform.processor(), else 'unknown'."""
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        lines = []
    for line in lines:
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"
