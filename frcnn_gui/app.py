"""`frcnn-gui [IMAGE|FOLDER] [--model ...] [--stage detections] [--screenshot OUT.png]`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PySide6.QtCore import QSettings, QTimer
from PySide6.QtWidgets import QApplication

from frcnn_core.zoo import BUNDLED

SAMPLES = Path(__file__).resolve().parents[1] / "resources" / "samples"
SCREENSHOT_TIMEOUT_MS = 180_000


def default_model() -> str:
    return "bccd-demo" if BUNDLED["bccd-demo"].exists() else "mobilenet-v2"


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="frcnn-gui", description="Faster R-CNN Studio")
    parser.add_argument("path", nargs="?", default=str(SAMPLES), help="an image or a folder (default: the samples)")
    parser.add_argument("--model", default=None, help="model name or checkpoint (default: bccd-demo)")
    parser.add_argument("--weights", default=None, help="coco | imagenet | none | PATH for a model name")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--stage", choices=("detections",), default="detections",
                        help="what the canvas shows (the other stages arrive with the stage inspector)")
    parser.add_argument("--screenshot", metavar="OUT.png", help="render offscreen after the detections, save, exit")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from frcnn_gui.actions import _default_weights
    from frcnn_gui.main_window import MainWindow

    args = parse(argv)
    if not Path(args.path).exists():
        print(f"error: {args.path}: no such image or folder", file=sys.stderr)
        return 2
    app = QApplication.instance() or QApplication(sys.argv[:1])
    model = args.model or default_model()
    weights = args.weights or _default_weights(model)
    settings = QSettings("frcnn-studio", "screenshot" if args.screenshot else "Faster R-CNN Studio")
    window = MainWindow(model, weights, args.device, settings=settings)
    window.open_path(args.path)
    window.show()
    if args.screenshot:
        return _screenshot(app, window, args.screenshot)
    return app.exec()


def _screenshot(app: QApplication, window, out: str) -> int:
    """Wait for the first detections (or an engine error), save the window as a PNG, exit."""
    status = {"code": 1}

    def capture(code: int) -> None:
        app.processEvents()
        window.grab().save(out)
        status["code"] = code
        window.close()
        app.quit()

    window.detections_shown.connect(lambda: QTimer.singleShot(200, lambda: capture(0)))
    window.engine_failed.connect(lambda message: (print(f"error: {message}", file=sys.stderr), capture(2)))
    QTimer.singleShot(SCREENSHOT_TIMEOUT_MS, lambda: capture(3))
    app.exec()
    return status["code"]


if __name__ == "__main__":
    sys.exit(main())
