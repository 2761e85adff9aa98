"""The stage inspector end to end in the window (offscreen Qt), against issue 12's targets.

- relabel: drag event -> repaint. The seed walkthrough's layout of bench_inspector.py (paper-vgg16,
  seed preset: an 800x800 input, 22,500 anchors; random weights saved as a checkpoint, which the
  window loads like any other), 20 random GT boxes in the image's VOC XML, one of them dragged on
  the anchor-labels stage with real mouse events; each move waits until its anchor labels are
  drawn and the canvas has painted them. Target 30 ms.
- NMS: slider change -> repaint. resnet50-fpn (random weights) on bench_inspector's 800x1216
  photo, the proposals stage, the NMS IoU slider set to another value each time. Target 100 ms.
- UI stall: the gaps between the ticks of a 5 ms QTimer on the UI thread, minus 5 ms, while a
  fine-tuning run trains in its thread (mobilenet-v3-320-fpn, random weights, the three bundled
  BCCD images) and the GT box is dragged at 60 moves a second, the engine's worker re-running the
  anchor labels all along. Target p99 < 50 ms. The relabel latency is measured again meanwhile,
  for information (no target under load).
- saliency: bccd-demo on a bundled BCCD photo (640x480), the saliency stage, its WBC clicked with
  the stage's default D-RISE mask count: the time from the click to the first (preview) map
  painted on the canvas, then the UI stall (the same probe) from the click while D-RISE refines
  for `--stall-seconds` past the preview, then Cancel to the map kept. For information (no target).

Latencies: median and p95 of the moves after two untimed ones. The times include the worker's
re-run, the queued signals both ways, building the overlay and the paint. The files and the
checkpoint are made in a helper thread, so that the UI thread meets torch only after the engine
has set its thread count, as in the application.

Run: `.venv/bin/python benchmarks/bench_gui.py [--moves N] [--stall-seconds S] [--only saliency] [--json]`
(run_all.py runs it in a fresh process).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402  (after the platform is chosen)
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from PySide6.QtCore import QEvent, QEventLoop, QObject, QPoint, QPointF, QSettings, Qt, QTimer  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from frcnn_core.allocator import keep_freed_memory
from frcnn_core.data.voc import write_voc_xml  # noqa: E402
from frcnn_core.modeling.checkpoints import save_checkpoint  # noqa: E402
from frcnn_core.modeling.zoo import build_model  # noqa: E402
from frcnn_core.resources import SAMPLES  # noqa: E402
from frcnn_core.training.finetune import plan_finetune  # noqa: E402
from frcnn_gui.engine.model_calls import engine_threads  # noqa: E402
from frcnn_gui.finetune.runner import FinetuneRunner  # noqa: E402
from frcnn_gui.main_window import MainWindow  # noqa: E402

from bench_inspector import NUM_GT_BOXES, PROPOSAL_KNOBS, photo, random_gt_boxes  # noqa: E402

RELABEL_TARGET_MS, NMS_TARGET_MS, STALL_P99_TARGET_MS = 30.0, 100.0, 50.0
PROBE_INTERVAL_MS, DRAG_INTERVAL_MS = 5, 16
WARMUP_MOVES = 2
TIMEOUT_S = 900.0  # a VGG16 pass of 800x800 takes tens of seconds on two busy CPU cores
TRAIN_MODEL = "mobilenet-v3-320-fpn"
NMS_VALUES = [knobs["nms_thresh"] for knobs in PROPOSAL_KNOBS if "nms_thresh" in knobs] + [0.4, 0.7]
SALIENCY_IMAGE, WBC_CENTRE = "BloodImage_00014", (307.0, 282.0)  # inside its WBC box (236, 211, 379, 353)


class Paints(QObject):
    """Counts the paint events of one widget."""

    def __init__(self, widget) -> None:
        super().__init__()
        self.count = 0
        widget.installEventFilter(self)

    def eventFilter(self, watched, event) -> bool:
        if event.type() == QEvent.Type.Paint:
            self.count += 1
        return False


FAILURES: list[str] = []  # the engine's error lines: any one ends the benchmark


def wait_until(app: QApplication, condition, what: str, timeout_s: float = TIMEOUT_S) -> None:
    """Run the event loop (sleeping between events, never spinning) until `condition()` holds;
    RuntimeError when the engine reports an error or `timeout_s` passes."""
    heartbeat = QTimer(interval=10)  # wakes the loop, so that the deadline is seen
    heartbeat.start()
    deadline = time.perf_counter() + timeout_s
    try:
        while not condition():
            if FAILURES or time.perf_counter() > deadline:
                raise RuntimeError(f"waiting for {what}: {FAILURES[0] if FAILURES else 'timed out'}")
            app.processEvents(QEventLoop.ProcessEventsFlag.WaitForMoreEvents)
    finally:
        heartbeat.stop()


def percentiles(values_ms: list[float]) -> dict:
    values = np.asarray(values_ms)
    return {"median": float(np.median(values)), "p95": float(np.percentile(values, 95)),
            "p99": float(np.percentile(values, 99)), "max": float(values.max()), "n": len(values)}


class Scene:
    """A shown MainWindow on `folder` with `model`, on the CPU, settings in a scratch file."""

    def __init__(self, app: QApplication, scratch: Path, folder: Path, model: str) -> None:
        self.app = app
        settings = QSettings(str(scratch / f"settings-{folder.name}.ini"), QSettings.Format.IniFormat)
        self.window = MainWindow(model, "none", "cpu", settings=settings)
        self.window.resize(1400, 900)
        shown = []
        self.window.detections_shown.connect(lambda: shown.append(1))
        self.window.engine_failed.connect(FAILURES.append)
        self.window.open_path(folder)
        self.window.show()
        wait_until(app, lambda: shown and self.window.inspector is not None, f"{model}'s first detections")
        self.inspector = self.window.inspector
        self.viewport = self.window.canvas.viewport()
        self.paints = Paints(self.viewport)

    def choose(self, stage: str) -> None:
        drawn = []
        self.inspector.shown.connect(lambda shown: shown == stage and drawn.append(1))
        self.window.stages_panel.select(stage)
        wait_until(self.app, lambda: drawn, f"the {stage} stage")

    def at(self, x: float, y: float) -> QPoint:
        point = self.window.canvas.viewportTransform().map(QPointF(x, y))
        return QPoint(round(point.x()), round(point.y()))

    def repainted(self, kind: str, act) -> tuple[float, float]:
        """Milliseconds from `act()` until the newest re-run of `kind` is drawn and painted, and
        the worker's milliseconds for that re-run."""
        marks, worker_ms = {}, []
        mark = self.inspector.shown.connect(lambda _stage: marks.setdefault("paints", self.paints.count))
        record = self.window.engine.rerun_done.connect(lambda result: worker_ms.append(result.seconds * 1000))
        start = time.perf_counter()
        act()
        wait_until(self.app, lambda: not self.inspector.reruns.waiting(kind) and "paints" in marks
                   and self.paints.count > marks["paints"], f"the {kind} re-run painted", timeout_s=60)
        elapsed = (time.perf_counter() - start) * 1000
        self.inspector.shown.disconnect(mark)
        self.window.engine.rerun_done.disconnect(record)
        return elapsed, worker_ms[-1]

    def drag(self, points: list[QPoint]) -> list[tuple[float, float]]:
        """`repainted` of the anchor labels for one mouse move to each point (the button held)."""
        return [self.repainted("anchor-labels", lambda point=point: QTest.mouseMove(self.viewport, point))
                for point in points]

    def close(self) -> None:
        self.window.close()
        self.window.deleteLater()


