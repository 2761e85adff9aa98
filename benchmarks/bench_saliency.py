"""Are the saliency maps faithful? The deletion test over BCCD val detections of the bundled model
(issue 15, point 2), and the cost of a D-RISE preview (point 4).

For each of the first images of BCCD's val split (sorted by name) its DETECTIONS_PER_IMAGE best
detections scoring at least MIN_SCORE are explained by each method; the map's 10 % most salient
pixels are filled with the image's mean colour, and so is a random 10 % (the mean of 4 draws); the
detection's score (the box head on its own RoI) is measured after each. A method is faithful when
its mean score drop is at least TARGET_RATIO times the random deletion's mean drop.

The preview: D-RISE's first PREVIEW_MASKS masks for each detection, timed from the call to the map
(torch's default threads; the application's engine runs on half the cores, see bench_gui.py).

Run: `.venv/bin/python benchmarks/bench_saliency.py [--detections 50] [--masks N] [--device cuda] [--json]`
(run_all.py runs it with its defaults, on the CPU).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from frcnn_core.allocator import keep_freed_memory
from frcnn_core.data.formats import open_dataset
from frcnn_core.inspect.saliency import (
    DRISE,
    METHODS,
    PREVIEW_MASKS,
    deletion_test,
    detection_target,
    drise,
    hires_cam,
)
from frcnn_core.io.images import load_image
from frcnn_core.modeling.zoo import build_model

BCCD = Path(os.environ.get("FRCNN_BCCD", Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bccd"))
SPLIT = "val"
DETECTIONS = 50
DETECTIONS_PER_IMAGE = 2
MIN_SCORE = 0.5
TARGET_RATIO = 2.0
BENCH_MASKS = 256  # D-RISE's masks for the deletion test: past the preview, well short of the default 1,000


def targets(model, count: int):
    """(image, target) pairs: the first val images' best detections (module docstring), the
    images on the model's device."""
    dataset = open_dataset(str(BCCD), split=SPLIT)
    device = next(model.parameters()).device
    for sample in sorted(dataset.samples, key=lambda s: Path(s.image_path).name):
        image = load_image(sample.image_path).tensor.to(device)
        with torch.inference_mode():
            _, traces = model([image], trace=True)
        detections = traces[0].detections
        for index in range(min(DETECTIONS_PER_IMAGE, int((detections.scores >= MIN_SCORE).sum()))):
            yield image, detection_target(traces[0], index)
            count -= 1
            if count == 0:
                return


def drise_with_preview(model, image, target, masks: int) -> tuple[torch.Tensor, float]:
    """D-RISE's map at `masks`, and the seconds until its first PREVIEW_MASKS were done."""
    started, preview_s = time.perf_counter(), None
    for step in drise(model, image, target, masks):
        if preview_s is None and step.done >= min(PREVIEW_MASKS, masks):
            synchronize(image.device)
            preview_s = time.perf_counter() - started
    return step.heatmap, preview_s


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a GPU's kernels run after the call returns)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(detections: int = DETECTIONS, masks: int = BENCH_MASKS, device: str = "cpu") -> dict:
    model = build_model("bccd-demo").to(device)
    drops = {method: ([], []) for method in METHODS}
    seconds = {method: [] for method in METHODS}
    previews = []
    for image, target in targets(model, detections):
        for method in METHODS:
            started = time.perf_counter()
            if method == DRISE:
                heatmap, preview_s = drise_with_preview(model, image, target, masks)
                previews.append(preview_s)
            else:
                heatmap = hires_cam(model, image, target)
            synchronize(image.device)
            seconds[method].append(time.perf_counter() - started)
            test = deletion_test(model, image, target, heatmap)
            drops[method][0].append(test.salient_drop)
            drops[method][1].append(test.random_drop)
    results = {}
    for method, (salient, random) in drops.items():
        salient_mean, random_mean = statistics.mean(salient), statistics.mean(random)
        results[method] = {"salient_drop": salient_mean, "random_drop": random_mean,
                           "ratio": salient_mean / random_mean if random_mean > 0 else float("inf"),
                           "seconds_median": statistics.median(seconds[method])}
    return {"detections": len(previews), "masks": masks, "threads": torch.get_num_threads(), "device": device,
            "methods": results,
            "preview_masks": min(PREVIEW_MASKS, masks), "preview_s_median": statistics.median(previews),
            "preview_s_max": max(previews), "target_ratio": TARGET_RATIO}


def lines(result: dict) -> list[tuple[str, str]]:
    """The rows run_all.py puts in its table."""
    rows = []
    for method, numbers in result["methods"].items():
        counted = f", {result['masks']} masks" if method == DRISE else ""
        verdict = "faithful" if numbers["ratio"] >= result["target_ratio"] else "NOT faithful: not offered"
        rows.append((f"saliency deletion test, {METHODS[method]}{counted} ({result['detections']} BCCD val "
                     f"detections, bccd-demo)",
                     f"top 10% deleted: score drop {numbers['salient_drop']:.3f}; random 10%: "
                     f"{numbers['random_drop']:.3f}; ratio {numbers['ratio']:.1f} (at least "
                     f"{result['target_ratio']:g}: {verdict}); {numbers['seconds_median']:.2f} s a map (median)"))
    on_gpu = result.get("device", "cpu").startswith("cuda")
    where = result["device"] if on_gpu else f"{result['threads']} threads"
    rows.append((f"D-RISE preview ({result['preview_masks']} masks, one detection, {where})",
                 f"{result['preview_s_median']:.1f} s median, {result['preview_s_max']:.1f} s max "
                 f"(under {1 if on_gpu else 10})"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detections", type=int, default=DETECTIONS, help=f"detections (default {DETECTIONS})")
    parser.add_argument("--masks", type=int, default=BENCH_MASKS, help=f"D-RISE's masks (default {BENCH_MASKS})")
    parser.add_argument("--device", default="cpu", help="cpu (default) | cuda | cuda:N")
    parser.add_argument("--json", action="store_true", help="print the result as JSON as the last line")
    args = parser.parse_args()
    keep_freed_memory()  # as the CLI and the application do
    result = run(args.detections, args.masks, args.device)
    for name, value in lines(result):
        print(f"{name}: {value}")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
