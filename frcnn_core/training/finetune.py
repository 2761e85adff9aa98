"""Fine-tuning runs from the application: plan a run on the user's boxes, train it, score it.

A *plan* fixes everything before anything is written: the train and validation images (by file
name), the classes (background first), the base model and the classes it detects, the
annotation problems met while reading the data, and the `TrainSettings`. `run_finetune` writes
the plan into the run folder as plan.json and trains; `score_run` scores the run's checkpoint on
the validation images and compares it with the base model there (on the classes both know, by
name: `frcnn_core.analysis.compare_models.ClassOverlap`), writing metrics.json, so every run holds its own
before/after comparison. `load_plan` reads a plan back (resume, the Runs panel).
`plan_budgeted_finetune` plans the same kind of run from a time budget (`budget.plan_budget`).
"""
from __future__ import annotations

import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from frcnn_core.analysis.compare_models import ClassOverlap, Comparison, compare_detections, on_classes
from frcnn_core.analysis.evaluate import coco_detections, coco_ground_truth, coco_metrics, run_detections
from frcnn_core.data.augment import AugmentConfig
from frcnn_core.data.formats import open_dataset
from frcnn_core.data.samples import (
    CLIPPED,
    PROBLEM_KINDS,
    SKIPPED_NO_ANNOTATION,
    SKIPPED_NO_IMAGE,
    DetectionDataset,
    Sample,
    select_images,
)
from frcnn_core.errors import InputError
from frcnn_core.io.atomic import write_bytes_atomic
from frcnn_core.modeling.model import FasterRCNN
from frcnn_core.modeling.zoo import BUNDLED, MODELS, WEIGHT_CHOICES, build_model
from frcnn_core.training.auto_anchors import AnchorFit
from frcnn_core.training.budget import plan_budget, write_anchor_report
from frcnn_core.training.runs import FINAL_CHECKPOINT, LAST_CHECKPOINT, LOG_FILE, METRICS_FILE, PLAN_FILE, read_json
from frcnn_core.training.train import Progress, TrainSettings, pick_device, train
from frcnn_core.training.validation import split_train_val


@dataclass(frozen=True)
class FinetunePlan:
    """A fine-tuning run, decided but not started.

    settings: ready for `train()`; settings.images are the train images, settings.class_names
    the classes. val_images: file names of the validation images, read from `val_split` of
    settings.data when set, else from the same split as the train images. train_boxes,
    val_boxes: boxes per class name (background left out, zero counts kept).
    base_classes: the classes the base model detects (background left out), () when its
    detection head is untrained; None in a plan.json written before it was recorded.
    problems: the annotation problems met reading the data, one sentence each
    (`annotation_problems`).
    why: a budgeted plan's reasons for its choices, one line each (`plan_budget`); () otherwise.
    anchor_fit: a budgeted plan's anchor coverage, whose report a fresh run writes into its
    folder (anchors.json, anchors.png); not saved in plan.json, so None in a plan read back.
    """

    settings: TrainSettings
    val_images: tuple[str, ...]
    class_names: list[str]
    train_boxes: dict[str, int]
    val_boxes: dict[str, int]
    base_model: str
    base_weights: str
    val_split: str | None = None
    base_classes: tuple[str, ...] | None = None
    problems: tuple[str, ...] = ()
    why: tuple[str, ...] = ()
    anchor_fit: AnchorFit | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict:
        """Every field but `anchor_fit`, JSON-ready."""
        data = asdict(replace(self, anchor_fit=None))
        del data["anchor_fit"]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> FinetunePlan:
        """The inverse of `to_dict`, also after a JSON round trip. KeyError/TypeError when damaged."""
        base_classes = data.get("base_classes")
        return cls(TrainSettings.from_dict(data["settings"]), tuple(data["val_images"]), list(data["class_names"]),
                   dict(data["train_boxes"]), dict(data["val_boxes"]), str(data["base_model"]),
                   str(data["base_weights"]), data.get("val_split"),
                   None if base_classes is None else tuple(str(name) for name in base_classes),
                   tuple(str(line) for line in data.get("problems", ())),
                   tuple(str(line) for line in data.get("why", ())))


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
    to check it and to note the classes it detects (a second or so; longer for the big COCO models).
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
    base_classes = detected_classes(model, weights)
    classes = dataset.class_names if class_names else _same_order(dataset.class_names, base_classes)
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
    problems = list(dict.fromkeys(dataset.problems + (val_set.problems if val_set is not dataset else [])))
    return FinetunePlan(settings, val_names, classes, train_boxes,
                        _boxes_per_class(select_images(val_set, val_names), classes), model, weights, val_split,
                        base_classes, annotation_problems(problems, [*dataset.samples, *val_set.samples]))


