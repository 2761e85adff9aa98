"""The Qt-free annotation document: folder status, editing rules, exact save/open round trips,
labelImg files, malformed files left untouched then backed up, atomic saves, import/export."""
from __future__ import annotations

import math
import sys
import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest
from PIL import Image

from frcnn_core.data.voc import read_voc_xml
from frcnn_core.errors import InputError
from frcnn_gui.document.document import Box, Detection, Document

WIDTH, HEIGHT = 100, 80


def make_folder(folder, names=("a.png", "b.png", "c.png")):
    folder.mkdir(exist_ok=True)
    for name in names:
        Image.new("RGB", (WIDTH, HEIGHT), "gray").save(folder / name)
    return folder


def voc_text(objects=(), verified=False):
    """A labelImg-style file as labelImg writes it (declaration, folder/filename/path, size)."""
    body = "".join(
        f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
        f"<difficult>{int(difficult)}</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
        f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
        for name, (x1, y1, x2, y2), difficult in objects)
    head = "<?xml version=\"1.0\" ?>\n"
    attribute = ' verified="yes"' if verified else ""
    return (f"{head}<annotation{attribute}><folder>images</folder>"
            f"<filename>a.png</filename><path>/x/a.png</path><source><database>Unknown</database></source>"
            f"<size><width>{WIDTH}</width><height>{HEIGHT}</height><depth>3</depth></size>"
            f"<segmented>0</segmented>{body}</annotation>")


@pytest.fixture
def folder(tmp_path):
    return make_folder(tmp_path / "images")


@pytest.fixture
def doc(folder):
    document = Document()
    document.open_folder(folder)
    document.add_class("RBC")
    document.save()
    document.open_image(0)
    return document


def boxes_of(document):
    return list(document.boxes.values())


# -- Box -------------------------------------------------------------------------------------------

def test_box_geometry():
    box = Box(30, 40, 10, 20, "a")
    assert box.normalized() == Box(10, 20, 30, 40, "a")
    assert box.area == 400
    assert Box(10, 20, 30, 40, "a").moved(5, -25) == Box(15, -5, 35, 15, "a")
    assert Box(-5, 10, 120, 90, "a", True).clipped(100, 80) == Box(0, 10, 100, 80, "a", True)


# -- folder ----------------------------------------------------------------------------------------

def test_open_folder_lists_images_sorted_with_status(folder):
    (folder / "notes.txt").write_text("not an image")
    (folder / "a.xml").write_text(voc_text([("WBC", (1, 2, 3, 4), False)]))
    (folder / "b.xml").write_text(voc_text([("RBC", (1, 2, 3, 4), False)], verified=True))
    (folder / "c.xml").write_text("<annotation><object>")
    make_folder(folder, ["0.jpg"])
    (folder / "classes.txt").write_text("Platelets\nRBC\n")
    document, seen = Document(), []
    document.subscribe(seen.append)
    document.open_folder(folder)
    assert [entry.path.name for entry in document.images] == ["0.jpg", "a.png", "b.png", "c.png"]
    assert [entry.status for entry in document.images] == ["none", "annotated", "verified", "error"]
    assert document.images[3].error.startswith(f"{folder / 'c.xml'}: malformed XML (line 1")
    assert document.classes == ["Platelets", "RBC", "WBC"]
    assert document.current_index is None and set(seen) >= {"images", "classes"}


def test_annotation_dir_holds_the_files(folder, tmp_path):
    document = Document(tmp_path / "labels")
    document.open_folder(folder)
    assert document.images[0].annotation_path == tmp_path / "labels" / "a.xml"
    document.add_class("RBC")
    document.open_image(0)
    document.add_box(Box(1, 2, 30, 40, "RBC"))
    assert document.save() == tmp_path / "labels" / "a.xml"
    assert (tmp_path / "labels" / "classes.txt").read_text() == "RBC\n"
    assert not (folder / "a.xml").exists()


def test_missing_folder_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no such folder"):
        Document().open_folder(tmp_path / "nowhere")


# -- editing ---------------------------------------------------------------------------------------

def test_add_box_normalizes_clips_and_rounds_to_float32(doc):
    box_id = doc.add_box(Box(120, 90, -10, 10.1, "RBC"))
    assert doc.boxes[box_id] == Box(0, float(np.float32(10.1)), 100, 80, "RBC")
    assert doc.dirty


