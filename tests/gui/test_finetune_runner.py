"""FinetuneRunner trains for real on four tiny images (random-weight MobileNetV3-320, a few
iterations): progress and previews arrive as detached data, a run cancels within an iteration
and resumes from its last.pt, a finished run is scored and compared, failures come as one line,
the progress stream is thinned without losing its end, and the UI thread's event loop stays
responsive while training runs (`pytest -s` prints the stall percentiles)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PySide6.QtCore import Qt, QTimer

from frcnn_core.analysis.compare_models import Comparison
from frcnn_core.modeling.checkpoints import save_checkpoint
from frcnn_core.modeling.zoo import build_model
from frcnn_core.training.finetune import load_plan, plan_finetune
from frcnn_core.training.train import Progress
from frcnn_core.vocabulary import COMPARABLE, NO_DETECTOR
from frcnn_gui.finetune import runner as runner_module
from frcnn_gui.finetune.messages import FinetuneResult, ImageComparison, PreviewDetections
from frcnn_gui.finetune.runner import PROGRESS_INTERVAL_MS, FinetuneRunner

from datasets import write_tiny_dataset

FAST_MODEL = "mobilenet-v3-320-fpn"
TIMEOUT_MS = 180_000  # two shared CPU cores: an iteration takes 0.5-2 s
PROBE_INTERVAL_MS = 5


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("finetune") / "data")


@pytest.fixture(scope="module")
def cat_dog_base(tmp_path_factory) -> str:
    """A checkpoint of FAST_MODEL whose head detects cat and dog (random weights): a base model
    that a run on the tiny cats and dogs compares with."""
    path = tmp_path_factory.mktemp("base") / "cats-and-dogs.pt"
    torch.manual_seed(0)
    model = build_model(FAST_MODEL, "none", class_names=["__background__", "cat", "dog"])
    save_checkpoint(path, model.model_name, model.config, model.class_names, model.state_dict())
    return str(path)


def plan_for(dataset, runs_dir, iters: int, base: str = FAST_MODEL):
    """A run from `base` (default: FAST_MODEL with random weights, which has no detector yet)."""
    return plan_finetune(str(dataset), str(runs_dir), base, "none", val_fraction=0.25, iters=iters,
                         batch_size=2, device="cpu")


@pytest.fixture
def runner(qtbot):
    client = FinetuneRunner()
    yield client
    client.shutdown()


def collect(signal) -> list:
    received = []
    signal.connect(received.append)
    return received


def test_a_run_trains_previews_finishes_and_is_scored(qtbot, runner, dataset, tmp_path, cat_dog_base):
    plan = plan_for(dataset, tmp_path / "runs", iters=6, base=cat_dog_base)
    records, previews = collect(runner.progress), collect(runner.preview)
    with qtbot.waitSignal(runner.finished, timeout=TIMEOUT_MS) as finished:
        runner.start(plan, preview_image=str(dataset / "img1.png"), preview_every=3)
        assert runner.is_running()
    result = finished.args[0]
    assert isinstance(result, FinetuneResult) and not runner.is_running()
    assert result.final.event == "done" and result.run_dir == tmp_path / "runs" / result.run_dir.name
    events = [record.event for record in records]
    assert events[0] == "started" and events[-1] == "done"
    iterations = [record.iteration for record in records if record.event == "iteration"]
    assert iterations == sorted(iterations) and iterations[-1] == 6
    assert [preview.iteration for preview in previews] == [3, 6]
    for preview in previews:
        assert isinstance(preview, PreviewDetections) and preview.class_names == plan.class_names
        assert preview.boxes.shape[1:] == (4,) and len(preview.boxes) == len(preview.labels) == len(preview.scores)
        assert all(t.device.type == "cpu" and not t.requires_grad for t in (preview.boxes, preview.scores))
    assert set(result.metrics) >= {"AP", "AP50", "AP75", "per_class_AP50", "before_after"}
    assert result.metrics["before_after"]["verdict"] == COMPARABLE
    assert (result.run_dir / "metrics.json").is_file()
    assert isinstance(result.comparison, Comparison) and len(result.comparison.per_image) == len(plan.val_images)
    assert result.seconds_per_iteration > 0 and result.device == "cpu"
    assert runner.last_timing == (result.seconds_per_iteration, "cpu")

    with qtbot.waitSignal(runner.image_compared, timeout=TIMEOUT_MS) as compared:
        runner.compare_image(plan, str(dataset / "img2.png"))
    image = compared.args[0]
    assert isinstance(image, ImageComparison) and image.class_names == plan.class_names
    assert image.overlap.verdict == COMPARABLE
    assert image.comparison.kept + image.comparison.gained + image.comparison.changed_class == \
        int((image.after["scores"] >= 0.5).sum())

    with qtbot.waitSignal(runner.failed, timeout=TIMEOUT_MS) as failed:
        runner.start(plan)  # not a resume: the folder already holds this run
    assert "already holds a run" in failed.args[0] and "\n" not in failed.args[0]


def test_cancel_stops_within_an_iteration_and_resume_finishes(qtbot, runner, dataset, tmp_path):
    plan = plan_for(dataset, tmp_path / "runs", iters=6)
    with qtbot.waitSignal(runner.progress, timeout=TIMEOUT_MS, check_params_cb=lambda p: p.event == "iteration"):
        runner.start(plan)
    with qtbot.waitSignal(runner.finished, timeout=TIMEOUT_MS) as finished:
        runner.cancel()
    cancelled = finished.args[0]
    assert cancelled.final.event == "cancelled" and cancelled.final.iteration < 6
    assert cancelled.metrics is None and cancelled.comparison is None
    assert build_model(str(cancelled.run_dir / "last.pt")).class_names == plan.class_names  # a consistent checkpoint

    records = collect(runner.progress)
    with qtbot.waitSignal(runner.finished, timeout=TIMEOUT_MS) as finished:
        runner.start(load_plan(cancelled.run_dir), resume=True)
    resumed = finished.args[0]
    assert (records[0].event, records[0].iteration) == ("started", cancelled.final.iteration)
    assert resumed.final.event == "done" and resumed.final.iteration == 6 and resumed.run_dir == cancelled.run_dir
    assert resumed.metrics is not None and (resumed.run_dir / "final.pt").is_file()
    # a random head has no "before": nothing compared, nothing lost
    assert resumed.metrics["before_after"]["verdict"] == NO_DETECTOR and resumed.comparison is None
    with qtbot.waitSignal(runner.image_compared, timeout=TIMEOUT_MS) as compared:
        runner.compare_image(plan, str(dataset / "img2.png"))
    image = compared.args[0]
    assert (image.comparison, image.before, image.after, image.overlap.verdict) == (None, None, None, NO_DETECTOR)


def test_internal_error_is_one_line_and_its_traceback_goes_to_the_log(qtbot, runner, dataset, tmp_path, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("boom")
        yield  # a generator, like run_finetune

    monkeypatch.setattr("frcnn_core.training.finetune.run_finetune", explode)  # imported when a run starts
    logged = collect(runner.log_message)
    with qtbot.waitSignal(runner.failed, timeout=TIMEOUT_MS) as failed:
        runner.start(plan_for(dataset, tmp_path / "runs", iters=2))
    assert failed.args[0] == "internal error: RuntimeError: boom"
    assert any("Traceback" in line and "explode" in line for line in logged)
    assert not runner.is_running()


def test_out_of_memory_is_one_line_with_what_to_do(qtbot, runner, dataset, tmp_path, monkeypatch):
    def exhaust(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:119] DefaultCPUAllocator: can't allocate memory: you tried"
                           " to allocate 68719476736 bytes")
        yield  # a generator, like run_finetune

    monkeypatch.setattr("frcnn_core.training.finetune.run_finetune", exhaust)  # imported when a run starts
    plan = plan_for(dataset, tmp_path / "runs", iters=2)
    with qtbot.waitSignal(runner.failed, timeout=TIMEOUT_MS) as failed:
        runner.start(plan)
    message = failed.args[0]
    assert message.startswith(f"{Path(plan.settings.out).name}: out of memory on cpu at batch size")
    assert "lower the batch size" in message and "\n" not in message


def test_progress_is_thinned_but_keeps_every_event_and_the_last_iteration(qtbot, runner):
    def record(event: str, iteration: int) -> Progress:
        return Progress(event, iteration, 100, 0, {}, 0.01, 1.0, 1.0)

    emitted = collect(runner.progress)
    runner._on_progress(record("started", 0))
    for iteration in range(1, 101):  # as fast as a GPU could send them
        runner._on_progress(record("iteration", iteration))
        if iteration == 50:
            runner._on_progress(record("checkpoint", 50))
    # the first iteration goes at once; 2-50 wait, and the checkpoint brings out the newest, 50
    assert [(r.event, r.iteration) for r in emitted] == [("started", 0), ("iteration", 1), ("iteration", 50),
                                                         ("checkpoint", 50)]
    qtbot.wait(PROGRESS_INTERVAL_MS * 3)  # the timer brings out the newest of 51-100
    runner._on_progress(record("done", 100))
    assert [(r.event, r.iteration) for r in emitted[4:]] == [("iteration", 100), ("done", 100)]


def test_shutdown_during_a_run_cancels_and_joins(qtbot, dataset, tmp_path):
    runner = FinetuneRunner()
    with qtbot.waitSignal(runner.progress, timeout=TIMEOUT_MS, check_params_cb=lambda p: p.event == "iteration"):
        runner.start(plan_for(dataset, tmp_path / "runs", iters=40))
    start = time.perf_counter()
    runner.shutdown()
    assert time.perf_counter() - start < runner_module.SHUTDOWN_WAIT_S
    assert not runner.is_running()
    with pytest.raises(RuntimeError):
        runner.start(plan_for(dataset, tmp_path / "runs", iters=2))


def measure_stall_while_training(qtbot, runner, plan) -> dict:
    """Tick a PROBE_INTERVAL_MS QTimer on the UI thread from the first iteration record to the end
    of the run (its last iterations, checkpoint, final.pt, scoring and comparison); a tick's stall
    is its gap minus the interval (ms)."""
    ticks: list[float] = []
    probe = QTimer()
    probe.setTimerType(Qt.TimerType.PreciseTimer)
    probe.setInterval(PROBE_INTERVAL_MS)
    probe.timeout.connect(lambda: ticks.append(time.perf_counter()))
    with qtbot.waitSignal(runner.progress, timeout=TIMEOUT_MS, check_params_cb=lambda p: p.event == "iteration"):
        runner.start(plan, preview_image=str(Path(plan.settings.data) / "img1.png"), preview_every=2)
    probe.start()
    with qtbot.waitSignal(runner.finished, timeout=TIMEOUT_MS) as finished:
        pass
    probe.stop()
    assert finished.args[0].final.event == "done"
    stalls_ms = np.diff(ticks) * 1000 - PROBE_INTERVAL_MS
    return {"p50_ms": float(np.percentile(stalls_ms, 50)), "p99_ms": float(np.percentile(stalls_ms, 99)),
            "max_ms": float(stalls_ms.max()), "samples": len(stalls_ms)}


def test_event_loop_stays_responsive_while_training(qtbot, runner, dataset, tmp_path):
    iterations = 6
    stall = measure_stall_while_training(qtbot, runner, plan_for(dataset, tmp_path / "runs", iters=iterations))
    print(f"\nevent-loop stall while fine-tuning {FAST_MODEL} (batch 2, 128x96 images, preview every 2) from "
          f"iteration 1 to the end of a {iterations}-iteration run and its scoring, {torch.get_num_threads()} torch "
          f"threads: p50 {stall['p50_ms']:.1f} ms, p99 {stall['p99_ms']:.1f} ms, max {stall['max_ms']:.1f} ms, "
          f"{stall['samples']} samples")
    assert stall["samples"] >= 100
    assert stall["p99_ms"] < 50
