"""VOC files written back as read, through the Document: files in the shapes labelImg, CVAT
("PASCAL VOC 1.1"), VOC2007 and BCCD write (tests/data/samples); an edit changes only what it
edits, everything else stays — per object, per file, whitespace included."""
from __future__ import annotations

import difflib
import shutil
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
from PIL import Image

from frcnn_gui.document.annotation_file import FileTree, annotation_bytes, read_annotation
from frcnn_gui.document.document import Box, Document

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"
SIZES = {"labelimg_street": (160, 120), "cvat_voc11_frame": (200, 150), "voc2007_chairs": (125, 94),
         "bccd_BloodImage_00002": (640, 480)}
# the first object's bndbox nudged 1 px right, by hand (CVAT's fractions become whole pixels, halves up)
NUDGED = {"labelimg_street": ("1", "30", "62", "110"), "cvat_voc11_frame": ("11", "40", "92", "95"),
          "voc2007_chairs": ("67", "53", "82", "85"), "bccd_BloodImage_00002": ("386", "98", "524", "198")}


@pytest.fixture
def folder(tmp_path) -> Path:
    """Each sample as <stem>.xml beside a gray <stem>.png of the size it states."""
    for stem, size in SIZES.items():
        Image.new("RGB", size, "gray").save(tmp_path / f"{stem}.png")
        shutil.copyfile(SAMPLES / f"{stem}.xml", tmp_path / f"{stem}.xml")
    return tmp_path


def opened(folder: Path, stem: str) -> Document:
    document = Document()
    document.open_folder(folder)
    document.open_image(document.image_index(folder / f"{stem}.png"))
    return document


def parse(data: bytes) -> ElementTree.Element:
    parser = ElementTree.XMLParser(target=ElementTree.TreeBuilder(insert_comments=True))
    parser.feed(data)
    return parser.close()


def shape(element: ElementTree.Element) -> tuple:
    """Everything a file says but its layout whitespace: tags, attributes, texts, comments, order."""
    tag = "<!-- -->" if element.tag is ElementTree.Comment else element.tag
    return tag, sorted(element.attrib.items()), (element.text or "").strip(), [shape(child) for child in element]


def expected(stem: str, edit) -> tuple:
    """The sample's shape after `edit(root)`, an edit made by hand on its tree."""
    root = parse((SAMPLES / f"{stem}.xml").read_bytes())
    edit(root)
    return shape(root)


def saved(document: Document) -> tuple:
    document.save()
    return shape(parse(document.images[document.current_index].annotation_path.read_bytes()))


def nth_object(root: ElementTree.Element, index: int) -> ElementTree.Element:
    return list(root.iter("object"))[index]


def set_bndbox(obj: ElementTree.Element, numbers: tuple[str, ...]) -> None:
    for tag, number in zip(("xmin", "ymin", "xmax", "ymax"), numbers, strict=True):
        obj.find(f"bndbox/{tag}").text = number


def changed_lines(stem: str, document: Document) -> list[tuple[str, str]]:
    """(old line, new line) pairs of a save that replaced lines one for one."""
    old = (SAMPLES / f"{stem}.xml").read_text(encoding="utf-8").splitlines()
    new = document.images[document.current_index].annotation_path.read_text(encoding="utf-8").splitlines()
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    pairs = []
    for kind, old_start, old_end, new_start, new_end in matcher.get_opcodes():
        if kind != "equal":
            assert kind == "replace" and old_end - old_start == new_end - new_start, (old[old_start:old_end],
                                                                                     new[new_start:new_end])
            pairs += zip(old[old_start:old_end], new[new_start:new_end], strict=True)
    return pairs


@pytest.mark.parametrize("stem", SIZES)
def test_writing_back_without_an_edit_gives_the_same_bytes(folder, stem):
    path, size = folder / f"{stem}.xml", SIZES[stem]
    read = read_annotation(path, *size)
    ids = list(range(1, len(read.objects) + 1))
    boxes = [(i, obj.box) for i, obj in zip(ids, read.objects, strict=True)]
    assert annotation_bytes(FileTree(read.data, tuple(boxes)), folder / f"{stem}.png", size, boxes, {},
                            read.verified)[0] == read.data  # nothing to rewrite: not even the elements as read

    tree = FileTree(read.data, tuple(boxes))
    data, _ = annotation_bytes(tree, folder / f"{stem}.png", size, boxes, dict(zip(ids, read.objects, strict=True)),
                               read.verified)
    assert data == path.read_bytes()


