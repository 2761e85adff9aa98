"""Tests for frcnn_core.modeling.model: what `forward` hands back (graph-free detections unless the
caller keeps the graph), the bounded anchor cache, AMP, and the one stage sequence that the
inspector runs too."""
from __future__ import annotations

import pytest
import torch

import frcnn_core.modeling.model as model_module
from frcnn_core.inspect.inspection import Inspection
from frcnn_core.modeling.model import ANCHOR_CACHE_SIZE
from frcnn_core.modeling.zoo import build_model

TARGET = {"boxes": torch.tensor([[20.0, 30.0, 120.0, 150.0]]), "labels": torch.tensor([1])}


def layouts(count: int) -> list[tuple[list[tuple[int, int]], tuple[int, int]]]:
    """`count` different (grid sizes of the model's three levels, padded input size) layouts."""
    return [([(10 + i, 12), (5 + i, 6), (3 + i, 3)], (160 + 16 * i, 192)) for i in range(count)]


@pytest.fixture
def model():
    """A small random model in eval mode; score_thresh 0 keeps every image's 100 detections."""
    torch.manual_seed(0)
    return build_model("mobilenet-v3-320-fpn", "none", score_thresh=0.0).eval()


@pytest.fixture
def image():
    return torch.rand(3, 200, 240, generator=torch.Generator().manual_seed(1))


# ---------------------------------------------------------------- what detections carry


def test_detections_are_graph_free_plain_tensors_by_default(model, image):
    (detections,) = model([image])

    assert len(detections["scores"]) > 0
    for value in detections.values():
        assert not value.requires_grad and value.grad_fn is None
        assert not torch.is_inference(value)  # usable anywhere, autograd included


def test_a_detection_score_reaches_the_backbone_when_the_caller_keeps_the_graph(model, image):
    (detections,) = model([image], keep_graph=True)

    detections["scores"][0].backward()

    backbone_grads = [p.grad for p in model.backbone.parameters() if p.grad is not None]
    assert backbone_grads and any(bool(grad.abs().sum() > 0) for grad in backbone_grads)
    assert detections["boxes"].requires_grad  # the box head's deltas move the boxes


def test_the_callers_inference_mode_still_gives_the_same_detections(model, image):
    (plain,) = model([image])
    with torch.inference_mode():
        (fast,) = model([image])

    for key in ("boxes", "scores", "labels"):
        assert torch.equal(plain[key], fast[key]), key


# ---------------------------------------------------------------- the anchor cache


def test_the_anchor_cache_keeps_only_the_latest_layouts(model):
    made = layouts(ANCHOR_CACHE_SIZE + 3)
    first = model.anchors_for(*made[0], "cpu")
    for grid_sizes, padded_size in made[1:]:
        model.anchors_for(grid_sizes, padded_size, "cpu")

    assert len(model._anchor_cache) == ANCHOR_CACHE_SIZE
    assert model.anchors_for(*made[-1], "cpu") is model.anchors_for(*made[-1], "cpu")
    assert model.anchors_for(*made[0], "cpu") is not first  # evicted, made again
    assert torch.equal(model.anchors_for(*made[0], "cpu").boxes, first.boxes)


def test_the_anchor_cache_recalls_the_layout_used_last(model):
    made = layouts(ANCHOR_CACHE_SIZE + 1)
    kept = model.anchors_for(*made[0], "cpu")
    for grid_sizes, padded_size in made[1:-1]:
        model.anchors_for(grid_sizes, padded_size, "cpu")
    model.anchors_for(*made[0], "cpu")  # used again: now the most recent
    model.anchors_for(*made[-1], "cpu")  # one more evicts the least recent, made[1]

    assert model.anchors_for(*made[0], "cpu") is kept
    assert len(model._anchor_cache) == ANCHOR_CACHE_SIZE


def test_anchors_cached_under_inference_mode_never_reach_training_as_inference_tensors(model, image):
    with torch.inference_mode():
        model([image])  # caches this image's anchor layout inside inference mode
    model.train()

    losses = model([image], [TARGET])
    sum(losses.values()).backward()

    cached = list(model._anchor_cache.values())
    assert cached and not any(torch.is_inference(anchors.boxes) or torch.is_inference(anchors.level)
                              for anchors in cached)


# ---------------------------------------------------------------- AMP


def test_detection_boxes_are_float32_under_bfloat16_autocast(model, image):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        (detections,) = model([image])

    assert detections["boxes"].dtype == torch.float32 and len(detections["boxes"]) > 0


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
    scored = []
    model.roi_heads["box_head"].register_forward_hook(lambda *_: scored.append(1))

    inspection.training_trace_for(TARGET["boxes"], TARGET["labels"])
    assert len(samples) == 1 and scored == []  # up to RoI pooling: the trace shows no scores
    model([image], [TARGET])

    assert len(samples) == 2 and scored == [1]
