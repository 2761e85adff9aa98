"""The saliency stage's work in the engine thread: one score of the worker's latest `Inspection`
explained by D-RISE or HiResCAM (`frcnn_core.inspect.saliency`), then the map's deletion test.
Imported with torch, in the worker.

D-RISE scores its masks a batch at a time and reports as it goes: the first map as soon as
`PREVIEW_MASKS` masks are scored (the fast preview), then the refining map at most every
`UPDATE_INTERVAL_S`, and the mask count alone in between. It asks `wanted()` after each batch;
no longer wanted (cancelled or superseded), it answers with the map so far and no deletion test, which
would cost the batches the user just declined. HiResCAM is one step and sends no updates.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import closing

import numpy as np
from torch import Tensor

from frcnn_core.inspect.inspection import Inspection
from frcnn_core.inspect.saliency import (
    DRISE,
    HIRES_CAM,
    MASK_BATCH,
    METHODS,
    PREVIEW_MASKS,
    deletion_test,
    drise,
    hires_cam,
)
from frcnn_core.modeling.model import FasterRCNN
from frcnn_gui.engine.messages import SaliencyRequest, SaliencyResult, SaliencyUpdate

UPDATE_INTERVAL_S = 0.25  # at most four refined maps a second: each crosses to the UI and is coloured there
BATCH_SIZE = MASK_BATCH  # masked images per forward pass: Cancel is heard after each


def explain(model: FasterRCNN, inspection: Inspection, request: SaliencyRequest,
            progress: Callable[[SaliencyUpdate], None], wanted: Callable[[], bool]) -> SaliencyResult:
    """The map of `request`'s target (module docstring); progress(update) while D-RISE runs.
    InputError for a detection or proposal the inspection does not have; ValueError for an unknown
    method or D-RISE with no mask."""
    if request.method not in METHODS:
        raise ValueError(f"unknown saliency method {request.method!r}: {', '.join(METHODS)}")
    if request.method == DRISE and request.masks < 1:
        raise ValueError(f"D-RISE needs at least one mask, not {request.masks}")
    start = time.perf_counter()
    target = inspection.saliency_target(request.kind, request.index)
    if request.method == HIRES_CAM:
        heatmap, masks = hires_cam(model, inspection.image, target), 0
        cancelled = not wanted()
    else:
        heatmap, masks, cancelled = _drise(model, inspection, target, request, progress, wanted)
    deletion = None if cancelled or heatmap is None else deletion_test(model, inspection.image, target, heatmap)
    box = tuple(float(value) for value in target.box)
    return SaliencyResult(request, _plain(heatmap), box, target.score, masks, deletion, cancelled,
                          time.perf_counter() - start)


def _drise(model: FasterRCNN, inspection: Inspection, target, request: SaliencyRequest,
           progress: Callable[[SaliencyUpdate], None], wanted: Callable[[], bool]) -> tuple[Tensor | None, int, bool]:
    """D-RISE's last map, its masks scored, and whether it stopped early."""
    preview = min(PREVIEW_MASKS, request.masks)
    sent_at, map_sent = -float("inf"), False
    with closing(drise(model, inspection.image, target, request.masks, BATCH_SIZE)) as steps:
        for step in steps:
            if step.done == step.total:
                return step.heatmap, step.done, False
            if not wanted():
                return step.heatmap, step.done, True
            now = time.perf_counter()
            map_ready = step.heatmap is not None and step.done >= preview
            if (map_ready and not map_sent) or now - sent_at >= UPDATE_INTERVAL_S:
                progress(SaliencyUpdate(request.request_id, step.done, step.total,
                                        _plain(step.heatmap) if map_ready else None))
                sent_at, map_sent = now, map_sent or map_ready
    raise AssertionError("D-RISE ended before its last mask")  # it yields done == total last


def _plain(heatmap: Tensor | None) -> np.ndarray | None:
    """The map as float32 numpy for the UI thread (a copy: the worker's tensor is never shared)."""
    return None if heatmap is None else heatmap.detach().cpu().float().numpy().copy()

