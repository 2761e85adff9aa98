"""Fuzzing every parser we own or call: each input gives a valid result or one InputError line.

Parsers: VOC XML (one file, a VOC folder, a labelImg folder), COCO JSON, YOLO folders, checkpoint
files (load_weights_file, and build_model for tensor shapes), image files (load_image and the
header-only image_size) and the `frcnn` command line. Inputs are generated documents with fuzzed
fields (missing tags and keys, NaN / inf / negative / huge / non-numeric numbers, wrong nesting,
wrong JSON types, unicode names, duplicate ids) or real files with bytes flipped, inserted,
repeated and deleted.

The property: a call returns what its reader promises (finite float32 boxes with x1 < x2 and
y1 < y2 inside the stated image size, labels that index the class names, checkpoint fields of
their declared types, an RGB tensor in [0, 1]) or raises InputError whose message is one line
naming a file of the input; never another exception, never a hang. Examples are derandomized,
so every run tries the same inputs; `fuzzed_inputs` counts them for the terminal summary.
"""
from __future__ import annotations

import copy
import io
import json
import signal
import tempfile
import warnings
import xml.etree.ElementTree as ET
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from unittest import mock

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from frcnn_core import cli
from frcnn_core.checkpoints import FORMAT, WeightsFile, load_weights_file, save_checkpoint
from frcnn_core.config import AnchorConfig, DetectorConfig, make_config
from frcnn_core.data.coco import read_coco_json
from frcnn_core.data.dataset import BACKGROUND, DetectionDataset, image_size
from frcnn_core.data.voc import read_labelimg_folder, read_voc_folder, read_voc_xml
from frcnn_core.data.yolo import read_yolo_folder
from frcnn_core.errors import InputError
from frcnn_core.imageio import load_image
from frcnn_core.zoo import MODELS, build_model

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "resources" / "samples"
BCCD_ANNOTATIONS = ROOT.parent / "shared" / "data" / "bccd" / "Annotations"
SEED_XML = [path.read_bytes() for path in sorted(SAMPLES.glob("*.xml")) + sorted(BCCD_ANNOTATIONS.glob("*.xml"))[:40]]


def fuzz(examples: int):
    """Reproducible settings: the same `examples` inputs every run, no time limit per input."""
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much, HealthCheck.large_base_example])


@contextmanager
def within(seconds: int):
    """Fail the test instead of hanging when the block runs longer than `seconds`."""
    def give_up(signum, frame):
        raise AssertionError(f"no answer within {seconds} s: the parser hangs")

    previous = signal.signal(signal.SIGALRM, give_up)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def check_error(error: InputError, root: Path) -> None:
    """One line, "<path>: <problem>", the path being the input or a file inside it."""
    message = str(error)
    assert message.splitlines() == [message], message
    assert error.path is not None and message.startswith(f"{error.path}: "), message
    named = Path(error.path)
    assert named == root or root in named.parents, message


def outcome(call, root: Path):
    """call()'s result, or None when it raised an InputError (checked with check_error)."""
    with within(seconds=30):
        try:
            return call()
        except InputError as error:
            check_error(error, root)
            return None


