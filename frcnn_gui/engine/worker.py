"""The engine in its own thread: the UI sends requests, the worker sends back detached CPU results.

`EngineClient` lives in the UI thread and is the only thing the UI touches. It owns a QThread in
which `EngineWorker` owns the model; requests travel to the worker and results back through
queued signals, so no model or tensor is ever shared between the two threads.

Every request carries an id. A detect request is wanted only while it is the latest one and has
not been cancelled; the worker checks that between stages (before and after loading the image,
as each learned part of the network starts, after the forward pass) and abandons the request when
it no longer is, and the client drops anything that still arrives for it. Model loads are never
stale: each one changes what the worker holds.

The stage inspector's re-runs (`RerunRequest`: anchor labels while a GT box is dragged, the
proposal layer while a knob moves, ...) work on the worker's latest inspection, and the newest
wins: each kind has one slot (`Mailbox`) that the worker empties when it starts the request in
it. A request put while the slot is full replaces the one waiting there, which is then never run,
so a drag keeps at most one re-run running and one waiting, never a queue of stale ones. Results
for an inspection that is no longer the worker's latest are not computed at all.

A pass of the error analysis over the folder (`ErrorsRequest`) is wanted while it is the latest
and not cancelled; the worker asks after each image. Its updates (an image's row after a GT edit)
are never stale to the client: the view drops those of a report it no longer shows. Saliency maps
(`SaliencyRequest`) go through `EngineClient.saliency` (`saliency_link.py`); a model load stops one.

Failures arrive as a `WorkerError`, never as a crash or a hang: an `InputError` (the user's bad
file, an unknown model, no CUDA) carries its one line and no traceback; anything else is our bug
and carries "internal error: <type>: <message>" plus the full traceback for the log.

This module does not import torch. The worker imports the engine (`frcnn_gui.engine.model_calls`: torch, the
model code) in its own thread on its first request and then sends `engine_ready`, so that the
window can be built and shown first. A client made with `start=False` starts its thread only
when `start()` is called; requests made before that wait in the queue, in order.
"""
from __future__ import annotations

import functools
import importlib
import itertools
import time
import traceback
from collections.abc import Callable

from PySide6.QtCore import QCoreApplication, QObject, Qt, QThread, Signal, Slot

from frcnn_core.errors import InputError
from frcnn_gui.engine.gates import Mailbox, RequestGate
from frcnn_gui.engine.messages import (  # noqa: F401  (re-exported: the worker's public messages)
    DetectRequest,
    DetectResult,
    ErrorsRequest,
    ErrorsResult,
    FolderImage,
    InspectRequest,
    InspectResult,
    LoadModelRequest,
    ModelLoaded,
    RerunRequest,
    RerunResult,
    SaliencyRequest,
    WorkerError,
)
from frcnn_gui.engine.saliency_link import SaliencyLink
from frcnn_gui.engine.worker_shared import LINGERING, one_line

SHUTDOWN_WAIT_S = 5.0
# imported in the worker thread with the engine: the stage inspector, which the window builds once
# the engine is ready (imported in the UI thread, its torch-using modules would stall it)
PRELOADED = ("frcnn_gui.inspector.controller",)


class _Abandoned(Exception):
    """A detect request was superseded or cancelled; nothing is emitted for it."""


