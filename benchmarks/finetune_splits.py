"""The fine-tuning benchmark's splits: flat train / test folders (images linked, XML copied) in a scratch folder.

- raccoon: the labelImg photos of ../shared/data/raccoon, a seeded 80/20 split into train and test.
- bccd20, bccd205: a seeded choice of 20 (all 205) images of BCCD's train split; BCCD's val split
  is the test set of both.

Each folder is a labelImg folder (an image with its VOC XML beside it) with a classes.txt holding
the source's class order, so that a model trained on the train folder and the test folder's
ground truth number the classes alike. A split is a pure function of (dataset, seed, limits).
"""
from __future__ import annotations

import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

from frcnn_core.data.formats import open_dataset
from frcnn_core.data.samples import Sample
from frcnn_core.errors import InputError

DATA = Path(os.environ.get("FRCNN_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
RACCOON_TRAIN_SHARE = 0.8
BCCD_TRAIN_COUNTS = {"bccd20": 20, "bccd205": None}  # None: every image of the train split
DATASETS = ("raccoon", *BCCD_TRAIN_COUNTS)
MARKER = ".bench_finetune"  # a scratch folder this module made, and may therefore empty


@dataclass(frozen=True)
class Split:
    """Where a dataset's split lies and which images (file names) each side holds, in folder order."""

    name: str
    train_dir: Path
    test_dir: Path
    train_images: list[str]
    test_images: list[str]


def _annotation_of(sample: Sample, source: Path) -> Path:
    """The XML file a sample was read from: Annotations/<stem>.xml in a VOC folder, else beside the image."""
    image = Path(sample.image_path)
    folder = source / "Annotations" if (source / "Annotations").is_dir() else image.parent
    return folder / f"{image.stem}.xml"


def choose(dataset: str, seed: int, data: Path = DATA) -> tuple[list[Sample], list[Sample], list[str]]:
    """(train samples, test samples, class names with background first) of `dataset`, seeded."""
    if dataset == "raccoon":
        everything = open_dataset(data / "raccoon")
        shuffled = random.Random(seed).sample(everything.samples, len(everything.samples))
        cut = round(RACCOON_TRAIN_SHARE * len(shuffled))
        return shuffled[:cut], shuffled[cut:], everything.class_names
    if dataset not in BCCD_TRAIN_COUNTS:
        raise ValueError(f"unknown dataset {dataset!r} (known: {', '.join(DATASETS)})")
    names = open_dataset(data / "bccd", "trainval").class_names
    train = open_dataset(data / "bccd", "train", names).samples
    count = BCCD_TRAIN_COUNTS[dataset] or len(train)
    return random.Random(seed).sample(train, count), open_dataset(data / "bccd", "val", names).samples, names


def _fill(folder: Path, samples: list[Sample], source: Path, class_names: list[str]) -> list[str]:
    """Link each sample's image into `folder`, copy its XML beside it, write classes.txt; the image names."""
    folder.mkdir(parents=True)
    (folder / "classes.txt").write_text("".join(f"{name}\n" for name in class_names[1:]), encoding="utf-8")
    names = []
    for sample in samples:
        image = Path(sample.image_path).resolve()
        (folder / image.name).symlink_to(image)
        shutil.copyfile(_annotation_of(sample, source), folder / f"{image.stem}.xml")
        names.append(image.name)
    return names


def _fresh(folder: Path) -> None:
    """Empty `folder` when this module made it; InputError when it exists and it did not."""
    if folder.exists() and not (folder / MARKER).is_file():
        raise InputError(folder, f"exists and was not made by the benchmark (no {MARKER}): choose another --scratch")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / MARKER).touch()


def build_split(dataset: str, scratch: Path, seed: int, train_limit: int | None = None,
                test_limit: int | None = None, data: Path = DATA) -> Split:
    """Write scratch/<dataset>/{train,test}; limits keep the first N of each side (the smoke run)."""
    train, test, class_names = choose(dataset, seed, data)
    root = Path(scratch) / dataset
    _fresh(root)
    source = data / ("raccoon" if dataset == "raccoon" else "bccd")
    return Split(dataset, root / "train", root / "test",
                 _fill(root / "train", train[:train_limit], source, class_names),
                 _fill(root / "test", test[:test_limit], source, class_names))