@pytest.mark.parametrize("box, problem", [
    (Box(math.nan, 1, 5, 5, "RBC"), "not a finite number"),
    (Box(1, 1, math.inf, 5, "RBC"), "not a finite number"),
    (Box(5, 1, 5, 9, "RBC"), "no area"),
    (Box(150, 1, 190, 9, "RBC"), "no area"),
    (Box(1, 1, 5, 5, "WBC"), "unknown class"),
    (Box(1, 1, 5, 5, " RBC"), "invalid class name"),
])
def test_bad_boxes_are_refused(doc, box, problem):
    with pytest.raises(ValueError, match=problem):
        doc.add_box(box)
    assert doc.boxes == {} and not doc.dirty


def test_box_ids_are_never_reused_and_order_can_be_restored(doc):
    first = doc.add_box(Box(1, 1, 5, 5, "RBC"))
    second = doc.add_box(Box(2, 2, 6, 6, "RBC"))
    removed = doc.remove_box(first)
    third = doc.add_box(Box(3, 3, 7, 7, "RBC"))
    assert len({first, second, third}) == 3
    doc.add_box(removed, first, 0)
    assert list(doc.boxes) == [first, second, third]
    with pytest.raises(ValueError, match="in use"):
        doc.add_box(removed, first)
    with pytest.raises(ValueError, match="never issued"):
        doc.add_box(removed, 999)


def test_replace_and_remove_return_the_old_box(doc):
    box_id = doc.add_box(Box(1, 1, 5, 5, "RBC"))
    assert doc.replace_box(box_id, Box(2, 2, 9, 9, "RBC", True)) == Box(1, 1, 5, 5, "RBC")
    assert doc.remove_box(box_id) == Box(2, 2, 9, 9, "RBC", True)
    with pytest.raises(KeyError):
        doc.remove_box(box_id)


def test_classes_add_remove_rename(doc, folder):
    with pytest.raises(ValueError, match="already listed"):
        doc.add_class("RBC")
    with pytest.raises(ValueError, match="invalid class name"):
        doc.add_class("two\nlines")
    doc.add_class("WBC")
    doc.add_box(Box(1, 1, 5, 5, "WBC"))
    with pytest.raises(ValueError, match="used by boxes"):
        doc.remove_class("WBC")
    doc.open_image(1)
    doc.add_box(Box(2, 2, 6, 6, "WBC"))
    doc.rename_class("WBC", "Zellkern-ß")
    assert doc.classes == ["RBC", "Zellkern-ß"] and boxes_of(doc)[0].label == "Zellkern-ß"
    assert read_voc_xml(folder / "a.xml").names == ["Zellkern-ß"]  # another image's file, rewritten at once
    doc.open_image(0)
    assert boxes_of(doc)[0].label == "Zellkern-ß"


def test_verified_and_detections_notify(doc):
    seen = []
    doc.subscribe(seen.append)
    doc.set_verified(True)
    doc.set_detections([Detection((1, 2, 3, 4), 0.9, "RBC")])
    assert doc.verified and seen == ["verified", "detections"]
    doc.open_image(1)
    assert doc.detections == [] and not doc.verified


def test_batch_sends_each_kind_once(doc):
    seen = []
    doc.subscribe(seen.append)
    with doc.batch():
        for offset in range(5):
            doc.add_box(Box(offset, 0, offset + 5, 5, "RBC"))
        doc.add_class("WBC")
    assert seen == ["boxes", "classes"]


# -- saving ----------------------------------------------------------------------------------------

def test_save_then_open_is_exact(doc, folder):
    doc.add_class("Zellkern-ß")
    doc.add_class("血小板")
    boxes = [Box(1, 2, 30, 40, "RBC"), Box(0.5, 1 / 3, 99.75, 79.9, "Zellkern-ß", True),
             Box(10.1, 20.2, 30.3, 40.4, "血小板")]
    for box in boxes:
        doc.add_box(box)
    doc.set_verified(True)
    expected = list(doc.boxes.values())
    assert doc.save() == folder / "a.xml" and not doc.dirty
    assert (folder / "classes.txt").read_text(encoding="utf-8") == "RBC\nZellkern-ß\n血小板\n"
    text = (folder / "a.xml").read_text(encoding="utf-8")
    assert '<annotation verified="yes">' in text and "<name>血小板</name>" in text and "<xmin>1</xmin>" in text
    reopened = Document()
    reopened.open_folder(folder)
    assert reopened.images[0].status == "verified" and reopened.classes == ["RBC", "Zellkern-ß", "血小板"]
    reopened.open_image(0)
    assert list(reopened.boxes.values()) == expected and reopened.verified and reopened.problems == []


