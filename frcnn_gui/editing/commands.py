"""One QUndoCommand per document edit.

A command that edits an image remembers that image's path. Each image has its own undo stack
(history.py), so the image is current whenever its commands are undone or redone; undo and redo
still make it current first when it is not (a command pushed on a shared stack, as in tests), so
an undo never edits the image the user happens to be looking at. Class commands act on the whole
folder and need no image.

Every command checks its input in __init__ and raises ValueError there: QUndoStack.push calls
redo() itself, and when redo() raises, the command stays on the stack as if it had happened.
A command that needs a class the list lacks (a detection's label, a typed-in label) adds it and
removes it again on undo.
Saving is the caller's job (after each stack change); commands only edit the document.
"""
from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import replace

from PySide6.QtGui import QUndoCommand

from frcnn_gui.document.document import Box, Detection, Document, check_class_name
from frcnn_gui.document.suggestions import Rejections, plan_accept

EDIT_BOX_MERGE_ID = 1  # QUndoCommand.id() of mergeable box edits


def _require_image(document: Document) -> None:
    if document.image_size is None:
        raise ValueError(document.read_only_reason or "no image is open")


def _existing_ids(document: Document, box_ids: Iterable[int]) -> list[int]:
    ids = list(dict.fromkeys(box_ids))
    missing = [box_id for box_id in ids if box_id not in document.boxes]
    if not ids or missing:
        raise ValueError(f"no such boxes: {missing}" if missing else "no box selected")
    return ids


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}es" if noun.endswith("x") else f"{number} {noun}s"


def _remove_unused_class(document: Document, name: str) -> None:
    """Undo of adding class `name`, unless a box uses it: each image has its own undo history,
    so another image may have taken the class up since it was added."""
    if not document.class_in_use(name):
        document.remove_class(name)


class ImageCommand(QUndoCommand):
    """Base of the commands that edit one image: redo/undo show it, then _apply/_revert.

    Subclasses check their input into locals, call this __init__ (the Qt base must exist before
    the object gets attributes), then keep what they need.
    """

    def __init__(self, document: Document, text: str):
        _require_image(document)
        super().__init__(text)
        self.document = document
        self.image_path = document.current_path
        self.added_classes: list[str] | None = None  # the classes the first _apply brought in

    def redo(self) -> None:
        with self.document.batch():
            self._show_image()
            self._apply()

    def undo(self) -> None:
        with self.document.batch():
            self._show_image()
            self._revert()

    def _show_image(self) -> None:
        if self.document.current_path != self.image_path:
            self.document.open_image(self.document.image_index(self.image_path))

    def _add_missing_classes(self, labels: Iterable[str]) -> None:
        if self.added_classes is None:
            self.added_classes = [name for name in dict.fromkeys(labels) if name not in self.document.classes]
        for name in self.added_classes:
            if name not in self.document.classes:  # undo kept it when another image used it
                self.document.add_class(name)

    def _remove_added_classes(self) -> None:
        for name in reversed(self.added_classes or []):
            _remove_unused_class(self.document, name)

    def _apply(self) -> None:
        raise NotImplementedError

    def _revert(self) -> None:
        raise NotImplementedError


class AddBoxCommand(ImageCommand):
    """Add one box; its class is added too when the list lacks it."""

    def __init__(self, document: Document, box: Box):
        checked = document.check_box(box)
        super().__init__(document, f"Add box '{checked.label}'")
        self.box = checked
        self.box_id: int | None = None

    def _apply(self) -> None:
        self._add_missing_classes([self.box.label])
        self.box_id = self.document.add_box(self.box, self.box_id)

    def _revert(self) -> None:
        self.document.remove_box(self.box_id)
        self._remove_added_classes()


class DeleteBoxesCommand(ImageCommand):
    """Delete boxes; undo puts each back with its id at its place in the order."""

    def __init__(self, document: Document, box_ids: Iterable[int]):
        ids = _existing_ids(document, box_ids)
        label = document.boxes[ids[0]].label
        super().__init__(document, f"Delete box '{label}'" if len(ids) == 1 else f"Delete {_count(len(ids), 'box')}")
        self.box_ids = ids
        self.removed: list[tuple[int, int, Box]] = []  # (place in the order, id, box), by place

    def _apply(self) -> None:
        order = list(self.document.boxes)
        self.removed = sorted((order.index(box_id), box_id, self.document.boxes[box_id]) for box_id in self.box_ids)
        for _, box_id, _ in self.removed:
            self.document.remove_box(box_id)

    def _revert(self) -> None:
        for place, box_id, box in self.removed:
            self.document.add_box(box, box_id, place)


