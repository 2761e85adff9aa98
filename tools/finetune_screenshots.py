"""The BCCD fine-tuning check through the application's own code path, with the README's pictures.

    QT_QPA_PLATFORM=offscreen python tools/finetune_screenshots.py --iters 150 --runs runs/readme

Builds the folder of `tools/finetune_report.py` (the first 20 BCCD train images with their XML,
plus the 87 val images to validate on), opens it in the main window, plans the run in the
Fine-tune dialog (docs/images/app-finetune-dialog.png), starts it through the window's
`FinetuneController` (training thread, live previews on the canvas; docs/images/app-finetune-
running.png at a third of the run), and once the window has switched to the fine-tuned model and
compared both models on the image shown, saves docs/images/app-finetune-after.png. Prints val
AP50 before and after, per class, and the wall time.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from PySide6.QtCore import QSettings, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from finetune_report import make_folder, split_ids  # noqa: E402
from frcnn_core.data.augment import AugmentConfig  # noqa: E402
from frcnn_core.finetune import plan_finetune  # noqa: E402
from frcnn_gui.main_window import MainWindow  # noqa: E402

OUT = ROOT / "docs" / "images"
SHOWN_IMAGE = "BloodImage_00014.jpg"  # a val image with RBC, WBC and platelets (the README's other pictures)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=150)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--runs", default=str(ROOT / "runs" / "readme"))
    args = parser.parse_args(argv)
    app = QApplication(sys.argv[:1])
    temp = tempfile.TemporaryDirectory(prefix="bccd-folder-")
    folder = Path(temp.name)
    train_ids, val_ids = split_ids("train")[: args.images], split_ids("val")
    make_folder(folder, train_ids + val_ids)
    settings = QSettings(str(folder / "settings.ini"), QSettings.IniFormat)
    settings.setValue("runs_dir", args.runs)
    window = MainWindow("bccd-demo", "none", "cpu", settings=settings)
    window.resize(1400, 900)
    window.show()
    finetuning = window.finetuning
    state = {"began": 0.0, "dialog": False, "shot": False, "result": None}

    def dialog_shot() -> None:
        if state["dialog"]:
            return
        state["dialog"] = True
        dialog = finetuning.dialog()
        dialog.base.setCurrentIndex(dialog.base.findData(("mobilenet-v2", "imagenet")))
        dialog.iterations.setValue(args.iters)
        dialog.check()
        dialog.show()
        app.processEvents()
        dialog.grab().save(str(OUT / "app-finetune-dialog.png"))
        dialog.close()
        # the measured run: the report's plan (20 train images, BCCD val to validate on)
        plan = plan_finetune(str(folder), args.runs, "mobilenet-v2", "imagenet", iters=args.iters, lr=0.02,
                             batch_size=2, device="cpu", val_images=tuple(f"{i}.jpg" for i in val_ids),
                             augment=AugmentConfig(hflip=0.5, vflip=0.5), name=f"bccd-{args.images}-images-gui")
        state["began"] = time.perf_counter()
        finetuning.start(plan, preview_every=10)

    def progressed(progress) -> None:
        if progress.event == "iteration" and progress.iteration >= args.iters // 3 and not state["shot"]:
            state["shot"] = True
            QTimer.singleShot(500, lambda: window.grab().save(str(OUT / "app-finetune-running.png")))

    def finished(result) -> None:
        state["result"] = result
        print(f"trained and scored in {time.perf_counter() - state['began']:.0f} s "
              f"({result.seconds_per_iteration:.2f} s per iteration)", flush=True)

    def compared(comparison) -> None:
        if state["result"] is None or window.model_name.endswith("bccd-demo"):
            return
        window.actions["show_comparison"].setChecked(True)
        finetuning.set_comparison_shown(True)
        QTimer.singleShot(1500, after_shot)

    def after_shot() -> None:
        window.grab().save(str(OUT / "app-finetune-after.png"))
        metrics = state["result"].metrics
        before = metrics["before"]
        print(f"val AP50 before {before['AP50']:.3f} -> after {metrics['AP50']:.3f} "
              f"(AP {before['AP']:.3f} -> {metrics['AP']:.3f}; {metrics['val_images']} val images)")
        for name, value in metrics["per_class_AP50"].items():
            print(f"  {name:10s} AP50 {before['per_class_AP50'].get(name, 0.0):.3f} -> {value:.3f}")
        print(f"validation: {state['result'].comparison}"[:300])
        window.close()
        app.quit()

    finetuning.runner.progress.connect(progressed)
    finetuning.runner.finished.connect(finished)
    finetuning.runner.image_compared.connect(compared)
    window.detections_shown.connect(lambda: QTimer.singleShot(300, dialog_shot))
    window.open_path(folder / SHOWN_IMAGE)
    app.exec()
    temp.cleanup()
    return 0 if state["result"] is not None else 1


if __name__ == "__main__":
    sys.exit(main())
