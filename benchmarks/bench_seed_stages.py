"""The seed walkthrough's anchor generation + anchor labelling: our vectorised stages against a
per-anchor Python baseline in the walkthrough's style.

Scene (docs/seed-walkthrough.txt): an 800x800 input, a 50x50 feature grid (stride 16) with 9
anchor shapes per cell (sizes 128/256/512 x ratios 0.5/1/2) centred at 8, 24, ..., 792 — 22,500
anchors, 8,940 of them fully inside the image — labelled against 4 GT boxes (IoU >= 0.7 POS,
< 0.3 NEG, plus each GT box's best anchors POS; cross-boundary anchors ignored), then 256 of
them sampled with at most 128 positives.

The baseline keeps the walkthrough's structure (a Python loop over centres, a Python loop over
anchors filling a tensor row by row, IoU computed one GT box at a time with numpy) but not its
bugs (SEED-NOTES.md #3): negatives are set before the best-anchor positives, ties are exact
(no `- 0.01`), non-overlapping anchors get IoU 0 (not -1), and negatives are subsampled too. It
emits anchors in our order (row, column, ratio, size) so the two labellings are compared anchor
by anchor, not only by count.

Run: `.venv/bin/python benchmarks/bench_seed_stages.py [--repeats N]`.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from torchvision.ops import box_iou

from frcnn_core.modeling.anchors import inside_mask, make_anchors
from frcnn_core.modeling.config import IGNORE, NEG, POS, AnchorConfig
from frcnn_core.modeling.matching import match
from frcnn_core.modeling.sampling import sample_balanced

from common import interleaved_timings, summary

IMAGE_SIZE = (800, 800)
GRID = (50, 50)
STRIDE = 16
SIZES = (128, 256, 512)
RATIOS = (0.5, 1.0, 2.0)  # height / width
SEED_ANCHORS = AnchorConfig(sizes=(SIZES,), aspect_ratios=(RATIOS,), center_offset=0.5, round_base=False)
# Four GT boxes in input pixels; the last is so small (40x40) that its best anchor's IoU is below
# the 0.3 negative threshold: the walkthrough's bug #3 would turn that anchor negative.
GT_BOXES = ((20.0, 30.0, 400.0, 500.0), (300.0, 400.0, 500.0, 600.0), (100.0, 100.0, 200.0, 200.0),
            (600.0, 650.0, 640.0, 690.0))
POS_IOU, NEG_IOU = 0.7, 0.3
BATCH_SIZE, POSITIVE_FRACTION = 256, 0.5
EXPECTED_ANCHORS, EXPECTED_INSIDE = 22_500, 8_940


def ours(gt_boxes: torch.Tensor, generator: torch.Generator) -> dict:
    """Anchors, inside mask, IoU, match and balanced sampling with frcnn_core's stages (the
    labelling half of `rpn.anchor_targets` with `ignore_cross_boundary`)."""
    anchors = make_anchors(SEED_ANCHORS, [GRID], IMAGE_SIZE).boxes
    inside = inside_mask(anchors, IMAGE_SIZE)
    iou = box_iou(gt_boxes, anchors) * inside  # outside anchors take part in no match
    result = match(iou, POS_IOU, NEG_IOU, allow_low_quality=True)
    result.labels[~inside] = IGNORE
    sampled_pos_idx, sampled_neg_idx = sample_balanced(
        result.labels == POS, result.labels == NEG, BATCH_SIZE, POSITIVE_FRACTION, generator
    )
    return {"anchors": anchors, "inside": inside, "labels": result.labels,
            "sampled_pos_idx": sampled_pos_idx, "sampled_neg_idx": sampled_neg_idx}


def naive_anchors() -> torch.Tensor:
    """(22500, 4): the walkthrough's two Python loops, in our anchor order."""
    grid_h, grid_w = GRID
    centres = torch.empty((grid_h * grid_w, 2))
    centre_index = 0
    for row in range(grid_h):
        for col in range(grid_w):
            centres[centre_index, 0] = col * STRIDE + STRIDE / 2
            centres[centre_index, 1] = row * STRIDE + STRIDE / 2
            centre_index += 1
    anchor_boxes = torch.empty((grid_h * grid_w * len(RATIOS) * len(SIZES), 4))
    anchor_index = 0
    for centre_x, centre_y in centres.tolist():
        for ratio in RATIOS:
            for size in SIZES:
                half_w = size / np.sqrt(ratio) / 2
                half_h = size * np.sqrt(ratio) / 2
                anchor_boxes[anchor_index] = torch.tensor(
                    [centre_x - half_w, centre_y - half_h, centre_x + half_w, centre_y + half_h]
                )
                anchor_index += 1
    return anchor_boxes


