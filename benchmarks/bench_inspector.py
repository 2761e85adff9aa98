"""The stage inspector's slider re-runs against their targets (issue 5), median milliseconds.

- relabel_anchors: the seed walkthrough's layout (paper-vgg16, seed preset, an 800x800 image:
  22,500 anchors), 20 GT boxes, one of them dragged by a few pixels before each call; target 30 ms.
- rerun_proposals: resnet50-fpn (random weights) on an 800x1216 image (242,991 anchors), the
  NMS IoU, pre/post-NMS top-N and min size changed before each call; target 100 ms.

Each model runs its backbone once (`Inspection.run`, not timed); the re-runs never touch it.

Run: `.venv/bin/python benchmarks/bench_inspector.py [--repeats N]`.
"""
from __future__ import annotations

import argparse
import itertools

import torch
import torch.nn.functional as F

from frcnn_core.inspect.inspection import Inspection
from frcnn_core.modeling.zoo import build_model

from common import BENCH_PHOTO, interleaved_timings, load_photo, summary

RELABEL_TARGET_MS, PROPOSALS_TARGET_MS = 30.0, 100.0
NUM_GT_BOXES = 20
PROPOSAL_KNOBS = ({"nms_thresh": 0.5}, {"nms_thresh": 0.6}, {"nms_thresh": 0.8}, {"pre_nms_top_n": 500},
                  {"post_nms_top_n": 300}, {"min_size": 8.0}, {})


def photo(height: int, width: int) -> torch.Tensor:
    return F.interpolate(load_photo(BENCH_PHOTO)[None], size=(height, width), mode="bilinear", align_corners=False)[0]


def random_gt_boxes(count: int, extent: float, generator: torch.Generator) -> torch.Tensor:
    """(count, 4) boxes of sides 40 to 300 px inside an extent x extent image."""
    sides = 40 + torch.rand(count, 2, generator=generator) * 260
    corners = torch.rand(count, 2, generator=generator) * (extent - sides)
    return torch.cat([corners, corners + sides], dim=1)


def dragged(gt_boxes: torch.Tensor):
    """A call that moves GT box 0 by one more pixel each time, then relabels: a drag."""
    steps = itertools.count()

    def move() -> torch.Tensor:
        moved = gt_boxes.clone()
        moved[0] += float(next(steps) % 50)
        return moved

    return move


def run(repeats: int) -> dict:
    torch.manual_seed(0)
    seed_model = build_model("paper-vgg16", "none", preset="seed")
    gt_boxes = random_gt_boxes(NUM_GT_BOXES, 800.0, torch.Generator().manual_seed(0))
    seed_inspection = Inspection.run(seed_model, photo(800, 800), gt_boxes)
    move = dragged(gt_boxes)
    knobs = itertools.cycle(PROPOSAL_KNOBS)

    torch.manual_seed(0)
    fpn_model = build_model("resnet50-fpn", "none")
    fpn_inspection = Inspection.run(fpn_model, photo(800, 1216))
    times, _ = interleaved_timings({
        "relabel_anchors": lambda: seed_inspection.relabel_anchors(move()),
        "rerun_proposals": lambda: fpn_inspection.rerun_proposals(**next(knobs)),
    }, repeats, warmup=2)
    return {
        "anchors": (len(seed_inspection.trace.anchors.boxes), len(fpn_inspection.trace.anchors.boxes)),
        "input_sizes": (seed_inspection.trace.input_size, fpn_inspection.trace.input_size),
        "backbone_calls": seed_inspection.backbone_calls + fpn_inspection.backbone_calls,
        "ms": {name: summary(values, unit=1000) for name, values in times.items()},
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21, help="timed calls of each (after 2 warm-up calls)")
    result = run(parser.parse_args().repeats)
    (seed_anchors, fpn_anchors), (seed_size, fpn_size) = result["anchors"], result["input_sizes"]
    rows = [
        ("relabel_anchors", f"{seed_anchors:,} anchors x {NUM_GT_BOXES} GT, {seed_size[0]}x{seed_size[1]}",
         RELABEL_TARGET_MS),
        ("rerun_proposals", f"resnet50-fpn, {fpn_anchors:,} anchors, {fpn_size[0]}x{fpn_size[1]}", PROPOSALS_TARGET_MS),
    ]
    print(f"torch threads: {result['threads']}; backbone passes in all: {result['backbone_calls']}")
    for name, scene, target in rows:
        stats = result["ms"][name]
        verdict = "meets" if stats["median"] <= target else "MISSES"
        print(f"{name:16s} {scene:45s} median {stats['median']:7.2f} ms  min {stats['min']:7.2f} ms  "
              f"(n={stats['n']})  {verdict} the {target:.0f} ms target")


if __name__ == "__main__":
    main()
