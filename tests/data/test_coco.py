"""COCO JSON: hand-written files, reported problems, malformed files, exact round trip."""
from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from frcnn_core.data.coco import read_coco_json, write_coco_json
from frcnn_core.data.formats import open_dataset
from frcnn_core.errors import InputError

from datasets import random_boxes_dataset


def coco_file(tmp_path, annotations, categories=None, images=None) -> str:
    Image.new("RGB", (100, 80)).save(tmp_path / "a.png")
    (tmp_path / "images").mkdir(exist_ok=True)
    Image.new("RGB", (100, 80)).save(tmp_path / "images" / "b.png")
    content = {
        "images": images or [{"id": 7, "file_name": "a.png", "width": 100, "height": 80},
                             {"id": 3, "file_name": "b.png", "width": 100, "height": 80}],
        "annotations": annotations,
        "categories": categories or [{"id": 5, "name": "dog"}, {"id": 2, "name": "cat"}],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(content))
    return path


def annotation(annotation_id, image_id, category_id, bbox, **extra) -> dict:
    return {"id": annotation_id, "image_id": image_id, "category_id": category_id, "bbox": bbox, **extra}


def test_bbox_is_xywh_categories_by_id_images_in_file_order(tmp_path):
    path = coco_file(tmp_path, [annotation(1, 7, 5, [10, 20, 30, 40]), annotation(2, 7, 2, [1.5, 2, 3, 4])])
    dataset = open_dataset(path)
    assert dataset.class_names == ["__background__", "cat", "dog"]
    assert [s.image_path for s in dataset.samples] == [str(tmp_path / "a.png"), str(tmp_path / "images/b.png")]
    first, second = dataset.samples
    assert first.boxes.tolist() == [[10, 20, 40, 60], [1.5, 2, 4.5, 6]]
    assert first.labels.tolist() == [2, 1] and first.difficult is None
    assert (first.width, first.height) == (100, 80)
    assert second.boxes.shape == (0, 4) and second.labels.dtype == torch.int64
    assert dataset.problems == []


def test_bad_annotations_are_reported_and_skipped(tmp_path):
    path = coco_file(tmp_path, [
        annotation(1, 99, 5, [1, 1, 5, 5]), annotation(2, 7, 42, [1, 1, 5, 5]),
        annotation(3, 7, 5, [1, 1, 5, 5], iscrowd=1), annotation(4, 7, 5, [1, 1, 0, 5]),
        annotation(5, 7, 5, [90, 1, 20, 5]), annotation(6, 7, 2, [float("nan"), 1, 2, 2]),
        annotation(7, 3, 2, [1, 1, 2, 2]),
    ])
    dataset = read_coco_json(path)
    assert dataset.problems == [
        f"{path}: annotation 1 (image_id 99) skipped: unknown image id",
        f"{path}: annotation 2 (category_id 42) skipped: unknown class",
        f"{path}: annotation 3 (dog) skipped: crowd annotation",
        f"{path}: annotation 4 (dog) skipped: zero-area box",
        f"{path}: annotation 5 (dog) clipped at the image border",
        f"{path}: annotation 6 (cat) skipped: non-finite coordinate",
    ]
    assert dataset.samples[0].boxes.tolist() == [[90, 1, 100, 6]]
    assert dataset.samples[1].boxes.tolist() == [[1, 1, 3, 3]]


def test_missing_image_file_is_reported(tmp_path):
    images = [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "gone.png"}]
    path = coco_file(tmp_path, [], images=images)
    dataset = read_coco_json(path)
    assert len(dataset) == 1 and dataset.samples[0].width is None
    assert dataset.problems == [f"{path}: image 2 (gone.png) skipped: image file not found"]


def test_given_class_names_skip_other_categories(tmp_path):
    path = coco_file(tmp_path, [annotation(1, 7, 5, [1, 1, 5, 5]), annotation(2, 7, 2, [1, 1, 5, 5])])
    dataset = read_coco_json(path, ["dog"])
    assert dataset.class_names == ["__background__", "dog"]
    assert dataset.samples[0].labels.tolist() == [1]
    assert dataset.problems == [f"{path}: annotation 2 (cat) skipped: unknown class"]


@pytest.mark.parametrize("text, problem", [
    ('{"images": [],\n "categories": [}', "malformed JSON (line 2, column 17)"),
    ("[1, 2]", 'not a COCO detection file (needs "images" and "categories" lists)'),
    ('{"images": [], "categories": [{"id": 1}]}', "category 1: missing or invalid 'name'"),
    ('{"images": [{"id": 1, "file_name": "a.png"}], "categories": [],'
     ' "annotations": [{"id": 4, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3]}]}',
     "annotation 4: bbox must be four numbers [x, y, w, h]"),
    ('{"images": [{"id": 1}, {"id": 1}], "categories": []}', "an image id occurs twice"),
])
def test_malformed_files_name_the_file(tmp_path, text, problem):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(InputError, match="bad.json") as error:
        read_coco_json(path)
    assert problem in str(error.value)


def test_round_trip_is_exact_in_float32(tmp_path):
    dataset = random_boxes_dataset(tmp_path)
    boxes, labels = dataset.samples[0].boxes, dataset.samples[0].labels
    write_coco_json(tmp_path / "out" / "gt.json", dataset)
    again = open_dataset(tmp_path / "out" / "gt.json")
    assert again.class_names == dataset.class_names and again.problems == []
    assert again.samples[0].image_path == str(tmp_path / "a.png")
    assert torch.equal(again.samples[0].boxes, boxes) and torch.equal(again.samples[0].labels, labels)
    written = json.loads((tmp_path / "out" / "gt.json").read_text())
    assert written["categories"] == [{"id": 1, "name": "c"}, {"id": 2, "name": "b"}, {"id": 3, "name": "a"}]
    assert written["annotations"][0]["id"] == 1 and written["images"][0]["id"] == 1
