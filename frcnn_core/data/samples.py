"""Detection datasets: one `Sample` per annotated image, read from VOC, COCO or YOLO files.

Shapes: G is the number of ground-truth boxes of one image. Boxes are (x1, y1, x2, y2) float32
pixels; labels are int64 indices into `class_names`, where 0 is "__background__" and never
appears in a sample.

Every object a reader does not keep as written is reported in `DetectionDataset.problems`, one
line each, "<file>: <subject> <kind>", e.g. "a.xml: object 13 (RBC) skipped: zero-area box";
`kind` is one of `PROBLEM_KINDS`.
"""
from __future__ import annotations

import math
import os
from array import array
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from frcnn_core.errors import InputError
from frcnn_core.io.atomic import write_bytes_atomic
from frcnn_core.io.images import image_size, load_image  # image_size: (W, H) from the header, re-exported

if TYPE_CHECKING:
    import torch

BACKGROUND = "__background__"
MAX_SIDE = 2**31 - 1  # Pillow's limit on an image side: a larger stated size is damage
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm")

SKIPPED_NON_FINITE = "skipped: non-finite coordinate"
SKIPPED_ZERO_AREA = "skipped: zero-area box"
SKIPPED_INVERTED = "skipped: inverted box"
SKIPPED_OUTSIDE = "skipped: outside the image"
CLIPPED = "clipped at the image border"
SKIPPED_UNKNOWN_CLASS = "skipped: unknown class"
SKIPPED_CROWD = "skipped: crowd annotation"
SKIPPED_UNKNOWN_IMAGE = "skipped: unknown image id"
SKIPPED_NO_IMAGE = "skipped: image file not found"
SKIPPED_NO_ANNOTATION = "skipped: no annotation file"
PROBLEM_KINDS = (
    SKIPPED_NON_FINITE, SKIPPED_ZERO_AREA, SKIPPED_INVERTED, SKIPPED_OUTSIDE, CLIPPED,
    SKIPPED_UNKNOWN_CLASS, SKIPPED_CROWD, SKIPPED_UNKNOWN_IMAGE, SKIPPED_NO_IMAGE, SKIPPED_NO_ANNOTATION,
)


def problem_line(file: str | os.PathLike, subject: str, kind: str) -> str:
    """The one line that reports what happened to an object or image; `kind` from PROBLEM_KINDS.

    A line break inside a name taken from the file (a class, an image name) becomes a space.
    """
    return " ".join(f"{file}: {subject} {kind}".splitlines())


