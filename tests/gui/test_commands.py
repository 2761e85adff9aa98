"""Undo commands: each push -> undo returns the document to exactly its previous state, redo
to exactly the pushed one; nudges merge; undo goes back to the image it edited; saves in between."""
from __future__ import annotations

import pytest
from PIL import Image
from PySide6.QtGui import QUndoStack

from frcnn_core.data.voc import read_voc_xml
from frcnn_gui.document.document import Box, Detection, Document
from frcnn_gui.editing.commands import (
    AcceptDetectionsCommand,
    AddBoxCommand,
    AddClassCommand,
    DeleteBoxesCommand,
    EditBoxCommand,
    PasteBoxesCommand,
    RelabelCommand,
    RenameClassCommand,
    SetDifficultCommand,
    SetVerifiedCommand,
)


@pytest.fixture
def folder(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        Image.new("RGB", (100, 80), "gray").save(folder / name)
    return folder


@pytest.fixture
def doc(folder):
    document = Document()
    document.open_folder(folder)
    document.add_class("RBC")
    document.open_image(0)
    for offset in (0, 10, 20):
        document.add_box(Box(offset, offset, offset + 5, offset + 5, "RBC"))
    return document


@pytest.fixture
def stack(qapp):
    return QUndoStack()


def state(document):
    return document.current_path, list(document.boxes.items()), list(document.classes), document.verified


def ids(document):
    return list(document.boxes)


COMMANDS = {
    "add": lambda d: AddBoxCommand(d, Box(1, 2, 30, 40, "RBC")),
    "add new class": lambda d: AddBoxCommand(d, Box(1, 2, 30, 40, "血小板")),
    "delete": lambda d: DeleteBoxesCommand(d, [ids(d)[2], ids(d)[0]]),
    "edit": lambda d: EditBoxCommand(d, ids(d)[1], Box(11, 11, 19, 19, "RBC", True)),
    "relabel": lambda d: RelabelCommand(d, ids(d)[:2], "Zellkern-ß"),
    "add class": lambda d: AddClassCommand(d, "WBC"),
    "rename class": lambda d: RenameClassCommand(d, "RBC", "Erythrozyt"),
    "verify": lambda d: SetVerifiedCommand(d, True),
    "accept": lambda d: AcceptDetectionsCommand(d, [Detection((1, 1, 9, 9), 0.9, "RBC"),
                                                    Detection((50, 50, 90, 70), 0.8, "WBC")]),
    "difficult": lambda d: SetDifficultCommand(d, ids(d)[1:], True),
    "paste": lambda d: PasteBoxesCommand(d, [Box(90, 70, 130, 99, "WBC", True), Box(1, 1, 9, 9, "RBC")]),
}


@pytest.mark.parametrize("name", COMMANDS)
def test_undo_and_redo_restore_exact_states(doc, stack, name):
    before = state(doc)
    stack.push(COMMANDS[name](doc))
    after = state(doc)
    assert after != before and stack.count() == 1
    stack.undo()
    assert state(doc) == before
    stack.redo()
    assert state(doc) == after
    stack.undo()
    assert state(doc) == before


def test_texts_are_readable(doc):
    assert AddBoxCommand(doc, Box(1, 2, 3, 4, "RBC")).text() == "Add box 'RBC'"
    assert DeleteBoxesCommand(doc, ids(doc)).text() == "Delete 3 boxes"
    box_id = ids(doc)[0]
    assert EditBoxCommand(doc, box_id, doc.boxes[box_id].moved(1, 0)).text() == "Move box"
    assert EditBoxCommand(doc, box_id, Box(0, 0, 9, 9, "RBC")).text() == "Resize box"
    assert RelabelCommand(doc, [box_id], "WBC").text() == "Relabel box 'WBC'"
    assert AcceptDetectionsCommand(doc, [Detection((1, 1, 9, 9), 0.9, "RBC")]).text() == "Accept detection 'RBC'"
    assert RenameClassCommand(doc, "RBC", "X").text() == "Rename class 'RBC' to 'X'"
    assert SetVerifiedCommand(doc, True).text() == "Mark verified"
    assert SetDifficultCommand(doc, [box_id], True).text() == "Mark box difficult"
    assert SetDifficultCommand(doc, ids(doc), False).text() == "Mark 3 boxes not difficult"


def test_paste_clips_to_the_image_and_leaves_out_what_lies_outside(doc):
    command = PasteBoxesCommand(doc, [Box(90, 70, 130, 99, "RBC", True), Box(120, 90, 160, 120, "RBC")])
    assert command.boxes == [Box(90, 70, 100, 80, "RBC", True)] and command.text() == "Paste box"
    with pytest.raises(ValueError, match="nothing to paste"):
        PasteBoxesCommand(doc, [Box(120, 90, 160, 120, "RBC")])
    assert SetDifficultCommand(doc, ids(doc)[:2], False).text() == "Mark 2 boxes not difficult"


def test_bad_input_is_refused_before_the_push(doc):
    with pytest.raises(ValueError, match="no area"):
        AddBoxCommand(doc, Box(5, 5, 5, 9, "RBC"))
    with pytest.raises(ValueError, match="no such boxes"):
        DeleteBoxesCommand(doc, [999])
    with pytest.raises(ValueError, match="already listed"):
        RenameClassCommand(doc, "RBC", "RBC")


def test_nudges_merge_into_one_step(doc, stack):
    box_id = ids(doc)[1]
    before = state(doc)
    for _ in range(4):
        stack.push(EditBoxCommand(doc, box_id, doc.boxes[box_id].moved(1, 0)))
    stack.push(EditBoxCommand(doc, box_id, Box(14, 10, 16, 15, "RBC")))
    assert stack.count() == 1 and stack.text(0) == "Resize box"
    stack.undo()
    assert state(doc) == before


def test_nudges_back_to_the_start_leave_no_step(doc, stack):
    box_id = ids(doc)[1]
    stack.push(EditBoxCommand(doc, box_id, doc.boxes[box_id].moved(1, 0)))
    stack.push(EditBoxCommand(doc, box_id, doc.boxes[box_id].moved(-1, 0)))
    assert stack.count() == 0


def test_drags_and_other_boxes_do_not_merge(doc, stack):
    first, second = ids(doc)[:2]
    stack.push(EditBoxCommand(doc, first, doc.boxes[first].moved(1, 0)))
    stack.push(EditBoxCommand(doc, second, doc.boxes[second].moved(1, 0)))
    stack.push(EditBoxCommand(doc, second, doc.boxes[second].moved(1, 0), merge=False))
    stack.push(EditBoxCommand(doc, second, doc.boxes[second].moved(1, 0), merge=False))
    assert stack.count() == 4


def test_undo_after_switching_images_edits_the_image_it_came_from(doc, stack, folder):
    before = state(doc)
    stack.push(AddBoxCommand(doc, Box(40, 40, 60, 60, "RBC")))
    doc.open_image(1)
    stack.push(AddBoxCommand(doc, Box(1, 1, 9, 9, "RBC")))
    doc.open_image(0)
    stack.undo()
    assert doc.current_index == 1 and doc.boxes == {}
    stack.undo()
    assert state(doc) == before
    stack.redo()
    stack.redo()
    assert doc.current_index == 1 and len(doc.boxes) == 1
    doc.save()
    assert len(read_voc_xml(folder / "a.xml").names) == 4 and len(read_voc_xml(folder / "b.xml").names) == 1


def test_delete_undo_keeps_box_identity_for_older_commands(doc, stack):
    box_id = ids(doc)[0]
    stack.push(EditBoxCommand(doc, box_id, doc.boxes[box_id].moved(2, 2)))
    stack.push(DeleteBoxesCommand(doc, [box_id]))
    doc.open_image(1)
    stack.undo()
    stack.undo()
    assert doc.current_index == 0 and doc.boxes[box_id] == Box(0, 0, 5, 5, "RBC") and ids(doc)[0] == box_id


def test_the_file_follows_undo_and_redo_across_saves(doc, stack, folder):
    doc.save()
    stack.push(AddBoxCommand(doc, Box(40, 40, 60, 60, "WBC")))
    stack.push(SetVerifiedCommand(doc, True))
    doc.save()
    assert read_voc_xml(folder / "a.xml").names == ["RBC"] * 3 + ["WBC"]
    assert (folder / "classes.txt").read_text() == "RBC\nWBC\n"
    stack.undo()
    doc.save()
    assert '<annotation verified="yes">' not in (folder / "a.xml").read_text()
    stack.undo()
    doc.save()
    assert read_voc_xml(folder / "a.xml").names == ["RBC"] * 3 and (folder / "classes.txt").read_text() == "RBC\n"
    stack.redo()
    doc.save()
    assert read_voc_xml(folder / "a.xml").names == ["RBC"] * 3 + ["WBC"]


def test_rename_undo_restores_other_images_files(doc, stack, folder):
    doc.open_image(1)
    stack.push(RenameClassCommand(doc, "RBC", "Zellkern-ß"))
    assert read_voc_xml(folder / "a.xml").names == ["Zellkern-ß"] * 3
    stack.undo()
    assert read_voc_xml(folder / "a.xml").names == ["RBC"] * 3 and doc.classes == ["RBC"]


def test_accepting_many_detections_is_one_step_and_one_redraw(doc, stack):
    seen = []
    doc.subscribe(seen.append)
    detections = [Detection((x, 1, x + 1, 9), 0.5, "RBC") for x in range(50)]
    stack.push(AcceptDetectionsCommand(doc, detections))
    assert stack.count() == 1 and len(doc.boxes) == 53 and seen == ["boxes"]


def test_boxes_from_the_user_and_the_model_are_whole_pixels(doc, stack):
    stack.push(AddBoxCommand(doc, Box(1.4, 2.5, 30.49, 40.51, "RBC")))
    stack.push(AcceptDetectionsCommand(doc, [Detection((51.28647, 0.2, 70.5, 9.7), 0.9, "RBC")]))
    drawn, accepted = list(doc.boxes.values())[-2:]
    assert drawn.coords == (1, 3, 30, 41) and accepted.coords == (51, 0, 71, 10)
    box_id = ids(doc)[0]
    stack.push(EditBoxCommand(doc, box_id, doc.boxes[box_id].moved(0.4, 0.6), merge=False))
    assert doc.boxes[box_id].coords == (0, 1, 5, 6)


def test_undo_of_an_edit_gives_back_a_fractional_box_exactly(doc, stack):
    """A box read from a file keeps its fractions until it is edited; undo restores them."""
    box_id = ids(doc)[0]
    doc.replace_box(box_id, Box(0.25, 0.5, 5.75, 5.5, "RBC"))  # as a file may hold it
    stack.push(EditBoxCommand(doc, box_id, doc.boxes[box_id].moved(1, 0)))
    assert doc.boxes[box_id].coords == (1, 1, 7, 6)  # 1.25, 0.5, 6.75, 5.5 to whole pixels (halves up)
    stack.undo()
    assert doc.boxes[box_id] == Box(0.25, 0.5, 5.75, 5.5, "RBC")


def test_set_difficult_keeps_the_geometry_exactly(doc, stack):
    box_id = ids(doc)[0]
    doc.replace_box(box_id, Box(0.25, 0.5, 5.75, 5.5, "RBC"))
    stack.push(SetDifficultCommand(doc, [box_id], True))
    assert doc.boxes[box_id] == Box(0.25, 0.5, 5.75, 5.5, "RBC", True)
    with pytest.raises(ValueError, match="no box selected"):
        SetDifficultCommand(doc, [], True)
