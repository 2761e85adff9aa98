"""Tests for frcnn_core.modeling.roi_pool: the FPN level rule, and equality with torchvision's poolers."""
from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict

import pytest
import torch
from torchvision.ops import MultiScaleRoIAlign, roi_align, roi_pool

import frcnn_core.modeling.roi_pool as roi_pool_module
from frcnn_core.modeling.roi_pool import (
    fpn_levels,
    infer_scale,
    multiscale_roi_align,
    single_level_roi_pool,
    to_roi_format,
)


def _square(side: float) -> list[float]:
    return [10.0, 10.0, 10.0 + side, 10.0 + side]


def test_fpn_levels_hand_case():
    # k = floor(4 + log2(side / 224)), clamped to [2, 5], returned as k - 2
    boxes = torch.tensor(
        [
            _square(224),  # k = 4 -> 2
            _square(112),  # k = 3 -> 1
            _square(448),  # k = 5 -> 3
            _square(223),  # log2(223 / 224) < 0 -> k = 3 -> 1
            _square(10),  # k = floor(-0.49) = -1, clamped to 2 -> 0
            _square(2000),  # k = floor(7.16) = 7, clamped to 5 -> 3
        ]
    )

    assert fpn_levels(boxes, k_min=2, k_max=5).tolist() == [2, 1, 3, 1, 0, 3]


def test_infer_scale_is_the_nearest_power_of_two():
    assert infer_scale((200, 304), (800, 1216)) == 0.25
    assert infer_scale((13, 19), (800, 1216)) == 1 / 64  # 13 / 800 = 1 / 61.5


def test_to_roi_format_prefixes_the_image_index():
    rois = [torch.tensor([[1.0, 2.0, 3.0, 4.0]]), torch.zeros(0, 4), torch.tensor([[5.0, 6.0, 7.0, 8.0]])]

    assert to_roi_format(rois).tolist() == [[0, 1, 2, 3, 4], [2, 5, 6, 7, 8]]


def _random_rois(count: int, generator: torch.Generator, height: int, width: int) -> torch.Tensor:
    # sides from 4 to about the image size, so that every FPN level gets some RoIs
    side = torch.exp(torch.rand(count, 1, generator=generator) * 4.6) * 4
    corner = torch.rand(count, 2, generator=generator) * torch.tensor([width, height]) * 0.7
    boxes = torch.cat([corner, corner + side * torch.tensor([1.0, 0.8])], dim=1)
    return boxes.clamp(max=torch.tensor([width, height, width, height]))