def _edit_text(old: Box, new: Box) -> str:
    if old.coords == new.coords:
        return "Edit box"
    same_size = (old.x2 - old.x1, old.y2 - old.y1) == (new.x2 - new.x1, new.y2 - new.y1)
    return "Move box" if same_size else "Resize box"


class EditBoxCommand(ImageCommand):
    """Replace one box (move, resize); the new box is made whole pixels (Document.check_box).

    merge=True (keyboard nudges and resizes): consecutive edits of the same box on the same image
    become one undo step, dropped altogether when they end where they began. A mouse drag passes
    merge=False so that each drag stays its own step.
    """

    def __init__(self, document: Document, box_id: int, new_box: Box, merge: bool = True):
        if box_id not in document.boxes:
            raise ValueError(f"no such box: {box_id}")
        old, new = document.boxes[box_id], document.check_box(new_box)
        if new.label not in document.classes:
            raise ValueError(f"unknown class {new.label!r}")
        super().__init__(document, _edit_text(old, new))
        self.box_id, self.old, self.new, self.merge = box_id, old, new, merge

    def _apply(self) -> None:
        self.document.replace_box(self.box_id, self.new)

    def _revert(self) -> None:
        self.document.replace_box(self.box_id, self.old)

    def id(self) -> int:
        return EDIT_BOX_MERGE_ID if self.merge else -1

    def mergeWith(self, other: QUndoCommand) -> bool:
        if not (isinstance(other, EditBoxCommand) and other.merge and other.box_id == self.box_id
                and other.image_path == self.image_path):
            return False
        self.new = other.new
        self.setText(_edit_text(self.old, self.new))
        self.setObsolete(self.new == self.old)
        return True


class ChangeBoxesCommand(ImageCommand):
    """Replace each of some boxes by `changed(box)`, in one step; subclasses say how."""

    def __init__(self, document: Document, box_ids: list[int], text: str):
        super().__init__(document, text)
        self.box_ids = box_ids
        self.old: dict[int, Box] = {}

    def changed(self, box: Box) -> Box:
        raise NotImplementedError

    def _apply(self) -> None:
        self.old = {box_id: self.document.boxes[box_id] for box_id in self.box_ids}
        for box_id, box in self.old.items():
            self.document.replace_box(box_id, self.changed(box))

    def _revert(self) -> None:
        for box_id, box in self.old.items():
            self.document.replace_box(box_id, box)


class RelabelCommand(ChangeBoxesCommand):
    """Give boxes another class; a new class name is added to the list."""

    def __init__(self, document: Document, box_ids: Iterable[int], label: str):
        ids, label = _existing_ids(document, box_ids), check_class_name(label)
        super().__init__(document, ids, f"Relabel {'box' if len(ids) == 1 else _count(len(ids), 'box')} '{label}'")
        self.label = label

    def changed(self, box: Box) -> Box:
        return replace(box, label=self.label)

    def _apply(self) -> None:
        self._add_missing_classes([self.label])
        super()._apply()

    def _revert(self) -> None:
        super()._revert()
        self._remove_added_classes()


class SetDifficultCommand(ChangeBoxesCommand):
    """Set or clear VOC's difficult flag of boxes."""

    def __init__(self, document: Document, box_ids: Iterable[int], flag: bool):
        ids = _existing_ids(document, box_ids)
        what = "box" if len(ids) == 1 else _count(len(ids), "box")
        super().__init__(document, ids, f"Mark {what} difficult" if flag else f"Mark {what} not difficult")
        self.flag = bool(flag)

    def changed(self, box: Box) -> Box:
        return replace(box, difficult=self.flag)


class SetVerifiedCommand(ImageCommand):
    """Mark the image verified (labelImg's Space) or not."""

    def __init__(self, document: Document, flag: bool):
        super().__init__(document, "Mark verified" if flag else "Mark not verified")
        self.flag, self.old = bool(flag), document.verified

    def _apply(self) -> None:
        self.document.set_verified(self.flag)

    def _revert(self) -> None:
        self.document.set_verified(self.old)


