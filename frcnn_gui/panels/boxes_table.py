"""The current image's GT boxes as a table, selection shared with the canvas; editing a class
cell relabels the box with a choice among the listed classes only (a new class is never made from a
table cell), ticking a difficult cell sets VOC's difficult flag (each an undo command)."""
from __future__ import annotations

from PySide6.QtCore import QItemSelection, QItemSelectionModel, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHeaderView,
    QMessageBox,
    QStyledItemDelegate,
    QTableWidget,
    QTableWidgetItem,
)

from frcnn_gui.document.document import Document
from frcnn_gui.editing.commands import RelabelCommand, SetDifficultCommand

COLUMNS = ("class", "x1", "y1", "x2", "y2", "difficult")
DIFFICULT_COLUMN = COLUMNS.index("difficult")


class ClassDelegate(QStyledItemDelegate):
    """Edits a class cell with a list of the document's classes; a choice applies at once."""

    def __init__(self, document: Document, parent=None):
        super().__init__(parent)
        self.document = document

    def createEditor(self, parent, option, index) -> QComboBox:  # noqa: N802 - Qt's name
        editor = QComboBox(parent)
        editor.addItems(self.document.classes)
        editor.activated.connect(lambda _: self._apply(editor))
        return editor

    def _apply(self, editor: QComboBox) -> None:
        self.commitData.emit(editor)
        self.closeEditor.emit(editor)

    def setEditorData(self, editor: QComboBox, index) -> None:  # noqa: N802
        editor.setCurrentText(index.data())

    def setModelData(self, editor: QComboBox, model, index) -> None:  # noqa: N802
        model.setData(index, editor.currentText())


class BoxesTable(QTableWidget):
    """`stack`: where relabels go (a QUndoStack, or anything with its push())."""

    selection_changed = Signal(list)  # box ids

    def __init__(self, document: Document, stack, parent=None):
        super().__init__(0, len(COLUMNS), parent)
        self.document, self.stack = document, stack
        self.setHorizontalHeaderLabels(COLUMNS)
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.Stretch)  # the class column takes the spare width
        self.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.setItemDelegateForColumn(0, ClassDelegate(document, self))
        self.verticalHeader().setVisible(False)
        self.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)  # compact rows
        self._ids: list[int] = []
        self._refreshing = False
        self.itemSelectionChanged.connect(self._selection_changed)
        self.itemChanged.connect(self._item_changed)
        document.subscribe(lambda kind: kind in ("boxes", "image", "images") and self.refresh())

    def refresh(self) -> None:
        self._refreshing = True
        selected = set(self.selected_ids())
        # Emptied first: refilling rows in place makes the ResizeToContents header re-measure its
        # columns over every row at each setItem (5,000 boxes: minutes per edit; this way 0.1 s).
        self.setRowCount(0)
        self.setRowCount(len(self.document.boxes))
        self._ids = list(self.document.boxes)
        for row, box in enumerate(self.document.boxes.values()):
            cells = [box.label] + [f"{v:g}" for v in box.coords]
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if column:
                    item.setFlags(item.flags() & ~Qt.ItemIsEditable)
                    item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                self.setItem(row, column, item)
            self.setItem(row, DIFFICULT_COLUMN, self._difficult_item(box.difficult))
        self.set_selection([i for i in self._ids if i in selected])
        self._refreshing = False

    @staticmethod
    def _difficult_item(flag: bool) -> QTableWidgetItem:
        """A check box alone in its cell (no text: the header names it)."""
        item = QTableWidgetItem()
        item.setFlags((item.flags() | Qt.ItemIsUserCheckable) & ~Qt.ItemIsEditable)
        item.setCheckState(Qt.Checked if flag else Qt.Unchecked)
        item.setToolTip("difficult (VOC): ignored by evaluation, neither found nor missed")
        return item

    def selected_ids(self) -> list[int]:
        rows = sorted({index.row() for index in self.selectedIndexes()})
        return [self._ids[r] for r in rows if r < len(self._ids)]

    def set_selection(self, ids: list[int]) -> None:
        selection = QItemSelection()
        for box_id in ids:
            if box_id in self._ids:
                row = self._ids.index(box_id)
                selection.select(self.model().index(row, 0), self.model().index(row, len(COLUMNS) - 1))
        blocked = self.blockSignals(True)
        # one select call: selectRow() per row would clear the rows selected before it
        self.selectionModel().select(selection, QItemSelectionModel.ClearAndSelect)
        if ids and ids[-1] in self._ids:
            self.scrollToItem(self.item(self._ids.index(ids[-1]), 0))
        self.blockSignals(blocked)

    def _selection_changed(self) -> None:
        if not self._refreshing:
            self.selection_changed.emit(self.selected_ids())

    def _item_changed(self, item: QTableWidgetItem) -> None:
        if self._refreshing:
            return
        if item.column() == DIFFICULT_COLUMN:
            self._difficult_changed(item)  # the push refills the table: `item` is gone after it
            return
        if item.column() != 0:
            return
        box_id, label = self._ids[item.row()], item.text().strip()
        if label == self.document.boxes[box_id].label:
            return
        try:
            self.stack.push(RelabelCommand(self.document, [box_id], label))
        except ValueError as error:
            QMessageBox.warning(self, "Relabel", str(error))
            self.refresh()

    def _difficult_changed(self, item: QTableWidgetItem) -> None:
        box_id, flag = self._ids[item.row()], item.checkState() == Qt.Checked
        if flag != self.document.boxes[box_id].difficult:
            self.stack.push(SetDifficultCommand(self.document, [box_id], flag))
