"""Absurd inputs through the document, the main window and `frcnn detect`: a 1x1 image, a
20,000 x 20,000 image, 5,000 boxes in one file, boxes with NaN or negative sizes, non-ASCII class
names, a folder without images, an image Qt cannot show (a read-only folder is in
test_read_only_folder.py). Each gives a one-line message naming the file, or works; none crashes,
loses an edit or half-writes a file."""
from __future__ import annotations

import json
import struct
import time
import zlib
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageFile
from PySide6.QtCore import QPoint, QPointF, QSettings, Qt
from PySide6.QtGui import QImage

from frcnn_core.cli.main import main as cli
from frcnn_core.data.coco import read_coco_json
from frcnn_core.data.voc import read_voc_xml, write_voc_xml
from frcnn_core.data.yolo import read_yolo_folder
from frcnn_core.io.images import MAX_PIXELS
from frcnn_gui.document.document import Box, Document
from frcnn_gui.main_window import MainWindow

FAST_MODEL = ["--model", "mobilenet-v3-320-fpn", "--weights", "none"]
TIMEOUT_MS = 60_000
# side -> the problem reported for a side x side image. Past twice our limit (which is Pillow's)
# Pillow refuses to open the file at all, and only the pixel count is known.
OVERSIZED = {
    20_000: f"image is too large to decode safely: 400,000,000 pixels, over the {MAX_PIXELS:,}-pixel limit",
    10_000: f"image is 10000x10000 = 100,000,000 pixels, over the {MAX_PIXELS:,}-pixel limit",
}
MANY = 5_000
NON_ASCII = ["Blutkörperchen", "红细胞"]


