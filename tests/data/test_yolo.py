"""YOLO txt: hand-computed conversion, reported problems, malformed lines, exact round trip."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

from frcnn_core.data.formats import open_dataset
from frcnn_core.data.yolo import read_yolo_folder, write_yolo
from frcnn_core.errors import InputError

from datasets import random_boxes_dataset


def yolo_folder(tmp_path, labels: dict[str, str], classes: str = "cat\ndog\n", size=(200, 100)):
    for stem, text in labels.items():
        Image.new("RGB", size).save(tmp_path / f"{stem}.png")
        if text is not None:
            (tmp_path / f"{stem}.txt").write_text(text)
    (tmp_path / "classes.txt").write_text(classes)
    return tmp_path


def test_normalised_centre_size_becomes_pixels(tmp_path):
    # 200x100 image: centre (0.5, 0.5) size (0.2, 0.4) -> x 80..120, y 30..70.
    folder = yolo_folder(tmp_path, {"b": "1 0.5 0.5 0.2 0.4\n\n0 0.25 0.1 0.5 0.2\n", "a": None})
    dataset = open_dataset(folder)
    assert dataset.class_names == ["__background__", "cat", "dog"]
    assert [s.image_path for s in dataset.samples] == [str(folder / "a.png"), str(folder / "b.png")]
    assert dataset.samples[0].boxes.shape == (0, 4)  # no .txt: an image without objects, marked unannotated
    assert [sample.annotated for sample in dataset.samples] == [False, True]
    assert dataset.samples[1].boxes.tolist() == [[80, 30, 120, 70], [0, 0, 100, 20]]
    assert dataset.samples[1].labels.tolist() == [2, 1]
    assert (dataset.samples[1].width, dataset.samples[1].height) == (200, 100)
    assert dataset.problems == []


def test_bad_objects_are_reported(tmp_path):
    folder = yolo_folder(tmp_path, {"a": "5 0.5 0.5 0.1 0.1\n0 0.5 0.5 0 0.1\n1 0.95 0.5 0.2 0.2\n0 nan 0.5 0.1 0.1\n"})
    dataset = read_yolo_folder(folder)
    labels = folder / "a.txt"
    assert dataset.problems == [
        f"{labels}: line 1 (class 5) skipped: unknown class",
        f"{labels}: line 2 (cat) skipped: zero-area box",
        f"{labels}: line 3 (dog) clipped at the image border",
        f"{labels}: line 4 (cat) skipped: non-finite coordinate",
    ]
    assert dataset.samples[0].boxes.tolist() == [[170, 40, 200, 60]]


@pytest.mark.parametrize("text, line", [("0 0.5 0.5 0.1\n", 1), ("0 0.5 0.5 0.1 0.1\n\ncat 0.5 0.5 0.1 0.1\n", 3),
                                        ("0 0.5 0.5 0.1 0.1 0.9\n", 1), ("0 0.5 x 0.1 0.1\n", 1)])
def test_malformed_line_names_file_and_line(tmp_path, text, line):
    folder = yolo_folder(tmp_path, {"a": text})
    with pytest.raises(InputError, match=rf"a.txt: line {line}: expected 'class cx cy w h'"):
        read_yolo_folder(folder)


def test_class_file_problems_are_input_errors(tmp_path):
    with pytest.raises(InputError, match=r"classes.txt: line 2: empty class name"):
        read_yolo_folder(yolo_folder(tmp_path, {"a": ""}, classes="cat\n\ndog\n"))
    with pytest.raises(InputError, match=r"classes.txt: line 3: class 'cat' already listed on line 1"):
        read_yolo_folder(yolo_folder(tmp_path, {"a": ""}, classes="cat\ndog\ncat\n"))


def test_round_trip_is_exact_in_float32(tmp_path):
    dataset = random_boxes_dataset(tmp_path)
    boxes, labels = dataset.samples[0].boxes, dataset.samples[0].labels
    write_yolo(tmp_path / "out", dataset)
    again = open_dataset(tmp_path / "out")
    assert again.class_names == dataset.class_names and again.problems == []
    assert again.samples[0].image_path == str(tmp_path / "out" / "a.png")
    assert torch.equal(again.samples[0].boxes, boxes) and torch.equal(again.samples[0].labels, labels)
    assert (tmp_path / "out" / "classes.txt").read_text() == "c\nb\na\n"
