"""The main window driven as a user drives it: real key presses and mouse drags on a folder with a
labelled image, an unlabelled one, a corrupt image and an image whose XML is malformed; autosaved
files read back; a real (random-weight, fast) model in the worker thread."""
from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
import torch
from PIL import Image
from PySide6.QtCore import QPoint, QPointF, QSettings, Qt
from PySide6.QtWidgets import QPushButton

from frcnn_core.data.voc import read_voc_xml, write_voc_xml
from frcnn_core.resources import SAMPLES
from frcnn_gui.main_window import AUTOSAVE_DELAY_MS, MainWindow

FAST_MODEL = "mobilenet-v3-320-fpn"
TIMEOUT_MS = 60_000
SIZE = (160, 120)
LABELLED, PLAIN, CORRUPT, MALFORMED = range(4)  # image indices, in file-name order
MALFORMED_XML = b"<annotation><size><width>160</width></size><object><name>cat"


@pytest.fixture
def folder(tmp_path) -> Path:
    """1_labelled.jpg (+ XML with one box), 2_plain.png, 3_corrupt.jpg, 4_malformed.png (+ bad XML)."""
    images = tmp_path / "images"
    images.mkdir()
    crop = (0, 0, *SIZE)
    Image.open(SAMPLES / "rocket.jpg").convert("RGB").crop(crop).save(images / "1_labelled.jpg")
    write_voc_xml(images / "1_labelled.xml", images / "1_labelled.jpg", *SIZE, [[10, 20, 60, 80]], ["rocket"])
    Image.open(SAMPLES / "chelsea.png").convert("RGB").crop(crop).save(images / "2_plain.png")
    (images / "3_corrupt.jpg").write_bytes(b"this is not a JPEG at all" * 10)
    Image.open(SAMPLES / "BloodImage_00002.jpg").convert("RGB").crop(crop).save(images / "4_malformed.png")
    (images / "4_malformed.xml").write_bytes(MALFORMED_XML)
    return images


@pytest.fixture
def window(qtbot, folder, tmp_path):
    torch.manual_seed(0)
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)
    main = MainWindow(FAST_MODEL, "none", "cpu", settings=settings)
    qtbot.addWidget(main)
    with qtbot.waitSignal(main.detections_shown, timeout=TIMEOUT_MS):
        main.open_path(folder)
        main.show()
    qtbot.waitUntil(lambda: main.windowHandle().isExposed())
    main.activateWindow()
    qtbot.waitUntil(main.isActiveWindow)
    return main


def press(qtbot, window, key, modifiers=Qt.NoModifier) -> None:
    qtbot.keyClick(window, key, modifiers)


def go_to(qtbot, window, index: int) -> None:
    while window.document.current_index < index:
        press(qtbot, window, Qt.Key_D)
    while window.document.current_index > index:
        press(qtbot, window, Qt.Key_A)


def at(window, x: float, y: float) -> QPoint:
    """The canvas viewport pixel that shows image point (x, y)."""
    point = window.canvas.viewportTransform().map(QPointF(x, y))
    return QPoint(round(point.x()), round(point.y()))


def draw(qtbot, window, x1, y1, x2, y2) -> None:
    """W, then a left drag on the canvas from image point (x1, y1) to (x2, y2), Enter in the class
    prompt when it opens (the current class), then W again."""
    press(qtbot, window, Qt.Key_W)
    assert window.canvas.mode == "draw"
    viewport = window.canvas.viewport()
    start, end = at(window, x1, y1), at(window, x2, y2)
    qtbot.mousePress(viewport, Qt.LeftButton, Qt.NoModifier, start)
    for step in range(1, 5):
        qtbot.mouseMove(viewport, start + (end - start) * (step / 4))
    qtbot.mouseRelease(viewport, Qt.LeftButton, Qt.NoModifier, end)
    prompt = window.labelling.prompt
    if prompt.isVisible():
        qtbot.waitUntil(prompt.isActiveWindow)
        qtbot.keyClick(prompt.name_edit, Qt.Key_Return)
        assert not prompt.isVisible()
        qtbot.waitUntil(window.isActiveWindow)
    press(qtbot, window, Qt.Key_W)
    assert window.canvas.mode == "select"


def saved_boxes(path: Path) -> list[list[float]] | None:
    """The boxes the XML at `path` holds; None when there is no file or it does not parse."""
    try:
        return read_voc_xml(path).boxes.tolist()
    except Exception:  # noqa: BLE001 - a file being replaced or missing reads as "not yet"
        return None


def wait_for_file(qtbot, path: Path, expected) -> None:
    qtbot.waitUntil(lambda: saved_boxes(path) is not None and approx(saved_boxes(path), expected),
                    timeout=AUTOSAVE_DELAY_MS * 10)


