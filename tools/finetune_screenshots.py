"""The BCCD fine-tuning check through the application's own code path, with the README's pictures.

    QT_QPA_PLATFORM=offscreen python tools/finetune_screenshots.py --iters 150 --runs runs/readme

Builds the folder of `tools/finetune_report.py` (the first 20 BCCD train images with their XML,
plus the 87 val images to validate on), opens it in the main window, plans the run in the
Fine-tune dialog (docs/images/app-finetune-dialog.png), starts it through the window's
`FinetuneController` (training thread, live previews on the canvas; docs/images/app-finetune-
running.png at a third of the run) and prints val AP50 before and after, per class, and the wall
time. Then a short second run fine-tunes bccd-demo on the same 20 images; once the window has
switched to it and compared both models on the image shown, docs/images/app-finetune-after.png.
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

from frcnn_core.data.augment import AugmentConfig  # noqa: E402
from frcnn_core.training.finetune import plan_finetune  # noqa: E402
from frcnn_gui.main_window import MainWindow  # noqa: E402

from finetune_report import make_folder, print_scores, split_ids  # noqa: E402

OUT = ROOT / "docs" / "images"
AFTER_ITERS = 30  # the second, short run (from bccd-demo) whose before / after the last picture shows
SHOWN_IMAGE = "BloodImage_00014.jpg"  # a val image with RBC, WBC and platelets (the README's other pictures)


def report(result) -> None:
    print_scores(result.metrics)
    comparison = result.comparison
    if comparison is None:
        return
    print(f"validation detections (score >= 0.5): {comparison.gained} gained, {comparison.lost} lost, "
          f"{comparison.changed_class} changed class, {comparison.kept} kept", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=150)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--runs", default=str(ROOT / "runs" / "readme"))
    parser.add_argument("--after-only", action="store_true",
                        help="skip the measured run: only the short bccd-demo run and its picture")
    args = parser.parse_args(argv)
    app = QApplication(sys.argv[:1])
    folder = Path(args.runs) / "bccd-folder"  # kept, so that the runs' plans stay valid (reopen, re-score)
    folder.mkdir(parents=True, exist_ok=True)
    train_ids, val_ids = split_ids("train")[: args.images], split_ids("val")
    make_folder(folder, train_ids + val_ids)
    settings = QSettings(str(Path(tempfile.mkdtemp()) / "settings.ini"), QSettings.IniFormat)
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
        choices = [dialog.base.itemData(index) for index in range(dialog.base.count())]
        dialog.base.setCurrentIndex(choices.index(("mobilenet-v2", "imagenet")))
        dialog.by_iterations.setChecked(True)
        dialog.iterations.setValue(args.iters)
        dialog.check()
        dialog.show()
        app.processEvents()
        dialog.grab().save(str(OUT / "app-finetune-dialog.png"))
        dialog.close()
        if args.after_only:
            state["result"] = True
            start_after_run()
            return
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
        print(f"{result.run_dir.name}: trained and scored in {time.perf_counter() - state['began']:.0f} s "
              f"({result.seconds_per_iteration:.2f} s per iteration)", flush=True)
        report(result)
        if state["result"] is None:  # the measured run; then a short one from bccd-demo for the picture
            state["result"] = result
            QTimer.singleShot(2000, start_after_run)
        else:
            state["after"] = result
            question = finetuning.switch_question  # asked when validation AP50 fell: the picture shows the new model
            if question is not None:
                next(button for button in question.buttons() if button.text() == "Use the new model").click()

    def start_after_run() -> None:
        state["began"] = time.perf_counter()
        plan = plan_finetune(str(folder), args.runs, "bccd-demo", "none", iters=AFTER_ITERS, lr=0.005,
                             batch_size=2, device="cpu", val_images=tuple(f"{i}.jpg" for i in val_ids),
                             augment=AugmentConfig(hflip=0.5, vflip=0.5), name="bccd-demo-20-images-gui")
        finetuning.start(plan)

    def compared(comparison) -> None:
        if state.get("after") is None or not window.model_name.startswith(str(state["after"].run_dir)):
            return
        window.actions["show_comparison"].setChecked(True)
        finetuning.set_comparison_shown(True)
        QTimer.singleShot(1500, after_shot)

    def after_shot() -> None:
        window.grab().save(str(OUT / "app-finetune-after.png"))
        window.close()
        app.quit()

    finetuning.runner.progress.connect(progressed)
    finetuning.runner.finished.connect(finished)
    finetuning.runner.image_compared.connect(compared)
    window.detections_shown.connect(lambda: QTimer.singleShot(300, dialog_shot))
    window.open_path(folder / SHOWN_IMAGE)
    app.exec()
    return 0 if state.get("after") is not None else 1


if __name__ == "__main__":
    sys.exit(main())
