"""A call that takes seconds, made from a dialog without freezing the application: the function
runs in a short-lived worker thread while a local event loop keeps every window painted and
responsive; the caller gets the function's return value, or its exception, as from a plain
call. The caller disables what must not be used meanwhile (a second Check, say).

Planning a fine-tuning run builds the base model and measures the anchors on every training box:
about a second on an idle two-core CPU, but up to ten when the cores are busy (measured on
BCCD's 205 training images), too long for the UI thread.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from PySide6.QtCore import QEventLoop, QMetaObject, Qt

Result = TypeVar("Result")


def call_in_background(function: Callable[..., Result], **kwargs) -> Result:
    """`function(**kwargs)` in a worker thread, the UI thread's events handled until it returns."""
    outcome: dict = {}
    loop = QEventLoop()

    def work() -> None:
        try:
            outcome["value"] = function(**kwargs)
        except BaseException as error:  # handed to the caller, raised there
            outcome["error"] = error
        finally:  # queued: the loop quits once it runs, even when the work ended before it started
            QMetaObject.invokeMethod(loop, "quit", Qt.ConnectionType.QueuedConnection)

    worker = threading.Thread(target=work, name="finetune-plan", daemon=True)
    worker.start()
    loop.exec()
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
