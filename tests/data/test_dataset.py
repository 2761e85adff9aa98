"""open_dataset on BCCD and on synthetic data; VOC -> COCO -> YOLO -> VOC round trips; loading."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from frcnn_core.data.augment import Augment, AugmentConfig
from frcnn_core.data.coco import write_coco_json
from frcnn_core.data.formats import open_dataset
from frcnn_core.data.samples import DetectionDataset, Sample, collate
from frcnn_core.data.voc import write_voc, write_voc_xml
from frcnn_core.data.yolo import write_yolo
from frcnn_core.errors import InputError

BCCD = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "bccd"
needs_bccd = pytest.mark.skipif(not BCCD.is_dir(), reason="../shared/data/bccd is not here")


def split_size(split: str) -> int:
    return sum(1 for line in (BCCD / "ImageSets" / "Main" / f"{split}.txt").read_text().splitlines() if line.strip())


@needs_bccd
@pytest.mark.parametrize("split", ["train", "val", "trainval"])
def test_bccd_splits_classes_and_reported_zero_area_boxes(split):
    dataset = open_dataset(BCCD, split)
    assert len(dataset) == split_size(split)
    # First appearance over all annotations in sorted order: BloodImage_00000 starts with a WBC.
    assert dataset.class_names == ["__background__", "WBC", "RBC", "Platelets"]
    assert all(s.width == 640 and s.height == 480 and (s.labels >= 1).all() for s in dataset.samples)
    in_split = set((BCCD / "ImageSets" / "Main" / f"{split}.txt").read_text().split())
    expected = [f"{BCCD / 'Annotations' / name}.xml: object {number} (RBC) skipped: zero-area box"
                for name, number in (("BloodImage_00338", 13), ("BloodImage_00343", 4)) if name in in_split]
    assert dataset.problems == expected and expected
    summary = dataset.problem_summary()
    assert f"{len(expected)}  skipped: zero-area box" in summary
    assert all(line in summary for line in expected)


@needs_bccd
def test_bccd_given_class_order_and_default_split():
    dataset = open_dataset(BCCD, class_names=["__background__", "RBC", "WBC", "Platelets"])
    assert len(dataset) == split_size("trainval")
    assert dataset.class_names == ["__background__", "RBC", "WBC", "Platelets"]
    counts = torch.bincount(torch.cat([s.labels for s in dataset.samples]), minlength=4).tolist()
    assert counts == [0, 3339 + 11 - 2, 301, 292]  # RBC lines in the XML minus the two zero-area boxes


def make_synthetic_voc(root: Path) -> Path:
    """Three tiny PNGs in a VOC folder: integer and float boxes, an empty image, a difficult box."""
    objects = {"a": ([[1, 2, 30, 20], [4.5, 6.25, 10.125, 19]], ["dog", "cat"], [False, True]),
               "b": ([], [], []), "c": ([[0, 0, 40, 24]], ["bird"], [False])}
    for stem, (boxes, names, difficult) in objects.items():
        image = root / "JPEGImages" / f"{stem}.png"
        image.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 24), (10 * len(stem), 200, 30)).save(image)
        write_voc_xml(root / "Annotations" / f"{stem}.xml", image, 40, 24,
                      torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), names, difficult)
    return root


def assert_same(dataset: DetectionDataset, again: DetectionDataset) -> None:
    assert again.class_names == dataset.class_names and again.problems == []
    assert [Path(s.image_path).name for s in again.samples] == [Path(s.image_path).name for s in dataset.samples]
    for sample, read_back in zip(dataset.samples, again.samples, strict=True):
        assert torch.equal(read_back.boxes, sample.boxes) and torch.equal(read_back.labels, sample.labels)


def round_trip_all(dataset: DetectionDataset, out: Path) -> None:
    """VOC -> COCO -> YOLO -> VOC, each read back and compared with the original."""
    write_coco_json(out / "coco" / "gt.json", dataset)
    from_coco = open_dataset(out / "coco" / "gt.json")
    assert_same(dataset, from_coco)
    write_yolo(out / "yolo", from_coco)
    from_yolo = open_dataset(out / "yolo")
    assert_same(dataset, from_yolo)
    write_voc(out / "voc", from_yolo, split="val")
    from_voc = open_dataset(out / "voc", "val")
    assert_same(dataset, from_voc)
    assert [Path(s.image_path).read_bytes() for s in from_voc.samples] == \
        [Path(s.image_path).read_bytes() for s in dataset.samples]


def test_synthetic_round_trip_through_every_format(tmp_path):
    dataset = open_dataset(make_synthetic_voc(tmp_path / "src"))
    assert dataset.class_names == ["__background__", "dog", "cat", "bird"]
    assert dataset.samples[0].boxes.tolist() == [[1, 2, 30, 20], [4.5, 6.25, 10.125, 19]]
    assert dataset.samples[0].difficult.tolist() == [False, True]
    round_trip_all(dataset, tmp_path)


def test_coco_written_inside_the_dataset_uses_relative_names(tmp_path):
    dataset = open_dataset(make_synthetic_voc(tmp_path))
    write_coco_json(tmp_path / "gt.json", dataset)
    assert '"file_name": "JPEGImages/a.png"' in (tmp_path / "gt.json").read_text()
    assert [s.image_path for s in open_dataset(tmp_path / "gt.json").samples] == \
        [s.image_path for s in dataset.samples]


@needs_bccd
def test_bccd_val_round_trip_through_every_format(tmp_path):
    round_trip_all(open_dataset(BCCD, "val"), tmp_path)


def test_items_collate_and_transform(tmp_path):
    dataset = open_dataset(make_synthetic_voc(tmp_path))
    image, target = dataset[2]
    assert image.shape == (3, 24, 40) and image.dtype == torch.float32
    assert target["boxes"].tolist() == [[0, 0, 40, 24]] and target["labels"].tolist() == [3]
    assert target["image_id"] == 2
    dataset.transform = Augment(AugmentConfig(hflip=1.0))
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, collate_fn=collate)
    images, targets = next(iter(loader))
    assert [i.shape for i in images] == [(3, 24, 40)] * 2
    assert targets[0]["boxes"].tolist() == [[10, 2, 39, 20], [29.875, 6.25, 35.5, 19]]
    assert dataset.samples[0].boxes.tolist()[0] == [1, 2, 30, 20]  # the transform never edits the sample
    assert collate([]) == ([], [])


def test_problem_summary_counts_by_kind_and_shows_the_first_lines():
    problems = [f"f{i}.xml: object 1 (a) skipped: zero-area box" for i in range(7)]
    problems += ["g.xml: object 2 (b) clipped at the image border"]
    empty = Sample("x.png", torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))
    summary = DetectionDataset([empty], ["__background__", "a", "b"], problems).problem_summary()
    assert summary.splitlines() == [
        "1 images, 8 annotation problems:",
        "       7  skipped: zero-area box",
        "       1  clipped at the image border",
        "first examples:",
        *[f"  {line}" for line in problems[:5]],
    ]
    assert DetectionDataset([empty], ["__background__"]).problem_summary() == "1 images, no annotation problems"


def test_unknown_layouts_and_missing_paths_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="no such file or folder"):
        open_dataset(tmp_path / "nowhere")
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    with pytest.raises(InputError, match="unknown dataset layout"):
        open_dataset(tmp_path)
    with pytest.raises(InputError, match="unknown dataset layout"):
        open_dataset(tmp_path / "a.png")


def test_copying_needs_unique_image_names(tmp_path):
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        Image.new("RGB", (4, 4)).save(tmp_path / folder / "a.png")
    samples = [Sample(str(tmp_path / f / "a.png"), torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))
               for f in ("x", "y")]
    with pytest.raises(InputError, match="image names occur twice"):
        write_yolo(tmp_path / "out", DetectionDataset(samples, ["__background__", "a"]))
    assert not (tmp_path / "out").exists()
