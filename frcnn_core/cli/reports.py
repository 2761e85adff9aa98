"""What the CLI writes: JSON records (DESIGN.md's shapes), the text summary, stage pictures.

Every file is written atomically (temp file in the same folder, then rename).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from frcnn_core.data.voc import read_voc_xml
from frcnn_core.inspect.describe import outcome_words
from frcnn_core.inspect.funnel import DETECTED
from frcnn_core.io.atomic import write_atomic, write_bytes_atomic
from frcnn_core.io.images import LoadedImage
from frcnn_core.modeling.config import IGNORE, NEG, POS
from frcnn_core.modeling.trace import Trace
from frcnn_core.render.stage_pictures import render_stage, save_stage_pictures


def write_json(path: str, payload: dict) -> None:
    """JSON to a file, or to stdout for '-'."""
    text = json.dumps(payload, indent=1)
    if path == "-":
        print(text)
    else:
        write_bytes_atomic(path, (text + "\n").encode())


def detections_record(path: str, image: LoadedImage, detections: dict, class_names: list[str]) -> dict:
    """One image's entry of `detect --json`."""
    return {
        "path": str(path),
        "width": image.width,
        "height": image.height,
        "detections": [
            {"box": [float(v) for v in box], "score": float(score), "label": int(label),
             "label_name": class_names[int(label)] if int(label) < len(class_names) else str(int(label))}
            for box, score, label in zip(detections["boxes"], detections["scores"], detections["labels"], strict=True)
        ],
    }


def read_gt(path: str, class_names: list[str]) -> dict:
    """GT boxes and labels from a VOC XML file; names the model does not know become label 1."""
    annotation = read_voc_xml(path)
    for problem in annotation.problems:
        print(f"warning: {problem}", file=sys.stderr)
    unknown = sorted({n for n in annotation.names if n not in class_names[1:]})
    if unknown:
        print(f"warning: {path}: classes the model does not know ({', '.join(unknown)}) are traced as "
              f"{class_names[1]!r}", file=sys.stderr)
    labels = [class_names.index(n) if n in class_names[1:] else 1 for n in annotation.names]
    return {"boxes": annotation.boxes, "labels": torch.tensor(labels, dtype=torch.int64)}


def trace_summary(inference: Trace, training: Trace | None) -> dict:
    """`trace --json`: the walkthrough's numbers. With GT, the training pass (training settings)
    supplies anchors, labels, proposals, RoI samples and pooling; detections come from inference."""
    main = training or inference
    proposals = main.proposals
    channels = main.roi_pool.output_shape[1]
    stages = {
        "anchors": {"total": int(len(main.anchors.boxes)), "inside": int(main.anchors.inside.sum())},
        "proposals": {"pre_nms": int(len(proposals.pre_nms_boxes)), "post_nms": int(len(proposals.post_nms_idx))},
        "roi_pool": {"output_shape": list(main.roi_pool.output_shape)},
        "detections": {"count": int(len(inference.detections.keep_idx))},
    }
    if training is not None:
        labels = training.anchor_labels
        stages["anchor_labels"] = {
            "positive": int((labels.labels == 1).sum()),
            "negative": int((labels.labels == 0).sum()),
            "ignored": int((labels.labels == -1).sum()),
            "sampled_positive": int(len(labels.sampled_pos_idx)),
            "sampled_negative": int(len(labels.sampled_neg_idx)),
        }
        fg = int(training.roi_targets.is_foreground.sum())
        stages["roi_samples"] = {"positive": fg, "negative": int(len(training.roi_targets.labels)) - fg}
    scale_y, scale_x = main.scale
    return {
        "input_size": list(main.input_size),
        "scale": scale_x if abs(scale_x - scale_y) < 1e-9 else min(scale_x, scale_y),
        "scale_yx": [scale_y, scale_x],
        "features": [[channels, h, w] for h, w in main.anchors.grid_sizes],
        "stages": stages,
    }


