"""COCO JSON detection annotations: read and write.

COCO's bbox is [x, y, w, h] in pixels; we compute x2 = x + w and y2 = y + h in float64 and then
round once to float32. The writer stores w = x2 - x1 of two float32 values, which float64 holds
exactly, so read -> write -> read gives the same float32 boxes.
Categories are ordered by id (label 1 = smallest id); image file names are resolved against the
JSON's folder, then its "images/" subfolder (absolute names are used as they are).
Crowd regions (iscrowd = 1) are skipped and reported; VOC's "difficult" has no COCO field and is
not written.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

from frcnn_core.data.samples import (
    SKIPPED_CROWD,
    SKIPPED_NO_IMAGE,
    SKIPPED_UNKNOWN_CLASS,
    SKIPPED_UNKNOWN_IMAGE,
    DetectionDataset,
    RawObject,
    check_objects,
    is_file,
    make_sample,
    problem_line,
    sample_size,
    stated_side,
    with_background,
    with_background_from,
)
from frcnn_core.errors import InputError
from frcnn_core.io.atomic import write_bytes_atomic


def _load(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(path, f"cannot read annotation ({error})") from error
    try:
        content = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(path, f"malformed JSON (line {error.lineno}, column {error.colno}): {error.msg}") from error
    except ValueError as error:  # valid JSON that Python refuses: an integer of more than 4,300 digits
        raise InputError(path, f"malformed JSON ({str(error).split(':')[0]})") from error
    except RecursionError as error:
        raise InputError(path, "malformed JSON (nested too deeply)") from error
    if not isinstance(content, dict) or not all(isinstance(content.get(key), list) for key in ("images", "categories")):
        raise InputError(path, 'not a COCO detection file (needs "images" and "categories" lists)')
    if not isinstance(content.get("annotations", []), list):
        raise InputError(path, '"annotations" is not a list')
    return content


def _field(entry: dict, key: str, kind, path: Path, where: str):
    """entry[key] when it is of `kind`, else InputError naming the entry."""
    value = entry.get(key) if isinstance(entry, dict) else None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise InputError(path, f"{where}: missing or invalid {key!r}")
    return value


def _optional_size(entry: dict, key: str, path: Path, where: str) -> int | None:
    if entry.get(key) is None:
        return None
    return stated_side(path, f"{where}: {key!r}", _field(entry, key, int, path, where))


def _float(value: int | float) -> float:
    """A JSON number as a float; an integer past float's range is infinite (reported later)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _categories(content: dict, path: Path) -> dict[int, str]:
    """Category id -> name, in id order; InputError for a repeated id or name."""
    categories: dict[int, str] = {}
    for number, entry in enumerate(content["categories"], start=1):
        category_id = _field(entry, "id", int, path, f"category {number}")
        name = str(_field(entry, "name", str, path, f"category {number}"))
        if category_id in categories or name in categories.values():
            raise InputError(path, f"category {number}: id {category_id} or name {name!r} occurs twice")
        categories[category_id] = name
    return dict(sorted(categories.items()))


def _resolve_image(folder: Path, file_name: str) -> Path | None:
    for candidate in (folder / file_name, folder / "images" / file_name):
        if is_file(candidate):
            return candidate
    return None


def _objects_by_image(content: dict, path: Path, categories: dict[int, str], image_ids: set[int]):
    """Image id -> its RawObjects, and the problem lines of annotations that belong to none."""
    objects: dict[int, list[RawObject]] = {image_id: [] for image_id in image_ids}
    problems = []
    for number, entry in enumerate(content.get("annotations", []), start=1):
        stated_id = entry.get("id") if isinstance(entry, dict) else None
        where = f"annotation {stated_id if isinstance(stated_id, int) else number}"
        image_id = _field(entry, "image_id", int, path, where)
        category_id = _field(entry, "category_id", int, path, where)
        bbox = _field(entry, "bbox", list, path, where)
        if len(bbox) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox):
            raise InputError(path, f"{where}: bbox must be four numbers [x, y, w, h]")
        if image_id not in objects:
            problems.append(problem_line(path, f"{where} (image_id {image_id})", SKIPPED_UNKNOWN_IMAGE))
        elif category_id not in categories:
            problems.append(problem_line(path, f"{where} (category_id {category_id})", SKIPPED_UNKNOWN_CLASS))
        elif entry.get("iscrowd", 0):
            problems.append(problem_line(path, f"{where} ({categories[category_id]})", SKIPPED_CROWD))
        else:
            x, y, w, h = (_float(v) for v in bbox)  # NaN or inf stays non-finite and is reported later
            objects[image_id].append(RawObject(where, categories[category_id], (x, y, x + w, y + h)))
    return objects, problems


def read_coco_json(path: str | os.PathLike, class_names: list[str] | None = None) -> DetectionDataset:
    """A COCO JSON file: one sample per listed image (in the file's order), empty ones included.

    class_names: a fixed order; categories with other names are skipped and reported.
    """
    path = Path(path)
    content = _load(path)
    categories = _categories(content, path)
    if class_names is None:
        names = with_background_from(path, list(categories.values()))
    else:
        names = with_background(class_names)
    images = list(enumerate(content["images"], start=1))
    image_ids = [_field(entry, "id", int, path, f"image {number}") for number, entry in images]
    if len(set(image_ids)) != len(image_ids):
        raise InputError(path, "an image id occurs twice in \"images\"")
    objects, problems = _objects_by_image(content, path, categories, set(image_ids))
    samples = []
    for number, entry in images:
        file_name = _field(entry, "file_name", str, path, f"image {number}")
        image = _resolve_image(path.parent, file_name)
        if image is None:
            problems.append(problem_line(path, f"image {entry['id']} ({file_name})", SKIPPED_NO_IMAGE))
            continue
        width, height = (_optional_size(entry, key, path, f"image {number}") for key in ("width", "height"))
        kept, found = check_objects(path, objects[entry["id"]], width, height, names[1:])
        problems += found
        samples.append(make_sample(image, kept, names, width, height))
    return DetectionDataset(samples, names, problems)


def _file_name(image: Path, folder: Path) -> str:
    """The image's name relative to the JSON's folder when it lies below it, else absolute."""
    image = image.resolve()
    try:
        return image.relative_to(folder.resolve()).as_posix()
    except ValueError:
        return str(image)


def write_coco_json(path: str | os.PathLike, dataset: DetectionDataset) -> None:
    """Write `dataset` as COCO JSON: image ids from 1 in dataset order, category id = label."""
    path = Path(path)
    images, annotations = [], []
    for image_id, sample in enumerate(dataset.samples, start=1):
        width, height = sample_size(sample)
        images.append({"id": image_id, "file_name": _file_name(Path(sample.image_path), path.parent),
                       "width": width, "height": height})
        # float32 -> float64 is exact, and so is the difference of two float32 values in float64.
        for (x1, y1, x2, y2), label in zip(sample.boxes.double().tolist(), sample.labels.tolist(), strict=True):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": label,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    categories = [{"id": label, "name": name} for label, name in enumerate(dataset.class_names) if label > 0]
    content = {"images": images, "annotations": annotations, "categories": categories}
    write_bytes_atomic(path, (json.dumps(content, indent=1) + "\n").encode("utf-8"))
