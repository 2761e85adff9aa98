"""The auto-anchor picture: the training boxes' shapes with the anchor shapes before and after a
fit, as a PNG (matplotlib off-screen, written atomically). Plain numbers and configs in."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.ticker import LogLocator, NullFormatter, StrMethodFormatter

from frcnn_core.modeling.anchors import anchor_sides
from frcnn_core.modeling.config import AnchorConfig
from frcnn_core.render.plots import plt, save_figure

MODEL_ANCHOR_COLOUR = "#8c8c8c"


def _recall_words(recall: tuple[float, float]) -> str:
    return f"recall {recall[0]:.1%} at IoU 0.5, {recall[1]:.1%} at 0.7"


def save_anchor_fit(box_shapes, model_anchors: AnchorConfig, model_recall: tuple[float, float],
                    fitted_anchors: AnchorConfig | None, fitted_recall: tuple[float, float],
                    path: str | os.PathLike) -> Path:
    """Box width against height in model-input pixels (log axes), one dot per box of (N, 2)
    `box_shapes`; the model's anchor shapes as grey crosses and the fitted ones (None: kept the
    model's) as coloured markers, one colour per feature level. The title gives each set's
    best-possible recall (at IoU 0.5, at 0.7)."""
    shapes = np.asarray(box_shapes, dtype=np.float64).reshape(-1, 2)
    figure, axes = plt.subplots(figsize=(6, 5.5), dpi=100)
    crowd = min(0.8, max(0.25, 150 / max(len(shapes), 1)))  # a few boxes stay visible, thousands stay a cloud
    axes.scatter(shapes[:, 0], shapes[:, 1], s=8, alpha=crowd, color="tab:blue", linewidths=0,
                 label=f"{len(shapes)} training boxes")
    model_sides = np.concatenate([sides.numpy() for sides in anchor_sides(model_anchors)])
    axes.scatter(model_sides[:, 0], model_sides[:, 1], marker="x", s=40, color=MODEL_ANCHOR_COLOUR,
                 label="the model's anchors")
    title = f"model's anchors{' (kept)' if fitted_anchors is None else ''}: {_recall_words(model_recall)}"
    if fitted_anchors is not None:
        colours = plt.get_cmap("plasma")(np.linspace(0.1, 0.85, len(fitted_anchors.sizes)))
        for level, (sides, colour) in enumerate(zip(anchor_sides(fitted_anchors), colours, strict=True)):
            widths, heights = sides.numpy().T
            axes.scatter(widths, heights, marker="o", s=46, facecolors="none", edgecolors=[colour], linewidths=1.6,
                         label=f"fitted anchors, level {level}")
        title += f"\nfitted anchors: {_recall_words(fitted_recall)}"
    axes.set(xscale="log", yscale="log", xlabel="width (model-input pixels)", ylabel="height (model-input pixels)")
    for axis in (axes.xaxis, axes.yaxis):  # whole pixels at powers of two: log labels such as 2x10^1 crowd
        axis.set_major_locator(LogLocator(base=2))
        axis.set_major_formatter(StrMethodFormatter("{x:.0f}"))
        axis.set_minor_formatter(NullFormatter())
    axes.set_title(title, fontsize="medium")
    axes.grid(alpha=0.3, which="both")
    axes.legend(loc="upper left", fontsize="small")
    figure.tight_layout()
    return save_figure(figure, path)
