"""The stage inspector's finer choices, driven as a user drives them: a click on a proposal that
NMS suppressed shows the kept box that suppressed it, and the anchor filters restrict the shapes
drawn to one level, size and ratio."""
from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt
from torchvision.ops import box_iou

from frcnn_gui.inspector.overlays import box_at, pre_nms_shown_idx

from test_stages import TIMEOUT_MS, at, choose, settled, shown_boxes, window  # noqa: F401 (window: a fixture)


def test_a_click_on_a_suppressed_proposal_shows_the_box_that_suppressed_it(qtbot, window):  # noqa: F811
    choose(qtbot, window, "proposals-pre-nms")
    inspector = window.inspector
    proposals = inspector.trace.proposals
    shown = pre_nms_shown_idx(proposals)
    boxes = proposals.pre_nms_boxes

    def centre(index: int) -> list[float]:
        return ((boxes[index, :2] + boxes[index, 2:]) / 2).tolist()

    # a drawn suppressed proposal that a click at its centre picks (no other drawn box nearer)
    chosen = next(int(index) for index in shown if int(proposals.suppressed_by[index]) >= 0
                  and int(shown[box_at(boxes[shown], *centre(int(index)))]) == int(index))
    suppressor = int(proposals.suppressed_by[chosen])
    with qtbot.waitSignal(inspector.shown, timeout=TIMEOUT_MS):
        qtbot.mouseClick(window.canvas.viewport(), Qt.LeftButton, Qt.NoModifier, at(window, *centre(chosen)))
    assert inspector.selected_proposal == chosen
    iou = float(box_iou(boxes[chosen].reshape(1, 4), boxes[suppressor].reshape(1, 4))[0, 0])
    assert iou > proposals.nms_thresh
    assert f"suppressed by #{suppressor}, IoU {iou:.2f}" in window.stages_panel.explanation.text()
    drawn, layer = shown_boxes(window), inspector.layer
    assert len(drawn) == len(shown) + 2
    assert np.allclose(drawn[-2], boxes[chosen].double().numpy())
    assert np.allclose(drawn[-1], boxes[suppressor].double().numpy())
    # only the selected one tagged: their corners lie close; the suppressor's tag shows under the mouse
    assert layer._labels[-2:] == [f"#{chosen}", ""] and layer._hover_labels[-1] == f"#{suppressor} kept"
    # another stage and back keeps the choice; an NMS re-run drops it (its indices are gone)
    choose(qtbot, window, "proposals")
    window.stages_panel.nms_slider.setValue(50)
    choose(qtbot, window, "proposals-pre-nms")
    assert inspector.selected_proposal is None and len(shown_boxes(window)) == len(shown)


@pytest.mark.parametrize("level, ratio", [(0, 2.0), (-1, 0.5)])
def test_anchor_filters_restrict_the_shapes_drawn(qtbot, window, level, ratio):  # noqa: F811
    choose(qtbot, window, "anchors")
    inspector, panel = window.inspector, window.stages_panel
    config, trace = inspector.config.anchors, inspector.trace
    level = range(len(trace.anchors.grid_sizes))[level]
    assert panel.anchor_controls.isVisible()
    size = config.sizes[level][-1]
    everything = len(shown_boxes(window))
    for name, value in (("level", level), ("size", size), ("ratio", ratio)):
        combo = panel.anchor_filters[name]
        assert combo.itemText(0) == "all"
        with qtbot.waitSignal(inspector.shown, timeout=TIMEOUT_MS):
            combo.setCurrentIndex(combo.findData(value))
    assert inspector.anchor_filter == {"level": level, "size": size, "ratio": ratio}
    drawn = shown_boxes(window)
    assert 0 < len(drawn) < everything
    layer = inspector.layer
    widths = [layer._pens[pen].widthF() for pen in layer._pen_index]
    assert widths.count(2.0) == 1 and widths[-1] == 2.0  # the cell's anchors: one level, size and ratio
    sides = drawn[:, 2:] - drawn[:, :2]  # every drawn box, the faint sample too, in original pixels
    scale_y, scale_x = trace.scale
    ratios = sides[:, 1] * scale_y / (sides[:, 0] * scale_x)  # height / width in input pixels
    areas = sides[:, 0] * scale_x * sides[:, 1] * scale_y
    assert np.allclose(ratios, ratio, rtol=0.06)  # rtol: the base anchors' corners are rounded
    assert np.allclose(areas, size ** 2, rtol=0.06)
    with qtbot.waitSignal(inspector.shown, timeout=TIMEOUT_MS):
        panel.anchor_filters["ratio"].setCurrentIndex(0)  # "all" ratios again: every ratio of the cell
    widths = [layer._pens[pen].widthF() for pen in layer._pen_index]
    assert widths.count(2.0) == len(config.aspect_ratios[level])


def test_a_click_on_a_proposal_highlights_its_anchor_and_its_detections(qtbot, window):  # noqa: F811
    choose(qtbot, window, "proposals")
    inspector = window.inspector
    trace = inspector.trace
    detections = inspector.inspection.trace.detections
    # the drawn proposal whose RoI gave the best detection, clicked at its centre
    drawn_boxes = trace.proposals.boxes[:inspector.drawn]
    post_index = next(int(index) for index in detections.roi_idx if int(index) < inspector.drawn)
    box = trace.proposals.boxes[post_index]
    centre = ((box[:2] + box[2:]) / 2).tolist()
    picked = box_at(drawn_boxes, *centre)
    with qtbot.waitSignal(inspector.shown, timeout=TIMEOUT_MS):
        qtbot.mouseClick(window.canvas.viewport(), Qt.LeftButton, Qt.NoModifier, at(window, *centre))
    assert inspector.selected_post_proposal == picked
    pre_index = int(trace.proposals.post_nms_idx[picked])
    anchor = int(trace.proposals.pre_nms_anchor_idx[pre_index])
    text = window.stages_panel.explanation.text()
    assert f"grew from anchor #{anchor}" in text
    given = int((detections.roi_idx == picked).sum())
    assert f"gave {given} final detection" in text
    drawn = shown_boxes(window)
    assert np.allclose(drawn[len(drawn_boxes)], trace.anchors.boxes[anchor].double().numpy())
    assert len(drawn) == len(drawn_boxes) + 2 + given
    # after an NMS re-run the detections no longer belong to these proposals: no detection claimed
    window.stages_panel.nms_slider.setValue(40)
    settled(qtbot, window, "proposals")
    assert inspector.selected_post_proposal is None