def approx(boxes, expected, tolerance=1.0) -> bool:
    return len(boxes) == len(expected) and all(
        abs(a - b) <= tolerance
        for box, want in zip(boxes, expected, strict=True) for a, b in zip(box, want, strict=True))


def log_text(window) -> str:
    return window.log.toPlainText()


# -- folder navigation and bad inputs ----------------------------------------------------------

def test_a_and_d_walk_the_folder_and_bad_files_are_error_rows(qtbot, window, folder):
    assert window.document.current_index == LABELLED and window.image_list.currentRow() == LABELLED
    for index in (PLAIN, CORRUPT, MALFORMED):
        press(qtbot, window, Qt.Key_D)
        assert window.document.current_index == index
        assert window.image_list.currentRow() == index
    press(qtbot, window, Qt.Key_D)  # past the last image: stays
    assert window.document.current_index == MALFORMED

    for index, name in ((CORRUPT, "3_corrupt.jpg"), (MALFORMED, "4_malformed.xml")):
        entry = window.document.images[index]
        assert entry.status == "error"
        assert name in entry.error and "\n" not in entry.error
        assert window.image_list.item(index).toolTip() == entry.error
        assert window.image_list.item(index).text().startswith("✖")
        assert entry.error in log_text(window)

    go_to(qtbot, window, CORRUPT)
    assert window.statusBar().currentMessage() == window.document.images[CORRUPT].error
    assert window.detections_panel.count.text() == "0 of 0 detections"
    draw(qtbot, window, 10, 10, 50, 50)  # nothing to draw on: nothing happens
    press(qtbot, window, Qt.Key_Space)
    assert window.stack.count() == 0 and window.document.boxes == {}

    press(qtbot, window, Qt.Key_A)
    assert window.document.current_index == PLAIN
    draw(qtbot, window, 20, 30, 100, 90)
    assert [box.coords for box in window.document.boxes.values()] == [(20, 30, 100, 90)]
    wait_for_file(qtbot, folder / "2_plain.xml", [[20, 30, 100, 90]])


# -- drawing, autosave, undo / redo --------------------------------------------------------------

def test_drawn_box_is_autosaved_and_undo_redo_follow_in_the_file(qtbot, window, folder):
    xml = folder / "1_labelled.xml"
    draw(qtbot, window, 80.3, 40.2, 150.1, 110.4)
    existing, drawn = [10, 20, 60, 80], [80, 40, 150, 110]
    wait_for_file(qtbot, xml, [existing, drawn])

    press(qtbot, window, Qt.Key_Z, Qt.ControlModifier)
    wait_for_file(qtbot, xml, [existing])
    press(qtbot, window, Qt.Key_Z, Qt.ControlModifier | Qt.ShiftModifier)
    wait_for_file(qtbot, xml, [existing, drawn])

    # each image has its own history: an undo on another image never goes back to this one
    press(qtbot, window, Qt.Key_D)
    press(qtbot, window, Qt.Key_Z, Qt.ControlModifier)
    assert window.document.current_index == PLAIN and window.image_list.currentRow() == PLAIN
    press(qtbot, window, Qt.Key_A)
    press(qtbot, window, Qt.Key_Z, Qt.ControlModifier)
    wait_for_file(qtbot, xml, [existing])


def test_space_marks_the_image_verified_in_labelimg_style(qtbot, window, folder):
    xml = folder / "1_labelled.xml"
    press(qtbot, window, Qt.Key_Space)
    assert window.document.verified
    qtbot.waitUntil(lambda: ElementTree.parse(xml).getroot().get("verified") == "yes",
                    timeout=AUTOSAVE_DELAY_MS * 10)
    assert approx(saved_boxes(xml), [[10, 20, 60, 80]])
    assert window.image_list.item(LABELLED).text().startswith("✔")
    assert "(verified)" in window.windowTitle()
    press(qtbot, window, Qt.Key_Space)
    qtbot.waitUntil(lambda: ElementTree.parse(xml).getroot().get("verified") is None,
                    timeout=AUTOSAVE_DELAY_MS * 10)


# -- detections ------------------------------------------------------------------------------------

