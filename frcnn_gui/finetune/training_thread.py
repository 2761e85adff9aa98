"""The training thread's side of a fine-tuning run: `RunWorker` runs `run_finetune` for a `Job`,
then scores the run and compares the base model's detections with the new model's over the
validation images (`score_run`); between runs it compares both models on one image.

Only plain data and detached CPU tensors leave this thread (Progress records,
PreviewDetections, FinetuneResult, ImageComparison). The UI side is `runner.FinetuneRunner`.
"""
from __future__ import annotations

import statistics
import threading
import time
import traceback
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal, Slot

from frcnn_core.errors import InputError
from frcnn_core.io.images import load_image
from frcnn_core.training.runs import FINAL_CHECKPOINT, LAST_CHECKPOINT
from frcnn_gui.engine.worker_shared import detached_cpu, one_line  # the same for both workers
from frcnn_gui.finetune.messages import FinetuneResult, ImageComparison, PreviewDetections

if TYPE_CHECKING:  # torch and the training code load in this thread when first needed, not with the window
    import torch

    from frcnn_core.modeling.model import FasterRCNN
    from frcnn_core.training.finetune import FinetunePlan

WARMUP_ITERATIONS = 3  # the first iterations are slow (allocation, kernel choice): left out of the timing


@dataclass(frozen=True)
class Job:
    """One run's inputs and its two thread-safe flags: cancelled (set by the UI), done (set by the worker)."""

    plan: FinetunePlan
    preview_image: str | None
    preview_every: int
    resume: bool
    cancelled: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)


