"""Fine-tuning runs from the application: plan a run on the user's boxes, train it, score it.

A *plan* fixes everything before anything is written: the train and validation images (by file
name), the classes (background first), the base model and the `TrainSettings`. `run_finetune`
writes the plan into the run folder as plan.json and trains; `evaluate_run` scores the run's
checkpoint and the base model on the validation images and writes metrics.json, so every run
holds its own before/after comparison. `load_plan` reads a plan back (resume, the Runs panel).

The before/after comparison of detections is `frcnn_core.compare`.
"""
from __future__ import annotations

import json
import math
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Iterator

import torch

from frcnn_core.compare import Comparison, compare_detections
from frcnn_core.data.augment import AugmentConfig
from frcnn_core.data.dataset import DetectionDataset, open_dataset, select_images
from frcnn_core.errors import InputError
from frcnn_core.evaluate import coco_detections, coco_ground_truth, coco_metrics, relabel, run_detections
from frcnn_core.fileio import write_bytes_atomic
from frcnn_core.model import FasterRCNN
from frcnn_core.runs import FINAL_CHECKPOINT, LAST_CHECKPOINT, LOG_FILE, METRICS_FILE, PLAN_FILE, read_json
from frcnn_core.train import Progress, TrainSettings, pick_device, train
from frcnn_core.zoo import BUNDLED, MODELS, WEIGHT_CHOICES, build_model


@dataclass(frozen=True)
class FinetunePlan:
    """A fine-tuning run, decided but not started.

    settings: ready for `train()`; settings.images are the train images, settings.class_names
    the classes. val_images: file names of the validation images, read from `val_split` of
    settings.data when set, else from the same split as the train images. train_boxes,
    val_boxes: boxes per class name (background left out, zero counts kept).
    """

    settings: TrainSettings
    val_images: tuple[str, ...]
    class_names: list[str]
    train_boxes: dict[str, int]
    val_boxes: dict[str, int]
    base_model: str
    base_weights: str
    val_split: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "FinetunePlan":
        """The inverse of `to_dict`, also after a JSON round trip. KeyError/TypeError when damaged."""
        return cls(TrainSettings.from_dict(data["settings"]), tuple(data["val_images"]), list(data["class_names"]),
                   dict(data["train_boxes"]), dict(data["val_boxes"]), str(data["base_model"]),
                   str(data["base_weights"]), data.get("val_split"))


