"""What the window says about saving, in one line each: what was written, that the file is up to
date, or why it could not be written. Qt-free."""
from __future__ import annotations

from pathlib import Path

from frcnn_gui.document.document import Document


def boxes_held(document: Document) -> str:
    """"4 boxes", "1 box, verified": what the current image's annotation holds."""
    count = len(document.boxes)
    return f"{count} {'box' if count == 1 else 'boxes'}{', verified' if document.verified else ''}"


def saved_line(annotation: Path, document: Document) -> str:
    """"saved 4 boxes to raccoon-21.xml" for the current image's annotation file."""
    return f"saved {boxes_held(document)} to {annotation.name}"


def up_to_date_line(annotation: Path, document: Document) -> str:
    """"raccoon-21.xml is up to date: 4 boxes" (the autosave wrote them already)."""
    return f"{annotation.name} is up to date: {boxes_held(document)}"


def problem_line(error: OSError | ValueError) -> str:
    """"<file>: <reason>" for an OSError that names its file (PermissionError: "/a/b.xml:
    permission denied"), else the error's own first line."""
    if isinstance(error, OSError) and error.filename and error.strerror:
        return f"{error.filename}: {error.strerror.lower()}"
    return next(iter(str(error).splitlines()), type(error).__name__)