def plan_budgeted_finetune(data: str, runs_dir: str, minutes: float, base_model: str | None = None,
                           base_weights: str | None = None, *, split: str | None = None, device: str = "auto",
                           name: str | None = None, seed: int = 0) -> FinetunePlan:
    """Plan fine-tuning for `minutes` of wall time, everything else chosen from the data by
    `plan_budget` (its `why` lines and anchor fit travel in the plan); writes nothing.

    base_model, base_weights: the user's choice, which wins over the plan's; None: the plan's.
    split: the VOC split to train on (None: the data's default; pass "train" for a VOC folder
    with a "val" split, which the plan then validates on). The hold-out, the classes (in the base
    model's order when it has the same ones), the box counts, the annotation problems and the run
    folder are `plan_finetune`'s for that hold-out. InputError (one line) as either raises it.
    """
    given = {} if base_model is None else {"model": base_model, "weights": base_weights or "none"}
    # the run folder is named after the planned base model: `plan_finetune` picks it below
    budget = plan_budget(data, minutes, str(runs_dir), given, split=split, seed=seed, device=device)
    chosen = budget.settings
    held_out = None if chosen.val_split is not None else chosen.val_images or ()  # (): too few images to hold out
    plan = plan_finetune(data, runs_dir, chosen.model, chosen.weights, train_split=split, val_split=chosen.val_split,
                         val_images=held_out, device=device, name=name, seed=seed)
    settings = replace(chosen, out=plan.settings.out, model=plan.settings.model, images=plan.settings.images,
                       class_names=plan.settings.class_names)
    return replace(plan, settings=settings, why=budget.why, anchor_fit=budget.anchor_fit)


def _check_numbers(iters: int, lr: float, batch_size: int, val_fraction: float) -> None:
    for wrong, problem in ((iters < 1, f"iterations must be at least 1, not {iters}"),
                           (not lr > 0, f"the learning rate must be above 0, not {lr}"),
                           (batch_size < 1, f"the batch size must be at least 1, not {batch_size}"),
                           (not 0 <= val_fraction < 1,
                            f"the validation fraction must be in [0, 1), not {val_fraction}")):
        if wrong:
            raise InputError(None, problem)


def _absolute(model_or_weights: str) -> str:
    """A file path made absolute (the run may be read from another folder); names unchanged."""
    is_name = model_or_weights in MODELS or model_or_weights in BUNDLED or model_or_weights in WEIGHT_CHOICES
    return model_or_weights if is_name or not Path(model_or_weights).exists() else str(Path(model_or_weights).resolve())


def _same_order(dataset_names: list[str], base_classes: tuple[str, ...]) -> list[str]:
    """The dataset's classes (background first), in the base model's order when it detects the same classes."""
    return [dataset_names[0], *base_classes] if set(base_classes) == set(dataset_names[1:]) else list(dataset_names)


def detected_classes(model: str, weights: str) -> tuple[str, ...]:
    """The classes `model` with `weights` detects, background left out, in its label order; ()
    when its detection head is untrained: a zoo architecture with an ImageNet backbone or random
    weights. The model is built (which checks it); InputError as `build_model` raises it."""
    with torch.random.fork_rng():  # fresh layers draw from torch's generator; leave the caller's as it was
        names = build_model(model, weights).class_names
    untrained_head = model in MODELS and weights in ("imagenet", "none")
    return () if untrained_head else tuple(names[1:])


