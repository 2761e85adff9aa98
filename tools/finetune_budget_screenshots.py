"""The README's pictures of fine-tuning by a time budget, through the application's own code path.

    QT_QPA_PLATFORM=offscreen python tools/finetune_budget_screenshots.py --images 40 --minutes 1

Copies the first N raccoon photos with their labelImg XML (../shared/data/raccoon) into a scratch
folder, opens it in the main window, opens Train → Fine-tune…, clicks Check on the default time
budget and saves the dialog (docs/images/app-finetune-budget.png, with the plan's why lines and
the anchor coverage). Then, unless --dialog-only, starts a budgeted run of `--minutes` from the
dialog and, once it is scored, saves the window with its Training run panel (--run-shot).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PySide6.QtCore import QSettings, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from frcnn_gui.main_window import MainWindow  # noqa: E402

OUT = ROOT / "docs" / "images"
RACCOON = ROOT.parent / "shared" / "data" / "raccoon"


def raccoon_folder(folder: Path, count: int) -> Path:
    """The first `count` raccoon photos (by number) with their XML, in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    notes = sorted(RACCOON.glob("raccoon-*.xml"), key=lambda path: int(path.stem.split("-")[1]))[:count]
    for note in notes:
        for path in (note, note.with_suffix(".jpg")):
            shutil.copyfile(path, folder / path.name)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--dialog-only", action="store_true", help="the dialog's picture alone, no run")
    parser.add_argument("--run-shot", default=str(Path(tempfile.gettempdir()) / "app-finetune-budget-run.png"))
    args = parser.parse_args(argv)
    app = QApplication(sys.argv[:1])
    scratch = Path(tempfile.mkdtemp())
    settings = QSettings(str(scratch / "settings.ini"), QSettings.IniFormat)
    settings.setValue("runs_dir", str(scratch / "runs"))
    window = MainWindow("bccd-demo", "none", "cpu", settings=settings)
    window.resize(1400, 900)
    window.show()
    finetuning = window.finetuning
    state = {"dialog": False, "result": None}

    def dialog_shot() -> None:
        if state["dialog"]:
            return
        state["dialog"] = True
        dialog = finetuning.dialog()
        dialog.preview.setValue(0)
        dialog.show()
        began = time.perf_counter()
        dialog.check()
        print(f"Check took {time.perf_counter() - began:.2f} s", flush=True)
        app.processEvents()
        dialog.grab().save(str(OUT / "app-finetune-budget.png"))
        if args.dialog_only:
            state["result"] = True
            app.quit()
            return
        dialog.minutes.setValue(args.minutes)
        dialog.start()
        finetuning.start(dialog.plan, dialog.preview_every())

    def finished(result) -> None:
        print(f"{result.run_dir.name}: {result.final.message}", flush=True)
        state["result"] = result
        QTimer.singleShot(3000, run_shot)

    def run_shot() -> None:
        window.grab().save(args.run_shot)
        window.close()
        app.quit()

    finetuning.runner.finished.connect(finished)
    window.detections_shown.connect(lambda: QTimer.singleShot(300, dialog_shot))
    window.open_path(raccoon_folder(scratch / "raccoons", args.images))
    app.exec()
    return 0 if state["result"] is not None else 1


if __name__ == "__main__":
    sys.exit(main())
