"""Canvas overlays: one QGraphicsItem per layer that paints all of its N boxes in one paint() call.

Shapes: boxes (N, 4) float64, x1 y1 x2 y2 in image pixels (= scene units, the image item sits at
the scene origin). A layer draws in viewport pixels: the painter's transform maps the N boxes in
one numpy step, then the transform is reset and pens of a fixed width and tags of a fixed text
size are drawn — lines stay sharp and labels legible at every zoom, with no item per box. The
canvas only scales and translates, never rotates, so the transform is a scale plus a shift.

Qt calls per paint grow with the number of colours, not of boxes (drawRects per colour, only
drawText per tag): faster, and PySide6 6.12 on Python 3.11 loses a reference to None in every
call of a void Qt method, which crashes the interpreter once None's count runs out.
"""
from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QPainter, QPen, QTransform
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem, QWidget

from frcnn_gui.canvas.geometry import HANDLES, handle_points
from frcnn_gui.document.document import Detection, Document

# The saturated ones of Trubetskoy's 20 distinct colours: the dark ones vanish on dark images,
# the pale ones on bright images (BCCD's smears).
PALETTE = ("#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6",
           "#bfef45", "#469990", "#9a6324")
# under every outline, 2 px wider: lines read on any background. Opaque: blending a translucent
# halo made painting 1,000 boxes four times slower.
HALO = QColor(24, 24, 24)
LABEL_PIXEL_SIZE = 12  # tag text height on screen, whatever the zoom
LABEL_PADDING = 3
MIN_LABELLED_WIDTH = 14  # boxes narrower than this on screen get no tag: it would hide them
MAX_TAGS = 200  # with more tagged boxes in view, tags would cover the image: zoom in to see them
TOP_TAGS = 5  # where many boxes have a tag, only the best few show it; the rest show it under the mouse


def detection_colour(name: str) -> QColor:
    """The class colour lightened towards white, for model output drawn over GT boxes."""
    colour = class_colour(name)
    return QColor.fromHsvF(colour.hsvHueF(), max(0.0, colour.hsvSaturationF() * 0.45), 1.0)


def dimmed(colour: QColor) -> QColor:
    """`colour` pushed back, paler and darker: the boxes around a selection. Opaque, as every pen
    here (a translucent one would slow painting down)."""
    return QColor.fromHsvF(max(colour.hsvHueF(), 0.0), colour.hsvSaturationF() * 0.4, colour.valueF() * 0.45)


def class_colour(name: str) -> QColor:
    """The colour of a class name: the same in every run, layer and process (CRC32, not hash())."""
    return QColor(PALETTE[zlib.crc32(name.encode("utf-8")) % len(PALETTE)])


def text_colour(background: QColor) -> QColor:
    """Black or white, whichever reads better on `background`."""
    luminance = 0.299 * background.redF() + 0.587 * background.greenF() + 0.114 * background.blueF()
    return QColor(Qt.black) if luminance > 0.55 else QColor(Qt.white)


def device_boxes(boxes: np.ndarray, transform: QTransform) -> np.ndarray:
    """(N, 4) image-pixel boxes -> (N, 4) viewport-pixel boxes under a scale-and-shift transform."""
    scale = np.array([transform.m11(), transform.m22(), transform.m11(), transform.m22()])
    shift = np.array([transform.dx(), transform.dy(), transform.dx(), transform.dy()])
    return boxes * scale + shift


