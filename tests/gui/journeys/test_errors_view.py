"""Journeys through the Errors view with the bundled `bccd-demo` model on the journey folder (two
BCCD images with their XML, two photos without): View > Errors across the folder… (Ctrl+Shift+E)
runs the pass in the engine thread; the table lists the images worst first, with the numbers the
engine's own `error_analysis` gives on the same files; the photos are listed as left out; a click
on a line opens the image with its errors drawn in their type's colour, a click on an error says
its chain and draws it; Cancel stops a pass; saving an image's annotation (a deleted GT box, an
empty one) makes its row again; switching the model asks to analyse again."""
from __future__ import annotations

import shutil
import xml.etree.ElementTree as ElementTree

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QColor

from frcnn_core.analysis.errors import error_analysis
from frcnn_core.analysis.tide import MAIN_ERRORS, MISS
from frcnn_core.data.formats import open_dataset
from frcnn_core.modeling.zoo import build_model
from frcnn_core.vocabulary import ERROR_COLOURS, outcome_words
from frcnn_gui.errors.rows import COLUMNS, ERRORS, FN, FP, IMAGE, counts

from journeys_helpers import at, canvas_pixels, click, press

MODEL = "bccd-demo"
OTHER_MODEL = "mobilenet-v3-320-fpn"  # random weights: a fast load, another model's errors
PASS_TIMEOUT_MS = 180_000  # two shared CPU cores: a bccd-demo image takes 0.5-3 s


@pytest.fixture
def window(make_window, journey_folder):
    return make_window(journey_folder, model=MODEL)


def analysed(qtbot, window, start) -> object:
    """Run `start()` and wait for the Errors view to show a report; returns it."""
    with qtbot.waitSignal(window.errors.report_shown, timeout=PASS_TIMEOUT_MS):
        start()
    return window.errors.report


def table(window) -> list[dict[str, str]]:
    """The Errors table's cells as the user reads them, line by line, by column name."""
    widget = window.errors.panel.table
    return [{name: widget.item(row, column).text() for column, name in enumerate(COLUMNS)}
            for row in range(widget.rowCount())]


def click_line(qtbot, widget, row: int) -> None:
    """A left click on line `row` of a table or list widget."""
    item = widget.item(row, 0) if hasattr(widget, "columnCount") else widget.item(row)
    qtbot.mouseClick(widget.viewport(), Qt.LeftButton, Qt.NoModifier, widget.visualItemRect(item).center())


