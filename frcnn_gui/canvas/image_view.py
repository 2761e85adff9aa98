"""An image in a QGraphicsView with overlay layers: wheel zoom about the cursor, pan, fit, 1:1.

Coordinates: viewport pixels (mouse events) and image pixels (= scene units; the image sits at
the scene origin). The view only scales and translates, which the layers rely on. The scene rect
is the image plus one viewport of margin on each side, so that any image point can be panned or
zoomed to any place on the screen.

Pan: middle-drag, or Space + left-drag (subclasses may start one with start_pan()).
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QCursor,
    QImage,
    QImageReader,
    QKeyEvent,
    QMouseEvent,
    QPixmap,
    QTransform,
    QWheelEvent,
)
from PySide6.QtWidgets import QGraphicsItem, QGraphicsPixmapItem, QGraphicsScene, QGraphicsView, QWidget

WHEEL_ZOOM = 1.25  # per wheel notch
ZOOM_LIMITS = (0.02, 64.0)
BACKGROUND = QColor(48, 48, 48)
QT_ALLOCATION_LIMIT_MB = 400  # Qt's image reader refuses more; 256 by default


class ImageView(QGraphicsView):
    """One image (z 0) and the layers added above it; zoom and pan keep image points in place."""

    zoom_changed = Signal(float)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.image_path: Path | None = None  # the file shown; None for a QImage or no image
        self.image_rect = QRectF()
        self._fitted = True  # refit on resize until the user zooms
        self._pan_from: QPointF | None = None
        self._space_held = False
        scene = QGraphicsScene(self)
        scene.setItemIndexMethod(QGraphicsScene.NoIndex)  # a handful of items: an index only costs
        self.setScene(scene)
        self._pixmap_item = QGraphicsPixmapItem()
        # every overlay change repaints the whole view: the image, scaled once per zoom, is a blit
        self._pixmap_item.setCacheMode(QGraphicsItem.DeviceCoordinateCache)
        scene.addItem(self._pixmap_item)
        self.setViewportUpdateMode(QGraphicsView.FullViewportUpdate)
        self.setTransformationAnchor(QGraphicsView.NoAnchor)  # zoom_by keeps its anchor itself
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.setBackgroundBrush(BACKGROUND)

    def add_layer(self, layer: QGraphicsItem, z: float) -> None:
        """Show `layer` above the image; a higher z paints later."""
        layer.setZValue(z)
        self.scene().addItem(layer)

    def set_image(self, image: QImage | str | Path | None) -> None:
        """Show an image (a file with its EXIF orientation applied, as the engine reads it), or
        none, and fit it. ValueError naming the file when it cannot be read."""
        path = None
        if image is None:
            pixmap = QPixmap()
        elif isinstance(image, QImage):
            pixmap = QPixmap.fromImage(image)
        else:
            reader = QImageReader(str(image))
            reader.setAutoTransform(True)
            # Qt refuses images over 256 MB decoded; the engine takes up to imageio.MAX_PIXELS (RGBA: 358 MB)
            QImageReader.setAllocationLimit(QT_ALLOCATION_LIMIT_MB)
            loaded = reader.read()
            if loaded.isNull():
                raise ValueError(f"{image}: cannot read the image ({reader.errorString()})")
            pixmap, path = QPixmap.fromImage(loaded), Path(image)
        self._pixmap_item.setPixmap(pixmap)
        self.image_path = path
        self.image_rect = QRectF(pixmap.rect())
        self.fit()

    # -- zoom ----------------------------------------------------------------------------------

    def zoom_factor(self) -> float:
        """Screen pixels per image pixel."""
        return self.transform().m11()

    def zoom_by(self, factor: float, anchor: QPointF | None = None) -> None:
        """Scale by `factor`; see zoom_to."""
        self.zoom_to(self.zoom_factor() * factor, anchor)

    def zoom_to(self, zoom: float, anchor: QPointF | None = None) -> None:
        """Show `zoom` screen pixels per image pixel (within ZOOM_LIMITS), keeping the image point
        under `anchor` (viewport pixels; default the viewport's centre) where it is, to within
        half a pixel."""
        anchor = QPointF(self.viewport().rect().center()) if anchor is None else QPointF(anchor)
        image_anchor = self.image_point(anchor)
        self._set_zoom(min(max(zoom, ZOOM_LIMITS[0]), ZOOM_LIMITS[1]))
        self.scroll_by(self.viewportTransform().map(image_anchor) - anchor)
        self._fitted = False

    def fit(self) -> None:
        """Show the whole image, centred, as large as the viewport allows."""
        if self.image_rect.isEmpty():
            self._set_zoom(1.0)
            return
        viewport = self.viewport().rect()
        self._set_zoom(min(viewport.width() / self.image_rect.width(), viewport.height() / self.image_rect.height()))
        self.centerOn(self.image_rect.center())
        self._fitted = True

    def actual_size(self) -> None:
        """One image pixel per screen pixel, about the viewport's centre."""
        self.zoom_to(1.0)

    def _set_zoom(self, zoom: float) -> None:
        self.setTransform(QTransform.fromScale(zoom, zoom))
        self._update_scene_rect()
        # smooth scaling only when shrinking: zoomed in, annotators want to see the pixels
        self._pixmap_item.setTransformationMode(Qt.SmoothTransformation if zoom < 1.0 else Qt.FastTransformation)
        self.zoom_changed.emit(zoom)

    def _update_scene_rect(self) -> None:
        margin_x = self.viewport().width() / self.zoom_factor()
        margin_y = self.viewport().height() / self.zoom_factor()
        self.setSceneRect(self.image_rect.adjusted(-margin_x, -margin_y, margin_x, margin_y))

    def scroll_by(self, delta: QPointF) -> None:
        """Move the view's content by -delta viewport pixels (rounded to whole pixels)."""
        self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() + round(delta.x()))
        self.verticalScrollBar().setValue(self.verticalScrollBar().value() + round(delta.y()))

    def image_point(self, position: QPointF) -> QPointF:
        """The image point under viewport `position`, in image pixels (sub-pixel)."""
        return self.viewportTransform().inverted()[0].map(QPointF(position))

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self._fitted:
            self.fit()
        else:
            self._update_scene_rect()

    def wheelEvent(self, event: QWheelEvent) -> None:
        notches = event.angleDelta().y() / 120
        if notches:
            self.zoom_by(WHEEL_ZOOM ** notches, event.position())
        event.accept()

    # -- pan -----------------------------------------------------------------------------------

    def start_pan(self, position: QPointF) -> None:
        self._pan_from = QPointF(position)
        self.viewport().setCursor(Qt.ClosedHandCursor)

    @property
    def panning(self) -> bool:
        return self._pan_from is not None

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MiddleButton or (event.button() == Qt.LeftButton and self._space_held):
            self.start_pan(event.position())
            event.accept()
        else:
            super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._pan_from is None:
            super().mouseMoveEvent(event)
            return
        self.scroll_by(self._pan_from - event.position())
        self._pan_from = event.position()
        self._fitted = False

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._pan_from is None:
            super().mouseReleaseEvent(event)
            return
        self._pan_from = None
        self.update_cursor(event.position())

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key_Space:
            if not event.isAutoRepeat():
                self._space_held = True
                self.viewport().setCursor(Qt.OpenHandCursor)
            event.accept()
        else:
            super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key_Space and not event.isAutoRepeat():
            self._space_held = False
            self.refresh_cursor()
        super().keyReleaseEvent(event)

    def update_cursor(self, position: QPointF) -> None:
        """Set the cursor for the mouse at viewport `position` when no drag is going on."""
        self.viewport().setCursor(Qt.OpenHandCursor if self._space_held else Qt.ArrowCursor)

    def refresh_cursor(self) -> None:
        self.update_cursor(QPointF(self.viewport().mapFromGlobal(QCursor.pos())))