def is_file(path: Path) -> bool:
    """Path.is_file(), but False for a name the file system cannot even look up (too long, a NUL)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def stated_side(file: str | os.PathLike, where: str, value: float) -> int | None:
    """An image width or height as an annotation states it: None for 0 (unknown), InputError
    naming the file for a negative, non-finite or impossibly large value."""
    if not 0 <= value <= MAX_SIDE:
        raise InputError(file, f"{where} is not an image size (0 to {MAX_SIDE} pixels)")
    return int(value) or None


@dataclass(frozen=True)
class Sample:
    """One image and its ground truth.

    boxes: (G, 4) float32, x1 y1 x2 y2 pixels, x1 < x2 and y1 < y2.
    labels: (G,) int64, >= 1. difficult: (G,) bool from VOC's <difficult>, else None.
    width, height: the image size the annotation states, None when it states none.
    annotated: False when no annotation file exists for the image (a YOLO image without its .txt):
    training reads it as an image without objects, error analysis leaves it out.
    """

    image_path: str
    boxes: torch.Tensor
    labels: torch.Tensor
    width: int | None = None
    height: int | None = None
    difficult: torch.Tensor | None = None
    annotated: bool = True


@dataclass(frozen=True)
class RawObject:
    """One object as an annotation file writes it, before any check.

    subject: how a problem line names it ("object 3", "line 4", "annotation 17").
    coords: x1, y1, x2, y2 in pixels, any float (NaN and inverted included).
    """

    subject: str
    name: str
    coords: tuple[float, float, float, float]
    difficult: bool = False


def _float32(values: tuple[float, ...]) -> tuple[float, ...]:
    """The values as a Sample stores them: rounded to float32, inf past its range."""
    return tuple(array("f", values))


def check_object(obj: RawObject, width: int | None, height: int | None) -> tuple[RawObject | None, str | None]:
    """Validate one object: (kept object or None, problem kind or None).

    The checks see the float32 coordinates a Sample stores, so a box that float32 collapses
    (1 to 1.00000001) or overflows (1e39) is skipped like one written that way. Non-finite,
    zero-area and inverted boxes are skipped; a box past the border of a known image size is
    clipped to [0, width] x [0, height], and skipped when nothing of it is left inside.
    """
    coords = _float32(obj.coords)
    x1, y1, x2, y2 = coords
    if not all(math.isfinite(value) for value in coords):
        return None, SKIPPED_NON_FINITE
    if x1 == x2 or y1 == y2:
        return None, SKIPPED_ZERO_AREA
    if x1 > x2 or y1 > y2:
        return None, SKIPPED_INVERTED
    kept = obj if coords == obj.coords else replace(obj, coords=coords)
    if not (width and height):
        return kept, None
    clipped = _float32((max(0.0, x1), max(0.0, y1), min(float(width), x2), min(float(height), y2)))
    if clipped == coords:
        return kept, None
    if not (clipped[0] < clipped[2] and clipped[1] < clipped[3]):
        return None, SKIPPED_OUTSIDE
    return replace(obj, coords=clipped), CLIPPED


def check_objects(
    file: str | os.PathLike, objects: list[RawObject], width: int | None, height: int | None,
    class_names: list[str] | None = None,
) -> tuple[list[RawObject], list[str]]:
    """Keep the valid (possibly clipped) objects of one file; one problem line per skipped or
    clipped object.

    class_names: when given, objects of any other class are skipped as unknown.
    """
    known = None if class_names is None else set(class_names)
    kept, problems = [], []
    for obj in objects:
        if known is not None and obj.name not in known:
            checked, kind = None, SKIPPED_UNKNOWN_CLASS
        else:
            checked, kind = check_object(obj, width, height)
        if kind is not None:
            problems.append(problem_line(file, f"{obj.subject} ({obj.name})", kind))
        if checked is not None:
            kept.append(checked)
    return kept, problems


def make_sample(
    image_path: str | os.PathLike, objects: list[RawObject], class_names: list[str],
    width: int | None, height: int | None, with_difficult: bool = False, annotated: bool = True,
) -> Sample:
    """A Sample from checked objects; every object's name must be in class_names[1:]."""
    import torch  # here, not at the top: the window reads images and annotations before torch is imported
    index = {name: label for label, name in enumerate(class_names)}
    boxes = torch.tensor([obj.coords for obj in objects], dtype=torch.float32).reshape(-1, 4)
    labels = torch.tensor([index[obj.name] for obj in objects], dtype=torch.int64)
    difficult = torch.tensor([obj.difficult for obj in objects], dtype=torch.bool) if with_difficult else None
    return Sample(str(image_path), boxes, labels, width or None, height or None, difficult, annotated)


def with_background(class_names: list[str]) -> list[str]:
    """["__background__", *names], accepting names that already start with it; no duplicates."""
    names = list(class_names[1:] if class_names and class_names[0] == BACKGROUND else class_names)
    duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicates or BACKGROUND in names:
        raise ValueError(f"class names must be unique and not {BACKGROUND!r}: {duplicates or [BACKGROUND]}")
    return [BACKGROUND, *names]


def with_background_from(file: str | os.PathLike, class_names: list[str]) -> list[str]:
    """with_background() of names a file lists: InputError naming the file instead of ValueError."""
    try:
        return with_background(class_names)
    except ValueError as error:
        raise InputError(file, str(error)) from error


def first_appearance(names_per_file: list[list[str]]) -> list[str]:
    """Class names in the order they first appear, files and objects in the order given.

    The background's name is never a class: objects so named are later skipped as unknown.
    """
    return list(dict.fromkeys(name for names in names_per_file for name in names if name != BACKGROUND))


