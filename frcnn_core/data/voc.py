"""PASCAL VOC / labelImg XML annotations, parsed with defusedxml (no entity expansion, no DTDs).

A box is kept when 0 <= x1 < x2 and 0 <= y1 < y2 after clipping to the image size the file
states; zero-area or inverted boxes are skipped and reported, never silently dropped.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

from frcnn_core.errors import InputError


@dataclass(frozen=True)
class VocAnnotation:
    """boxes (G, 4) float32 in pixels; names: G class names; problems: one line per skipped or
    clipped object."""

    path: str
    width: int | None
    height: int | None
    boxes: torch.Tensor
    names: list[str]
    problems: list[str] = field(default_factory=list)


def _number(element, tag: str, path: str, obj_index: int) -> float:
    node = element.find(tag)
    if node is None or node.text is None:
        raise InputError(path, f"object {obj_index}: missing <{tag}>")
    try:
        return float(node.text.strip())
    except ValueError as error:
        raise InputError(path, f"object {obj_index}: <{tag}> is not a number ({node.text.strip()[:40]!r})") from error


def read_voc_xml(path: str | os.PathLike) -> VocAnnotation:
    """Read one VOC XML file. Raises InputError naming the file (and line) when it is malformed."""
    path = str(path)
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as error:
        raise InputError(path, f"malformed XML (line {error.position[0]}, column {error.position[1]})") from error
    except DefusedXmlException as error:
        raise InputError(path, f"refused XML: {error.__class__.__name__} (entities and DTDs are not allowed)") from error
    except OSError as error:
        raise InputError(path, f"cannot read annotation ({error.strerror or error})") from error
    if root.tag != "annotation":
        raise InputError(path, f"not a VOC annotation (root element <{root.tag}>)")
    size = root.find("size")
    width = int(_number(size, "width", path, -1)) if size is not None else None
    height = int(_number(size, "height", path, -1)) if size is not None else None
    boxes, names, problems = [], [], []
    for index, obj in enumerate(root.iter("object")):
        name = (obj.findtext("name") or "").strip()
        bndbox = obj.find("bndbox")
        if not name or bndbox is None:
            raise InputError(path, f"object {index}: missing <name> or <bndbox>")
        x1, y1, x2, y2 = (_number(bndbox, tag, path, index) for tag in ("xmin", "ymin", "xmax", "ymax"))
        if width and height:
            clipped = (max(0.0, x1), max(0.0, y1), min(float(width), x2), min(float(height), y2))
            if clipped != (x1, y1, x2, y2) and clipped[0] < clipped[2] and clipped[1] < clipped[3]:
                problems.append(f"{path}: object {index} ({name}) clipped to the image border")
            x1, y1, x2, y2 = clipped
        if not (x1 < x2 and y1 < y2):
            problems.append(f"{path}: object {index} ({name}) skipped: zero-area or inverted box")
            continue
        boxes.append([x1, y1, x2, y2])
        names.append(name)
    tensor = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    return VocAnnotation(path, width, height, tensor, names, problems)