def gray_png(path: Path, width: int, height: int) -> Path:
    """A valid all-black 1-bit PNG, compressed row by row: 20,000 x 20,000 makes ~50 KB on disk
    without ever holding its pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = bytes(1 + (width + 7) // 8)  # filter type 0, then width bits
    compressor = zlib.compressobj(9)
    pixels = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1 bit, grayscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))
    return path


@pytest.fixture
def decodes(monkeypatch) -> list[tuple[int, int]]:
    """The size of every image whose pixels Pillow decodes while the test runs (ImageFile.load)."""
    calls: list[tuple[int, int]] = []
    original = ImageFile.ImageFile.load

    def counting_load(self):
        calls.append(self.size)
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting_load)
    return calls


@pytest.fixture
def window(qtbot, tmp_path):
    """The main window with the fast random-weight model loaded, nothing open."""
    torch.manual_seed(0)
    main = MainWindow(FAST_MODEL[1], "none", "cpu", settings=QSettings(str(tmp_path / "settings.ini"),
                                                                         QSettings.IniFormat))
    qtbot.addWidget(main)
    with qtbot.waitSignal(main.model_ready, timeout=TIMEOUT_MS):
        main.show()
    qtbot.waitUntil(lambda: main.windowHandle().isExposed())
    main.activateWindow()
    qtbot.waitUntil(main.isActiveWindow)
    return main


def open_and_detect(qtbot, window, folder: Path) -> None:
    with qtbot.waitSignal(window.detections_shown, timeout=TIMEOUT_MS):
        window.open_path(folder)


def error_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]


def status(window) -> str:
    return window.statusBar().currentMessage()


# -- a 1x1 image ---------------------------------------------------------------------------------

def test_one_pixel_image_detects_nothing_in_the_cli(tmp_path):
    image = tmp_path / "dot.png"
    Image.new("RGB", (1, 1), (255, 0, 0)).save(image)
    out = tmp_path / "out.json"
    assert cli(["detect", str(image), *FAST_MODEL, "--json", str(out)]) == 0
    record = json.loads(out.read_text())["images"][0]
    assert (record["width"], record["height"], record["detections"]) == (1, 1, [])


def test_one_pixel_image_opens_and_detects_nothing_in_the_window(qtbot, window, tmp_path):
    Image.new("RGB", (1, 1), (255, 0, 0)).save(tmp_path / "dot.png")
    open_and_detect(qtbot, window, tmp_path)
    assert window.document.image_size == (1, 1)
    assert window.canvas.detection_layer.shown == []
    assert window.detections_panel.count.text().startswith("0 of")
    for detection in window.document.detections:  # low-score candidates, not shown; all inside
        assert 0 <= detection.box[0] <= detection.box[2] <= 1 and 0 <= detection.box[1] <= detection.box[3] <= 1


# -- a 20,000 x 20,000 (and a 10,000 x 10,000) image ----------------------------------------------------------------

def test_generated_png_is_a_real_image(tmp_path):
    with Image.open(gray_png(tmp_path / "small.png", 19, 7)) as image:
        image.load()
        assert (image.mode, image.size, image.getextrema()) == ("1", (19, 7), (0, 0))


@pytest.mark.parametrize("side", OVERSIZED)
def test_huge_image_is_refused_by_the_cli_without_decoding(tmp_path, capsys, decodes, side):
    huge = gray_png(tmp_path / "huge.png", side, side)
    assert huge.stat().st_size < 1_000_000
    assert cli(["detect", str(huge), *FAST_MODEL]) == 2
    assert error_lines(capsys) == [f"error: {huge}: {OVERSIZED[side]}"]
    assert (side, side) not in decodes


@pytest.mark.parametrize("side", OVERSIZED)
def test_huge_image_is_an_error_row_in_the_window_without_decoding(qtbot, window, tmp_path, decodes, side):
    huge = gray_png(tmp_path / "a_huge.png", side, side)
    Image.new("RGB", (64, 48)).save(tmp_path / "b_small.png")
    window.open_path(tmp_path)
    entry = window.document.images[0]
    assert (entry.status, entry.error) == ("error", f"{huge}: {OVERSIZED[side]}")
    assert window.image_list.item(0).toolTip() == entry.error
    assert status(window) == entry.error
    assert window.document.image_size is None and window.canvas.image_path is None
    with pytest.raises(ValueError, match="a_huge.png"):
        window.document.add_box(Box(1, 1, 5, 5, "cell"))
    with qtbot.waitSignal(window.detections_shown, timeout=TIMEOUT_MS):
        window.step_image(1)  # the next image works as usual
    assert window.document.image_size == (64, 48)
    assert (side, side) not in decodes


# -- 5,000 boxes in one file -----------------------------------------------------------------------

def grid_boxes(count: int, width: int, height: int) -> list[list[float]]:
    """`count` 8x6 boxes on a 10-px grid over a width x height image."""
    columns = width // 10
    return [[(i % columns) * 10.0, (i // columns) * 10.0 % (height - 8), (i % columns) * 10.0 + 8,
             (i // columns) * 10.0 % (height - 8) + 6] for i in range(count)]


def drag(qtbot, window, start: tuple[float, float], end: tuple[float, float]) -> None:
    """A left drag on the canvas between two image points."""
    def at(x: float, y: float) -> QPoint:
        point = window.canvas.viewportTransform().map(QPointF(x, y))
        return QPoint(round(point.x()), round(point.y()))

    viewport = window.canvas.viewport()
    qtbot.mousePress(viewport, Qt.LeftButton, Qt.NoModifier, at(*start))
    for step in range(1, 5):
        qtbot.mouseMove(viewport, at(*start) + (at(*end) - at(*start)) * (step / 4))
    qtbot.mouseRelease(viewport, Qt.LeftButton, Qt.NoModifier, at(*end))


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


@pytest.fixture
def crowd(qtbot, window, tmp_path) -> list[list[float]]:
    """The window showing a 1000x800 image whose XML holds MANY boxes; returns those boxes."""
    image = tmp_path / "crowd.png"
    Image.new("RGB", (1000, 800)).save(image)
    boxes = grid_boxes(MANY, 1000, 800)
    write_voc_xml(tmp_path / "crowd.xml", image, 1000, 800, boxes, ["cell"] * MANY)
    seconds = timed(lambda: open_and_detect(qtbot, window, tmp_path))
    assert len(window.document.boxes) == MANY and window.boxes_table.rowCount() == MANY
    print(f"\n{MANY:,} boxes: open {seconds * 1000:.0f} ms")
    assert seconds < 5.0
    return boxes


def report(seconds: dict[str, float]) -> None:
    print(f"{MANY:,} boxes: " + ", ".join(f"{name} {value * 1000:.0f} ms" for name, value in seconds.items()))
    assert max(seconds.values()) < 5.0, seconds


def test_five_thousand_boxes_open_draw_and_save_in_reasonable_time(qtbot, window, crowd, tmp_path):
    seconds = {"paint": timed(window.grab)}
    window.actions["default_class"].trigger()  # drawn boxes take the class without the prompt

    def draw() -> None:
        qtbot.keyClick(window, Qt.Key_W)
        drag(qtbot, window, (903, 703), (987, 787))
        qtbot.keyClick(window, Qt.Key_W)
    seconds["draw"] = timed(draw)
    assert len(window.document.boxes) == MANY + 1
    drawn = list(window.document.boxes.values())[-1]
    assert drawn.coords == pytest.approx((903, 703, 987, 787), abs=1.5)

    seconds["save"] = timed(window.save)
    saved = read_voc_xml(tmp_path / "crowd.xml")
    assert len(saved.names) == MANY + 1 and saved.boxes[-1].tolist() == pytest.approx(drawn.coords)
    report(seconds)


def test_five_thousand_boxes_nudge_and_undo_in_reasonable_time(qtbot, window, crowd):
    window.canvas.set_selection([list(window.document.boxes)[0]])
    seconds = {"nudge": timed(lambda: qtbot.keyClick(window.canvas, Qt.Key_Right))}
    assert list(window.document.boxes.values())[0].x1 == crowd[0][0] + 1
    seconds["undo"] = timed(lambda: qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier))
    assert list(window.document.boxes.values())[0].x1 == crowd[0][0]
    report(seconds)
    # not a speed target: a guard against the boxes table's quadratic refresh (247 s / 171 s before,
    # 0.25 s / 0.5 s after the fix, on this 2-core CPU)
    assert seconds["nudge"] < 10 and seconds["undo"] < 10


def test_five_thousand_boxes_edit_and_save_fast_in_the_document(tmp_path):
    image = tmp_path / "crowd.png"
    Image.new("RGB", (1000, 800)).save(image)
    boxes = grid_boxes(MANY, 1000, 800)
    write_voc_xml(tmp_path / "crowd.xml", image, 1000, 800, boxes, ["cell"] * MANY)
    document = Document()
    document.open_folder(tmp_path)
    seconds = {"open": timed(lambda: document.open_image(0))}
    first = next(iter(document.boxes))
    seconds["edit"] = timed(lambda: document.replace_box(first, Box(2, 2, 9, 9, "cell")))
    seconds["add"] = timed(lambda: document.add_box(Box(903, 703, 987, 787, "cell")))
    seconds["save"] = timed(document.save)
    assert read_voc_xml(tmp_path / "crowd.xml").boxes.shape == (MANY + 1, 4)
    report(seconds)


# -- boxes with NaN or negative sizes --------------------------------------------------------------

BAD_BOXES_XML = """<annotation><size><width>64</width><height>48</height><depth>3</depth></size>
<object><name>cell</name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>10</xmax><ymax>12</ymax></bndbox></object>
<object><name>cell</name><bndbox><xmin>nan</xmin><ymin>2</ymin><xmax>10</xmax><ymax>12</ymax></bndbox></object>
<object><name>cell</name><bndbox><xmin>30</xmin><ymin>2</ymin><xmax>20</xmax><ymax>12</ymax></bndbox></object>
<object><name>cell</name><bndbox><xmin>1</xmin><ymin>40</ymin><xmax>10</xmax><ymax>-5</ymax></bndbox></object>
<object><name>cell</name><bndbox><xmin>20</xmin><ymin>20</ymin><xmax>30</xmax><ymax>inf</ymax></bndbox></object>
<object><name>cell</name><bndbox><xmin>40</xmin><ymin>30</ymin><xmax>50</xmax><ymax>40</ymax></bndbox></object>
</annotation>
"""


def test_boxes_with_nan_or_negative_sizes_are_reported_one_by_one_and_skipped(tmp_path):
    Image.new("RGB", (64, 48)).save(tmp_path / "a.png")
    (tmp_path / "a.xml").write_text(BAD_BOXES_XML)
    document = Document()
    document.open_folder(tmp_path)
    document.open_image(0)
    assert [box.coords for box in document.boxes.values()] == [(1, 2, 10, 12), (40, 30, 50, 40)]
    xml = tmp_path / "a.xml"
    assert document.problems == [
        f"{xml}: object 2 (cell) skipped: non-finite coordinate",
        f"{xml}: object 3 (cell) skipped: inverted box",
        f"{xml}: object 4 (cell) skipped: inverted box",
        f"{xml}: object 5 (cell) skipped: non-finite coordinate",
    ]
    assert xml.read_text() == BAD_BOXES_XML  # opening never writes

    document.add_box(Box(2, 2, 6, 6, "cell"))
    document.save()
    assert (tmp_path / "a.xml.bak").read_text() == BAD_BOXES_XML  # what the skipped boxes were
    assert read_voc_xml(xml).boxes.tolist() == [[1, 2, 10, 12], [40, 30, 50, 40], [2, 2, 6, 6]]
    assert document.problems == []


def test_window_logs_each_skipped_box(qtbot, window, tmp_path):
    Image.new("RGB", (64, 48)).save(tmp_path / "a.png")
    (tmp_path / "a.xml").write_text(BAD_BOXES_XML)
    open_and_detect(qtbot, window, tmp_path)
    log = window.log.toPlainText()
    assert all(line in log for line in window.document.problems) and len(window.document.problems) == 4
    assert len(window.document.boxes) == 2


# -- non-ASCII class names -------------------------------------------------------------------------

def test_non_ascii_class_names_round_trip_through_xml_coco_and_yolo(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        Image.new("RGB", (64, 48)).save(folder / name)
    document = Document()
    document.open_folder(folder)
    document.open_image(0)
    for name in NON_ASCII:
        document.add_class(name)
    document.add_box(Box(1, 2, 30, 40, NON_ASCII[0]))
    document.add_box(Box(5, 6, 50, 44, NON_ASCII[1]))
    document.open_image(1)  # saves a.xml
    assert (folder / "classes.txt").read_text(encoding="utf-8") == "".join(f"{n}\n" for n in NON_ASCII)

    reopened = Document()
    reopened.open_folder(folder)
    reopened.open_image(0)
    assert reopened.classes == NON_ASCII
    assert [box.label for box in reopened.boxes.values()] == NON_ASCII

    reopened.export_coco(tmp_path / "coco.json")
    coco = read_coco_json(tmp_path / "coco.json")
    reopened.export_yolo(tmp_path / "yolo")
    yolo = read_yolo_folder(tmp_path / "yolo")
    for dataset in (coco, yolo):
        assert dataset.class_names[1:] == NON_ASCII
        labels = [dataset.class_names[label] for label in dataset.samples[0].labels.tolist()]
        assert labels == NON_ASCII


# -- a folder without images -----------------------------------------------------------------------

def test_folder_without_images_says_so(qtbot, window, tmp_path):
    (tmp_path / "notes.txt").write_text("no pictures here")
    (tmp_path / "orphan.xml").write_text("<annotation/>")
    window.open_path(tmp_path)
    assert status(window) == f"{tmp_path}: no images in this folder"
    assert window.document.images == [] and window.document.image_size is None
    window.step_image(1)  # nothing to step to: nothing happens
    assert window.document.current_index is None


def test_cli_given_a_folder_names_it(tmp_path, capsys):
    assert cli(["detect", str(tmp_path), *FAST_MODEL]) == 2
    assert error_lines(capsys) == [f"error: {tmp_path}: cannot open file (is a directory)"]


def test_an_image_qt_cannot_show_leaves_a_blank_canvas_and_one_line(qtbot, window, tmp_path, monkeypatch):
    from frcnn_gui.canvas import image_view

    class Refusing:  # Qt's reader refusing what Pillow read (an allocation limit, a format Qt lacks)
        setAllocationLimit = staticmethod(lambda megabytes: None)

        def __init__(self, path):
            pass

        def setAutoTransform(self, on):
            pass

        def read(self):
            return QImage()

        def errorString(self):
            return "Image size exceeds the allocation limit"

    folder = tmp_path / "images"
    folder.mkdir()
    Image.new("RGB", (64, 48)).save(folder / "a.png")
    monkeypatch.setattr(image_view, "QImageReader", Refusing)
    open_and_detect(qtbot, window, folder)
    assert window.canvas.image_path is None and window.canvas.image_rect.isEmpty()
    assert status(window) == f"{folder / 'a.png'}: cannot read the image (Image size exceeds the allocation limit)"
