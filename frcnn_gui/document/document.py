"""The annotation document of a folder of images: the one owner of annotation state. Qt-free.

One image is open at a time (the current image): its ground-truth boxes, its verified flag and
the model's detections for it. Every change calls each subscriber with one kind from
CHANGE_KINDS after it has happened; views read the document again and never keep its data.

Files: one labelImg-compatible VOC XML per image (beside it, or in `annotation_dir`) and
classes.txt beside them. Opening never writes. `save()` writes the current image atomically when
it has changed; leaving an image (open_image, open_folder, import) saves it first. Saving writes
the file back as it was read but for the user's edits (annotation_file: every field the
document does not edit is kept, per object and per file). A malformed annotation, or one with
objects that were skipped or clipped when opened (each reported in `problems`), is left
untouched when opened; the first save after an edit copies it to `<name>.xml.bak` before
replacing it (a file with problems once per document: the files it wrote itself need no backup).

Boxes: x1 y1 x2 y2 in image pixels, VOC's numbers (no 1-based shift). The document holds them
normalized, clipped to the image and rounded to float32, so that save -> open gives the same
Box values. Boxes read from a file keep its numbers (fractions too); boxes made by the user or
the model enter through check_box, which rounds them to whole pixels as VOC expects (so every
command that draws, moves, resizes, nudges or accepts a box stores integers, while undo puts
back the exact box it replaced). Box ids are never reused within a document; reopening an image
whose file still holds the boxes last seen gives them their old ids back, so undo commands stay
valid.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from defusedxml import ElementTree

from frcnn_core.data.samples import IMAGE_SUFFIXES, read_class_file
from frcnn_core.data.voc import CLASS_FILES, parse_voc_xml
from frcnn_core.errors import InputError
from frcnn_core.io.atomic import backup_copy, write_bytes_atomic
from frcnn_core.io.images import image_size
from frcnn_gui.document.annotation_file import FileTree, ReadObject, annotation_bytes, read_annotation, rename_in_file
from frcnn_gui.document.boxes import Box, Detection, ImageEntry, check_class_name, fit_box, is_class_name
from frcnn_gui.document.exchange import FolderExchange
from frcnn_gui.document.natural_sort import natural_key

__all__ = ["IMAGE_SUFFIXES", "CHANGE_KINDS", "Box", "Detection", "ImageEntry", "Document", "fit_box",
           "check_class_name", "is_class_name"]

CHANGE_KINDS = ("images", "image", "boxes", "classes", "verified", "detections", "saved", "error")


def _read_verified(path: Path) -> bool:
    """labelImg's flag, verified="yes" on <annotation>; reads no further than the root's start tag."""
    with open(path, "rb") as stream:
        _, root = next(ElementTree.iterparse(stream, events=("start",)))
    return root.get("verified") == "yes"


class Document(FolderExchange):
    """Images of one folder, the current image's boxes, the class list; see the module doc.

    boxes: box id -> Box of the current image, in file order. classes: class file order, then
    names found in annotations, then user-added. read_only_reason: why the current image's file is
    not shown as it is (a malformed annotation: edits allowed, backed up before the first save;
    an unreadable image: edits refused). problems: objects of the current file that were clipped
    or skipped when it was opened, one line each.
    """

    def __init__(self, annotation_dir: str | Path | None = None):
        self.annotation_dir = None if annotation_dir is None else Path(annotation_dir)
        self.folder: Path | None = None
        self.images: list[ImageEntry] = []
        self.classes: list[str] = []
        self.last_error: str | None = None
        self._subscribers: list[Callable[[str], None]] = []
        self._batch_depth = 0
        self._pending: list[str] = []  # kinds held back by batch()
        self._next_box_id = 1
        self._written_classes: list[str] | None = None  # what classes.txt holds
        self._seen_boxes: dict[Path, list[tuple[int, Box]]] = {}  # image -> its boxes when last left
        self._read_objects: dict[int, ReadObject] = {}  # box id -> how it was read (annotation_file)
        self._written: set[Path] = set()  # annotation files this document wrote
        self._classes_dirty = False
        self._clear_current()

    def _clear_current(self) -> None:
        self.current_index: int | None = None
        self.boxes: dict[int, Box] = {}
        self.verified = False
        self.detections: list[Detection] = []
        self.image_size: tuple[int, int] | None = None
        self.read_only_reason: str | None = None
        self.problems: list[str] = []
        self._on_disk: tuple[list[Box], bool] = ([], False)  # the boxes and flag its file holds
        self._file: FileTree | None = None  # its file's tree as last read or written

    # -- observation ---------------------------------------------------------------------------

    def subscribe(self, callback: Callable[[str], None]) -> None:
        """Call `callback(kind)` after every change; kind is one of CHANGE_KINDS."""
        self._subscribers.append(callback)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Hold notifications back until the block ends, then send each kind once, so that a
        step of many edits (accepting 1,000 detections) redraws the views once."""
        self._batch_depth += 1
        try:
            yield
        finally:
            self._batch_depth -= 1
            if self._batch_depth == 0:
                pending, self._pending = self._pending, []
                self._notify(*pending)

    def _notify(self, *kinds: str) -> None:
        if self._batch_depth:
            self._pending += [kind for kind in kinds if kind not in self._pending]
            return
        for kind in kinds:
            for callback in list(self._subscribers):
                callback(kind)

    @property
    def dirty(self) -> bool:
        """The current image's boxes or verified flag differ from its file as last read or
        written (undoing every edit makes it clean again), or the class list has changes that
        save() would write."""
        return self._annotation_state() != self._on_disk or self._classes_dirty

    def _annotation_state(self) -> tuple[list[Box], bool]:
        return list(self.boxes.values()), self.verified

    @property
    def current_path(self) -> Path | None:
        return None if self.current_index is None else self.images[self.current_index].path

    def image_index(self, path: str | Path) -> int:
        """Index of the image at `path`; ValueError when the open folder has no such image."""
        for index, entry in enumerate(self.images):
            if entry.path == Path(path):
                return index
        raise ValueError(f"{path}: not an image of the open folder")

    # -- folder and image ----------------------------------------------------------------------

    def open_folder(self, folder: str | Path) -> None:
        """List the folder's images (natural_key order: x-2 before x-10) with the status of their
        annotation files.

        Raises InputError for a missing folder or an unreadable class file; a malformed
        annotation only marks its image "error".
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise InputError(folder, "no such folder")
        self._leave_current()
        annotation_dir = self.annotation_dir or folder
        class_file = next((annotation_dir / name for name in CLASS_FILES if (annotation_dir / name).is_file()), None)
        listed = read_class_file(class_file) if class_file else []
        images, found = [], []
        for image in sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                            key=natural_key):
            entry = ImageEntry(image, annotation_dir / f"{image.stem}.xml", "none")
            try:
                image_size(image)  # the header only: an unreadable image is an error row at once
            except InputError as error:
                entry.status, entry.error = "error", str(error)
                images.append(entry)
                continue
            if entry.annotation_path.is_file():
                try:
                    found += [obj.name for obj in parse_voc_xml(entry.annotation_path).objects]
                    entry.status = "verified" if _read_verified(entry.annotation_path) else "annotated"
                except InputError as error:
                    entry.status, entry.error = "error", str(error)
            images.append(entry)
        self.folder, self.images = folder, images
        self.classes = list(dict.fromkeys([*listed, *filter(is_class_name, found)]))
        self._written_classes = listed if class_file and class_file.name == "classes.txt" else None
        self._seen_boxes = {}
        self._classes_dirty = False
        self._clear_current()
        self._notify("images", "classes", "image")

    def open_image(self, index: int) -> None:
        """Make image `index` current: its size, boxes and verified flag; detections cleared.

        The image left behind is saved first when it has changes. An unreadable image or a
        malformed annotation marks the entry "error", sets read_only_reason and notifies "error".
        """
        if not 0 <= index < len(self.images):
            raise IndexError(f"image index {index} outside 0..{len(self.images) - 1}")
        self._leave_current()
        self._load(index)

    def _leave_current(self) -> None:
        if self.current_index is None:
            return
        if self.dirty:
            self.save()
        self._seen_boxes[self.current_path] = list(self.boxes.items())
        for box_id in self.boxes:  # read again on return; kept: deleted boxes', for an undo
            self._read_objects.pop(box_id, None)

    def _load(self, index: int) -> None:
        self._clear_current()
        self.current_index = index
        entry = self.images[index]
        old_status = entry.status
        entry.status, entry.error = "none", None
        try:
            self.image_size = image_size(entry.path)
            if entry.annotation_path.is_file():
                self._load_annotation(entry)
        except InputError as error:
            entry.status, entry.error = "error", str(error)
            self.read_only_reason = self.last_error = str(error)
            self.boxes, self.verified, self.problems = {}, False, []
        self._on_disk = self._annotation_state()
        self._notify(*(["images"] if entry.status != old_status else []), "image",
                     *(["error"] if entry.status == "error" else []))

    def _load_annotation(self, entry: ImageEntry) -> None:
        opened = read_annotation(entry.annotation_path, *self.image_size)
        self.verified = opened.verified
        entry.status = "verified" if self.verified else "annotated"
        self.problems = opened.problems
        read = [obj for obj in opened.objects if obj is not None]
        loaded = [obj.box for obj in read]
        seen = self._seen_boxes.get(entry.path)
        if seen is not None and [box for _, box in seen] == loaded:
            self.boxes = dict(seen)
        else:
            self.boxes = {self._new_box_id(): box for box in loaded}
        self._read_objects.update(zip(self.boxes, read, strict=True))
        ids = iter(self.boxes)
        slots = tuple(None if obj is None else (next(ids), obj.box) for obj in opened.objects)
        self._file = None if opened.data is None else FileTree(opened.data, slots)
        unknown = [name for name in dict.fromkeys(box.label for box in loaded) if name not in self.classes]
        if unknown:
            self.classes += unknown
            self._notify("classes")

    def _new_box_id(self) -> int:
        self._next_box_id += 1
        return self._next_box_id - 1

    # -- edits ---------------------------------------------------------------------------------

    def check_box(self, box: Box) -> Box:
        """`box` as the user or the model puts it in the current image: whole pixels, then
        fit_box; ValueError when it cannot be."""
        return self._fit(box.whole_pixels())

    def _fit(self, box: Box) -> Box:
        if self.image_size is None:
            raise ValueError(self.read_only_reason or "no image is open")
        return fit_box(box, *self.image_size)

    def _known_class_box(self, box: Box) -> Box:
        checked = self._fit(box)
        if checked.label not in self.classes:
            raise ValueError(f"unknown class {checked.label!r}: add it to the class list first")
        return checked

    def add_box(self, box: Box, box_id: int | None = None, index: int | None = None) -> int:
        """Add `box` (fit_box, of a listed class; not rounded: see check_box); returns its id.

        box_id: an id this document issued before and that is free (redoing a delete keeps the
        box's identity); index: its place in the box order (default: last).
        """
        box = self._known_class_box(box)
        if box_id is None:
            box_id = self._new_box_id()
        elif box_id in self.boxes or not 0 < box_id < self._next_box_id:
            raise ValueError(f"box id {box_id} is in use or was never issued")
        items = list(self.boxes.items())
        items.insert(len(items) if index is None else index, (box_id, box))
        self.boxes = dict(items)
        self._notify("boxes")
        return box_id

    def remove_box(self, box_id: int) -> Box:
        """Remove box `box_id` (KeyError when there is none); returns it."""
        box = self.boxes.pop(box_id)
        self._notify("boxes")
        return box

    def replace_box(self, box_id: int, box: Box) -> Box:
        """Put `box` (checked, of a listed class) in place of box `box_id`; returns the old one."""
        old = self.boxes[box_id]
        self.boxes[box_id] = self._known_class_box(box)
        self._notify("boxes")
        return old

    def set_verified(self, flag: bool) -> None:
        """labelImg's verified flag of the current image (Space): the annotation is complete."""
        if self.image_size is None:
            raise ValueError(self.read_only_reason or "no image is open")
        self.verified = bool(flag)
        self._notify("verified")

    def set_detections(self, detections: list[Detection]) -> None:
        """The model's output for the current image; shown, never saved."""
        self.detections = list(detections)
        self._notify("detections")

    def add_class(self, name: str) -> None:
        """Append a class; ValueError for an invalid or already listed name."""
        if check_class_name(name) in self.classes:
            raise ValueError(f"class {name!r} is already listed")
        self.classes.append(name)
        self._classes_changed()

    def remove_class(self, name: str) -> None:
        """Undo of add_class: remove a class that no box of the current image uses."""
        if name not in self.classes:
            raise ValueError(f"unknown class {name!r}")
        if any(box.label == name for box in self.boxes.values()):
            raise ValueError(f"class {name!r} is used by boxes of this image")
        self.classes.remove(name)
        self._classes_changed()

    def class_in_use(self, name: str) -> bool:
        """Whether a box has class `name`: on the current image, or on an image left in this
        session (the only other places a class made in this session can be)."""
        seen = (box for path, items in self._seen_boxes.items() if path != self.current_path for _, box in items)
        return any(box.label == name for box in (*self.boxes.values(), *seen))

    def rename_class(self, old: str, new: str) -> None:
        """Rename class `old` to the new name `new` everywhere: the class list, the current boxes,
        and (written at once) the other annotation files of the folder; malformed ones are skipped."""
        if old not in self.classes:
            raise ValueError(f"unknown class {old!r}")
        if check_class_name(new) in self.classes:
            raise ValueError(f"class {new!r} is already listed")
        for entry in self.images:
            if entry.path != self.current_path and entry.status in ("annotated", "verified"):
                rename_in_file(entry.annotation_path, old, new)
        self._seen_boxes = {path: [(box_id, self._renamed(box, old, new)) for box_id, box in items]
                            for path, items in self._seen_boxes.items()}
        self.classes[self.classes.index(old)] = new
        self._classes_changed()
        if any(box.label == old for box in self.boxes.values()):
            self.boxes = {box_id: self._renamed(box, old, new) for box_id, box in self.boxes.items()}
            self._notify("boxes")

    @staticmethod
    def _renamed(box: Box, old: str, new: str) -> Box:
        return replace(box, label=new) if box.label == old else box

    def _classes_changed(self) -> None:
        self._classes_dirty = True
        self._notify("classes")

    # -- files ---------------------------------------------------------------------------------

    def save(self, seen: bool = False) -> Path | None:
        """Write the current image's annotation (when changed) and classes.txt (when it differs),
        each atomically; returns the annotation path written, or None.

        No file is created for an image that has none and holds no box and no verified flag,
        unless `seen` (the user saved it: labelImg's empty annotation, "seen, nothing here").
        Nothing else is written when nothing changed; a failed write leaves the document dirty.
        """
        entry = None if self.current_index is None else self.images[self.current_index]
        unwritten = seen and self.image_size is not None and not entry.annotation_path.exists()
        if not (self.dirty or unwritten):
            return None
        written = None
        state = self._annotation_state()
        if unwritten or (state != self._on_disk and (entry.annotation_path.exists() or self.boxes or self.verified)):
            data, written_file = annotation_bytes(self._file, entry.path, self.image_size, list(self.boxes.items()),
                                                  self._read_objects, self.verified)
            backup = bool(self.problems) and entry.annotation_path not in self._written
            written = self._write_annotation(entry, data, self.verified, backup)
            self.read_only_reason, self.problems, self._file = None, [], written_file
        self._write_classes()
        self._on_disk, self._classes_dirty = state, False
        self._notify("saved")
        return written

    def _write_annotation(self, entry: ImageEntry, data: bytes, verified: bool, backup: bool = False) -> Path:
        """Write an image's annotation file `data`, backing the old file up first when it is
        malformed or `backup` is set; update its status."""
        if (backup or entry.status == "error") and entry.annotation_path.is_file():
            backup_copy(entry.annotation_path)
        write_bytes_atomic(entry.annotation_path, data)
        self._written.add(entry.annotation_path)
        entry.status, entry.error = ("verified" if verified else "annotated"), None
        return entry.annotation_path

    def _write_classes(self) -> None:
        if self.folder is not None and self.classes != self._written_classes:
            write_bytes_atomic((self.annotation_dir or self.folder) / "classes.txt",
                               "".join(f"{name}\n" for name in self.classes).encode("utf-8"))
            self._written_classes = list(self.classes)
