"""Journeys: open an image or a folder from the File menu, walk the folder, detect again, and move
the folder's boxes out to COCO / YOLO and back in — asserting the picture, the list and the files."""
from __future__ import annotations

import json
import shutil

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog

from frcnn_core.data.voc import read_voc_xml

from journeys_helpers import canvas_pixels, changed_fraction, press

TIMEOUT_MS = 60_000


def names_listed(window) -> list[str]:
    return [window.image_list.item(row).text().split(maxsplit=1)[1] for row in range(window.image_list.count())]


def test_open_folder_and_open_image_show_that_folder_and_that_image(qtbot, window, journey_folder, tmp_path,
                                                                     monkeypatch):
    other = tmp_path / "other"
    other.mkdir()
    for name in ("photo-1.png", "photo-3.jpg"):
        shutil.copyfile(journey_folder / name, other / name)
    before = canvas_pixels(window)
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args, **kwargs: str(other))
    with qtbot.waitSignal(window.detections_shown, timeout=TIMEOUT_MS):
        window.actions["open_folder"].trigger()
    assert names_listed(window) == ["photo-1.png", "photo-3.jpg"]
    assert window.document.current_path == other / "photo-1.png"
    assert "photo-1.png" in window.windowTitle()
    assert changed_fraction(before, canvas_pixels(window)) > 0.5

    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *args, **kwargs: (str(journey_folder / "photo-3.jpg"),
                                                                                 "Images"))
    with qtbot.waitSignal(window.detections_shown, timeout=TIMEOUT_MS):
        window.actions["open_image"].trigger()
    assert window.document.folder == journey_folder and len(names_listed(window)) == 4
    assert window.document.current_path == journey_folder / "photo-3.jpg"
    assert window.image_list.currentItem().text().endswith("photo-3.jpg")


def test_next_and_previous_walk_the_list_by_key_and_by_menu(qtbot, window):
    first = canvas_pixels(window)
    press(qtbot, window, Qt.Key_D)
    assert window.document.current_index == 1 and window.image_list.currentRow() == 1
    assert changed_fraction(first, canvas_pixels(window)) > 0.2
    window.actions["next"].trigger()
    assert window.document.current_index == 2
    window.actions["previous"].trigger()
    press(qtbot, window, Qt.Key_A)
    assert window.document.current_index == 0 and window.image_list.currentRow() == 0
    assert window.document.current_path.name in window.windowTitle()
    with qtbot.waitSignal(window.detections_shown, timeout=TIMEOUT_MS):
        window.actions["detect"].trigger()  # Detect again: the same image's detections arrive again


def test_export_coco_and_yolo_then_import_them_back(qtbot, window, journey_folder, tmp_path, monkeypatch):
    annotated = sorted(path for path in journey_folder.glob("*.xml"))
    boxes_in_files = sum(len(read_voc_xml(path).names) for path in annotated)
    coco = tmp_path / "boxes.json"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *args, **kwargs: (str(coco), "COCO JSON"))
    window.actions["export_coco"].trigger()
    written = json.loads(coco.read_text())
    assert len(written["annotations"]) == boxes_in_files
    assert len(written["images"]) == len(annotated)  # images without an annotation file are not known yet

    yolo = tmp_path / "yolo"
    yolo.mkdir()
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args, **kwargs: str(yolo))
    window.actions["export_yolo"].trigger()
    assert (yolo / "classes.txt").read_text().split() == window.document.classes
    label_lines = sum(len(path.read_text().splitlines()) for path in yolo.rglob("*.txt") if path.name != "classes.txt")
    assert label_lines == boxes_in_files

    for path in annotated:  # the folder loses its boxes; the imports bring them back
        path.unlink()
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *args, **kwargs: (str(coco), "COCO JSON"))
    window.actions["import_coco"].trigger()
    assert sum(len(read_voc_xml(path).names) for path in journey_folder.glob("*.xml")) == boxes_in_files
    assert len(window.document.boxes) == len(read_voc_xml(window.document.images[0].annotation_path).names)
    for path in journey_folder.glob("*.xml"):
        path.unlink()
    window.actions["import_yolo"].trigger()
    assert sum(len(read_voc_xml(path).names) for path in journey_folder.glob("*.xml")) == boxes_in_files
    assert "import yolo" in window.statusBar().currentMessage()
