"""Per-image undo histories: each image's commands on its own stack, the active one following the
current image; empty histories are not kept; clear() forgets them all."""
from __future__ import annotations

import pytest
from PIL import Image

from frcnn_gui.document.document import Box, Document
from frcnn_gui.editing.commands import AddBoxCommand, AddClassCommand
from frcnn_gui.editing.history import ImageHistories


@pytest.fixture
def doc(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        Image.new("RGB", (100, 80), "gray").save(folder / name)
    document = Document()
    document.open_folder(folder)
    return document


def test_each_image_has_its_own_stack_and_undo_stays_on_it(qapp, doc):
    history = ImageHistories(doc)
    history.push(AddClassCommand(doc, "RBC"))  # no image open: a stack of its own
    doc.open_image(0)
    history.push(AddBoxCommand(doc, Box(1, 1, 9, 9, "RBC")))
    doc.open_image(1)
    history.push(AddBoxCommand(doc, Box(2, 2, 8, 8, "RBC")))
    history.push(AddBoxCommand(doc, Box(3, 3, 7, 7, "RBC")))
    a, b = (doc.images[index].path for index in (0, 1))
    assert history.current is history.stack_of(b) and history.current.count() == 2
    assert history.stack_of(a).count() == 1 and history.stack_of(None).count() == 1
    history.undo()
    history.undo()
    assert doc.current_path == b and doc.boxes == {} and not history.canUndo()
    doc.open_image(0)
    assert history.canUndo() and history.undoText() == "Add box 'RBC'" and len(doc.boxes) == 1


def test_an_image_left_without_history_keeps_no_stack_and_clear_forgets_all(qapp, doc):
    doc.add_class("RBC")
    history = ImageHistories(doc)
    for index in range(3):
        doc.open_image(index)
    assert [history.stack_of(entry.path) for entry in doc.images[:2]] == [None, None]
    history.push(AddBoxCommand(doc, Box(1, 1, 9, 9, "RBC")))
    history.undo()  # a redo left: the stack is kept
    doc.open_image(0)
    assert history.stack_of(doc.images[2].path).canRedo()
    history.clear()
    assert history.stack_of(doc.images[2].path) is None and history.current is history.stack_of(doc.current_path)
    assert history.current.count() == 0


def test_undoing_a_new_class_keeps_it_while_another_image_uses_it(qapp, doc):
    history = ImageHistories(doc)
    doc.open_image(0)
    history.push(AddBoxCommand(doc, Box(1, 1, 9, 9, "racoon")))  # the class comes with the box
    doc.open_image(1)
    history.push(AddBoxCommand(doc, Box(2, 2, 8, 8, "racoon")))
    doc.open_image(0)
    history.undo()  # image a's box goes; image b still has a racoon
    assert doc.boxes == {} and doc.classes == ["racoon"]
    history.redo()
    doc.open_image(1)
    history.undo()
    doc.open_image(0)
    history.undo()  # now no box uses it
    assert doc.classes == []
