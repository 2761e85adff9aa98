"""Journeys: model suggestions with the real bundled `bccd-demo` model on BCCD images, where it
finds most GT cells again (the reported bug: accepting took an image from 16 to 34 boxes).
Accepting never stacks a box on a GT box of its class and writes whole pixels; review mode walks
the other suggestions one at a time with the keys on the canvas, one undo step per decision."""
from __future__ import annotations

import math
import re

import pytest
import torch
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QPushButton
from torchvision.ops import box_iou

from frcnn_gui.document.boxes import Box

from journeys_helpers import action_names, canvas_pixels, changed_fraction, press, wait_autosave

DETECTIONS_TIMEOUT_MS = 60_000
SKIP_LINE = "skipped: already a GT box of that class (IoU ≥ 0.7)"


@pytest.fixture
def window(make_window, journey_folder):
    return make_window(journey_folder, model="bccd-demo")


def same_class_iou(boxes, others) -> torch.Tensor:
    """(N, M) IoU of two box lists, 0 between boxes of different classes (torchvision as oracle)."""
    iou = box_iou(torch.tensor([b.coords for b in boxes]).reshape(-1, 4),
                  torch.tensor([b.coords for b in others]).reshape(-1, 4))
    same = torch.tensor([[a.label == b.label for b in others] for a in boxes], dtype=torch.bool).reshape(iou.shape)
    return iou * same


def stacked_pairs(boxes) -> set:
    """Pairs of same-class boxes with IoU >= 0.7, each as a frozenset of (label, coords)."""
    iou = same_class_iou(boxes, boxes)
    return {frozenset({(boxes[i].label, boxes[i].coords), (boxes[j].label, boxes[j].coords)})
            for i, j in (iou >= 0.7).nonzero().tolist() if i < j}


def saved_coordinates(path) -> list[str]:
    return re.findall(r"<(?:xmin|ymin|xmax|ymax)>([^<]*)<", path.read_text(encoding="utf-8"))


def test_accepting_all_skips_the_gt_boxes_of_that_class_and_writes_whole_pixels(qtbot, window):
    document = window.document
    xml = document.images[document.current_index].annotation_path
    shown = list(window.canvas.detection_layer.shown)
    before = list(document.boxes.values())
    rounded = [Box(*(math.floor(v + 0.5) for v in d.box), d.label) for d in shown]  # halves up
    over_gt = int((same_class_iou(rounded, before).amax(dim=1) >= 0.7).sum())
    assert len(shown) > over_gt > 5, "the model finds most GT cells of this image again"
    steps = window.stack.index()

    press(qtbot, window, Qt.Key_Return, Qt.ControlModifier)  # Edit > Accept shown detections
    after = list(document.boxes.values())
    added = after[len(before):]
    assert after[:len(before)] == before and len(added) == len(shown) - over_gt
    assert stacked_pairs(after) == stacked_pairs(before)
    assert all(v == int(v) for box in added for v in box.coords)
    message = f"accepted {len(added)} boxes; {over_gt} {SKIP_LINE}"
    assert window.statusBar().currentMessage() == message and message in window.log.toPlainText()
    assert window.stack.index() == steps + 1

    window.actions["accept"].trigger()  # again: every suggestion is a GT box now
    assert len(document.boxes) == len(after) and window.stack.index() == steps + 1
    assert window.statusBar().currentMessage() == f"nothing accepted; {len(shown)} {SKIP_LINE}"

    wait_autosave(qtbot)
    coordinates = saved_coordinates(xml)
    assert len(coordinates) == 4 * len(after) and all(text.isdigit() for text in coordinates), coordinates
    press(qtbot, window, Qt.Key_Z, Qt.ControlModifier)
    assert list(document.boxes.values()) == before


