"""Journeys through the stage inspector with the bundled `bccd-demo` model: stages picked by
clicking the stage list, the canvas clicked and dragged, the score slider moved with the keyboard,
a detection picked in the detections list; asserted on what the user sees (canvas pixels, the
panels' texts and tables, the annotation file on disk)."""
from __future__ import annotations

import numpy as np
import torch
from PySide6.QtCore import Qt

from frcnn_core.inspect.describe import FOUND, outcome_words
from frcnn_core.inspect.funnel import recall_funnel
from frcnn_core.vocabulary import STAGES
from frcnn_gui.canvas.layers import TOP_TAGS
from frcnn_gui.inspector.controller import GT_EDITING_STAGES

from journeys_helpers import at, canvas_pixels, changed_fraction, click, drag, wait_autosave

TIMEOUT_MS = 60_000
MODEL = "bccd-demo"
FUNNEL_IMAGE = "cells-10.jpg"  # BloodImage_00014: three RBC boxes whose best detection scores 0.25-0.31


def choose_stage(qtbot, window, stage: str) -> None:
    """Click `stage` in the Stages dock's list; wait until it is drawn from the image's inspection."""
    assert window.stages_panel.stage != stage, "already shown: a click changes nothing"
    stage_list = window.stages_panel.stage_list
    item = stage_list.item(STAGES.index(stage))
    stage_list.scrollToItem(item)
    with qtbot.waitSignal(window.inspector.shown, timeout=TIMEOUT_MS, check_params_cb=lambda shown: shown == stage):
        qtbot.mouseClick(stage_list.viewport(), Qt.LeftButton, Qt.NoModifier, stage_list.visualItemRect(item).center())


def open_image(qtbot, window, name: str) -> None:
    """Click the image `name` in the Images dock (unless it is the one shown)."""
    row = next(row for row, entry in enumerate(window.document.images) if entry.path.name == name)
    if row != window.document.current_index:
        images = window.image_list
        with qtbot.waitSignal(window.detections_shown, timeout=TIMEOUT_MS):
            qtbot.mouseClick(images.viewport(), Qt.LeftButton, Qt.NoModifier,
                             images.visualItemRect(images.item(row)).center())
    assert window.document.current_path.name == name


def stage_line(window, stage: str) -> str:
    return window.stages_panel.stage_list.item(STAGES.index(stage)).text()


def test_inspector_clicks_and_drags_never_select_or_move_a_gt_box(qtbot, make_window, journey_folder):
    window = make_window(journey_folder, model=MODEL)
    xml = window.document.current_path.with_suffix(".xml")
    on_disk, boxes = xml.read_bytes(), dict(window.document.boxes)
    box_id = max(boxes, key=lambda key: (boxes[key].coords[2] - boxes[key].coords[0]))  # the widest: easy to hit
    x1, y1, x2, y2 = boxes[box_id].coords
    centre = ((x1 + x2) / 2, (y1 + y2) / 2)
    for stage in (stage for stage in STAGES if stage not in GT_EDITING_STAGES):
        choose_stage(qtbot, window, stage)
        drag(qtbot, window, centre, (centre[0] + 40, centre[1] + 30))
        click(qtbot, window, *centre)
        assert window.canvas.selection == [], stage
        assert window.document.boxes == boxes and window.stack.count() == 0, stage
    wait_autosave(qtbot)
    assert xml.read_bytes() == on_disk
    # the same drag where GT editing belongs moves the box: the gesture above was a real edit gesture
    choose_stage(qtbot, window, "detections")
    drag(qtbot, window, centre, (centre[0] + 40, centre[1] + 30))
    assert window.document.boxes[box_id].coords != boxes[box_id].coords and window.stack.count() == 1


def test_the_objectness_stage_opens_on_the_level_with_the_most_anchors_above_one_half(qtbot, make_window,
                                                                                      journey_folder):
    window = make_window(journey_folder, model=MODEL)
    choose_stage(qtbot, window, "objectness")
    trace = window.inspector.inspection.trace
    likely, start = [], 0
    for (height, width), shapes in zip(trace.anchors.grid_sizes, trace.anchors.shapes_per_cell, strict=True):
        count = height * width * shapes  # the anchors of one level: cell by cell, shapes within a cell
        likely.append(int((torch.sigmoid(trace.objectness.logits[start:start + count]) > 0.5).sum()))
        start += count
    expected = likely.index(max(likely))
    assert likely[expected] > 0
    assert window.inspector.level == expected == window.stages_panel.level.currentIndex()
    heatmap = window.inspector.heatmap.image
    assert (heatmap.height(), heatmap.width()) == tuple(trace.anchors.grid_sizes[expected])
    assert f"it opens on level {expected}" in window.stages_panel.explanation.text()


