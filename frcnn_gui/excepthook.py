"""Exceptions that escape a Qt slot or event handler: one line in the log, the traceback below it.

Qt cannot propagate a Python exception out of a slot; PySide6 hands it to `sys.excepthook`. The
hook installed here writes "internal error: <type>: <message>" to the log (the user sees one line
and the traceback for a bug report) and then calls the hook it replaced, so that a test harness
that fails tests on such exceptions (pytest-qt) still does.
"""
from __future__ import annotations

import sys
import traceback
from collections.abc import Callable


def one_line(error: BaseException) -> str:
    text = next(iter(str(error).splitlines()), "")
    return f"internal error: {type(error).__name__}: {text}" if text else f"internal error: {type(error).__name__}"


def install(log: Callable[[str], None]) -> Callable[[], None]:
    """Route uncaught exceptions to `log` (then to the previous hook); returns the uninstaller."""
    previous = sys.excepthook

    def hook(kind, error, trace) -> None:
        try:
            log(one_line(error) + "\n" + "".join(traceback.format_exception(kind, error, trace)).rstrip())
        finally:
            previous(kind, error, trace)

    sys.excepthook = hook

    def uninstall() -> None:
        if sys.excepthook is hook:
            sys.excepthook = previous

    return uninstall
