"""The Errors dock: the pass's progress and Cancel, the TIDE summary with the legend, the images
left out, the table of images (filters by class and error type; a click on a header sorts by
that column, again reverses), the chosen image's errors, and the chosen error's chain in words.

A view only: the controller gives it what to show and hears what the user picks. Nothing in it
takes the keyboard focus, so that A / D, W and Delete keep going to the canvas."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from frcnn_core.analysis.tide import MAIN_ERRORS
from frcnn_core.vocabulary import ERROR_COLOURS
from frcnn_gui.errors.rows import COLUMNS, ERRORS, IMAGE, Line
from frcnn_gui.errors.texts import left_out_text, summary_html

ALL_CLASSES, ALL_TYPES = "all classes", "all types"
SORT_MARKS = {True: " ▾", False: " ▴"}  # after the sorted column's name: descending, ascending
TABLE_MIN_HEIGHT, ERRORS_MIN_HEIGHT = 110, 80  # pixels: a few lines each
IDLE_TEXT = "The current model on every annotated image of the folder: Run."


class ErrorsPanel(QWidget):
    """`image_chosen(path)`: a table line was clicked; `error_chosen(index)`: a line of the image's
    error list (its index among the errors last listed); `view_changed`: a filter or the sort."""

    run_requested = Signal()
    cancel_requested = Signal()
    view_changed = Signal()
    image_chosen = Signal(str)
    error_chosen = Signal(int)
    visibility_changed = Signal(bool)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.sort_column, self.descending = ERRORS, True
        self.status = QLabel(IDLE_TEXT, wordWrap=True)
        self.progress = QProgressBar(visible=False)
        self.cancel_button = QPushButton("Cancel", visible=False, focusPolicy=Qt.NoFocus)
        self.run_button = QPushButton("Run", focusPolicy=Qt.NoFocus)
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.run_button.clicked.connect(self.run_requested)
        self.summary = QLabel(textFormat=Qt.RichText, wordWrap=True)
        self.left_out = QLabel(wordWrap=True)
        self.class_box, self.type_box = QComboBox(focusPolicy=Qt.NoFocus), QComboBox(focusPolicy=Qt.NoFocus)
        self.type_box.addItems([ALL_TYPES, *MAIN_ERRORS])
        self.class_box.addItem(ALL_CLASSES)
        for box in (self.class_box, self.type_box):
            box.activated.connect(lambda _index: self.view_changed.emit())
        self.table = self._table()
        self._mark_sort()
        self.image_title = QLabel()
        self.errors = QListWidget(focusPolicy=Qt.NoFocus)
        self.errors.currentRowChanged.connect(lambda row: row >= 0 and self.error_chosen.emit(row))
        self.chain = QLabel(wordWrap=True, textInteractionFlags=Qt.TextSelectableByMouse)
        self._lay_out()

    def _table(self) -> QTableWidget:
        table = QTableWidget(0, len(COLUMNS), focusPolicy=Qt.NoFocus)
        table.verticalHeader().hide()
        table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        table.setSelectionBehavior(QAbstractItemView.SelectRows)
        table.setSelectionMode(QAbstractItemView.SingleSelection)
        header = table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.Stretch)  # the names take what the counts leave
        header.setMinimumSectionSize(24)
        header.sectionClicked.connect(self._sort_by)
        for column, name in enumerate(COLUMNS):
            item = QTableWidgetItem(name)
            item.setToolTip("click: sort by name" if name == IMAGE else f"click: the most {name} first; again: fewest")
            table.setHorizontalHeaderItem(column, item)
        table.itemSelectionChanged.connect(self._line_chosen)
        return table

    def _lay_out(self) -> None:
        layout = QVBoxLayout(self)
        running = QHBoxLayout()
        running.addWidget(self.progress, 1)
        running.addWidget(self.cancel_button)
        running.addWidget(self.run_button)
        filters = QHBoxLayout()
        filters.addWidget(QLabel("show"))
        filters.addWidget(self.class_box, 1)
        filters.addWidget(self.type_box, 1)
        layout.addWidget(self.status)
        layout.addLayout(running)
        layout.addWidget(self.summary)
        layout.addWidget(self.left_out)
        layout.addLayout(filters)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.image_title)
        layout.addWidget(self.errors, 1)
        layout.addWidget(self.chain)
        for lines, height in ((self.table, TABLE_MIN_HEIGHT), (self.errors, ERRORS_MIN_HEIGHT)):
            # they share what the texts leave (their size hints would push the chain's text out of view)
            lines.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Ignored)
            lines.setMinimumHeight(height)

    # --- what the controller shows -----------------------------------------------------------
    def set_running(self, done: int, total: int) -> None:
        """A pass is running: `done` of `total` images analysed; the progress bar and Cancel."""
        self.status.setText(f"analysing: {done} of {total} images…")
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        self._show_running(True)

    def set_idle(self, message: str, run_text: str = "Run again") -> None:
        """No pass is running: `message`, and the Run button named `run_text`."""
        self.status.setText(message)
        self.run_button.setText(run_text)
        self._show_running(False)

    def _show_running(self, running: bool) -> None:
        self.progress.setVisible(running)
        self.cancel_button.setVisible(running)
        self.run_button.setVisible(not running)

    def show_report(self, report, folder: Path | None) -> None:
        """The report's summary, its images left out, and its classes in the class filter."""
        self.summary.setText(summary_html(report))
        self.left_out.setText(left_out_text(report.left_out, folder))
        chosen = self.class_box.currentText()
        self.class_box.clear()
        self.class_box.addItems([ALL_CLASSES, *report.class_names[1:]])
        self.class_box.setCurrentText(chosen)

    def show_lines(self, lines: list[Line], chosen: str | None) -> None:
        """Fill the table with `lines`; the line of image `chosen` (a path) selected, if shown."""
        self.table.blockSignals(True)
        self.table.clearSelection()
        self.table.setRowCount(len(lines))
        for row, line in enumerate(lines):
            for column, name in enumerate(COLUMNS):
                count = line.counts.get(name)
                item = QTableWidgetItem(line.name if name == IMAGE else str(count))
                item.setData(Qt.UserRole, line.row.image_path)
                item.setTextAlignment(Qt.AlignVCenter | (Qt.AlignLeft if name == IMAGE else Qt.AlignRight))
                if name in ERROR_COLOURS and count:
                    item.setForeground(QBrush(QColor(ERROR_COLOURS[name])))
                    item.setFont(_bold())
                self.table.setItem(row, column, item)
        self.table.blockSignals(False)
        self.select_image(chosen)

    def select_image(self, path: str | None) -> None:
        """Select image `path`'s line (none: no line) without emitting image_chosen."""
        self.table.blockSignals(True)
        self.table.clearSelection()
        for row in range(self.table.rowCount()):
            if self.table.item(row, 0).data(Qt.UserRole) == path:
                self.table.selectRow(row)
                self.table.scrollToItem(self.table.item(row, 0))
        self.table.blockSignals(False)

    def show_errors(self, title: str, lines: list[str]) -> None:
        """The chosen image's errors, none of them chosen; the chain text cleared."""
        self.image_title.setText(title)
        self.errors.blockSignals(True)
        self.errors.clear()
        self.errors.addItems(lines)
        self.errors.blockSignals(False)
        self.chain.setText("")

    def choose_line(self, row: int) -> None:
        """Choose table line `row` as a click does (image_chosen follows, even when it was chosen)."""
        path = self.table.item(row, 0).data(Qt.UserRole)
        self.select_image(path)
        self.image_chosen.emit(path)

    def choose_error(self, row: int) -> None:
        """Click line `row` of the error list (error_chosen follows)."""
        self.errors.setCurrentRow(row)

    def clear(self) -> None:
        """Another folder: nothing analysed."""
        self.set_idle(IDLE_TEXT, "Run")
        for label in (self.summary, self.left_out, self.image_title, self.chain):
            label.setText("")
        self.table.setRowCount(0)
        self.errors.clear()

    # --- what the user picks -----------------------------------------------------------------
    def filters(self) -> tuple[str | None, str | None]:
        """(class name or None for all, error type or None for all)."""
        name, kind = self.class_box.currentText(), self.type_box.currentText()
        return (None if name in (ALL_CLASSES, "") else name), (None if kind == ALL_TYPES else kind)

    def _sort_by(self, column: int) -> None:
        name = COLUMNS[column]
        self.descending = not self.descending if name == self.sort_column else name != IMAGE
        self.sort_column = name
        self._mark_sort()
        self.view_changed.emit()

    def _mark_sort(self) -> None:
        for column, name in enumerate(COLUMNS):
            mark = SORT_MARKS[self.descending] if name == self.sort_column else ""
            self.table.horizontalHeaderItem(column).setText(name + mark)

    def _line_chosen(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if rows:
            self.image_chosen.emit(self.table.item(rows[0].row(), 0).data(Qt.UserRole))

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.visibility_changed.emit(True)

    def hideEvent(self, event) -> None:
        super().hideEvent(event)
        self.visibility_changed.emit(False)


def _bold() -> QFont:
    font = QFont()
    font.setBold(True)
    return font
