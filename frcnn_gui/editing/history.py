"""Undo history per image: one QUndoStack per image path in a QUndoGroup whose active stack is
the current image's, so that undo never leaves the image the user is looking at.

Switching images keeps every image's history (the group's undo / redo actions follow the
active stack). Class-list commands (add, rename) act on the folder; they go on the stack of the
image that is current when they are made. With no image open, commands go on a stack of their
own (key None). An image left with an empty history keeps no stack, so that walking through
10,000 images holds no 10,000 stacks. `clear()` forgets every history: a new folder, or files
changed underneath.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject
from PySide6.QtGui import QUndoCommand, QUndoGroup, QUndoStack

from frcnn_gui.document.document import Document


class ImageHistories(QUndoGroup):
    """The document's per-image undo stacks; push / beginMacro / endMacro act on the current
    image's, so that views may take it where they would take one QUndoStack."""

    def __init__(self, document: Document, parent: QObject | None = None):
        super().__init__(parent)
        self.document = document
        self._stacks: dict[Path | None, QUndoStack] = {}
        self._shown: Path | None = None  # the image whose stack is active
        document.subscribe(lambda kind: kind == "image" and self._follow_image())
        self._follow_image()

    def _follow_image(self) -> None:
        path = self.document.current_path
        left = self._stacks.get(self._shown)
        if path != self._shown and left is not None and left.count() == 0:
            self._drop(self._shown)  # an image seen but not edited keeps no stack: a long walk stays flat
        if path not in self._stacks:
            self._stacks[path] = QUndoStack(self)
            self.addStack(self._stacks[path])
        self.setActiveStack(self._stacks[path])
        self._shown = path

    @property
    def current(self) -> QUndoStack:
        """The stack of the current image (or of no image)."""
        return self.activeStack()

    def stack_of(self, path: Path | None) -> QUndoStack | None:
        """The history of the image at `path`; None when it has none (never edited, or left
        with nothing to undo or redo)."""
        return self._stacks.get(path)

    def push(self, command: QUndoCommand) -> None:
        self.current.push(command)

    def beginMacro(self, text: str) -> None:  # noqa: N802 - QUndoStack's name, for callers taking either
        self.current.beginMacro(text)

    def endMacro(self) -> None:  # noqa: N802
        self.current.endMacro()

    def clear(self) -> None:
        """Forget every image's history; the current image starts a new one."""
        for path in list(self._stacks):
            self._drop(path)
        self._follow_image()

    def _drop(self, path: Path | None) -> None:
        stack = self._stacks.pop(path)
        self.removeStack(stack)
        stack.deleteLater()
