"""What the Errors view says: the TIDE summary with the legend (one colour per verdict,
`frcnn_core.vocabulary.ERROR_COLOURS`), the images left out, each error in one line and its
chain in sentences. Errors are the report's `FalsePositive` / `FalseNegative` records; an FN's
funnel cells are the "Why missed?" dock's (`inspector.funnel_panel.row_cells`)."""
from __future__ import annotations

import html
from pathlib import Path

from frcnn_core.analysis.tide import (
    BG_IOU,
    BKG,
    BOTH,
    CLS,
    DUPE,
    FALSE_NEG,
    FALSE_POS,
    LOC,
    MAIN_ERRORS,
    MISS,
    POS_IOU,
    TP,
)
from frcnn_core.data.samples import BACKGROUND
from frcnn_core.vocabulary import ERROR_COLOURS, outcome_words
from frcnn_gui.inspector.funnel_panel import COLUMNS as FUNNEL_COLUMNS, row_cells
from frcnn_gui.panels.status import model_title

TYPE_WORDS = {TP: "hit: a detection that found its GT box", CLS: "right place, wrong class",
              LOC: f"right class, box off (IoU {BG_IOU:g}-{POS_IOU:g})", BOTH: "wrong class and box off",
              DUPE: "a second detection of a box already found", BKG: "on background: no GT box near",
              MISS: "a GT box no detection went for"}
CLASS_SCORES_SHOWN = 4  # a false positive's most likely classes, in its chain's text


def is_false_positive(error) -> bool:
    return hasattr(error, "detection")


def swatch(kind: str) -> str:
    """A square in the colour of verdict `kind`, as rich text."""
    return f'<span style="color:{ERROR_COLOURS[kind]}">■</span>'


def summary_html(report) -> str:
    """AP50 and, per error type, its colour, dAP (the AP50 points fixing that type would give) and
    count, with the special errors: the TIDE summary and the legend in one."""
    tide = report.tide
    rows = "".join(f"<tr><td>{swatch(kind)} {kind}</td><td align='right'>{tide.main[kind]:.2f}</td>"
                   f"<td align='right'>{tide.counts[kind]}</td><td>{TYPE_WORDS[kind]}</td></tr>"
                   for kind in MAIN_ERRORS)
    return (f"<b>AP50 {tide.ap50:.1f}</b> over {len(report.images)} images — {html.escape(model_title(report.model))},"
            " "
            f"detections scoring ≥ {report.score_thresh:.2f}<br>"
            f"<table cellspacing='0' cellpadding='1'><tr><th align='left'>type</th><th>dAP</th><th>count</th><th></th>"
            f"</tr><tr><td>{swatch(TP)} TP</td><td></td><td></td><td>{TYPE_WORDS[TP]}</td></tr>{rows}</table>"
            f"fixing every false positive: +{tide.special[FALSE_POS]:.2f}, every false negative: "
            f"+{tide.special[FALSE_NEG]:.2f} AP50")


def left_out_text(left_out: list[str], folder: Path | None) -> str:
    """The images left out, one per line, without the folder's path."""
    if not left_out:
        return ""
    prefix = "" if folder is None else f"{folder}/"
    lines = [line[len(prefix):] if prefix and line.startswith(prefix) else line for line in left_out]
    return f"left out, {len(lines)} images:\n" + "\n".join(lines)


def error_line(error) -> str:
    """One error in one line, as the image's error list shows it."""
    if is_false_positive(error):
        ignored = "" if error.counted else " (in a difficult box: not counted)"
        return f"FP {error.type} · {error.label} {error.score:.2f}{ignored}"
    return f"FN {error.type} · GT {error.gt_index} {error.label} · {outcome_words(error.stage)}"


def chain_text(error) -> str:
    """The error's chain in sentences, the colours named as the canvas draws them."""
    if is_false_positive(error):
        target = "" if error.gt_index is None else f", measured against GT {error.gt_index}"
        likely = sorted(error.class_scores.items(), key=lambda item: -item[1])[:CLASS_SCORES_SHOWN]
        return (f"False positive, {error.type} ({TYPE_WORDS[error.type]}): {error.label} scoring {error.score:.2f}"
                f"{target}. It grew from anchor #{error.anchor} (cyan) → proposal #{error.proposal}, objectness "
                f"{error.objectness:.2f} (yellow) → RoI {error.roi} → this box (thick). The RoI's class scores: "
                + ", ".join(f"{'background' if name == BACKGROUND else name} {score:.2f}" for name, score in likely)
                + ".")
    # the funnel's cells after the GT box's index and class, but its outcome (said first)
    cells = [f"{column}: {cell}" for column, cell in zip(FUNNEL_COLUMNS[2:-1], row_cells(error.funnel)[2:-1],
                                                          strict=True) if cell]
    fixable = "" if error.by_detection is None else (f" Fixing the {error.type} error of detection "
                                                     f"{error.by_detection} would find it.")
    drawn = ["the GT box (white)", "its best anchor (cyan)"]
    drawn += [] if error.proposal_box is None else ["its best proposal (yellow)"]
    drawn += [] if error.suppressor_box is None else ["the kept box that suppressed that proposal (red)"]
    return (f"False negative, {error.type} ({TYPE_WORDS[error.type]}): GT {error.gt_index} {error.label}, "
            f"{outcome_words(error.stage)}.{fixable} Its recall funnel: {'; '.join(cells)}. Drawn: "
            f"{', '.join(drawn)}.")