def trace_text(summary: dict) -> str:
    """The summary as a few readable lines."""
    s = summary["stages"]
    lines = [
        f"input {summary['input_size'][0]}x{summary['input_size'][1]} (scale {summary['scale']:.4g}); features "
        + ", ".join("x".join(str(v) for v in f) for f in summary["features"]),
        f"anchors: {s['anchors']['total']:,} total, {s['anchors']['inside']:,} inside the image",
    ]
    if "anchor_labels" in s:
        a = s["anchor_labels"]
        lines.append(f"anchor labels: {a['positive']:,} positive, {a['negative']:,} negative, "
                     f"{a['ignored']:,} ignored; "
                     f"sampled {a['sampled_positive']} positive + {a['sampled_negative']} negative")
    lines.append(f"proposals: {s['proposals']['pre_nms']:,} before NMS, {s['proposals']['post_nms']:,} after")
    if "roi_samples" in s:
        samples = s["roi_samples"]
        lines.append(f"RoI samples: {samples['positive']} foreground + {samples['negative']} background")
    lines.append(f"RoI pooling output: {s['roi_pool']['output_shape']}")
    lines.append(f"detections: {s['detections']['count']}")
    return "\n".join(lines)


def eval_text(result) -> str:
    """`frcnn eval`'s one screen: the COCO numbers, VOC07 mAP and a per-class table."""
    lines = [f"images {result.images}: AP {result.AP:.3f}, AP50 {result.AP50:.3f}, AP75 {result.AP75:.3f}, "
             f"VOC07 mAP {result.voc07_mAP:.3f}", f"{'class':20s} {'AP50':>6s} {'VOC07 AP':>9s}"]
    for name, value in result.per_class_AP50.items():
        lines.append(f"{name:20s} {value:6.3f} {result.per_class_voc07_AP.get(name, float('nan')):9.3f}")
    if result.per_image_losses:
        keys = [k for k in result.per_image_losses[0] if k.startswith("loss")]
        means = {k: sum(r[k] for r in result.per_image_losses) / len(result.per_image_losses) for k in keys}
        lines.append("mean validation losses: " + ", ".join(f"{k} {v:.3f}" for k, v in means.items()))
    return "\n".join(lines)


def save_detections_picture(image: LoadedImage, trace: Trace, class_names: list[str], out_dir: str) -> Path:
    """<out_dir>/<image stem>.detections.png."""
    picture = render_stage(image.tensor, trace, "detections", class_names)
    target = Path(out_dir) / f"{Path(image.path).stem}.detections.png"
    return write_atomic(target, lambda stream: picture.save(stream, format="PNG"))


def save_trace_pictures(image: LoadedImage, inference: Trace, training: Trace | None, class_names: list[str],
                        gt_boxes, out_dir: str) -> list[Path]:
    """One picture per stage: training-pass stages when there is GT, detections from inference."""
    written = []
    if training is not None:
        stages = ("anchors", "anchor-labels", "objectness", "proposals-pre-nms", "proposals", "roi-samples")
        written += save_stage_pictures(image.tensor, training, out_dir, class_names, gt_boxes, stages=stages)
        written += save_stage_pictures(image.tensor, inference, out_dir, class_names, gt_boxes, stages=("detections",))
    else:
        written += save_stage_pictures(image.tensor, inference, out_dir, class_names, gt_boxes)
    return written


ANCHOR_LABEL_NAMES = {POS: "pos", NEG: "neg", IGNORE: "ign"}


def funnel_text(rows: list) -> str:
    """The recall funnel (diagnose.FunnelRow per GT box) as a compact table."""
    lines = ["recall funnel: best anchor IoU (label) | best pre-NMS proposal IoU, score rank | NMS | "
             "post-NMS top-N | detection score | outcome",
             f"{'gt':>3s} {'class':12s} {'anchor':>10s} {'proposal':>12s} {'NMS':>15s} {'top-N':>5s} "
             f"{'det':>6s}  outcome"]
    for row in rows:
        proposal = "-" if row.best_proposal_rank is None else f"{row.best_proposal_iou:.2f} #{row.best_proposal_rank}"
        if row.suppressed_by is not None:
            nms = f"by {row.suppressed_by} ({row.suppressor_iou:.2f})"
        else:
            nms = "kept" if row.survived_nms else "-"
        score = "-" if row.detection_score is None else f"{row.detection_score:.3f}"
        lines.append(f"{row.gt_index:3d} {row.label[:12]:12s} {row.best_anchor_iou:5.2f} "
                     f"{ANCHOR_LABEL_NAMES[row.best_anchor_label]:>4s} {proposal:>12s} {nms:>15s} "
                     f"{'yes' if row.in_post_nms_top_n else 'no':>5s} {score:>6s}  {outcome_words(row.lost_at)}")
    return "\n".join(lines)


