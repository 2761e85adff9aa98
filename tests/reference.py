"""Seeded random torchvision detectors with real batch-norm statistics, as equivalence oracles.

Random init makes MobileNetV3's activations vanish and its scores tie, so each reference first
runs one train-mode pass on another real photo with the norm layers' running statistics reset
(cumulative averaging), then switches to eval: it then gives 100 detections with distinct scores.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torchvision.models import detection

from frcnn_core.io.images import load_image

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "samples"
PHOTO = SAMPLES / "chelsea.png"
WARMUP_PHOTO = SAMPLES / "coffee.png"

BUILDERS = {
    "resnet50-fpn": detection.fasterrcnn_resnet50_fpn,
    "resnet50-fpn-v2": detection.fasterrcnn_resnet50_fpn_v2,
    "mobilenet-v3-fpn": detection.fasterrcnn_mobilenet_v3_large_fpn,
    "mobilenet-v3-320-fpn": detection.fasterrcnn_mobilenet_v3_large_320_fpn,
}


def reference_model(name: str, seed: int = 0) -> torch.nn.Module:
    """torchvision's detector for `name`, seeded random weights, real norm statistics, eval mode,
    keeping every detection (score threshold 0)."""
    torch.manual_seed(seed)
    model = BUILDERS[name](weights=None, weights_backbone=None, box_score_thresh=0.0)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None
    model.train()
    warmup = load_image(WARMUP_PHOTO).tensor
    target = {"boxes": torch.tensor([[40.0, 40.0, 200.0, 220.0]]), "labels": torch.tensor([1])}
    with torch.no_grad():
        model([warmup], [target])
    return model.eval()


def save_reference(name: str, folder: Path) -> tuple[torch.nn.Module, Path]:
    model = reference_model(name)
    path = folder / f"{name}.pt"
    torch.save(model.state_dict(), path)
    return model, path