def check_boxes(boxes: torch.Tensor, width: int | None, height: int | None) -> None:
    """(G, 4) float32, finite, x1 < x2 and y1 < y2, inside [0, width] x [0, height] when known."""
    assert boxes.dtype == torch.float32 and boxes.dim() == 2 and boxes.shape[1] == 4
    assert torch.isfinite(boxes).all()
    assert (boxes[:, 0] < boxes[:, 2]).all() and (boxes[:, 1] < boxes[:, 3]).all()
    if width and height:
        assert (boxes >= 0).all() and (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()


def check_dataset(dataset: DetectionDataset) -> None:
    names = dataset.class_names
    assert names[0] == BACKGROUND and len(set(names)) == len(names)
    assert all(isinstance(name, str) for name in names)
    for sample in dataset.samples:
        check_boxes(sample.boxes, sample.width, sample.height)
        assert sample.labels.dtype == torch.int64 and sample.labels.shape == (len(sample.boxes),)
        assert ((sample.labels >= 1) & (sample.labels < len(names))).all()
    assert all(line.splitlines() == [line] for line in dataset.problems)


@contextmanager
def folder_with(scratch: Path, files: dict[str, bytes]):
    """A fresh folder under `scratch` holding `files` (relative path -> bytes), removed afterwards."""
    with tempfile.TemporaryDirectory(dir=scratch) as name:
        folder = Path(name)
        for relative, data in files.items():
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            (folder / relative).write_bytes(data)
        yield folder


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def png(width: int = 16, height: int = 12) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 160, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


PNG = png()

# --- mutation of real files ------------------------------------------------------------------


@st.composite
def mutated(draw, seeds: list[bytes], tokens: list[bytes]) -> bytes:
    """A seed with 1-8 edits: a bit flipped, bytes inserted / deleted / repeated, a token inserted,
    the tail cut off."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        edit = draw(st.sampled_from(("flip", "insert", "delete", "repeat", "token", "cut")))
        if edit == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif edit == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif edit == "delete":
            del data[at:at + draw(st.integers(1, 64))]
        elif edit == "repeat":
            data[at:at] = data[at:at + draw(st.integers(1, 256))]
        elif edit == "token":
            data[at:at] = draw(st.sampled_from(tokens))
        elif edit == "cut":
            del data[at:]
    return bytes(data)


def rarely(one_in: int):
    """True one time in `one_in` (st.integers favours its bounds, so `integers(0, n) == 0` is no 1 / (n+1))."""
    return st.sampled_from([False] * (one_in - 1) + [True])


def now_and_then(common, rare, one_in: int):
    """`common`, or one time in `one_in` `rare` (st.one_of gives each branch half, whatever its repeats)."""
    return rarely(one_in).flatmap(lambda odd: rare if odd else common)


# --- field values ----------------------------------------------------------------------------

ODD_NUMBER_TEXTS = ["", " ", "nan", "NaN", "-inf", "inf", "1e400", "-1e400", "1e39", "-1e39", "3.4028236e38",
                    "-0", "0x10", "1_000", "١٢", " 12 ", "12abc", "--1", "1.00000001", "9" * 400, "1e-400", "½"]
TEXT = st.text(st.characters(exclude_categories=("Cs", "Cc")), max_size=8)  # control characters: in NAMES
ODD_TEXTS = st.one_of(st.floats().map(repr), st.sampled_from(ODD_NUMBER_TEXTS), TEXT)
NUMBER_TEXTS = now_and_then(st.integers(-20, 260).map(str), ODD_TEXTS, one_in=4)
SIDE_TEXTS = now_and_then(st.integers(0, 300).map(str), ODD_TEXTS, one_in=4)
NAMES = st.one_of(st.sampled_from(["cat", "dog", "RBC", " cat ", BACKGROUND, "N/A", "猫", "a\nb", "a\x01b", "x" * 300,
                                   ""]), TEXT)
FILE_NAMES = st.one_of(st.sampled_from(["a.png", "b.png", "missing.png", "", "a", "../a.png", "/etc/passwd",
                                        "x" * 300 + ".png", "images/b.png", "/" + "y" * 5000]), TEXT)
CORNERS = ["xmin", "ymin", "xmax", "ymax"]
XML_TOKENS = [b"<", b">", b"&", b"&amp;", b"&lol;", b"]]>", b"<!--", b"-->", b"<![CDATA[", b"<!DOCTYPE a>",
              b'<!DOCTYPE a SYSTEM "file:///etc/passwd">', b"nan", b"-1e999", b"1e39", b"<object>", b"</object>",
              b"<name></name>", b"<bndbox>", b"\x00", b"\xff\xfe", "é".encode(), b'<?xml version="1.0"?>',
              b'encoding="utf-16"', b"<size><width>-1</width></size>"]

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


def voc(size: str, *objects: tuple) -> bytes:
    boxes = "".join(f"<object><name>{name}</name><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax>"
                    f"<ymax>{y2}</ymax></bndbox></object>" for name, x1, y1, x2, y2 in objects)
    return f"<annotation>{size}{boxes}</annotation>".encode()


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


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                           lambda children: st.lists(children, max_size=3)
                           | st.dictionaries(st.text(max_size=5), children, max_size=3), max_leaves=6)
COCO_NUMBERS = now_and_then(st.integers(0, 20), st.one_of(st.integers(-10, 120), st.floats(),
                                                        st.sampled_from([10**400, -(10**400), 2**63, 1e308])), one_in=3)


def mostly(values):
    """`values`, or one time in eight any JSON value: a field of the wrong type."""
    return now_and_then(values, JSON_VALUES, one_in=8)


@st.composite
def entries(draw, **fields) -> dict:
    """A dict of the given fields, each left out one time in ten."""
    return {key: draw(values) for key, values in fields.items() if not draw(rarely(10))}


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

# --- checkpoints -------------------------------------------------------------------------------


CONFIG = make_config("torchvision", AnchorConfig())
TENSORS = st.builds(lambda shape, dtype: torch.zeros(shape, dtype=dtype), st.lists(st.integers(0, 3), max_size=3),
                    st.sampled_from([torch.float32, torch.float16, torch.int64, torch.bool, torch.complex64]))
ODD_VALUES = st.one_of(JSON_VALUES, TENSORS, st.sampled_from([(1, 2), [1.0, 2.0, 3.0], ((32,),), "800", True, None,
                                                              float("nan"), 2**70, CONFIG]))
STATE_DICTS = st.dictionaries(now_and_then(st.one_of(st.sampled_from(["rpn.head.conv.0.0.weight", "backbone.0.weight"]),
                                                     TEXT), st.integers(), one_in=8),
                              mostly(TENSORS), min_size=1, max_size=4)


@st.composite
def config_dicts(draw) -> dict:
    """CONFIG.to_dict() with 0-3 edits: a key dropped, a value replaced by an odd one, a key added."""
    config = copy.deepcopy(CONFIG.to_dict())
    for _ in range(draw(st.sampled_from([0, 0, 1, 2, 3]))):
        section = draw(st.sampled_from(sorted(config, key=str)))
        holder = config[section] if isinstance(config[section], dict) and draw(st.booleans()) else config
        if not holder:
            continue
        key = draw(st.sampled_from(sorted(holder, key=str)))
        edit = draw(st.sampled_from(("drop", "replace", "add")))
        if edit == "drop":
            del holder[key]
        elif edit == "replace":
            holder[key] = draw(ODD_VALUES)
        else:
            holder[draw(st.one_of(st.text(max_size=5), st.integers()))] = draw(ODD_VALUES)
    return config


CHECKPOINT_CONTENTS = now_and_then(
    entries(format=mostly(st.just(FORMAT)), model=mostly(st.sampled_from([*MODELS, "", "nope"])),
            config=mostly(config_dicts()), class_names=mostly(st.lists(NAMES, max_size=4)),
            state_dict=mostly(STATE_DICTS)),
    st.one_of(STATE_DICTS, ODD_VALUES), one_in=4)


def same_kind(value, reference) -> bool:
    """Whether a config value has the kind of the reference value that to_dict wrote."""
    if isinstance(reference, dict):
        return isinstance(value, dict) and value.keys() == reference.keys() and all(
            same_kind(value[key], reference[key]) for key in reference)
    if isinstance(reference, (tuple, list)):
        return isinstance(value, (tuple, list)) and all(same_kind(item, reference[0]) for item in value)
    if isinstance(reference, bool):
        return isinstance(value, bool)
    if isinstance(reference, (int, float)):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return reference is None or isinstance(value, type(reference))


def check_weights(weights: WeightsFile) -> None:
    assert weights.state_dict and all(isinstance(key, str) and isinstance(value, torch.Tensor)
                                      for key, value in weights.state_dict.items())
    if weights.model_name is None:
        assert weights.config is None and weights.class_names is None
        return
    assert isinstance(weights.model_name, str) and weights.model_name
    assert isinstance(weights.config, DetectorConfig) and same_kind(weights.config.to_dict(), CONFIG.to_dict())
    assert isinstance(weights.class_names, list) and all(isinstance(name, str) for name in weights.class_names)


def checkpoint_bytes(content) -> bytes:
    buffer = io.BytesIO()
    torch.save(content, buffer)
    return buffer.getvalue()


CHECKPOINT_SEED = checkpoint_bytes({"format": FORMAT, "model": "mobilenet-v2", "config": CONFIG.to_dict(),
                                    "class_names": [BACKGROUND, "cat"],
                                    "state_dict": {"a.weight": torch.arange(6.0).reshape(2, 3)}})
PICKLE_TOKENS = [b"PK\x03\x04", b"\x80\x02", b"\x80\x05", b"\xff\xff\xff\x7f", b"\x00" * 8, b"c__builtin__\neval\n",
                 b"data.pkl", b"R", b"."]


@fuzz(examples=1200)
@given(content=st.one_of(CHECKPOINT_CONTENTS.map(checkpoint_bytes), mutated([CHECKPOINT_SEED], PICKLE_TOKENS),
                         st.binary(max_size=200)))
@example(content=checkpoint_bytes({"format": FORMAT, "model": "mobilenet-v2", "config": {**CONFIG.to_dict(),
                                   "transform": []}, "class_names": [],
                                   "state_dict": {"a": torch.ones(1)}}))  # was AttributeError
@example(content=checkpoint_bytes({"format": FORMAT, "model": 5, "config": CONFIG.to_dict(), "class_names": "ab",
                                   "state_dict": {"a": 1}}))  # was accepted: crashed later in build_model
@example(content=checkpoint_bytes({"format": FORMAT, "model": "mobilenet-v2", "config": {**CONFIG.to_dict(),
                                   "transform": {"min_size": "800"}}, "class_names": [],
                                   "state_dict": {"a": torch.ones(1)}}))  # was accepted: a str where an int goes
def test_checkpoint_file(content, scratch, fuzzed_inputs):
    fuzzed_inputs["load_weights_file"] += 1
    path = scratch / "model.pt"
    path.write_bytes(content)
    weights = outcome(lambda: load_weights_file(path), path)
    if weights is not None:
        check_weights(weights)


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return build_model("mobilenet-v2", "none")


@st.composite
def damaged_state_dicts(draw, state_dict: dict) -> dict:
    """The state_dict with 0-3 edits: a key dropped or added, a tensor reshaped, cut or retyped."""
    damaged = dict(state_dict)
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(sorted(damaged)))
        tensor = damaged[key]
        edit = draw(st.sampled_from(("drop", "add", "unsqueeze", "cut", "flatten", "dtype", "old-rpn-name")))
        if edit == "drop":
            del damaged[key]
        elif edit == "add":
            damaged[key + draw(st.sampled_from([".extra", "_", "x"]))] = tensor
        elif edit == "unsqueeze":
            damaged[key] = tensor.unsqueeze(0)
        elif edit == "cut" and tensor.dim():
            damaged[key] = tensor[: max(tensor.shape[0] - 1, 0)]
        elif edit == "flatten":
            damaged[key] = tensor.flatten()
        elif edit == "dtype":
            damaged[key] = tensor.to(draw(st.sampled_from([torch.float16, torch.int64, torch.bool])))
        elif edit == "old-rpn-name":
            damaged["rpn.head.conv.weight"] = tensor
    return damaged


@fuzz(examples=20)
@given(data=st.data(), as_checkpoint=st.booleans())
def test_checkpoint_tensor_shapes(data, as_checkpoint, small_model, scratch, fuzzed_inputs):
    """Shapes are only known to the model: build_model loads all of a file's weights or refuses it."""
    fuzzed_inputs["build_model"] += 1
    state_dict = data.draw(damaged_state_dicts(small_model.state_dict()))
    path = scratch / "weights.pt"
    if as_checkpoint:
        save_checkpoint(path, "mobilenet-v2", small_model.config, small_model.class_names, state_dict)
        model = outcome(lambda: build_model(str(path)), path)
    else:
        torch.save(state_dict, path)
        model = outcome(lambda: build_model("mobilenet-v2", str(path)), path)
    assert model is None or not model.training

# --- images --------------------------------------------------------------------------------------


def encoded(image: Image.Image, kind: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=kind, **options)
    return buffer.getvalue()


def image_seeds() -> list[bytes]:
    photo = Image.open(SAMPLES / "chelsea.png").convert("RGB").crop((100, 40, 164, 88))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: displayed after a quarter turn
    return [encoded(photo, "PNG"), encoded(photo, "JPEG", exif=exif), encoded(photo.convert("P"), "GIF"),
            encoded(photo, "BMP"), encoded(photo.convert("L"), "TIFF"), encoded(photo, "WEBP"),
            encoded(photo.convert("I;16"), "PNG"), encoded(photo.convert("RGBA"), "PNG"), encoded(photo, "PPM"),
            (SAMPLES / "BloodImage_00002.jpg").read_bytes()]


IMAGE_SEEDS = image_seeds()
IMAGE_TOKENS = [b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff",
                b"IHDR", b"IEND", b"Exif\x00\x00", b"\x01\x12\x00\x03", b"GIF89a", b"BM", b"II*\x00", b"RIFF"]
IMAGE_BYTES = st.one_of(
    mutated(IMAGE_SEEDS, IMAGE_TOKENS),
    st.tuples(st.sampled_from(IMAGE_SEEDS), st.floats(0, 1)).map(lambda cut: cut[0][:int(len(cut[0]) * cut[1])]),
    st.tuples(st.sampled_from(IMAGE_TOKENS), st.binary(max_size=200)).map(b"".join),
)


@pytest.mark.filterwarnings("ignore::UserWarning:PIL")  # "Corrupt EXIF data", "Tag data larger than file"
@fuzz(examples=1200)
@given(data=IMAGE_BYTES, suffix=st.sampled_from([".png", ".jpg", ".gif", ".bmp", ".tif", ".webp", ".ppm"]))
def test_image_file(data, suffix, scratch, fuzzed_inputs):
    """load_image decodes or refuses; image_size (the header alone) agrees with what it decodes."""
    fuzzed_inputs["load_image"] += 1
    fuzzed_inputs["image_size"] += 1
    path = scratch / f"image{suffix}"
    path.write_bytes(data)
    loaded = outcome(lambda: load_image(path), path)
    size = outcome(lambda: image_size(path), path)
    if size is not None:
        assert all(isinstance(side, int) and side > 0 for side in size)
    if loaded is not None:
        tensor = loaded.tensor
        assert tensor.dtype == torch.float32 and tensor.dim() == 3 and tensor.shape[0] == 3
        assert tensor.shape[1] > 0 and tensor.shape[2] > 0
        assert torch.isfinite(tensor).all() and tensor.min() >= 0 and tensor.max() <= 1
        assert size == (loaded.width, loaded.height)

# --- the command line ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_inputs(scratch) -> dict[str, str]:
    """Input files for the command line by name: good and bad images, annotations, datasets, weights."""
    folder = scratch / "cli"
    dataset = folder / "dataset"
    dataset.mkdir(parents=True)
    (dataset / "a.png").write_bytes(png(64, 48))
    (dataset / "a.xml").write_bytes(voc("<size><width>64</width><height>48</height></size>", ("RBC", 5, 6, 40, 30)))
    (folder / "bad-dataset").mkdir()
    (folder / "bad-dataset" / "a.xml").write_bytes(b"<annotation><object>")
    files = {"image.png": png(64, 48), "bad.png": b"\x89PNG\r\n\x1a\n garbage", "bad.xml": b"<annotation",
             "gt.xml": (dataset / "a.xml").read_bytes(), "bad.json": b'{"images": 5}', "noise.pt": bytes(range(256)),
             "list.pt": checkpoint_bytes([1, 2]), "protocol.pt": b"\x80\x14 damaged", "file": b"a file, not a folder"}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    inputs = {name: str(folder / name) for name in files}
    return inputs | {"dataset": str(dataset), "bad-dataset": str(folder / "bad-dataset"), "folder": str(folder),
                     "missing": str(folder / "missing.png"), "under-a-file": str(folder / "file" / "out")}


# "@name" stands for an input file of cli_inputs, or for "fresh.json" / "fresh-dir": a new path per run.
# Model names are those that build offline (no download): bccd-demo, mobilenet-v2 (ImageNet weights
# are in $TORCH_HOME), and mobilenet-v3-320-fpn always with --weights none or a file.
ODD_NUMBERS = ["0", "1", "2", "0.5", "-1", "99999999999999999999", *ODD_NUMBER_TEXTS]
FAST_MODEL = ["--model", "mobilenet-v3-320-fpn", "--weights", "none"]
MODEL_CHOICES = [FAST_MODEL, [], FAST_MODEL, ["--model", "mobilenet-v2", "--weights", "none"],
                 ["--model", "no-such-model"], ["--model", "@noise.pt"], ["--model", "@list.pt"],
                 ["--model", "@folder"],
                 ["--model", "mobilenet-v3-320-fpn", "--weights", "@noise.pt"],
                 ["--model", "mobilenet-v3-320-fpn", "--weights", "@missing"], ["--model", "@protocol.pt"],
                 ["--model", "mobilenet-v2", "--weights", "coco"]]
OUTPUT_FILES = ["@fresh.json", "@fresh.json", "-", "@folder", "@under-a-file", "@file"]
OUTPUT_FOLDERS = ["@fresh-dir", "@fresh-dir", "@file", "@under-a-file"]
OPTION_VALUES = {
    "--json": OUTPUT_FILES, "--vis": OUTPUT_FOLDERS, "--out": OUTPUT_FOLDERS, "--plots": OUTPUT_FOLDERS,
    "--score-thresh": ODD_NUMBERS, "--seed": ODD_NUMBERS, "--gt": ["@gt.xml", "@bad.xml", "@image.png", "@missing"],
    "--preset": ["seed", "paper", "torchvision", "fast"], "--device": ["cpu", "cuda", "auto", "tpu"],
    "--split": ["val", "train", "trainval", "../x", ""], "--iters": ODD_NUMBERS, "--epochs": ODD_NUMBERS,
    "--batch-size": ODD_NUMBERS, "--lr": ODD_NUMBERS, "--warmup": ODD_NUMBERS, "--frozen-stages": ODD_NUMBERS,
    "--checkpoint-every": ODD_NUMBERS, "--hflip": ODD_NUMBERS, "--vflip": ODD_NUMBERS, "--schedule": ["cosine", "x"],
    "--data": ["@dataset", "@bad-dataset", "@bad.json", "@missing", "@image.png"],
}
FLAGS = {"--fast": [], "--no-losses": [], "--photometric": [], "--no-amp": [], "--resume": [], "--help": []}
MODEL_OPTIONS = ["--preset", "--device", "--fast"]
COMMAND_OPTIONS = {
    "models": ["--help"],
    "detect": ["--json", "--vis", "--score-thresh", *MODEL_OPTIONS],
    "trace": ["--gt", "--seed", "--json", "--out", *MODEL_OPTIONS],
    "eval": ["--split", "--json", "--plots", "--no-losses", *MODEL_OPTIONS],
    "diagnose": ["--split", "--score-thresh", "--json", "--out", *MODEL_OPTIONS],
    "train": ["--split", "--iters", "--epochs", "--batch-size", "--lr", "--warmup", "--schedule", "--frozen-stages",
              "--checkpoint-every", "--seed", "--hflip", "--vflip", "--photometric", "--no-amp", "--resume",
              *MODEL_OPTIONS],
}
POSITIONALS = {"detect": ["@image.png", "@image.png", "@bad.png", "@missing", "@folder"],
               "trace": ["@image.png", "@image.png", "@bad.png", "@missing"]}
SOUP = [*OPTION_VALUES, *FLAGS, *ODD_NUMBERS, "bccd-demo", "mobilenet-v2", "none", "coco", "-", "--", "help",
        "@image.png", "@bad.xml", "@noise.pt", "@dataset"]


@st.composite
def argument_lists(draw) -> list[str]:
    """A command with its needed arguments and 0-3 of its options with fuzzed values; one time in
    five a soup of tokens. Training gets bad data only: a good dataset would train for real."""
    command = draw(st.sampled_from(sorted(COMMAND_OPTIONS)))
    if draw(rarely(5)):  # a soup of tokens
        return [command, *draw(st.lists(st.one_of(st.sampled_from(SOUP), st.text(max_size=6)), max_size=8))]
    arguments = [command]
    if command in POSITIONALS:
        arguments += draw(st.lists(st.sampled_from(POSITIONALS[command]), min_size=1, max_size=2))
    if command in ("detect", "trace", "eval", "diagnose"):
        arguments += draw(st.sampled_from(MODEL_CHOICES))
    if command in ("eval", "diagnose"):
        arguments += ["--data", draw(st.sampled_from(["@dataset", "@dataset", "@bad-dataset", "@bad.json"]))]
    if command == "train":
        arguments += ["--data", draw(st.sampled_from(["@missing", "@bad-dataset", "@bad.json"])), "--out", "@fresh-dir"]
        if draw(st.booleans()):
            arguments += ["--scale-jitter", draw(st.sampled_from(ODD_NUMBERS)), draw(st.sampled_from(ODD_NUMBERS))]
    for option in draw(st.lists(st.sampled_from(COMMAND_OPTIONS[command]), max_size=3)):
        arguments += [option, draw(st.sampled_from(OPTION_VALUES[option]))] if option in OPTION_VALUES else [option]
    return ["--verbose", *arguments] if draw(rarely(6)) else arguments


def cached_builder():
    """build_model, built once per (name, weights, preset, score threshold) for the names that need
    no file: the arguments are under test, not the model, and a build costs ~0.3 s."""
    built = {}

    def build(model, weights="none", preset=None, score_thresh=None, class_names=None):
        if class_names is not None or model not in (*MODELS, "bccd-demo") or weights not in ("none", "imagenet"):
            return build_model(model, weights, preset, score_thresh, class_names)
        key = (model, weights, preset, score_thresh)
        if key not in built:
            built[key] = build_model(*key)
        return built[key]

    return build


@pytest.fixture(scope="module")
def quick_models():
    with mock.patch.object(cli, "build_model", cached_builder()):
        yield


def run_main(argv: list[str]) -> tuple[int, str, list[str]]:
    """(exit status, stderr, UserWarnings) of `frcnn ARGV`, argparse's exits included. Outside a
    test a UserWarning prints two lines to stderr."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with redirect_stdout(stdout), redirect_stderr(stderr), within(seconds=60), \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            status = cli.main(argv)
        except SystemExit as exit:
            status = exit.code
    return status, stderr.getvalue(), [str(warning.message) for warning in caught
                                       if issubclass(warning.category, UserWarning)]


@fuzz(examples=300)
@given(argv=argument_lists())
@example(argv=["detect", "@image.png", *FAST_MODEL, "--json", "@folder"])  # was IsADirectoryError
@example(argv=["trace", "@image.png", *FAST_MODEL, "--out", "@file"])  # was FileExistsError
@example(argv=["trace", "@image.png", "--seed", "99999999999999999999", "--gt", "@gt.xml"])  # was ValueError
@example(argv=["detect", "@image.png", "--model", "@protocol.pt"])  # torch's two-line warning came first
def test_command_line(argv, cli_inputs, quick_models, scratch, fuzzed_inputs):
    """Status 0 or 2; a failure is told in one "error:" line (argparse's "frcnn ...: error:" line for
    bad arguments), with no warning before it and no traceback unless --verbose asks for one."""
    fuzzed_inputs["frcnn main(argv)"] += 1
    with tempfile.TemporaryDirectory(dir=scratch) as fresh:
        paths = cli_inputs | {"fresh.json": f"{fresh}/out.json", "fresh-dir": f"{fresh}/out"}
        named = [paths.get(token[1:], token) if token.startswith("@") else token for token in argv]
        status, stderr, user_warnings = run_main(named)
    assert status in (0, 2), (status, stderr)
    assert "Traceback" not in stderr or "--verbose" in argv, stderr
    if status == 2:
        assert any(line.startswith("error: ") or ": error: " in line for line in stderr.splitlines()), stderr
        assert not user_warnings, user_warnings
