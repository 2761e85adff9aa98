"""Journeys: editing existing VOC files (BCCD's, a CVAT export, a labelImg file) in the real
window — select with the mouse, nudge / delete with keys, tick "difficult" in the boxes table,
Ctrl+S — changes in the file only what was edited, whole pixels; difficult boxes look different."""
from __future__ import annotations

import shutil
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QStyle, QStyleOptionViewItem

from frcnn_core.resources import SAMPLES as BUNDLED_SAMPLES
from frcnn_gui.panels.boxes_table import DIFFICULT_COLUMN

from journeys_helpers import at, canvas_pixels, click, press

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples"
BCCD_IMAGE = BUNDLED_SAMPLES / "BloodImage_00002.jpg"


def sample_folder(tmp_path: Path) -> Path:
    """BCCD's file with its photo, a CVAT export and a labelImg file with gray images of their size."""
    folder = tmp_path / "samples"
    folder.mkdir()
    shutil.copyfile(BCCD_IMAGE, folder / "a_bccd.jpg")
    shutil.copyfile(SAMPLES / "bccd_BloodImage_00002.xml", folder / "a_bccd.xml")
    for stem, target, size in (("cvat_voc11_frame", "b_cvat", (200, 150)),
                               ("labelimg_street", "c_labelimg", (160, 120))):
        Image.new("RGB", size, "gray").save(folder / f"{target}.png")
        shutil.copyfile(SAMPLES / f"{stem}.xml", folder / f"{target}.xml")
    return folder


def shape_of(root: ElementTree.Element) -> tuple:
    """Everything a file says but its layout whitespace."""
    return root.tag, sorted(root.attrib.items()), (root.text or "").strip(), [shape_of(child) for child in root]


def shape(path: Path) -> tuple:
    return shape_of(ElementTree.parse(path).getroot())


def sample_shape(stem: str, edit) -> tuple:
    """The sample's shape after `edit(root)`, an edit made by hand on its tree."""
    root = ElementTree.parse(SAMPLES / f"{stem}.xml").getroot()
    edit(root)
    return shape_of(root)


def select(qtbot, window, box_id: int) -> None:
    """Click the box inside, where no other box is."""
    box = window.document.boxes[box_id]
    others = [other for other_id, other in window.document.boxes.items() if other_id != box_id]
    for fy in np.linspace(0.3, 0.7, 5):
        for fx in np.linspace(0.3, 0.7, 5):
            x, y = box.x1 + fx * (box.x2 - box.x1), box.y1 + fy * (box.y2 - box.y1)
            if not any(o.x1 - 3 <= x <= o.x2 + 3 and o.y1 - 3 <= y <= o.y2 + 3 for o in others):
                click(qtbot, window, x, y)
                assert window.canvas.selection == [box_id]
                return
    raise AssertionError(f"no point of box {box_id} lies outside the others")


def changed_lines(original: Path, written: Path) -> list[tuple[str, str]]:
    old, new = original.read_text().splitlines(), written.read_text().splitlines()
    assert len(old) == len(new)
    return [(a, b) for a, b in zip(old, new, strict=True) if a != b]


def test_nudging_a_box_with_the_arrow_key_changes_only_its_bndbox(qtbot, make_window, tmp_path):
    folder = sample_folder(tmp_path)
    window = make_window(folder)
    first = next(iter(window.document.boxes))
    select(qtbot, window, first)
    press(qtbot, window, Qt.Key_Right)
    press(qtbot, window, Qt.Key_S, Qt.ControlModifier)
    assert changed_lines(SAMPLES / "bccd_BloodImage_00002.xml", folder / "a_bccd.xml") == [
        ("\t\t\t<xmin>385</xmin>", "\t\t\t<xmin>386</xmin>"), ("\t\t\t<xmax>523</xmax>", "\t\t\t<xmax>524</xmax>")]
    assert [window.boxes_table.item(0, column).text() for column in range(1, 5)] == ["386", "98", "524", "198"]

    press(qtbot, window, Qt.Key_D)  # the CVAT export: fractional numbers, occluded, attributes
    assert window.document.current_path == folder / "b_cvat.png"
    select(qtbot, window, next(iter(window.document.boxes)))
    press(qtbot, window, Qt.Key_Right)
    press(qtbot, window, Qt.Key_S, Qt.ControlModifier)

    def nudged(root):  # 10.43 40.01 90.99 95.18, one pixel right, in whole pixels
        for tag, number in zip(("xmin", "ymin", "xmax", "ymax"), ("11", "40", "92", "95"), strict=True):
            root.find(f"object/bndbox/{tag}").text = number
    assert shape(folder / "b_cvat.xml") == sample_shape("cvat_voc11_frame", nudged)