@pytest.mark.parametrize("stem", SIZES)
def test_a_nudged_box_changes_only_its_bndbox(folder, stem):
    document = opened(folder, stem)
    box_id, box = next(iter(document.boxes.items()))
    document.replace_box(box_id, document.check_box(box.moved(1, 0)))
    assert saved(document) == expected(stem, lambda root: set_bndbox(nth_object(root, 0), NUDGED[stem]))


def test_a_bccd_file_differs_only_on_the_nudged_lines(folder):
    document = opened(folder, "bccd_BloodImage_00002")
    box_id, box = next(iter(document.boxes.items()))
    document.replace_box(box_id, document.check_box(box.moved(1, 0)))
    document.save()
    assert changed_lines("bccd_BloodImage_00002", document) == [
        ("\t\t\t<xmin>385</xmin>", "\t\t\t<xmin>386</xmin>"), ("\t\t\t<xmax>523</xmax>", "\t\t\t<xmax>524</xmax>")]


@pytest.mark.parametrize("stem", SIZES)
def test_relabel_changes_only_the_name(folder, stem):
    document = opened(folder, stem)
    document.add_class("cyclist")
    box_id = list(document.boxes)[1]
    document.replace_box(box_id, Box(*document.boxes[box_id].coords, "cyclist", document.boxes[box_id].difficult))
    assert saved(document) == expected(stem, lambda root: setattr(nth_object(root, 1).find("name"), "text", "cyclist"))


@pytest.mark.parametrize("stem", SIZES)
def test_delete_removes_only_that_object(folder, stem):
    document = opened(folder, stem)
    document.remove_box(list(document.boxes)[1])
    assert saved(document) == expected(stem, lambda root: root.remove(nth_object(root, 1)))


@pytest.mark.parametrize("stem", SIZES)
def test_difficult_changes_only_its_flag(folder, stem):
    document = opened(folder, stem)
    box_id, box = next(iter(document.boxes.items()))
    document.replace_box(box_id, Box(*box.coords, box.label, not box.difficult))
    flag = str(int(not box.difficult))
    assert saved(document) == expected(stem, lambda root: setattr(nth_object(root, 0).find("difficult"), "text", flag))


@pytest.mark.parametrize("stem, indent", [("labelimg_street", "\t"), ("cvat_voc11_frame", "  "),
                                          ("voc2007_chairs", "\t"), ("bccd_BloodImage_00002", "\t")])
def test_a_new_box_is_appended_as_labelimg_writes_it(folder, stem, indent):
    document = opened(folder, stem)
    document.add_box(document.check_box(Box(0.4, 5, 20.5, 30, document.classes[0])))
    document.save()
    block = "".join(f"{indent * depth}{line}\n" for depth, line in [
        (1, "<object>"), (2, f"<name>{document.classes[0]}</name>"), (2, "<pose>Unspecified</pose>"),
        (2, "<truncated>1</truncated>"),  # labelImg's rule: it touches the left border
        (2, "<difficult>0</difficult>"), (2, "<bndbox>"), (3, "<xmin>0</xmin>"), (3, "<ymin>5</ymin>"),
        (3, "<xmax>21</xmax>"), (3, "<ymax>30</ymax>"), (2, "</bndbox>"), (1, "</object>")])
    head, _ = (SAMPLES / f"{stem}.xml").read_text(encoding="utf-8").rsplit("</annotation>", 1)  # the root's end
    assert (folder / f"{stem}.xml").read_text(encoding="utf-8") == f"{head}{block}</annotation>\n"


