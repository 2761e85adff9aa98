"""Validation while a run trains: COCO AP50 on the hold-out, the best checkpoint kept, plateaus.

Each validation scores the model (in eval mode, under inference mode, then put back as it was)
on the hold-out images with pycocotools. A validation whose AP50 is the best yet, or within one
hold-out box of it (1 / the hold-out's GT boxes: the AP50 a single box's recall is worth), writes
the model to `best.pt` (atomically), so that of checkpoints the hold-out cannot tell apart the
later one, trained longer and at a lower learning rate, is kept. (Measured on raccoon: 19 hold-out
images, the best 0.982 at iteration 226 of 392 scored AP50 0.693 on the test photos, the last, at
0.975, scored 0.847.) At the end of the run `best.pt` becomes `final.pt`, `last.pt` is the last.
A plateau is PATIENCE validations in a row without a gain of MIN_GAIN over the best, made once
the run has settled: half the budget spent and the learning rate down to half its peak or less.
(Earlier in a run a stall is the learning rate's doing: on raccoon with a step schedule, whose drop comes
at 2/3 of the run, the AP50 stood still at the full rate and the run stopped at 56 % of its
budget, at hold-out AP50 0.68 where the cosine run reached 0.97.)
"""
from __future__ import annotations

import math
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch

from frcnn_core.analysis.evaluate import coco_detections, coco_ground_truth, coco_metrics, run_detections
from frcnn_core.data.formats import open_dataset
from frcnn_core.data.samples import DetectionDataset, select_images
from frcnn_core.modeling.checkpoints import save_checkpoint
from frcnn_core.modeling.model import FasterRCNN
from frcnn_core.training.runs import BEST_CHECKPOINT

VAL_SHARE, MIN_VAL, MAX_VAL = 0.15, 4, 100  # a budgeted run's hold-out, without a split in the data
MIN_IMAGES_TO_HOLD_OUT = 8
PATIENCE = 4
MIN_GAIN = 0.005


@dataclass
class ValidationState:
    """The run's validations so far (saved in last.pt, for resume)."""

    best_ap50: float = -1.0  # the highest AP50 so far
    best_iteration: int = -1  # the iteration of the checkpoint kept in best.pt
    since_best: int = 0  # settled validations since the highest AP50 last rose by MIN_GAIN
    kept_ap50: float = -1.0  # the AP50 of the checkpoint kept in best.pt
    history: list[dict] = field(default_factory=list)  # {"iteration", "AP50", "AP", "seconds"}


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


def holdout_split(data: str, dataset: DetectionDataset, split: str | None,
                  seed: int) -> tuple[str | None, tuple[str, ...] | None, tuple[str, ...] | None]:
    """(val_split, val_images, train_images) of a budgeted run on `dataset` (split `split` of
    `data`): a VOC folder's "val" split when it has one (train on all of `split`); else a seeded
    VAL_SHARE of the images (at least MIN_VAL, at most MAX_VAL; `split_train_val`); else, with
    fewer than MIN_IMAGES_TO_HOLD_OUT images, none: (None, None, None)."""
    if split != "val" and (Path(data) / "ImageSets" / "Main" / "val.txt").is_file():
        return "val", None, None
    names = [Path(sample.image_path).name for sample in dataset.samples]
    if len(names) < MIN_IMAGES_TO_HOLD_OUT:
        return None, None, None
    share = min(max(VAL_SHARE, MIN_VAL / len(names)), MAX_VAL / len(names))
    train_names, val_names = split_train_val(names, [sample.labels for sample in dataset.samples], share, seed)
    return (None, val_names, train_names) if val_names else (None, None, None)


def holdout_dataset(settings, class_names: list[str]) -> DetectionDataset | None:
    """A run's validation images (split `settings.val_split`, or `settings.val_images` of
    `settings.split`), labels in `class_names`' order; None when the settings name none."""
    if settings.val_split is not None:
        return open_dataset(settings.data, settings.val_split, class_names)
    if settings.val_images:
        return select_images(open_dataset(settings.data, settings.split, class_names), settings.val_images)
    return None


class Validator:
    """Scores `model` on `dataset` (the hold-out, labels in the model's order) and keeps the best."""

    def __init__(self, dataset: DetectionDataset, run: Path, device: torch.device,
                 state: ValidationState | None = None):
        self.dataset, self.run, self.device = dataset, run, device
        self.state = state or ValidationState()
        self._ground_truth = coco_ground_truth(dataset)
        self.tolerance = 1.0 / max(1, len(self._ground_truth["annotations"]))  # one hold-out box's worth of AP50

    def validate(self, model: FasterRCNN, iteration: int, extra: dict, settled: bool = True) -> dict:
        """Score the model now; save it as best.pt when its AP50 is the best yet or within
        `tolerance` of it (module docstring). `settled`: the run has settled, so a validation
        without a gain counts towards a plateau. Returns the record {"iteration", "AP50", "AP",
        "seconds", "best": bool (kept as best.pt)}."""
        began = time.monotonic()
        modes = [(module, module.training) for module in model.modules()]
        try:
            with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
                model.eval()
                records = run_detections(model, self.dataset, self.device, progress=False)
        finally:
            for module, training in modes:
                module.training = training
        scores = coco_metrics(self._ground_truth, coco_detections(records), self.dataset.class_names)
        ap50 = 0.0 if math.isnan(scores["AP50"]) else scores["AP50"]
        ap = 0.0 if math.isnan(scores["AP"]) else scores["AP"]
        state = self.state
        first = state.best_iteration < 0
        rose = first or ap50 > state.best_ap50 + MIN_GAIN
        best = first or ap50 >= state.best_ap50 - self.tolerance
        state.since_best = 0 if rose else state.since_best + int(settled)
        state.best_ap50 = max(state.best_ap50, ap50)
        if best:
            state.kept_ap50, state.best_iteration = ap50, iteration
            save_checkpoint(self.run / BEST_CHECKPOINT, model.model_name, model.config, model.class_names,
                            model.state_dict(), extra=extra)
        record = {"iteration": iteration, "AP50": ap50, "AP": ap, "seconds": time.monotonic() - began, "best": best}
        self.state.history.append({key: record[key] for key in ("iteration", "AP50", "AP", "seconds")})
        return record

    def validated_at(self, iteration: int) -> bool:
        return bool(self.state.history) and self.state.history[-1]["iteration"] == iteration

    def plateaued(self) -> bool:
        """PATIENCE settled validations in a row without a gain."""
        return self.state.since_best >= PATIENCE

    def promote(self, final: Path) -> bool:
        """Make best.pt the run's final.pt (a rename: atomic); False when there is no best.pt."""
        best = self.run / BEST_CHECKPOINT
        if not best.exists():
            return False
        os.replace(best, final)
        return True

    def summary(self) -> str:
        if self.state.best_iteration < 0:
            return "no validation yet"
        state = self.state
        kept = f"best validation AP50 {state.kept_ap50:.3f} at iteration {state.best_iteration}"
        if state.kept_ap50 >= state.best_ap50:
            return kept
        return (f"{kept} (the highest, {state.best_ap50:.3f}, is within one hold-out box, {self.tolerance:.3f}: "
                f"the later checkpoint is kept)")