class EngineWorker(QObject):
    """Owns the engine; runs one request at a time in its thread. Touch only through signals."""

    result = Signal(object)  # DetectResult
    inspected = Signal(object)  # InspectResult
    rerun_done = Signal(object)  # RerunResult
    model_loaded = Signal(object)  # ModelLoaded
    failed = Signal(object)  # WorkerError
    progress = Signal(int, str)  # request id, stage name
    errors_done = Signal(object)  # ErrorsResult
    errors_progress = Signal(int, int, int)  # request id, images analysed, images in all
    saliency_progress = Signal(object)  # SaliencyUpdate
    saliency_done = Signal(object)  # SaliencyResult
    request_done = Signal(int)  # every request ends with this, whatever became of it
    engine_ready = Signal(float)  # seconds the engine took to import; once, before the first answer

    def __init__(self, gate: RequestGate, inspect_gate: RequestGate, mailbox: Mailbox,
                 errors_gate: RequestGate, saliency_gate: RequestGate) -> None:
        super().__init__()
        self._gate = gate
        self._inspect_gate = inspect_gate
        self._errors_gate = errors_gate
        self._saliency_gate = saliency_gate
        self._mailbox = mailbox
        self._engine = None  # an engine.Engine once imported

    @Slot(object)
    def load_model(self, request: LoadModelRequest) -> None:
        self._run(request.request_id, lambda engine: self.model_loaded.emit(
            engine.load(request, lambda stage: self.progress.emit(request.request_id, stage))))

    @Slot(object)
    def detect(self, request: DetectRequest) -> None:
        request_id = request.request_id
        check = functools.partial(self._check, self._gate, request_id)
        self._run(request_id, lambda engine: self.result.emit(
            engine.detect(request, check, functools.partial(self._enter, request_id))))

    @Slot(object)
    def inspect(self, request: InspectRequest) -> None:
        check = functools.partial(self._check, self._inspect_gate, request.request_id)
        self._run(request.request_id, lambda engine: self.inspected.emit(engine.inspect(request, check)))

    @Slot(str)
    def rerun(self, kind: str) -> None:
        """Run the newest re-run request of `kind` waiting in the mailbox."""
        request = self._mailbox.take(kind)
        if request is not None:
            self._run(request.request_id, lambda engine: self._emit_if_any(self.rerun_done, engine.rerun(request)))

    @Slot(object)
    def analyse_errors(self, request: ErrorsRequest) -> None:
        request_id = request.request_id
        progress = functools.partial(self.errors_progress.emit, request_id)
        self._run(request_id, lambda engine: self._emit_if_any(self.errors_done, engine.errors(
            request, progress, lambda: not self._errors_gate.wants(request_id))))

    @Slot(object)
    def explain(self, request: SaliencyRequest) -> None:
        wanted = functools.partial(self._saliency_gate.wants, request.request_id)
        self._run(request.request_id, lambda engine: self._emit_if_any(
            self.saliency_done, engine.saliency(request, self.saliency_progress.emit, wanted)))

    @staticmethod
    def _emit_if_any(signal, result: object | None) -> None:
        if result is not None:
            signal.emit(result)

    def _run(self, request_id: int, job: Callable) -> None:
        """`job(engine)`, its failure turned into a WorkerError; the engine imported first if need be."""
        try:
            job(self._imported_engine())
        except _Abandoned:
            pass
        except InputError as error:
            self.failed.emit(WorkerError(request_id, one_line(str(error)), ""))
        except Exception as error:  # our bug: the UI shows a line, the log the traceback
            message = f"internal error: {type(error).__name__}: {one_line(str(error))}"
            self.failed.emit(WorkerError(request_id, message, traceback.format_exc()))
        finally:
            self.request_done.emit(request_id)

    def _imported_engine(self):
        if self._engine is None:
            start = time.perf_counter()
            from frcnn_gui.engine.model_calls import Engine  # torch: imported here, in the worker's thread

            for name in PRELOADED:
                importlib.import_module(name)
            self._engine = Engine()
            self.engine_ready.emit(time.perf_counter() - start)
        return self._engine

    @staticmethod
    def _check(gate: RequestGate, request_id: int) -> None:
        if not gate.wants(request_id):
            raise _Abandoned

    def _enter(self, request_id: int, stage: str) -> None:
        self._check(self._gate, request_id)
        self.progress.emit(request_id, stage)


