"""Render the README's application screenshots offscreen (docs/images/app-*.png).

    QT_QPA_PLATFORM=offscreen python tools/readme_screenshots.py
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PySide6.QtCore import QSettings, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from frcnn_core.resources import SAMPLES  # noqa: E402
from frcnn_gui.main_window import MainWindow  # noqa: E402

SAMPLE = SAMPLES / "BloodImage_00014.jpg"
OUT = ROOT / "docs" / "images"


def main() -> None:
    app = QApplication(sys.argv[:1])
    settings = QSettings(str(Path(tempfile.mkdtemp()) / "settings.ini"), QSettings.IniFormat)
    window = MainWindow("bccd-demo", "none", "cpu", settings=settings)
    window.resize(1400, 900)
    window.show()
    shots = iter(("detections", "annotating"))

    def shoot() -> None:
        name = next(shots, None)
        if name == "detections":
            window.grab().save(str(OUT / "app-detections.png"))
            first = next(iter(window.document.boxes))
            window.canvas.set_selection([first])
            window.canvas.set_mode("draw")
            window.canvas.zoom_by(1.6)
            QTimer.singleShot(300, shoot)
        elif name == "annotating":
            window.grab().save(str(OUT / "app-annotating.png"))
            window.close()
            app.quit()

    window.detections_shown.connect(lambda: QTimer.singleShot(300, shoot))
    window.open_path(SAMPLE)
    app.exec()


if __name__ == "__main__":
    main()
