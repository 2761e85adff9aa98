"""YOLO txt annotations: images with a <stem>.txt beside each, and classes.txt, read and write.

Each line is "class cx cy w h": class is a 0-based line of classes.txt (our label - 1); the box
centre and size are divided by the image's width and height (as displayed, EXIF orientation
applied). An image without a .txt file has no objects (YOLO's convention for background images).
The writer prints repr() of float64 values, which reads back to the same float64; converting back
to pixels in float64 then lands on the same float32 box (the error is far below float32's step).
"""
from __future__ import annotations

import os
from pathlib import Path

from frcnn_core.data.samples import (
    IMAGE_SUFFIXES,
    SKIPPED_UNKNOWN_CLASS,
    DetectionDataset,
    RawObject,
    check_objects,
    copy_images,
    image_size,
    make_sample,
    problem_line,
    read_class_file,
    with_background,
    with_background_from,
)
from frcnn_core.errors import InputError
from frcnn_core.io.atomic import write_bytes_atomic


def _parse_line(path: Path, number: int, line: str) -> tuple[int, tuple[float, float, float, float]]:
    """(class id, (cx, cy, w, h)) of one line; InputError naming file and line when malformed."""
    fields = line.split()
    try:
        if len(fields) != 5:
            raise ValueError
        return int(fields[0]), tuple(float(value) for value in fields[1:])
    except ValueError as error:
        raise InputError(path, f"line {number}: expected 'class cx cy w h', got {line.strip()[:60]!r}") from error


def read_yolo_labels(path: Path, width: int, height: int, yolo_names: list[str]) -> tuple[list[RawObject], list[str]]:
    """RawObjects in pixels from one label file, and problem lines for class ids not in classes.txt."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(path, f"cannot read labels ({error})") from error
    objects, problems = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        class_id, (cx, cy, w, h) = _parse_line(path, number, line)
        if not 0 <= class_id < len(yolo_names):
            problems.append(problem_line(path, f"line {number} (class {class_id})", SKIPPED_UNKNOWN_CLASS))
            continue
        coords = ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)
        objects.append(RawObject(f"line {number}", yolo_names[class_id], coords))
    return objects, problems


def read_yolo_folder(folder: str | os.PathLike, class_names: list[str] | None = None) -> DetectionDataset:
    """Every image of `folder` in sorted order, with classes.txt giving the class order.

    class_names: a fixed order; objects of other classes are skipped and reported.
    """
    folder = Path(folder)
    yolo_names = read_class_file(folder / "classes.txt")
    if class_names is None:
        names = with_background_from(folder / "classes.txt", yolo_names)
    else:
        names = with_background(class_names)
    samples, problems = [], []
    for image in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        width, height = image_size(image)
        labels = image.with_suffix(".txt")
        objects, found = read_yolo_labels(labels, width, height, yolo_names) if labels.is_file() else ([], [])
        kept, checked = check_objects(labels, objects, width, height, names[1:])
        problems += found + checked
        samples.append(make_sample(image, kept, names, width, height, annotated=labels.is_file()))
    return DetectionDataset(samples, names, problems)


def write_yolo(folder: str | os.PathLike, dataset: DetectionDataset) -> None:
    """Write a YOLO folder: image copies, one <stem>.txt each (empty for no objects), classes.txt."""
    folder = Path(folder)
    images = copy_images(dataset.samples, folder)
    for sample, image in zip(dataset.samples, images, strict=True):
        width, height = image_size(image)
        lines = []
        for (x1, y1, x2, y2), label in zip(sample.boxes.double().tolist(), sample.labels.tolist(), strict=True):
            centre_size = ((x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height)
            lines.append(" ".join([str(label - 1), *map(repr, centre_size)]) + "\n")
        write_bytes_atomic(image.with_suffix(".txt"), "".join(lines).encode("utf-8"))
    write_bytes_atomic(folder / "classes.txt", "".join(f"{n}\n" for n in dataset.class_names[1:]).encode("utf-8"))
