"""The class prompt of labelImg: a line edit that completes over the known classes above their
list; Enter takes the class, Escape cancels.

A new class is made only on purpose: a name that is not a class turns the prompt's warning on
("'racon' is not a class yet") and disables "Use class", so that Enter does nothing; the
separate "Add class 'racon'" button (Alt+A) creates it. A name that differs from a class only by
case is that class (typing "Raccoon" gives "raccoon").
"""
from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QStringListModel, Qt
from PySide6.QtWidgets import (
    QCompleter,
    QDialog,
    QDialogButtonBox,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from frcnn_gui.document.boxes import check_class_name

WARNING_STYLE = "color: #c0392b;"


class ClassPrompt(QDialog):
    """ask(classes, initial, done): show the prompt (window-modal, without blocking the caller);
    done(name) follows when the user takes a class, done(None) when they cancel. `is_new` tells
    whether the name taken was added on purpose rather than chosen among `classes`."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Class")
        self.classes: list[str] = []
        self.is_new = False
        self._done: Callable[[str | None], None] | None = None
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("class name")
        self._names = QStringListModel(self)
        self.completer = QCompleter(self._names, self)
        self.completer.setCaseSensitivity(Qt.CaseInsensitive)
        self.completer.setCompletionMode(QCompleter.InlineCompletion)
        self.name_edit.setCompleter(self.completer)
        self.warning = QLabel()
        self.warning.setStyleSheet(WARNING_STYLE)
        self.warning.setWordWrap(True)
        self.list = QListWidget()
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        self.use_button = buttons.button(QDialogButtonBox.Ok)
        self.use_button.setText("Use class")
        self.use_button.setDefault(True)  # Enter; disabled while the name is not a class
        self.add_button = QPushButton("&Add class")
        self.add_button.setAutoDefault(False)  # Enter never adds a class: only a click or Alt+A
        buttons.addButton(self.add_button, QDialogButtonBox.ActionRole)
        layout = QVBoxLayout(self)
        for widget in (self.name_edit, self.warning, self.list, buttons):
            layout.addWidget(widget)
        buttons.accepted.connect(self._use)
        # Enter also takes an inline completion ("pla" -> "platelets") at once, not in two presses
        self.name_edit.returnPressed.connect(self._use)
        buttons.rejected.connect(self.reject)
        self.add_button.clicked.connect(self._add)
        self.name_edit.textChanged.connect(self._name_changed)
        self.name_edit.textEdited.connect(self._filter)  # typed text, not the preselected name
        self.list.itemClicked.connect(lambda item: self.name_edit.setText(item.text()))
        self.list.itemDoubleClicked.connect(self._use_item)
        self.finished.connect(self._finished)

    def ask(self, classes: list[str], initial: str, done: Callable[[str | None], None]) -> None:
        """Prompt for a class among `classes`, `initial` preselected; see the class doc."""
        self.classes, self.is_new, self._done = list(classes), False, done
        self._names.setStringList(self.classes)
        self.list.clear()
        self.list.addItems(self.classes)
        self.list.setCurrentRow(-1)
        self.name_edit.setText(initial)
        self._name_changed(initial)  # the classes may have changed while the text stayed the same
        self.name_edit.selectAll()
        self.name_edit.setFocus()
        self.open()

    def known_name(self, text: str) -> str | None:
        """The class `text` names (exactly, else without regard to case); None when none."""
        text = text.strip()
        if text in self.classes:
            return text
        folded = [name for name in self.classes if name.casefold() == text.casefold()]
        return folded[0] if len(folded) == 1 else None

    def _name_changed(self, text: str) -> None:
        known, name = self.known_name(text), text.strip()
        problem = None
        if known is None and name:
            try:
                check_class_name(name)
            except ValueError as error:
                problem = str(error)
        self.use_button.setEnabled(known is not None)
        self.add_button.setVisible(known is None and bool(name) and problem is None)
        self.add_button.setText(f"&Add class '{name}'")
        self.warning.setText(problem or ("" if known is not None or not name else
                                         f"'{name}' is not a class yet: choose one, or add it with the button"))
        self.warning.setVisible(bool(self.warning.text()))
        matches = self.list.findItems(known, Qt.MatchExactly) if known is not None else []
        self.list.setCurrentItem(matches[0] if matches else None)

    def _filter(self, typed: str) -> None:
        """List the classes that contain the typed text; all of them when none does."""
        items = [self.list.item(row) for row in range(self.list.count())]
        matching = [item for item in items if typed.strip().casefold() in item.text().casefold()]
        for item in items:
            item.setHidden(bool(matching) and item not in matching)

    def _use(self) -> None:
        known = self.known_name(self.name_edit.text())
        if known is not None and self.isVisible():  # Enter reaches here twice: line edit, default button
            self.name_edit.setText(known)
            self.accept()

    def _use_item(self, item) -> None:
        self.name_edit.setText(item.text())
        self._use()

    def _add(self) -> None:
        self.is_new = True
        self.accept()

    def chosen_name(self) -> str:
        """The class the prompt was accepted with."""
        text = self.name_edit.text().strip()
        return text if self.is_new else self.known_name(text)

    def _finished(self, result: int) -> None:
        if self.parentWidget() is not None:  # keys go back to the window at once (not every platform does it)
            self.parentWidget().activateWindow()
        done, self._done = self._done, None
        if done is not None:
            done(self.chosen_name() if result == QDialog.Accepted else None)
