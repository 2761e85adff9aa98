"""Journey: each image keeps its own undo history. Ctrl+Z undoes only the shown image's edits and
never jumps to another image; going back to an image brings its history back; opening a folder
starts afresh."""
from __future__ import annotations

from PySide6.QtCore import Qt

from journeys_helpers import click, press, wait_autosave
from labelling_helpers import box_hit_at, saved_objects


def delete_box_at(qtbot, window, x: float, y: float) -> int:
    box_id = box_hit_at(window, x, y)
    click(qtbot, window, x, y)
    press(qtbot, window, Qt.Key_Delete)
    assert box_id not in window.document.boxes
    return box_id


def shown(window) -> tuple[str, str, int]:
    """The image the document, the canvas and the image list show, and its number of boxes."""
    names = {window.document.current_path.name, window.canvas.image_path.name,
             window.document.images[window.image_list.currentRow()].path.name}
    assert len(names) == 1, names
    return names.pop(), window.boxes_table.rowCount(), len(window.document.boxes)


def test_undo_stays_on_the_image_and_each_image_keeps_its_history(qtbot, window, journey_folder):
    undo, redo = window.actions["undo"], window.actions["redo"]
    delete_box_at(qtbot, window, 330, 40)  # cells-2: the WBC
    press(qtbot, window, Qt.Key_D)
    assert shown(window) == ("cells-10.jpg", 19, 19) and not undo.isEnabled()
    delete_box_at(qtbot, window, 300, 280)  # cells-10: the WBC
    assert undo.text() == "Undo Delete box 'WBC'"

    press(qtbot, window, Qt.Key_Z, Qt.ControlModifier)
    assert shown(window) == ("cells-10.jpg", 19, 19) and not undo.isEnabled()
    press(qtbot, window, Qt.Key_Z, Qt.ControlModifier)  # nothing left here: no jump to cells-2
    assert shown(window) == ("cells-10.jpg", 19, 19)
    assert [obj["name"] for obj in saved_objects(journey_folder / "cells-2.xml")].count("WBC") == 0

    press(qtbot, window, Qt.Key_A)
    assert shown(window) == ("cells-2.jpg", 15, 15)
    assert undo.isEnabled() and undo.text() == "Undo Delete box 'WBC'"
    press(qtbot, window, Qt.Key_Z, Qt.ControlModifier)
    assert shown(window) == ("cells-2.jpg", 16, 16)
    wait_autosave(qtbot)
    assert len(saved_objects(journey_folder / "cells-2.xml")) == 16

    press(qtbot, window, Qt.Key_D)
    assert redo.isEnabled() and redo.text() == "Redo Delete box 'WBC'"
    press(qtbot, window, Qt.Key_Z, Qt.ControlModifier | Qt.ShiftModifier)
    assert shown(window) == ("cells-10.jpg", 18, 18)
    assert window.stack is window.history.stack_of(window.document.current_path)

    window.open_path(journey_folder)  # a folder opened again starts with no history
    assert not undo.isEnabled() and not redo.isEnabled()
    press(qtbot, window, Qt.Key_D)
    assert not undo.isEnabled() and not redo.isEnabled()