class AddBoxesCommand(ImageCommand):
    """Add boxes (each as document.check_box returned it) in one step; missing classes are added."""

    def __init__(self, document: Document, boxes: list[Box], text: str):
        super().__init__(document, text)
        self.boxes = boxes
        self.box_ids: list[int | None] = [None] * len(boxes)

    def _apply(self) -> None:
        self._add_missing_classes(box.label for box in self.boxes)
        self.box_ids = [self.document.add_box(box, box_id)
                        for box, box_id in zip(self.boxes, self.box_ids, strict=True)]

    def _revert(self) -> None:
        for box_id in reversed(self.box_ids):
            self.document.remove_box(box_id)
        self._remove_added_classes()


class PasteBoxesCommand(AddBoxesCommand):
    """Add copies of boxes (from this or another image), clipped to this image; those with no
    area inside it are left out. ValueError when none is left."""

    def __init__(self, document: Document, boxes: Iterable[Box]):
        _require_image(document)
        fitting = []
        for box in boxes:
            try:
                fitting.append(document.check_box(box))
            except ValueError:
                continue  # outside this (smaller) image: nothing of it to paste
        if not fitting:
            raise ValueError("nothing to paste: no copied box lies inside this image")
        super().__init__(document, fitting, f"Paste {'box' if len(fitting) == 1 else _count(len(fitting), 'box')}")


class AcceptDetectionsCommand(AddBoxesCommand):
    """Add detections as ground-truth boxes, all in one step; missing classes are added.

    The boxes are whole pixels, and those plan_accept skips (one on a GT box of its class, a
    duplicate, a suggestion in `rejected`, one outside the image) are left out: `summary` says
    how many and why. ValueError when none is left."""

    def __init__(self, document: Document, detections: Iterable[Detection], rejected: Collection[Box] = ()):
        detections = list(detections)
        if not detections:
            raise ValueError("no detections to accept")
        _require_image(document)
        plan = plan_accept(detections, document.boxes.values(), document.image_size, rejected)
        if not plan.suggestions:
            raise ValueError(plan.summary())
        boxes = plan.boxes
        super().__init__(document, boxes, f"Accept detection '{boxes[0].label}'" if len(boxes) == 1
                         else f"Accept {_count(len(boxes), 'detection')}")
        self.summary = plan.summary()


class ReviewDecisionCommand(ImageCommand):
    """One decision on a suggestion in review, one undo step: the suggestion (its whole-pixel
    box, of the class the model gave) is set aside on this image in `rejections`; when `accepted`
    (its detection, perhaps of another class) is given, that is also added as
    AcceptDetectionsCommand adds it (ValueError when that would stack it on a GT box)."""

    def __init__(self, document: Document, rejections: Rejections, suggestion: Box,
                 accepted: Detection | None = None):
        adding = None if accepted is None else AcceptDetectionsCommand(document, [accepted],
                                                                       rejections.of(document.current_path))
        if accepted is None:
            text = f"Reject suggestion '{suggestion.label}'"
        elif accepted.label == suggestion.label:
            text = f"Accept suggestion '{suggestion.label}'"
        else:
            text = f"Accept suggestion '{suggestion.label}' as '{accepted.label}'"
        super().__init__(document, text)
        self.rejections, self.suggestion, self.adding = rejections, suggestion, adding

    def _apply(self) -> None:
        if self.adding is not None:
            self.adding._apply()
        self.rejections.add(self.image_path, self.suggestion)

    def _revert(self) -> None:
        self.rejections.discard(self.image_path, self.suggestion)
        if self.adding is not None:
            self.adding._revert()


class AddClassCommand(QUndoCommand):
    """Append a class to the list."""

    def __init__(self, document: Document, name: str):
        if check_class_name(name) in document.classes:
            raise ValueError(f"class {name!r} is already listed")
        super().__init__(f"Add class '{name}'")
        self.document, self.name = document, name

    def redo(self) -> None:
        if self.name not in self.document.classes:  # kept by undo() when a box uses it
            self.document.add_class(self.name)

    def undo(self) -> None:
        _remove_unused_class(self.document, self.name)


class RenameClassCommand(QUndoCommand):
    """Rename a class in the list, the current boxes and every annotation file of the folder."""

    def __init__(self, document: Document, old: str, new: str):
        if old not in document.classes:
            raise ValueError(f"unknown class {old!r}")
        if check_class_name(new) in document.classes:
            raise ValueError(f"class {new!r} is already listed")
        super().__init__(f"Rename class '{old}' to '{new}'")
        self.document, self.old, self.new = document, old, new

    def redo(self) -> None:
        with self.document.batch():
            self.document.rename_class(self.old, self.new)

    def undo(self) -> None:
        with self.document.batch():
            self.document.rename_class(self.new, self.old)
