"""The iterations of a training run: one optimizer step each, yielded as Progress records.

`train.py` sets a run up (data, model, optimizer, schedule, resume, the budget's clock and the
hold-out's validator) and hands `run_loop` a `RunParts`; the loop trains until the total or the
budget is reached, checkpoints `last.pt`, validates a budgeted run as it goes, and writes
`final.pt` (the best validated model of a budgeted run, else the last).
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.distributed as dist

from frcnn_core.modeling.checkpoints import save_checkpoint
from frcnn_core.modeling.model import FasterRCNN
from frcnn_core.training.recipe import Batches
from frcnn_core.training.timekeeping import Clock
from frcnn_core.training.validation import Validator


@dataclass(frozen=True)
class Progress:
    """One record of the run. event: "started" (message: what the dataset reader skipped or
    fixed), "iteration", "checkpoint", "validated" (a budgeted run scored its hold-out), "done",
    "cancelled" or "stopped" (a non-finite loss; `message` says which term and at which iteration).
    A budgeted run's `total` is its current plan, which may change as it goes."""

    event: str
    iteration: int
    total: int
    epoch: int
    losses: dict[str, float]
    lr: float
    images_per_s: float
    eta_s: float
    message: str = ""
    validation: dict | None = None  # "validated": {"iteration", "AP50", "AP", "seconds", "best"}

    def to_json(self) -> str:
        return json.dumps(asdict(self))


@dataclass
class RunParts:
    """What the loop works with."""

    trained: torch.nn.Module  # the model, or its DistributedDataParallel wrapper
    model: FasterRCNN
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    generator: torch.Generator
    batches: Batches
    settings: object  # the run's TrainSettings
    device: torch.device
    rank: int
    clock: Clock | None
    validator: Validator | None


