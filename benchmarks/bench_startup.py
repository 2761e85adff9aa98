"""Start-up: the window first, the engine after (issue 11, point 10).

Three times from process start, each in a fresh subprocess, the two kinds taking turns:
  torch       `import torch, torchvision` and nothing else;
  window      the window as `frcnn-gui` builds it (the default model, the bundled samples, the
              CPU), until it is shown (its native window exposed) ...
  detections  ... and until the first detections are drawn.
The window must be shown in at most half the time torch takes to import. Each subprocess is
handed the wall-clock time just before it was started and prints the seconds since then, so that
interpreter start-up counts in all of them alike. Offscreen (no display needed). As for a user,
Python may cache compiled bytecode (PYTHONDONTWRITEBYTECODE is lifted for the subprocesses), and
one untimed run of each kind comes first.

Run: `.venv/bin/python benchmarks/bench_startup.py [--repeats N]` (run_all.py runs it too).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD_TIMEOUT_S = 300


def torch_child(started: float) -> dict:
    import torch  # noqa: F401  (the import is what is timed)
    import torchvision  # noqa: F401

    return {"torch": time.time() - started}


def window_child(started: float) -> dict:
    """Build and show the window as `frcnn-gui` does; the times when it is exposed and when the
    first detections are drawn, and whether torch was imported when it was exposed."""
    from PySide6.QtCore import QEvent, QObject, QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    from frcnn_core.names import default_model, default_weights
    from frcnn_core.resources import SAMPLES
    from frcnn_gui.main_window import MainWindow

    app = QApplication(sys.argv[:1])
    found: dict = {}

    class Exposed(QObject):
        def eventFilter(self, watched, event) -> bool:
            if event.type() == QEvent.Expose and watched is window.windowHandle() and watched.isExposed():
                found.update(window=time.time() - started, torch_when_shown="torch" in sys.modules)
                app.removeEventFilter(self)  # it sees every event: no more Python work than the window's
            return False

    def detected() -> None:
        found.setdefault("detections", time.time() - started)
        QTimer.singleShot(0, app.quit)

    with tempfile.TemporaryDirectory() as scratch:
        settings = QSettings(str(Path(scratch) / "settings.ini"), QSettings.IniFormat)
        model = default_model()
        window = MainWindow(model, default_weights(model), "cpu", settings=settings)
        watcher = Exposed()
        app.installEventFilter(watcher)
        window.detections_shown.connect(detected)
        window.engine_failed.connect(lambda message: (found.setdefault("error", message), app.quit()))
        window.open_path(SAMPLES)
        window.show()
        app.exec()
        window.close()
    return found


def _child(kind: str) -> dict:
    """Run this file as a subprocess measuring `kind`; its JSON answer."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    started = time.time()
    done = subprocess.run([sys.executable, __file__, "--child", kind, repr(started)], capture_output=True,
                          text=True, timeout=CHILD_TIMEOUT_S, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(repeats: int = 3) -> dict:
    """Medians over `repeats` of each, taking turns; "ratio": window / torch (must be <= 0.5)."""
    from common import summary

    times: dict[str, list[float]] = {"torch": [], "window": [], "detections": []}
    torch_when_shown = []
    _child("torch"), _child("window")  # warm-up: the bytecode and the OS's file cache, as for a user
    for _ in range(repeats):
        times["torch"].append(_child("torch")["torch"])
        shown = _child("window")
        if "error" in shown:
            raise RuntimeError(f"the window's engine failed: {shown['error']}")
        times["window"].append(shown["window"])
        times["detections"].append(shown["detections"])
        torch_when_shown.append(shown["torch_when_shown"])
    stats = {name: summary(values) for name, values in times.items()}
    return {"s": stats, "ratio": stats["window"]["median"] / stats["torch"]["median"],
            "torch_when_shown": any(torch_when_shown)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each kind (default 3)")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "STARTED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, started = args.child
        print(json.dumps((torch_child if kind == "torch" else window_child)(float(started))))
        return
    result = run(args.repeats)
    for name, label in (("torch", "import torch, torchvision"), ("window", "window shown"),
                        ("detections", "first detections")):
        stats = result["s"][name]
        print(f"{label:26s} median {stats['median']:6.2f} s   min {stats['min']:6.2f} s   (n={stats['n']})")
    print(f"window / torch import: {result['ratio']:.2f} (at most 0.5); torch imported when the window was shown: "
          f"{'yes' if result['torch_when_shown'] else 'no'}")


if __name__ == "__main__":
    main()