class BoxSetLayer(QGraphicsItem):
    """N boxes with a colour, a pen width (screen pixels) and an optional tag each.

    The generic overlay: ground truth and detections build on it, and the stage inspector shows
    anchors and proposals with it. Hit testing is vectorised over the N boxes. With hover labels,
    the box under the mouse shows its hover label as its tag (when it has no tag of its own).
    """

    def __init__(self, parent: QGraphicsItem | None = None, tags_below: bool = False):
        super().__init__(parent)
        self.setFlag(QGraphicsItem.ItemUsesExtendedStyleOption)  # paint() gets the exposed rect
        self.tags_below = tags_below  # tags under the bottom-left corner instead of above the top-left
        self._font = QFont()
        self._font.setPixelSize(LABEL_PIXEL_SIZE)
        self._metrics = QFontMetricsF(self._font)
        self._tag_widths: dict[str, float] = {}
        self._bounds = QRectF()
        self._hovered: int | None = None  # the box under the mouse, while hover labels are set
        self.set_boxes(np.zeros((0, 4)), QColor(Qt.white))

    def set_boxes(self, boxes: np.ndarray, colours: QColor | Sequence[QColor], widths: float | np.ndarray = 1.0,
                  labels: Sequence[str] | None = None, dashed: bool = False,
                  hover_labels: Sequence[str] | None = None, halos: bool | np.ndarray = True) -> None:
        """Show `boxes` (N, 4) instead of the current ones.

        colours: one QColor, or N. widths: pen width in screen pixels, one or (N,). labels: None,
        or N tag texts ("" for no tag). dashed: dashed outlines for the whole layer. hover_labels:
        None, or N texts, each shown as its box's tag while the mouse is over that box. halos: the
        dark halo under each outline, one bool or (N,); without it a thin line recedes into the image.
        """
        self.prepareGeometryChange()
        self._boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        count = len(self._boxes)
        colours = [colours] * count if isinstance(colours, QColor) else list(colours)
        widths = np.broadcast_to(np.asarray(widths, dtype=np.float64), (count,))
        # one pen per distinct (colour, width): drawRects then draws each group in one call
        halos = np.broadcast_to(np.asarray(halos, dtype=bool), (count,))
        keys = [(colour.rgba(), float(width), bool(halo))
                for colour, width, halo in zip(colours, widths, halos, strict=True)]
        unique_keys = list(dict.fromkeys(keys))
        self._pens = [self._pen(QColor.fromRgba(rgba), width, dashed) for rgba, width, _ in unique_keys]
        self._halo_pens = [self._pen(HALO, width + 2, False) if halo else None for _, width, halo in unique_keys]
        key_index = {key: index for index, key in enumerate(unique_keys)}
        self._pen_index = np.array([key_index[key] for key in keys], dtype=np.int64)
        self._labels = list(labels) if labels is not None else [""] * count
        self._tagged = np.array([bool(text) for text in self._labels], dtype=bool)
        self._hover_labels = list(hover_labels) if hover_labels is not None else None
        self.setAcceptHoverEvents(any(self._hover_labels or ()))  # else it would keep hover from the layers below
        if self._hovered is not None and (self._hover_labels is None or self._hovered >= count):
            self._hovered = None
        if count:
            low, high = self._boxes[:, :2].min(axis=0), self._boxes[:, 2:].max(axis=0)
            margin = max(high - low)  # room for tags and handles drawn in screen pixels
            self._bounds = QRectF(QPointF(*(low - margin)), QPointF(*(high + margin)))
        else:
            self._bounds = QRectF()
        self.update()

    @staticmethod
    def _pen(colour: QColor, width: float, dashed: bool) -> QPen:
        pen = QPen(colour, width)
        pen.setCosmetic(True)
        pen.setJoinStyle(Qt.MiterJoin)
        if dashed:
            pen.setStyle(Qt.DashLine)
        return pen

    def __len__(self) -> int:
        return len(self._boxes)

    def box_index_at(self, x: float, y: float, tolerance: float = 0.0) -> int | None:
        """Index of the smallest box containing (x, y), borders widened by `tolerance` image
        pixels; on a tie the one painted last (on top). None when no box contains the point."""
        boxes = self._boxes
        inside = ((boxes[:, 0] - tolerance <= x) & (x <= boxes[:, 2] + tolerance)
                  & (boxes[:, 1] - tolerance <= y) & (y <= boxes[:, 3] + tolerance))
        candidates = np.flatnonzero(inside)
        if not len(candidates):
            return None
        areas = (boxes[candidates, 2] - boxes[candidates, 0]) * (boxes[candidates, 3] - boxes[candidates, 1])
        smallest = np.flatnonzero(areas == areas.min())
        return int(candidates[smallest[-1]])

    def boundingRect(self) -> QRectF:
        return self._bounds

    def hoverMoveEvent(self, event) -> None:
        hovered = self.box_index_at(event.pos().x(), event.pos().y())
        if hovered != self._hovered:
            self._hovered = hovered
            self.update()

    def hoverLeaveEvent(self, event) -> None:
        if self._hovered is not None:
            self._hovered = None
            self.update()

    def hovered_label(self) -> str:
        """The hover label of the box under the mouse ("" when none)."""
        return self._hover_labels[self._hovered] if self._hovered is not None else ""

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        transform = painter.worldTransform()
        painter.save()
        painter.resetTransform()
        try:
            self.paint_device(painter, transform, option.exposedRect)
        finally:
            painter.restore()

    def visible_indices(self, exposed: QRectF, scale: float) -> np.ndarray:
        """Indices of the boxes that touch `exposed` (image pixels), widened by a tag's height."""
        margin = (LABEL_PIXEL_SIZE + 2 * LABEL_PADDING) / scale
        boxes = self._boxes
        touching = ((boxes[:, 2] >= exposed.left() - margin) & (boxes[:, 0] <= exposed.right() + margin)
                    & (boxes[:, 3] >= exposed.top() - margin) & (boxes[:, 1] <= exposed.bottom() + margin))
        return np.flatnonzero(touching)

    def paint_device(self, painter: QPainter, transform: QTransform, exposed: QRectF) -> None:
        """Paint with `painter` in viewport pixels; `transform` maps image pixels to them."""
        visible = self.visible_indices(exposed, transform.m11())
        device = device_boxes(self._boxes[visible], transform)
        pen_index = self._pen_index[visible]
        groups = [(number, [QRectF(x1, y1, x2 - x1, y2 - y1)
                            for x1, y1, x2, y2 in device[pen_index == number].tolist()])
                  for number in np.unique(pen_index).tolist()]
        for pens in (self._halo_pens, self._pens):  # every halo first: no halo crosses a line
            for pen_number, rects in groups:
                if pens[pen_number] is not None:
                    painter.setPen(pens[pen_number])
                    painter.drawRects(rects)
        self.paint_tags(painter, visible, device, transform.mapRect(exposed))

    def paint_tags(self, painter: QPainter, indices: np.ndarray, device: np.ndarray, area: QRectF) -> None:
        """Tags of boxes `indices` (device: their viewport boxes): text on the box colour, above
        the top-left corner (tags_below: under the bottom-left one), or just inside the box when
        that would leave `area`, the viewport part being painted. With more than MAX_TAGS tagged
        boxes in view, no tags; the hovered box's tag whatever its width or the crowd."""
        height = LABEL_PIXEL_SIZE + 2 * LABEL_PADDING
        wide_enough = (device[:, 2] - device[:, 0]) >= MIN_LABELLED_WIDTH
        crowded = np.count_nonzero(wide_enough & self._tagged[indices]) > MAX_TAGS
        drawn = (wide_enough & ~crowded) | (indices == (-1 if self._hovered is None else self._hovered))
        tags_by_pen: dict[int, list[tuple[QRectF, str]]] = {}
        for index, (x1, y1, _, y2) in zip(indices[drawn].tolist(), device[drawn].tolist(), strict=True):
            text = self._labels[index] or (self.hovered_label() if index == self._hovered else "")
            if not text:
                continue
            width = self._tag_widths.get(text)
            if width is None:
                width = self._tag_widths[text] = self._metrics.horizontalAdvance(text) + 2 * LABEL_PADDING
            if self.tags_below:
                top = y2 if y2 + height <= area.bottom() else y2 - height
            else:
                top = y1 - height if y1 - height >= area.top() else y1
            tags_by_pen.setdefault(int(self._pen_index[index]), []).append((QRectF(x1, top, width, height), text))
        # per colour one brush, one drawRects and one text pen: per tag only its drawText
        painter.setFont(self._font)
        for pen_number, tags in tags_by_pen.items():
            colour = self._pens[pen_number].color()
            painter.setPen(Qt.NoPen)
            painter.setBrush(colour)
            painter.drawRects([tag for tag, _ in tags])
            painter.setPen(text_colour(colour))
            for tag, text in tags:
                painter.drawText(tag, Qt.AlignCenter, text)


