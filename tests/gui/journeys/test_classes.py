"""Journeys: classes the labelImg way. A drawn box asks its class (completion, the last class
preselected, Escape drops the box); a typo never becomes a class; relabel by double-click, by
the right-click menu, by a click in the Classes list and in the boxes table (known classes
only); difficult, delete, copy / paste from the box menu; a selected box's handles resize it in
draw mode too; "Use default class" skips the prompt and is remembered."""
from __future__ import annotations

import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QApplication, QComboBox

from frcnn_gui.labelling import USE_DEFAULT_CLASS_KEY

from journeys_helpers import canvas_pixels, changed_fraction, click, drag, press, wait_autosave
from labelling_helpers import (
    answer,
    box_hit_at,
    centre,
    closed,
    draw_box,
    drawn_coords,
    prompt_opens,
    saved_objects,
    table_labels,
    through_the_window,
)

FREE = ((10, 10), (90, 90))  # an empty corner of cells-2.jpg: no GT box there
FREE_LOW = ((10, 370), (110, 470))


def listed(prompt) -> list[str]:
    """The classes the prompt's list shows."""
    return [prompt.list.item(row).text() for row in range(prompt.list.count()) if not prompt.list.item(row).isHidden()]


def boxes_of(window) -> list[tuple[tuple[float, ...], str]]:
    return [(box.coords, box.label) for box in window.document.boxes.values()]


def test_a_drawn_box_asks_its_class_with_completion_and_the_last_class_preselected(qtbot, window):
    before_boxes, before_pixels = boxes_of(window), canvas_pixels(window)
    draw_box(qtbot, window, *FREE)
    prompt = prompt_opens(qtbot, window)
    assert prompt.name_edit.text() == window.classes_panel.current_label() == "RBC"
    assert listed(prompt) == window.document.classes
    assert changed_fraction(before_pixels, canvas_pixels(window)) > 0.001  # the new box shows while asked
    qtbot.keyClicks(prompt.name_edit, "pla")
    assert prompt.name_edit.text() == "platelets" and listed(prompt) == ["Platelets"]  # completed inline
    answer(qtbot, window)  # Enter takes the class "Platelets"
    closed(qtbot, window)
    assert boxes_of(window) == [*before_boxes, (drawn_coords(window, *FREE), "Platelets")]
    assert table_labels(window)[-1] == "Platelets"
    assert window.classes_panel.current_label() == "Platelets"
    assert window.canvas.selection == [list(window.document.boxes)[-1]]

    drawn_pixels = canvas_pixels(window)
    draw_box(qtbot, window, *FREE_LOW)
    assert prompt_opens(qtbot, window).name_edit.text() == "Platelets"  # the last class used
    answer(qtbot, window, key=Qt.Key_Escape)
    closed(qtbot, window)
    assert len(window.document.boxes) == len(before_boxes) + 1
    assert changed_fraction(drawn_pixels, canvas_pixels(window)) == 0.0


def test_a_typo_never_becomes_a_class_only_the_add_button_makes_one(qtbot, window, journey_folder):
    classes = list(window.document.classes)
    draw_box(qtbot, window, *FREE)
    answer(qtbot, window, "racon")  # Enter on a name that is not a class: nothing happens
    prompt = window.labelling.prompt
    assert prompt.isVisible() and not prompt.use_button.isEnabled()
    assert prompt.warning.isVisible() and "'racon' is not a class yet" in prompt.warning.text()
    assert prompt.add_button.isVisible() and prompt.add_button.text() == "&Add class 'racon'"
    assert window.document.classes == classes and len(window.document.boxes) == 16

    qtbot.mouseClick(prompt.add_button, Qt.LeftButton)
    closed(qtbot, window)
    assert window.document.classes == [*classes, "racon"]
    assert boxes_of(window)[-1] == (drawn_coords(window, *FREE), "racon")
    wait_autosave(qtbot)
    assert (journey_folder / "classes.txt").read_text().split() == [*classes, "racon"]
    draw_box(qtbot, window, *FREE_LOW)  # the new class is the last used one now, and a class
    prompt = prompt_opens(qtbot, window)
    assert prompt.name_edit.text() == "racon" and prompt.use_button.isEnabled() and not prompt.warning.isVisible()
    answer(qtbot, window, key=Qt.Key_Escape)
    closed(qtbot, window)

    press(qtbot, window, Qt.Key_Z, Qt.ControlModifier)  # box and class go in one step
    assert window.document.classes == classes and len(window.document.boxes) == 16


def test_a_name_in_another_case_is_that_class(qtbot, window):
    draw_box(qtbot, window, *FREE)
    answer(qtbot, window, "wbc")
    closed(qtbot, window)
    assert boxes_of(window)[-1] == (drawn_coords(window, *FREE), "WBC") and "wbc" not in window.document.classes


