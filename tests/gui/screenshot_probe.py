"""Run `frcnn-gui ... --screenshot OUT` (as `frcnn_gui.app.main`) and, as the screenshot closes
the window, note where the canvas lies in the window and render the window once more with the
stage inspector's layers hidden: `python screenshot_probe.py PROBE.npz APP-ARGS...` writes
`canvas` (x, y, width, height) and `bare` (H, W, 3 uint8) to PROBE.npz and exits with main's code.
A subprocess of the test, as the user's command is: the window's engine thread ends with it."""
from __future__ import annotations

import sys

import numpy as np
from PySide6.QtCore import QPoint
from PySide6.QtGui import QImage

from frcnn_gui import app
from frcnn_gui.main_window import MainWindow


def rgb(image: QImage) -> np.ndarray:
    image = image.convertToFormat(QImage.Format_RGB888)
    rows = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine())
    return rows[:, : image.width() * 3].reshape(image.height(), image.width(), 3).copy()


def stage_layers(window: MainWindow) -> list:
    """What the stage inspector draws over the photo: the stage's boxes, a followed chain, a heatmap,
    a saliency map."""
    inspector = window.inspector
    return [inspector.layer, inspector.chain_layer, inspector.heatmap, inspector.saliency.layer]


def main(probe: str, argv: list[str]) -> int:
    close = MainWindow.close

    def close_and_record(window: MainWindow) -> bool:
        viewport = window.canvas.viewport()
        corner = viewport.mapTo(window, QPoint(0, 0))
        layers = stage_layers(window)
        visible = [layer.isVisible() for layer in layers]
        for layer in layers:
            layer.setVisible(False)
        bare = rgb(window.grab().toImage())
        for layer, was in zip(layers, visible, strict=True):
            layer.setVisible(was)
        np.savez(probe, canvas=np.array([corner.x(), corner.y(), viewport.width(), viewport.height()]), bare=bare)
        return close(window)

    MainWindow.close = close_and_record
    return app.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
