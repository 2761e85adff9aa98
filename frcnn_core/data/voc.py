"""PASCAL VOC / labelImg XML annotations: read (with defusedxml: no entities, no DTDs) and write.

Coordinates are taken as written, with no 1-based shift: labelImg writes and reads the same
numbers. Writing never rounds: an integer coordinate is written as an integer ("12"), any other
as the shortest decimal that reads back as the same float32 ("12.5"), so read -> write -> read
is exact. (labelImg itself truncates non-integers with int(float(text)) when it reads them.)
Objects are numbered from 1 in file order in problem lines.
"""
from __future__ import annotations

import io
import os
import xml.etree.ElementTree as ElementBuilder
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException, DTDForbidden

from frcnn_core.data.samples import (
    IMAGE_SUFFIXES,
    SKIPPED_NO_ANNOTATION,
    SKIPPED_NO_IMAGE,
    DetectionDataset,
    RawObject,
    check_objects,
    copy_images,
    first_appearance,
    is_file,
    make_sample,
    problem_line,
    read_class_file,
    sample_size,
    stated_side,
    with_background,
    with_background_from,
)
from frcnn_core.errors import InputError
from frcnn_core.io.atomic import write_bytes_atomic

if TYPE_CHECKING:
    import torch

CLASS_FILES = ("classes.txt", "labels.txt")
BNDBOX_TAGS = ("xmin", "ymin", "xmax", "ymax")


@dataclass(frozen=True)
class VocAnnotation:
    """boxes (G, 4) float32 in pixels; names: G class names; problems: one line per skipped or
    clipped object; difficult: (G,) bool."""

    path: str
    width: int | None
    height: int | None
    boxes: torch.Tensor
    names: list[str]
    problems: list[str] = field(default_factory=list)
    difficult: torch.Tensor | None = None


class VocFile(NamedTuple):
    """One XML file as written: objects unchecked; filename and stated_path locate the image."""

    path: str
    width: int | None
    height: int | None
    filename: str | None
    stated_path: str | None
    objects: list[RawObject]


def _number(element, tag: str, path: str, subject: str) -> float:
    node = element.find(tag)
    if node is None or node.text is None:
        raise InputError(path, f"{subject}: missing <{tag}>")
    try:
        return float(node.text.strip())
    except ValueError as error:
        raise InputError(path, f"{subject}: <{tag}> is not a number ({node.text.strip()[:40]!r})") from error


def _side(size, tag: str, path: str) -> int | None:
    """<size>'s <width> or <height>; None without a <size> or for 0 (labelImg's "unknown")."""
    if size is None:
        return None
    return stated_side(path, f"<size> <{tag}>", _number(size, tag, path, "<size>"))


def _source(path: str, data: bytes | None):
    return path if data is None else io.BytesIO(data)


def _doctype_refusal(path: str, data: bytes | None, doctype: DTDForbidden) -> DefusedXmlException:
    """What to refuse a file with a DOCTYPE for: EntitiesForbidden when the DOCTYPE declares
    entities (the attack by its name), else DTDForbidden (an external DTD, say)."""
    try:
        ElementTree.parse(_source(path, data))  # a DOCTYPE allowed; entity declarations and external references not
    except DefusedXmlException as refused:
        return refused
    except ElementTree.ParseError:  # e.g. an entity the unread external DTD would have declared
        pass
    return doctype


def _parse_root(path: str, data: bytes | None):
    try:
        return ElementTree.parse(_source(path, data), forbid_dtd=True).getroot()
    except ElementTree.ParseError as error:
        raise InputError(path, f"malformed XML (line {error.position[0]}, column {error.position[1]})") from error
    except DefusedXmlException as error:
        refused = _doctype_refusal(path, data, error) if isinstance(error, DTDForbidden) else error
        raise InputError(path, f"refused XML: {refused.__class__.__name__} (entity declarations, DTDs and "
                               "external references are not allowed in annotations)") from refused
    except OSError as error:
        raise InputError(path, f"cannot read annotation ({error.strerror or error})") from error
    except LookupError as error:  # <?xml encoding="..."?> names an encoding Python does not know
        raise InputError(path, f"malformed XML ({error})") from error


def parse_voc_xml(path: str | os.PathLike, data: bytes | None = None) -> VocFile:
    """Parse one VOC XML file without checking its boxes. InputError when malformed, or when it
    has a DOCTYPE. data: the file's bytes, when the caller has read them (the file is not read)."""
    path = str(path)
    root = _parse_root(path, data)
    if root.tag != "annotation":
        raise InputError(path, f"not a VOC annotation (root element <{root.tag}>)")
    width, height = (_side(root.find("size"), tag, path) for tag in ("width", "height"))
    objects = []
    for number, obj in enumerate(root.iter("object"), start=1):
        name = (obj.findtext("name") or "").strip()
        bndbox = obj.find("bndbox")
        if not name or bndbox is None:
            raise InputError(path, f"object {number}: missing <name> or <bndbox>")
        coords = tuple(_number(bndbox, tag, path, f"object {number}") for tag in BNDBOX_TAGS)
        difficult = (obj.findtext("difficult") or "0").strip() == "1"
        objects.append(RawObject(f"object {number}", name, coords, difficult))
    filename = (root.findtext("filename") or "").strip() or None
    stated_path = (root.findtext("path") or "").strip() or None
    return VocFile(path, width, height, filename, stated_path, objects)


