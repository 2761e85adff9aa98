"""Error-analysis pictures (`frcnn errors --plots`): TIDE's summary and the errors of each class,
as PNG files (matplotlib off-screen, written atomically). Plain numbers in, no analysis types:
the colours are the vocabulary's, one per TIDE verdict, as in the Errors view."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from frcnn_core.render.plots import plt, save_figure
from frcnn_core.vocabulary import ERROR_COLOURS, LOST_AT_WORDS

STAGE_COLOURS = ("#4c72b0", "#55a868", "#c44e52", "#8172b2", "#ccb974")  # one per FUNNEL_STAGES entry


def save_tide_summary(ap50: float, main: dict[str, float], special: dict[str, float], path: str | os.PathLike) -> Path:
    """TIDE's summary: the share of each main error type in the AP lost (a pie), the dAP of each
    main type and of the special ones (bars). main / special: {type: dAP in AP points}."""
    figure, (pie, bars, special_bars) = plt.subplots(1, 3, figsize=(12, 4), dpi=100,
                                                     gridspec_kw={"width_ratios": [1.1, 1.3, 0.7]})
    kinds, values = list(main), np.array(list(main.values()))
    colours = [ERROR_COLOURS[kind] for kind in kinds]
    if values.sum() > 0:
        shown = values >= values.sum() * 0.03  # smaller slices would print their names over each other
        pie.pie(values, labels=[kind if show else "" for kind, show in zip(kinds, shown, strict=True)],
                colors=colours, startangle=90, counterclock=False, wedgeprops={"linewidth": 1, "edgecolor": "white"})
    else:
        pie.text(0.5, 0.5, "no AP lost", ha="center", va="center", transform=pie.transAxes)
        pie.set_axis_off()
    pie.set_title("share of the AP lost")
    top = max(float(values.max(initial=0)), *special.values(), 1.0) * 1.15
    bars.barh(kinds[::-1], values[::-1], color=colours[::-1])
    for position, value in enumerate(values[::-1]):
        bars.text(value + top * 0.01, position, f"{value:.2f}", va="center", fontsize="small")
    bars.set(xlim=(0, top), xlabel="dAP (AP points)", title="main errors: fixed one at a time")
    special_bars.bar(list(special), list(special.values()), color="#7f7f7f")
    for position, value in enumerate(special.values()):
        special_bars.text(position, value + top * 0.01, f"{value:.2f}", ha="center", fontsize="small")
    special_bars.set(ylim=(0, top), ylabel="dAP (AP points)", title="special errors")
    figure.suptitle(f"TIDE: AP50 {ap50:.2f}")
    figure.tight_layout()
    return save_figure(figure, path)


def save_errors_by_class(errors_by_class: dict[str, dict[str, int]], missed_by_class: dict[str, dict[str, int]],
                         path: str | os.PathLike) -> Path:
    """Per class, stacked bars: its errors by TIDE type ({class: {type: count}}), and its missed
    GT boxes by the funnel stage that lost them ({class: {stage: count}}, FUNNEL_STAGES order)."""
    classes = list(dict.fromkeys([*errors_by_class, *missed_by_class]))
    figure, (by_type, by_stage) = plt.subplots(1, 2, figsize=(max(10.0, 4.0 + 1.6 * len(classes)), 4.2), dpi=100)
    positions = np.arange(len(classes))
    _stacked(by_type, positions, [{kind: errors_by_class.get(name, {}).get(kind, 0) for kind in ERROR_COLOURS
                                   if kind != "TP"} for name in classes], ERROR_COLOURS)
    by_type.set(title="errors by TIDE type", ylabel="false positives (class detected) + Miss (GT class)")
    stages = list(LOST_AT_WORDS)
    _stacked(by_stage, positions, [{stage: missed_by_class.get(name, {}).get(stage, 0) for stage in stages}
                                   for name in classes], dict(zip(stages, STAGE_COLOURS, strict=True)),
             names=LOST_AT_WORDS)
    by_stage.set(title="missed GT boxes by the stage that lost them", ylabel="missed GT boxes")
    for axes in (by_type, by_stage):
        axes.set_xticks(positions, classes, rotation=30 if len(classes) > 6 else 0, ha="right" if len(classes) > 6
                        else "center")
        axes.title.set_fontsize("medium")
    figure.tight_layout()
    return save_figure(figure, path)


def _stacked(axes, positions: np.ndarray, counts: list[dict[str, int]], colours: dict[str, str],
             names: dict[str, str] | None = None) -> None:
    """Stacked bars, one per position: a segment per key of the counts (all share their keys and
    order), coloured colours[key], labelled names[key] (default the key); a legend."""
    bottom = np.zeros(len(positions))
    for key in counts[0] if counts else {}:
        heights = np.array([count[key] for count in counts], dtype=float)
        axes.bar(positions, heights, bottom=bottom, color=colours[key], label=(names or {}).get(key, key), width=0.6)
        bottom += heights
    if counts:
        axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
