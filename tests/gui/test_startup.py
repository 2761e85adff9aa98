"""The window first, the engine after: in a fresh process, building and showing the main window
imports no torch; the engine's thread imports it afterwards (never the UI thread), the stage
inspector is built once the engine is ready, and the first detections arrive. The timings are
benchmarks/bench_startup.py's."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from PIL import Image

from frcnn_core.resources import SAMPLES

ROOT = Path(__file__).resolve().parents[2]
CHILD = textwrap.dedent("""
    import json, sys, threading
    from PySide6.QtCore import QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    found = {}

    class TorchImport:  # notes which thread asks for torch first
        def find_spec(self, name, path=None, target=None):
            if name == "torch" and "torch_on_ui_thread" not in found:
                found["torch_on_ui_thread"] = threading.current_thread() is threading.main_thread()
            return None

    sys.meta_path.insert(0, TorchImport())
    app = QApplication([])
    from frcnn_gui.main_window import MainWindow

    window = MainWindow("mobilenet-v3-320-fpn", "none", "cpu", settings=QSettings(sys.argv[1], QSettings.IniFormat))
    window.open_path(sys.argv[2])
    window.show()
    found.update(torch_when_shown="torch" in sys.modules, status_when_shown=window.status.stage_label.text(),
                 inspector_when_shown=window.inspector is not None)

    def ready():
        found.update(torch_when_ready="torch" in sys.modules, inspector_when_ready=window.inspector is not None)

    def finish(key, value):
        found.setdefault(key, value)
        app.quit()

    window.engine_ready.connect(ready)
    window.detections_shown.connect(lambda: finish("detected", True))
    window.engine_failed.connect(lambda message: finish("error", message))
    QTimer.singleShot(120_000, lambda: finish("error", "timed out"))
    app.exec()
    window.close()
    print(json.dumps(found))
""")


def test_the_window_is_shown_before_torch_is_imported_and_the_engine_imports_it(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    Image.open(SAMPLES / "rocket.jpg").convert("RGB").crop((0, 0, 160, 120)).save(folder / "rocket.jpg")
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen",
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "settings.ini"), str(folder)],
                          capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert "error" not in found, found
    assert found["torch_when_shown"] is False and found["inspector_when_shown"] is False
    assert found["status_when_shown"] == "loading model…"
    assert found["torch_on_ui_thread"] is False  # the engine's thread imported it
    assert found["torch_when_ready"] and found["inspector_when_ready"] and found["detected"]
