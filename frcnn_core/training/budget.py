"""A fine-tuning run planned from the data and a time budget: `frcnn train --data D --minutes N`.

`plan_budget` reads the annotations (image and box sizes, never pixels) and decides what a user
would otherwise have to guess, each with a "why" line: the base model and weights (COCO where
its file is on this machine, else the ImageNet MobileNetV2 in the shape that suits the boxes), the
input size, the batch size, the learning rate and warm-up (the schedule ends with the budget:
timekeeping.py), the flips, and the hold-out validated on (a VOC `val` split when there is one,
else a seeded share). Every setting the user gives wins over the plan and is said to.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from frcnn_core.data.augment import AugmentConfig
from frcnn_core.data.formats import open_dataset
from frcnn_core.data.samples import DetectionDataset, sample_size, select_images
from frcnn_core.devices import resolve_device
from frcnn_core.errors import InputError
from frcnn_core.io.atomic import write_bytes_atomic
from frcnn_core.modeling.checkpoints import cached_weights
from frcnn_core.modeling.zoo import MODELS, build_model
from frcnn_core.training.auto_anchors import AnchorFit, choose_anchors
from frcnn_core.training.train import TrainSettings, with_settings
from frcnn_core.training.validation import holdout_split

MIN_MINUTES, MAX_MINUTES = 1.0, 7 * 24 * 60.0
ANCHOR_REPORT, ANCHOR_PICTURE = "anchors.json", "anchors.png"  # in the run folder
COARSE_MODEL, FINE_MODEL = "mobilenet-v2-fpn", "mobilenet-v2"  # ImageNet MobileNetV2: strides 32-64 / 8-64
COARSE_SMALLEST = 32.0  # the coarse model's smallest anchor: boxes under it are for the fine model
COCO_BY_DEVICE = {"cpu": ("mobilenet-v3-fpn", "resnet50-fpn"), "cuda": ("resnet50-fpn", "mobilenet-v3-fpn")}
INPUT_LIMITS = {"cpu": (320, 640), "cuda": (320, 1024)}  # the shorter side's range
BATCH = {"cpu": 2, "cuda": 4}
LR_PER_IMAGE = 0.0025  # SGD's learning rate per image of the batch (0.005 a two-image batch, as the tutorial)
ROI_BATCH = {"cpu": 128, "cuda": 512}  # RoIs sampled per image for the box head (the Fast R-CNN paper: 64-128)
WARMUP_ITERS = 50
# the gradients' total norm is clipped here: healthy steps on raccoon measured 2.3-31 (median 7.9);
# a raccoon 10-minute run without it grew 0.5 -> 169 -> NaN in its box head at iteration 81
GRAD_CLIP = 35.0
SMALL_BOX_QUANTILE = 0.1  # "the small boxes": this quantile of sqrt(area)


ANCHOR_CHOICES = ("auto", "fit", "model")  # fit when the heads are new / fit anyway / keep the model's


@dataclass(frozen=True)
class BudgetPlan:
    """The settings of a budgeted run, why each was chosen (one line each), and the anchor
    coverage measured on the training boxes (before / after a fit)."""

    settings: TrainSettings
    why: tuple[str, ...]
    anchor_fit: AnchorFit

    def save_anchor_report(self, folder: str | os.PathLike) -> None:
        """The plan's `write_anchor_report` in `folder`."""
        write_anchor_report(self.anchor_fit, folder)


