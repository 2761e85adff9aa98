"""What the Errors view draws on the canvas, on two `BoxSetLayer`s: one image's hits and errors,
one colour per verdict (`frcnn_core.vocabulary.ERROR_COLOURS`), and one error's chain in the
stage inspector's chain colours (anchor cyan, proposal yellow, suppressor red, GT box white).
Boxes are in original-image pixels, as the canvas's layers take them."""
from __future__ import annotations

import numpy as np
from PySide6.QtGui import QColor

from frcnn_core.analysis.tide import TP
from frcnn_core.vocabulary import ERROR_COLOURS, outcome_words
from frcnn_gui.canvas.layers import BoxSetLayer
from frcnn_gui.errors.texts import error_line, is_false_positive

VERDICTS_Z = 22  # above the GT boxes (20) and the detections (10) the verdicts are about
CHAIN_Z = 26  # above the verdicts and the stage inspector's own chain (25)
HIT_WIDTH, ERROR_WIDTH, CHAIN_WIDTH, CHOSEN_WIDTH = 1.5, 3.0, 2.0, 4.0
DIMMED_OPACITY = 0.35  # of the verdicts while an error's chain is shown


def verdict_colour(kind: str) -> QColor:
    return QColor(ERROR_COLOURS[kind])


def _show(layer: BoxSetLayer, parts: list[tuple]) -> None:
    """parts: (box, colour, width, tag, hover tag) each, drawn in order."""
    boxes, colours, widths, tags, hovers = zip(*parts, strict=True) if parts else ((), (), (), (), ())
    layer.set_boxes(np.array(boxes, dtype=np.float64).reshape(-1, 4), list(colours), np.array(widths, dtype=np.float64),
                    list(tags), hover_labels=list(hovers))


def show_verdicts(layer: BoxSetLayer, row) -> None:
    """Draw an ImageErrors row: hits thin, false negatives and false positives thick and tagged
    (one inside a difficult box thin: it is not counted), each described under the mouse."""
    parts = [(hit.box, verdict_colour(TP), HIT_WIDTH, "", f"TP {hit.label} {hit.score:.2f}") for hit in row.hits]
    parts += [(fn.box, verdict_colour(fn.type), ERROR_WIDTH, f"FN {fn.label}", error_line(fn))
              for fn in row.false_negatives]
    parts += [(fp.box, verdict_colour(fp.type), ERROR_WIDTH if fp.counted else HIT_WIDTH,
               f"{fp.type} {fp.label} {fp.score:.2f}" if fp.counted else "", error_line(fp))
              for fp in row.false_positives]
    _show(layer, parts)


def show_chain(layer: BoxSetLayer, error) -> None:
    """Draw one error's chain: an FP's anchor, proposal and box; an FN's best anchor, best
    proposal, the box that suppressed it and the GT box. Only the error's own box is tagged:
    the chain's boxes share corners, so their tags would cover each other."""
    # torch's module: the engine thread imported it before it sent any report (worker.PRELOADED)
    from frcnn_gui.inspector.overlays import NEGATIVE, POSITIVE, SAMPLE_POINT, SUPPRESSOR

    parts = [(error.anchor_box, NEGATIVE, CHAIN_WIDTH, "", "anchor")]
    if is_false_positive(error):
        parts.append((error.proposal_box, POSITIVE, CHAIN_WIDTH, "", f"proposal, objectness {error.objectness:.2f}"))
        tag = f"{error.type} {error.label} {error.score:.2f}"
        parts.append((error.box, verdict_colour(error.type), CHOSEN_WIDTH, tag, tag))
    else:
        if error.proposal_box is not None:
            parts.append((error.proposal_box, POSITIVE, CHAIN_WIDTH, "", "best proposal"))
        if error.suppressor_box is not None:
            parts.append((error.suppressor_box, SUPPRESSOR, CHAIN_WIDTH, "", "suppressed the best proposal"))
        tag = f"GT {error.gt_index} {error.label}: {outcome_words(error.stage)}"
        parts.append((error.box, SAMPLE_POINT, CHOSEN_WIDTH, tag, tag))
    _show(layer, parts)


def clear(layer: BoxSetLayer) -> None:
    _show(layer, [])