def split_train_val(names: list[str], labels: list[torch.Tensor], val_fraction: float,
                    seed: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Split N images into (train names, validation names), deterministically from `seed`.

    names: N image file names; labels: N int64 tensors (G_i,), each image's box labels.
    round(val_fraction * N) images are asked for validation, at least 1 when N >= 2, never all;
    they are taken in a seeded random order, passing over any image whose move would leave a
    class without a box in train. So validation comes out smaller than asked (even empty) when
    the data has too few boxes of some class. Both tuples keep the order of `names`.
    """
    wanted = 0 if len(names) < 2 else min(len(names) - 1, max(1, round(val_fraction * len(names))))
    train_counts = Counter(label for image_labels in labels for label in image_labels.tolist())
    val_idx: set[int] = set()
    for index in torch.randperm(len(names), generator=torch.Generator().manual_seed(seed)).tolist():
        if len(val_idx) == wanted:
            break
        image_counts = Counter(labels[index].tolist())
        if all(train_counts[label] > count for label, count in image_counts.items()):
            train_counts.subtract(image_counts)
            val_idx.add(index)
    return (tuple(name for index, name in enumerate(names) if index not in val_idx),
            tuple(name for index, name in enumerate(names) if index in val_idx))


def plan_finetune(data: str, runs_dir: str, base_model: str = "bccd-demo", base_weights: str = "none", *,
                  val_fraction: float = 0.2, train_split: str | None = None, val_split: str | None = None,
                  val_images: tuple[str, ...] | None = None, iters: int = 100, lr: float = 0.01,
                  batch_size: int = 2, frozen_stages: int | None = None, device: str = "auto",
                  augment: AugmentConfig | None = None, name: str | None = None, seed: int = 0,
                  class_names: list[str] | None = None) -> FinetunePlan:
    """Plan fine-tuning `base_model` (with `base_weights`) on the boxes in `data`; writes nothing.

    data: anything `open_dataset` reads; train_split picks a VOC split (None: its default).
    Validation: the images of VOC split `val_split` (left out of training), or the images named
    in `val_images`, else about `val_fraction` of the images by `split_train_val(seed)`.
    Classes: `class_names` when given, else the dataset's — in the base model's order when it has
    the same classes, so that its trained predictor is kept. The base model is built once here
    to check it (a second or so; longer for the big COCO models).
    The run folder is runs_dir/name (default "<YYYYmmdd-HHMMSS>-<base model>"), with "-2", "-3"...
    appended when taken. CPU-friendly schedule: warm-up min(100, iters // 5) iterations, a
    checkpoint every max(10, iters // 5).
    InputError (one line) for: no boxes in the data, a class without train boxes, iters < 1,
    lr <= 0, batch_size < 1, val_fraction outside [0, 1), a bad run name, an unknown base model.
    """
    _check_numbers(iters, lr, batch_size, val_fraction)
    if val_split is not None and val_images is not None:
        raise InputError(None, "give the validation images by val_split or by val_images, not both")
    dataset = open_dataset(data, train_split, class_names)
    if not any(len(sample.boxes) for sample in dataset.samples):
        raise InputError(data, f"no annotated images: {len(dataset)} images with annotations, none with a box")
    names = [Path(sample.image_path).name for sample in dataset.samples]
    twice = sorted(name for name, count in Counter(names).items() if count > 1)
    if twice:
        raise InputError(data, f"{len(twice)} image file names occur twice, e.g. {twice[0]!r}; "
                               "a run names its images by file name")
    model, weights = _absolute(base_model), _absolute(base_weights)
    with torch.random.fork_rng():  # fresh layers draw from torch's generator; leave the caller's as it was
        base_names = build_model(model, weights).class_names
    classes = dataset.class_names if class_names else _same_order(dataset.class_names, base_names)
    val_set = open_dataset(data, val_split, classes) if val_split is not None else dataset
    if val_split is not None:
        val_names = tuple(Path(sample.image_path).name for sample in val_set.samples)
    elif val_images is not None:
        val_names = _named(val_images, names, data)
    else:
        val_names = split_train_val(names, [sample.labels for sample in dataset.samples], val_fraction, seed)[1]
    is_val = set(val_names)
    train_names = tuple(name for name in names if name not in is_val)
    train_boxes = _boxes_per_class(select_images(dataset, train_names), classes)
    missing = [name for name, count in train_boxes.items() if count == 0]
    if missing:
        raise InputError(data, f"class {missing[0]!r} has no boxes in the {len(train_names)} training images; "
                               "draw some, or leave the class out")
    settings = TrainSettings(
        data=str(Path(data).resolve()), out=str(_run_folder(Path(runs_dir), name, base_model).resolve()),
        split=train_split, model=model, weights=weights, iters=iters, batch_size=batch_size, lr=lr,
        warmup_iters=min(TrainSettings.warmup_iters, iters // 5), frozen_stages=frozen_stages,
        checkpoint_every=max(10, iters // 5), seed=seed, device=device, augment=augment or AugmentConfig(),
        images=train_names, class_names=tuple(classes),
    )
    return FinetunePlan(settings, val_names, classes, train_boxes,
                        _boxes_per_class(select_images(val_set, val_names), classes), model, weights, val_split)


def _check_numbers(iters: int, lr: float, batch_size: int, val_fraction: float) -> None:
    for wrong, problem in ((iters < 1, f"iterations must be at least 1, not {iters}"),
                           (not lr > 0, f"the learning rate must be above 0, not {lr}"),
                           (batch_size < 1, f"the batch size must be at least 1, not {batch_size}"),
                           (not 0 <= val_fraction < 1, f"the validation fraction must be in [0, 1), not {val_fraction}")):
        if wrong:
            raise InputError(None, problem)


def _absolute(model_or_weights: str) -> str:
    """A file path made absolute (the run may be read from another folder); names unchanged."""
    is_name = model_or_weights in MODELS or model_or_weights in BUNDLED or model_or_weights in WEIGHT_CHOICES
    return model_or_weights if is_name or not Path(model_or_weights).exists() else str(Path(model_or_weights).resolve())


def _same_order(dataset_names: list[str], base_names: list[str]) -> list[str]:
    """The dataset's classes, in the base model's order when both have the same classes."""
    return list(base_names) if set(base_names[1:]) == set(dataset_names[1:]) else list(dataset_names)


def _named(wanted: tuple[str, ...], names: list[str], data: str) -> tuple[str, ...]:
    """`wanted`, each of which must be one of the data's image names, in the data's order."""
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        raise InputError(data, f"{len(unknown)} validation images are not annotated images here, e.g. {unknown[0]!r}")
    wanted = set(wanted)
    return tuple(name for name in names if name in wanted)


def _boxes_per_class(dataset: DetectionDataset, classes: list[str]) -> dict[str, int]:
    counts = Counter(dataset.class_names[label] for sample in dataset.samples for label in sample.labels.tolist())
    return {name: counts[name] for name in classes[1:]}


def _run_folder(runs_dir: Path, name: str | None, base_model: str) -> Path:
    if name is not None and (Path(name).name != name or name in ("", ".", "..")):
        raise InputError(runs_dir, f"run name {name!r} must be a plain folder name")
    stem = name or f"{time.strftime('%Y%m%d-%H%M%S')}-{Path(base_model).stem}"
    folder, number = runs_dir / stem, 1
    while folder.exists():
        number += 1
        folder = runs_dir / f"{stem}-{number}"
    return folder


def load_plan(run_dir: str | os.PathLike) -> FinetunePlan:
    """The plan in a run folder's plan.json, its settings.out pointing at `run_dir` wherever the
    folder now lies. InputError when missing or damaged."""
    path = Path(run_dir) / PLAN_FILE
    try:
        plan = FinetunePlan.from_dict(read_json(path))
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(path, f"damaged plan ({error.__class__.__name__}: {error})") from error
    return replace(plan, settings=replace(plan.settings, out=str(Path(run_dir).resolve())))


def run_finetune(plan: FinetunePlan, cancel: Callable[[], bool] = lambda: False, resume: bool = False,
                 preview: Callable[[FasterRCNN, int], None] | None = None, preview_every: int = 0) -> Iterator[Progress]:
    """Write plan.json into the run folder, then train (or resume) the run: `train()`'s records.

    Evaluation is separate: call `evaluate_run` after the "done" record. InputError when a fresh
    run's folder already holds a run (resume it, or plan anew for a new folder).
    """
    run = Path(plan.settings.out)
    if not resume and (run / LOG_FILE).exists():
        raise InputError(run, "already holds a run; resume it or plan a new one")
    write_bytes_atomic(run / PLAN_FILE, json.dumps(plan.to_dict(), indent=1).encode())
    yield from train(plan.settings, cancel, resume, preview=preview, preview_every=preview_every)


def validation_dataset(plan: FinetunePlan) -> DetectionDataset:
    """The plan's validation images, read afresh (no augmentation), labels in the plan's order."""
    split = plan.val_split if plan.val_split is not None else plan.settings.split
    return select_images(open_dataset(plan.settings.data, split, plan.class_names), plan.val_images)


def starting_model(plan: FinetunePlan, score_thresh: float | None = None) -> FasterRCNN:
    """The model the run starts from: the base weights with the plan's classes, fresh layers drawn
    as `train()` draws them; torch's global random state is left as it was."""
    with torch.random.fork_rng():
        torch.manual_seed(plan.settings.seed)
        return build_model(plan.settings.model, plan.settings.weights, preset=plan.settings.preset,
                           score_thresh=score_thresh, class_names=plan.class_names)


def score_run(plan_or_run_dir: FinetunePlan | str | os.PathLike, device: str = "cpu") -> tuple[dict, Comparison]:
    """COCO AP of the run's final.pt (else last.pt) and of its starting model on the validation
    images, and the comparison of their detections there (one detection pass per model serves
    both); returns (metrics, Comparison) and writes the metrics to metrics.json (atomically):

    {"AP", "AP50", "AP75", "per_class_AP50": {name: AP50}, "val_images": n, "checkpoint": "final.pt",
     "before": {"AP", "AP50", "AP75", "per_class_AP50", "model": base model},
     "validation_changes": {"gained", "lost", "changed_class", "kept"}}
    APs are None (per-class dicts empty) when nothing can be scored: no validation images.
    InputError when the run has no checkpoint yet.
    """
    plan = plan_or_run_dir if isinstance(plan_or_run_dir, FinetunePlan) else load_plan(plan_or_run_dir)
    run = Path(plan.settings.out)
    checkpoint = next((run / name for name in (FINAL_CHECKPOINT, LAST_CHECKPOINT) if (run / name).exists()), None)
    if checkpoint is None:
        raise InputError(run, "nothing to evaluate yet: no final.pt or last.pt")
    val, target = validation_dataset(plan), pick_device(device)
    after_scores, after = _detect_and_score(build_model(str(checkpoint), score_thresh=0.0).to(target), val, target)
    before_scores, before = _detect_and_score(starting_model(plan, score_thresh=0.0).to(target), val, target)
    comparison = compare_detections(before, after)
    changes = {"gained": comparison.gained, "lost": comparison.lost, "changed_class": comparison.changed_class,
               "kept": comparison.kept}
    metrics = {**after_scores, "val_images": len(val), "checkpoint": checkpoint.name,
               "before": {**before_scores, "model": plan.base_model}, "validation_changes": changes}
    write_bytes_atomic(run / METRICS_FILE, json.dumps(metrics, indent=1).encode())
    return metrics, comparison


def evaluate_run(plan_or_run_dir: FinetunePlan | str | os.PathLike, device: str = "cpu") -> dict:
    """`score_run`'s metrics alone (also written to metrics.json)."""
    return score_run(plan_or_run_dir, device)[0]


def _detect_and_score(model: FasterRCNN, dataset: DetectionDataset, device: torch.device) -> tuple[dict, list[dict]]:
    """COCO AP, AP50, AP75 and per-class AP50 (None / {} without images or where pycocotools has
    none) and the detection records they came from: one detection pass serves both the scores and
    the before / after comparison."""
    if len(dataset) == 0:
        return {"AP": None, "AP50": None, "AP75": None, "per_class_AP50": {}}, []
    records = run_detections(model, dataset, device, progress=False)
    named = relabel(records, model.class_names, dataset.class_names)
    coco = coco_metrics(coco_ground_truth(dataset), coco_detections(named), dataset.class_names)
    scores = {key: (None if isinstance(coco[key], float) and math.isnan(coco[key]) else coco[key])
              for key in ("AP", "AP50", "AP75")}
    return {**scores, "per_class_AP50": coco["per_class_AP50"]}, records
