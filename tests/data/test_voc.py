"""VOC XML: hand-written files, refused XML, the writer, and the folder layouts."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

from frcnn_core.data.formats import open_dataset
from frcnn_core.data.voc import format_coordinate, parse_voc_xml, read_voc_xml, write_voc, write_voc_xml
from frcnn_core.errors import InputError


def voc_xml(objects: str, size: str = "<size><width>100</width><height>80</height><depth>3</depth></size>") -> str:
    return f"<annotation><filename>a.png</filename>{size}{objects}</annotation>"


def voc_object(name: str, x1, y1, x2, y2, difficult: int = 0) -> str:
    return (f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{x1}</xmin>"
            f"<ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>")


def test_reads_boxes_names_difficult_and_size(tmp_path):
    path = tmp_path / "a.xml"
    path.write_text(voc_xml(voc_object("cat", 10, 20, 30, 40) + voc_object(" dog ", 1.5, 2, 3.25, 4, difficult=1)))
    annotation = read_voc_xml(path)
    assert (annotation.width, annotation.height) == (100, 80)
    assert annotation.boxes.dtype == torch.float32
    assert annotation.boxes.tolist() == [[10, 20, 30, 40], [1.5, 2, 3.25, 4]]
    assert annotation.names == ["cat", "dog"] and annotation.difficult.tolist() == [False, True]
    assert annotation.problems == []


def test_bad_boxes_are_skipped_or_clipped_and_each_reported(tmp_path):
    path = tmp_path / "a.xml"
    objects = [voc_object("a", 5, 5, 5, 9), voc_object("b", 9, 5, 4, 9), voc_object("c", "nan", 1, 2, 3),
               voc_object("d", -4, 10, 120, 20), voc_object("e", 101, 1, 150, 9), voc_object("f", 1, 1, 9, 9)]
    path.write_text(voc_xml("".join(objects)))
    annotation = read_voc_xml(path)
    assert annotation.names == ["d", "f"]
    assert annotation.boxes.tolist() == [[0, 10, 100, 20], [1, 1, 9, 9]]
    assert annotation.problems == [
        f"{path}: object 1 (a) skipped: zero-area box",
        f"{path}: object 2 (b) skipped: inverted box",
        f"{path}: object 3 (c) skipped: non-finite coordinate",
        f"{path}: object 4 (d) clipped at the image border",
        f"{path}: object 5 (e) skipped: outside the image",
    ]


def test_without_size_nothing_is_clipped(tmp_path):
    path = tmp_path / "a.xml"
    path.write_text(voc_xml(voc_object("a", -5, 0, 500, 9), size=""))
    annotation = read_voc_xml(path)
    assert (annotation.width, annotation.height) == (None, None)
    assert annotation.boxes.tolist() == [[-5, 0, 500, 9]] and annotation.problems == []


@pytest.mark.parametrize("text, problem", [
    ("<annotation><object>", "malformed XML (line 1, column 20)"),
    ("<annotation>\n<size><width>w</width><height>3</height></size></annotation>", "<width> is not a number"),
    (voc_xml("<object><name>a</name></object>"), "object 1: missing <name> or <bndbox>"),
    ("<root/>", "not a VOC annotation (root element <root>)"),
])
def test_malformed_files_name_the_file_and_the_place(tmp_path, text, problem):
    path = tmp_path / "bad.xml"
    path.write_text(text)
    with pytest.raises(InputError, match="bad.xml") as error:
        read_voc_xml(path)
    assert problem in str(error.value)


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<annotation><filename>&lol3;</filename></annotation>"""

EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE annotation [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<annotation><filename>&secret;</filename></annotation>"""


@pytest.mark.parametrize("text", [BILLION_LAUGHS, EXTERNAL_ENTITY], ids=["billion-laughs", "external-entity"])
def test_entity_declarations_are_refused(tmp_path, text):
    path = tmp_path / "evil.xml"
    path.write_text(text)
    with pytest.raises(InputError, match=r"evil.xml: refused XML: EntitiesForbidden"):
        read_voc_xml(path)


@pytest.mark.parametrize("value, text", [(12.0, "12"), (0.0, "0"), (12.5, "12.5"), (0.1, "0.1"), (639.0, "639")])
def test_coordinates_are_written_without_rounding(value, text):
    assert format_coordinate(value) == text


def test_write_then_read_is_exact_for_integers_and_floats(tmp_path):
    float32_values = torch.rand(50, 4, generator=torch.Generator().manual_seed(0)) * 200
    boxes = torch.cat([torch.tensor([[1.0, 2.0, 30.0, 40.0]]),
                       torch.stack([float32_values[:, :2], float32_values[:, :2] + 1 + float32_values[:, 2:]], 1)
                       .reshape(-1, 4)])
    names = ["cat"] + ["dog"] * 50
    difficult = [True] + [False] * 50
    write_voc_xml(tmp_path / "a.xml", tmp_path / "a.png", 640, 480, boxes, names, difficult)
    annotation = read_voc_xml(tmp_path / "a.xml")
    assert torch.equal(annotation.boxes, boxes)
    assert annotation.names == names and annotation.difficult.tolist() == difficult
    text = (tmp_path / "a.xml").read_text()
    assert "<xmin>1</xmin>" in text and "<ymax>40</ymax>" in text


def test_written_file_has_labelimg_fields(tmp_path):
    write_voc_xml(tmp_path / "a.xml", tmp_path / "imgs" / "a.png", 64, 48, [[0, 5, 20, 48]], ["cat"])
    parsed = parse_voc_xml(tmp_path / "a.xml")
    text = (tmp_path / "a.xml").read_text()
    for tag in ("<folder>imgs</folder>", "<filename>a.png</filename>", "<database>Unknown</database>",
                "<depth>3</depth>", "<segmented>0</segmented>", "<pose>Unspecified</pose>",
                "<truncated>1</truncated>", "<difficult>0</difficult>"):
        assert tag in text
    assert parsed.stated_path == str((tmp_path / "imgs" / "a.png").resolve())


def make_image(path, size=(64, 48)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (120, 30, 200)).save(path)
    return path


def test_labelimg_folder_reports_images_without_xml(tmp_path):
    for stem, name in (("b", "dog"), ("a", "cat")):
        image = make_image(tmp_path / f"{stem}.png")
        write_voc_xml(tmp_path / f"{stem}.xml", image, 64, 48, [[1, 2, 30, 40]], [name])
    make_image(tmp_path / "c.png")
    dataset = open_dataset(tmp_path)
    assert dataset.class_names == ["__background__", "cat", "dog"]  # first appearance, files sorted
    assert [s.image_path for s in dataset.samples] == [str(tmp_path / "a.png"), str(tmp_path / "b.png")]
    assert dataset.problems == [f"{tmp_path / 'c.png'}: image skipped: no annotation file"]


def voc_folder(root, names_per_image: dict[str, list[str]]):
    for stem, names in names_per_image.items():
        image = make_image(root / "JPEGImages" / f"{stem}.png")
        write_voc_xml(root / "Annotations" / f"{stem}.xml", image, 64, 48, [[1, 2, 30, 40]] * len(names), names)
    return root


def test_voc_folder_splits_and_class_file(tmp_path):
    root = voc_folder(tmp_path, {"a": ["cat"], "b": ["dog", "cat"], "c": ["bird"]})
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "val.txt").write_text("c\nb\n\nmissing\n")
    dataset = open_dataset(root, "val")
    assert dataset.class_names == ["__background__", "cat", "dog", "bird"]  # over every annotation
    assert [s.image_path.rsplit("/", 1)[1] for s in dataset.samples] == ["c.png", "b.png"]
    assert dataset.problems == [f"{root / 'ImageSets/Main/val.txt'}: line 4 (missing) skipped: no annotation file"]
    assert len(open_dataset(root)) == 3  # no trainval.txt: every annotation
    (root / "classes.txt").write_text("dog\ncat\n")
    dataset = open_dataset(root, "val")
    assert dataset.class_names == ["__background__", "dog", "cat"]
    assert f"{root / 'Annotations/c.xml'}: object 1 (bird) skipped: unknown class" in dataset.problems
    with pytest.raises(InputError, match=r"train.txt: no split 'train' \(splits here: val\)"):
        open_dataset(root, "train")


def test_given_class_names_fix_the_order(tmp_path):
    root = voc_folder(tmp_path, {"a": ["cat", "dog"]})
    dataset = open_dataset(root, class_names=["__background__", "dog", "horse"])
    assert dataset.class_names == ["__background__", "dog", "horse"]
    assert dataset.samples[0].labels.tolist() == [1]
    assert dataset.problems == [f"{root / 'Annotations/a.xml'}: object 1 (cat) skipped: unknown class"]


def test_write_voc_keeps_unused_classes_and_copies_images(tmp_path):
    source = voc_folder(tmp_path / "src", {"a": ["cat"], "b": []})
    dataset = open_dataset(source, class_names=["cat", "unused"])
    write_voc(tmp_path / "out", dataset, split="val")
    again = open_dataset(tmp_path / "out", "val")
    assert again.class_names == ["__background__", "cat", "unused"]
    assert [s.image_path for s in again.samples] == [str(tmp_path / "out/JPEGImages/a.png"),
                                                     str(tmp_path / "out/JPEGImages/b.png")]
    assert [s.boxes.tolist() for s in again.samples] == [[[1, 2, 30, 40]], []]