def test_double_click_on_a_box_relabels_it_in_one_undo_step(qtbot, window, journey_folder):
    box_id = box_hit_at(window, 330, 40)  # the WBC at the top
    assert window.document.boxes[box_id].label == "WBC"
    through_the_window(qtbot, window, 330, 40, double=True)
    prompt = prompt_opens(qtbot, window)
    assert prompt.name_edit.text() == "WBC" and window.canvas.selection == [box_id]
    assert listed(prompt) == window.document.classes  # every class to choose from, not only the preselected
    answer(qtbot, window, "RBC")
    closed(qtbot, window)
    row = list(window.document.boxes).index(box_id)
    assert window.document.boxes[box_id].label == "RBC" and table_labels(window)[row] == "RBC"
    wait_autosave(qtbot)
    assert saved_objects(journey_folder / "cells-2.xml")[row]["name"] == "RBC"
    press(qtbot, window, Qt.Key_Z, Qt.ControlModifier)
    assert window.document.boxes[box_id].label == "WBC" and table_labels(window)[row] == "WBC"

    steps = window.stack.index()
    press(qtbot, window, Qt.Key_E, Qt.ControlModifier)  # labelImg's "edit label" on the selection
    assert prompt_opens(qtbot, window).name_edit.text() == "WBC"
    answer(qtbot, window, "Platelets", key=Qt.Key_Escape)
    closed(qtbot, window)
    assert window.document.boxes[box_id].label == "WBC" and window.stack.index() == steps


def choose_in_menu(qtbot, window, text: str) -> None:
    """Pick the entry `text` of the open box menu with the keyboard (arrows, then Enter)."""
    menu = window.labelling.menu
    qtbot.waitUntil(lambda: QApplication.activePopupWidget() is menu)
    entries = [action for action in menu.actions() if action.isEnabled() and not action.isSeparator()]
    for _ in range([action.text() for action in entries].index(text) + 1):
        qtbot.keyClick(menu, Qt.Key_Down)
    assert menu.activeAction().text() == text
    qtbot.keyClick(menu, Qt.Key_Return)
    qtbot.waitUntil(lambda: not menu.isVisible())


def right_click(qtbot, window, x: float, y: float) -> None:
    through_the_window(qtbot, window, x, y, button=Qt.RightButton)


def test_right_click_menu_marks_difficult_relabels_and_deletes(qtbot, window, journey_folder):
    x, y = centre(window, list(window.document.boxes)[0])
    box_id = box_hit_at(window, x, y)
    right_click(qtbot, window, x, y)
    assert window.canvas.selection == [box_id]
    assert [action.text() for action in window.labelling.menu.actions()] == [
        "Relabel…", "Delete", "Difficult", "Copy boxes", "Paste boxes"]
    choose_in_menu(qtbot, window, "Difficult")
    row = list(window.document.boxes).index(box_id)
    assert window.document.boxes[box_id].difficult and window.actions["difficult"].isChecked()
    wait_autosave(qtbot)
    assert saved_objects(journey_folder / "cells-2.xml")[row]["difficult"] == "1"

    right_click(qtbot, window, x + 6, y + 6)  # elsewhere: at the same place Qt would see a double-click
    choose_in_menu(qtbot, window, "Relabel…")
    answer(qtbot, window, "WBC")
    closed(qtbot, window)
    assert window.document.boxes[box_id].label == "WBC" and window.document.boxes[box_id].difficult

    right_click(qtbot, window, x - 6, y - 6)
    choose_in_menu(qtbot, window, "Delete")
    assert box_id not in window.document.boxes and len(table_labels(window)) == 15
    press(qtbot, window, Qt.Key_Z, Qt.ControlModifier)
    assert window.document.boxes[box_id].label == "WBC"


def test_copy_then_paste_onto_another_image_and_onto_the_same(qtbot, window, journey_folder):
    box_id = box_hit_at(window, 330, 40)
    copied = window.document.boxes[box_id]
    click(qtbot, window, 330, 40)
    press(qtbot, window, Qt.Key_C, Qt.ControlModifier)
    press(qtbot, window, Qt.Key_D)
    assert window.document.current_path.name == "cells-10.jpg" and len(window.document.boxes) == 19
    press(qtbot, window, Qt.Key_V, Qt.ControlModifier)
    pasted = window.document.boxes[window.canvas.selection[0]]
    assert pasted == copied and len(window.document.boxes) == 20 and table_labels(window)[-1] == "WBC"
    wait_autosave(qtbot)
    assert [obj["name"] for obj in saved_objects(journey_folder / "cells-10.xml")][-1] == "WBC"

    press(qtbot, window, Qt.Key_A)
    right_click(qtbot, window, 330, 40)
    choose_in_menu(qtbot, window, "Paste boxes")  # onto the image it came from: 10 px down-right
    pasted = window.document.boxes[window.canvas.selection[0]]
    assert pasted.coords == (293, 11, 577, 116) and pasted.label == "WBC" and len(window.document.boxes) == 17