def read_voc_xml(path: str | os.PathLike) -> VocAnnotation:
    """Read one VOC XML file; invalid boxes are skipped and clipped ones fixed, each reported.

    Raises InputError naming the file (and line) when it is malformed or has a DOCTYPE (entities, DTDs).
    """
    import torch  # here, not at the top: the window reads annotations before torch is imported

    parsed = parse_voc_xml(path)
    kept, problems = check_objects(parsed.path, parsed.objects, parsed.width, parsed.height)
    boxes = torch.tensor([obj.coords for obj in kept], dtype=torch.float32).reshape(-1, 4)
    difficult = torch.tensor([obj.difficult for obj in kept], dtype=torch.bool)
    return VocAnnotation(parsed.path, parsed.width, parsed.height, boxes, [obj.name for obj in kept],
                         problems, difficult)


def _images_by_stem(folder: Path) -> dict[str, Path]:
    found = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
    return {path.stem: path for path in reversed(found)}  # the first in sorted order wins a clash


def _find_image(parsed: VocFile, folder: Path, images: dict[str, Path]) -> Path | None:
    """The image of an annotation: <filename> in `folder`, else a same-stem image, else <path>."""
    if parsed.filename and is_file(folder / parsed.filename):
        return folder / parsed.filename
    stem = Path(parsed.path).stem
    if stem in images:
        return images[stem]
    if parsed.stated_path and is_file(Path(parsed.stated_path)):
        return Path(parsed.stated_path)
    return None


def _class_order(root: Path, class_names: list[str] | None, parse_all) -> list[str]:
    """Given names, else classes.txt / labels.txt in root, else first appearance over parse_all()."""
    if class_names is not None:
        return with_background(class_names)
    for name in CLASS_FILES:
        if (root / name).is_file():
            return with_background_from(root / name, read_class_file(root / name))
    return with_background(first_appearance([[obj.name for obj in parsed.objects] for parsed in parse_all()]))


def _to_dataset(files: list[tuple[VocFile, Path | None]], class_names: list[str], problems: list[str]):
    samples = []
    for parsed, image in files:
        if image is None:
            problems.append(problem_line(parsed.path, "annotation", SKIPPED_NO_IMAGE))
            continue
        kept, found = check_objects(parsed.path, parsed.objects, parsed.width, parsed.height, class_names[1:])
        problems += found
        samples.append(make_sample(image, kept, class_names, parsed.width, parsed.height, with_difficult=True))
    return DetectionDataset(samples, class_names, problems)


def _split_ids(root: Path, split: str | None) -> tuple[list[tuple[int, str]], Path | None]:
    """(line number, image id) pairs of the split file, or of every annotation when there is none."""
    splits = root / "ImageSets" / "Main"
    if split is None and (splits / "trainval.txt").is_file():
        split = "trainval"
    if split is None:
        return [(0, p.stem) for p in sorted((root / "Annotations").glob("*.xml"))], None
    split_file = splits / f"{split}.txt"
    if not split_file.is_file():
        known = sorted(p.stem for p in splits.glob("*.txt")) if splits.is_dir() else []
        raise InputError(split_file, f"no split {split!r} (splits here: {', '.join(known) or 'none'})")
    try:
        lines = split_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(split_file, f"cannot read the split file ({error})") from error
    return [(number, line.split()[0]) for number, line in enumerate(lines, start=1) if line.strip()], split_file


def read_voc_folder(root: Path, split: str | None = None, class_names: list[str] | None = None) -> DetectionDataset:
    """A VOC folder: Annotations/<id>.xml, JPEGImages/, ImageSets/Main/<split>.txt.

    Without given names or a class file, the class order is the order of first appearance over
    every annotation of the folder in sorted order, so that all splits agree.
    """
    root = Path(root)
    ids, split_file = _split_ids(root, split)
    cache: dict[Path, VocFile] = {}

    def parse(path: Path) -> VocFile:
        if path not in cache:
            cache[path] = parse_voc_xml(path)
        return cache[path]

    names = _class_order(root, class_names, lambda: map(parse, sorted((root / "Annotations").glob("*.xml"))))
    images = _images_by_stem(root / "JPEGImages")
    files, problems = [], []
    for number, image_id in ids:
        xml = root / "Annotations" / f"{image_id}.xml"
        if not is_file(xml):
            problems.append(problem_line(split_file, f"line {number} ({image_id})", SKIPPED_NO_ANNOTATION))
            continue
        parsed = parse(xml)
        files.append((parsed, _find_image(parsed, root / "JPEGImages", images)))
    return _to_dataset(files, names, problems)


