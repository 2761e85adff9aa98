"""The Errors view's table, Qt-free: one line per analysed image with its counts, filtered by
class and error type, sorted (the most errors first unless asked otherwise).

Counts follow `ImageErrors.types()`: FP counts only the counted false positives (not those inside
a difficult box), of the class they were detected as; FN counts the GT boxes no hit took, of
their GT class; the FP types count false positives, Miss counts missed boxes. Rows are the
report's `ImageErrors`, read only.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from frcnn_core.analysis.tide import MAIN_ERRORS, MISS

IMAGE, ERRORS, FP, FN = "image", "errors", "FP", "FN"
COLUMNS = (IMAGE, ERRORS, FP, FN, *MAIN_ERRORS)


@dataclass(frozen=True)
class Line:
    """One table line: the row it shows, the image's place in the folder, its counts by column."""

    row: object  # ImageErrors
    place: int
    counts: dict[str, int]

    @property
    def name(self) -> str:
        return Path(self.row.image_path).name


def counts(row, class_name: str | None = None) -> dict[str, int]:
    """The row's counts by column (but IMAGE), of one class only when class_name is given."""
    false_positives = [fp for fp in row.false_positives if fp.counted and class_name in (None, fp.label)]
    false_negatives = [fn for fn in row.false_negatives if class_name in (None, fn.label)]
    found = {kind: sum(fp.type == kind for fp in false_positives) for kind in MAIN_ERRORS}
    found[MISS] = sum(fn.type == MISS for fn in false_negatives)
    return {ERRORS: len(false_positives) + len(false_negatives), FP: len(false_positives),
            FN: len(false_negatives), **found}


def table_lines(rows: Sequence, places: dict[str, int], class_name: str | None = None,
                error_type: str | None = None, column: str = ERRORS, descending: bool = True) -> list[Line]:
    """The lines of `rows` to show, in order.

    places: image path -> its place in the folder (ties keep folder order; images not listed come
    last). class_name: only errors of that class are counted, and only images with some are kept;
    error_type (one of MAIN_ERRORS): only images with errors of that type are kept. column: the
    column sorted by (IMAGE: by place), descending or not.
    """
    lines = [Line(row, places.get(row.image_path, len(places)), counts(row, class_name)) for row in rows]
    if class_name is not None:
        lines = [line for line in lines if line.counts[ERRORS]]
    if error_type is not None:
        lines = [line for line in lines if line.counts[error_type]]
    lines.sort(key=lambda line: line.place)
    if column == IMAGE:
        return lines[::-1] if descending else lines
    return sorted(lines, key=lambda line: line.counts[column], reverse=descending)  # stable: ties in folder order


def errors_of(row, class_name: str | None = None, error_type: str | None = None) -> list:
    """The row's errors the filters keep, false positives first (by score, highest first), then
    false negatives (in GT order); an FN passes a type filter by its own type (Loc, Cls: the
    error that fixing would find it)."""
    chosen = [*row.false_positives, *row.false_negatives]
    return [error for error in chosen if class_name in (None, error.label) and error_type in (None, error.type)]
