"""The stage inspector's re-runs live in the engine's worker, driven as a user drives them: a GT box
dragged with 20 mouse moves gives far fewer re-runs and the last one is what is drawn; a re-run
that raises shows one line and the window keeps working; a whole inspector session (a saliency map
included) never runs an `Inspection` method (every call into the model's code) on the UI thread."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from PySide6.QtCore import Qt

from frcnn_core.inspect.inspection import Inspection
from frcnn_gui.engine import reruns as engine_reruns, saliency_pass
from frcnn_gui.inspector.overlays import anchor_labels_overlay, box_at

from test_stages import TIMEOUT_MS, at, choose, settled, shown_boxes, window  # noqa: F401 (window: a fixture)

WBC_CENTRE = (307.0, 282.0)  # inside the image's WBC box (236, 211, 379, 353) and no other GT box's middle
SLOW_RERUN_S = 0.1  # each relabel made this slow: a drag's moves come faster than the worker answers
INSPECTION_CALLS = ("run", "relabel_anchors", "rerun_proposals", "training_trace_for", "pooled_features",
                    "sampling_grid", "provenance", "saliency_target")
ENGINE_CALLS = ((engine_reruns, "recall_funnel"), (saliency_pass, "drise"), (saliency_pass, "deletion_test"))


def wrap(monkeypatch, owner, name: str, before=lambda *args, **kwargs: None, after=lambda result: None) -> None:
    """Replace owner.name by a function that calls before(*args, **kwargs), the original, then after(result)."""
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):
        before(*args, **kwargs)
        result = original(*args, **kwargs)
        after(result)
        return result

    monkeypatch.setattr(owner, name, wrapper)


def drag_the_wbc(qtbot, window, moves: int):  # noqa: F811
    """Press on the WBC box on the anchor-labels stage and move it `moves` times towards (470, 420),
    letting the UI thread take what comes back between moves; returns the viewport point reached
    (the button is still down)."""
    viewport = window.canvas.viewport()
    start, end = at(window, *WBC_CENTRE), at(window, 470, 420)
    qtbot.mousePress(viewport, Qt.LeftButton, Qt.NoModifier, start)
    for step in range(1, moves + 1):
        qtbot.mouseMove(viewport, start + (end - start) * (step / moves))
        qtbot.wait(5)
    return end


def test_a_drag_coalesces_its_relabels_and_draws_the_last(qtbot, window, monkeypatch):  # noqa: F811
    choose(qtbot, window, "anchor-labels")
    inspector, viewport = window.inspector, window.canvas.viewport()
    calls = []  # (the GT boxes relabelled, the labels made)
    wrap(monkeypatch, Inspection, "relabel_anchors",
         before=lambda _self, gt_boxes: (time.sleep(SLOW_RERUN_S), calls.append([gt_boxes.clone(), None])),
         after=lambda labels: calls[-1].__setitem__(1, labels))
    end = drag_the_wbc(qtbot, window, 20)
    settled(qtbot, window, "anchor-labels")
    preview = window.canvas.ground_truth_layer._preview
    assert preview is not None  # still mid-drag
    assert 2 <= len(calls) <= 10  # far fewer than the 20 moves: a waiting request is replaced by a newer one
    last_gt, last_labels = calls[-1]
    assert any(np.allclose(row, preview[1], atol=1e-3) for row in last_gt.numpy())  # the box where the mouse is
    assert inspector.trace.anchor_labels is last_labels
    assert np.allclose(shown_boxes(window), anchor_labels_overlay(inspector.trace.anchors, last_labels).boxes)
    assert inspector.gt_count == len(last_gt)
    with qtbot.waitSignal(inspector.shown, timeout=TIMEOUT_MS):
        qtbot.mouseRelease(viewport, Qt.LeftButton, Qt.NoModifier, end)
    assert window.stack.count() == 1 and inspector.trace.anchor_labels is calls[-1][1]


def test_a_rerun_that_raises_shows_one_line_and_the_window_keeps_working(qtbot, window, monkeypatch):  # noqa: F811
    choose(qtbot, window, "proposals")
    inspector, panel = window.inspector, window.stages_panel
    before = shown_boxes(window)

    def explode(*_args, **_kwargs):
        raise RuntimeError("injected failure\nsecond line")

    wrap(monkeypatch, Inspection, "rerun_proposals", before=explode)
    with qtbot.waitSignal(window.engine_failed, timeout=TIMEOUT_MS) as failed:
        panel.nms_slider.setValue(40)
    line = failed.args[0]
    assert line == "internal error: RuntimeError: injected failure"
    assert window.statusBar().currentMessage() == line
    log = window.log.toPlainText()
    assert log.count(line) == 1 and "Traceback" in log and "explode" in log
    settled(qtbot, window, "proposals")
    assert np.array_equal(shown_boxes(window), before)  # the previous overlay stays
    monkeypatch.undo()
    with qtbot.waitSignal(inspector.shown, timeout=TIMEOUT_MS, check_params_cb=lambda stage: stage == "proposals"):
        panel.nms_slider.setValue(30)
    assert inspector.trace.proposals.nms_thresh == pytest.approx(0.3)
    assert window.isVisible() and not np.array_equal(shown_boxes(window), before)


def test_an_inspector_session_never_runs_the_model_code_on_the_ui_thread(qtbot, window, monkeypatch):  # noqa: F811
    threads = []  # (what ran, the thread it ran on)
    for name in INSPECTION_CALLS:
        wrap(monkeypatch, Inspection, name, before=lambda *_args, name=name, **_kwargs: threads.append(
            (name, threading.current_thread())))
    for owner, name in ENGINE_CALLS:
        wrap(monkeypatch, owner, name, before=lambda *_args, name=name, **_kwargs: threads.append(
            (name, threading.current_thread())))
    inspector, panel = window.inspector, window.stages_panel
    choose(qtbot, window, "anchor-labels")
    viewport = window.canvas.viewport()
    end = drag_the_wbc(qtbot, window, 5)
    with qtbot.waitSignal(inspector.shown, timeout=TIMEOUT_MS):
        qtbot.mouseRelease(viewport, Qt.LeftButton, Qt.NoModifier, end)
    choose(qtbot, window, "proposals")
    with qtbot.waitSignal(inspector.shown, timeout=TIMEOUT_MS):
        panel.nms_slider.setValue(50)
    choose(qtbot, window, "roi-samples")
    choose(qtbot, window, "roi-pool")
    proposals = inspector.inspection.trace.proposals.boxes
    other = next(index for index in range(len(proposals)) if index != inspector.selected_roi
                 and box_at(proposals, *((proposals[index, :2] + proposals[index, 2:]) / 2).tolist()) == index)
    with qtbot.waitSignal(inspector.shown, timeout=TIMEOUT_MS):
        qtbot.mouseClick(viewport, Qt.LeftButton, Qt.NoModifier,
                         at(window, *((proposals[other, :2] + proposals[other, 2:]) / 2).tolist()))
    choose(qtbot, window, "class-scores")
    settled(qtbot, window, "funnel")  # asked for with the inspection and again after the drop
    choose(qtbot, window, "saliency")
    inspector.saliency.controls.masks.setValue(16)
    with qtbot.waitSignal(inspector.saliency.finished, timeout=TIMEOUT_MS):
        qtbot.mouseClick(viewport, Qt.LeftButton, Qt.NoModifier, at(window, *WBC_CENTRE))
    ran = {name for name, _ in threads}
    assert ran == {*INSPECTION_CALLS, *(name for _, name in ENGINE_CALLS)}  # every kind of call was made
    on_ui = [name for name, thread in threads if thread is threading.main_thread()]
    assert on_ui == []
    assert "internal error" not in window.log.toPlainText()