def test_save_writes_only_what_changed(doc, folder):
    assert doc.save() is None and not (folder / "a.xml").exists()
    doc.add_box(Box(1, 1, 5, 5, "RBC"))
    doc.save()
    mtime = (folder / "a.xml").stat().st_mtime_ns
    assert doc.save() is None and (folder / "a.xml").stat().st_mtime_ns == mtime


def test_an_image_without_boxes_gets_no_file(doc, folder):
    doc.remove_box(doc.add_box(Box(1, 1, 5, 5, "RBC")))
    assert doc.save() is None and not (folder / "a.xml").exists() and doc.images[0].status == "none"


def test_an_image_saved_as_seen_gets_an_empty_annotation_once(doc, folder):
    assert doc.save(seen=True) == folder / "a.xml"
    assert read_voc_xml(folder / "a.xml").names == [] and doc.images[0].status == "annotated"
    mtime = (folder / "a.xml").stat().st_mtime_ns
    assert doc.save(seen=True) is None and (folder / "a.xml").stat().st_mtime_ns == mtime


def test_images_are_listed_in_natural_order(tmp_path):
    names = ["raccoon-10.jpg", "raccoon-2.jpg", "Raccoon-3.png", "raccoon-1.jpg", "a-02.png", "a-2.png"]
    document = Document()
    document.open_folder(make_folder(tmp_path / "images", names))
    assert [entry.path.name for entry in document.images] == [
        "a-02.png", "a-2.png", "raccoon-1.jpg", "raccoon-2.jpg", "Raccoon-3.png", "raccoon-10.jpg"]


def test_leaving_an_image_saves_it_and_keeps_box_ids(doc, folder):
    box_id = doc.add_box(Box(1, 1, 5, 5, "RBC"))
    doc.open_image(1)
    assert read_voc_xml(folder / "a.xml").names == ["RBC"] and doc.images[0].status == "annotated"
    doc.open_image(0)
    assert list(doc.boxes) == [box_id]


def test_reads_a_labelimg_file(folder):
    (folder / "a.xml").write_text(voc_text([("RBC", (10, 20, 30, 40), False), ("WBC", (1, 2, 50, 60), True)],
                                           verified=True))
    document = Document()
    document.open_folder(folder)
    document.open_image(0)
    assert boxes_of(document) == [Box(10, 20, 30, 40, "RBC"), Box(1, 2, 50, 60, "WBC", True)]
    assert document.verified and document.image_size == (WIDTH, HEIGHT)


def test_writes_what_labelimg_reads(doc, folder):
    """labelImg's PascalVocReader: verified attribute, <name>, int(float(<xmin>)), <difficult>."""
    doc.add_box(Box(10, 20, 30, 40, "RBC", True))
    doc.set_verified(True)
    doc.save()
    root = ElementTree.parse(folder / "a.xml").getroot()
    assert root.attrib == {"verified": "yes"}
    assert root.findtext("filename") == "a.png" and root.findtext("size/width") == str(WIDTH)
    obj = root.find("object")
    assert obj.findtext("name") == "RBC" and obj.findtext("difficult") == "1"
    assert [int(float(obj.findtext(f"bndbox/{tag}"))) for tag in ("xmin", "ymin", "xmax", "ymax")] == [10, 20, 30, 40]