def read_class_file(path: Path) -> list[str]:
    """One class name per line, trailing blank lines ignored (YOLO class ids count the lines).

    InputError for an empty line between names or a name listed twice.
    """
    try:
        lines = path.read_text(encoding="utf-8").rstrip().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(path, f"cannot read class names ({error})") from error
    names: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        name = line.strip()
        if not name:
            raise InputError(path, f"line {number}: empty class name")
        if name in names:
            raise InputError(path, f"line {number}: class {name!r} already listed on line {names[name]}")
        names[name] = number
    return list(names)


class DetectionDataset:
    """Images with boxes and labels; `transform(image, target)` runs after loading when set.

    A map-style dataset: torch's DataLoader reads it through `__len__` and `__getitem__`. It does
    not subclass torch's `Dataset`, so that reading annotations never imports torch."""

    def __init__(self, samples: list[Sample], class_names: list[str], problems: list[str] | None = None,
                 transform: Callable | None = None):
        self.samples = list(samples)
        self.class_names = list(class_names)
        self.problems = list(problems or [])
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict]:
        """image: float32 (3, H, W) in [0, 1]; target: boxes (G, 4), labels (G,), image_id = index."""
        sample = self.samples[index]
        image = load_image(sample.image_path).tensor
        target = {"boxes": sample.boxes.clone(), "labels": sample.labels.clone(), "image_id": index}
        if self.transform is not None:
            image, target = self.transform(image, target)
        return image, target

    def problem_summary(self, examples: int = 5) -> str:
        """One screen: how many objects were skipped or fixed, by kind, and the first few lines."""
        if not self.problems:
            return f"{len(self.samples)} images, no annotation problems"
        counts = Counter(next((k for k in PROBLEM_KINDS if line.endswith(k)), "other") for line in self.problems)
        lines = [f"{len(self.samples)} images, {len(self.problems)} annotation problems:"]
        lines += [f"  {count:6d}  {kind}" for kind, count in counts.most_common()]
        lines.append("first examples:" if len(self.problems) > examples else "all of them:")
        lines += [f"  {line}" for line in self.problems[:examples]]
        return "\n".join(lines)


def select_images(dataset: DetectionDataset, names: Iterable[str]) -> DetectionDataset:
    """The samples whose image file name (no folder) is in `names`, in dataset order; the same
    class names, problem lines and transform."""
    wanted = set(names)
    samples = [sample for sample in dataset.samples if Path(sample.image_path).name in wanted]
    return DetectionDataset(samples, dataset.class_names, dataset.problems, dataset.transform)


def collate(batch: list[tuple[torch.Tensor, dict]]) -> tuple[list[torch.Tensor], list[dict]]:
    """DataLoader collate_fn: images differ in size, so they stay a list, as do targets."""
    return [image for image, _ in batch], [target for _, target in batch]


def sample_size(sample: Sample) -> tuple[int, int]:
    """(width, height): the annotation's when it states them, else the image header's."""
    if sample.width and sample.height:
        return sample.width, sample.height
    return image_size(sample.image_path)


def copy_images(samples: list[Sample], folder: Path) -> list[Path]:
    """Copy each sample's image into `folder` under its own file name (atomic writes).

    VOC and YOLO name each annotation file after its image, so image stems must be unique.
    """
    stems = Counter(Path(sample.image_path).stem for sample in samples)
    clashes = sorted(stem for stem, count in stems.items() if count > 1)
    if clashes:
        raise InputError(folder, f"{len(clashes)} image names occur twice (without extension), e.g. "
                                 f"{clashes[0]!r}; this format names annotations after their image")
    copies = []
    for sample in samples:
        source, target = Path(sample.image_path), folder / Path(sample.image_path).name
        if not (target.exists() and os.path.samefile(source, target)):
            try:
                data = source.read_bytes()
            except OSError as error:
                raise InputError(source, f"cannot copy image ({error.strerror or error})") from error
            write_bytes_atomic(target, data)
        copies.append(target)
    return copies
