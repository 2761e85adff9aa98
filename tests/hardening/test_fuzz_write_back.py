"""Fuzzing the write-back of annotation files (frcnn_gui/document/annotation_file.py): for every file the
document opens, one edit (none, nudge, relabel, difficult, delete) written back gives a well-formed
file whose tree — tags, attributes, texts, comments, order — is the original with that edit made
by hand, and nothing else changed."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from frcnn_core.data.voc import BNDBOX_TAGS, format_coordinate
from frcnn_gui.document.annotation_file import FileTree, annotation_bytes, read_annotation
from frcnn_gui.document.boxes import Box, fit_box

from fuzzing import XML_TOKENS, fuzz, mutated, outcome
from test_fuzz_annotations import VOC_DOCUMENTS

SIZE = (640, 480)  # every sample fits: their boxes are kept
WRITTEN_SHAPES = [path.read_bytes() for path in sorted((Path(__file__).parents[1] / "data" / "samples").glob("*.xml"))]
EDITS = ("none", "nudge", "relabel", "difficult", "delete")


def parse(data: bytes) -> ET.Element:
    parser = ET.XMLParser(target=ET.TreeBuilder(insert_comments=True, insert_pis=True))
    parser.feed(data)
    return parser.close()


def shape(element: ET.Element) -> tuple:
    """Everything but layout: a leaf's text exactly (" RBC " stays so), a container's stripped."""
    tag = element.tag if isinstance(element.tag, str) else (element.tag.__name__, element.text)
    text = (element.text or "").strip() if len(element) else element.text or ""
    return tag, sorted(element.attrib.items()), text, [shape(child) for child in element]


@st.composite
def layouts(draw) -> bytes:
    """A sample file (labelImg, CVAT, VOC2007, BCCD) laid out and extended as other tools or hands
    might: comments, unknown tags and attributes anywhere, children in another order, numbers
    written otherwise, odd names, any indentation or none, a UTF-8 or Latin-1 declaration."""
    root = parse(draw(st.sampled_from(WRITTEN_SHAPES)))
    containers = [element for element in root.iter() if isinstance(element.tag, str) and len(element)]
    for _ in range(draw(st.integers(0, 6))):
        parent = draw(st.sampled_from(containers))
        extra = draw(st.sampled_from([ET.Comment(" a note "), ET.Element("reviewed", {"by": "ana"}),
                                      ET.Element("occluded"), ET.ProcessingInstruction("tool", "x=1")]))
        extra.text = extra.text if extra.tag in (ET.Comment, ET.ProcessingInstruction) else draw(st.sampled_from(
            ["", "1", "a & b", "é"]))
        parent.insert(draw(st.integers(0, len(parent))), extra)
    for obj in root.iter("object"):
        if draw(st.booleans()):
            children = list(obj)
            obj[:] = draw(st.permutations(children))
        name = obj.find("name")
        name.text = draw(st.sampled_from([name.text, f" {name.text} ", "Zellkern-ß", "a<b&c"]))
        for tag in BNDBOX_TAGS:
            number = obj.find("bndbox").find(tag)
            if draw(st.booleans()):
                value = float(number.text)
                number.text = draw(st.sampled_from([f"{value:.1f}", f" {value:g} ", f"{value:e}", f"{value + 0.25}"]))
        if draw(st.booleans()):
            obj.set("id", "7")
    indent = draw(st.sampled_from([None, "", " ", "\t", "    "]))
    if indent is not None:
        for element in root.iter():
            element.tail = None
            if len(element):
                element.text = None
        if indent:
            ET.indent(root, space=indent)
    encoding = draw(st.sampled_from(["unicode", "unicode", "latin-1"]))
    text = ET.tostring(root, encoding=encoding, xml_declaration=encoding != "unicode" or draw(st.booleans()))
    return text.encode("utf-8") if isinstance(text, str) else text


def set_text(element: ET.Element, text: str) -> None:
    """The edit as annotation_file promises it: `text` is the element's whole content."""
    for child in list(element):
        element.remove(child)
    element.text = text


def edited(box: Box, edit: str) -> Box | None:
    """The box after `edit`, as the document would hold it; None when the edit cannot be made."""
    if edit == "nudge":
        try:
            return fit_box(box.moved(1, 0).whole_pixels(), *SIZE)
        except ValueError:
            return None
    if edit == "relabel":
        return Box(*box.coords, "relabelled", box.difficult)
    if edit == "difficult":
        return Box(*box.coords, box.label, not box.difficult)
    return box


def edit_by_hand(element: ET.Element, parent: ET.Element, old: Box, new: Box, edit: str) -> None:
    if edit == "delete":
        parent.remove(element)
    elif edit == "relabel":
        set_text(element.find("name"), new.label)
    elif edit == "difficult":
        flag = element.find("difficult")
        if flag is None:
            flag = ET.Element("difficult")
            element.insert(list(element).index(element.find("bndbox")), flag)
        set_text(flag, str(int(new.difficult)))
    elif edit == "nudge" and new.coords != old.coords:
        for tag, value in zip(BNDBOX_TAGS, new.coords, strict=True):
            set_text(element.find("bndbox").find(tag), format_coordinate(value))


@pytest.mark.slow
@fuzz(examples=1500)  # about 600 reach the comparison: 70 to 110 per edit
@given(document=st.one_of(layouts(), layouts(), VOC_DOCUMENTS, mutated(WRITTEN_SHAPES, XML_TOKENS)),
       edit=st.sampled_from(EDITS), which=st.integers(0, 3))
def test_one_edit_written_back_changes_only_that_edit(document, edit, which, scratch, fuzzed_inputs):
    fuzzed_inputs["annotation_file write-back"] += 1
    path = scratch / "written_back.xml"
    path.write_bytes(document)
    opened = outcome(lambda: read_annotation(path, *SIZE), path)
    if opened is None or opened.data is None:  # refused, or to be written afresh
        return
    slots = tuple(None if read is None else (number, read.box) for number, read in enumerate(opened.objects))
    boxes = [slot for slot in slots if slot is not None]
    reads = {number: read for number, read in enumerate(opened.objects) if read is not None}
    expected = parse(opened.data)
    if boxes and edit != "none":
        number, old = boxes[which % len(boxes)]
        new = edited(old, edit)
        if new is None:
            return
        element = list(expected.iter("object"))[number]
        parent = next(candidate for candidate in expected.iter() if element in list(candidate))
        edit_by_hand(element, parent, old, new, edit)
        if edit == "delete":
            boxes = [(box_id, box) for box_id, box in boxes if box_id != number]
        else:
            boxes = [(box_id, new if box_id == number else box) for box_id, box in boxes]
    data, written = annotation_bytes(FileTree(opened.data, slots), path.with_suffix(".png"), SIZE, boxes, reads,
                                     opened.verified)
    assert shape(parse(data)) == shape(expected)
    assert [slot for slot in written.slots if slot is not None] == boxes
