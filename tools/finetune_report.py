"""The fine-tuning check on BCCD: the application's path, from a folder of labelled images to a
before/after score.

    python tools/finetune_report.py --iters 150 --out runs/finetune-check

Copies the first `--images` images of BCCD's train split with their XML into a folder (the GUI's
"current folder" case) together with the whole val split, plans a run of `mobilenet-v2` with
ImageNet weights that trains on the former and validates on the latter (`plan_finetune`), trains
it (`run_finetune`) and scores it before and after (`evaluate_run`), printing val AP50 and
per-class AP50 and the wall time of each step.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from frcnn_core.data.augment import AugmentConfig  # noqa: E402
from frcnn_core.training.finetune import evaluate_run, plan_finetune, run_finetune  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "bccd"


def print_scores(metrics: dict) -> None:
    """`evaluate_run`'s metrics: what was compared, val AP50 before -> after (the new model's
    alone when the base model cannot be compared with it) and per class."""
    block = metrics["before_after"]
    before = block["before"] or {"AP": float("nan"), "AP50": float("nan"), "per_class_AP50": {}}
    after = block["after"] or metrics
    print(f"\n{block['note']}\nval AP50 before {before['AP50']:.3f} -> after {after['AP50']:.3f} "
          f"(AP {before['AP']:.3f} -> {after['AP']:.3f}; {metrics['val_images']} images, {metrics['checkpoint']})")
    for name, ap50 in metrics["per_class_AP50"].items():
        print(f"  {name:10s} AP50 {before['per_class_AP50'].get(name, float('nan')):.3f} -> {ap50:.3f}")


def split_ids(split: str) -> list[str]:
    return (DATA / "ImageSets" / "Main" / f"{split}.txt").read_text().split()


def make_folder(folder: Path, ids: list[str]) -> None:
    """Each image of `ids` with its VOC XML beside it (labelImg's layout)."""
    for image_id in ids:
        shutil.copyfile(DATA / "JPEGImages" / f"{image_id}.jpg", folder / f"{image_id}.jpg")
        shutil.copyfile(DATA / "Annotations" / f"{image_id}.xml", folder / f"{image_id}.xml")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=150)
    parser.add_argument("--images", type=int, default=20, help="training images, from the start of the train split")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--out", required=True, help="runs folder; the run goes into a new folder inside")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bccd-folder-") as temp:
        folder = Path(temp)
        train_ids, val_ids = split_ids("train")[: args.images], split_ids("val")
        make_folder(folder, train_ids + val_ids)
        plan = plan_finetune(str(folder), args.out, "mobilenet-v2", "imagenet", iters=args.iters, lr=args.lr,
                             batch_size=args.batch_size, device="cpu", val_images=tuple(f"{i}.jpg" for i in val_ids),
                             augment=AugmentConfig(hflip=0.5, vflip=0.5), name=f"bccd-{args.images}-images")
        print(f"run {plan.settings.out}: {len(plan.settings.images)} train images {plan.train_boxes}, "
              f"{len(plan.val_images)} val images {plan.val_boxes}", flush=True)
        started = time.perf_counter()
        for progress in run_finetune(plan):
            if progress.event != "iteration" or progress.iteration % 25 == 0:
                print(f"{progress.event} {progress.iteration}/{progress.total} "
                      f"loss {sum(progress.losses.values()):.3f} {progress.message}", flush=True)
            if progress.event == "stopped":
                return 1
        trained = time.perf_counter()
        metrics = evaluate_run(plan)
    finished = time.perf_counter()
    print_scores(metrics)
    print(f"wall time: {trained - started:.0f} s training {args.iters} iterations, {finished - trained:.0f} s "
          f"evaluating before and after, {finished - began:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
