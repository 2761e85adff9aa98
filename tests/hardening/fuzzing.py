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

This module holds what the two fuzz modules (test_fuzz_annotations.py, test_fuzz_files.py) share:
the property checks, the example budget, a watchdog against hangs, byte mutation of real files
and the odd field values the generated documents are built from.
"""
from __future__ import annotations

import io
import signal
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch
from hypothesis import HealthCheck, settings, strategies as st
from PIL import Image

from frcnn_core.data.samples import BACKGROUND, DetectionDataset
from frcnn_core.errors import InputError
from frcnn_core.resources import SAMPLES

ROOT = Path(__file__).resolve().parents[2]
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


# --- shared by both fuzz modules -----------------------------------------------------------

def voc(size: str, *objects: tuple) -> bytes:
    boxes = "".join(f"<object><name>{name}</name><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax>"
                    f"<ymax>{y2}</ymax></bndbox></object>" for name, x1, y1, x2, y2 in objects)
    return f"<annotation>{size}{boxes}</annotation>".encode()


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                           lambda children: st.lists(children, max_size=3)
                           | st.dictionaries(st.text(max_size=5), children, max_size=3), max_leaves=6)


def mostly(values):
    """`values`, or one time in eight any JSON value: a field of the wrong type."""
    return now_and_then(values, JSON_VALUES, one_in=8)


@st.composite
def entries(draw, **fields) -> dict:
    """A dict of the given fields, each left out one time in ten."""
    return {key: draw(values) for key, values in fields.items() if not draw(rarely(10))}