def naive_labels(anchor_boxes: torch.Tensor, gt_boxes: np.ndarray, rng: np.random.Generator) -> dict:
    """Inside anchors, per-GT numpy IoU, the 0.7/0.3 + best-anchor rule, balanced sampling."""
    boxes = anchor_boxes.numpy()
    valid_idxs = np.where((boxes[:, 0] >= 0) & (boxes[:, 1] >= 0)
                          & (boxes[:, 2] <= IMAGE_SIZE[1]) & (boxes[:, 3] <= IMAGE_SIZE[0]))[0]
    valid_anchors = boxes[valid_idxs]
    ax1, ay1, ax2, ay2 = valid_anchors[:, 0], valid_anchors[:, 1], valid_anchors[:, 2], valid_anchors[:, 3]
    anchor_areas = (ax2 - ax1) * (ay2 - ay1)
    ious = np.zeros((len(valid_anchors), len(gt_boxes)), dtype=np.float32)
    for gt_index, (x1, y1, x2, y2) in enumerate(gt_boxes):
        overlap_w = np.minimum(ax2, x2) - np.maximum(ax1, x1)
        overlap_h = np.minimum(ay2, y2) - np.maximum(ay1, y1)
        overlapping = np.where((overlap_w > 0) & (overlap_h > 0))[0]
        overlapped_area = overlap_w[overlapping] * overlap_h[overlapping]
        gt_area = (x2 - x1) * (y2 - y1)
        ious[overlapping, gt_index] = overlapped_area / (gt_area + anchor_areas[overlapping] - overlapped_area)

    valid_labels = np.full(len(valid_anchors), IGNORE, dtype=np.int8)
    best_iou_per_anchor = ious.max(axis=1)
    valid_labels[best_iou_per_anchor < NEG_IOU] = NEG  # before the best-anchor positives (bug #3 fixed)
    valid_labels[best_iou_per_anchor >= POS_IOU] = POS
    best_iou_per_gt = ious.max(axis=0)
    is_best = (ious == best_iou_per_gt) & (best_iou_per_gt > 0)  # exact ties, no "- 0.01"
    valid_labels[np.where(is_best)[0]] = POS

    labels = np.full(len(boxes), IGNORE, dtype=np.int8)
    labels[valid_idxs] = valid_labels
    pos_index, neg_index = np.where(labels == POS)[0], np.where(labels == NEG)[0]
    num_pos = min(len(pos_index), int(BATCH_SIZE * POSITIVE_FRACTION))
    num_neg = min(len(neg_index), BATCH_SIZE - num_pos)  # negatives are subsampled too
    return {"inside_count": len(valid_idxs), "labels": labels,
            "sampled_pos_idx": np.sort(rng.choice(pos_index, size=num_pos, replace=False)),
            "sampled_neg_idx": np.sort(rng.choice(neg_index, size=num_neg, replace=False))}


def naive(gt_boxes: np.ndarray, rng: np.random.Generator) -> dict:
    return naive_labels(naive_anchors(), gt_boxes, rng)


def check_agreement(our_result: dict, naive_result: dict) -> dict:
    """Assert both give the seed's counts and the same label for every anchor; returns the counts."""
    labels = our_result["labels"]
    assert len(labels) == EXPECTED_ANCHORS, len(labels)
    assert int(our_result["inside"].sum()) == naive_result["inside_count"] == EXPECTED_INSIDE
    assert np.array_equal(labels.numpy(), naive_result["labels"]), "labels differ between ours and the baseline"
    counts = {"anchors": len(labels), "inside": EXPECTED_INSIDE, "positive": int((labels == POS).sum()),
              "negative": int((labels == NEG).sum()), "ignored": int((labels == IGNORE).sum()),
              "sampled_positive": len(our_result["sampled_pos_idx"]),
              "sampled_negative": len(our_result["sampled_neg_idx"])}
    assert counts["sampled_positive"] == len(naive_result["sampled_pos_idx"])
    assert counts["sampled_negative"] == len(naive_result["sampled_neg_idx"])
    assert counts["sampled_positive"] + counts["sampled_negative"] <= BATCH_SIZE
    return counts


def single_threaded(call):
    """`call()` with torch limited to one thread. A diagnostic: ops on 22,500 x 4 tensors are
    cheap, so on a busy machine each parallel region's wait for a second core can dominate."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return call()
    finally:
        torch.set_num_threads(threads)


def run(repeats: int = 10) -> dict:
    """Check both agree, then time them (ms; the baseline's two halves too), taking turns."""
    gt_tensor = torch.tensor(GT_BOXES)
    gt_array = np.array(GT_BOXES, dtype=np.float32)
    counts = check_agreement(ours(gt_tensor, torch.Generator().manual_seed(0)),
                             naive(gt_array, np.random.default_rng(0)))
    generator, rng = torch.Generator().manual_seed(0), np.random.default_rng(0)
    anchors = naive_anchors()
    times, _ = interleaved_timings({
        "ours": lambda: ours(gt_tensor, generator),
        "ours_1_thread": lambda: single_threaded(lambda: ours(gt_tensor, generator)),
        "naive": lambda: naive(gt_array, rng),
        "naive_anchors": naive_anchors,
        "naive_labels": lambda: naive_labels(anchors, gt_array, rng),
    }, repeats)
    stats = {name: summary(values, unit=1000) for name, values in times.items()}
    return {"ms": stats, "speedup": stats["naive"]["median"] / stats["ours"]["median"],
            "speedup_1_thread": stats["naive"]["median"] / stats["ours_1_thread"]["median"],
            "counts": counts, "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10, help="timed runs of each (after 1 warm-up)")
    result = run(parser.parse_args().repeats)
    ms = result["ms"]
    print(f"counts (identical labels, anchor by anchor): {result['counts']}")
    for name in ms:
        print(f"{name:14s} median {ms[name]['median']:8.2f} ms   min {ms[name]['min']:8.2f} ms   (n={ms[name]['n']})")
    print(f"speed-up (medians): {result['speedup']:.1f}x; with ours on 1 thread {result['speedup_1_thread']:.0f}x")


if __name__ == "__main__":
    main()
