"""Fine-tuning from the main window, as a user runs it: the dialog plans a run on the open folder,
the run trains in its thread with live previews on the canvas and curves in the Training run
panel, the window switches to the fine-tuned model (the previous one stays one action away),
says on the image shown that a random-weight base has no detector to compare with, and asks
before closing during a run."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QMessageBox

from frcnn_core.modeling.zoo import build_model
from frcnn_gui.main_window import MainWindow

from datasets import write_tiny_dataset

FAST_MODEL = "mobilenet-v3-320-fpn"
TIMEOUT_MS = 240_000


@pytest.fixture
def window(qtbot, tmp_path):
    folder = write_tiny_dataset(tmp_path / "data")
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)
    settings.setValue("runs_dir", str(tmp_path / "runs"))
    main = MainWindow(FAST_MODEL, "none", "cpu", settings=settings)
    qtbot.addWidget(main)
    with qtbot.waitSignal(main.detections_shown, timeout=TIMEOUT_MS):
        main.open_path(folder)
        main.show()
    yield main
    main.finetuning.runner.shutdown()


def planned(window, iterations: int):
    """The plan the Fine-tune dialog makes for the open folder and the current model."""
    dialog = window.finetuning.dialog()
    assert dialog.data_current.isChecked() and dialog.base.currentData() == (FAST_MODEL, "none")
    dialog.by_iterations.setChecked(True)
    dialog.iterations.setValue(iterations)
    plan = dialog.check()
    assert plan is not None, dialog.error.text()
    assert Path(plan.settings.out).parent == Path(window.settings.value("runs_dir"))
    return plan


def test_a_run_from_the_window_previews_switches_model_and_compares(qtbot, window):
    finetuning = window.finetuning
    plan = planned(window, iterations=6)
    previews = []
    finetuning.runner.preview.connect(previews.append)
    with qtbot.waitSignal(window.model_ready, timeout=TIMEOUT_MS) as switched:
        finetuning.start(plan, preview_every=3)
        assert window.finetuning.run_panel.cancel_button.isVisible() or finetuning.runner.is_running()
    checkpoint = Path(plan.settings.out) / "final.pt"
    assert switched.args[0] == str(checkpoint) == window.model_name
    assert finetuning.previous_model == (FAST_MODEL, "none")
    assert [preview.iteration for preview in previews] == [3, 6]
    assert all(Path(preview.image_path) == window.document.current_path for preview in previews)
    curves = finetuning.run_panel.curves
    assert "loss_classifier" in curves.names() and len(curves.data("loss_classifier")[0]) == 6
    table = finetuning.run_panel.comparison.table
    assert [table.verticalHeaderItem(row).text() for row in range(3)] == ["AP", "AP50", "AP75"]
    metrics = finetuning.run_panel.comparison.isVisible() or finetuning.run_panel.comparison.isVisibleTo(window)
    assert metrics and table.item(1, 1).text() != ""
    assert [run.name for run in finetuning.runs_panel.runs] == [Path(plan.settings.out).name]
    # the before / after comparison on the image shown, drawn when asked
    second = window.document.images[1].path
    with qtbot.waitSignal(finetuning.runner.image_compared, timeout=TIMEOUT_MS,
                          check_params_cb=lambda compared: Path(compared.image_path) == second) as compared:
        window.step_image(1)
    assert window.document.current_path == second
    window.actions["show_comparison"].trigger()
    assert finetuning.compare_layer.isVisible()
    # random weights have no detector to compare with: the reason, and no "lost" boxes
    assert compared.args[0].comparison is None and len(finetuning.compare_layer._boxes) == 0
    assert finetuning.run_panel.comparison.note.text().startswith("before: no detector yet")
    # the previous model is one action away, and the fine-tuned one one action back
    with qtbot.waitSignal(window.model_ready, timeout=TIMEOUT_MS) as back:
        window.actions["previous_model"].trigger()
    assert back.args[0] == FAST_MODEL
    with qtbot.waitSignal(window.model_ready, timeout=TIMEOUT_MS) as again:
        window.actions["previous_model"].trigger()
    assert again.args[0] == str(checkpoint)


@pytest.mark.parametrize("answer", [QMessageBox.No, QMessageBox.Yes])
def test_closing_during_a_run_asks_then_cancels_cleanly(qtbot, window, monkeypatch, answer):
    finetuning = window.finetuning
    plan = planned(window, iterations=200)
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *args, **kwargs: asked.append(args[1]) or answer)
    with qtbot.waitSignal(finetuning.runner.progress, timeout=TIMEOUT_MS,
                          check_params_cb=lambda progress: progress.event == "iteration"):
        finetuning.start(plan)
    window.close()
    assert asked == ["Fine-tuning is running"]
    if answer == QMessageBox.No:
        assert window.isVisible() and finetuning.runner.is_running()
        finetuning.runner.cancel()
        qtbot.waitUntil(lambda: not finetuning.runner.is_running(), timeout=TIMEOUT_MS)
        return
    assert not window.isVisible() and not finetuning.runner.is_running()
    last = Path(plan.settings.out) / "last.pt"
    stored = torch.load(last, map_location="cpu", weights_only=True)  # a whole checkpoint, loadable
    assert 0 < int(stored["iteration"]) < 200
    assert build_model(str(last)).class_names == plan.class_names


def test_the_before_after_layer_draws_lost_changed_and_gained_boxes(window):
    from frcnn_core.analysis.compare_models import ClassOverlap, compare_on_image
    from frcnn_gui.finetune.controller import CHANGED, GAINED, LOST
    from frcnn_gui.finetune.messages import ImageComparison

    def found(*rows):  # (x1, y1, x2, y2, label, score)
        values = torch.tensor(rows, dtype=torch.float32).reshape(-1, 6)
        return {"boxes": values[:, :4], "labels": values[:, 4].long(), "scores": values[:, 5]}

    # before: cat on A (kept), dog on B (becomes a cat), cat on C (lost); after adds a dog on D (gained)
    before = found((0, 0, 10, 10, 1, 0.9), (20, 0, 30, 10, 2, 0.8), (40, 0, 50, 10, 1, 0.7))
    after = found((0, 0, 10, 10, 1, 0.9), (20, 0, 30, 10, 1, 0.6), (60, 0, 70, 10, 2, 0.95))
    comparison = compare_on_image(before, after)
    assert (comparison.kept, comparison.changed_class, comparison.gained, comparison.lost) == (1, 1, 1, 1)
    window.finetuning._image_compared(ImageComparison(str(window.document.current_path), Path("run"), before, after,
                                                      ["__background__", "cat", "dog"], comparison,
                                                      ClassOverlap(("cat", "dog"), ("cat", "dog"))))
    layer = window.finetuning.compare_layer
    assert layer._boxes.tolist() == [[40, 0, 50, 10], [20, 0, 30, 10], [60, 0, 70, 10]]
    assert layer._labels == ["lost: cat 0.70", "dog → cat 0.60", "gained: dog 0.95"]
    assert [layer._pens[pen].color().name() for pen in layer._pen_index] == [
        colour.name() for colour in (LOST, CHANGED, GAINED)]
    changes = window.finetuning.run_panel.comparison.changes["image"].text()
    assert "1 gained · 1 lost · 1 changed class · 1 kept" in changes
