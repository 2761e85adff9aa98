"""Which reader a dataset path needs: the one place that knows every annotation format.

The readers (voc, coco, yolo) build on the sample types of `samples.py`; this module sits above
them, so nothing imports in a circle.
"""

from __future__ import annotations

import os
from pathlib import Path

from frcnn_core.data import coco, voc, yolo
from frcnn_core.data.samples import DetectionDataset
from frcnn_core.errors import InputError


def open_dataset(
    path: str | os.PathLike, split: str | None = None, class_names: list[str] | None = None,
) -> DetectionDataset:
    """Open a VOC folder, a folder of images with VOC XML or YOLO txt beside them, or a COCO JSON.

    split: VOC folders only (ImageSets/Main/<split>.txt; default "trainval" when present, else
    every annotation). class_names: a fixed order (e.g. a checkpoint's, with or without the
    background entry); objects of other classes are reported and skipped.
    Raises InputError for a missing path, an unknown layout, a missing split or a malformed file.
    """
    root = Path(path)
    if not root.exists():
        raise InputError(root, "no such file or folder")
    if root.is_file() and root.suffix.lower() == ".json":
        return coco.read_coco_json(root, class_names)
    if root.is_dir() and (root / "Annotations").is_dir():
        return voc.read_voc_folder(root, split, class_names)
    if root.is_dir() and any(root.glob("*.xml")):
        return voc.read_labelimg_folder(root, class_names)
    if root.is_dir() and (root / "classes.txt").is_file():
        return yolo.read_yolo_folder(root, class_names)
    raise InputError(root, "unknown dataset layout: expected a VOC folder (Annotations/, JPEGImages/), "
                           "images with .xml beside them, a YOLO folder with classes.txt, or a COCO .json")