class EngineClient(QObject):
    """The UI-side facade: starts the worker thread and forwards only wanted results.

    Create it in the UI thread and call `shutdown()` before the application ends (it is also
    connected to the application's `aboutToQuit`). `busy` is True while the worker has load,
    detect, inspect or error requests queued or running, abandoned ones included; the stage inspector's
    re-runs (tens of milliseconds, many during a drag) do not count. With `start=False` the
    thread waits for `start()`; requests made before are answered after, in order,
    `engine_ready` first.
    """

    result = Signal(object)  # DetectResult
    inspected = Signal(object)  # InspectResult
    rerun_done = Signal(object)  # RerunResult
    model_loaded = Signal(object)  # ModelLoaded
    failed = Signal(object)  # WorkerError
    progress = Signal(int, str)  # request id, stage name
    errors_done = Signal(object)  # ErrorsResult
    errors_progress = Signal(int, int, int)  # request id, images analysed, images in all
    busy = Signal(bool)
    engine_ready = Signal(float)  # the worker has imported the engine (seconds it took)

    _load_requested = Signal(object)
    _detect_requested = Signal(object)
    _inspect_requested = Signal(object)
    _rerun_waiting = Signal(str)  # a re-run kind whose mailbox slot has just been filled
    _errors_requested = Signal(object)

    def __init__(self, parent: QObject | None = None, start: bool = True) -> None:
        super().__init__(parent)
        self._gate = RequestGate()
        self._inspect_gate = RequestGate()  # inspections and detections do not supersede each other
        self._mailbox = Mailbox()
        self._errors_gate = RequestGate()  # passes over the folder: the latest, unless cancelled
        self._ids = itertools.count(1)
        self._outstanding: set[int] = set()
        self._loads: set[int] = set()
        self._reruns: set[int] = set()  # re-runs waiting or running: never stale to the client
        self._error_updates: set[int] = set()  # likewise
        self.saliency = SaliencyLink(self._issue, self)  # saliency maps: requests, Cancel, the latest's answers
        self._closed = False
        # No parent: a QThread deleted with its parent while still running aborts the process.
        self._thread = QThread()
        self._thread.setObjectName("engine")
        self._worker = EngineWorker(self._gate, self._inspect_gate, self._mailbox, self._errors_gate,
                                    self.saliency.gate)
        self._worker.moveToThread(self._thread)
        self._thread.finished.connect(self._worker.deleteLater)
        queued = Qt.ConnectionType.QueuedConnection
        self._load_requested.connect(self._worker.load_model, queued)
        self._detect_requested.connect(self._worker.detect, queued)
        self._inspect_requested.connect(self._worker.inspect, queued)
        self._rerun_waiting.connect(self._worker.rerun, queued)
        self._errors_requested.connect(self._worker.analyse_errors, queued)
        self._worker.result.connect(self._on_result, queued)
        self._worker.inspected.connect(self._on_inspected, queued)
        self._worker.rerun_done.connect(self._on_rerun_done, queued)
        self._worker.model_loaded.connect(self._on_model_loaded, queued)
        self._worker.failed.connect(self._on_failed, queued)
        self._worker.progress.connect(self._on_progress, queued)
        self._worker.errors_done.connect(self._on_errors_done, queued)
        self._worker.errors_progress.connect(self.errors_progress, queued)  # the view knows which pass it waits for
        self._worker.request_done.connect(self._on_request_done, queued)
        self.saliency.connect_worker(self._worker)
        self._worker.engine_ready.connect(self.engine_ready, queued)
        app = QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)
        if start:
            self.start()

    def start(self) -> None:
        """Start the worker thread (once; later calls do nothing): it imports the engine and
        answers the requests queued so far."""
        if not self._closed and not self._thread.isRunning():
            self._thread.start()

    @property
    def started(self) -> bool:
        return self._thread.isRunning()

    def load_model(self, model: str, weights: str, device: str = "auto", amp: bool = False) -> int:
        """Queue a model load; returns its request id. Answered by `model_loaded` or `failed`."""
        request_id = self._issue()
        self._loads.add(request_id)
        self.saliency.cancel()  # a map of the model replaced: it would hold the load back
        self._load_requested.emit(LoadModelRequest(request_id, model, weights, device, amp))
        return request_id

    def detect(self, image_path: str, trace: bool = True) -> int:
        """Queue a detection; returns its request id. Every earlier detect becomes stale."""
        request_id = self._issue()
        self._gate.supersede(request_id)
        self._detect_requested.emit(DetectRequest(request_id, str(image_path), trace))
        return request_id

    def inspect(self, image_path: str) -> int:
        """Queue an inspection (`inspected` or `failed`); returns its request id. Every earlier
        inspect becomes stale; detect requests are not affected."""
        request_id = self._issue()
        self._inspect_gate.supersede(request_id)
        self._inspect_requested.emit(InspectRequest(request_id, str(image_path)))
        return request_id

    def rerun(self, inspection_id: int, kind: str, **arguments) -> int:
        """Re-run stage `kind` of the inspection made by request `inspection_id` with `arguments`
        (see `RerunRequest`); returns the request id. Answered by `rerun_done` or `failed`, or
        by nothing when a newer request of the same kind replaces it before the worker starts it
        or the worker holds another inspection by then."""
        request_id = self._issue(busy=False)
        self._reruns.add(request_id)
        replaced = self._mailbox.put(RerunRequest(request_id, inspection_id, kind, arguments))
        if replaced is None:
            self._rerun_waiting.emit(kind)
        else:  # never run: done now
            self._reruns.discard(replaced.request_id)
        return request_id

    def analyse_errors(self, images: list[FolderImage], class_names: list[str], score_thresh: float,
                       model_name: str, update_of: int | None = None) -> int:
        """Queue an error analysis (`ErrorsRequest`: a pass over the folder, or with `update_of` an
        update of that pass); returns its request id. Answered by `errors_done` or `failed`, or by
        nothing for a pass cancelled or superseded, and for an update of a pass no longer held."""
        request_id = self._issue()
        if update_of is None:
            self._errors_gate.supersede(request_id)
        else:
            self._error_updates.add(request_id)
        self._errors_requested.emit(ErrorsRequest(request_id, tuple(images), tuple(class_names), float(score_thresh),
                                                  model_name, update_of))
        return request_id

    def cancel_errors(self) -> None:
        """Stop the running pass over the folder after its current image; nothing is emitted for it."""
        self._errors_gate.cancel()

    def cancel(self) -> None:
        """Abandon the running and queued detect and inspect requests; nothing is emitted for them."""
        self._gate.cancel()
        self._inspect_gate.cancel()

    def shutdown(self, wait_s: float = SHUTDOWN_WAIT_S) -> None:
        """Stop the worker thread. Returns within about `wait_s` even if a request is running:
        the request is abandoned at its next stage and its result dropped."""
        if self._closed:
            return
        self._closed = True
        self._gate.cancel()
        self._inspect_gate.cancel()
        self.saliency.close()
        self._thread.quit()
        if not self._thread.wait(int(wait_s * 1000)):
            # Still inside one stage: keep the thread alive until it ends rather than destroy it.
            LINGERING.add(self._thread)
            self._thread.finished.connect(self._thread.deleteLater)

    @property
    def is_busy(self) -> bool:
        """True while a load, detect, inspect or error request is outstanding (the state `busy` reports)."""
        return bool(self._outstanding)

    def _issue(self, busy: bool = True) -> int:
        """A new request id; with `busy`, the request is outstanding until the worker is done with it."""
        if self._closed:
            raise RuntimeError("EngineClient is shut down")
        request_id = next(self._ids)
        if busy:
            if not self._outstanding:
                self.busy.emit(True)
            self._outstanding.add(request_id)
        return request_id

    def _wanted(self, request_id: int) -> bool:
        return not self._closed and (request_id in self._loads or request_id in self._reruns
                                     or request_id in self._error_updates or self._gate.wants(request_id)
                                     or self._inspect_gate.wants(request_id) or self._errors_gate.wants(request_id)
                                     or self.saliency.wants(request_id))

    @Slot(object)
    def _on_result(self, result: DetectResult) -> None:
        if self._wanted(result.request_id):
            self.result.emit(result)

    @Slot(object)
    def _on_inspected(self, result: InspectResult) -> None:
        if self._wanted(result.request_id):
            self.inspected.emit(result)

    @Slot(object)
    def _on_rerun_done(self, result: RerunResult) -> None:
        if self._wanted(result.request.request_id):
            self.rerun_done.emit(result)

    @Slot(object)
    def _on_model_loaded(self, loaded: ModelLoaded) -> None:
        if self._wanted(loaded.request_id):
            self.model_loaded.emit(loaded)

    @Slot(object)
    def _on_failed(self, error: WorkerError) -> None:
        if self._wanted(error.request_id):
            self.failed.emit(error)

    @Slot(int, str)
    def _on_progress(self, request_id: int, stage: str) -> None:
        if self._wanted(request_id):
            self.progress.emit(request_id, stage)

    @Slot(object)
    def _on_errors_done(self, result: ErrorsResult) -> None:
        if self._wanted(result.request.request_id):
            self.errors_done.emit(result)

    @Slot(int)
    def _on_request_done(self, request_id: int) -> None:
        self._loads.discard(request_id)
        self._reruns.discard(request_id)
        self._error_updates.discard(request_id)
        if request_id in self._outstanding:
            self._outstanding.discard(request_id)
            if not self._outstanding and not self._closed:
                self.busy.emit(False)
