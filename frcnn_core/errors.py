"""Errors the user can cause, each carrying one clear line that names the file and the problem.

The CLI turns an `InputError` into that line on stderr and exit status 2 (DESIGN.md, "Errors").
Anything else is our bug and keeps its traceback.
"""
from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Bad user input: an unreadable image, a malformed annotation, a wrong checkpoint.

    `str(error)` is the one line shown to the user: "<path>: <problem>".
    """

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(problem if path is None else f"{path}: {problem}")