def diagnose_text(diagnosis) -> str:
    """`frcnn diagnose`'s one screen (a diagnose.DatasetDiagnosis): where GT boxes are lost, in
    total, by class and by size; anchor coverage; the model's anchors and the suggested ones."""
    outcomes = list(diagnosis.lost_at)
    words = [outcome_words(None if outcome == DETECTED else outcome) for outcome in outcomes]
    widths = [max(len(text), 16) for text in words]
    header = f"{'':12s} " + " ".join(f"{text:>{width}s}" for text, width in zip(words, widths, strict=True))

    def line(name: str, counts: dict[str, int]) -> str:
        total = max(sum(counts.values()), 1)
        return f"{name[:12]:12s} " + " ".join(f"{f'{counts[o]:7d} ({counts[o] / total:6.1%})':>{width}s}"
                                              for o, width in zip(outcomes, widths, strict=True))

    lines = [f"{diagnosis.images} images, {diagnosis.gt_boxes} GT boxes; lost at the first stage that misses "
             f"them (IoU >= {diagnosis.iou:g}, detection score >= {diagnosis.score_thresh:g})", header,
             line("all", diagnosis.lost_at)]
    lines += [line(name, counts) for name, counts in diagnosis.by_class.items()]
    lines += [line(f"{name} size", counts) for name, counts in diagnosis.by_size.items()]
    lines.append("anchor coverage (best anchor IoU per GT box): "
                 + ", ".join(f"{key} {value:.1%}" for key, value in diagnosis.anchor_coverage.items()))
    lines.append(f"anchors: sizes {_numbers(diagnosis.anchor_sizes)}, ratios (h/w) {_numbers(diagnosis.aspect_ratios)}"
                 f"; suggested for this data: sizes {_numbers(diagnosis.suggested_anchor_sizes)}, "
                 f"ratios {_numbers(diagnosis.suggested_aspect_ratios)} (input pixels)")
    return "\n".join(lines)


def _numbers(values: list[float]) -> str:
    return "[" + ", ".join(f"{value:g}" for value in values) + "]"


def save_anchor_iou_histogram(diagnosis, path: str | Path) -> Path:
    """A PNG: per class, the histogram of the GT boxes' best anchor IoUs, with the RPN's
    background and foreground thresholds marked."""
    from frcnn_core.render.plots import plt, save_figure  # matplotlib only when a picture is asked for

    figure, axes = plt.subplots(figsize=(6, 3.6), dpi=100)
    bins = [step / 20 for step in range(21)]
    for name, values in diagnosis.best_anchor_ious_by_class().items():
        axes.hist(values, bins=bins, histtype="step", linewidth=1.5, label=f"{name} ({len(values)})")
    for threshold in diagnosis.anchor_iou_thresholds:
        axes.axvline(threshold, color="gray", linestyle="--", linewidth=1)
    axes.set(xlim=(0, 1), xlabel="best anchor IoU", ylabel="GT boxes", title="best anchor IoU per GT box")
    axes.legend(loc="upper left", fontsize="small")
    figure.tight_layout()
    return save_figure(figure, path)


def save_diagnosis(diagnosis, out_dir: str) -> list[Path]:
    """<out_dir>/diagnose.json and <out_dir>/anchor_iou_histogram.png."""
    target = Path(out_dir)
    write_json(str(target / "diagnose.json"), diagnosis.to_json())
    return [target / "diagnose.json", save_anchor_iou_histogram(diagnosis, target / "anchor_iou_histogram.png")]
