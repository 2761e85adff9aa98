"""The UI side of saliency maps (`SaliencyRequest`): `EngineClient.saliency` asks the engine's
worker for them and passes on only the answers of the latest request.

The latest request is wanted until it is cancelled; a newer one supersedes it. The worker asks
between D-RISE batches, so a superseded or cancelled request stops within one batch; a cancelled
one still answers `done` with the map so far, a superseded one is never answered (what the worker
still sends for it is dropped here). This module does not import torch.
"""
from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, Qt, Signal, Slot

from frcnn_gui.engine.gates import RequestGate
from frcnn_gui.engine.messages import SaliencyRequest, SaliencyResult, SaliencyUpdate


class SaliencyLink(QObject):
    """`progress(SaliencyUpdate)` while D-RISE refines, then `done(SaliencyResult)`, for the latest
    request only; a failure arrives as the client's `failed`. `gate` is shared with the worker."""

    progress = Signal(object)  # SaliencyUpdate
    done = Signal(object)  # SaliencyResult, cancelled or not
    _requested = Signal(object)

    def __init__(self, issue: Callable[[], int], parent: QObject | None = None) -> None:
        """`issue()`: the client's next request id, counted busy until the worker is done with it."""
        super().__init__(parent)
        self._issue = issue
        self.gate = RequestGate()
        self._closed = False

    def connect_worker(self, worker) -> None:
        """Send requests to the EngineWorker's `explain` and take its saliency messages, across threads."""
        queued = Qt.ConnectionType.QueuedConnection
        self._requested.connect(worker.explain, queued)
        worker.saliency_progress.connect(self._arrived, queued)
        worker.saliency_done.connect(self._arrived, queued)

    def explain(self, inspection_id: int, kind: str, index: int, method: str, masks: int) -> int:
        """Queue the map of `SaliencyRequest(...)`; returns its request id. The request before stops."""
        request_id = self._issue()
        self.gate.supersede(request_id)
        self._requested.emit(SaliencyRequest(request_id, inspection_id, kind, index, method, masks))
        return request_id

    def cancel(self) -> None:
        """Stop the request under way after its current batch; `done` brings the map so far."""
        self.gate.cancel()

    def close(self) -> None:
        """The client shuts down: the request under way stops, nothing more is passed on."""
        self._closed = True
        self.gate.cancel()

    def wants(self, request_id: int) -> bool:
        """Whether the answers of `request_id` are still passed on: it is the latest, and the client open."""
        return not self._closed and self.gate.is_latest(request_id)

    @Slot(object)
    def _arrived(self, message: SaliencyUpdate | SaliencyResult) -> None:
        if isinstance(message, SaliencyResult):
            if self.wants(message.request.request_id):
                self.done.emit(message)
        elif self.wants(message.request_id):
            self.progress.emit(message)