def class_overlap(plan: FinetunePlan) -> ClassOverlap:
    """What the plan's base model and the model it trains can be compared on. A plan that did not
    record its base model's classes has the base model built to read them."""
    base_classes = plan.base_classes if plan.base_classes is not None else detected_classes(plan.base_model,
                                                                                           plan.base_weights)
    return ClassOverlap(base_classes, tuple(plan.class_names[1:]))


def annotation_problems(problem_lines: list[str], samples: list[Sample]) -> tuple[str, ...]:
    """The annotation problems of a dataset as sentences a person reads at a glance, e.g.
    "10 images have no annotation file: not used for training (e.g. raccoon-12.jpg)".

    problem_lines: `DetectionDataset.problems` ("<file>: <subject> <kind>"); samples: the
    dataset's samples (an image whose annotation holds no box shows the model background only).
    Kinds not named below read "<n> boxes <kind>", e.g. "2 boxes skipped: zero-area box".
    """
    by_kind: dict[str, list[str]] = {}
    for line in problem_lines:
        kind = next((kind for kind in PROBLEM_KINDS if line.endswith(kind)), "with another problem")
        by_kind.setdefault(kind, []).append(line.split(": ", 1)[0])
    sentences = []
    for kind, files in by_kind.items():
        count, example = len(files), Path(files[0]).name
        if kind == SKIPPED_NO_ANNOTATION:
            text = f"{_count(count, 'image has', 'images have')} no annotation file: not used for training"
        elif kind == SKIPPED_NO_IMAGE:
            text = f"{_count(count, 'annotation names', 'annotations name')} an image that is not there: not used"
        elif kind == CLIPPED:
            text = f"{_count(count, 'box was', 'boxes were')} clipped at the image border"
        else:
            text = f"{_count(count, 'box', 'boxes')} {kind}"
        sentences.append(f"{text} (e.g. {example})")
    empty = list(dict.fromkeys(Path(sample.image_path).name for sample in samples if len(sample.boxes) == 0))
    if empty:
        sentences.append(f"{_count(len(empty), 'image has', 'images have')} an annotation without boxes: "
                         f"used as background only (e.g. {empty[0]})")
    return tuple(sentences)


def _count(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


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
                 preview: Callable[[FasterRCNN, int], None] | None = None,
                 preview_every: int = 0) -> Iterator[Progress]:
    """Write plan.json into the run folder, then train (or resume) the run: `train()`'s records.

    Evaluation is separate: call `evaluate_run` after the "done" record. InputError when a fresh
    run's folder already holds a run (resume it, or plan anew for a new folder).
    """
    run = Path(plan.settings.out)
    if not resume and (run / LOG_FILE).exists():
        raise InputError(run, "already holds a run; resume it or plan a new one")
    write_bytes_atomic(run / PLAN_FILE, json.dumps(plan.to_dict(), indent=1).encode())
    if plan.anchor_fit is not None and not resume:
        write_anchor_report(plan.anchor_fit, run)
    yield from train(plan.settings, cancel, resume, preview=preview, preview_every=preview_every)


def validation_dataset(plan: FinetunePlan) -> DetectionDataset:
    """The plan's validation images, read afresh (no augmentation), labels in the plan's order."""
    split = plan.val_split if plan.val_split is not None else plan.settings.split
    return select_images(open_dataset(plan.settings.data, split, plan.class_names), plan.val_images)


def base_model(plan: FinetunePlan, score_thresh: float | None = None) -> FasterRCNN:
    """The base model as the run found it, with its own classes: the "before" of a comparison."""
    return build_model(plan.base_model, plan.base_weights, preset=plan.settings.preset, score_thresh=score_thresh)


