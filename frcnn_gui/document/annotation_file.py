"""One image's VOC file as the document opens it and writes back, losing nothing it did not edit.
Qt-free.

Opening keeps the file's whole tree (comments included) and, for each box the document shows,
the Box it became and its <object> element as read. Nothing here changes an element it was
given: writing parses the file as last read or written afresh (expat in C: faster than a deep
copy) and copies an element before it edits it. Writing changes only what the user changed:

- an object whose box is as it was written last stays as it is (not even re-serialized text
  changes);
- an edited box rewrites the four numbers of its <bndbox> (format_coordinate: "12", "12.5"); a
  relabelled one its <name>; a flagged one its <difficult> (added before <bndbox> when missing).
  Every other child — pose, truncated, occluded, CVAT's <attributes>, parts, tags unknown here —
  stays as read, and so does any field of a box the user did not touch: a box clipped to the
  image when opened keeps its numbers in the file until it is edited.
- a deleted box's object is removed; a box that comes back (undo) gets its element as read
  again, with every field it had; a new box becomes labelImg's usual object (labelimg_object),
  placed after the object of the box before it in the document's order.
- objects the document skipped when opening (no area, not finite, a reserved class name: its
  `problems`) stay in the file as they are.
- per file, everything is kept (folder, filename, path, source, size, segmented, owner, unknown
  tags, the root's attributes, an <?xml?> declaration) except labelImg's verified="yes", which
  follows the verified flag.

Whitespace is kept where nothing changed and copied from the neighbours where something is
added, so a labelImg or CVAT file differs from the one read only on the lines edited. A file
the document has no tree of (none yet, or a malformed one, which it backs up first) is written
fresh in labelImg's layout (voc_xml_bytes); so is a file with an <object> inside another
<object> (no tool writes that; one of its `problems`, so that it is backed up first). Comments
outside the root element are not written back.
"""
from __future__ import annotations

import copy
import re
import xml.etree.ElementTree as ElementBuilder
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from frcnn_core.data.samples import check_objects
from frcnn_core.data.voc import BNDBOX_TAGS, format_coordinate, labelimg_object, parse_voc_xml, voc_xml_bytes
from frcnn_core.errors import InputError
from frcnn_core.io.atomic import write_bytes_atomic
from frcnn_gui.document.boxes import Box, fit_box

UTF8_DECLARATION = '<?xml version="1.0" encoding="utf-8"?>'


@dataclass(frozen=True)
class ReadObject:
    """A box as the document opened it, and the <object> element it came from (never changed)."""

    box: Box
    element: ElementBuilder.Element


@dataclass(frozen=True)
class FileTree:
    """An annotation file as last read or written. data: its bytes; slots: per <object> in
    document order, (the document's id of the box it holds, that box as the element says it),
    None for an object the document skipped."""

    data: bytes
    slots: tuple[tuple[int, Box] | None, ...]


@dataclass(frozen=True)
class OpenedFile:
    """read_annotation's result. data: the file's bytes, None when it is to be written afresh
    (module doc); objects: one per <object> in document order, None when skipped (each skip, and
    each box clipped to the image, is one line of `problems`)."""

    data: bytes | None
    objects: list[ReadObject | None]
    problems: list[str]
    verified: bool


def read_annotation(path: Path, width: int, height: int) -> OpenedFile:
    """Open an image's VOC file: the boxes as every reader of the project sees them
    (parse_voc_xml, check_objects, then fit_box for a `width` x `height` image) and the tree to
    write back. InputError naming the file when it cannot be read or is malformed."""
    data = _read_bytes(path)
    parsed = parse_voc_xml(path, data)  # no DOCTYPE, so no entity and no external reference either
    root = _parse_ours(data)
    elements = list(root.iter("object"))
    objects, problems = [], []
    for raw, element in zip(parsed.objects, elements, strict=True):  # the same bytes, parsed twice
        kept, found = check_objects(path, [raw], parsed.width, parsed.height)
        problems += found
        read = None
        if kept:
            try:
                box = fit_box(Box(*kept[0].coords, kept[0].name, kept[0].difficult), width, height)
                read = ReadObject(box, element)
            except ValueError as error:
                problems.append(f"{path}: {raw.subject} ({raw.name}) skipped: {error}")
        objects.append(read)
    if any(element.find(".//object") is not None for element in elements):
        data = None
        problems.append(f"{path}: an <object> inside another <object>: the file will be written afresh "
                        "in labelImg's layout")
    return OpenedFile(data, objects, problems, root.get("verified") == "yes")


