"""The saliency stage with the bundled `bccd-demo` model, driven as a user drives it: the stage
picked in the Stages list, a detection clicked on the canvas, the mask count typed into its box,
Cancel clicked, the method picked with the keyboard, the next image opened; asserted on what the
user sees (the canvas's pixels with and without the map, the progress bar, the stage's text)."""
from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt

from frcnn_core.inspect.saliency import PREVIEW_MASKS
from frcnn_gui.inspector.saliency_view import smallest_box_at

from journeys_helpers import canvas_pixels, click
from test_inspector import MODEL, TIMEOUT_MS, choose_stage

FEW_MASKS = 24  # a whole D-RISE map in three batches
MANY_MASKS = 5000  # more than any test waits for: cancelled


def type_masks(qtbot, window, count: int) -> None:
    """Select the mask count's text and type `count` over it."""
    masks = window.inspector.saliency.controls.masks
    masks.setFocus()
    qtbot.keyClick(masks, Qt.Key_A, Qt.ControlModifier)
    qtbot.keyClicks(masks, str(count))
    qtbot.keyClick(masks, Qt.Key_Return)
    assert masks.value() == count


def clickable_detection(window) -> tuple[float, float]:
    """The centre of the best detection shown whose centre no smaller shown detection covers."""
    inspector = window.inspector
    detections, shown = inspector.inspection.trace.detections, inspector.shown_detections()
    return unshadowed_centre(detections.boxes[shown], detections.scores[shown])


def unshadowed_centre(boxes, scores) -> tuple[float, float]:
    """The centre of the best-scoring box (N, 4) whose centre no smaller box covers."""
    for rank in np.argsort(-scores.numpy()):
        x1, y1, x2, y2 = boxes[rank].tolist()
        centre = ((x1 + x2) / 2, (y1 + y2) / 2)
        if smallest_box_at(boxes, *centre) == rank:
            return centre
    raise AssertionError("every box's centre lies in a smaller one")


def map_share(window) -> tuple[float, float]:
    """Where the map is drawn, as the user sees it: the share of the canvas that changes when the
    map's layer is hidden, and how well the photo still shows under the map (the correlation of
    the pixels' brightness there with and without it)."""
    layer = window.inspector.saliency.layer
    with_map = canvas_pixels(window)
    layer.setVisible(False)
    without = canvas_pixels(window)
    layer.setVisible(True)
    changed = np.any(with_map != without, axis=2)
    if changed.sum() < 2:
        return float(changed.mean()), 0.0
    brightness = [pixels[changed][:, :3].astype(float).mean(axis=1) for pixels in (with_map, without)]
    return float(changed.mean()), float(np.corrcoef(*brightness)[0, 1])


def text(window) -> str:
    return window.stages_panel.explanation.text()