def score_run(plan_or_run_dir: FinetunePlan | str | os.PathLike,
              device: str = "cpu") -> tuple[dict, Comparison | None]:
    """Score the run's final.pt (else last.pt) on the validation images and compare it there with
    the base model, on the classes both detect (by name; `class_overlap`). One detection pass per
    model serves the scores and the comparison. Returns (metrics, the Comparison of the two
    models' detections, None when they are not comparable) and writes metrics.json (atomically):

    {"AP", "AP50", "AP75", "per_class_AP50": {name: AP50}: the new model on every class of the run,
     "val_images": n, "checkpoint": "final.pt",
     "before_after": {"base_model", "verdict": a ClassOverlap verdict, "note": its one line,
                      "base_classes": [...], "classes": [the classes compared on],
                      "before": {"AP", "AP50", "AP75", "per_class_AP50"}: the base model on those classes,
                      "after": {same keys}: the new model on those classes,
                      "changes": {"gained", "lost", "changed_class", "kept"}}}
    before, after and changes are None when nothing can be compared (no shared class, or an
    untrained base head: its random scores are no "before"). APs are None (per-class dicts
    empty) without validation images. InputError when the run has no checkpoint yet.
    """
    plan = plan_or_run_dir if isinstance(plan_or_run_dir, FinetunePlan) else load_plan(plan_or_run_dir)
    run = Path(plan.settings.out)
    checkpoint = next((run / name for name in (FINAL_CHECKPOINT, LAST_CHECKPOINT) if (run / name).exists()), None)
    if checkpoint is None:
        raise InputError(run, "nothing to evaluate yet: no final.pt or last.pt")
    val, target, overlap = validation_dataset(plan), pick_device(device), class_overlap(plan)
    run_names = plan.class_names
    after = _detections(build_model(str(checkpoint), score_thresh=0.0), val, target, run_names, run_names[1:])
    before_after = {"base_model": plan.base_model, "verdict": overlap.verdict, "note": overlap.note(),
                    "base_classes": list(overlap.base_classes), "classes": list(overlap.shared),
                    "before": None, "after": None, "changes": None}
    comparison = None
    if overlap.comparable:
        before = _detections(base_model(plan, score_thresh=0.0), val, target, run_names, overlap.shared)
        after_shared = on_classes(after, run_names, run_names, overlap.shared)
        comparison = compare_detections(before, after_shared)
        before_after.update(before=_scores(val, before, overlap.shared),
                            after=_scores(val, after_shared, overlap.shared),
                            changes={"gained": comparison.gained, "lost": comparison.lost,
                                     "changed_class": comparison.changed_class, "kept": comparison.kept})
    metrics = {**_scores(val, after, run_names[1:]), "val_images": len(val), "checkpoint": checkpoint.name,
               "before_after": before_after}
    write_bytes_atomic(run / METRICS_FILE, json.dumps(metrics, indent=1).encode())
    return metrics, comparison


def evaluate_run(plan_or_run_dir: FinetunePlan | str | os.PathLike, device: str = "cpu") -> dict:
    """`score_run`'s metrics alone (also written to metrics.json)."""
    return score_run(plan_or_run_dir, device)[0]


def _detections(model: FasterRCNN, dataset: DetectionDataset, device: torch.device, run_names: list[str],
                classes) -> list[dict]:
    """The model's records on the dataset, labels mapped by name to the run's, only `classes` kept."""
    if len(dataset) == 0:
        return []
    records = run_detections(model.to(device), dataset, device, progress=False)
    return on_classes(records, model.class_names, run_names, classes)


def _scores(dataset: DetectionDataset, records: list[dict], classes) -> dict:
    """COCO AP, AP50, AP75 and per-class AP50 of `records` (labels in the dataset's label space)
    over the ground truth of `classes` only; None / {} without images or where pycocotools has none."""
    if len(dataset) == 0:
        return {"AP": None, "AP50": None, "AP75": None, "per_class_AP50": {}}
    wanted = set(classes)
    ground_truth = coco_ground_truth(dataset)
    # COCOeval scores the listed categories only: the ground truth of other classes is left aside
    ground_truth["categories"] = [category for category in ground_truth["categories"] if category["name"] in wanted]
    coco = coco_metrics(ground_truth, coco_detections(records), dataset.class_names)
    scores = {key: (None if isinstance(coco[key], float) and math.isnan(coco[key]) else coco[key])
              for key in ("AP", "AP50", "AP75")}
    return {**scores, "per_class_AP50": coco["per_class_AP50"]}