GROUND_TRUTH_WIDTH = 2.0
SELECTED_WIDTH = 3.0
SELECTED_FILL_ALPHA = 48
HANDLE_SIZE = 7  # screen pixels
DIFFICULT_TAG = " (difficult)"  # after the class name
DETECTION_WIDTH = 2.0
PICKED_WIDTH = 4.0


class GroundTruthLayer(BoxSetLayer):
    """The document's boxes in class colours, tagged with their class; the selected ones drawn
    thicker, tinted and with 8 resize handles; VOC's difficult ones dotted (the class colour and
    the dark halo in turn, finer than the dashes of the lighter detections) and tagged
    "(difficult)".
    The canvas owns the selection and tells this layer.

    box_ids[i] is the document id of box row i. A preview (a box being dragged, or a new box being
    drawn: box id None) is shown in place of the document's geometry until cleared.
    """

    def __init__(self, document: Document, parent: QGraphicsItem | None = None):
        super().__init__(parent)
        self.document = document
        self.box_ids: list[int] = []
        self.selected: list[int] = []
        self._preview: tuple[int | None, tuple[float, float, float, float], str] | None = None
        self._colours: dict[str, QColor] = {}
        self._difficult_rows = np.zeros(0, dtype=np.int64)
        self._widths = np.zeros(0)

    def refresh(self) -> None:
        """Re-read the document's boxes."""
        boxes = self.document.boxes
        self.box_ids = list(boxes)
        coords = np.array([box.coords for box in boxes.values()], dtype=np.float64).reshape(-1, 4)
        labels = [box.label for box in boxes.values()]
        difficult = [box.difficult for box in boxes.values()]
        if self._preview is not None:
            box_id, preview_coords, label = self._preview
            if box_id is None:
                coords, labels, difficult = np.vstack([coords, preview_coords]), [*labels, label], [*difficult, False]
            elif box_id in boxes:
                coords[self.box_ids.index(box_id)] = preview_coords
        self._widths = np.full(len(coords), GROUND_TRUTH_WIDTH)
        self._widths[self._selected_rows()] = SELECTED_WIDTH
        if self._preview is not None and self._preview[0] is None:
            self._widths[-1] = SELECTED_WIDTH
        self._difficult_rows = np.flatnonzero(difficult)
        tags = [label + DIFFICULT_TAG * flag for label, flag in zip(labels, difficult, strict=True)]
        self.set_boxes(coords, [self._colour(label) for label in labels], self._widths, tags)

    def _colour(self, label: str) -> QColor:
        if label not in self._colours:
            self._colours[label] = class_colour(label)
        return self._colours[label]

    def _selected_rows(self) -> list[int]:
        row_of = {box_id: row for row, box_id in enumerate(self.box_ids)}
        return [row_of[box_id] for box_id in self.selected if box_id in row_of]

    def set_selected(self, box_ids: Sequence[int]) -> None:
        self.selected = list(box_ids)
        self.refresh()

    def set_preview(self, box_id: int | None, coords: tuple[float, float, float, float], label: str = "") -> None:
        """Show box `box_id` (None: a new box of class `label`) at `coords` until clear_preview()."""
        self._preview = (box_id, tuple(coords), label)
        self.refresh()

    def clear_preview(self) -> None:
        self._preview = None
        self.refresh()

    def box_at(self, x: float, y: float, tolerance: float = 0.0) -> int | None:
        """Id of the smallest document box containing (x, y) (see box_index_at), or None."""
        row = self.box_index_at(x, y, tolerance)
        return self.box_ids[row] if row is not None and row < len(self.box_ids) else None

    def handle_at(self, x: float, y: float, tolerance: float) -> tuple[int, tuple[int, int]] | None:
        """(box id, handle) of the selected box's handle within `tolerance` image pixels of (x, y)."""
        for row in self._selected_rows():
            for handle, (hx, hy) in zip(HANDLES, handle_points(tuple(self._boxes[row])), strict=True):
                if abs(hx - x) <= tolerance and abs(hy - y) <= tolerance:
                    return self.box_ids[row], handle
        return None

    def paint_device(self, painter: QPainter, transform: QTransform, exposed: QRectF) -> None:
        super().paint_device(painter, transform, exposed)
        self._paint_difficult(painter, transform, exposed)
        half = HANDLE_SIZE / 2
        for row in self._selected_rows():
            x1, y1, x2, y2 = device_boxes(self._boxes[row:row + 1], transform)[0].tolist()
            colour = self._pens[self._pen_index[row]].color()
            tint = QColor(colour)
            tint.setAlpha(SELECTED_FILL_ALPHA)
            painter.fillRect(QRectF(x1, y1, x2 - x1, y2 - y1), tint)
            painter.setPen(QPen(colour, 1))
            painter.setBrush(QColor(Qt.white))
            painter.drawRects([QRectF(hx - half, hy - half, HANDLE_SIZE, HANDLE_SIZE)
                               for hx, hy in handle_points((x1, y1, x2, y2))])


    def _paint_difficult(self, painter: QPainter, transform: QTransform, exposed: QRectF) -> None:
        """Dots of halo over the outlines of the difficult boxes in view, as wide as each outline."""
        rows = np.intersect1d(self._difficult_rows, self.visible_indices(exposed, transform.m11()))
        device = device_boxes(self._boxes[rows], transform)
        painter.setBrush(Qt.NoBrush)
        for width in np.unique(self._widths[rows]).tolist():
            pen = self._pen(HALO, width, False)
            pen.setCapStyle(Qt.FlatCap)  # square caps would lengthen each dot by a line width
            pen.setDashPattern([1, 1])  # in line widths: as much colour as halo, finer than DashLine's 4, 2
            painter.setPen(pen)
            painter.drawRects([QRectF(x1, y1, x2 - x1, y2 - y1)
                               for x1, y1, x2, y2 in device[self._widths[rows] == width].tolist()])


