"""Journeys: Ctrl+S says what it wrote (or that nothing needed writing), in the status bar and the
log; an image seen and saved with no boxes gets labelImg's empty annotation, as does an empty
image marked verified; holding Space flips "verified" once; the image list sorts naturally."""
from __future__ import annotations

import xml.etree.ElementTree as ElementTree

from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from journeys_helpers import click, press, wait_autosave
from labelling_helpers import saved_objects


def status(window) -> str:
    return window.statusBar().currentMessage()


def go_to(qtbot, window, name: str) -> None:
    while window.document.current_path.name != name:
        press(qtbot, window, Qt.Key_D)


def test_ctrl_s_says_what_it_wrote_and_when_nothing_needed_writing(qtbot, window, journey_folder):
    click(qtbot, window, 330, 40)
    press(qtbot, window, Qt.Key_Right)  # a nudge, saved by Ctrl+S before the autosave comes
    press(qtbot, window, Qt.Key_S, Qt.ControlModifier)
    assert status(window) == "saved 16 boxes to cells-2.xml"
    assert window.log.toPlainText().splitlines()[-1].endswith("  saved 16 boxes to cells-2.xml")
    wbc = next(obj for obj in ElementTree.parse(journey_folder / "cells-2.xml").getroot().iter("object")
               if obj.findtext("name") == "WBC")
    assert wbc.findtext("bndbox/xmin") == "284"

    press(qtbot, window, Qt.Key_S, Qt.ControlModifier)
    assert status(window) == "cells-2.xml is up to date: 16 boxes"
    assert window.log.toPlainText().splitlines()[-1].endswith(f"  {status(window)}")


def test_ctrl_s_on_an_image_without_boxes_writes_an_empty_annotation(qtbot, window, journey_folder):
    go_to(qtbot, window, "photo-1.png")
    xml = journey_folder / "photo-1.xml"
    assert not xml.exists() and window.image_list.currentItem().text().startswith("○")
    press(qtbot, window, Qt.Key_S, Qt.ControlModifier)
    assert status(window) == "saved 0 boxes to photo-1.xml"
    assert saved_objects(xml) == [] and ElementTree.parse(xml).getroot().findtext("filename") == "photo-1.png"
    assert window.image_list.currentItem().text().startswith("●")
    press(qtbot, window, Qt.Key_S, Qt.ControlModifier)
    assert status(window) == "photo-1.xml is up to date: 0 boxes"


def test_space_on_an_empty_image_writes_an_empty_verified_annotation(qtbot, window, journey_folder):
    go_to(qtbot, window, "photo-3.jpg")
    press(qtbot, window, Qt.Key_Space)
    wait_autosave(qtbot)
    root = ElementTree.parse(journey_folder / "photo-3.xml").getroot()
    assert root.get("verified") == "yes" and root.findall("object") == []
    assert window.image_list.currentItem().text().startswith("✔")


def hold_space(widget, repeats: int) -> None:
    """Space pressed, auto-repeated `repeats` times as a held key is, then released."""
    QTest.simulateEvent(widget, True, Qt.Key_Space, Qt.NoModifier, " ", False)
    for _ in range(repeats):
        QTest.simulateEvent(widget, False, Qt.Key_Space, Qt.NoModifier, " ", True)
        QTest.simulateEvent(widget, True, Qt.Key_Space, Qt.NoModifier, " ", True)
    QTest.simulateEvent(widget, False, Qt.Key_Space, Qt.NoModifier, " ", False)


def test_holding_space_flips_verified_once_per_press(qtbot, window):
    canvas = window.canvas
    canvas.setFocus()
    steps = window.stack.count()
    hold_space(canvas, 7)
    assert window.document.verified and window.stack.count() == steps + 1
    hold_space(canvas, 4)
    assert not window.document.verified and window.stack.count() == steps + 2


def test_the_image_list_sorts_naturally(qtbot, window):
    names = [window.image_list.item(row).text().split()[-1] for row in range(window.image_list.count())]
    assert names == ["cells-2.jpg", "cells-10.jpg", "photo-1.png", "photo-3.jpg"]
    walked = [window.document.current_path.name]
    for _ in names[1:]:
        press(qtbot, window, Qt.Key_D)
        walked.append(window.document.current_path.name)
    assert walked == names