def test_a_box_deleted_saved_and_restored_comes_back_whole_in_its_place(folder):
    document = opened(folder, "voc2007_chairs")
    box_id = next(iter(document.boxes))
    box = document.remove_box(box_id)
    document.save()
    assert len(read_annotation(folder / "voc2007_chairs.xml", 125, 94).objects) == 2
    document.add_box(box, box_id, 0)  # what undo does
    document.save()
    assert (folder / "voc2007_chairs.xml").read_bytes() == (SAMPLES / "voc2007_chairs.xml").read_bytes()


def test_edits_after_leaving_and_coming_back_still_touch_only_the_edit(folder):
    document = opened(folder, "cvat_voc11_frame")
    document.remove_box(list(document.boxes)[1])
    document.open_image(0)  # leaving saves
    document.open_image(document.image_index(folder / "cvat_voc11_frame.png"))
    box_id, box = next(iter(document.boxes.items()))
    document.replace_box(box_id, document.check_box(box.moved(1, 0)))

    def edit(root):
        root.remove(nth_object(root, 1))
        set_bndbox(nth_object(root, 0), NUDGED["cvat_voc11_frame"])
    assert saved(document) == expected("cvat_voc11_frame", edit)


def test_unverifying_removes_only_labelimgs_attribute(folder):
    document = opened(folder, "labelimg_street")
    assert document.verified
    document.set_verified(False)
    assert saved(document) == expected("labelimg_street", lambda root: root.attrib.clear())


def test_rename_class_rewrites_other_files_keeping_everything_else(folder):
    document = opened(folder, "labelimg_street")
    document.rename_class("chair", "seat")  # in voc2007_chairs.xml, not the open image

    def rename(root):
        for obj in root.iter("object"):
            if obj.findtext("name") == "chair":
                obj.find("name").text = "seat"
    written = shape(parse((folder / "voc2007_chairs.xml").read_bytes()))
    assert written == expected("voc2007_chairs", rename)


LABELIMG_OBJECT = ("<object><name>{name}</name><pose>Left</pose><truncated>1</truncated>{difficult}"
                   "<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox>"
                   "<occluded>1</occluded></object>")


def test_skipped_and_clipped_objects_stay_as_written_until_edited(tmp_path):
    Image.new("RGB", (100, 80)).save(tmp_path / "a.png")
    objects = [LABELIMG_OBJECT.format(name="cat", difficult="", x1=5, y1=5, x2=5, y2=9),  # no area: skipped
               LABELIMG_OBJECT.format(name="cat", difficult="", x1=50, y1=40, x2=130, y2=70),  # clipped to 100
               LABELIMG_OBJECT.format(name="dog", difficult="", x1=1, y1=2, x2=30, y2=40)]
    size = "<size><width>100</width><height>80</height></size>"
    original = f'<?xml version="1.0" ?>\n<annotation>{size}{"".join(objects)}</annotation>'
    (tmp_path / "a.xml").write_text(original)
    document = Document()
    document.open_folder(tmp_path)
    document.open_image(0)
    assert len(document.boxes) == 2 and len(document.problems) == 2
    clipped_id, dog_id = document.boxes
    assert document.boxes[clipped_id].x2 == 100
    document.replace_box(dog_id, Box(1, 2, 30, 40, "dog", True))  # <difficult> missing: added before <bndbox>
    document.save()
    assert (tmp_path / "a.xml.bak").read_text() == original

    def edit(root):
        dog = nth_object(root, 2)
        flag = ElementTree.Element("difficult")
        flag.text = "1"
        dog.insert(3, flag)
    assert shape(parse((tmp_path / "a.xml").read_bytes())) == shape(_edited(original, edit))
    assert (tmp_path / "a.xml").read_text().startswith('<?xml version="1.0" ?>\n<annotation>')
    document.replace_box(clipped_id, document.check_box(document.boxes[clipped_id].moved(-1, 0)))
    document.save()
    assert [obj.findtext("bndbox/xmax") for obj in parse((tmp_path / "a.xml").read_bytes()).iter("object")] == [
        "5", "99", "30"]


def _edited(text: str, edit) -> ElementTree.Element:
    root = parse(text.encode("utf-8"))
    edit(root)
    return root