def read_labelimg_folder(folder: Path, class_names: list[str] | None = None) -> DetectionDataset:
    """Images with a VOC XML file beside each (labelImg's convention); images without one are reported."""
    folder = Path(folder)
    parsed_files = [parse_voc_xml(path) for path in sorted(folder.glob("*.xml"))]
    names = _class_order(folder, class_names, lambda: parsed_files)
    images = _images_by_stem(folder)
    files = [(parsed, _find_image(parsed, folder, images)) for parsed in parsed_files]
    annotated = {image for _, image in files if image is not None}
    problems = [problem_line(image, "image", SKIPPED_NO_ANNOTATION)
                for image in sorted(images.values()) if image not in annotated]
    return _to_dataset(files, names, problems)


def format_coordinate(value: float) -> str:
    """An integer as "12"; otherwise the shortest text that reads back as the same float32."""
    if float(value).is_integer():
        return str(int(value))
    text = np.format_float_positional(np.float32(value), unique=True, trim="-")
    return text if float(np.float32(float(text))) == float(np.float32(value)) else repr(float(value))


def _sub(parent, tag: str, text: str | None = None):
    element = ElementBuilder.SubElement(parent, tag)
    if text is not None:
        element.text = text
    return element


def write_voc_xml(path, image_path, width: int, height: int, boxes, names: list[str], difficult=None) -> None:
    """Write one labelImg-compatible VOC XML file (atomically): `voc_xml_bytes` of the same arguments."""
    write_bytes_atomic(path, voc_xml_bytes(image_path, width, height, boxes, names, difficult))


def voc_xml_bytes(image_path, width: int, height: int, boxes, names: list[str], difficult=None) -> bytes:
    """One labelImg-compatible VOC XML document, UTF-8.

    boxes: (G, 4) x1 y1 x2 y2 pixels (tensor or nested list); names: G class names;
    difficult: G bools or None (all 0). Coordinates are written without rounding (module doc).
    """
    image_path = Path(image_path)
    root = ElementBuilder.Element("annotation")
    _sub(root, "folder", image_path.parent.name)
    _sub(root, "filename", image_path.name)
    _sub(root, "path", str(image_path.resolve()))
    _sub(_sub(root, "source"), "database", "Unknown")
    size = _sub(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 3)):
        _sub(size, tag, str(int(value)))
    _sub(root, "segmented", "0")
    box_rows = boxes.tolist() if hasattr(boxes, "tolist") else list(boxes)  # a tensor or an array, or lists
    flags = [False] * len(names) if difficult is None else [bool(flag) for flag in difficult]
    for coords, name, flag in zip(box_rows, names, flags, strict=True):
        root.append(labelimg_object(name, coords, flag, width, height))
    ElementBuilder.indent(root, space="\t")
    return (ElementBuilder.tostring(root, encoding="unicode") + "\n").encode("utf-8")


def labelimg_object(name: str, coords, difficult: bool, width: int, height: int):
    """One <object> as labelImg writes it (no whitespace): name, pose Unspecified, truncated,
    difficult, bndbox. coords: x1 y1 x2 y2 pixels, written as format_coordinate does."""
    x1, y1, x2, y2 = coords
    obj = ElementBuilder.Element("object")
    _sub(obj, "name", name)
    _sub(obj, "pose", "Unspecified")
    # labelImg's rule: truncated when the box touches the image border.
    _sub(obj, "truncated", str(int(x1 <= 0 or y1 <= 0 or x2 >= width or y2 >= height)))
    _sub(obj, "difficult", str(int(difficult)))
    bndbox = _sub(obj, "bndbox")
    for tag, value in zip(BNDBOX_TAGS, (x1, y1, x2, y2), strict=True):
        _sub(bndbox, tag, format_coordinate(value))
    return obj


def write_voc(folder: str | os.PathLike, dataset: DetectionDataset, split: str = "trainval") -> None:
    """Write a VOC folder: JPEGImages/ (copies), Annotations/, ImageSets/Main/<split>.txt and
    classes.txt (so that the class order, unused classes included, survives the round trip)."""
    folder = Path(folder)
    images = copy_images(dataset.samples, folder / "JPEGImages")
    for sample, image in zip(dataset.samples, images, strict=True):
        width, height = sample_size(sample)
        names = [dataset.class_names[label] for label in sample.labels.tolist()]
        write_voc_xml(folder / "Annotations" / f"{image.stem}.xml", image, width, height,
                      sample.boxes, names, sample.difficult)
    ids = "".join(f"{image.stem}\n" for image in images)
    write_bytes_atomic(folder / "ImageSets" / "Main" / f"{split}.txt", ids.encode("utf-8"))
    write_bytes_atomic(folder / "classes.txt", "".join(f"{n}\n" for n in dataset.class_names[1:]).encode("utf-8"))
