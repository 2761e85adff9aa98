"""RoI pooling: RoIPool on one stride-16 map (the paper), RoIAlign over FPN levels (torchvision).

Shapes: R RoIs over a batch, C channels, (h, w) the pooled size. RoIs are per-image lists of
(Ri, 4) boxes in input pixels.
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor
from torchvision.ops import roi_align, roi_pool

_ROI_ALIGN_WORKERS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="roi-align")
_MIN_ROIS_TO_SPLIT = 64


def _roi_align(feature: Tensor, rows: Tensor, output_size: int, scale: float, sampling_ratio: int) -> Tensor:
    """torchvision's `roi_align`; on the CPU, a large batch without autograd runs as two halves on
    two worker threads.

    The CPU kernel loops over RoIs on one core and each RoI is independent, so the halves give
    bit-identical results, and the whole resnet50-fpn inference takes ~8% less time on 2 cores
    (1,000 RoIs; benchmarks/bench_inference.py). Grad, inference and autocast modes are
    thread-local and a worker starts without them, so the split happens only where a worker can be
    given the caller's modes: grad off and no autocast; each half then runs in the caller's
    inference mode (inference tensors for an inference-mode caller, plain ones under no_grad).
    With grad on (training, `keep_graph`) or under autocast it all runs on the caller's thread.
    """
    if (feature.device.type != "cpu" or len(rows) < _MIN_ROIS_TO_SPLIT or torch.get_num_threads() < 2
            or torch.is_grad_enabled() or torch.is_autocast_enabled("cpu")):
        return roi_align(feature, rows, output_size, scale, sampling_ratio)
    inference = torch.is_inference_mode_enabled()

    def pool_half(chunk: Tensor) -> Tensor:
        with torch.inference_mode(inference), torch.no_grad():
            return roi_align(feature, chunk, output_size, scale, sampling_ratio)

    half = len(rows) // 2
    parts = [_ROI_ALIGN_WORKERS.submit(pool_half, chunk) for chunk in (rows[:half], rows[half:])]
    return torch.cat([part.result() for part in parts])


def to_roi_format(rois: list[Tensor]) -> Tensor:
    """Per-image (Ri, 4) boxes -> (R, 5) rows (image index, x1, y1, x2, y2)."""
    rows = [torch.cat([torch.full_like(b[:, :1], i), b], dim=1) for i, b in enumerate(rois)]
    return torch.cat(rows, dim=0)


def infer_scale(feature_size: tuple[int, int], input_size: tuple[int, int]) -> float:
    """A level's scale (1 / stride) as the power of two nearest feature height / input height."""
    return 2.0 ** round(math.log2(float(feature_size[0]) / float(input_size[0])))


def fpn_levels(boxes: Tensor, k_min: int, k_max: int, canonical_size: float = 224.0,
               canonical_level: int = 4) -> Tensor:
    """FPN paper's level rule, k = floor(4 + log2(sqrt(area) / 224)), clamped to [k_min, k_max].

    boxes: (R, 4). Returns (R,) int64 level offsets from k_min (0 = finest level).
    """
    sizes = torch.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    levels = torch.floor(canonical_level + torch.log2(sizes / canonical_size) + torch.tensor(1e-6, dtype=sizes.dtype))
    return (torch.clamp(levels, min=k_min, max=k_max).to(torch.int64) - k_min).to(torch.int64)


def multiscale_roi_align(
    features: list[Tensor], rois: list[Tensor], input_sizes: list[tuple[int, int]], output_size: int,
    sampling_ratio: int, num_levels: int | None = None,
) -> tuple[Tensor, Tensor]:
    """RoIAlign each RoI on the FPN level its size calls for.

    features: per level (N, C, Hl, Wl), finest first; input_sizes: (h, w) of each resized image;
    num_levels: pool from the first this many levels only (None: all). Returns pooled
    (R, C, output_size, output_size) and level (R,) int64 (index into features).
    """
    features = features[:num_levels]
    largest = (max(s[0] for s in input_sizes), max(s[1] for s in input_sizes))
    scales = [infer_scale(f.shape[-2:], largest) for f in features]
    rows = to_roi_format(rois)
    if len(features) == 1:
        level = torch.zeros(len(rows), dtype=torch.int64, device=rows.device)
        return _roi_align(features[0], rows, output_size, scales[0], sampling_ratio), level
    k_min, k_max = int(-math.log2(scales[0])), int(-math.log2(scales[-1]))
    level = fpn_levels(rows[:, 1:], k_min, k_max)
    first = features[0]
    pooled = torch.zeros((len(rows), first.shape[1], output_size, output_size), dtype=first.dtype, device=first.device)
    for level_id, (feature, scale) in enumerate(zip(features, scales, strict=True)):
        in_level = torch.nonzero(level == level_id).flatten()
        pooled[in_level] = _roi_align(feature, rows[in_level], output_size, scale, sampling_ratio).to(pooled.dtype)
    return pooled, level


def single_level_roi_pool(feature: Tensor, rois: list[Tensor], spatial_scale: float,
                          output_size: int) -> tuple[Tensor, Tensor]:
    """The paper's RoI max pooling on one feature map. Returns pooled (R, C, h, w) and level zeros."""
    rows = to_roi_format(rois)
    pooled = roi_pool(feature, rows, output_size, spatial_scale)
    return pooled, torch.zeros(len(rows), dtype=torch.int64, device=rows.device)