def test_malformed_file_is_left_untouched_then_backed_up(folder):
    original = b"<annotation><object><name>RBC</name>"
    (folder / "a.xml").write_bytes(original)
    document, seen = Document(), []
    document.open_folder(folder)
    document.subscribe(seen.append)
    document.open_image(0)
    assert document.images[0].status == "error" and "malformed XML" in document.read_only_reason
    assert document.boxes == {} and "error" in seen
    document.open_image(1)
    document.open_image(0)
    assert (folder / "a.xml").read_bytes() == original and not (folder / "a.xml.bak").exists()
    document.add_class("RBC")
    document.add_box(Box(1, 2, 3, 4, "RBC"))
    document.save()
    assert (folder / "a.xml.bak").read_bytes() == original
    assert read_voc_xml(folder / "a.xml").boxes.tolist() == [[1, 2, 3, 4]]
    assert document.images[0].status == "annotated" and document.read_only_reason is None


def test_unreadable_image_refuses_edits(folder):
    (folder / "b.png").write_bytes(b"not a png")
    document = Document()
    document.open_folder(folder)
    document.add_class("RBC")
    document.open_image(1)
    assert document.images[1].status == "error" and "b.png" in document.images[1].error
    assert document.image_size is None
    with pytest.raises(ValueError, match="b.png"):
        document.add_box(Box(1, 1, 5, 5, "RBC"))


def test_a_failed_save_leaves_the_old_file_and_stays_dirty(doc, folder, monkeypatch):
    doc.add_box(Box(1, 1, 5, 5, "RBC"))
    doc.save()
    old = (folder / "a.xml").read_bytes()
    doc.add_box(Box(2, 2, 9, 9, "RBC"))

    def fail(_fd):
        raise OSError("disk full")
    monkeypatch.setattr(sys.modules["frcnn_core.io.atomic"].os, "fsync", fail)
    with pytest.raises(OSError, match="disk full"):
        doc.save()
    monkeypatch.undo()
    assert (folder / "a.xml").read_bytes() == old and doc.dirty
    assert sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp")) == []
    doc.save()
    assert len(read_voc_xml(folder / "a.xml").names) == 2


# -- import / export -------------------------------------------------------------------------------

def annotate_two(document):
    document.add_class("血小板")
    document.add_box(Box(1, 2, 30.25, 40, "RBC"))  # a fraction, as a file may hold
    document.open_image(1)
    document.add_box(Box(5, 6, 70, 79, "血小板", True))
    document.save()


@pytest.mark.parametrize("kind", ["coco", "yolo"])
def test_export_then_import_gives_the_same_boxes(doc, tmp_path, kind):
    annotate_two(doc)
    target = tmp_path / ("out.json" if kind == "coco" else "yolo")
    problems = doc.export_coco(target) if kind == "coco" else doc.export_yolo(target)
    assert problems == [f"{doc.images[2].path}: image skipped: no annotation file"]
    other = Document()
    other.open_folder(make_folder(tmp_path / "fresh"))
    assert (other.import_coco(target) if kind == "coco" else other.import_yolo(target)) == []
    assert other.classes == ["RBC", "血小板"]
    for index in (0, 1):
        other.open_image(index)
        doc.open_image(index)
        # COCO and YOLO have no difficult flag; imported boxes are whole pixels, as VOC expects.
        assert boxes_of(other) == [Box(*box.coords, box.label).whole_pixels() for box in boxes_of(doc)]
    other.open_image(0)
    assert boxes_of(other)[0].x2 == 30  # written 30.25
    assert other.images[2].status == "none"


def test_import_reports_images_outside_the_folder(doc, tmp_path):
    annotate_two(doc)
    doc.export_coco(tmp_path / "images" / "all.json")
    other = Document()
    other.open_folder(make_folder(tmp_path / "two", ["a.png"]))
    problems = other.import_coco(tmp_path / "images" / "all.json")
    assert problems == [f"{tmp_path / 'images' / 'b.png'}: image skipped: not in the open folder"]
    assert [entry.status for entry in other.images] == ["annotated"]


def test_open_image_checks_the_index(doc):
    with pytest.raises(IndexError):
        doc.open_image(3)
    assert doc.image_index(doc.images[2].path) == 2


def test_a_corrupt_image_is_an_error_row_as_soon_as_the_folder_opens(tmp_path):
    Image.new("RGB", (8, 6)).save(tmp_path / "good.png")
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    document = Document()
    document.open_folder(tmp_path)
    status = {entry.path.name: (entry.status, entry.error) for entry in document.images}
    assert status["good.png"] == ("none", None)
    assert status["bad.jpg"][0] == "error" and "bad.jpg" in status["bad.jpg"][1]