@pytest.mark.slow  # about 20 s: 100 D-RISE masks and HiResCAM of bccd-demo on a 640 x 480 image
def test_a_clicked_detection_gets_its_map_cancel_keeps_it_and_hires_cam_explains_it_too(qtbot, make_window,
                                                                                        journey_folder):
    window = make_window(journey_folder, model=MODEL)
    choose_stage(qtbot, window, "saliency")
    saliency, controls = window.inspector.saliency, window.inspector.saliency.controls
    assert controls.isVisible() and "Click a detection" in text(window)
    target = clickable_detection(window)

    # D-RISE with many masks: the preview is drawn at PREVIEW_MASKS, then Cancel keeps the map so far
    type_masks(qtbot, window, MANY_MASKS)
    with qtbot.waitSignal(saliency.map_drawn, timeout=TIMEOUT_MS):
        click(qtbot, window, *target)
    assert saliency.drawn_masks == PREVIEW_MASKS and saliency.running is not None
    share, photo_seen = map_share(window)
    assert share > 0.01 and photo_seen > 0.3, (share, photo_seen)  # a map over the photo, which shows through
    assert f"/ {MANY_MASKS:,} masks…" in text(window) and f"The map after {PREVIEW_MASKS} masks is shown" in text(
        window)
    assert controls.cancel.isEnabled() and controls.progress.maximum() == MANY_MASKS
    with qtbot.waitSignal(saliency.finished, timeout=TIMEOUT_MS):
        qtbot.mouseClick(controls.cancel, Qt.LeftButton)
    result = saliency.result
    assert result.cancelled and PREVIEW_MASKS <= result.masks < MANY_MASKS
    assert f"cancelled at {result.masks:,} masks of {MANY_MASKS:,}" in text(window)
    assert map_share(window)[0] > 0.01 and not controls.cancel.isEnabled()
    assert controls.progress.text() == f"{result.masks} / {MANY_MASKS} masks"

    # a few masks: the whole map, with its deletion test in words
    type_masks(qtbot, window, FEW_MASKS)
    before = canvas_pixels(window)
    with qtbot.waitSignal(saliency.finished, timeout=TIMEOUT_MS):
        click(qtbot, window, *target)
    result = saliency.result
    assert not result.cancelled and result.masks == FEW_MASKS
    assert np.any(before != canvas_pixels(window))  # another map drawn
    deletion = result.deletion
    assert (f"Deleting the 10% most salient pixels: score {deletion.score:.2f} → {deletion.salient:.2f}; "
            f"a random 10%: {deletion.random:.2f}.") in text(window)
    assert text(window).startswith(f"D-RISE (random masks) of {saliency.target_words()}: {FEW_MASKS} masks in ")
    assert controls.progress.text() == f"{FEW_MASKS} / {FEW_MASKS} masks"

    # HiResCAM picked with the keyboard: the same detection explained again
    controls.method.setFocus()
    with qtbot.waitSignal(saliency.finished, timeout=TIMEOUT_MS):
        qtbot.keyClick(controls.method, Qt.Key_Down)
    result = saliency.result
    assert result.request.method == "hirescam" and result.deletion is not None and not controls.masks.isEnabled()
    assert text(window).startswith(f"HiResCAM (gradient x activation) of {saliency.target_words()}: one step in ")
    assert "Deleting the 10% most salient pixels" in text(window)
    assert map_share(window)[0] > 0.01

    # the next image: no map, no target
    window.actions["next"].trigger()
    assert saliency.layer.image.isNull() and saliency.target is None and saliency.result is None
    assert not controls.progress.isTextVisible()
    qtbot.waitUntil(lambda: "Click a detection" in text(window), timeout=TIMEOUT_MS)


def test_a_proposal_explained_and_leaving_the_stage_stops_a_map(qtbot, make_window, journey_folder):
    window = make_window(journey_folder, model=MODEL)
    choose_stage(qtbot, window, "saliency")
    saliency = window.inspector.saliency
    click(qtbot, window, 2, 2)  # the corner: no detection there
    assert saliency.running is None and saliency.target is None
    type_masks(qtbot, window, MANY_MASKS)
    click(qtbot, window, *clickable_detection(window))
    qtbot.waitUntil(lambda: saliency.update is not None and saliency.update.done > 0, timeout=TIMEOUT_MS)
    with qtbot.waitSignal(saliency.finished, timeout=TIMEOUT_MS):
        choose_stage(qtbot, window, "class-scores")  # its re-run waits behind no map of 5,000 masks
    assert saliency.result.cancelled and saliency.result.masks < MANY_MASKS
    assert not saliency.layer.isVisible()
    choose_stage(qtbot, window, "saliency")
    assert saliency.layer.isVisible() and f"cancelled at {saliency.result.masks:,} masks" in text(window)

    # "explain: a proposal" with HiResCAM: the best proposals drawn, one clicked, its objectness explained
    controls = saliency.controls
    controls.kind.setFocus()
    qtbot.keyClick(controls.kind, Qt.Key_Down)
    assert saliency.result is None and saliency.layer.image.isNull() and "Click a proposal" in text(window)
    proposals = window.inspector.inspection.trace.proposals
    drawn = window.inspector.drawn
    assert len(window.inspector.layer._boxes) == drawn
    controls.method.setFocus()
    qtbot.keyClick(controls.method, Qt.Key_Down)  # no target yet: nothing runs
    assert saliency.running is None
    with qtbot.waitSignal(saliency.finished, timeout=TIMEOUT_MS):
        click(qtbot, window, *unshadowed_centre(proposals.boxes[:drawn], proposals.scores[:drawn]))
    result = saliency.result
    assert result.request.kind == "proposal" and result.request.method == "hirescam"
    assert result.box == tuple(proposals.boxes[saliency.target].tolist())
    assert text(window).startswith(f"HiResCAM (gradient x activation) of proposal #{saliency.target}, objectness ")
    assert "Deleting the 10% most salient pixels: objectness " in text(window)
