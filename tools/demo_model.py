"""Train, evaluate and export the bundled `bccd-demo` model (`make demo-model`).

    python tools/demo_model.py run --split train --out runs/bccd-train        # held-out numbers on val
    python tools/demo_model.py run --split trainval --out runs/bccd-trainval  # the final model
    python tools/demo_model.py export --run runs/bccd-trainval --heldout runs/bccd-train

`run` trains with RECIPE, then evaluates on the val split (held out only for the train split) and
times inference; `export` stores the final weights as float16 in
frcnn_core/resources/models/bccd-demo.pt (about half the size; loading casts back to float32) with a
model card beside it.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from frcnn_core.analysis.evaluate import evaluate  # noqa: E402
from frcnn_core.data.augment import AugmentConfig  # noqa: E402
from frcnn_core.data.formats import open_dataset  # noqa: E402
from frcnn_core.io.atomic import write_bytes_atomic  # noqa: E402
from frcnn_core.modeling.checkpoints import load_weights_file, save_checkpoint  # noqa: E402
from frcnn_core.modeling.zoo import build_model  # noqa: E402
from frcnn_core.names import BUNDLED  # noqa: E402
from frcnn_core.training.train import TrainSettings, train  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "bccd"
TARGET = BUNDLED["bccd-demo"]  # frcnn_core/resources/models/bccd-demo.pt of this checkout
RECIPE = dict(model="mobilenet-v2", weights="imagenet", iters=900, batch_size=2, lr=0.02, warmup_iters=100,
              schedule="cosine", checkpoint_every=100, seed=0,
              augment=AugmentConfig(hflip=0.5, vflip=0.5, photometric=True))


def seconds_per_image(model, dataset, count: int = 20) -> float:
    """Median wall time of one inference (under inference mode, as the CLI and the app run it) over
    the first `count` images (after one warm-up)."""
    images = [dataset[i][0] for i in range(min(count, len(dataset)))]
    times = []
    with torch.inference_mode():
        model([images[0]])
        for image in images:
            start = time.perf_counter()
            model([image])
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def command_run(args) -> None:
    """Train (unless the run already finished), then evaluate on val and time inference."""
    settings = TrainSettings(data=str(args.data), out=str(args.out), split=args.split, **RECIPE)
    if not (Path(args.out) / "final.pt").exists():
        for progress in train(settings, resume=args.resume):
            if progress.event in ("started", "done", "stopped", "cancelled") or progress.iteration % 50 == 0:
                print(f"{progress.event} {progress.iteration}/{progress.total} "
                      f"loss {sum(progress.losses.values()):.3f} {progress.message}", flush=True)
            if progress.event == "stopped":
                sys.exit(progress.message)
    # wall time from the run's start (settings.json) to its final checkpoint
    minutes = ((Path(args.out) / "final.pt").stat().st_mtime - (Path(args.out) / "settings.json").stat().st_mtime) / 60
    model = build_model(str(Path(args.out) / "final.pt"), score_thresh=0.0)
    val = open_dataset(args.data, "val")
    result = evaluate(model, val, plots_dir=Path(args.out) / "val_plots")
    summary = {**result.to_json(), "train_split": args.split, "held_out": args.split == "train",
               "training_minutes": round(minutes, 1), "seconds_per_image": seconds_per_image(model, val),
               "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
               "recipe": {k: (v.__dict__ if hasattr(v, "__dict__") else v) for k, v in RECIPE.items()}}
    write_bytes_atomic(Path(args.out) / "val_metrics.json", json.dumps(summary, indent=1).encode())
    print(json.dumps(summary, indent=1))


def command_export(args) -> None:
    source = load_weights_file(Path(args.run) / "final.pt")
    half = {k: v.half() if v.is_floating_point() else v for k, v in source.state_dict.items()}
    save_checkpoint(TARGET, source.model_name, source.config, source.class_names, half,
                    extra={"storage": "float16"})
    heldout = json.loads((Path(args.heldout) / "val_metrics.json").read_text())
    final = json.loads((Path(args.run) / "val_metrics.json").read_text())
    card = model_card(heldout, final, TARGET.stat().st_size / 2**20)
    write_bytes_atomic(TARGET.with_suffix(".md"), card.encode())
    print(card)


def model_card(heldout: dict, final: dict, size_mb: float) -> str:
    per_class = "\n".join(f"| {name} | {value:.3f} |" for name, value in heldout["per_class_AP50"].items())
    return f"""# bccd-demo

A `mobilenet-v2` Faster R-CNN (MobileNetV2 ImageNet backbone, 128-channel FPN, strides 8-64)
trained by this project on BCCD blood-cell images (classes RBC, WBC, Platelets). Bundled so that
the application works offline; weights stored as float16 ({size_mb:.1f} MB).

## Data and command
- Data: `../shared/data/bccd` (Shenggan/BCCD_Dataset, MIT). Settings were chosen on the `train`
  split with `val` held out; the bundled model is the same recipe retrained on `trainval`.
- Command: `make demo-model` (`tools/demo_model.py`), recipe: `{json.dumps(heldout["recipe"])}`.
- Training time on this CPU ({heldout["machine"]}): {heldout["training_minutes"]} min (train split),
  {final["training_minutes"]} min (trainval).

## Held-out metrics (model trained on `train`, evaluated on `val`, {heldout["images"]} images)
AP {heldout["AP"]:.3f}, AP50 {heldout["AP50"]:.3f}, AP75 {heldout["AP75"]:.3f}, VOC07 mAP {heldout["voc07_mAP"]:.3f};
inference {heldout["seconds_per_image"]:.3f} s per 640x480 image (median, this CPU).

| class | AP50 |
|---|---|
{per_class}

The final `trainval` model saw the val images, so its val numbers (AP50 {final["AP50"]:.3f}) are
not held out and are given only as a check that the retraining worked.

## Licenses
BCCD: MIT (`../shared/data/bccd/LICENSE`). MobileNetV2 ImageNet weights: torchvision, BSD-3-Clause.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run")
    run.add_argument("--data", type=Path, default=DATA)
    run.add_argument("--split", default="train")
    run.add_argument("--out", type=Path, required=True)
    run.add_argument("--resume", action="store_true")
    export = commands.add_parser("export")
    export.add_argument("--run", required=True)
    export.add_argument("--heldout", required=True)
    args = parser.parse_args()
    {"run": command_run, "export": command_export}[args.command](args)


if __name__ == "__main__":
    main()