def test_the_score_slider_moves_the_stages_line_and_the_funnel(qtbot, make_window, journey_folder):
    window = make_window(journey_folder, model=MODEL)
    open_image(qtbot, window, FUNNEL_IMAGE)
    funnel, inspector = window.funnel_panel, window.inspector
    with qtbot.waitSignal(inspector.funnel_changed, timeout=TIMEOUT_MS):
        qtbot.mouseClick(funnel.trace_button, Qt.LeftButton)

    def outcomes() -> list[str]:
        return [funnel.table.item(row, 7).text() for row in range(funnel.table.rowCount())]

    def expected(score_thresh: float) -> list[str]:
        gt_boxes, gt_labels = inspector.gt_labels()
        rows = recall_funnel(inspector.inspection.trace, gt_boxes, gt_labels, inspector.class_names,
                             score_thresh=score_thresh, rpn_config=inspector.config.rpn_train)
        return [outcome_words(row.lost_at) for row in rows]

    assert stage_line(window, "detections").startswith("detections  ") and "(score ≥ 0.5;" in stage_line(window,
                                                                                                         "detections")
    at_half = outcomes()
    assert at_half == expected(0.5) and "lost at detection" in at_half
    slider = window.detections_panel.slider
    slider.setFocus()
    for _ in range(3):
        qtbot.keyClick(slider, Qt.Key_PageDown)  # 0.50 -> 0.20
    assert window.detections_panel.threshold() == 0.2
    assert "(score ≥ 0.2;" in stage_line(window, "detections")
    at_fifth = outcomes()
    assert at_fifth == expected(0.2) and at_fifth.count(FOUND) > at_half.count(FOUND)
    assert "scoring ≥ 0.20" in funnel.summary.text()
    assert window.stages_panel.stage == "detections"  # the stage shown from the start, now with its inspection
    confident = int((inspector.inspection.trace.detections.scores >= 0.2).sum())
    assert f"scoring at least 0.2: {confident} detections" in window.stages_panel.explanation.text()


def test_a_detection_picked_in_the_list_is_outlined_and_the_rest_dimmed(qtbot, make_window, journey_folder):
    window = make_window(journey_folder, model=MODEL)
    window.actions["show_boxes"].trigger()  # only the detections on the picture
    shown_list = window.detections_panel.shown_list
    assert shown_list.count() > 3
    before = canvas_pixels(window)
    item = shown_list.item(2)
    qtbot.mouseClick(shown_list.viewport(), Qt.LeftButton, Qt.NoModifier, shown_list.visualItemRect(item).center())
    picked = window._best_first[2]
    assert window.canvas.detection_layer.picked == [picked]
    after = canvas_pixels(window)
    left, top = at(window, picked.box[0], picked.box[1]).toTuple()
    right, bottom = at(window, picked.box[2], picked.box[3]).toTuple()
    changed = np.any(before != after, axis=2)
    ring = np.zeros_like(changed)
    ring[top - 3:bottom + 4, left - 3:right + 4] = True
    ring[top + 4:bottom - 3, left + 4:right - 3] = False
    assert changed[ring].mean() > 0.2  # its outline, thicker
    assert changed[~ring].mean() > 0.001  # the others, dimmed
    qtbot.mouseClick(shown_list.viewport(), Qt.LeftButton, Qt.ControlModifier, shown_list.visualItemRect(item).center())
    assert changed_fraction(before, canvas_pixels(window)) == 0.0


def test_a_new_image_or_model_clears_the_inspection_panels_at_once(qtbot, make_window, journey_folder):
    window = make_window(journey_folder, model=MODEL)
    panel, funnel = window.stages_panel, window.funnel_panel
    choose_stage(qtbot, window, "roi-samples")
    assert panel.sample_table.rowCount() > 0 and funnel.table.rowCount() > 0
    first = [panel.sample_table.item(row, 2).text() for row in range(panel.sample_table.rowCount())]
    window.actions["next"].trigger()
    assert panel.sample_table.rowCount() == 0 and funnel.table.rowCount() == 0
    assert panel.explanation.text() == "Inspecting this image…"
    qtbot.waitUntil(lambda: panel.sample_table.rowCount() > 0, timeout=TIMEOUT_MS)  # the new image's inspection
    assert [panel.sample_table.item(row, 2).text() for row in range(panel.sample_table.rowCount())] != first
    choose_stage(qtbot, window, "class-scores")
    assert panel.class_table.rowCount() > 0
    with qtbot.waitSignal(window.model_ready, timeout=TIMEOUT_MS):
        window.load_model(MODEL, "none")  # what picking the model in the toolbar's box does
    assert panel.class_table.rowCount() == 0 and panel.sample_table.rowCount() == 0 and funnel.table.rowCount() == 0
    assert all(picture.pixmap().isNull() for picture in panel.feature_maps)


def test_tags_show_on_the_best_few_detections_and_the_others_under_the_mouse(qtbot, make_window, journey_folder):
    window = make_window(journey_folder, model=MODEL)
    slider = window.detections_panel.slider
    slider.setFocus()
    qtbot.keyClick(slider, Qt.Key_Home)  # score ≥ 0: every detection
    layer = window.canvas.detection_layer
    assert len(layer.shown) > 3 * TOP_TAGS
    assert sum(bool(tag) for tag in layer._labels) == TOP_TAGS
    untagged = next(index for index, tag in enumerate(layer._labels) if not tag
                    and layer.box_index_at(*centre(layer.shown[index].box)) == index)
    away = at(window, 1, 1)
    qtbot.mouseMove(window.canvas.viewport(), away)
    before = canvas_pixels(window)
    qtbot.mouseMove(window.canvas.viewport(), at(window, *centre(layer.shown[untagged].box)))
    assert layer.hovered_label() == f"{layer.shown[untagged].label} {layer.shown[untagged].score:.2f}"
    hovered = canvas_pixels(window)
    x1, _, _, y2 = layer.shown[untagged].box
    left, bottom = at(window, x1, y2).toTuple()
    tag_area = np.any(before != hovered, axis=2)[bottom - 20:bottom + 20, left:left + 60]
    assert tag_area.mean() > 0.1  # its tag under the box
    qtbot.mouseMove(window.canvas.viewport(), away)
    assert changed_fraction(before, canvas_pixels(window)) == 0.0
    # the stages' layer too: the best proposals tagged, the rest under the mouse
    choose_stage(qtbot, window, "proposals")
    stage_tags = window.inspector.layer._labels
    assert len(stage_tags) == 100 and sum(bool(tag) for tag in stage_tags) == TOP_TAGS


def centre(box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
