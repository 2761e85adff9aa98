"""Review mode: the model's suggestions one at a time, on the canvas and in the Review dock.

The current suggestion is drawn tinted, in a white band, above everything on the canvas (the
other detections dimmed) and selected in the dock's list. Keys on the canvas while reviewing: Enter accepts the
suggestion as a ground-truth box, Delete (or Backspace) rejects it, Tab / Shift+Tab go to the next / previous,
1-9 choose the class it will be accepted as (the dock's class list, in order), Escape ends the
review. These keys mean nothing else then: Delete never deletes a selected GT box, 1 is not
"actual size". Each accept or reject is one undo step; undoing it makes that suggestion current
again. The queue itself (which suggestions, in which order) is review.ReviewQueue, Qt-free.
"""
from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QKeyEvent, QPainter, QTransform, QUndoCommand
from PySide6.QtWidgets import (
    QComboBox,
    QDockWidget,
    QFormLayout,
    QGridLayout,
    QLabel,
    QListWidget,
    QPushButton,
    QWidget,
)

from frcnn_gui.canvas import Canvas
from frcnn_gui.canvas.layers import BoxSetLayer, class_colour, device_boxes
from frcnn_gui.document.document import Document
from frcnn_gui.document.suggestions import Rejections, ReviewQueue, plan_accept
from frcnn_gui.editing.commands import ReviewDecisionCommand
from frcnn_gui.window_layout import show_behind

HIGHLIGHT_Z = 25  # above the ground truth (20): the suggestion under review is never hidden
HIGHLIGHT_WIDTHS = (7.0, 3.0)  # a white band, the class colour inside it: it reads apart from GT boxes
HIGHLIGHT_FILL_ALPHA = 56
DIMMED_OPACITY = 0.35  # of the other detections while reviewing
CLASS_KEYS = {getattr(Qt, f"Key_{digit}"): digit - 1 for digit in range(1, 10)}
DECISION_KEYS = {Qt.Key_Return: "accept", Qt.Key_Enter: "accept", Qt.Key_Delete: "reject",
                 Qt.Key_Backspace: "reject"}
MOVE_KEYS = {Qt.Key_Tab: 1, Qt.Key_Backtab: -1}


class HighlightLayer(BoxSetLayer):
    """The suggestion under review: tinted, outlined in a white band around its class colour,
    tagged "class score" under the box (as detections are)."""

    def __init__(self):
        super().__init__(tags_below=True)
        self._tint = QColor()

    def show_suggestion(self, coords: tuple[float, float, float, float] | None, label: str = "",
                        score: float = 0.0) -> None:
        """Show one box (None: none) in the colour of class `label`."""
        colour = class_colour(label)
        self._tint = QColor(colour)
        self._tint.setAlpha(HIGHLIGHT_FILL_ALPHA)
        boxes = [] if coords is None else [coords, coords]
        self.set_boxes(boxes, [QColor(Qt.white), colour][:len(boxes)], HIGHLIGHT_WIDTHS[:len(boxes)],
                       ["", f"{label} {score:.2f}"][:len(boxes)])

    def paint_device(self, painter: QPainter, transform: QTransform, exposed: QRectF) -> None:
        for x1, y1, x2, y2 in device_boxes(self._boxes[:1], transform).tolist():
            painter.fillRect(QRectF(x1, y1, x2 - x1, y2 - y1), self._tint)
        super().paint_device(painter, transform, exposed)