def write_anchor_report(fit: AnchorFit, folder: str | os.PathLike) -> None:
    """anchors.json (the coverage before / after and the anchors) and anchors.png in `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(folder / ANCHOR_REPORT, json.dumps(fit.to_json(), indent=1).encode())
    fit.save_picture(folder / ANCHOR_PICTURE)


def plan_budget(data: str, minutes: float, out: str, given: dict | None = None, split: str | None = "train",
                seed: int = 0, device: str = "auto", anchors: str = "auto") -> BudgetPlan:
    """Plan a run of `minutes` on the annotations in `data` (any layout `open_dataset` reads).

    given: TrainSettings fields the user set (they win; e.g. {"model": "resnet50-fpn", "lr": 0.02}).
    anchors: "auto" fits anchors to the training boxes when the detection heads start new (an
    ImageNet or random base, or another class set) and the fit covers more boxes; "fit" whenever
    it covers more; "model" keeps the model's (coverage is measured and reported in every case).
    InputError (one line): a budget under MIN_MINUTES or over MAX_MINUTES, no boxes, a class
    without training boxes.
    """
    given = dict(given or {})
    if not (math.isfinite(minutes) and MIN_MINUTES <= minutes <= MAX_MINUTES):
        raise InputError(None, f"a budget of {minutes:g} minutes: give from {MIN_MINUTES:g} minute to "
                               f"{MAX_MINUTES / 60 / 24:g} days (under a minute no detector learns anything)")
    kind = resolve_device(device).type
    dataset = open_dataset(data, split)
    if not any(len(sample.boxes) for sample in dataset.samples):
        raise InputError(data, f"no training boxes: {len(dataset)} annotated images, none with a box")
    why: list[str] = []
    val_split, val_images, train_images = holdout_split(data, dataset, split, seed)
    why.append(_holdout_line(val_split, val_images, train_images, len(dataset)))
    _check_classes(data, dataset, train_images)
    sides, shorter, ratio = _shapes(dataset)  # sides: per class, the small boxes' sqrt(area)
    low, high = INPUT_LIMITS[kind]
    native = float(torch.median(shorter))
    min_size = int(min(max(round(native / 32) * 32, low), high))
    max_size = int(round(min_size * float(torch.quantile(ratio, 0.9)) / 32) * 32)
    scale = min_size / native
    small = float(sides.min()) * scale
    why.append(f"input: shorter side {min_size} px, longer at most {max_size} (the images' median shorter side "
               f"is {native:.0f} px; {low}-{high} on this {kind.upper()}); the smallest tenth of the boxes of "
               f"{dataset.class_names[int(sides.argmin()) + 1]} is then under {small:.0f} px")
    model, weights, line = _base_model(kind, small)
    why.append(line)
    batch, roi_batch = BATCH[kind], ROI_BATCH[kind]
    lr = LR_PER_IMAGE * batch
    why.append(f"batch {batch} images, SGD learning rate {lr:g} ({LR_PER_IMAGE:g} an image), warm-up "
               f"{WARMUP_ITERS} iterations, then cosine to 0 when the {minutes:g} minutes end; the iterations "
               "are planned from the measured speed and planned again after every iteration")
    if roi_batch != 512:
        why.append(f"the box head learns from {roi_batch} sampled RoIs an image, not torchvision's 512: on a "
                   f"{kind.upper()} the head's cost falls about fourfold, so the budget holds more iterations, "
                   f"and a quarter of {roi_batch} still holds every object's positive RoIs")
    why.append(f"gradients clipped to a total norm of {GRAD_CLIP:g}: an exploding step is held back instead of "
               "ending the run in NaN (healthy steps stay under it)")
    why.append("flips: left-right half of the time; upside down only when you ask for it (it suits microscopy "
               "and aerial images): the boxes of photos and of microscopy look alike in their shapes and "
               "places, so the data cannot tell which way is up")
    settings = TrainSettings(
        data=str(Path(data).resolve()), out=str(out), split=split, model=model, weights=weights, batch_size=batch,
        lr=lr, warmup_iters=WARMUP_ITERS, schedule="cosine", seed=seed, device=device,
        augment=AugmentConfig(hflip=0.5), images=train_images, class_names=tuple(dataset.class_names),
        minutes=float(minutes), val_split=val_split, val_images=val_images, input_size=(min_size, max_size),
        checkpoint_every=100, roi_batch=roi_batch, grad_clip=GRAD_CLIP,
    )
    chosen = {key: value for key, value in given.items() if value is not None}
    if chosen:
        settings = replace(settings, **chosen)
    fit = _anchor_fit(settings, dataset, anchors)
    why.append(f"anchors: {fit.why}")
    settings = replace(settings, anchors=fit.anchors if fit.fitted else None)
    if chosen:
        why.append("yours: " + ", ".join(f"{key} = {value}" for key, value in chosen.items()))
    return BudgetPlan(settings, tuple(why), fit)


def _anchor_fit(settings: TrainSettings, dataset: DetectionDataset, choice: str) -> AnchorFit:
    """The anchor coverage of the planned model on the training boxes, at the planned input size,
    with anchors fitted as `choice` says (see plan_budget)."""
    if choice not in ANCHOR_CHOICES:
        raise InputError(None, f"anchors {choice!r}: choose one of {', '.join(ANCHOR_CHOICES)}")
    with torch.random.fork_rng():  # fresh layers draw from torch's generator; leave the caller's as it was
        model = build_model(settings.model, settings.weights, preset=settings.preset)
    model.config = with_settings(model.config, settings)
    untrained = settings.model in MODELS and settings.weights in ("imagenet", "none")
    trained_heads = not untrained and set(model.class_names[1:]) == set(dataset.class_names[1:])
    train_set = select_images(dataset, settings.images) if settings.images is not None else dataset
    return choose_anchors(model, train_set, heads_new=choice == "fit" or (choice == "auto" and not trained_heads))


def _holdout_line(val_split, val_images, train_images, count: int) -> str:
    if val_split is not None:
        return f"validation: the {val_split!r} split (the data has one); training: the rest"
    if not val_images:
        return (f"validation: none ({count} images are too few to hold some out); final.pt is the last model")
    return (f"validation: {len(val_images)} of the {count} images, drawn with the seed (no split in the data); "
            f"training: the other {len(train_images)}")


def _check_classes(data: str, dataset: DetectionDataset, train_images) -> None:
    wanted = set(train_images) if train_images is not None else None
    counts = torch.zeros(len(dataset.class_names), dtype=torch.int64)
    for sample in dataset.samples:
        if wanted is None or Path(sample.image_path).name in wanted:
            counts += torch.bincount(sample.labels, minlength=len(dataset.class_names))
    missing = [name for label, name in enumerate(dataset.class_names) if label and not counts[label]]
    if missing:
        raise InputError(data, f"class {missing[0]!r} has no training boxes; draw some, or leave the class out")


def _shapes(dataset: DetectionDataset) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(per class: the SMALL_BOX_QUANTILE of its boxes' sqrt(area) (C - 1,), image shorter sides
    (N,), image long/short ratios (N,)), in original pixels. A class without boxes counts as large."""
    sizes = torch.tensor([sample_size(sample) for sample in dataset.samples], dtype=torch.float64)
    boxes = torch.cat([sample.boxes.double().reshape(-1, 4) for sample in dataset.samples])
    labels = torch.cat([sample.labels for sample in dataset.samples])
    sides = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).clamp(min=0).sqrt()
    small = torch.tensor([float(torch.quantile(sides[labels == label], SMALL_BOX_QUANTILE))
                          if (labels == label).any() else math.inf for label in range(1, len(dataset.class_names))])
    return small, sizes.min(dim=1).values, sizes.max(dim=1).values / sizes.min(dim=1).values


def _base_model(kind: str, small_box: float) -> tuple[str, str, str]:
    """(model, weights, why) for boxes whose small ones are `small_box` px at the chosen input."""
    for name in COCO_BY_DEVICE[kind]:
        if cached_weights(MODELS[name].coco_weights.url) is not None:
            return name, "coco", f"base: {name} with COCO weights (found on this machine: the best start there is)"
    if small_box >= COARSE_SMALLEST:
        return COARSE_MODEL, "imagenet", (
            f"base: {COARSE_MODEL}, ImageNet backbone (no COCO weights on this machine); the boxes are large "
            f"enough for its stride-32 maps and {COARSE_SMALLEST:.0f}-512 px anchors, which train fastest")
    return FINE_MODEL, "imagenet", (
        f"base: {FINE_MODEL}, ImageNet backbone (no COCO weights on this machine); its stride-8 level and "
        f"16 px anchors see the small boxes, which the stride-32 {COARSE_MODEL} would miss")
