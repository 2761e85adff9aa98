"""Fuzzing the annotation parsers: VOC XML (one file, a VOC folder, a labelImg folder), COCO JSON
and YOLO folders, with generated documents and mutated real files. The property and the shared
pieces are in fuzzing.py; the checkpoint, image and command-line parsers in test_fuzz_files.py."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import example, given, strategies as st

from frcnn_core.data.coco import read_coco_json
from frcnn_core.data.voc import read_labelimg_folder, read_voc_folder, read_voc_xml
from frcnn_core.data.yolo import read_yolo_folder

from fuzzing import (
    CORNERS,
    FILE_NAMES,
    JSON_VALUES,
    NAMES,
    NUMBER_TEXTS,
    PNG,
    SEED_XML,
    SIDE_TEXTS,
    TEXT,
    XML_TOKENS,
    check_boxes,
    check_dataset,
    entries,
    folder_with,
    fuzz,
    mostly,
    mutated,
    now_and_then,
    outcome,
    png,
    rarely,
    voc,
)

# --- VOC XML ----------------------------------------------------------------------------------

@st.composite
def voc_documents(draw) -> bytes:
    """A VOC-looking document: tags missing or repeated, fuzzed numbers and names, objects and boxes
    now and then in the wrong place, an XML declaration with any encoding."""
    root = ET.Element(draw(st.sampled_from(["annotation"] * 15 + ["root", "Annotation"])))
    elements = [root]

    def add(parent, tag: str, text: str | None = None):
        element = ET.SubElement(parent, tag)
        element.text = text
        elements.append(element)
        return element

    for tag, values in (("folder", NAMES), ("filename", FILE_NAMES), ("path", FILE_NAMES)):
        if draw(st.booleans()):
            add(root, tag, draw(values))
    if not draw(rarely(4)):
        size = add(root, "size")
        tags = draw(now_and_then(st.just(["width", "height", "depth"]),
                                 st.lists(st.sampled_from(["width", "height", "depth"]), max_size=4), one_in=5))
        for tag in tags:
            add(size, tag, draw(SIDE_TEXTS))
    for _ in range(draw(st.integers(0, 4))):
        parent = draw(st.sampled_from(elements)) if draw(rarely(12)) else root
        obj = add(parent, "object")
        if not draw(rarely(12)):
            add(obj, "name", draw(NAMES))
        if draw(st.booleans()):
            add(obj, "difficult", draw(st.sampled_from(["0", "1", " 1 ", "yes", "", "2"])))
        if not draw(rarely(12)):
            box = add(root if draw(rarely(12)) else obj, "bndbox")
            for tag in draw(now_and_then(st.just(CORNERS), st.lists(st.sampled_from(CORNERS), max_size=5), one_in=5)):
                add(box, tag, draw(NUMBER_TEXTS))
    declaration = draw(st.sampled_from([""] * 5 + ['<?xml version="1.0"?>'] * 5 + [
        '<?xml version="1.0" encoding="utf-8"?>', '<?xml version="1.0" encoding="latin-1"?>',
        '<?xml version="1.0" encoding="utf-16"?>', '<?xml version="1.0" encoding="x-unknown"?>']))
    return (declaration + ET.tostring(root, encoding="unicode")).encode("utf-8")


VOC_DOCUMENTS = st.one_of(voc_documents(), mutated(SEED_XML, XML_TOKENS))


@fuzz(examples=2000)
@given(document=VOC_DOCUMENTS)
@example(document=voc("<size><width>nan</width><height>3</height></size>"))  # was ValueError
@example(document=voc("<size><width>1e400</width><height>3</height></size>"))  # was OverflowError
@example(document=voc("<size><width>-5</width><height>3</height></size>"))  # was kept as width -5
@example(document=voc("", ("a", 1, 1, "1e39", 2)))  # was an inf box (past float32's range)
@example(document=voc("", ("a", 1, 1, "1.00000001", 2)))  # was a zero-area box in float32
@example(document=b'<?xml version="1.0" encoding="foo"?><annotation/>')  # was LookupError
@example(document=b'<!DOCTYPE annotation SYSTEM "x.dtd"><annotation/>')  # an external DTD was accepted
def test_voc_xml(document, scratch, fuzzed_inputs):
    fuzzed_inputs["read_voc_xml"] += 1
    path = scratch / "annotation.xml"
    path.write_bytes(document)
    annotation = outcome(lambda: read_voc_xml(path), path)
    if annotation is not None:
        check_boxes(annotation.boxes, annotation.width, annotation.height)
        assert len(annotation.names) == len(annotation.boxes) == len(annotation.difficult)
        assert all(isinstance(side, int) and side > 0 for side in (annotation.width, annotation.height) if side)


def split_files(stems: list[str]):
    lines = st.lists(st.one_of(st.sampled_from([*stems, "missing", "", " ", "a 1", "../a", "x" * 300, "a\x00"]),
                               TEXT), max_size=5)
    return st.one_of(lines.map(lambda found: "\n".join(found).encode()), st.binary(max_size=20))


CLASS_FILES = st.one_of(st.lists(NAMES, max_size=4).map(lambda names: "\n".join(names).encode()),
                        st.binary(max_size=20))


@st.composite
def voc_folders(draw) -> dict[str, bytes]:
    stems = draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=3, unique=True))
    files = {}
    for stem in stems:
        files[f"Annotations/{stem}.xml"] = draw(st.one_of(VOC_DOCUMENTS, st.sampled_from(SEED_XML)))
        if not draw(rarely(4)):
            files[f"JPEGImages/{stem}.png"] = PNG
    if draw(st.booleans()):
        files["ImageSets/Main/trainval.txt"] = draw(split_files(stems))
    if draw(rarely(4)):
        files["classes.txt"] = draw(CLASS_FILES)
    return files


@fuzz(examples=400)
@given(files=voc_folders(), split=st.sampled_from([None, None, None, "trainval", "val", "../Annotations/a", "a\x00"]))
def test_voc_folder(files, split, scratch, fuzzed_inputs):
    fuzzed_inputs["read_voc_folder"] += 1
    with folder_with(scratch, files) as folder:
        dataset = outcome(lambda: read_voc_folder(folder, split), folder)
        if dataset is not None:
            check_dataset(dataset)


@st.composite
def labelimg_folders(draw) -> dict[str, bytes]:
    files = {}
    for stem in draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=3, unique=True)):
        files[f"{stem}.xml"] = draw(st.one_of(VOC_DOCUMENTS, st.sampled_from(SEED_XML)))
        if not draw(rarely(4)):
            files[f"{stem}.png"] = PNG
    if draw(st.booleans()):
        files["z.png"] = PNG
    if draw(rarely(4)):
        files[draw(st.sampled_from(["classes.txt", "labels.txt"]))] = draw(CLASS_FILES)
    return files


@fuzz(examples=400)
@given(files=labelimg_folders())
@example(files={"a.xml": b"<annotation><filename>" + b"x" * 5000 + b"</filename></annotation>"})  # was OSError
@example(files={"a.xml": voc("", ("cat", 1, 1, 5, 5), ("__background__", 1, 1, 5, 5)), "a.png": PNG})  # ValueError
@example(files={"a.xml": voc(""), "classes.txt": b"cat\n__background__\n"})  # was ValueError
def test_labelimg_folder(files, scratch, fuzzed_inputs):
    fuzzed_inputs["read_labelimg_folder"] += 1
    with folder_with(scratch, files) as folder:
        dataset = outcome(lambda: read_labelimg_folder(folder), folder)
        if dataset is not None:
            check_dataset(dataset)

# --- COCO JSON ---------------------------------------------------------------------------------

COCO_NUMBERS = now_and_then(st.integers(0, 20), st.one_of(st.integers(-10, 120), st.floats(),
                                                        st.sampled_from([10**400, -(10**400), 2**63, 1e308])), one_in=3)


COCO_IDS = mostly(st.integers(0, 4))
COCO_IMAGES = st.lists(entries(id=COCO_IDS, file_name=mostly(st.one_of(st.sampled_from(["a.png", "b.png", "a.png\x00"]),
                                                                      FILE_NAMES)),
                               width=mostly(COCO_NUMBERS), height=mostly(COCO_NUMBERS)), max_size=4)
COCO_BOXES = now_and_then(st.lists(COCO_NUMBERS, min_size=4, max_size=4), st.lists(COCO_NUMBERS, max_size=6), one_in=5)
COCO_ANNOTATIONS = st.lists(entries(id=COCO_IDS, image_id=COCO_IDS, category_id=COCO_IDS, bbox=mostly(COCO_BOXES),
                                    iscrowd=mostly(st.sampled_from([0, 0, 0, 1]))), max_size=6)
COCO_CATEGORIES = st.lists(entries(id=COCO_IDS, name=mostly(NAMES)), max_size=4)
COCO_DOCUMENTS = now_and_then(
    entries(images=mostly(COCO_IMAGES), annotations=mostly(COCO_ANNOTATIONS), categories=mostly(COCO_CATEGORIES)),
    JSON_VALUES, one_in=8).map(lambda content: json.dumps(content).encode())
COCO_SEED = json.dumps({
    "images": [{"id": 1, "file_name": "a.png", "width": 16, "height": 12},
               {"id": 2, "file_name": "b.png", "width": 16, "height": 12}],
    "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [1, 2, 5, 6], "area": 30, "iscrowd": 0},
                    {"id": 2, "image_id": 2, "category_id": 1, "bbox": [0.5, 0, 15.5, 12], "iscrowd": 0}],
    "categories": [{"id": 1, "name": "cat"}, {"id": 3, "name": "dog"}],
}, indent=1).encode()
JSON_TOKENS = [b"{", b"}", b"[", b"]", b",", b":", b'"', b"NaN", b"-Infinity", b"1e999", b"null", b"true",
               b"9" * 30, b"\\u0000", b"\xff", b'"__background__"', b"[" * 50, b"-"]


def coco_case(**content) -> bytes:
    base = {"images": [{"id": 1, "file_name": "a.png"}], "categories": [{"id": 1, "name": "cat"}]}
    return json.dumps({**base, **content}).encode()


@pytest.fixture(scope="module")
def coco_folder(scratch) -> Path:
    """The images COCO_SEED names: a.png beside the JSON file, b.png in images/."""
    folder = scratch / "coco"
    (folder / "images").mkdir(parents=True)
    (folder / "a.png").write_bytes(PNG)
    (folder / "images" / "b.png").write_bytes(PNG)
    return folder


@fuzz(examples=1500)
@given(document=st.one_of(COCO_DOCUMENTS, mutated([COCO_SEED], JSON_TOKENS)))
@example(document=coco_case(annotations=5))  # was TypeError
@example(document=coco_case(annotations=[{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10**400, 1, 2, 2]}]))
@example(document=b'{"images": [], "categories": [], "x": ' + b"1" * 5000 + b"}")  # was ValueError
@example(document=b"[" * 100_000 + b"]" * 100_000)  # was RecursionError
@example(document=coco_case(images=[{"id": 1, "file_name": "a.png", "width": 10**400, "height": 5}]))
@example(document=coco_case(categories=[{"id": 1, "name": "cat"}, {"id": 2, "name": "__background__"}]))
@example(document=coco_case(annotations=[{"id": "a\nb", "image_id": "x"}]))  # was a two-line message
@example(document=coco_case(images=[{"id": 1, "file_name": "a" * 5000}]))  # was OSError
def test_coco_json(document, coco_folder, fuzzed_inputs):
    fuzzed_inputs["read_coco_json"] += 1
    path = coco_folder / "instances.json"
    path.write_bytes(document)
    dataset = outcome(lambda: read_coco_json(path), path)
    if dataset is not None:
        check_dataset(dataset)

# --- YOLO --------------------------------------------------------------------------------------

YOLO_LINES = now_and_then(
    st.tuples(st.integers(-1, 2), *[st.floats(-0.2, 1.2)] * 4).map(lambda fields: " ".join(map(repr, fields))),
    st.one_of(st.lists(st.one_of(st.integers(-1, 3).map(str), NUMBER_TEXTS), max_size=7).map(" ".join), TEXT),
    one_in=5)
YOLO_LABEL_FILES = now_and_then(st.lists(YOLO_LINES, max_size=5).map(lambda lines: "\n".join(lines).encode()),
                                st.binary(max_size=30), one_in=5)


@st.composite
def yolo_folders(draw) -> dict[str, bytes]:
    files = {}
    if not draw(rarely(6)):
        files["classes.txt"] = draw(st.one_of(st.just(b"cat\ndog\n"), CLASS_FILES))
    for stem in draw(st.lists(st.sampled_from(["a", "b"]), min_size=1, max_size=2, unique=True)):
        image = png(draw(st.integers(1, 40)), draw(st.integers(1, 40)))
        files[f"{stem}.png"] = draw(now_and_then(st.just(image), st.binary(max_size=40), one_in=6))
        if not draw(rarely(5)):
            files[f"{stem}.txt"] = draw(YOLO_LABEL_FILES)
    return files


@fuzz(examples=600)
@given(files=yolo_folders())
@example(files={"classes.txt": b"cat\n__background__\n", "a.png": PNG})  # was ValueError
def test_yolo_folder(files, scratch, fuzzed_inputs):
    fuzzed_inputs["read_yolo_folder"] += 1
    with folder_with(scratch, files) as folder:
        dataset = outcome(lambda: read_yolo_folder(folder), folder)
        if dataset is not None:
            check_dataset(dataset)
