"""Training as a generator of progress records, so the CLI and the GUI drive the same code.

`train(settings)` yields a `Progress` after every iteration (and at checkpoints, at the end, on
cancel or on a non-finite loss); the caller cancels between iterations by `cancel()` returning
True or by closing the generator. A run folder holds `settings.json`, `log.jsonl` (one record a
line), `last.pt` (every `checkpoint_every` iterations and at the end) and `final.pt`.
`settings.images` trains on a subset of the dataset's images, named by file name; a `preview`
callback sees the model in eval mode every `preview_every` iterations without changing the run.

Resuming continues exactly: model, optimizer, scheduler, the sampling generator, torch's RNG and
the iteration. Data order and augmentation depend only on (seed, epoch, image), so they replay.
Under `torchrun` (WORLD_SIZE > 1) the same call trains with DistributedDataParallel: NCCL on GPUs,
gloo on CPUs, each rank taking every WORLD_SIZE-th image of the epoch's order; rank 0 writes.
This module sets a run up; the iterations themselves are `loop.py`'s.
"""
from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch

from frcnn_core.data.augment import Augment, AugmentConfig
from frcnn_core.data.formats import open_dataset
from frcnn_core.data.samples import select_images
from frcnn_core.devices import (
    resolve_device,
    resolve_device as pick_device,  # noqa: F401  (its old name, for its callers)
)
from frcnn_core.distributed import process_group
from frcnn_core.errors import InputError
from frcnn_core.io.atomic import write_bytes_atomic
from frcnn_core.modeling.config import AnchorConfig, DetectorConfig
from frcnn_core.modeling.model import FasterRCNN
from frcnn_core.modeling.zoo import build_model
from frcnn_core.training.loop import Progress, RunParts, run_loop
from frcnn_core.training.recipe import Batches, freeze_stages, make_optimizer, make_scheduler
from frcnn_core.training.timekeeping import BudgetState, Clock
from frcnn_core.training.validation import ValidationState, Validator, holdout_dataset


