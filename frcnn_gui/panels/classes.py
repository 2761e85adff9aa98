"""The class list: colour swatches, the label new boxes get, add and rename (as undo commands);
a click on a class says so (class_clicked), for relabelling the selected boxes."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (
    QHBoxLayout,
    QInputDialog,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from frcnn_gui.document.document import Document
from frcnn_gui.editing.commands import AddClassCommand, RenameClassCommand


def swatch(colour: QColor) -> QIcon:
    pixmap = QPixmap(14, 14)
    pixmap.fill(colour)
    return QIcon(pixmap)


class ClassesPanel(QWidget):
    """Choosing a row sets the label that drawn boxes get; a click (or Enter) on a row emits
    class_clicked with its name, even when the row was current already. `stack`: where the
    commands go (a QUndoStack, or anything with its push())."""

    current_label_changed = Signal(str)
    class_clicked = Signal(str)

    def __init__(self, document: Document, stack, colour_of, parent=None):
        super().__init__(parent)
        self.document, self.stack, self.colour_of = document, stack, colour_of
        self.list = QListWidget()
        add, rename = QPushButton("Add…"), QPushButton("Rename…")
        add.clicked.connect(self.ask_add)
        rename.clicked.connect(self.ask_rename)
        buttons = QHBoxLayout()
        buttons.addWidget(add)
        buttons.addWidget(rename)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.list)
        layout.addLayout(buttons)
        self.list.currentTextChanged.connect(lambda name: name and self.current_label_changed.emit(name))
        self.list.itemClicked.connect(lambda item: self.class_clicked.emit(item.text()))
        self.list.itemActivated.connect(lambda item: self.class_clicked.emit(item.text()))
        document.subscribe(lambda kind: kind in ("classes", "images") and self.refresh())
        self.refresh()

    def current_label(self) -> str | None:
        item = self.list.currentItem()
        return item.text() if item else (self.document.classes[0] if self.document.classes else None)

    def set_current(self, name: str) -> None:
        """Make class `name` the current row (the label drawn boxes get), if it is listed."""
        items = self.list.findItems(name, Qt.MatchExactly)
        if items:
            self.list.setCurrentItem(items[0])

    def refresh(self) -> None:
        current = self.current_label()
        self.list.blockSignals(True)
        self.list.clear()
        for name in self.document.classes:
            self.list.addItem(QListWidgetItem(swatch(self.colour_of(name)), name))
        names = self.document.classes
        if names:
            self.list.setCurrentRow(names.index(current) if current in names else 0)
        self.list.blockSignals(False)
        if names:
            self.current_label_changed.emit(self.current_label())

    def _push(self, make) -> None:
        try:
            self.stack.push(make())
        except ValueError as error:  # a name the document refuses: say why, change nothing
            QMessageBox.warning(self, "Classes", str(error))

    def ask_add(self) -> None:
        name, ok = QInputDialog.getText(self, "Add class", "Class name:")
        if ok and name.strip():
            self._push(lambda: AddClassCommand(self.document, name.strip()))

    def ask_rename(self) -> None:
        old = self.current_label()
        if old is None:
            return
        new, ok = QInputDialog.getText(self, "Rename class", f"New name for {old!r}:", text=old)
        if ok and new.strip() and new.strip() != old:
            self._push(lambda: RenameClassCommand(self.document, old, new.strip()))
