"""What the UI and the engine thread share about requests, each behind a lock: which request of a
kind is still wanted (`RequestGate`), and the newest re-run of each kind waiting for the worker
(`Mailbox`). See `worker.py` for how the client and the worker use them."""
from __future__ import annotations

import threading

from frcnn_gui.engine.messages import RerunRequest


class RequestGate:
    """Thread-safe record of which request of one kind (detect, inspect, error pass, saliency map)
    is still wanted: the latest, unless cancelled."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest = 0
        self._cancelled_through = 0

    def supersede(self, request_id: int) -> None:
        with self._lock:
            self._latest = request_id

    def cancel(self) -> None:
        with self._lock:
            self._cancelled_through = self._latest

    def wants(self, request_id: int) -> bool:
        with self._lock:
            return request_id == self._latest and request_id > self._cancelled_through

    def is_latest(self, request_id: int) -> bool:
        """True for the latest request, cancelled or not (a cancelled saliency map still answers)."""
        with self._lock:
            return request_id == self._latest


class Mailbox:
    """Thread-safe: per re-run kind, the newest request not yet taken by the worker."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, RerunRequest] = {}

    def put(self, request: RerunRequest) -> RerunRequest | None:
        """Leave `request` for the worker; returns the request of its kind it replaced, which
        will never run (None: the slot was empty and the worker must be told to take it)."""
        with self._lock:
            replaced = self._waiting.get(request.kind)
            self._waiting[request.kind] = request
            return replaced

    def take(self, kind: str) -> RerunRequest | None:
        with self._lock:
            return self._waiting.pop(kind, None)