def test_a_file_declared_in_another_encoding_is_written_as_utf8(tmp_path):
    Image.new("RGB", (100, 80)).save(tmp_path / "a.png")
    text = ('<?xml version="1.0" encoding="ISO-8859-1"?>\n<annotation><owner>Müller</owner>'
            + LABELIMG_OBJECT.format(name="Straße", difficult="<difficult>0</difficult>", x1=1, y1=2, x2=30, y2=40)
            + "</annotation>")
    (tmp_path / "a.xml").write_bytes(text.encode("latin-1"))
    document = Document()
    document.open_folder(tmp_path)
    document.open_image(0)
    box_id, box = next(iter(document.boxes.items()))
    assert box.label == "Straße"
    document.replace_box(box_id, document.check_box(box.moved(1, 0)))
    document.save()
    written = (tmp_path / "a.xml").read_bytes()
    assert written.startswith(b'<?xml version="1.0" encoding="utf-8"?>\n<annotation><owner>M\xc3\xbcller</owner>')
    assert b"<name>Stra\xc3\x9fe</name>" in written and b"<xmin>2</xmin>" in written


def test_a_box_deleted_then_restored_after_leaving_the_image_comes_back_whole(folder):
    document = opened(folder, "labelimg_street")
    box_id = next(iter(document.boxes))
    box = document.remove_box(box_id)
    document.open_image(0)  # leaving saves the file without it
    document.open_image(document.image_index(folder / "labelimg_street.png"))
    document.add_box(box, box_id, 0)  # what undo does, back on its image
    document.save()
    assert (folder / "labelimg_street.xml").read_bytes() == (SAMPLES / "labelimg_street.xml").read_bytes()


def test_a_file_with_problems_is_backed_up_once(tmp_path):
    """Its skipped objects stay in the file, so their problems come back on each visit; the
    backup of the file as its author wrote it is made once, not at every visit's save."""
    Image.new("RGB", (100, 80)).save(tmp_path / "a.png")
    Image.new("RGB", (100, 80)).save(tmp_path / "b.png")
    original = ("<annotation>" + LABELIMG_OBJECT.format(name="cat", difficult="", x1=5, y1=5, x2=5, y2=9)
                + LABELIMG_OBJECT.format(name="dog", difficult="", x1=1, y1=2, x2=30, y2=40) + "</annotation>")
    (tmp_path / "a.xml").write_text(original)
    document = Document()
    document.open_folder(tmp_path)
    for _ in range(3):  # visit, edit, leave (saves)
        document.open_image(0)
        assert len(document.problems) == 1
        box_id, box = next(iter(document.boxes.items()))
        document.replace_box(box_id, box.moved(1, 0))
        document.open_image(1)
    assert sorted(path.name for path in tmp_path.glob("a.xml.bak*")) == ["a.xml.bak"]
    assert (tmp_path / "a.xml.bak").read_text() == original
    assert read_annotation(tmp_path / "a.xml", 100, 80).objects[1].box.x1 == 4


def test_a_file_with_an_object_inside_an_object_is_backed_up_and_written_afresh(tmp_path):
    Image.new("RGB", (100, 80)).save(tmp_path / "a.png")
    inner = LABELIMG_OBJECT.format(name="head", difficult="", x1=5, y1=5, x2=9, y2=9)
    outer = LABELIMG_OBJECT.format(name="cat", difficult="", x1=1, y1=2, x2=30, y2=40)
    original = "<annotation><owner>x</owner>" + outer.replace("</object>", inner + "</object>", 1) + "</annotation>"
    (tmp_path / "a.xml").write_text(original)
    document = Document()
    document.open_folder(tmp_path)
    document.open_image(0)
    assert [box.label for box in document.boxes.values()] == ["cat", "head"]
    assert document.problems == [f"{tmp_path / 'a.xml'}: an <object> inside another <object>: the file will be "
                                 "written afresh in labelImg's layout"]
    box_id, box = next(iter(document.boxes.items()))
    document.replace_box(box_id, box.moved(1, 0))
    document.save()
    assert (tmp_path / "a.xml.bak").read_text() == original
    root = parse((tmp_path / "a.xml").read_bytes())
    assert [obj.findtext("name") for obj in root.iter("object")] == ["cat", "head"] and root.find("owner") is None
