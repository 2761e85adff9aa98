"""Hand-checkable cases of what the inspector draws: the objectness level it opens on, dimmed parts
behind a selection, the detections' tags and pick, and a canvas that lets the inspector have its
clicks."""
from __future__ import annotations

import torch
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor

from frcnn_core.modeling.trace import AnchorsTrace, ObjectnessTrace
from frcnn_gui.canvas.layers import DETECTION_WIDTH, PICKED_WIDTH, TOP_TAGS, detection_colour, dimmed
from frcnn_gui.document.document import Detection
from frcnn_gui.inspector.overlays import dimmed_part, overlay_of
from frcnn_gui.inspector.pictures import likely_per_level, liveliest_level

from test_canvas import add, at, canvas, doc, drag, stack  # noqa: F401 (fixtures)


class TwoLevels:
    """A trace of two levels, 2 x 2 cells x 1 shape and 1 x 1 cell x 1 shape, with given logits."""

    def __init__(self, logits: list[float]):
        self.anchors = AnchorsTrace(torch.zeros(5, 4), torch.tensor([0, 0, 0, 0, 1]), torch.ones(5, dtype=torch.bool),
                                    [(2, 2), (1, 1)], [(16, 16), (32, 32)], [1, 1])
        self.objectness = ObjectnessTrace(torch.tensor(logits), torch.zeros(5, 4))


def test_the_objectness_opens_where_most_anchors_score_above_one_half():
    assert likely_per_level(TwoLevels([-1.0, -1.0, -1.0, 0.5, 2.0])) == [1, 1]
    assert liveliest_level(TwoLevels([-1.0, -1.0, -1.0, 0.5, 2.0])) == 0  # a tie: the finer level
    assert liveliest_level(TwoLevels([-1.0, -1.0, -1.0, -1.0, 2.0])) == 1  # the finer level is empty
    assert liveliest_level(TwoLevels([-3.0, -0.5, -3.0, -3.0, -2.0])) == 0  # none above 0.5: the highest score


def test_a_dimmed_part_is_thin_without_halo_and_tags_only_under_the_mouse():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 20.0, 20.0]])
    colour = QColor("#e6194b")
    selected = (boxes[:1], QColor(Qt.white), 3.0, ["#0"])
    overlay = overlay_of([dimmed_part((boxes, colour, 2.0, ["0.9", ""])), selected])
    assert overlay.tags == ["", "", "#0"] and overlay.hover_tags == ["0.9", "", "#0"]
    assert overlay.widths.tolist() == [1.0, 1.0, 3.0] and overlay.halos.tolist() == [False, False, True]
    assert [each.rgba() for each in overlay.colours] == [dimmed(colour).rgba()] * 2 + [QColor(Qt.white).rgba()]
    assert dimmed(colour).valueF() < colour.valueF() and dimmed(colour).alpha() == 255


def test_detections_tag_the_best_few_and_draw_the_picked_ones_on_top(canvas, doc):  # noqa: F811
    detections = [Detection((10 * i, 10, 10 * i + 8, 18), 0.5 + i / 100, "RBC") for i in range(20)]
    doc.set_detections(detections)
    layer = canvas.detection_layer
    best = sorted(detections, key=lambda d: -d.score)[:TOP_TAGS]
    assert [text for text in layer._labels if text] == [f"RBC {d.score:.2f}" for d in reversed(best)]
    assert layer._hover_labels == [f"RBC {d.score:.2f}" for d in layer.shown]  # every one under the mouse
    picked = detections[3]
    layer.set_picked([picked])
    assert layer.shown[-1] == picked and layer._labels[-1] == "RBC 0.53"
    widths = [layer._pens[index].widthF() for index in layer._pen_index]
    colours = [layer._pens[index].color().rgba() for index in layer._pen_index]
    assert widths == [DETECTION_WIDTH] * 19 + [PICKED_WIDTH]
    assert colours == [dimmed(detection_colour("RBC")).rgba()] * 19 + [detection_colour("RBC").rgba()]
    layer.set_picked([])
    assert [layer._pens[index].widthF() for index in layer._pen_index] == [DETECTION_WIDTH] * 20


def test_while_inspecting_a_click_on_a_box_selects_nothing_and_a_drag_moves_nothing(qtbot, canvas, doc,  # noqa: F811
                                                                                    stack):  # noqa: F811
    box_id = add(doc, 100, 100, 200, 180)
    canvas.inspecting = True
    clicked = []
    canvas.point_clicked.connect(lambda x, y: clicked.append((x, y)))
    qtbot.mouseClick(canvas.viewport(), Qt.LeftButton, Qt.NoModifier, at(canvas, 150, 140))
    assert canvas.selection == [] and len(clicked) == 1
    drag(qtbot, canvas, at(canvas, 150, 140), at(canvas, 190, 170))
    assert doc.boxes[box_id].coords == (100, 100, 200, 180) and stack.count() == 0
    canvas.inspecting = False  # the same gestures edit again
    drag(qtbot, canvas, at(canvas, 150, 140), at(canvas, 190, 170))
    assert canvas.selection == [box_id] and doc.boxes[box_id].coords != (100, 100, 200, 180)
    assert stack.count() == 1
