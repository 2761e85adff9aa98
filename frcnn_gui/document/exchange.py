"""COCO / YOLO import and export of the open folder, as a part of `Document` (Qt-free)."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from frcnn_core.data.coco import read_coco_json, write_coco_json
from frcnn_core.data.samples import (
    BACKGROUND,
    SKIPPED_NO_ANNOTATION,
    DetectionDataset,
    RawObject,
    make_sample,
    problem_line,
)
from frcnn_core.data.voc import VocAnnotation, read_voc_xml
from frcnn_core.data.yolo import read_yolo_folder, write_yolo
from frcnn_core.errors import InputError
from frcnn_core.io.images import image_size
from frcnn_gui.document.annotation_file import annotation_bytes
from frcnn_gui.document.boxes import Box, fit_box, is_class_name

NOT_IN_FOLDER = "skipped: not in the open folder"


def _objects(annotation: VocAnnotation) -> Iterator[tuple[list[float], str, bool]]:
    """(coords, name, difficult) of each object that read_voc_xml kept."""
    return zip(annotation.boxes.tolist(), annotation.names, annotation.difficult.tolist(), strict=True)


class FolderExchange:
    """Document's folder-level import and export; relies on Document's state and file writing."""

    def export_coco(self, path: str | Path) -> list[str]:
        """Save, then write the folder's annotated images as COCO JSON; returns problem lines."""
        dataset = self._dataset()
        write_coco_json(path, dataset)
        return dataset.problems

    def export_yolo(self, folder: str | Path) -> list[str]:
        """Save, then write the annotated images as a YOLO folder (images copied); problem lines."""
        dataset = self._dataset()
        write_yolo(folder, dataset)
        return dataset.problems

    def _dataset(self) -> DetectionDataset:
        """Every image with a readable annotation file, as saved; the others reported."""
        self.save()
        annotations, problems = [], []
        for entry in self.images:
            if entry.status in ("annotated", "verified"):
                annotations.append((entry, read_voc_xml(entry.annotation_path)))
            else:
                problems.append(entry.error or problem_line(entry.path, "image", SKIPPED_NO_ANNOTATION))
        names = list(dict.fromkeys([*self.classes, *(n for _, a in annotations for n in a.names)]))
        class_names = [BACKGROUND, *names]
        samples = []
        for entry, annotation in annotations:
            problems += annotation.problems
            objects = [RawObject(f"object {number}", name, tuple(coords), difficult)
                       for number, (coords, name, difficult) in enumerate(_objects(annotation), start=1)]
            samples.append(make_sample(entry.path, objects, class_names, annotation.width, annotation.height,
                                       with_difficult=True))
        return DetectionDataset(samples, class_names, problems)

    def import_coco(self, path: str | Path) -> list[str]:
        """Replace the annotations of the folder's images that a COCO JSON lists; problem lines."""
        return self._import(read_coco_json(path))

    def import_yolo(self, folder: str | Path) -> list[str]:
        """Replace the annotations of the folder's images found in a YOLO folder; problem lines."""
        return self._import(read_yolo_folder(folder))

    def _import(self, dataset: DetectionDataset) -> list[str]:
        """Write each matched image's annotation (matched by file name; not verified; boxes in
        whole pixels, as VOC expects; a fresh labelImg file: the imported boxes replace the old
        file), extend the class list, reopen the current image. The caller clears its undo
        stack: files changed."""
        self._leave_current()
        entries = {entry.path.name: entry for entry in self.images}
        problems = list(dataset.problems)
        for sample in dataset.samples:
            entry = entries.get(Path(sample.image_path).name)
            if entry is None:
                problems.append(problem_line(sample.image_path, "image", NOT_IN_FOLDER))
                continue
            try:
                size = image_size(entry.path)
            except InputError as error:
                problems.append(str(error))
                continue
            flags = [False] * len(sample.labels) if sample.difficult is None else sample.difficult.tolist()
            boxes = []
            for coords, label, flag in zip(sample.boxes.tolist(), sample.labels.tolist(), flags, strict=True):
                try:
                    boxes.append(fit_box(Box(*coords, dataset.class_names[label], flag).whole_pixels(), *size))
                except ValueError as error:
                    problems.append(f"{sample.image_path}: {dataset.class_names[label]} skipped: {error}")
            data, _ = annotation_bytes(None, entry.path, size, list(enumerate(boxes)), {}, verified=False)
            self._write_annotation(entry, data, verified=False)
        self.classes = list(dict.fromkeys([*self.classes, *filter(is_class_name, dataset.class_names[1:])]))
        if self.current_index is not None:
            self._load(self.current_index)
        self._classes_dirty = True
        self._notify("images", "classes")
        return problems