def run_loop(run: RunParts, start: int, total: int, cancel, show: Callable[[int], None] | None) -> Iterator[Progress]:
    settings, clock, validator = run.settings, run.clock, run.validator
    scaler = torch.amp.GradScaler("cuda", enabled=settings.amp and run.device.type == "cuda")
    began, done_images = time.perf_counter(), 0
    iteration = start
    record = None

    def planned() -> int:
        return clock.state.total if clock else total

    def emit(event: str, losses: dict, message: str = "", validation: dict | None = None) -> Progress:
        elapsed = time.perf_counter() - began
        speed = done_images / elapsed if elapsed > 0 else 0.0
        if clock is not None:
            remaining = max(clock.left(), 0.0)
        else:
            remaining = (total - iteration) * settings.batch_size / speed if speed > 0 else float("inf")
        return Progress(event, iteration, planned(), run.batches.epoch_of(iteration), losses,
                        run.optimizer.param_groups[0]["lr"], speed, remaining, message, validation)

    def state() -> dict:
        extra = {"train_settings": settings.to_dict()}
        if clock is not None:
            extra["budget"] = clock.to_dict()
        if validator is not None:
            extra["validation"] = asdict(validator.state)
        return extra

    def save() -> None:  # every rank takes part (the sampling states are gathered), rank 0 writes
        _save(Path(settings.out) / "last.pt", run, iteration, state())

    def validate() -> Progress | None:
        if validator is None:
            return None
        # a plateau counts only once the rate has come down: a step schedule's drop is still to come
        settled = (clock.spent() >= 0.5 * clock.budget_s
                   and run.optimizer.param_groups[0]["lr"] <= 0.5 * settings.lr)
        result = validator.validate(run.model, iteration, {"iteration": iteration, **state()}, settled)
        clock.validation_took(result["seconds"])
        clock.plan(iteration)
        message = (f"validation AP50 {result['AP50']:.3f} (AP {result['AP']:.3f}) at iteration {iteration}; "
                   f"{validator.summary()}")
        return emit("validated", record.losses if record else {}, message, result)

    stop_reason = ""
    finished = _finished(run, iteration, total)
    while not finished:
        if cancel():
            save()
            yield emit("cancelled", record.losses if record else {}, f"cancelled at iteration {iteration}")
            return
        images, targets = run.batches.get(iteration)
        images = [image.to(run.device) for image in images]
        targets = [{"boxes": t["boxes"].to(run.device), "labels": t["labels"].to(run.device)} for t in targets]
        with torch.autocast(run.device.type, enabled=scaler.is_enabled()):
            losses = run.trained(images, targets, generator=run.generator)
        loss = sum(losses.values())
        values = {k: float(v.detach()) for k, v in losses.items()}
        if not math.isfinite(float(loss.detach())):
            bad = ", ".join(f"{k}={v}" for k, v in values.items() if not math.isfinite(v))
            yield emit("stopped", values, f"non-finite loss at iteration {iteration + 1} ({bad}); "
                                          f"the last good checkpoint is kept — lower --lr or check the boxes")
            return
        run.optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if settings.grad_clip is not None:
            scaler.unscale_(run.optimizer)
            torch.nn.utils.clip_grad_norm_(run.model.parameters(), settings.grad_clip)
        scaler.step(run.optimizer)
        scaler.update()
        iteration += 1
        done_images += len(images)
        if clock is not None:
            clock.iteration_done()
            clock.plan(iteration)  # every iteration: the schedule follows the time actually left
        finished = _finished(run, iteration, total)  # before the scheduler: every rank steps with rank 0's plan
        run.scheduler.step()
        if show is not None:
            show(iteration)
        record = emit("iteration", values)
        yield record
        if clock is not None and clock.validation_due(iteration) and validator is not None:
            yield validate()
            if validator.plateaued():  # the run ends after the next iteration
                stop_reason = (f"stopped early: validation AP50 has not risen for {validator.state.since_best} "
                               "checks at the lowered learning rate")
                clock.stop_requested = True
        if iteration % settings.checkpoint_every == 0 or (clock is None and iteration == total):
            save()
            yield replace(record, event="checkpoint")
    if clock is not None:
        if validator is not None and not validator.validated_at(iteration):
            yield validate()
        save()
    if run.rank == 0:
        final = Path(settings.out) / "final.pt"
        if validator is None or not validator.promote(final):
            save_checkpoint(final, run.model.model_name, run.model.config, run.model.class_names,
                            run.model.state_dict(), extra={"train_settings": settings.to_dict()})
    summary = f"finished {iteration} iterations"
    if clock is not None:
        summary += f" in {clock.spent() / 60:.1f} of {settings.minutes:g} minutes"
    if validator is not None:
        summary += f"; final.pt is the {validator.summary()}, last.pt the last"
    yield emit("done", record.losses if record else {}, "; ".join(filter(None, [stop_reason, summary])))


def _finished(run: RunParts, iteration: int, total: int) -> bool:
    """The end of the run: `total` iterations, or the budget spent. Under torchrun rank 0's
    clock decides for every rank, and its plan (the learning rate follows it) is everyone's."""
    if run.clock is None:
        return iteration >= total
    done = torch.tensor([float(run.clock.stop_requested or run.clock.time_is_up(iteration)),
                         float(run.clock.state.total)])
    if dist.is_initialized():
        dist.broadcast(done, src=0)
        run.clock.state.total = int(done[1])
    return bool(done[0])


def _save(path: Path, run: RunParts, iteration: int, extra: dict) -> None:
    """An atomic checkpoint holding everything `resume` needs (written by rank 0)."""
    states = [run.generator.get_state()]
    if dist.is_initialized():
        states = [torch.zeros_like(states[0]) for _ in range(dist.get_world_size())]
        dist.all_gather(states, run.generator.get_state())
    if run.rank != 0:
        return
    extra = {
        **extra,
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "iteration": iteration,
        "rng": {"sampling": states, "torch": torch.get_rng_state()},
    }
    model = run.model
    save_checkpoint(path, model.model_name, model.config, model.class_names, model.state_dict(), extra=extra)