def test_a_click_on_a_class_relabels_the_selected_boxes_in_one_step(qtbot, window):
    first, second = box_hit_at(window, 40, 280), box_hit_at(window, 180, 400)
    click(qtbot, window, 40, 280)
    click(qtbot, window, 180, 400, modifiers=Qt.ShiftModifier)
    assert window.canvas.selection == [first, second]
    steps = window.stack.count()
    classes = window.classes_panel.list
    item = classes.findItems("Platelets", Qt.MatchExactly)[0]
    qtbot.mouseClick(classes.viewport(), Qt.LeftButton, Qt.NoModifier, classes.visualItemRect(item).center())
    assert [window.document.boxes[box_id].label for box_id in (first, second)] == ["Platelets", "Platelets"]
    assert window.stack.count() == steps + 1 and window.canvas.current_label == "Platelets"
    press(qtbot, window, Qt.Key_Z, Qt.ControlModifier)
    assert [window.document.boxes[box_id].label for box_id in (first, second)] == ["RBC", "RBC"]

    click(qtbot, window, *FREE[0])  # nothing selected: a class click only chooses the class of new boxes
    item = classes.findItems("WBC", Qt.MatchExactly)[0]
    qtbot.mouseClick(classes.viewport(), Qt.LeftButton, Qt.NoModifier, classes.visualItemRect(item).center())
    assert window.stack.index() == steps and window.canvas.current_label == "WBC"


def test_the_boxes_table_offers_only_known_classes(qtbot, window):
    table = window.boxes_table
    cell = table.visualItemRect(table.item(0, 0)).center()
    qtbot.mouseClick(table.viewport(), Qt.LeftButton, Qt.NoModifier, cell)  # a double-click's first click
    qtbot.mouseDClick(table.viewport(), Qt.LeftButton, Qt.NoModifier, cell)
    editor = table.findChild(QComboBox)
    qtbot.waitUntil(lambda: editor is not None and editor.isVisible())
    assert not editor.isEditable()
    assert [editor.itemText(index) for index in range(editor.count())] == window.document.classes
    assert editor.currentText() == "RBC"
    qtbot.keyClick(editor, Qt.Key_Down)  # the next class: a choice applies at once
    assert table_labels(window)[0] == window.document.classes[1] == "WBC"
    assert next(iter(window.document.boxes.values())).label == "WBC"
    press(qtbot, window, Qt.Key_Z, Qt.ControlModifier)
    assert table_labels(window)[0] == "RBC"


def test_a_selected_box_handle_resizes_in_draw_mode_as_in_select_mode(qtbot, window):
    box_id = box_hit_at(window, 330, 40)
    click(qtbot, window, 330, 40)
    count = len(window.document.boxes)
    corner_reached = (567, 106)
    for mode in ("draw", "select"):
        corner = corner_reached
        if window.canvas.mode != mode:
            press(qtbot, window, Qt.Key_W)
        target = (corner[0] + 10, corner[1] + 10)
        drag(qtbot, window, corner, target)
        assert not window.labelling.prompt.isVisible()
        # the corner follows the mouse to within a pixel: viewport pixels are not image pixels at this zoom
        assert window.document.boxes[box_id].coords == pytest.approx((283, 1, *target), abs=1)
        assert len(window.document.boxes) == count
        corner_reached = window.document.boxes[box_id].coords[2:]


def test_use_default_class_skips_the_prompt_and_is_remembered(qtbot, window):
    window.actions["default_class"].trigger()
    assert window.actions["default_class"].isChecked()
    draw_box(qtbot, window, *FREE)
    qtbot.wait(50)
    assert not window.labelling.prompt.isVisible()
    assert boxes_of(window)[-1] == (drawn_coords(window, *FREE), "RBC")
    window.settings.sync()
    assert QSettings(window.settings.fileName(), QSettings.IniFormat).value(USE_DEFAULT_CLASS_KEY, type=bool)
    window.actions["default_class"].trigger()
    draw_box(qtbot, window, *FREE_LOW)
    answer(qtbot, window)
    closed(qtbot, window)
    assert boxes_of(window)[-1] == (drawn_coords(window, *FREE_LOW), "RBC")
