"""Tests for frcnn_core.modeling.model: the one stage sequence that the inspector runs too."""
from __future__ import annotations

import pytest
import torch

import frcnn_core.modeling.model as model_module
from frcnn_core.inspect.inspection import Inspection
from frcnn_core.modeling.zoo import build_model

TARGET = {"boxes": torch.tensor([[20.0, 30.0, 120.0, 150.0]]), "labels": torch.tensor([1])}


@pytest.fixture
def model():
    """A small random model in eval mode; score_thresh 0 keeps every image's 100 detections."""
    torch.manual_seed(0)
    return build_model("mobilenet-v3-320-fpn", "none", score_thresh=0.0).eval()


@pytest.fixture
def image():
    return torch.rand(3, 200, 240, generator=torch.Generator().manual_seed(1))


# ---------------------------------------------------------------- one stage sequence


def _counted(monkeypatch, name: str) -> list:
    """Wrap the stage `name` as the model's sequence calls it; returns the list of its calls."""
    calls = []
    stage = getattr(model_module, name)
    monkeypatch.setattr(model_module, name, lambda *args, **kwargs: calls.append(name) or stage(*args, **kwargs))
    return calls


def test_forward_and_the_inspector_run_the_same_stage_sequence(model, image, monkeypatch):
    proposals, detections = _counted(monkeypatch, "propose"), _counted(monkeypatch, "postprocess")

    model([image])
    Inspection.run(model, image)

    assert len(proposals) == 2 and len(detections) == 2


def test_the_inspectors_training_trace_runs_the_models_training_stages(model, image, monkeypatch):
    inspection = Inspection.run(model, image)
    samples = _counted(monkeypatch, "roi_targets")

    inspection.training_trace_for(TARGET["boxes"], TARGET["labels"])
    model([image], [TARGET])

    assert len(samples) == 2
