"""Saliency maps through the engine's worker (`EngineClient.saliency`, `engine/saliency_pass.py`): a
D-RISE request gives the count, then the preview map at PREVIEW_MASKS masks, then the result with
its deletion test, and the map is D-RISE's own; Cancel stops within a batch and keeps the map so
far; a newer request stops the older one, which is never answered; HiResCAM is one step; a
detection the inspection lacks is one line; a request for a replaced inspection gives nothing."""
from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest

from frcnn_core.inspect.saliency import PREVIEW_MASKS, drise_map
from frcnn_core.modeling.checkpoints import save_checkpoint
from frcnn_core.modeling.zoo import build_model
from frcnn_core.resources import SAMPLES
from frcnn_gui.engine import saliency_pass
from frcnn_gui.engine.messages import SaliencyResult

from test_worker import TIMEOUT_MS, client, collect, until_idle  # noqa: F401 (client: a fixture)

REFINED = PREVIEW_MASKS + 3 * saliency_pass.BATCH_SIZE  # the preview, then three batches more
ENDLESS = 100_000  # masks no test waits for: it is cancelled or superseded
CELLS = str(SAMPLES / "BloodImage_00014.jpg")  # 640 x 480, its best detection a WBC


@pytest.fixture(scope="module")
def small_bccd(tmp_path_factory) -> str:
    """The bundled bccd-demo as a checkpoint that resizes images to 160 x 214: trained weights, so
    that its scores rest on the pixels (random weights score every masked image alike), at a ninth
    of the cost of a pass."""
    model = build_model("bccd-demo", "none")
    config = dataclasses.replace(model.config, transform=dataclasses.replace(model.config.transform, min_size=160,
                                                                             max_size=214))
    path = tmp_path_factory.mktemp("saliency") / "bccd-small.pt"
    save_checkpoint(path, model.model_name, config, model.class_names, model.state_dict())
    return str(path)


@pytest.fixture
def inspection(qtbot, client, small_bccd):  # noqa: F811
    """The worker's inspection of a BCCD image (every detection kept)."""
    with qtbot.waitSignal(client.model_loaded, timeout=TIMEOUT_MS):
        client.load_model(small_bccd, "none", device="cpu")
    with qtbot.waitSignal(client.inspected, timeout=TIMEOUT_MS) as received:
        client.inspect(CELLS)
    return received.args[0]


def worker_engine(client):  # noqa: F811
    """The worker's `Engine`: its model and inspection (read by the test only while the worker is idle)."""
    return client._worker._engine


def answered(qtbot, client, request_id: int) -> SaliencyResult:  # noqa: F811
    with qtbot.waitSignal(client.saliency.done, timeout=TIMEOUT_MS,
                          check_params_cb=lambda result: result.request.request_id == request_id) as received:
        pass
    return received.args[0]


def test_drise_sends_the_count_then_the_preview_map_then_the_result(qtbot, client, inspection):  # noqa: F811
    updates = collect(client.saliency.progress)
    with qtbot.waitSignal(client.saliency.done, timeout=TIMEOUT_MS) as received:
        request_id = client.saliency.explain(inspection.request_id, "proposal", 0, "drise", REFINED)
    result = received.args[0]
    assert result.request.request_id == request_id and not result.cancelled and result.masks == REFINED
    height, width = inspection.trace.image_size
    assert result.heatmap.shape == (height, width) and result.heatmap.dtype == np.float32
    assert updates and updates[0].done == 0 and updates[0].heatmap is None  # the count at once
    counts = [update.done for update in updates]
    assert counts == sorted(counts) and all(update.total == REFINED for update in updates)
    with_map = [update for update in updates if update.heatmap is not None]
    assert with_map and with_map[0].done == PREVIEW_MASKS  # the preview as soon as its masks are scored
    assert all(update.done >= PREVIEW_MASKS for update in with_map)
    assert not np.array_equal(with_map[0].heatmap, result.heatmap)  # refined after the preview
    assert result.box == tuple(inspection.trace.proposals.boxes[0].tolist())
    deletion = result.deletion
    assert abs(deletion.score - result.score) < 1e-3  # the target scored again on the unchanged image
    assert 0.0 <= deletion.salient <= 1.0 and 0.0 <= deletion.random <= 1.0 and deletion.share == 0.1
    assert result.seconds > 0
    qtbot.waitUntil(lambda: not client.is_busy, timeout=TIMEOUT_MS)  # busy until the worker is done with it
    engine = worker_engine(client)  # idle now: D-RISE again on this thread gives the same map
    target = engine.inspection.saliency_target("proposal", 0)
    expected = drise_map(engine.model, engine.inspection.image, target, REFINED)
    assert np.allclose(result.heatmap, expected.numpy(), atol=1e-6)