def test_delete_key_removes_only_that_object(qtbot, make_window, tmp_path):
    folder = sample_folder(tmp_path)
    window = make_window(folder)
    press(qtbot, window, Qt.Key_D)
    press(qtbot, window, Qt.Key_D)
    assert window.document.current_path == folder / "c_labelimg.png"
    select(qtbot, window, list(window.document.boxes)[1])
    press(qtbot, window, Qt.Key_Delete)
    press(qtbot, window, Qt.Key_S, Qt.ControlModifier)
    assert window.boxes_table.rowCount() == 2
    assert shape(folder / "c_labelimg.xml") == sample_shape(
        "labelimg_street", lambda root: root.remove(root.findall("object")[1]))


def click_check_box(qtbot, table, row: int, column: int) -> None:
    """A click on the check box of a cell, where the item delegate draws it."""
    item = table.item(row, column)
    option = QStyleOptionViewItem()
    table.itemDelegate().initStyleOption(option, table.indexFromItem(item))
    option.rect = table.visualItemRect(item)
    indicator = table.style().subElementRect(QStyle.SE_ItemViewItemCheckIndicator, option, table)
    qtbot.mouseClick(table.viewport(), Qt.LeftButton, Qt.NoModifier, indicator.center())


def test_ticking_difficult_draws_the_box_dotted_and_saves_only_the_flag(qtbot, make_window, tmp_path):
    folder = sample_folder(tmp_path)
    window = make_window(folder)
    window.actions["show_detections"].trigger()  # only the GT boxes on the picture
    table = window.boxes_table
    plain = canvas_pixels(window)
    click_check_box(qtbot, table, 0, DIFFICULT_COLUMN)
    assert table.item(0, DIFFICULT_COLUMN).checkState() == Qt.Checked
    assert next(iter(window.document.boxes.values())).difficult
    difficult = canvas_pixels(window)
    rows, columns = np.nonzero(np.any(plain != difficult, axis=2))
    assert len(rows) > 100  # dots along the outline, and the "(difficult)" tag above it
    box = next(iter(window.document.boxes.values()))
    top_left, bottom_right = at(window, box.x1, box.y1), at(window, box.x2, box.y2)
    assert top_left.x() - 3 <= columns.min() and columns.max() <= bottom_right.x() + 3
    assert top_left.y() - 3 - 20 <= rows.min() and rows.max() <= bottom_right.y() + 3  # 20: the tag's height
    press(qtbot, window, Qt.Key_S, Qt.ControlModifier)
    assert changed_lines(SAMPLES / "bccd_BloodImage_00002.xml", folder / "a_bccd.xml") == [
        ("\t\t<difficult>0</difficult>", "\t\t<difficult>1</difficult>")]
    window.actions["undo"].trigger()
    assert table.item(0, DIFFICULT_COLUMN).checkState() == Qt.Unchecked
    assert np.array_equal(canvas_pixels(window), plain)
    press(qtbot, window, Qt.Key_S, Qt.ControlModifier)
    assert (folder / "a_bccd.xml").read_bytes() == (SAMPLES / "bccd_BloodImage_00002.xml").read_bytes()