class ReviewPanel(QWidget):
    """The dock's face of review mode: where we are, the suggestions, the class, the decisions.
    Nothing in it takes the keyboard focus: the keys keep going to the canvas."""

    accept = Signal()
    reject = Signal()
    step = Signal(int)
    row_chosen = Signal(int)
    class_chosen = Signal(int)  # index in the class list
    done = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.where = QLabel()
        self.where.setWordWrap(True)
        self.suggestions = QListWidget()
        self.suggestions.setToolTip("The suggestions left on this image, best first")
        self.suggestions.currentRowChanged.connect(lambda row: row >= 0 and self.row_chosen.emit(row))
        self.classes = QComboBox()
        self.classes.setToolTip("The class the suggestion is accepted as (keys 1-9)")
        self.classes.activated.connect(self.class_chosen)
        buttons = QGridLayout()
        for place, (text, tip, signal) in enumerate((
                ("Accept", "Add it as a GT box (Enter)", self.accept),
                ("Reject", "Do not suggest it again on this image (Delete)", self.reject),
                ("Previous", "Shift+Tab", lambda: self.step.emit(-1)),
                ("Next", "Tab", lambda: self.step.emit(1)))):
            button = QPushButton(text, toolTip=tip, focusPolicy=Qt.NoFocus)
            button.clicked.connect(signal)
            buttons.addWidget(button, place // 2, place % 2)
        finish = QPushButton("Done", toolTip="Leave review (Escape)", focusPolicy=Qt.NoFocus)
        finish.clicked.connect(self.done)
        buttons.addWidget(finish, 2, 0, 1, 2)
        for widget in (self.suggestions, self.classes):
            widget.setFocusPolicy(Qt.NoFocus)
        form = QFormLayout(self)
        form.addRow(self.where)
        form.addRow(self.suggestions)
        form.addRow("class", self.classes)
        form.addRow(buttons)

    def show_queue(self, queue: ReviewQueue, classes: list[str]) -> None:
        """Show the queue; `classes`: the class list the combo offers (keys 1-9 pick from it)."""
        count = len(queue.suggestions)
        self.where.setText(f"suggestion {queue.position + 1} of {count}" if count else
                           "no suggestions left on this image (D: next image)")
        for widget in (self.suggestions, self.classes):
            widget.blockSignals(True)
        self.suggestions.clear()
        self.suggestions.addItems([f"{s.detection.label}  {s.detection.score:.2f}" for s in queue.suggestions])
        self.suggestions.setCurrentRow(queue.position if count else -1)
        self.classes.clear()
        self.classes.addItems([f"{number}  {name}" if number <= 9 else name
                               for number, name in enumerate(classes, start=1)])
        self.classes.setCurrentIndex(classes.index(queue.label) if queue.label in classes else -1)
        self.classes.setEnabled(bool(count))
        for widget in (self.suggestions, self.classes):
            widget.blockSignals(False)


class ReviewController(QObject):
    """Review mode of one window: runs the queue over the detections the canvas shows (the score
    threshold and class filter apply) and turns decisions into undo commands.

    push(command) puts a command on the current undo stack; report(line) tells the user. The dock
    holds a ReviewPanel; it is open exactly while review is on (closing it ends review)."""

    def __init__(self, document: Document, canvas: Canvas, dock: QDockWidget,
                 push: Callable[[QUndoCommand], None], report: Callable[[str], None], parent: QObject | None = None):
        super().__init__(parent)
        self.document, self.canvas, self.dock, self.push, self.report = document, canvas, dock, push, report
        self.panel: ReviewPanel = dock.findChild(ReviewPanel)  # inside the dock's scroll area
        self.queue = ReviewQueue()
        self.rejections = Rejections(on_change=self.refresh)
        self.active = False
        self.highlight = HighlightLayer()
        self.highlight.setVisible(False)
        canvas.add_layer(self.highlight, HIGHLIGHT_Z)
        dock.hide()
        dock.toggleViewAction().toggled.connect(lambda shown: self.start() if shown else self.stop())
        document.subscribe(self._document_changed)
        panel = self.panel
        panel.accept.connect(self.accept)
        panel.reject.connect(self.reject)
        panel.step.connect(self.step)
        panel.row_chosen.connect(self.go_to)
        panel.class_chosen.connect(self.choose_class)
        panel.done.connect(self.stop)

    # -- mode ----------------------------------------------------------------------------------

    def start(self) -> None:
        """Enter review (the action, the Detections panel's button): from the best suggestion."""
        if self.active:
            return
        self.active = True
        self.canvas.installEventFilter(self)
        self.canvas.set_selection([])
        self.canvas.detection_layer.setOpacity(DIMMED_OPACITY)
        self.highlight.setVisible(True)
        show_behind(self.dock)
        self.canvas.setFocus()
        self.refresh(restart=True)

    def stop(self) -> None:
        """Leave review (Escape, Done, closing the dock); the decisions made stay."""
        if not self.active:
            return
        self.active = False
        self.canvas.removeEventFilter(self)
        self.canvas.detection_layer.setOpacity(1.0)
        self.highlight.setVisible(False)
        self.dock.hide()

    def _document_changed(self, kind: str) -> None:
        if kind in ("image", "boxes", "classes", "detections"):
            self.refresh(restart=kind == "image")

    def refresh(self, restart: bool = False) -> None:
        """Recompute the suggestions (after any change of the image, its boxes, the detections,
        the threshold or the rejections) and show them."""
        if not self.active:
            return
        document = self.document
        if document.image_size is None:
            self.queue.update([], restart)
        else:
            self.queue.update(plan_accept(self.canvas.detection_layer.shown, document.boxes.values(),
                                          document.image_size, self.rejections.of(document.current_path)).suggestions,
                              restart)
        self._show()

    def _class_choices(self) -> list[str]:
        current = self.queue.current
        own = [] if current is None or current.box.label in self.document.classes else [current.box.label]
        return [*self.document.classes, *own]

    def _show(self) -> None:
        self.panel.show_queue(self.queue, self._class_choices())
        current = self.queue.current
        if current is None:
            self.highlight.show_suggestion(None)
        else:
            self.highlight.show_suggestion(current.box.coords, self.queue.label, current.detection.score)

    # -- decisions -------------------------------------------------------------------------------

    def accept(self) -> None:
        """Add the current suggestion, with the chosen class, as a GT box (one undo step)."""
        self._decide(accept=True)

    def reject(self) -> None:
        """The current suggestion is no longer suggested on this image (one undo step)."""
        self._decide(accept=False)

    def _decide(self, accept: bool) -> None:
        current, decision = self.queue.current, self.queue.decision()
        if not self.active or current is None:
            return
        try:
            command = ReviewDecisionCommand(self.document, self.rejections, current.box, decision if accept else None)
        except ValueError as error:  # accepted as a class that has a GT box there already
            self.report(f"not accepted: {error}")
            return
        self.push(command)
        verb = f"accepted {decision.label}" if accept else f"rejected {current.box.label}"
        self.report(f"{verb} ({decision.score:.2f}); {self._left()}")

    def _left(self) -> str:
        left = len(self.queue.suggestions)
        return f"{left} suggestion{'' if left == 1 else 's'} left"

    def step(self, delta: int) -> None:
        self.queue.step(delta)
        self._show()

    def go_to(self, index: int) -> None:
        self.queue.go_to(index)
        self._show()

    def choose_class(self, index: int) -> None:
        """Accept the current suggestion as class number `index` of the dock's list."""
        choices = self._class_choices()
        if 0 <= index < len(choices):
            self.queue.choose_label(choices[index])
            self._show()

    # -- keys ------------------------------------------------------------------------------------

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """On the canvas while reviewing: the review keys (module doc) act here and nowhere else."""
        if event.type() not in (QEvent.ShortcutOverride, QEvent.KeyPress) or not _is_review_key(event):
            return False
        event.accept()  # a ShortcutOverride accepted: no window shortcut takes the key
        if event.type() == QEvent.KeyPress:
            self._key(event)
        return True

    def _key(self, event: QKeyEvent) -> None:
        key = event.key()
        if key in DECISION_KEYS:
            if not event.isAutoRepeat():  # holding Enter must not accept a whole image
                getattr(self, DECISION_KEYS[key])()
        elif key in MOVE_KEYS:  # Shift+Tab comes as Backtab, or (some platforms, QTest) as Tab with Shift
            self.step(-1 if event.modifiers() & Qt.ShiftModifier else MOVE_KEYS[key])
        elif key in CLASS_KEYS:
            self.choose_class(CLASS_KEYS[key])
        else:
            self.stop()


def _is_review_key(event: QKeyEvent) -> bool:
    """A key review mode takes: the keys above with no modifier but Shift (Shift+Tab) or keypad."""
    modifiers = event.modifiers() & ~(Qt.ShiftModifier | Qt.KeypadModifier)
    key = event.key()
    return modifiers == Qt.NoModifier and (key in DECISION_KEYS or key in MOVE_KEYS or key in CLASS_KEYS
                                           or key == Qt.Key_Escape)
