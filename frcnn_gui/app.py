"""`frcnn-gui [IMAGE|FOLDER] [--model ...] [--stage STAGE] [--errors] [--screenshot OUT.png]`; STAGE
is one of the stages the stage panel shows (`frcnn_core.vocabulary.STAGES`), or "funnel": the
recall funnel dock raised, its first missed GT box (else the first) chosen and its chain drawn.
With --stage saliency, --click X,Y explains the detection there and --masks sets D-RISE's masks
(a screenshot waits for the whole map).
--errors opens the Errors view once the first detections are shown and, when its analysis is in,
opens the worst image and draws the chain of its first missed box (else of its first error)."""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtWidgets import QApplication

from frcnn_core.allocator import keep_freed_memory
from frcnn_core.devices import DEVICES
from frcnn_core.names import default_model, default_weights
from frcnn_core.resources import SAMPLES
from frcnn_core.vocabulary import FUNNEL, STAGES
from frcnn_gui import excepthook, window_layout
from frcnn_gui.errors.texts import is_false_positive

SCREENSHOT_TIMEOUT_MS = 180_000
FUNNEL_DOCK_HEIGHT = 260  # room for eight rows of the table
SCREENSHOT_SETTLE_MS = 200  # after the result: let the canvas paint it
SCREENSHOT_SIZE = (1400, 900)  # the window's size in a screenshot, whatever the screen


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="frcnn-gui", description="Faster R-CNN Studio")
    parser.add_argument("path", nargs="?", default=str(SAMPLES), help="an image or a folder (default: the samples)")
    parser.add_argument("--model", default=None, help="model name or checkpoint (default: bccd-demo)")
    parser.add_argument("--weights", default=None, help="coco | imagenet | none | PATH for a model name")
    parser.add_argument("--device", choices=DEVICES, default="auto")
    parser.add_argument("--stage", choices=(*STAGES, FUNNEL), default="detections",
                        help="the stage the canvas shows, or the recall funnel")
    parser.add_argument("--screenshot", metavar="OUT.png",
                        help="render offscreen once the stage is shown (after the detections), save, exit")
    parser.add_argument("--click", metavar="X,Y", type=_point, default=None,
                        help="with --screenshot: click the image at (X, Y) original pixels once the stage is shown"
                             " (the anchors of a cell, a proposal, a RoI, a detection)")
    parser.add_argument("--masks", type=_count, default=None,
                        help="D-RISE's mask count in the saliency stage (default: the stage's own)")
    parser.add_argument("--errors", action="store_true",
                        help="open the Errors view (the folder's errors) and the chain of the worst image's first"
                             " missed box (else of its first error)")
    return parser.parse_args(argv)


