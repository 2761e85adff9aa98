"""The folder's images, with their annotation status (none / annotated / verified / error) and,
once the Errors view has analysed them, their error counts."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QListWidget, QListWidgetItem

from frcnn_gui.document.document import Document

STATUS_MARK = {"none": "○", "annotated": "●", "verified": "✔", "error": "✖"}
STATUS_COLOUR = {"none": None, "annotated": "#1f6feb", "verified": "#1a7f37", "error": "#cf222e"}  # None: text colour


class ImageListPanel(QListWidget):
    """One row per image; choosing a row asks the window to open that image."""

    image_chosen = Signal(int)

    def __init__(self, document: Document, parent=None):
        super().__init__(parent)
        self.document = document
        document.subscribe(self._changed)
        self.currentRowChanged.connect(self._row_changed)
        self._refreshing = False
        self._error_counts: dict[Path, int] = {}

    def set_error_counts(self, counts: dict[Path, int]) -> None:
        """Show each listed image's error count (false positives + false negatives) after its name."""
        self._error_counts = dict(counts)
        self.refresh()

    def _changed(self, kind: str) -> None:
        if kind in ("images", "image", "saved", "verified", "error"):
            self.refresh()

    def refresh(self) -> None:
        self._refreshing = True
        try:
            if self.count() != len(self.document.images):
                self.clear()
                for _ in self.document.images:
                    self.addItem(QListWidgetItem())
            for row, entry in enumerate(self.document.images):
                item = self.item(row)
                count = self._error_counts.get(entry.path)
                errors = "" if count is None else f"  ({count} error{'' if count == 1 else 's'})"
                item.setText(f"{STATUS_MARK[entry.status]}  {entry.path.name}{errors}")
                colour = STATUS_COLOUR[entry.status]
                item.setForeground(QBrush(QColor(colour)) if colour else self.palette().text())
                item.setToolTip(entry.error or f"{entry.path}\n{entry.status}")
            if self.document.current_index is not None:
                self.setCurrentRow(self.document.current_index)
        finally:
            self._refreshing = False

    def _row_changed(self, row: int) -> None:
        if not self._refreshing and row >= 0 and row != self.document.current_index:
            self.image_chosen.emit(row)

    def keyPressEvent(self, event) -> None:  # A / D belong to the window (previous / next image)
        if event.key() in (Qt.Key_A, Qt.Key_D):
            event.ignore()
            return
        super().keyPressEvent(event)