def annotation_bytes(tree: FileTree | None, image_path: Path, size: tuple[int, int],
                     boxes: Sequence[tuple[int, Box]], read_objects: Mapping[int, ReadObject],
                     verified: bool) -> tuple[bytes, FileTree]:
    """The file of `boxes` (box id, Box in the document's order) written back over `tree` (module
    doc), and the tree it holds. read_objects: box id -> how it was read, for every box that came
    from a file (others are new); size: the image's (width, height)."""
    if tree is None:
        data = voc_xml_bytes(image_path, *size, [box.coords for _, box in boxes], [box.label for _, box in boxes],
                             [box.difficult for _, box in boxes])
        if verified:
            data = data.replace(b"<annotation>", b'<annotation verified="yes">', 1)
        return data, FileTree(data, tuple(boxes))
    root = _parse_ours(tree.data)
    parents = {child: parent for parent in root.iter() for child in parent}
    slots = {slot[0]: (element, slot[1]) for slot, element in zip(tree.slots, root.iter("object"), strict=True)
             if slot is not None}  # skipped objects stay where they are
    kept_ids = {box_id for box_id, _ in boxes}
    for box_id, (element, _) in slots.items():
        if box_id not in kept_ids:
            _remove(parents[element], element)
    placed, previous = {}, None  # id() of each element written -> (box id, box); the last one written
    for box_id, box in boxes:
        slot, written_box = slots.get(box_id, (None, None))
        if box == written_box:
            element, parent = slot, parents[slot]
        elif slot is not None:
            element, parent = _object_element(box, read_objects.get(box_id), size), parents[slot]
            _replace(parent, slot, element)
        else:
            element = _object_element(box, read_objects.get(box_id), size)
            anchor = previous if previous is not None else next(root.iter("object"), None)
            parent = root if anchor is None else parents[anchor]
            index = len(parent) if anchor is None else list(parent).index(anchor) + (anchor is previous)
            _insert(parent, index, element, new=box_id not in read_objects)
        parents[element], previous = parent, element
        placed[id(element)] = box_id, box
    if verified:
        root.set("verified", "yes")
    elif root.get("verified") == "yes":
        del root.attrib["verified"]
    data = _serialized(root, _declaration(tree.data))
    return data, FileTree(data, tuple(placed.get(id(element)) for element in root.iter("object")))


def rename_in_file(path: Path, old: str, new: str) -> bool:
    """Rename the objects of class `old` in one XML file, keeping everything else; True if any.
    A file that has become malformed is left as it is."""
    data = _read_bytes(path)
    try:
        parse_voc_xml(path, data)
    except InputError:
        return False
    root = _parse_ours(data)
    names = [obj.find("name") for obj in root.iter("object")]
    renamed = [name for name in names if name is not None and (name.text or "").strip() == old]
    for name in renamed:
        _set_text(name, new)
    if renamed:
        write_bytes_atomic(path, _serialized(root, _declaration(data)))
    return bool(renamed)


def _object_element(box: Box, read: ReadObject | None, size: tuple[int, int]) -> ElementBuilder.Element:
    """The <object> of `box`: a copy of its element as read with what changed since rewritten,
    or labelImg's object for a new box."""
    if read is None:
        return labelimg_object(box.label, box.coords, box.difficult, *size)
    element = copy.deepcopy(read.element)
    element.tail = None
    if box.label != read.box.label:
        _set_text(element.find("name"), box.label)
    bndbox = element.find("bndbox")
    if box.difficult != read.box.difficult:
        difficult = element.find("difficult")
        if difficult is None:
            difficult = ElementBuilder.Element("difficult")
            _insert(element, list(element).index(bndbox), difficult, new=True)
        _set_text(difficult, str(int(box.difficult)))
    if box.coords != read.box.coords:
        for tag, value in zip(BNDBOX_TAGS, box.coords, strict=True):
            _set_text(bndbox.find(tag), format_coordinate(value))
    return element