def click_header(qtbot, window, name: str) -> None:
    header = window.errors.panel.table.horizontalHeader()
    column = COLUMNS.index(name)
    middle = QPoint(header.sectionViewportPosition(column) + header.sectionSize(column) // 2, header.height() // 2)
    qtbot.mouseClick(header.viewport(), Qt.LeftButton, Qt.NoModifier, middle)


def share_in_colour(window, box, colour: str) -> float:
    """The share of points along a box's bottom edge (its tag sits at the top) that the canvas shows in `colour`."""
    pixels, wanted = canvas_pixels(window), QColor(colour)
    x1, _, x2, y2 = box
    points = [at(window, x1 + (x2 - x1) * step / 10, y2) for step in range(2, 9)]
    return sum(tuple(pixels[point.y(), point.x(), :3]) == (wanted.red(), wanted.green(), wanted.blue())
               for point in points) / len(points)


def test_the_view_lists_the_folder_worst_first_and_shows_an_image_s_errors_and_chains(qtbot, window,
                                                                                      journey_folder):
    panel, document = window.errors.panel, window.document
    report = analysed(qtbot, window, lambda: press(qtbot, window, Qt.Key_E, Qt.ControlModifier | Qt.ShiftModifier))
    dataset = open_dataset(str(journey_folder))  # the engine's own reader and pass, as `frcnn errors` runs them
    engine = error_analysis(build_model(MODEL, "none", score_thresh=0.5), dataset.samples, dataset.class_names, "cpu")
    expected = {row.image_path.rsplit("/", 1)[-1]: counts(row) for row in engine.images}
    lines = table(window)
    assert {line[IMAGE]: {name: int(line[name]) for name in COLUMNS[1:]} for line in lines} == expected
    assert [int(line[ERRORS]) for line in lines] == sorted((count[ERRORS] for count in expected.values()), reverse=True)
    assert f"AP50 {engine.tide.ap50:.1f}" in panel.summary.text()
    assert all(ERROR_COLOURS[kind] in panel.summary.text() for kind in ("TP", *MAIN_ERRORS))  # the legend
    assert "photo-1.png: no annotation file" in panel.left_out.text()
    assert "photo-3.jpg: no annotation file" in panel.left_out.text()
    listed = [window.image_list.item(row).text() for row in range(window.image_list.count())]
    assert listed[0].endswith(f"cells-2.jpg  ({expected['cells-2.jpg'][ERRORS]} errors)")
    assert listed[1].endswith(f"cells-10.jpg  ({expected['cells-10.jpg'][ERRORS]} errors)")
    assert listed[2].endswith("photo-1.png")  # left out: no count

    click_header(qtbot, window, FP)  # the most false positives first
    assert [int(line[FP]) for line in table(window)] == sorted((c[FP] for c in expected.values()), reverse=True)
    with qtbot.waitSignal(window.detections_shown, timeout=PASS_TIMEOUT_MS):
        click_line(qtbot, panel.table, [line[IMAGE] for line in table(window)].index("cells-10.jpg"))
    assert document.current_path.name == "cells-10.jpg"
    row = next(row for row in report.images if row.image_path.endswith("cells-10.jpg"))
    assert panel.errors.count() == len(row.false_positives) + len(row.false_negatives)
    fp = next(fp for fp in row.false_positives if fp.counted)
    assert share_in_colour(window, fp.box, ERROR_COLOURS[fp.type]) > 0.5  # drawn in its type's colour

    window.docks["Errors"].toggleViewAction().trigger()  # View > Panels > Errors: the view closes, its drawing goes
    qtbot.waitUntil(lambda: not panel.isVisible())
    assert share_in_colour(window, fp.box, ERROR_COLOURS[fp.type]) == 0
    window.actions["errors"].trigger()  # back, with the same analysis: nothing runs again
    assert window.errors.running is None and window.errors.report is report
    assert share_in_colour(window, fp.box, ERROR_COLOURS[fp.type]) > 0.5

    click_line(qtbot, panel.errors, row.false_positives.index(fp))
    chain = panel.chain.text()
    assert chain.startswith(f"False positive, {fp.type}") and f"anchor #{fp.anchor}" in chain
    assert f"objectness {fp.objectness:.2f}" in chain and "class scores" in chain
    assert share_in_colour(window, fp.box, ERROR_COLOURS[fp.type]) > 0.5  # the chain's box, on top
    fn = row.false_negatives[0]
    click_line(qtbot, panel.errors, len(row.false_positives))
    assert panel.chain.text().startswith(f"False negative, {fn.type} (")
    assert f"GT {fn.gt_index} {fn.label}, {outcome_words(fn.stage)}." in panel.chain.text()
    assert "Its recall funnel: best anchor:" in panel.chain.text()
    assert share_in_colour(window, fn.box, "#ffffff") > 0.5  # the missed GT box, white

    while panel.type_box.currentText() != MISS:  # show: Miss only
        qtbot.keyClick(panel.type_box, Qt.Key_Down)
    assert all(int(line[MISS]) > 0 for line in table(window))
    assert [panel.errors.item(index).text().startswith("FN Miss") for index in range(panel.errors.count())] == [
        True] * sum(fn.type == MISS for fn in row.false_negatives)


def test_cancel_stops_the_pass_and_run_again_finishes_it(qtbot, make_window, journey_folder):
    for number in range(3, 7):  # six annotated images: a pass long enough to stop
        for suffix in (".jpg", ".xml"):
            shutil.copyfile(journey_folder / f"cells-2{suffix}", journey_folder / f"cells-{number}{suffix}")
    window = make_window(journey_folder, model=MODEL)
    panel, steps = window.errors.panel, []
    window.engine.errors_progress.connect(lambda _request, done, total: steps.append((done, total)))
    with qtbot.waitSignal(window.engine.errors_progress, timeout=PASS_TIMEOUT_MS):
        window.actions["errors"].trigger()
    assert panel.progress.isVisible() and panel.status.text().startswith("analysing: ")
    qtbot.mouseClick(panel.cancel_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: not window.engine.is_busy, timeout=PASS_TIMEOUT_MS)
    assert max(done for done, _ in steps) < steps[0][1] == 6  # stopped between two images
    assert window.errors.report is None and panel.table.rowCount() == 0 and panel.status.text() == "cancelled"
    assert not panel.progress.isVisible() and panel.run_button.isVisible()

    report = analysed(qtbot, window, lambda: qtbot.mouseClick(panel.run_button, Qt.LeftButton))
    assert len(report.images) == 6 and panel.table.rowCount() == 6 and len(report.left_out) == 2


def test_saving_an_annotation_makes_that_image_s_row_again(qtbot, window):
    document = window.document
    report = analysed(qtbot, window, window.actions["errors"].trigger)
    row = next(row for row in report.images if row.image_path == str(document.current_path))
    before = counts(row)
    for fn in (fn for fn in row.false_negatives if fn.type == MISS):
        click(qtbot, window, (fn.box[0] + fn.box[2]) / 2, (fn.box[1] + fn.box[3]) / 2)
        if [document.boxes[box_id].coords for box_id in window.canvas.selection] == [fn.box]:
            break
    else:
        pytest.fail("no missed box of cells-2 is the box a click on its centre selects")
    updated = analysed(qtbot, window, lambda: press(qtbot, window, Qt.Key_Delete))  # saved, then analysed again
    after = counts(next(row for row in updated.images if row.image_path == str(document.current_path)))
    assert (after[FN], after[FP], after[ERRORS]) == (before[FN] - 1, before[FP], before[ERRORS] - 1)
    line = next(line for line in table(window) if line[IMAGE] == "cells-2.jpg")
    assert (int(line[FN]), int(line[ERRORS])) == (after[FN], after[ERRORS])
    assert window.image_list.item(0).text().endswith(f"({after[ERRORS]} errors)")
    saved = ElementTree.parse(document.images[0].annotation_path).findall("object")
    assert len(saved) == len(row.hits) + len(row.false_negatives) - 1

    with qtbot.waitSignal(window.detections_shown, timeout=PASS_TIMEOUT_MS):
        click_line(qtbot, window.image_list, 2)  # photo-1.png, left out: no annotation file
    def save_seen() -> None:  # Ctrl+S on an image without boxes: labelImg's "seen, nothing here"
        press(qtbot, window, Qt.Key_S, Qt.ControlModifier)

    updated = analysed(qtbot, window, save_seen)
    assert "photo-1.png" in [line[IMAGE] for line in table(window)]
    assert "photo-1.png" not in window.errors.panel.left_out.text() and len(updated.left_out) == 1


def test_switching_the_model_asks_to_analyse_again(qtbot, window):
    errors = window.errors
    analysed(qtbot, window, window.actions["errors"].trigger)
    with qtbot.waitSignal(window.model_ready, timeout=PASS_TIMEOUT_MS):
        window.load_model(OTHER_MODEL, "none")
    question = errors.rerun_question
    assert question is not None and question.isVisible() and OTHER_MODEL in question.text()
    qtbot.mouseClick(next(b for b in question.buttons() if b.text() == "Not now"), Qt.LeftButton)
    assert errors.rerun_question is None and errors.panel.status.text().startswith(f"made with {MODEL};")
    report = analysed(qtbot, window, window.actions["errors"].trigger)  # opening it again runs it again
    assert report.model == OTHER_MODEL and OTHER_MODEL in errors.panel.summary.text()

    with qtbot.waitSignal(window.model_ready, timeout=PASS_TIMEOUT_MS):
        window.load_model(MODEL, "none")
    run = next(b for b in errors.rerun_question.buttons() if b.text() == "Run again")
    assert analysed(qtbot, window, lambda: qtbot.mouseClick(run, Qt.LeftButton)).model == MODEL
