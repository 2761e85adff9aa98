"""Fine-tuning within a time budget, side by side: `frcnn train --minutes M` against torchvision's tutorial recipe.

Issue 14, point 3. For each dataset (see finetune_splits.py: raccoon 80/20, BCCD with 20 or all 205
training images and its val split as the test set) and each budget, both recipes train on the same
train folder for the same wall time, one after the other on this machine, and are scored on the
same test folder by the same scorer: pycocotools' AP50 and AP (`frcnn_core.analysis.evaluate`'s
coco_ground_truth / coco_detections / coco_metrics) over every detection scoring at least
SCORE_THRESH (at most 100 per image, both detectors' default).

- ours: `python -m frcnn_core.cli.main train --data TRAIN --minutes M --out RUN`, nothing else, in a
  subprocess (its screen output goes to RUN.log); then RUN/final.pt, evaluated by our detector.
  iterations: the run log's last; seconds: the subprocess's wall time, start-up included.
- tutorial: tutorial_recipe.py in this process; seconds: from building the model to the end of
  the last iteration (the budget counts from the same moment).

Ablations of ours (recipes "ours/NAME", ABLATIONS): one planned choice overruled by a flag each.

Run: `.venv/bin/python benchmarks/bench_finetune.py [--datasets raccoon,bccd20,bccd205] [--minutes 5,10]
[--recipes ours,tutorial,ours/step-schedule,...] [--seed 0] [--json OUT] [--scratch DIR] [--write-results] [--smoke]`.
Not part of `make bench`: the full grid trains for 3 datasets x (5 + 10) minutes x 2 recipes = 90 minutes.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torchvision

from frcnn_core.analysis.evaluate import coco_detections, coco_ground_truth, coco_metrics, relabel, run_detections
from frcnn_core.data.formats import open_dataset
from frcnn_core.modeling.zoo import build_model
from frcnn_core.training.budget import plan_budget
from frcnn_core.training.runs import FINAL_CHECKPOINT, read_log

import tutorial_recipe
from common import atomic_write_text, cpu_model
from finetune_splits import DATASETS, Split, build_split

ROOT = Path(__file__).resolve().parents[1]
RESULTS_PATH = Path(__file__).resolve().parent / "finetune_results.md"
RECIPES = ("ours", "tutorial")
# The ablation of our recipe: each is `frcnn train --minutes` with one planned choice overruled by a flag
# (recipe name "ours/NAME"). A shape that equals the plan's is skipped (it would be "ours" again).
ABLATIONS = {
    "anchors-unfitted": ["--anchors", "model"],  # the model's own anchors, no fit to the training boxes
    "step-schedule": ["--schedule", "step"],  # x0.1 at 2/3 and 8/9 of the planned iterations, not cosine
    "fine-shape": ["--model", "mobilenet-v2"],  # stride 8-64, 128-channel FPN, trainable batch norm
    "coarse-shape": ["--model", "mobilenet-v2-fpn"],  # stride 32 + pool, 256 channels, frozen batch norm
    "tutorial-size": ["--input-size", "800", "1333"],  # torchvision's resize, not the planned one
}
SCORE_THRESH = 0.001  # keep (nearly) every detection, as AP wants; torchvision's own default is 0.05
SMOKE = {"minutes": [0.2], "recipes": ["tutorial"], "train_limit": 4, "test_limit": 3}
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # the tutorial's choice; ours: --device auto


def score(records: list[dict], test) -> dict:
    """{"AP50", "AP"} of records (labels in the test dataset's numbering) on the test dataset."""
    metrics = coco_metrics(coco_ground_truth(test), coco_detections(records), test.class_names)
    return {"AP50": metrics["AP50"], "AP": metrics["AP"]}


def run_tutorial(split: Split, minutes: float, seed: int, run_dir: Path) -> dict:
    """Train and score the tutorial recipe: {"AP50", "AP", "iterations", "seconds"}. run_dir: unused."""
    train, test = open_dataset(split.train_dir), open_dataset(split.test_dir)
    run = tutorial_recipe.train_for(train.samples, len(train.class_names), minutes, seed, DEVICE)
    records = tutorial_recipe.detect(run.model, test.samples, SCORE_THRESH, DEVICE)
    return {**score(records, test), "iterations": run.iterations, "seconds": run.seconds}


def ours_command(split: Split, minutes: float, run_dir: Path, flags: list[str] = ()) -> list[str]:
    """The `frcnn train` call a user would type, with nothing but --data, --minutes and --out (and
    an ablation's flags)."""
    return [sys.executable, "-m", "frcnn_core.cli.main", "train", "--data", str(split.train_dir),
            "--minutes", f"{minutes:g}", "--out", str(run_dir), *flags]


def planned_model(split: Split, minutes: float) -> str:
    """The base model `frcnn train --minutes` plans for the split (it reads annotations only)."""
    with tempfile.TemporaryDirectory() as out:
        return plan_budget(str(split.train_dir), minutes, out).settings.model


def run_ours(split: Split, minutes: float, seed: int, run_dir: Path, flags: list[str] = ()) -> dict:
    """Train with `frcnn train --minutes` and score its final.pt: {"AP50", "AP", "iterations", "seconds"}.
    seed: unused (the command's own default seed). RuntimeError with the log's last line when it fails."""
    log_path = run_dir.parent / f"{run_dir.name}.log"
    started = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        done = subprocess.run(ours_command(split, minutes, run_dir, flags), cwd=ROOT, stdout=log,
                              stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        lines = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines() or ["(no output)"]
        raise RuntimeError(f"frcnn train exited with {done.returncode} (see {log_path}): {lines[-1]}")
    test = open_dataset(split.test_dir)
    model = build_model(str(run_dir / FINAL_CHECKPOINT), score_thresh=SCORE_THRESH).to(DEVICE)
    records = relabel(run_detections(model, test, DEVICE, progress=False), model.class_names, test.class_names)
    iterations = max((record.get("iteration", 0) for record in read_log(run_dir)), default=0)
    return {**score(records, test), "iterations": iterations, "seconds": seconds}


RUNNERS = {"ours": run_ours, "tutorial": run_tutorial}
RECIPE_NAMES = (*RECIPES, *(f"ours/{name}" for name in ABLATIONS))


def runner(recipe: str, split: Split, minutes: float):
    """The function that runs `recipe` ("ours", "tutorial" or "ours/ABLATION") on the split, or None
    when the ablation would repeat the plan (a shape flag naming the planned model)."""
    if recipe in RUNNERS:
        return RUNNERS[recipe]
    flags = ABLATIONS[recipe.split("/", 1)[1]]
    if flags[0] == "--model" and flags[1] == planned_model(split, minutes):
        return None
    return lambda split, budget, seed, run_dir: run_ours(split, budget, seed, run_dir, flags)


def benchmark(datasets: list[str], minutes: list[float], recipes: list[str], seed: int, scratch: Path,
              train_limit: int | None = None, test_limit: int | None = None) -> list[dict]:
    """One record per (dataset, minutes, recipe), in that order: the split's sizes, the budget and
    what run_ours / run_tutorial return. A line on stderr as each run ends."""
    records = []
    for dataset in datasets:
        split = build_split(dataset, scratch, seed, train_limit, test_limit)
        for budget in minutes:
            for recipe in recipes:
                run = runner(recipe, split, budget)
                if run is None:
                    print(f"{dataset} {budget:g} min {recipe}: skipped (the plan's own model)", file=sys.stderr)
                    continue
                run_dir = split.train_dir.parent / "runs" / f"{recipe.replace('/', '-')}-{budget:g}min"
                run_dir.parent.mkdir(exist_ok=True)
                result = run(split, budget, seed, run_dir)
                records.append({"dataset": dataset, "train_images": len(split.train_images),
                                "test_images": len(split.test_images), "minutes": budget, "recipe": recipe,
                                **result})
                print(f"{dataset} {budget:g} min {recipe}: AP50 {result['AP50']:.3f}, AP {result['AP']:.3f}, "
                      f"{result['iterations']} iterations in {result['seconds']:.0f} s", file=sys.stderr)
    return records


def _ap(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def _gain(ours: float, tutorial: float) -> str:
    return "n/a" if math.isnan(ours - tutorial) else f"{ours - tutorial:+.3f}"


def table(records: list[dict]) -> str:
    """Markdown: a row per record, then per (dataset, minutes) with both recipes a row "ours − tutorial"."""
    lines = ["| dataset | train / test images | minutes | recipe | AP50 | AP | iterations | seconds |",
             "|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple, dict[str, dict]] = {}
    for record in records:
        groups.setdefault((record["dataset"], record["minutes"]), {})[record["recipe"]] = record
    for runs in groups.values():
        for record in runs.values():
            lines.append(f"| {record['dataset']} | {record['train_images']} / {record['test_images']} | "
                         f"{record['minutes']:g} | {record['recipe']} | {_ap(record['AP50'])} | {_ap(record['AP'])} | "
                         f"{record['iterations']} | {record['seconds']:.0f} |")
        if set(RECIPES) <= set(runs):
            ours, tutorial = runs["ours"], runs["tutorial"]
            lines.append(f"| {ours['dataset']} | | {ours['minutes']:g} | ours − tutorial | "
                         f"{_gain(ours['AP50'], tutorial['AP50'])} | {_gain(ours['AP'], tutorial['AP'])} | | |")
        for name, ablated in runs.items():
            if name.startswith("ours/") and "ours" in runs:
                ours = runs["ours"]
                lines.append(f"| {ours['dataset']} | | {ours['minutes']:g} | {name} − ours | "
                             f"{_gain(ablated['AP50'], ours['AP50'])} | {_gain(ablated['AP'], ours['AP'])} | | |")
    return "\n".join(lines)


def context(seed: int, started: datetime.datetime, argv: list[str], loads: tuple[float, float]) -> list[str]:
    """The lines above the table: when, what ran, on what (with the 1-minute load average at start
    and end: training time per iteration follows it), how it was scored."""
    return [
        f"- {started:%Y-%m-%d %H:%M} UTC; `python benchmarks/bench_finetune.py {' '.join(argv)}`; "
        f"load average (1 min) at start {loads[0]:.1f}, at end {loads[1]:.1f}",
        f"- torch {torch.__version__}, torchvision {torchvision.__version__}, Python {platform.python_version()}; "
        f"{cpu_model()}, {os.cpu_count()} logical CPUs, torch threads {torch.get_num_threads()}; device {DEVICE}",
        f"- seed {seed}; scored with pycocotools on the test folder, every detection scoring >= {SCORE_THRESH}",
        "- ours: `frcnn train --data TRAIN --minutes M --out RUN`, then RUN/final.pt; tutorial: "
        "benchmarks/tutorial_recipe.py (torchvision only); seconds: ours the whole command, the tutorial "
        "model building + training",
    ]


def _json_ready(records: list[dict]) -> list[dict]:
    return [{key: None if isinstance(value, float) and math.isnan(value) else value for key, value in record.items()}
            for record in records]


def _names(text: str, known: tuple[str, ...]) -> list[str]:
    names = [name for name in text.split(",") if name]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(known)}")
    return names


def _budgets(text: str) -> list[float]:
    try:
        budgets = [float(value) for value in text.split(",")]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of minutes") from error
    if not all(math.isfinite(value) and value > 0 for value in budgets):
        raise argparse.ArgumentTypeError(f"{text!r}: every budget must be a number of minutes > 0")
    return budgets


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=lambda text: _names(text, DATASETS), default=list(DATASETS),
                        help=f"comma-separated, of {', '.join(DATASETS)} (default: all)")
    parser.add_argument("--minutes", type=_budgets, default=None, help="comma-separated budgets (default 5,10)")
    parser.add_argument("--recipes", type=lambda text: _names(text, RECIPE_NAMES), default=None,
                        help="comma-separated, of ours, tutorial (default: both) and the ablations of ours: "
                             + ", ".join(f"ours/{name}" for name in ABLATIONS))
    parser.add_argument("--seed", type=int, default=0, help="the splits' and the tutorial's seed (default 0)")
    parser.add_argument("--json", metavar="OUT", help="write the records as JSON")
    parser.add_argument("--scratch", metavar="DIR", type=Path,
                        help="where the splits and runs go (kept; default: a temporary folder, removed)")
    parser.add_argument("--write-results", nargs="?", const=RESULTS_PATH, type=Path, metavar="MD",
                        help=f"write the table to MD (default {RESULTS_PATH.name} beside this script)")
    parser.add_argument("--smoke", action="store_true",
                        help=f"{SMOKE['train_limit']} training and {SMOKE['test_limit']} test images per dataset, "
                             f"{SMOKE['minutes'][0]} minutes, the tutorial only (frcnn train refuses budgets under "
                             "a minute), unless --minutes or --recipes say otherwise")
    args = parser.parse_args(argv)
    args.minutes = args.minutes or (SMOKE["minutes"] if args.smoke else [5.0, 10.0])
    args.recipes = args.recipes or (SMOKE["recipes"] if args.smoke else list(RECIPES))
    return args


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_arguments(argv)
    started, load_at_start = datetime.datetime.now(datetime.timezone.utc), os.getloadavg()[0]
    limits = (SMOKE["train_limit"], SMOKE["test_limit"]) if args.smoke else (None, None)
    with tempfile.TemporaryDirectory(prefix="bench_finetune_") as temporary:
        records = benchmark(args.datasets, args.minutes, args.recipes, args.seed, args.scratch or Path(temporary),
                            *limits)
    text = table(records)
    print(text)
    if args.json:
        atomic_write_text(Path(args.json), json.dumps(_json_ready(records), indent=1) + "\n")
    if args.write_results:
        heading = ("# Fine-tuning within a time budget: the ablation of our recipe"
                   if any(recipe.startswith("ours/") for recipe in args.recipes)
                   else "# Fine-tuning within a time budget: ours against torchvision's tutorial recipe")
        lines = context(args.seed, started, argv, (load_at_start, os.getloadavg()[0]))
        atomic_write_text(args.write_results, "\n".join([heading, "", *lines, "", text, ""]))
        print(f"written to {args.write_results}")


if __name__ == "__main__":
    main()