def test_cancel_stops_within_a_batch_and_keeps_the_map_so_far(qtbot, client, inspection):  # noqa: F811
    updates = collect(client.saliency.progress)
    request_id = client.saliency.explain(inspection.request_id, "proposal", 1, "drise", ENDLESS)
    qtbot.waitUntil(lambda: any(update.done > 0 for update in updates), timeout=TIMEOUT_MS)
    cancelled_at = time.perf_counter()
    client.saliency.cancel()
    result = answered(qtbot, client, request_id)
    assert time.perf_counter() - cancelled_at < 10  # one batch of eight masks, not the thousands asked for
    assert result.cancelled and 0 < result.masks < ENDLESS and result.deletion is None
    assert result.heatmap is not None and result.heatmap.shape == tuple(inspection.trace.image_size)
    assert np.abs(result.heatmap).max() > 0


def test_a_newer_request_stops_the_older_which_is_never_answered(qtbot, client, inspection, monkeypatch):  # noqa: F811
    returned = []  # what saliency_pass gave the worker, answered or not
    explain = saliency_pass.explain

    def recorded(*args):
        returned.append(explain(*args))
        return returned[-1]

    monkeypatch.setattr(saliency_pass, "explain", recorded)
    results, updates = collect(client.saliency.done), collect(client.saliency.progress)
    older = client.saliency.explain(inspection.request_id, "proposal", 0, "drise", ENDLESS)
    qtbot.waitUntil(lambda: any(update.done > 0 for update in updates), timeout=TIMEOUT_MS)
    newer = client.saliency.explain(inspection.request_id, "proposal", 2, "drise", saliency_pass.BATCH_SIZE)
    after_newer = len(updates)
    with until_idle(qtbot, client):
        pass
    assert [result.request.request_id for result in results] == [newer]
    assert all(update.request_id == newer for update in updates[after_newer:])
    stopped = next(result for result in returned if result.request.request_id == older)
    assert stopped.cancelled and stopped.masks < ENDLESS


def test_hires_cam_gives_one_map_without_updates(qtbot, client, inspection):  # noqa: F811
    detections = inspection.trace.detections
    assert float(detections.scores[0]) > 0.5
    updates = collect(client.saliency.progress)
    with qtbot.waitSignal(client.saliency.done, timeout=TIMEOUT_MS) as received:
        client.saliency.explain(inspection.request_id, "detection", 0, "hirescam", 1000)
    result = received.args[0]
    assert updates == [] and result.masks == 0 and not result.cancelled
    assert result.heatmap.shape == tuple(inspection.trace.image_size) and result.heatmap.min() >= 0  # ReLU'd
    assert result.box == tuple(detections.boxes[0].tolist())
    assert result.score == pytest.approx(float(detections.scores[0]))
    assert abs(result.deletion.score - result.score) < 1e-3


def test_a_detection_the_inspection_lacks_is_one_line(qtbot, client, inspection):  # noqa: F811
    count = len(inspection.trace.detections.scores)
    with qtbot.waitSignal(client.failed, timeout=TIMEOUT_MS) as received:
        request_id = client.saliency.explain(inspection.request_id, "detection", count, "drise", 8)
    error = received.args[0]
    assert error.request_id == request_id and error.traceback == ""
    assert error.message == f"there is no detection {count}: the image has {count}"


def test_a_request_for_a_replaced_inspection_gives_nothing(qtbot, client, inspection):  # noqa: F811
    with qtbot.waitSignal(client.inspected, timeout=TIMEOUT_MS) as received:
        client.inspect(CELLS)
    results, errors = collect(client.saliency.done), collect(client.failed)
    with until_idle(qtbot, client):
        client.saliency.explain(inspection.request_id, "proposal", 0, "drise", 8)
    assert results == [] and errors == []
    with qtbot.waitSignal(client.saliency.done, timeout=TIMEOUT_MS):  # the new inspection's are answered
        client.saliency.explain(received.args[0].request_id, "proposal", 0, "drise", 8)


def test_a_model_load_stops_the_map_under_way(qtbot, client, inspection, small_bccd):  # noqa: F811
    updates, results = collect(client.saliency.progress), collect(client.saliency.done)
    client.saliency.explain(inspection.request_id, "proposal", 0, "drise", ENDLESS)
    qtbot.waitUntil(lambda: any(update.done > 0 for update in updates), timeout=TIMEOUT_MS)
    with qtbot.waitSignal(client.model_loaded, timeout=TIMEOUT_MS):  # not after the thousands of masks asked for
        client.load_model(small_bccd, "none", device="cpu")
    assert len(results) == 1 and results[0].cancelled and results[0].masks < ENDLESS
