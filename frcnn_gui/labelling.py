"""labelImg's habits for classes, between the canvas, the class prompt, the Classes panel and the
undo history.

- A drawn box asks for its class (ClassPrompt, the current class preselected; Escape drops the
  box) unless "Use default class" is on (persisted in QSettings): then it takes the current
  class. The class taken becomes the current class.
- Relabel: double-click a box, Relabel… (Ctrl+E, also in the box menu) on the selection, or a
  click on a class in the Classes panel while boxes are selected. Each is one undo step.
- The box menu (right-click on the canvas): Relabel…, Delete, Difficult, Copy, Paste.
- Copy / Paste (Ctrl+C / Ctrl+V): copied boxes paste onto the current image, or another one, in
  one step; pasted onto the image they came from, they land PASTE_OFFSET pixels down-right so
  that the copy shows.
The box actions act on the canvas selection; a refused edit is reported in one line.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, QPoint, QSettings
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QWidget

from frcnn_gui.canvas import Canvas
from frcnn_gui.canvas.geometry import moved_inside
from frcnn_gui.document.document import Box, Document
from frcnn_gui.editing.commands import DeleteBoxesCommand, PasteBoxesCommand, RelabelCommand, SetDifficultCommand
from frcnn_gui.panels.class_prompt import ClassPrompt
from frcnn_gui.panels.classes import ClassesPanel

USE_DEFAULT_CLASS_KEY = "use_default_class"
PASTE_OFFSET = 10  # image pixels
SELECTION_ACTIONS = ("relabel", "delete", "difficult", "copy")  # enabled while boxes are selected
MENU_ACTIONS = ("relabel", "delete", "difficult", "copy", "paste")


class Labelling(QObject):
    """See the module doc. `history` takes the commands (push); `report` gets one-line problems.
    bind_actions() gives it the window's box actions, which it enables and checks."""

    def __init__(self, document: Document, history, canvas: Canvas, classes_panel: ClassesPanel,
                 settings: QSettings, report: Callable[[str], None], parent: QWidget):
        super().__init__(parent)
        self.document, self.history, self.canvas = document, history, canvas
        self.classes_panel, self.settings, self.report = classes_panel, settings, report
        self.prompt = ClassPrompt(parent)
        self.menu = QMenu(parent)
        self.actions: dict[str, QAction] = {}
        self.clipboard: list[Box] = []
        self._copied_from: Path | None = None
        canvas.box_drawn.connect(lambda _: self._ask_class_of_drawn_box())
        canvas.relabel_requested.connect(self.relabel)
        canvas.menu_requested.connect(self.show_menu)
        canvas.selection_changed.connect(lambda _: self._update_actions())
        classes_panel.class_clicked.connect(self.relabel_selection_to)
        document.subscribe(lambda kind: kind == "boxes" and self._update_actions())
        canvas.asks_class = not self.use_default_class

    # -- the class of new boxes ----------------------------------------------------------------

    @property
    def use_default_class(self) -> bool:
        return self.settings.value(USE_DEFAULT_CLASS_KEY, False, type=bool)

    def set_use_default_class(self, on: bool) -> None:
        """On: drawn boxes take the current class without asking (remembered across runs)."""
        self.settings.setValue(USE_DEFAULT_CLASS_KEY, bool(on))
        self.canvas.asks_class = not on

    def _ask_class_of_drawn_box(self) -> None:
        initial = self.canvas.new_box_label() if self.document.classes else ""
        self.prompt.ask(self.document.classes, initial, self._class_of_drawn_box)

    def _class_of_drawn_box(self, name: str | None) -> None:
        try:
            self.canvas.finish_drawn_box(name)
        except ValueError as error:  # the document refuses the box or the name: say why
            self.report(str(error))
            return
        if name is not None:
            self.classes_panel.set_current(name)

    # -- relabel -------------------------------------------------------------------------------

    def relabel(self, box_ids: list[int]) -> None:
        """Ask for the class of these boxes (the first one's preselected), then relabel them."""
        if not box_ids:
            self.report("relabel: select a box first")
            return
        ids = list(box_ids)

        def chosen(name: str | None) -> None:
            if name is not None:
                self._relabel(ids, name)
        self.prompt.ask(self.document.classes, self.document.boxes[ids[0]].label, chosen)

    def relabel_selection(self) -> None:
        self.relabel(self.canvas.selection)

    def relabel_selection_to(self, name: str) -> None:
        """The selected boxes (if any) take class `name`, a listed class."""
        if self.canvas.selection:
            self._relabel(self.canvas.selection, name)

    def _relabel(self, box_ids: list[int], name: str) -> None:
        """One step, none when every box has the class already; `name` becomes the current class."""
        boxes = self.document.boxes
        if any(box_id not in boxes or boxes[box_id].label != name for box_id in box_ids):
            self._push(lambda: RelabelCommand(self.document, box_ids, name))
        self.classes_panel.set_current(name)

    # -- the other box actions -----------------------------------------------------------------

    def set_difficult(self, flag: bool) -> None:
        self._push(lambda: SetDifficultCommand(self.document, self.canvas.selection, flag))

    def delete(self) -> None:
        self._push(lambda: DeleteBoxesCommand(self.document, self.canvas.selection))

    def copy(self) -> None:
        """Keep the selected boxes for paste()."""
        if not self.canvas.selection:
            self.report("copy: select a box first")
            return
        self.clipboard = [self.document.boxes[box_id] for box_id in self.canvas.selection]
        self._copied_from = self.document.current_path
        self._update_actions()

    def paste(self) -> None:
        """Add the copied boxes to the current image and select them."""
        if not self.clipboard:
            self.report("paste: copy a box first")
            return
        boxes = self.clipboard
        if self.document.current_path == self._copied_from and self.document.image_size is not None:
            width, height = self.document.image_size
            boxes = [Box(*moved_inside(box.coords, PASTE_OFFSET, PASTE_OFFSET, width, height), box.label,
                         box.difficult) for box in boxes]
        command = self._push(lambda: PasteBoxesCommand(self.document, boxes))
        if command is not None:
            self.canvas.set_selection(command.box_ids)

    # -- menu and action states ----------------------------------------------------------------

    def bind_actions(self, actions: dict[str, QAction]) -> None:
        """The window's box actions by name (MENU_ACTIONS); the box menu shows them."""
        self.actions = {name: actions[name] for name in MENU_ACTIONS}
        self.menu.clear()
        self.menu.addActions(list(self.actions.values()))
        self._update_actions()

    def show_menu(self, global_position: QPoint) -> None:
        self._update_actions()
        self.menu.popup(global_position)

    def _update_actions(self) -> None:
        if not self.actions:
            return
        boxes = self.document.boxes
        selected = [boxes[box_id] for box_id in self.canvas.selection if box_id in boxes]
        for name in SELECTION_ACTIONS:
            self.actions[name].setEnabled(bool(selected))
        self.actions["paste"].setEnabled(bool(self.clipboard))
        self.actions["difficult"].setChecked(bool(selected) and all(box.difficult for box in selected))

    def _push(self, make_command):
        """Push the command `make_command()` builds and return it; None (reported) when it refuses."""
        try:
            command = make_command()
        except ValueError as error:
            self.report(str(error))
            return None
        self.history.push(command)
        return command