def test_score_slider_filters_without_the_engine_and_accept_is_one_undo_step(qtbot, window, monkeypatch):
    detections = window.document.detections
    assert detections, "a random-weight model still returns its top 100 boxes at threshold 0"
    requests = []
    detect = window.engine.detect
    monkeypatch.setattr(window.engine, "detect", lambda *args, **kwargs: requests.append(args) or detect(*args))
    layer, slider = window.canvas.detection_layer, window.detections_panel.slider

    slider.setValue(0)
    assert len(layer.shown) == len(detections)
    assert window.detections_panel.count.text() == f"{len(detections)} of {len(detections)} detections"
    median = sorted(d.score for d in detections)[len(detections) // 2]
    slider.setValue(int(median * 100) + 1)
    above = sum(d.score >= slider.value() / 100 for d in detections)
    assert len(layer.shown) == above < len(detections)
    slider.setValue(100)
    assert len(layer.shown) == sum(d.score >= 1.0 for d in detections) == 0
    assert requests == []

    slider.setValue(0)
    before, undo_steps = len(window.document.boxes), window.stack.count()
    accept_shown = next(button for button in window.detections_panel.findChildren(QPushButton)
                        if button.text() == "Accept shown as GT")
    qtbot.mouseClick(accept_shown, Qt.LeftButton)
    assert len(window.document.boxes) == before + len(detections)
    assert window.stack.count() == undo_steps + 1
    first_two = list(window.document.boxes)[:2]
    window.canvas.set_selection(first_two)
    assert window.boxes_table.selected_ids() == first_two
    press(qtbot, window, Qt.Key_Z, Qt.ControlModifier)
    assert len(window.document.boxes) == before
    assert requests == []


# -- models ------------------------------------------------------------------------------------------

def test_model_switch_and_bad_models_keep_the_old_one_working(qtbot, window, tmp_path):
    with qtbot.waitSignal(window.model_ready, timeout=TIMEOUT_MS) as ready:
        window.load_model("mobilenet-v3-fpn", "none")
    assert ready.args == ["mobilenet-v3-fpn"] and window.model_name == "mobilenet-v3-fpn"
    assert "mobilenet-v3-fpn" in window.status.model_label.text()
    assert window.model_box.currentData() == "mobilenet-v3-fpn"

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00\x01 not a checkpoint " * 50)
    for model, named in (("no-such-model", "no-such-model"), (str(garbage), "garbage.pt")):
        with qtbot.waitSignal(window.engine_failed, timeout=TIMEOUT_MS) as failed:
            window.load_model(model, "none")
        message = failed.args[0]
        assert named in message and "\n" not in message and "Traceback" not in log_text(window)
        assert window.statusBar().currentMessage() == message
        assert message in log_text(window)
        assert window.model_name == "mobilenet-v3-fpn"
        assert window.status.model_label.text().startswith("model: mobilenet-v3-fpn")
        assert window.model_box.currentData() == "mobilenet-v3-fpn"

    with qtbot.waitSignal(window.engine.result, timeout=TIMEOUT_MS) as result:
        window.detect()
    assert result.args[0].image_path.endswith("1_labelled.jpg")
    assert window.settings.value("model") == "mobilenet-v3-fpn"


# -- files ---------------------------------------------------------------------------------------------

def test_malformed_xml_is_left_alone_until_an_edit_then_backed_up(qtbot, window, folder):
    xml = folder / "4_malformed.xml"
    go_to(qtbot, window, MALFORMED)
    assert window.document.current_index == MALFORMED
    press(qtbot, window, Qt.Key_S, Qt.ControlModifier)
    qtbot.wait(AUTOSAVE_DELAY_MS * 2)
    assert xml.read_bytes() == MALFORMED_XML
    go_to(qtbot, window, PLAIN)
    go_to(qtbot, window, MALFORMED)
    assert xml.read_bytes() == MALFORMED_XML and not (folder / "4_malformed.xml.bak").exists()

    draw(qtbot, window, 30, 30, 90, 100)
    wait_for_file(qtbot, xml, [[30, 30, 90, 100]])
    assert (folder / "4_malformed.xml.bak").read_bytes() == MALFORMED_XML
    assert window.document.images[MALFORMED].status == "annotated"


def test_close_stops_the_worker_without_hanging(qtbot, window):
    thread = window.engine._thread
    window.detect()  # a request in flight while closing
    started = time.perf_counter()
    window.close()
    assert time.perf_counter() - started < 6.0
    qtbot.waitUntil(lambda: not thread.isRunning(), timeout=10_000)


def test_export_then_import_coco_through_the_menu_actions(qtbot, window, folder, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    from frcnn_gui.actions import _exchange

    target = tmp_path / "export.json"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    _exchange(window, "export_coco")
    exported = json.loads(target.read_text())
    assert [a["bbox"] for a in exported["annotations"]] == [[10.0, 20.0, 50.0, 60.0]]
    (folder / "1_labelled.xml").unlink()
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(target), ""))
    _exchange(window, "import_coco")
    assert saved_boxes(folder / "1_labelled.xml") == [[10.0, 20.0, 60.0, 80.0]]
    assert window.stack.count() == 0


def test_one_detection_can_be_accepted_from_the_shown_list(qtbot, window):
    panel = window.detections_panel
    panel.slider.setValue(0)
    assert panel.shown_list.count() == len(window.canvas.detection_layer.shown) > 0
    before = len(window.document.boxes)
    best = max(window.canvas.detection_layer.shown, key=lambda d: d.score)
    panel.accept_rows.emit([0])
    added = [box for box in window.document.boxes.values()][before:]
    assert len(added) == 1 and added[0].label == best.label
    window.stack.undo()
    assert len(window.document.boxes) == before