@dataclass(frozen=True)
class TrainSettings:
    """Everything a run needs; saved as settings.json and inside every checkpoint.

    images: train only on the samples whose image file name (no folder) is listed; None = all.
    class_names: a fixed class order for the model (background first or not), as `open_dataset`
    takes it; None = the dataset's own order.
    anchors: the anchors of a fresh run's model (e.g. fitted by `auto_anchors.choose_anchors`);
    None = the model's own. A resumed run keeps those its last.pt holds.
    """

    data: str
    out: str
    split: str | None = "train"
    model: str = "mobilenet-v2"
    weights: str = "imagenet"
    preset: str | None = None
    iters: int | None = None
    epochs: int | None = None
    batch_size: int = 2
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iters: int = 100
    schedule: str = "cosine"  # or "step": x0.1 at 2/3 and 8/9 of the run
    frozen_stages: int | None = None  # backbone parameters frozen up to this many stages
    checkpoint_every: int = 200
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # used on CUDA only
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    images: tuple[str, ...] | None = None
    class_names: tuple[str, ...] | None = None
    minutes: float | None = None  # a time budget instead of iters/epochs (timekeeping.py)
    val_split: str | None = None  # the hold-out validated on while training: this split of data,
    val_images: tuple[str, ...] | None = None  # or these images of `split` (by file name)
    input_size: tuple[int, int] | None = None  # (min_size, max_size) of the resize; None: the model's
    roi_batch: int | None = None  # RoIs sampled per image for the box head in training; None: the model's
    anchors: AnchorConfig | None = None
    grad_clip: float | None = None  # the gradients' total norm is clipped to this; None: not clipped

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainSettings:
        """The inverse of `to_dict`, also after a JSON round trip (which turns tuples into lists).
        TypeError for unknown or missing fields."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TypeError(f"unknown train settings {unknown}")
        values = dict(data)
        augment = dict(values.get("augment") or {})
        if "scale" in augment:
            augment["scale"] = tuple(augment["scale"])
        values["augment"] = AugmentConfig(**augment)
        for name in ("images", "class_names", "val_images", "input_size"):
            if values.get(name) is not None:
                values[name] = tuple(values[name])
        if values.get("anchors") is not None:
            values["anchors"] = AnchorConfig.from_dict(values["anchors"])
        return cls(**values)


def total_iterations(settings: TrainSettings, dataset_size: int, world: int) -> int:
    if settings.iters:
        return settings.iters
    per_epoch = math.ceil(dataset_size / (settings.batch_size * world))
    return per_epoch * (settings.epochs or 1)


def train(settings: TrainSettings, cancel: Callable[[], bool] = lambda: False, resume: bool = False, *,
          preview: Callable[[FasterRCNN, int], None] | None = None, preview_every: int = 0) -> Iterator[Progress]:
    """Run (or resume) a training run, yielding a Progress per iteration. See the module doc.

    preview: called as `preview(model, iteration)` after every `preview_every`-th optimizer step
    (0: never), on rank 0, with the model in eval mode under torch.inference_mode(); afterwards
    every module's mode and torch's random state are restored, so the run is bit-identical to
    one without a preview.
    With `settings.minutes` the run ends with its time budget (timekeeping.py) and validates on
    its hold-out as it goes (validation.py): final.pt is then the best model by validation AP50.
    """
    clock = Clock(settings.minutes * 60, warmup_iters=settings.warmup_iters) if settings.minutes else None
    rank, world = process_group()
    device = resolve_device(settings.device)
    run = Path(settings.out)
    checkpoint = run / "last.pt"
    if resume and not checkpoint.exists():
        raise InputError(checkpoint, "nothing to resume: no last.pt in the run folder")
    dataset = open_dataset(settings.data, settings.split, settings.class_names)
    if settings.images is not None:
        dataset = select_images(dataset, settings.images)
        if len(dataset) == 0:
            raise InputError(settings.data, f"none of the {len(settings.images)} chosen images is an annotated "
                                            f"image of split {settings.split!r}")
    if len(dataset) == 0:
        raise InputError(settings.data, f"split {settings.split!r} has no annotated images")
    torch.manual_seed(settings.seed)  # fresh layers (a new head, random weights) start the same every run
    # On resume last.pt is the model: settings.model may itself be a checkpoint, which build_model
    # would load in place of any weights.
    model_source, weights = (str(checkpoint), "none") if resume else (settings.model, settings.weights)
    model = build_model(model_source, weights, preset=settings.preset, class_names=dataset.class_names,
                        anchors=None if resume else settings.anchors)
    if not resume:
        model.config = with_settings(model.config, settings)
    freeze_stages(model, settings.frozen_stages)
    model.to(device).train()
    if device.type == "cuda":
        model.use_channels_last()
    trained = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    optimizer = make_optimizer(model, settings)
    total = 0 if clock else total_iterations(settings, len(dataset), world)
    scheduler = make_scheduler(optimizer, settings, total, clock.lr_factor if clock else None)
    generator = torch.Generator().manual_seed(settings.seed + rank)
    start, saved = 0, {}
    if resume:
        start, saved = _restore(checkpoint, optimizer, scheduler, generator, rank)
    if clock is not None and "budget" in saved:
        clock.state = BudgetState(**saved["budget"])
    validator = None
    if clock is not None and rank == 0:
        holdout = holdout_dataset(settings, dataset.class_names)
        if holdout is not None and len(holdout):
            validator = Validator(holdout, run, device, ValidationState(**saved.get("validation", {})))
    dataset.transform = Augment(settings.augment, seed=settings.seed)
    batches = Batches(dataset, settings.batch_size, settings.seed, rank, world)
    if rank == 0 and not resume:  # settings.json marks when the run began
        run.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(run / "settings.json", json.dumps(settings.to_dict(), indent=1).encode())
    started = Progress("started", start, total, batches.epoch_of(start), {}, optimizer.param_groups[0]["lr"], 0.0,
                       float("inf"), dataset.problem_summary())
    show = None
    if preview is not None and preview_every > 0 and rank == 0:
        show = functools.partial(_preview, model, preview, preview_every, device)
    parts = RunParts(trained, model, optimizer, scheduler, generator, batches, settings, device, rank, clock, validator)
    records = run_loop(parts, start, total, cancel, show)
    log = _append_log(run / "log.jsonl") if rank == 0 else None
    try:
        for record in (started, *[]), records:
            for progress in record:
                if log:
                    log.write(progress.to_json() + "\n")
                    log.flush()
                yield progress
    finally:
        if log:
            log.close()


def with_settings(config: DetectorConfig, settings: TrainSettings) -> DetectorConfig:
    """`config` with the settings' input size and RoI batch where they set one."""
    if settings.input_size is not None:
        low, high = settings.input_size
        config = replace(config, transform=replace(config.transform, min_size=low, max_size=high))
    if settings.roi_batch is not None:
        config = replace(config, roi_train=replace(config.roi_train, batch_size_per_image=settings.roi_batch))
    return config


def _append_log(path: Path):
    """The log opened for appending on a line of its own: a run killed mid-record leaves a torn
    last line, which the records of a resumed run must not run on into."""
    torn = False
    if path.exists() and path.stat().st_size > 0:
        with path.open("rb") as existing:
            existing.seek(-1, os.SEEK_END)
            torn = existing.read(1) != b"\n"
    log = path.open("a")
    if torn:
        log.write("\n")
    return log


def _restore(checkpoint: Path, optimizer, scheduler, generator, rank: int) -> tuple[int, dict]:
    """Put the training state of `checkpoint` (a run's last.pt) back; its iteration and the
    budget's and validation's states ({} for a run without a budget). InputError for a file
    without one (a model checkpoint, say) or with a damaged one."""
    extra = torch.load(checkpoint, map_location="cpu", weights_only=True)
    try:
        optimizer.load_state_dict(extra["optimizer"])
        scheduler.load_state_dict(extra["scheduler"])
        generator.set_state(extra["rng"]["sampling"][rank])
        torch.set_rng_state(extra["rng"]["torch"])
        return int(extra["iteration"]), {key: extra[key] for key in ("budget", "validation") if key in extra}
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as error:
        raise InputError(checkpoint, f"cannot resume: no usable training state in it ({type(error).__name__}: "
                                     f"{str(error).splitlines()[0] if str(error) else 'missing'}); "
                                     "it is a model, not a run's last.pt") from error


def _preview(model: FasterRCNN, preview: Callable[[FasterRCNN, int], None], every: int, device: torch.device,
             iteration: int) -> None:
    """On every `every`-th iteration, `preview(model, iteration)` in eval mode under inference
    mode, then each module's own mode and torch's random state back as they were."""
    if iteration % every:
        return
    modes = [(module, module.training) for module in model.modules()]
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.inference_mode():
            model.eval()
            preview(model, iteration)
    finally:
        for module, training in modes:
            module.training = training


