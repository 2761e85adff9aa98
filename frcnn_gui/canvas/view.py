"""The annotation canvas: the document's image, detections and boxes; drawing, selecting and
editing boxes with the mouse and the keyboard.

The canvas shows the document and never edits it: each finished edit is one command pushed onto
the undo stack it was given, and it redraws when the document notifies a change. It owns only
view state: zoom, mode, the selection and the drag in progress.

Modes: "select" (click selects the smallest box under the cursor, Shift+click adds or removes;
drag a box to move it, a handle to resize it, empty space to pan) and "draw" (drag a new box;
a selected box's handles still resize it). A drawn box gets class current_label, or, while
asks_class is on, waits (shown) for finish_drawn_box() after box_drawn. W toggles the modes,
Escape cancels a drag and returns to select. Double-click on a box asks to relabel it
(relabel_requested); right-click selects the box under the cursor and asks for the box menu
(menu_requested). Keys on the selection: arrows move by NUDGE (Shift: NUDGE_LARGE) image
pixels; Ctrl or Alt + arrows move the right / bottom edge; Delete or Backspace deletes. Layers
by z: image 0, detections 10, ground truth 20; the stage inspector adds its own with add_layer().
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PySide6.QtCore import QEvent, QPoint, QPointF, Qt, Signal
from PySide6.QtGui import QContextMenuEvent, QKeyEvent, QMouseEvent, QUndoStack
from PySide6.QtWidgets import QWidget

from frcnn_gui.canvas.geometry import Coords, drawn_box, grown, moved_inside, resized
from frcnn_gui.canvas.image_view import ImageView
from frcnn_gui.canvas.layers import DetectionLayer, GroundTruthLayer
from frcnn_gui.document.document import Box, Document
from frcnn_gui.editing.commands import AddBoxCommand, DeleteBoxesCommand, EditBoxCommand

MODES = ("select", "draw")
DEFAULT_LABEL = "object"  # class of drawn boxes while there is neither current_label nor a class
HIT_TOLERANCE = 4  # screen pixels around a border or a handle that still hit it
CLICK_SLOP = 3  # screen pixels the mouse may move before a press becomes a drag
NUDGE, NUDGE_LARGE = 1, 10
ARROWS = {Qt.Key_Left: (-1, 0), Qt.Key_Right: (1, 0), Qt.Key_Up: (0, -1), Qt.Key_Down: (0, 1)}
DELETE_KEYS = (Qt.Key_Delete, Qt.Key_Backspace)
HANDLE_CURSORS = {(0, 0): Qt.SizeFDiagCursor, (2, 2): Qt.SizeFDiagCursor, (2, 0): Qt.SizeBDiagCursor,
                  (0, 2): Qt.SizeBDiagCursor, (1, 0): Qt.SizeVerCursor, (1, 2): Qt.SizeVerCursor,
                  (0, 1): Qt.SizeHorCursor, (2, 1): Qt.SizeHorCursor}


@dataclass
class _BoxDrag:
    """A mouse drag on one box: box_id None draws a new box, handle None moves box box_id."""

    box_id: int | None
    handle: tuple[int, int] | None
    start: QPointF  # image pixels
    coords: Coords | None  # the box before the drag
    result: Coords | None = None  # the box the drag gives so far; None: no change yet


class Canvas(ImageView):
    """The document's current image with its detections and boxes; edits go through commands."""

    selection_changed = Signal(list)  # box ids, in selection order
    mode_changed = Signal(str)
    box_dragged = Signal(object, object)  # box id (None: a new box), its (x1, y1, x2, y2) mid-drag
    point_clicked = Signal(float, float)  # image pixels of a click without drag in select mode
    image_failed = Signal(str)  # one line: the image could not be shown (the canvas stays blank)
    box_drawn = Signal(object)  # (x1, y1, x2, y2) of a drawn box waiting for its class (asks_class)
    relabel_requested = Signal(list)  # box ids: a double-click on a box
    menu_requested = Signal(QPoint)  # global position of a right-click; the selection is what it is on

    def __init__(self, document: Document, undo_stack: QUndoStack, parent: QWidget | None = None):
        super().__init__(parent)
        self.document, self.undo_stack = document, undo_stack
        self.current_label: str | None = None  # class of drawn boxes; None: the first listed class
        self.asks_class = False  # a drawn box waits for finish_drawn_box() instead of taking current_label
        self.pending_box: Coords | None = None  # a drawn box waiting for its class, shown as a preview
        self.mode = "select"
        self.inspecting = False  # the stage inspector owns plain clicks: select mode never selects or moves a box
        self.selection: list[int] = []
        self._drag: _BoxDrag | None = None
        self._press_position: QPointF | None = None  # of the left button, while it is down
        self.detection_layer = DetectionLayer(document)
        self.ground_truth_layer = GroundTruthLayer(document)
        self.add_layer(self.detection_layer, 10)
        self.add_layer(self.ground_truth_layer, 20)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.StrongFocus)
        document.subscribe(self._on_document_changed)
        self._on_document_changed("image")

    def _on_document_changed(self, kind: str) -> None:
        if kind == "image":
            if self.document.image_size is None:
                self.set_image(None)
            elif self.document.current_path != self.image_path:
                try:
                    self.set_image(self.document.current_path)
                except ValueError as error:  # Qt cannot decode what the engine could: say so, show none
                    self.set_image(None)
                    self.image_failed.emit(str(error))
            self.cancel_drag()
            self.set_selection([])
            self.ground_truth_layer.refresh()
            self.detection_layer.refresh()
        elif kind in ("boxes", "classes"):
            dragged = None if self._drag is None else self._drag.box_id
            if dragged is not None and dragged not in self.document.boxes:
                self.cancel_drag()  # an undo took the dragged box away
            self.ground_truth_layer.refresh()
            self.set_selection([box_id for box_id in self.selection if box_id in self.document.boxes])
        elif kind == "detections":
            self.detection_layer.refresh()

    def set_selection(self, box_ids: Sequence[int]) -> None:
        """Select these boxes (ids the document lacks are skipped); selection_changed when it changes."""
        selection = [box_id for box_id in dict.fromkeys(box_ids) if box_id in self.document.boxes]
        if selection != self.selection:
            self.selection = selection
            self.ground_truth_layer.set_selected(selection)
            self.selection_changed.emit(list(selection))

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown canvas mode {mode!r}: one of {MODES}")
        self.cancel_drag()
        if mode != self.mode:
            self.mode = mode
            self.refresh_cursor()
            self.mode_changed.emit(mode)

    def cancel_drag(self) -> None:
        """Forget the drag in progress and a drawn box waiting for its class; the document was
        not touched yet."""
        if self._drag is not None or self.pending_box is not None:
            self._drag, self.pending_box = None, None
            self.ground_truth_layer.clear_preview()

    def finish_drawn_box(self, label: str | None) -> None:
        """Add the drawn box waiting for its class as a box of class `label` (a command; a new
        name is added to the class list with it) and select it; None drops it."""
        coords = self.pending_box
        self.cancel_drag()
        if coords is not None and label is not None:
            self._add_box(coords, label)

    def _add_box(self, coords: Coords, label: str) -> None:
        command = AddBoxCommand(self.document, Box(*coords, label))
        self.undo_stack.push(command)
        self.set_selection([command.box_id])

    def new_box_label(self) -> str:
        classes = self.document.classes
        return self.current_label or (classes[0] if classes else DEFAULT_LABEL)

    # -- mouse ---------------------------------------------------------------------------------

    def _tolerance(self) -> float:
        return HIT_TOLERANCE / self.zoom_factor()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        starts_pan = event.button() == Qt.MiddleButton or self._space_held
        if event.button() != Qt.LeftButton or starts_pan or self.document.image_size is None:
            super().mousePressEvent(event)
            return
        self._press_position = event.position()
        point = self.image_point(event.position())
        tolerance = self._tolerance()
        handle = None if self.inspecting else self.ground_truth_layer.handle_at(point.x(), point.y(), tolerance)
        if handle is not None:  # in either mode: a handle of a selected box resizes it
            box_id, handle_position = handle
            self._drag = _BoxDrag(box_id, handle_position, point, self.document.boxes[box_id].coords)
        elif self.mode == "draw":
            self._drag = _BoxDrag(None, None, point, None)
        else:
            self._press_select(point, bool(event.modifiers() & Qt.ShiftModifier))
        event.accept()

    def _press_select(self, point: QPointF, shift: bool) -> None:
        if self.inspecting:  # a click picks what the inspector shows; a drag pans
            self.start_pan(self._press_position)
            return
        box_id = self.ground_truth_layer.box_at(point.x(), point.y(), self._tolerance())
        if box_id is None:
            if not shift:
                self.set_selection([])
            self.start_pan(self._press_position)
        elif shift and box_id in self.selection:
            self.set_selection([other for other in self.selection if other != box_id])
        else:
            self.set_selection([*self.selection, box_id] if shift else
                               self.selection if box_id in self.selection else [box_id])
            self._drag = _BoxDrag(box_id, None, point, self.document.boxes[box_id].coords)

    def _dragged_far_enough(self, position: QPointF) -> bool:
        return (position - self._press_position).manhattanLength() > CLICK_SLOP

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        drag = self._drag
        if drag is None:
            super().mouseMoveEvent(event)
            if not self.panning:
                self.update_cursor(event.position())
            return
        if drag.result is None and not self._dragged_far_enough(event.position()):
            return
        point = self.image_point(event.position())
        width, height = self.document.image_size
        if drag.box_id is None:
            drag.result = drawn_box((drag.start.x(), drag.start.y()), (point.x(), point.y()), width, height)
        elif drag.handle is None:
            offset = point - drag.start
            drag.result = moved_inside(drag.coords, offset.x(), offset.y(), width, height)
        else:
            drag.result = resized(drag.coords, drag.handle, (point.x(), point.y()), width, height)
        if drag.result is None:
            self.ground_truth_layer.clear_preview()
            return
        self.ground_truth_layer.set_preview(drag.box_id, drag.result, self.new_box_label())
        self.box_dragged.emit(drag.box_id, drag.result)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        clicked = (event.button() == Qt.LeftButton and self._press_position is not None
                   and not self._dragged_far_enough(event.position()))
        drag, self._drag = self._drag, None
        if event.button() == Qt.LeftButton:
            self._press_position = None
        if drag is not None:
            self.ground_truth_layer.clear_preview()
            self._commit(drag)
            self.update_cursor(event.position())
        else:
            super().mouseReleaseEvent(event)
        if event.button() == Qt.LeftButton:
            event.accept()  # the press was ours, even when Escape ended its drag
        if clicked and self.mode == "select":
            point = self.image_point(event.position())
            self.point_clicked.emit(point.x(), point.y())

    def _commit(self, drag: _BoxDrag) -> None:
        if drag.result is None or drag.result == drag.coords:
            return
        if drag.box_id is None and self.asks_class:
            self.pending_box = drag.result
            self.ground_truth_layer.set_preview(None, drag.result, "?")
            self.box_drawn.emit(drag.result)
        elif drag.box_id is None:
            self._add_box(drag.result, self.new_box_label())
        else:
            box = self.document.boxes[drag.box_id]
            edited = Box(*drag.result, box.label, box.difficult)
            self.undo_stack.push(EditBoxCommand(self.document, drag.box_id, edited, merge=False))

    def _box_under(self, position: QPointF) -> int | None:
        point = self.image_point(position)
        return self.ground_truth_layer.box_at(point.x(), point.y(), self._tolerance())

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        box_id = self._box_under(event.position()) if event.button() == Qt.LeftButton else None
        if box_id is None or self.document.image_size is None:
            super().mouseDoubleClickEvent(event)
            return
        self.cancel_drag()
        self.set_selection([box_id])
        self.relabel_requested.emit([box_id])
        event.accept()

    def contextMenuEvent(self, event: QContextMenuEvent) -> None:
        box_id = self._box_under(QPointF(event.pos()))
        if box_id is not None and box_id not in self.selection:
            self.set_selection([box_id])
        self.menu_requested.emit(event.globalPos())
        event.accept()

    def update_cursor(self, position: QPointF) -> None:
        if self._space_held or self.document.image_size is None:
            super().update_cursor(position)
            return
        point = self.image_point(position)
        handle = self.ground_truth_layer.handle_at(point.x(), point.y(), self._tolerance())
        if self.inspecting and self.mode != "draw":
            cursor = Qt.ArrowCursor
        elif handle is not None:
            cursor = HANDLE_CURSORS[handle[1]]
        elif self.mode == "draw":
            cursor = Qt.CrossCursor
        elif self.ground_truth_layer.box_at(point.x(), point.y(), self._tolerance()) is not None:
            cursor = Qt.SizeAllCursor
        else:
            cursor = Qt.ArrowCursor
        self.viewport().setCursor(cursor)

    # -- keyboard ------------------------------------------------------------------------------

    def _edits_key(self, event: QKeyEvent) -> bool:
        return bool(self.selection) and (event.key() in ARROWS or event.key() in DELETE_KEYS)

    def event(self, event: QEvent) -> bool:
        # arrows and Delete act on the selection here even when a window action has them as shortcuts
        if event.type() == QEvent.ShortcutOverride and self._edits_key(event):
            event.accept()
            return True
        return super().event(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key, modifiers = event.key(), event.modifiers()
        if key == Qt.Key_W and not modifiers & (Qt.ControlModifier | Qt.AltModifier | Qt.MetaModifier):
            self.set_mode("select" if self.mode == "draw" else "draw")
        elif key == Qt.Key_Escape:
            self.set_mode("select")
        elif self._edits_key(event) and key in DELETE_KEYS:
            self.undo_stack.push(DeleteBoxesCommand(self.document, self.selection))
        elif self._edits_key(event):
            step = NUDGE_LARGE if modifiers & Qt.ShiftModifier else NUDGE
            dx, dy = (step * direction for direction in ARROWS[key])
            self._keyboard_edit(dx, dy, resize=bool(modifiers & (Qt.ControlModifier | Qt.AltModifier)))
        else:
            super().keyPressEvent(event)
            return
        event.accept()

    def _keyboard_edit(self, dx: int, dy: int, resize: bool) -> None:
        """Move (or grow) every selected box: one command per box, merged with the previous key's
        when one box is selected, so that a run of nudges is one undo step."""
        width, height = self.document.image_size
        commands = []
        for box_id in self.selection:
            box = self.document.boxes[box_id]
            change = grown if resize else moved_inside
            coords = change(box.coords, dx, dy, width, height)
            if coords != box.coords:
                commands.append(EditBoxCommand(self.document, box_id, Box(*coords, box.label, box.difficult)))
        if len(commands) > 1:
            self.undo_stack.beginMacro(f"{'Resize' if resize else 'Move'} {len(commands)} boxes")
        for command in commands:
            self.undo_stack.push(command)
        if len(commands) > 1:
            self.undo_stack.endMacro()