def seed_folder(scratch: Path) -> tuple[Path, str, tuple[float, float]]:
    """The seed scene: an 800x800 photo with NUM_GT_BOXES boxes, a paper-vgg16 seed checkpoint
    (random weights, one "object" class); returns the folder, the checkpoint and the centre of a
    GT box that no other box covers there (where a press grabs it)."""
    folder = scratch / "seed"
    folder.mkdir()
    image = folder / "seed.png"
    Image.fromarray((photo(800, 800).permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(image)
    boxes = random_gt_boxes(NUM_GT_BOXES, 800.0, torch.Generator().manual_seed(0))
    write_voc_xml(image.with_suffix(".xml"), image, 800, 800, boxes, ["object"] * NUM_GT_BOXES)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    covering = ((boxes[None, :, :2] <= centres[:, None]) & (centres[:, None] <= boxes[None, :, 2:])).all(dim=2)
    grabbed = int(covering.sum(dim=1).argmin())  # the box whose centre the fewest boxes cover
    torch.manual_seed(0)
    model = build_model("paper-vgg16", "none", preset="seed", class_names=["__background__", "object"])
    checkpoint = scratch / "paper-vgg16-seed.pt"
    save_checkpoint(checkpoint, model.model_name, model.config, model.class_names, model.state_dict())
    return folder, str(checkpoint), tuple(centres[grabbed].tolist())


def fpn_folder(scratch: Path) -> Path:
    folder = scratch / "fpn"
    folder.mkdir()
    Image.fromarray((photo(800, 1216).permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(folder / "fpn.png")
    return folder


def drag_points(scene: Scene, centre: tuple[float, float], count: int) -> list[QPoint]:
    """`count` viewport points of a drag from `centre`: 3 image pixels a move, back and forth."""
    offsets = [3 * (step % 30 if step % 60 < 30 else 30 - step % 30) for step in range(1, count + 1)]
    return [scene.at(centre[0] + offset, centre[1] + offset / 2) for offset in offsets]


def start_training(scratch: Path) -> FinetuneRunner:
    """A fine-tuning run of TRAIN_MODEL on the bundled BCCD images, long enough to outlast the bench."""
    data = scratch / "train"
    data.mkdir()
    for name in ("BloodImage_00002", "BloodImage_00014", "BloodImage_00028"):
        for suffix in (".jpg", ".xml"):
            shutil.copyfile(SAMPLES / f"{name}{suffix}", data / f"{name}{suffix}")
    plan = plan_finetune(str(data), str(scratch / "runs"), TRAIN_MODEL, "none", val_fraction=0.3, iters=100_000,
                         batch_size=2, device="cpu")
    runner = FinetuneRunner()
    runner.start(plan)
    return runner


def measure_stall(scene: Scene, centre: tuple[float, float], seconds: float) -> tuple[dict, list[float]]:
    """The probe's stalls while the GT box is dragged at one move per DRAG_INTERVAL_MS; also the
    worker's relabel times (ms) of that while."""
    ticks, worker_ms = [], []
    probe = QTimer(timerType=Qt.TimerType.PreciseTimer, interval=PROBE_INTERVAL_MS)
    probe.timeout.connect(lambda: ticks.append(time.perf_counter()))
    points = iter(drag_points(scene, centre, int(seconds * 1000 / DRAG_INTERVAL_MS) + 1))
    mover = QTimer(interval=DRAG_INTERVAL_MS)
    mover.timeout.connect(lambda: QTest.mouseMove(scene.viewport, next(points, scene.at(*centre))))
    record = scene.window.engine.rerun_done.connect(lambda result: worker_ms.append(result.seconds * 1000))
    probe.start()
    mover.start()
    end = time.perf_counter() + seconds
    wait_until(scene.app, lambda: time.perf_counter() > end, "the stall window")
    mover.stop()
    probe.stop()
    scene.window.engine.rerun_done.disconnect(record)
    return percentiles(list(np.diff(ticks) * 1000 - PROBE_INTERVAL_MS)), worker_ms


def seed_scene(app: QApplication, scratch: Path, files: tuple, moves: int, stall_seconds: float) -> dict:
    """The drag, idle then while a run trains, and the stall meanwhile."""
    folder, checkpoint, centre = files
    scene = Scene(app, scratch, folder, checkpoint)
    scene.choose("anchor-labels")
    anchors = len(scene.inspector.trace.anchors.boxes)
    QTest.mousePress(scene.viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, scene.at(*centre))
    idle = scene.drag(drag_points(scene, centre, moves + WARMUP_MOVES))[WARMUP_MOVES:]
    runner = start_training(scratch)
    iterations = []
    runner.progress.connect(lambda record: record.event == "iteration" and iterations.append(record.iteration))
    wait_until(app, lambda: iterations, "the first training iteration")
    stall, worker_ms = measure_stall(scene, centre, stall_seconds)
    loaded = scene.drag(drag_points(scene, centre, moves // 2))
    trained = iterations[-1]
    runner.shutdown()
    QTest.mouseRelease(scene.viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, scene.at(*centre))
    scene.close()
    return {"relabel": idle, "relabel_loaded": loaded, "stall_ms": stall, "worker_stall_ms": percentiles(worker_ms),
            "seed_anchors": anchors, "iterations": trained}


def fpn_scene(app: QApplication, scratch: Path, folder: Path, moves: int) -> dict:
    """The NMS slider moved to another value `moves` times (after WARMUP_MOVES)."""
    scene = Scene(app, scratch, folder, "resnet50-fpn")
    scene.choose("proposals")
    slider = scene.window.stages_panel.nms_slider
    values = [NMS_VALUES[index % len(NMS_VALUES)] for index in range(moves + WARMUP_MOVES)]
    nms = [scene.repainted("proposals", lambda value=value: slider.setValue(round(value * slider.maximum())))
           for value in values][WARMUP_MOVES:]
    anchors = len(scene.inspector.trace.anchors.boxes)
    scene.close()
    return {"nms": nms, "fpn_anchors": anchors}


def saliency_scene(app: QApplication, scratch: Path, stall_seconds: float) -> dict:
    """The WBC clicked on the saliency stage: seconds to the preview painted, the stall from the
    click until `stall_seconds` past the preview (or the whole map, if sooner), Cancel's seconds."""
    folder = scratch / "saliency"
    folder.mkdir()
    shutil.copyfile(SAMPLES / f"{SALIENCY_IMAGE}.jpg", folder / f"{SALIENCY_IMAGE}.jpg")
    scene = Scene(app, scratch, folder, "bccd-demo")
    scene.choose("saliency")
    saliency, marks = scene.inspector.saliency, {}
    saliency.map_drawn.connect(lambda _masks: marks.setdefault("paints", scene.paints.count))
    saliency.finished.connect(lambda: marks.setdefault("finished", time.perf_counter()))
    ticks = []
    probe = QTimer(timerType=Qt.TimerType.PreciseTimer, interval=PROBE_INTERVAL_MS)
    probe.timeout.connect(lambda: ticks.append(time.perf_counter()))
    probe.start()
    start = time.perf_counter()
    QTest.mouseClick(scene.viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, scene.at(*WBC_CENTRE))
    wait_until(app, lambda: "paints" in marks and scene.paints.count > marks["paints"], "the preview painted")
    preview_s, preview_masks = time.perf_counter() - start, saliency.drawn_masks
    end = time.perf_counter() + stall_seconds
    wait_until(app, lambda: time.perf_counter() > end or "finished" in marks, "D-RISE refining")
    probe.stop()
    stopping = time.perf_counter()
    if "finished" not in marks:
        QTest.mouseClick(saliency.controls.cancel, Qt.MouseButton.LeftButton)
        wait_until(app, lambda: "finished" in marks, "the cancelled map")
    result = saliency.result
    scene.close()
    return {"preview_s": preview_s, "preview_masks": preview_masks, "masks_done": result.masks,
            "masks_asked": result.request.masks, "masks_per_s": result.masks / result.seconds,
            "cancel_s": marks["finished"] - stopping if result.cancelled else None,
            "stall_ms": percentiles(list(np.diff(ticks) * 1000 - PROBE_INTERVAL_MS))}


def run(moves: int = 30, stall_seconds: float = 8.0, only_saliency: bool = False) -> dict:
    """Every measure of the module docstring (with `only_saliency`, the saliency scene's alone, as
    {"saliency": ...}); latencies as {"end_to_end", "worker"} percentiles."""
    app = QApplication.instance() or QApplication([])
    scratch = Path(tempfile.mkdtemp(prefix="bench-gui-"))
    try:
        if only_saliency:
            return {"saliency": saliency_scene(app, scratch, stall_seconds), "threads": engine_threads()}
        with ThreadPoolExecutor(max_workers=1) as helper:  # torch's first use off the UI thread
            seed_files, fpn = helper.submit(lambda: (seed_folder(scratch), fpn_folder(scratch))).result()
        result = {**seed_scene(app, scratch, seed_files, moves, stall_seconds), **fpn_scene(app, scratch, fpn, moves),
                  "saliency": saliency_scene(app, scratch, stall_seconds)}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for name in ("relabel", "relabel_loaded", "nms"):
        pairs = result[name]
        result[name] = {"end_to_end": percentiles([total for total, _ in pairs]),
                        "worker": percentiles([worker for _, worker in pairs])}
    return {**result, "stall_seconds": stall_seconds, "threads": engine_threads()}


def saliency_lines(saliency: dict) -> list[tuple[str, str]]:
    """(measure, result) rows of the saliency scene: information, no target."""
    stall = saliency["stall_ms"]
    cancel = f"; Cancel → the map kept {saliency['cancel_s']:.2f} s" if saliency["cancel_s"] is not None else ""
    return [
        (f"GUI: saliency click → the D-RISE preview ({saliency['preview_masks']} masks) painted (bccd-demo, 640x480)",
         f"{saliency['preview_s']:.1f} s; {saliency['masks_per_s']:.1f} masks/s, {saliency['masks_done']} of "
         f"{saliency['masks_asked']} masks scored{cancel}"),
        (f"GUI: UI stall while D-RISE runs ({PROBE_INTERVAL_MS} ms timer)",
         f"p99 {stall['p99']:.1f} ms, median {stall['median']:.1f} ms, max {stall['max']:.1f} ms (n={stall['n']})"),
    ]


def lines(result: dict) -> list[tuple[str, str]]:
    """(measure, result) rows, each with its target and whether it is met (the saliency's are for information)."""
    def verdict(value: float, target: float, strict: bool = False) -> str:
        met = value < target if strict else value <= target
        return f"{'meets' if met else 'MISSES'} the {'<' if strict else '≤'} {target:.0f} ms target"

    def latency(measured: dict, target: float) -> str:
        total, worker = measured["end_to_end"], measured["worker"]
        return (f"median {total['median']:.1f} ms, p95 {total['p95']:.1f} ms (n={total['n']}; the worker's re-run "
                f"alone median {worker['median']:.1f} ms); " + verdict(total["median"], target))

    stall, loaded = result["stall_ms"], result["relabel_loaded"]
    return [
        (f"GUI: GT-box drag → anchor labels repainted (paper-vgg16 seed, {result['seed_anchors']:,} anchors x "
         f"{NUM_GT_BOXES} GT)", latency(result["relabel"], RELABEL_TARGET_MS)),
        (f"GUI: NMS slider → proposals repainted (resnet50-fpn, {result['fpn_anchors']:,} anchors, 800x1216)",
         latency(result["nms"], NMS_TARGET_MS)),
        (f"GUI: UI stall while training ({TRAIN_MODEL}) and dragging ({result['stall_seconds']:.0f} s, "
         f"{PROBE_INTERVAL_MS} ms timer)",
         f"p99 {stall['p99']:.1f} ms, median {stall['median']:.1f} ms, max {stall['max']:.1f} ms "
         f"(n={stall['n']}); " + verdict(stall["p99"], STALL_P99_TARGET_MS, strict=True)),
        ("GUI: the same drag while training (information, no target)",
         f"median {loaded['end_to_end']['median']:.1f} ms, p95 {loaded['end_to_end']['p95']:.1f} ms (the worker's "
         f"re-run alone median {loaded['worker']['median']:.1f} ms; during the stall probe "
         f"{result['worker_stall_ms']['median']:.1f} ms); {result['iterations']} training iterations done"),
        *saliency_lines(result["saliency"]),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=30, help="timed drag moves and slider changes (default 30)")
    parser.add_argument("--stall-seconds", type=float, default=8.0, help="how long the stall is probed (default 8)")
    parser.add_argument("--only", choices=("saliency",), help="run this scenario alone")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line (for run_all.py)")
    args = parser.parse_args()
    keep_freed_memory()  # as the CLI and the application do
    result = run(args.moves, args.stall_seconds, only_saliency=args.only == "saliency")
    if args.json:
        print(json.dumps(result))
        return
    print(f"torch threads (set once by the engine): {result['threads']}")
    for name, value in saliency_lines(result["saliency"]) if args.only else lines(result):
        print(f"{name}: {value}")


if __name__ == "__main__":
    main()