class DetectionLayer(BoxSetLayer):
    """The document's detections: dashed outlines in class colours, the highest scores on top;
    the TOP_TAGS best tagged "label score" under the box (a matching ground-truth box has its tag
    above), every one under the mouse. The picked ones (`set_picked`: the detections list's
    selection) are drawn thick and on top, tagged, the others dimmed. score_threshold and
    class_filter (None: every class) only choose what is drawn — changing them repaints, it never
    re-runs the model."""

    def __init__(self, document: Document, parent: QGraphicsItem | None = None):
        super().__init__(parent, tags_below=True)  # above, they would hide a matching GT box's tag
        self.document = document
        self.score_threshold = 0.5
        self.class_filter: frozenset[str] | None = None
        self.picked: list[Detection] = []
        self.shown: list[Detection] = []  # the detections drawn, in drawing order

    def set_score_threshold(self, threshold: float) -> None:
        self.score_threshold = float(threshold)
        self.refresh()

    def set_class_filter(self, names: Sequence[str] | None) -> None:
        self.class_filter = None if names is None else frozenset(names)
        self.refresh()

    def set_picked(self, detections: Sequence[Detection]) -> None:
        """Highlight these detections (those not drawn are ignored); an empty list: none."""
        self.picked = list(detections)
        self.refresh()

    def refresh(self) -> None:
        """Re-read the document's detections and apply the threshold, the filter and the pick."""
        shown = sorted((detection for detection in self.document.detections
                        if detection.score >= self.score_threshold
                        and (self.class_filter is None or detection.label in self.class_filter)),
                       key=lambda detection: detection.score)
        picked = [detection for detection in shown if detection in self.picked]
        self.shown = [detection for detection in shown if detection not in picked] + picked  # the picked on top
        best = shown[-TOP_TAGS:]
        coords = np.array([detection.box for detection in self.shown], dtype=np.float64).reshape(-1, 4)
        # a lighter shade of the class colour: detections read apart from the solid GT boxes
        colours = [detection_colour(detection.label) if not picked or detection in picked
                   else dimmed(detection_colour(detection.label)) for detection in self.shown]
        widths = [PICKED_WIDTH if detection in picked else DETECTION_WIDTH for detection in self.shown]
        texts = [f"{detection.label} {detection.score:.2f}" for detection in self.shown]
        labels = [text if detection in picked or detection in best else ""
                  for text, detection in zip(texts, self.shown, strict=True)]
        self.set_boxes(coords, colours, np.array(widths), labels, dashed=True, hover_labels=texts)
