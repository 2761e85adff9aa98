"""Evaluation pictures: a precision-recall curve per class and the confusion matrix, as PNG files.

matplotlib draws off-screen (Agg) so that the core never needs a display or a GUI toolkit; every
file is written atomically.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import numpy as np  # noqa: E402

from frcnn_core.io.atomic import write_atomic  # noqa: E402


def save_figure(figure, path: str | os.PathLike) -> Path:
    try:
        return write_atomic(path, lambda stream: figure.savefig(stream, format="png"))
    finally:
        plt.close(figure)


def pr_curve_filename(label: int, class_name: str) -> str:
    """`pr_<label>_<name>.png`; the label keeps names that sanitise alike apart."""
    return f"pr_{label:02d}_{re.sub(r'[^A-Za-z0-9._-]+', '_', class_name)}.png"


def save_pr_curve(curve, class_name: str, path: str | os.PathLike) -> Path:
    """One class's precision against recall with the 11 interpolated points whose mean is VOC07's
    AP (in the title); `curve` is an evaluate.PrCurve."""
    figure, axes = plt.subplots(figsize=(5, 4.5), dpi=100)
    axes.plot(curve.recall, curve.precision, color="tab:blue", label="precision")
    axes.plot(np.linspace(0, 1, 11), curve.interpolated, "o--", color="tab:orange", markersize=4,
              label="11-point interpolation")
    axes.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.05), xlabel="recall", ylabel="precision",
             title=f"{class_name}: VOC07 AP {curve.ap:.3f} ({len(curve.precision)} detections)")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower left")
    figure.tight_layout()
    return save_figure(figure, path)


def save_pr_curves(curves: dict, class_names: list[str], out_dir: str | os.PathLike) -> list[Path]:
    """A PR-curve PNG per entry of `curves` ({label: PrCurve}) into `out_dir`."""
    return [
        save_pr_curve(curve, class_names[label], Path(out_dir) / pr_curve_filename(label, class_names[label]))
        for label, curve in curves.items()
    ]


def save_confusion_matrix(matrix: np.ndarray, class_names: list[str], path: str | os.PathLike) -> Path:
    """The (C, C) counts with GT classes down and predictions across, index 0 "background".

    Classes with neither a count in their row nor in their column are left out of the picture
    (a 91-class COCO head on a 3-class dataset stays readable); background always shows.
    """
    shown = [0] + [c for c in range(1, len(class_names)) if matrix[c, :].any() or matrix[:, c].any()]
    counts = matrix[np.ix_(shown, shown)]
    names = ["background"] + [class_names[c] for c in shown[1:]]
    side = max(5.0, 1.5 + 0.6 * len(shown))
    figure, axes = plt.subplots(figsize=(side + 1.5, side), dpi=100)
    image = axes.imshow(counts, cmap="Blues")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    threshold = counts.max() / 2 if counts.size and counts.max() > 0 else 1
    for row in range(len(shown)):
        for col in range(len(shown)):
            axes.text(col, row, str(int(counts[row, col])), ha="center", va="center",
                      color="white" if counts[row, col] > threshold else "black")
    axes.set_xticks(range(len(shown)), names, rotation=45, ha="right")
    axes.set_yticks(range(len(shown)), names)
    axes.set(xlabel="predicted\n(background column: missed)", ylabel="ground truth\n(background row: false positive)",
             title="confusion matrix")
    figure.tight_layout()
    return save_figure(figure, path)