def test_multiscale_roi_align_equals_torchvision_on_four_levels_and_two_images():
    generator = torch.Generator().manual_seed(0)
    image_sizes = [(512, 448), (480, 512)]
    # padded to 512 x 512; strides 4, 8, 16, 32
    features = [torch.randn(2, 3, 512 // s, 512 // s, generator=generator) for s in (4, 8, 16, 32)]
    # plus one whole-image RoI each: sqrt(448 * 512) = 479 >= 448 sends it to the coarsest level
    rois = [
        torch.cat([_random_rois(40, generator, 512, 448), torch.tensor([[0.0, 0.0, 448.0, 512.0]])]),
        torch.cat([_random_rois(30, generator, 480, 512), torch.tensor([[0.0, 0.0, 512.0, 480.0]])]),
    ]
    reference = MultiScaleRoIAlign(["0", "1", "2", "3"], output_size=7, sampling_ratio=2)

    pooled, level = multiscale_roi_align(features, rois, image_sizes, output_size=7, sampling_ratio=2)
    expected = reference(OrderedDict((str(i), f) for i, f in enumerate(features)), rois, image_sizes)

    assert pooled.shape == (72, 3, 7, 7)
    assert set(level.tolist()) == {0, 1, 2, 3}
    assert torch.equal(pooled, expected)


def test_multiscale_roi_align_with_one_level_uses_it_for_every_roi():
    generator = torch.Generator().manual_seed(1)
    features = [torch.randn(1, 2, 32, 32, generator=generator)]
    rois = [_random_rois(10, generator, 128, 128)]
    reference = MultiScaleRoIAlign(["0"], output_size=5, sampling_ratio=0)

    pooled, level = multiscale_roi_align(features, rois, [(128, 128)], output_size=5, sampling_ratio=0)

    assert level.tolist() == [0] * 10
    assert torch.equal(pooled, reference({"0": features[0]}, rois, [(128, 128)]))


@pytest.mark.parametrize("counts", [(5, 3), (0, 4)])
def test_single_level_roi_pool_shape_and_torchvision_equality(counts):
    generator = torch.Generator().manual_seed(2)
    feature = torch.randn(2, 6, 25, 25, generator=generator)  # a stride-16 map of a 400 x 400 input
    rois = [_random_rois(count, generator, 400, 400) for count in counts]

    pooled, level = single_level_roi_pool(feature, rois, 1 / 16, 7)

    assert pooled.shape == (sum(counts), 6, 7, 7)
    assert level.tolist() == [0] * sum(counts)
    assert torch.equal(pooled, roi_pool(feature, to_roi_format(rois), 7, 1 / 16))


def _large_batch(dtype=torch.float32, requires_grad=False):
    """One 8-channel stride-8 feature map of two 320x480 images and 150 RoIs on each (enough to
    split over two threads)."""
    generator = torch.Generator().manual_seed(3)
    feature = torch.randn(2, 8, 40, 60, generator=generator).to(dtype).requires_grad_(requires_grad)
    rois = []
    for _ in range(2):
        corners = torch.rand(150, 2, generator=generator) * 300
        rois.append(torch.cat([corners, corners + torch.rand(150, 2, generator=generator) * 150 + 4], dim=1))
    return feature, rois


def test_roi_align_of_a_large_batch_is_torchvisions_and_differentiable():
    feature, rois = _large_batch(requires_grad=True)

    pooled, _ = multiscale_roi_align([feature], rois, [(320, 480)] * 2, output_size=7, sampling_ratio=2)

    expected = roi_align(feature, to_roi_format(rois), 7, 0.125, 2)
    assert torch.equal(pooled, expected)
    (grad,) = torch.autograd.grad(pooled.sum(), feature)
    (expected_grad,) = torch.autograd.grad(expected.sum(), feature)
    assert torch.equal(grad, expected_grad)


MODES = {"inference_mode": torch.inference_mode, "no_grad": torch.no_grad, "grad": contextlib.nullcontext}


@pytest.mark.parametrize("mode", list(MODES))
def test_a_large_batch_splits_over_two_threads_only_without_autograd_and_in_the_callers_modes(mode, monkeypatch):
    feature, rois = _large_batch()
    calls = []

    def recorded(*args):
        calls.append((threading.current_thread().name, torch.is_inference_mode_enabled(), torch.is_grad_enabled()))
        return roi_align(*args)

    monkeypatch.setattr(roi_pool_module, "roi_align", recorded)
    with MODES[mode]():
        pooled, _ = multiscale_roi_align([feature], rois, [(320, 480)] * 2, output_size=7, sampling_ratio=2)
        caller = (threading.current_thread().name, torch.is_inference_mode_enabled(), torch.is_grad_enabled())

    assert torch.equal(pooled, roi_align(feature, to_roi_format(rois), 7, 0.125, 2))
    assert torch.is_inference(pooled) == (mode == "inference_mode")
    if mode == "grad":  # a worker would record no graph: it all stays on the caller's thread
        assert calls == [caller]
    else:
        assert [call[1:] for call in calls] == [caller[1:]] * 2
        assert all(call[0].startswith("roi-align") for call in calls)


def test_roi_align_of_a_large_batch_runs_in_the_callers_autocast_and_inference_modes():
    feature, rois = _large_batch(dtype=torch.bfloat16)

    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        pooled, _ = multiscale_roi_align([feature], rois, [(320, 480)] * 2, output_size=7, sampling_ratio=2)
        expected = roi_align(feature, to_roi_format(rois), 7, 0.125, 2)

    assert torch.is_inference(pooled)
    assert pooled.dtype == expected.dtype and torch.equal(pooled, expected)


@pytest.mark.parametrize("name, names", [("resnet50-fpn", ["0", "1", "2", "3"]), ("mobilenet-v3-fpn", ["0", "1"])])
def test_fpn_models_pool_from_torchvisions_levels_only(name, names):
    """A very large RoI maps past the last pooled level: it must clamp to stride 32 (ResNet), not
    use the extra max-pool output that the RPN sees."""
    from frcnn_core.modeling.zoo import build_model

    torch.manual_seed(0)
    model = build_model(name, "none")
    generator = torch.Generator().manual_seed(0)
    # a 1600-px input: strides 4-64 (ResNet) or 16-64 (MobileNetV3)
    sizes = {"0": 400, "1": 200, "2": 100, "3": 50, "pool": 25} if len(names) == 4 else {"0": 100, "1": 50, "pool": 25}
    features = [torch.randn(1, 4, s, s, generator=generator) for s in sizes.values()]
    rois = [torch.tensor([[0.0, 0.0, 1500.0, 1500.0], [10.0, 20.0, 60.0, 90.0]])]  # sqrt(area) 1500: "level 6"
    pooled, _ = model.pooler(features, rois, [(1600, 1600)])
    expected = MultiScaleRoIAlign(names, 7, 2)(OrderedDict(zip(sizes, features, strict=True)), rois, [(1600, 1600)])
    assert torch.allclose(pooled, expected)
