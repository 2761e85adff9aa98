"""The stages drawn as pictures rather than boxes: the objectness heatmap and a saliency map over
the image (each one `HeatmapLayer` item under the stage's box layer) and a RoI's pooled features as
small heatmaps.
Functions of trace records and tensors; Qt only for the images and the item."""
from __future__ import annotations

import numpy as np
import torch
from PySide6.QtCore import QRectF
from PySide6.QtGui import QImage, QPainter
from PySide6.QtWidgets import QGraphicsItem

HEATMAP_ALPHA, HEATMAP_FLOOR = 210, 70  # the opacity of a score-1 and a score-0 cell
SALIENCY_ALPHA = 200  # a saliency map's opacity at its highest; 0 where it is 0, so that the photo shows
SALIENCY_TOP = 2 / 3  # heat_image's ramp up to yellow: its white would vanish on a pale photo
STRONGEST_CHANNELS = 3


def objectness_map(trace, level: int, shape: int | None = None) -> np.ndarray:
    """(H, W) float32 in [0, 1]: per feature cell of `level`, the objectness probability of anchor
    shape `shape` (ratio-major, then size), or the highest over the cell's shapes when None."""
    start = sum(height * width * shapes for (height, width), shapes
                in zip(trace.anchors.grid_sizes[:level], trace.anchors.shapes_per_cell[:level], strict=True))
    (height, width), shapes = trace.anchors.grid_sizes[level], trace.anchors.shapes_per_cell[level]
    logits = trace.objectness.logits[start: start + height * width * shapes]
    # (H*W*shapes,) -> (H, W, shapes): anchors are laid out cell by cell, shapes within a cell
    per_shape = torch.sigmoid(logits.float()).reshape(height, width, shapes)
    return (per_shape.amax(dim=2) if shape is None else per_shape[:, :, shape]).numpy()


def likely_per_level(trace) -> list[int]:
    """Per feature level, how many of its anchors score above 0.5: more likely an object than
    background."""
    likely = torch.sigmoid(trace.objectness.logits.float()) > 0.5
    return [int(likely[trace.anchors.level == level].sum()) for level in range(len(trace.anchors.grid_sizes))]


def liveliest_level(trace) -> int:
    """The level where the image's objectness is: the one with the most anchors above 0.5 (the
    finer on a tie); with none above 0.5, the one holding the highest score."""
    counts = likely_per_level(trace)
    if max(counts) > 0:
        return counts.index(max(counts))
    return int(trace.anchors.level[trace.objectness.logits.argmax()])


def shape_names(config_anchors, level: int) -> list[str]:
    """The anchor shapes of one cell of `level` in layout order (ratio-major, then size)."""
    return [f"ratio {ratio:g}, size {size:g}" for ratio in config_anchors.aspect_ratios[level]
            for size in config_anchors.sizes[level]]


def heat_image(values: np.ndarray, alpha: np.ndarray | None = None) -> QImage:
    """values (H, W) in [0, 1] as an RGBA QImage, black through red and yellow to white ("hot");
    alpha (H, W) uint8, opaque when None."""
    ramp = np.clip(values.astype(np.float32)[..., None] * 3 - np.arange(3, dtype=np.float32), 0, 1)  # (H, W, 3)
    opacity = np.full(values.shape, 255, np.uint8) if alpha is None else alpha
    pixels = np.ascontiguousarray(np.dstack([(ramp * 255).astype(np.uint8), opacity]))
    height, width = values.shape
    return QImage(pixels.data, width, height, width * 4, QImage.Format_RGBA8888).copy()


def saliency_image(heatmap: np.ndarray) -> QImage | None:
    """A saliency map (H, W) as an RGBA image of the same size: its positive part divided by its
    highest value, dark red through yellow, as opaque as it is high (none at 0, SALIENCY_ALPHA at
    the highest); None when no value is positive."""
    positive = np.clip(heatmap.astype(np.float32), 0, None)
    highest = float(positive.max())
    if highest <= 0:
        return None
    values = positive / highest
    return heat_image(values * SALIENCY_TOP, (values * SALIENCY_ALPHA).astype(np.uint8))


def normalised(values: np.ndarray) -> np.ndarray:
    """values scaled to [0, 1] by their own range (all 0 when constant)."""
    low, high = float(values.min()), float(values.max())
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


def objectness_heatmap(trace, level: int, shape: int | None = None) -> tuple[QImage, QRectF]:
    """The heatmap of `level` and where it lies in original pixels: cell (i, j) covers input
    pixels [j*sx, (j+1)*sx) x [i*sy, (i+1)*sy), so the last cells may reach past the image."""
    scores = objectness_map(trace, level, shape)
    stride_y, stride_x = trace.anchors.strides[level]
    per_input_y = trace.image_size[0] / trace.input_size[0]
    per_input_x = trace.image_size[1] / trace.input_size[1]
    height, width = scores.shape
    target = QRectF(0, 0, width * stride_x * per_input_x, height * stride_y * per_input_y)
    # a floor of opacity: the low-score cells darken the image, so the map reads as a map
    alpha = HEATMAP_FLOOR + scores * (HEATMAP_ALPHA - HEATMAP_FLOOR)
    return heat_image(scores, alpha.astype(np.uint8)), target


def feature_maps(pooled: torch.Tensor) -> list[tuple[QImage, str]]:
    """pooled (C, h, w) as small heatmaps: the channel mean, then the STRONGEST_CHANNELS channels
    with the highest mean activation, each normalised to its own range."""
    strength = pooled.float().mean(dim=(1, 2))
    strongest = torch.argsort(strength, descending=True)[:STRONGEST_CHANNELS].tolist()
    maps = [(pooled.float().mean(dim=0), "mean")] + [(pooled[channel].float(), f"ch {channel}")
                                                     for channel in strongest]
    return [(heat_image(normalised(values.numpy())), caption) for values, caption in maps]


class HeatmapLayer(QGraphicsItem):
    """One image drawn scaled onto a rectangle of the scene (original pixels), clipped to the
    image, cells kept square-edged (no smoothing)."""

    def __init__(self, parent: QGraphicsItem | None = None):
        super().__init__(parent)
        self.image, self.target, self.clip = QImage(), QRectF(), QRectF()

    def set_image(self, image: QImage, target: QRectF, clip: QRectF) -> None:
        self.prepareGeometryChange()
        self.image, self.target, self.clip = image, target, clip
        self.update()

    def boundingRect(self) -> QRectF:
        return self.target.intersected(self.clip)

    def paint(self, painter: QPainter, option, widget=None) -> None:
        if self.image.isNull():
            return
        painter.setClipRect(self.clip)
        painter.setRenderHint(QPainter.SmoothPixmapTransform, False)
        painter.drawImage(self.target, self.image)