def test_review_walks_the_suggestions_with_the_keys_one_undo_step_per_decision(qtbot, window):
    document, review, canvas = window.document, window.review, window.canvas
    panel = review.panel
    before = list(document.boxes.values())
    first_gt = next(iter(document.boxes))
    plain = canvas_pixels(window)

    review_button = next(b for b in window.detections_panel.findChildren(QPushButton) if b.text().startswith("Review"))
    qtbot.mouseClick(review_button, Qt.LeftButton)
    assert panel.isVisible() and window.focusWidget() is canvas
    suggestions = list(review.queue.suggestions)
    assert len(suggestions) >= 4
    assert [s.detection.score for s in suggestions] == sorted((s.detection.score for s in suggestions), reverse=True)
    assert same_class_iou([s.box for s in suggestions], before).amax(dim=1).lt(0.7).all()
    assert panel.suggestions.count() == len(suggestions) and panel.where.text() == f"suggestion 1 of {len(suggestions)}"
    on_first = canvas_pixels(window)
    assert changed_fraction(plain, on_first) > 0.001  # the current one highlighted, the rest dimmed

    press(qtbot, window, Qt.Key_Tab)
    assert review.queue.current == suggestions[1] and panel.suggestions.currentRow() == 1
    assert changed_fraction(on_first, canvas_pixels(window)) > 0.0005
    press(qtbot, window, Qt.Key_Backtab, Qt.ShiftModifier)  # Shift+Tab as X11 delivers it
    assert review.queue.current == suggestions[0]
    assert changed_fraction(on_first, canvas_pixels(window)) == 0.0
    press(qtbot, window, Qt.Key_Tab, Qt.ShiftModifier)  # round the front to the last
    assert review.queue.current == suggestions[-1]
    press(qtbot, window, Qt.Key_Tab)
    steps = window.stack.index()

    # Enter: the best suggestion becomes a GT box of its class, in whole pixels
    press(qtbot, window, Qt.Key_Return)
    assert list(document.boxes.values()) == [*before, suggestions[0].box]
    assert all(v == int(v) for v in suggestions[0].box.coords)
    assert review.queue.current == suggestions[1] and window.stack.index() == steps + 1

    # Delete: rejected, even with a GT box selected (it is not deleted)
    canvas.set_selection([first_gt])
    press(qtbot, window, Qt.Key_Delete)
    assert len(document.boxes) == len(before) + 1 and first_gt in document.boxes
    assert suggestions[1] not in review.queue.suggestions and review.queue.current == suggestions[2]
    assert window.stack.index() == steps + 2

    # a digit chooses the class before accepting; the tag on the canvas follows
    own_class, zoom = canvas_pixels(window), canvas.zoom_factor()
    press(qtbot, window, Qt.Key_1)
    assert panel.classes.currentIndex() == 0
    assert canvas.zoom_factor() == zoom, "1 chose a class, it did not zoom to actual size"
    other = next(name for name in document.classes if name != suggestions[2].box.label)
    number = document.classes.index(other) + 1
    press(qtbot, window, getattr(Qt, f"Key_{number}"))
    assert panel.classes.currentIndex() == number - 1 and review.queue.label == other
    assert changed_fraction(own_class, canvas_pixels(window)) > 0.0
    press(qtbot, window, Qt.Key_Enter, Qt.KeypadModifier)
    assert list(document.boxes.values())[-1] == Box(*suggestions[2].box.coords, other)
    assert suggestions[2] not in review.queue.suggestions, "decided: not suggested again as its own class"
    assert review.queue.current == suggestions[3] and window.stack.index() == steps + 3

    # Ctrl+Z takes back exactly one decision each: the accept as another class, then the reject
    press(qtbot, window, Qt.Key_Z, Qt.ControlModifier)
    assert len(document.boxes) == len(before) + 1 and review.queue.current == suggestions[2]
    press(qtbot, window, Qt.Key_Z, Qt.ControlModifier)
    assert len(document.boxes) == len(before) + 1 and review.queue.current == suggestions[1]
    assert window.stack.index() == steps + 1

    # a rejection holds for Accept shown detections too; Escape leaves review, the decisions stay
    press(qtbot, window, Qt.Key_Delete)
    assert suggestions[1] not in review.queue.suggestions
    press(qtbot, window, Qt.Key_Escape)
    assert not review.active and not panel.isVisible() and canvas.detection_layer.opacity() == 1.0
    press(qtbot, window, Qt.Key_Return, Qt.ControlModifier)
    assert suggestions[1].box not in document.boxes.values()
    assert "1 rejected in review" in window.statusBar().currentMessage()
    wait_autosave(qtbot)
    xml = document.images[document.current_index].annotation_path
    assert all(text.isdigit() for text in saved_coordinates(xml))


def test_review_starts_by_shortcut_follows_a_click_in_its_list_and_ends_with_done(qtbot, window):
    review, panel = window.review, window.review.panel
    press(qtbot, window, Qt.Key_R, Qt.ControlModifier | Qt.ShiftModifier)
    assert review.active and panel.isVisible() and len(review.queue.suggestions) >= 3
    third = panel.suggestions.visualItemRect(panel.suggestions.item(2)).center()
    qtbot.mouseClick(panel.suggestions.viewport(), Qt.LeftButton, pos=third)
    assert review.queue.current == review.queue.suggestions[2] and window.focusWidget() is window.canvas
    window.detections_panel.slider.setValue(99)  # a stricter threshold leaves fewer suggestions
    assert len(review.queue.suggestions) == panel.suggestions.count() < 3
    with qtbot.waitSignal(window.detections_shown, timeout=DETECTIONS_TIMEOUT_MS):
        press(qtbot, window, Qt.Key_D)  # the next image (BCCD too): review goes on there, from its best
    window.detections_panel.slider.setValue(50)
    assert review.active and review.queue.position == 0 and len(review.queue.suggestions) >= 1
    gt = list(window.document.boxes.values())
    assert same_class_iou([s.box for s in review.queue.suggestions], gt).amax(dim=1).lt(0.7).all()
    done = next(b for b in panel.findChildren(QPushButton) if b.text() == "Done")
    qtbot.mouseClick(done, Qt.LeftButton)
    assert not review.active and not panel.isVisible()
    gt_box = next(iter(window.document.boxes))
    window.canvas.set_selection([gt_box])
    press(qtbot, window, Qt.Key_Delete)  # out of review, Delete deletes the selected GT box again
    assert gt_box not in window.document.boxes

    review_entry = action_names(window)["View/Panels/Review"]
    review_entry.trigger()  # View > Panels > Review: the dock shown is review mode
    assert review.active and panel.isVisible()
    review_entry.trigger()
    assert not review.active and not panel.isVisible()