def _point(text: str) -> tuple[float, float]:
    try:
        x, y = (float(value) for value in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not X,Y (two numbers)") from None
    return x, y


def _count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return count


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    keep_freed_memory()
    if not Path(args.path).exists():
        print(f"error: {args.path}: no such image or folder", file=sys.stderr)
        return 2
    if args.screenshot:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # no display needed for a picture
    from frcnn_gui.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    model = args.model or default_model()
    weights = args.weights or default_weights(model)
    if not args.screenshot:
        window = MainWindow(model, weights, args.device)
        excepthook.install(window.log.add)
        _show_stage(window, args.stage, args.masks)
        if args.errors:
            _show_errors(window)
        window.open_path(args.path)
        window.show()
        return app.exec()
    with tempfile.TemporaryDirectory() as scratch:  # a screenshot neither reads nor keeps settings
        settings = QSettings(str(Path(scratch) / "settings.ini"), QSettings.IniFormat)
        window = MainWindow(model, weights, args.device, settings=settings)
        window.resize(*SCREENSHOT_SIZE)
        excepthook.install(window.log.add)
        _show_stage(window, args.stage, args.masks)
        if args.errors:
            _show_errors(window)
        window.open_path(args.path)
        window.show()
        return _screenshot(app, window, args.screenshot, args.stage, args.click, args.errors)


def _show_stage(window, stage: str, masks: int | None = None) -> None:
    """Pick `stage` in the stage panel (with `masks`, set D-RISE's mask count once the engine is
    ready), or, for the funnel, raise its dock and, once the engine is ready, trace each image
    opened and choose the first missed GT box's row once the funnel is filled."""
    if masks is not None:
        window.engine_ready.connect(lambda: window.inspector.saliency.controls.masks.setValue(masks))
    if stage != FUNNEL:
        window.stages_panel.select(stage)
        return
    dock = window_layout.dock_of(window.funnel_panel)
    dock.show()
    dock.raise_()
    # after the first show, which gives the docks their default sizes
    QTimer.singleShot(0, lambda: window.resizeDocks([dock], [FUNNEL_DOCK_HEIGHT], Qt.Vertical))

    def chosen(rows: list) -> None:
        missed = [index for index, row in enumerate(rows) if row.lost_at is not None]
        if rows:
            window.funnel_panel.choose(missed[0] if missed else 0)

    def follow() -> None:
        inspector = window.inspector
        inspector.forgotten.connect(inspector.inspect)  # another image or model: trace it again
        inspector.funnel_changed.connect(chosen)

    window.engine_ready.connect(follow)


def _show_errors(window) -> None:
    """Open the Errors view after the first detections; once its analysis is in, open the image
    listed first (the worst) and choose its first missed box (else its first error), whose chain
    the canvas then draws."""
    errors = window.errors

    def first_detections() -> None:
        window.detections_shown.disconnect(first_detections)
        window.actions["errors"].trigger()

    def report_in() -> None:
        errors.report_shown.disconnect(report_in)
        errors.image_shown.connect(image_in)
        errors.panel.choose_line(0)

    def image_in() -> None:
        errors.image_shown.disconnect(image_in)
        missed = [index for index, error in enumerate(errors.listed) if not is_false_positive(error)]
        errors.panel.choose_error(missed[0] if missed else 0)

    window.detections_shown.connect(first_detections)
    errors.report_shown.connect(report_in)


def _screenshot(app: QApplication, window, out: str, stage: str, click: tuple[float, float] | None = None,
                errors: bool = False) -> int:
    """Wait for the first detections and, for another stage, for `stage` drawn from the image's
    inspection, and with `errors` for the Errors view's chain (or for the model, when no image can
    be detected on, or for an engine error), click the image at `click` if given, save the window
    as a PNG, exit."""
    status = {"code": None}

    def capture(code: int) -> None:
        if status["code"] is not None:
            return
        status["code"] = code
        app.processEvents()
        if not window.grab().save(out):
            print(f"error: {out}: cannot write the screenshot", file=sys.stderr)
            status["code"] = 2
        window.close()
        app.quit()

    def failed(message: str) -> None:
        print(f"error: {message}", file=sys.stderr)
        capture(2)

    def settle() -> None:  # a request still running (the model's first detections, say) settles again when done
        QTimer.singleShot(SCREENSHOT_SETTLE_MS, lambda: window.engine.is_busy or capture(0))

    waiting = {"detections", stage, *(["errors"] if errors else [])}  # the panels list the detections

    def arrived(what: str) -> None:
        if what in waiting:
            waiting.discard(what)
            if not waiting:
                if click is not None:  # the canvas's own click signal: the inspector redraws at once
                    window.canvas.point_clicked.emit(*click)
                settle()

    def follow() -> None:
        window.inspector.shown.connect(arrived)
        window.inspector.funnel_changed.connect(lambda _rows: arrived(FUNNEL))

    window.detections_shown.connect(lambda: arrived("detections"))
    window.errors.chain_shown.connect(lambda: arrived("errors"))
    window.engine.busy.connect(lambda busy: busy or waiting or settle())
    window.engine_ready.connect(follow)
    window.model_ready.connect(lambda _: window.document.image_size is None and settle())
    window.engine_failed.connect(failed)
    QTimer.singleShot(SCREENSHOT_TIMEOUT_MS, lambda: failed("timed out waiting for the engine"))
    app.exec()
    return status["code"]


if __name__ == "__main__":
    sys.exit(main())
