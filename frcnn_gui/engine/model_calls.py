"""What the engine worker runs: the model and every call into torch, imported in the worker's thread.

`worker.EngineWorker` imports this module on its first request, so that torch (~2 s to import)
loads behind a window that is already shown. `Engine` holds the model, its device and its AMP
setting and turns each request into its result message; `check()` raises when the request is no
longer wanted and `enter(stage)` reports a stage (raising likewise), so that a stale detection
stops at its next stage. It also keeps the latest image's `Inspection`, which the stage
inspector's re-runs (`reruns.RERUNS`) and saliency maps (`saliency_pass`) start from, and the
latest error analysis of the folder, which the Errors view's updates edit (`error_pass`). Nothing
from here reaches the UI thread but the messages, which carry detached CPU data only.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from frcnn_core.devices import resolve_device
from frcnn_core.errors import InputError
from frcnn_core.inspect.inspection import Inspection
from frcnn_core.io.images import load_image
from frcnn_core.modeling.checkpoints import cached_weights
from frcnn_core.modeling.model import FasterRCNN
from frcnn_core.modeling.zoo import MODELS, build_model
from frcnn_gui.engine import error_pass, saliency_pass
from frcnn_gui.engine.messages import (
    DetectRequest,
    DetectResult,
    ErrorsRequest,
    ErrorsResult,
    InspectRequest,
    InspectResult,
    LoadModelRequest,
    ModelLoaded,
    RerunRequest,
    RerunResult,
    SaliencyRequest,
    SaliencyResult,
    SaliencyUpdate,
)
from frcnn_gui.engine.reruns import RERUNS
from frcnn_gui.engine.worker_shared import detached_cpu


def engine_threads() -> int:
    """Torch's intra-op thread count for the window's process: half the cores it may use, at least
    one. Two of its threads compute with torch at once, the engine's and a fine-tuning run's; with
    half each, neither waits in a parallel region for a core the other holds (relabelling 22,500
    anchors took ~10 ms on one thread, ~145 ms on two while the second core was busy)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // 2)


class Engine:
    """The loaded model (None until a load succeeds), where it runs, the latest inspection and
    the latest finished error analysis (each None until one is made, and again after a model
    load) with the id of its request.

    Making one sets torch's thread count to `engine_threads()`, before any torch work of the
    window: the count is process-wide and never changes afterwards."""

    def __init__(self) -> None:
        torch.set_num_threads(engine_threads())
        self.model: FasterRCNN | None = None
        self.device = torch.device("cpu")
        self.amp = False
        self.inspection: Inspection | None = None
        self.inspection_id: int | None = None
        self.error_report = None  # an ErrorReport
        self.error_pass_id: int | None = None

    def load(self, request: LoadModelRequest, enter: Callable[[str], None]) -> ModelLoaded:
        """Build and move the model; on failure the previous model stays loaded."""
        device = resolve_device(request.device)
        enter(_load_stage(request))
        start = time.perf_counter()
        model = build_model(request.model, request.weights, score_thresh=0.0).to(device)
        self.model, self.device = model, device
        self.inspection = self.inspection_id = None  # it holds the previous model
        self.error_report = self.error_pass_id = None  # the previous model's errors
        self.amp = request.amp and device.type == "cuda"
        return ModelLoaded(request.request_id, model.model_name, list(model.class_names), str(device),
                           time.perf_counter() - start)

    def detect(self, request: DetectRequest, check: Callable[[], None], enter: Callable[[str], None]) -> DetectResult:
        model = self._loaded("detecting")
        enter("loading image")
        start = time.perf_counter()
        image = load_image(request.image_path).tensor.to(self.device)
        check()
        with (_stage_hooks(model, enter), torch.inference_mode(),
              torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp)):
            output = model([image], trace=request.trace)
        check()
        detections, traces = output if request.trace else (output, None)
        return DetectResult(request.request_id, request.image_path, detached_cpu(detections[0]),
                            traces[0] if traces else None, list(model.class_names), time.perf_counter() - start,
                            str(self.device))

    def inspect(self, request: InspectRequest, check: Callable[[], None]) -> InspectResult:
        """One backbone pass kept for the stage inspector, replacing the previous one; checked for
        staleness before and after (a stale one replaces nothing)."""
        model = self._loaded("inspecting")
        check()
        start = time.perf_counter()
        image = load_image(request.image_path).tensor.to(self.device)
        inspection = Inspection.run(model, image)
        check()
        self.inspection, self.inspection_id = inspection, request.request_id
        return InspectResult(request.request_id, request.image_path, inspection.trace, model.config,
                             time.perf_counter() - start)

    def rerun(self, request: RerunRequest) -> RerunResult | None:
        """`request`'s re-run on the inspection it names; None when that is no longer the latest
        (another image or model came since: nobody waits for it)."""
        if self.inspection is None or request.inspection_id != self.inspection_id:
            return None
        start = time.perf_counter()
        value = RERUNS[request.kind](self.inspection, **request.arguments)
        return RerunResult(request, value, time.perf_counter() - start)

    def saliency(self, request: SaliencyRequest, progress: Callable[[SaliencyUpdate], None],
                 wanted: Callable[[], bool]) -> SaliencyResult | None:
        """`request`'s map (`saliency_pass`) on the inspection it names, in float32 whatever `amp`
        says; None when that inspection is no longer the latest (another image or model came)."""
        model = self._loaded("explaining a score")
        if self.inspection is None or request.inspection_id != self.inspection_id:
            return None
        return saliency_pass.explain(model, self.inspection, request, progress, wanted)

    def errors(self, request: ErrorsRequest, progress: Callable[[int, int], None],
               cancelled: Callable[[], bool]) -> ErrorsResult | None:
        """A pass over the folder, kept in place of the previous one, or an update of the kept
        pass; None when the pass was cancelled, or the update is for a pass no longer kept. In
        float32 whatever `amp` says, as `frcnn errors` runs it: the analysis reads the traces."""
        model = self._loaded("analysing errors")
        start = time.perf_counter()
        if request.update_of is None:
            report = error_pass.analyse(model, request, self.device, progress, cancelled)
            if report is None:
                return None
            self.error_report, self.error_pass_id = report, request.request_id
        elif request.update_of == self.error_pass_id:
            self.error_report = error_pass.updated(model, self.error_report, request, self.device)
        else:
            return None
        return ErrorsResult(request, self.error_report, self.error_pass_id, time.perf_counter() - start)

    def _loaded(self, doing: str) -> FasterRCNN:
        if self.model is None:
            raise InputError(None, f"no model is loaded; choose a model before {doing}")
        return self.model


@contextmanager
def _stage_hooks(model: FasterRCNN, on_stage: Callable[[str], None]) -> Iterator[None]:
    """Call `on_stage(name)` as each learned part of `model` starts; `on_stage` may raise to
    abandon the forward pass there."""
    parts = {"backbone": model.backbone, "rpn": model.rpn["head"], "roi heads": model.roi_heads["box_head"]}
    handles = [
        module.register_forward_pre_hook(lambda _module, _inputs, stage=stage: on_stage(stage))
        for stage, module in parts.items()
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _load_stage(request: LoadModelRequest) -> str:
    """"downloading weights" when the COCO weights are in neither torchvision's cache nor the
    checkout's seeded folder."""
    spec = MODELS.get(request.model)
    if request.weights != "coco" or spec is None or spec.coco_weights is None:
        return "loading model"
    return "loading model" if cached_weights(spec.coco_weights.url) else "downloading weights"