def _set_text(element: ElementBuilder.Element, text: str) -> None:
    """`text` as the element's whole content (a comment inside it would split the number)."""
    for child in list(element):
        element.remove(child)
    element.text = text


def _separator(parent: ElementBuilder.Element, index: int) -> str | None:
    """The whitespace before child `index` of `parent`."""
    return parent.text if index == 0 else parent[index - 1].tail


def _insert(parent: ElementBuilder.Element, index: int, element: ElementBuilder.Element, new: bool) -> None:
    """Insert `element` as child `index`, laid out like its siblings; `new`: an element built here
    (no whitespace of its own), indented one step deeper than the parent's children."""
    unit = _indent_unit(parent)
    if index == len(parent) and index:
        before = _separator(parent, index - 1)
        element.tail, parent[index - 1].tail = parent[index - 1].tail, before  # it takes the closing indentation
    elif index < len(parent):
        before = element.tail = _separator(parent, index)
    else:
        before = None
    if new and before and "\n" in before:
        _indent(element, before.rsplit("\n", 1)[1], unit)
    parent.insert(index, element)


def _indent_unit(parent: ElementBuilder.Element) -> str:
    """One indentation step: how much deeper the parent's children stand than its closing tag
    (a tab when that cannot be told)."""
    if not len(parent):
        return "\t"
    inner = (parent.text or "").rsplit("\n", 1)[-1]
    outer = (parent[-1].tail or "").rsplit("\n", 1)[-1]
    return inner[len(outer):] if inner.startswith(outer) and len(inner) > len(outer) else "\t"


def _indent(element: ElementBuilder.Element, indentation: str, unit: str) -> None:
    if not len(element):
        return
    inner = "\n" + indentation + unit
    element.text = inner
    for child in element:
        _indent(child, indentation + unit, unit)
        child.tail = inner
    element[-1].tail = "\n" + indentation


def _remove(parent: ElementBuilder.Element, element: ElementBuilder.Element) -> None:
    index = list(parent).index(element)
    if index > 0:
        parent[index - 1].tail = element.tail  # keeps the closing tag's indentation when it was last
    parent.remove(element)


def _replace(parent: ElementBuilder.Element, old: ElementBuilder.Element, new: ElementBuilder.Element) -> None:
    new.tail = old.tail
    parent[list(parent).index(old)] = new


def _read_bytes(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise InputError(path, f"cannot read annotation ({error.strerror or error})") from error


def _parse_ours(data: str | bytes) -> ElementBuilder.Element:
    """The tree of XML this module wrote, or that parse_voc_xml accepted (no DOCTYPE: nothing to
    expand, nothing to fetch), comments kept; expat's C parser, without defusedxml's Python one."""
    parser = ElementBuilder.XMLParser(target=ElementBuilder.TreeBuilder(insert_comments=True, insert_pis=True))
    parser.feed(data)
    return parser.close()


def _declaration(data: bytes) -> str | None:
    """The file's <?xml?> declaration; a declared encoding other than UTF-8 becomes UTF-8, which
    is what writing uses."""
    found = re.match(rb"(?:\xef\xbb\xbf)?\s*(<\?xml\s[^>]*\?>)", data)
    if found is None:
        return None
    declaration = found.group(1).decode("ascii", errors="replace")
    encoding = re.search(r"""encoding\s*=\s*["']([^"']*)""", declaration)
    return declaration if encoding is None or encoding.group(1).lower() in ("utf-8", "utf8") else UTF8_DECLARATION


def _serialized(root: ElementBuilder.Element, declaration: str | None) -> bytes:
    """The file's bytes; an empty element as <tag></tag>, as CVAT and labelImg (lxml) write it."""
    text = ElementBuilder.tostring(root, encoding="unicode", short_empty_elements=False)
    return ((f"{declaration}\n" if declaration else "") + text + "\n").encode("utf-8")