class RunWorker(QObject):
    """Runs one job at a time in its thread. Touch only through signals."""

    progress = Signal(object)  # Progress
    preview = Signal(object)  # PreviewDetections
    finished = Signal(object)  # FinetuneResult
    failed = Signal(str)
    log_message = Signal(str)
    image_compared = Signal(object)  # ImageComparison

    def __init__(self) -> None:
        super().__init__()
        self._pair: tuple[tuple, FasterRCNN, FasterRCNN] | None = None  # (key, before, after) of the last comparison

    @Slot(object)
    def run(self, job: Job) -> None:
        try:
            answer, value = self.finished, self._run(job)
        except InputError as error:
            answer, value = self.failed, one_line(str(error))
        except Exception as error:
            if out_of_memory(error):
                from frcnn_core.training.train import pick_device  # torch: see the imports

                settings = job.plan.settings
                answer, value = self.failed, (
                    f"{Path(settings.out).name}: out of memory on {pick_device(settings.device)} at batch size "
                    f"{settings.batch_size}: lower the batch size, freeze more backbone stages or use the CPU; "
                    f"the last checkpoint is kept")
            else:  # our bug: the UI shows a line, the log the traceback
                self.log_message.emit(traceback.format_exc())
                answer, value = self.failed, f"internal error: {type(error).__name__}: {one_line(str(error))}"
        job.done.set()  # before the answer: whoever receives it sees the runner idle
        answer.emit(value)

    def _run(self, job: Job) -> FinetuneResult:
        from frcnn_core.training.finetune import run_finetune, score_run  # torch: see the imports
        from frcnn_core.training.train import pick_device

        self._pair = None  # training needs the memory more than a comparison cache
        plan = job.plan
        device = pick_device(plan.settings.device)
        preview = self._preview_callback(job.preview_image, device) if job.preview_every > 0 else None
        ticks: list[float] = []
        final = None
        for record in run_finetune(plan, cancel=job.cancelled.is_set, resume=job.resume, preview=preview,
                                   preview_every=job.preview_every if preview else 0):
            if record.event == "iteration":
                ticks.append(time.perf_counter())
            final = record
            self.progress.emit(record)
        metrics = comparison = None
        if final is not None and final.event == "done" and not job.cancelled.is_set():
            self.log_message.emit(f"{Path(plan.settings.out).name}: scoring the base and the fine-tuned model "
                                  f"on {len(plan.val_images)} validation images")
            metrics, comparison = score_run(plan, plan.settings.device)
        return FinetuneResult(final, Path(plan.settings.out), metrics, comparison, _seconds_per_iteration(ticks),
                              str(device))

    def _preview_callback(self, image_path: str | None, device: torch.device):
        """preview(model, iteration) for run_finetune, or None without a readable preview image
        (a bad preview image is noted in the log; it never stops the run)."""
        if not image_path:
            return None
        try:
            image = load_image(image_path).tensor.to(device)
        except InputError as error:
            self.log_message.emit(f"no live preview: {one_line(str(error))}")
            return None

        def preview(model, iteration: int) -> None:
            detections = _detached(model([image])[0])
            self.preview.emit(PreviewDetections(iteration, str(image_path), detections["boxes"], detections["labels"],
                                                detections["scores"], list(model.class_names)))

        return preview

    @Slot(object, str)
    def compare_image(self, plan: FinetunePlan, image_path: str) -> None:
        """Both models on one image, on the classes both know (by name); when they share none, or
        the base model has no trained head, the answer carries only the reason (no detection runs)."""
        import torch  # see the imports

        from frcnn_core.analysis.compare_models import compare_on_image, on_classes
        from frcnn_core.training.finetune import class_overlap
        from frcnn_core.training.train import pick_device

        try:
            overlap = class_overlap(plan)
            if not overlap.comparable:
                self.image_compared.emit(ImageComparison(image_path, Path(plan.settings.out), None, None,
                                                         list(plan.class_names), None, overlap))
                return
            device = pick_device(plan.settings.device)
            models = self._models(plan, device)
            image = load_image(image_path).tensor.to(device)
            with torch.inference_mode():
                before, after = (on_classes([{"image_id": 0, **_detached(model([image])[0])}], model.class_names,
                                            plan.class_names, overlap.shared)[0] for model in models)
            self.image_compared.emit(ImageComparison(image_path, Path(plan.settings.out), before, after,
                                                     list(plan.class_names), compare_on_image(before, after), overlap))
        except InputError as error:
            self.log_message.emit(f"no before/after comparison: {one_line(str(error))}")
        except Exception as error:  # our bug
            self.log_message.emit(traceback.format_exc())
            self.log_message.emit(f"no before/after comparison: internal error: {type(error).__name__}: "
                                  f"{one_line(str(error))}")

    def _models(self, plan: FinetunePlan, device: torch.device) -> tuple[FasterRCNN, FasterRCNN]:
        """The base model (its own classes) and the run's best checkpoint, kept while the checkpoint is unchanged."""
        from frcnn_core.modeling.zoo import build_model
        from frcnn_core.training.finetune import base_model  # torch: see the imports

        checkpoint = _best_checkpoint(Path(plan.settings.out))
        key = (str(checkpoint), checkpoint.stat().st_mtime_ns, str(device))
        if self._pair is None or self._pair[0] != key:
            self._pair = None  # free the old pair before building the new one
            self._pair = (key, base_model(plan).to(device), build_model(str(checkpoint)).to(device))
        return self._pair[1], self._pair[2]


def out_of_memory(error: BaseException) -> bool:
    """Whether `error` is an allocation failure: CUDA's, or the CPU allocator's."""
    import torch  # see the imports

    return (isinstance(error, (torch.cuda.OutOfMemoryError, MemoryError))
            or (isinstance(error, RuntimeError) and ("out of memory" in str(error)
                                                     or "can't allocate memory" in str(error))))


def _best_checkpoint(run: Path) -> Path:
    """final.pt, else last.pt; InputError when the run has neither yet."""
    for name in (FINAL_CHECKPOINT, LAST_CHECKPOINT):
        if (run / name).exists():
            return run / name
    raise InputError(run, "no checkpoint yet: no final.pt or last.pt")


def _detached(detections: dict) -> dict[str, torch.Tensor]:
    """boxes, labels, scores as CPU tensors without grad, floats as float32."""
    return detached_cpu({key: detections[key] for key in ("boxes", "labels", "scores")})


def _seconds_per_iteration(ticks: list[float]) -> float | None:
    """The median time between iteration records after the first WARMUP_ITERATIONS; None when too few."""
    gaps = [later - earlier for earlier, later in pairwise(ticks[WARMUP_ITERATIONS:])]
    return statistics.median(gaps) if gaps else None
