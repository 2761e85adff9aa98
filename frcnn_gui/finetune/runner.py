"""A fine-tuning run in its own thread: `FinetuneRunner` lives in the UI thread and is all the UI
touches; `training_thread.RunWorker` trains, scores and compares in a QThread.

Iteration records are coalesced here, in the UI thread: at most one per PROGRESS_INTERVAL_MS
reaches `progress`, the newest; every other event ("started", "checkpoint", "done", "cancelled",
"stopped") always does, in order. The curves of the whole run come from its log afterwards
(`frcnn_core.training.runs.read_log`).

Cancelling sets a flag that the training loop reads before each iteration, so a run stops within
one iteration and saves a consistent last.pt; a run that has reached evaluation skips what is
left of it. Failures arrive as one line on `failed`: an InputError's own line; anything else
"internal error: <type>: <message>", its traceback sent to `log_message` first.

A thread, not a process: training holds the GIL only between torch ops, and the UI thread's
event loop stalled p99 ~15 ms (max ~150 ms, two busy CPU cores) while a run trained, was scored
and compared (tests/gui/test_finetune_runner.py prints the numbers with -s).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QCoreApplication, QObject, Qt, QThread, QTimer, Signal, Slot

from frcnn_gui.engine.worker_shared import LINGERING  # one shutdown rule for both worker threads
from frcnn_gui.finetune.training_thread import Job, RunWorker

if TYPE_CHECKING:  # the window imports this module before the engine has imported torch
    from frcnn_core.training.finetune import FinetunePlan
    from frcnn_core.training.train import Progress
    from frcnn_gui.finetune.messages import FinetuneResult, ImageComparison, PreviewDetections

PROGRESS_INTERVAL_MS = 50  # at most 20 iteration records a second reach the UI
SHUTDOWN_WAIT_S = 10.0


class FinetuneRunner(QObject):
    """The UI-side facade of the training thread; one run at a time.

    Create it in the UI thread; `shutdown()` (also connected to the application's aboutToQuit)
    cancels a run and joins the thread. After `start`, exactly one of `finished` or `failed`
    follows. `last_timing`: (seconds per iteration, device) of the latest run that measured one.
    """

    progress = Signal(object)  # Progress, thinned: see the module doc
    preview = Signal(object)  # PreviewDetections
    finished = Signal(object)  # FinetuneResult
    failed = Signal(str)  # one line
    log_message = Signal(str)  # lines for the log: notices and tracebacks
    image_compared = Signal(object)  # ImageComparison, answering compare_image

    _run_requested = Signal(object)
    _compare_requested = Signal(object, str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._job: Job | None = None
        self._closed = False
        self._pending: Progress | None = None
        self.last_timing: tuple[float, str] | None = None
        self._throttle = QTimer(self, singleShot=True, interval=PROGRESS_INTERVAL_MS, timeout=self._flush)
        # No parent: a QThread deleted with its parent while still running aborts the process.
        self._thread = QThread()
        self._thread.setObjectName("finetune")
        self._worker = RunWorker()
        self._worker.moveToThread(self._thread)
        self._thread.finished.connect(self._worker.deleteLater)
        queued = Qt.ConnectionType.QueuedConnection
        self._run_requested.connect(self._worker.run, queued)
        self._compare_requested.connect(self._worker.compare_image, queued)
        self._worker.image_compared.connect(self._on_image_compared, queued)
        self._worker.progress.connect(self._on_progress, queued)
        self._worker.preview.connect(self._on_preview, queued)
        self._worker.finished.connect(self._on_finished, queued)
        self._worker.failed.connect(self._on_failed, queued)
        self._worker.log_message.connect(self._on_log_message, queued)
        app = QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)
        self._thread.start()

    def start(self, plan: FinetunePlan, preview_image: str | None = None, preview_every: int = 0,
              resume: bool = False) -> None:
        """Train `plan` (resume: continue its run folder from last.pt); previews of `preview_image`
        every `preview_every` iterations (0: none). RuntimeError while another run is running."""
        if self._closed:
            raise RuntimeError("FinetuneRunner is shut down")
        if self.is_running():
            raise RuntimeError("a fine-tuning run is already running")
        self._pending = None
        self._job = Job(plan, preview_image, preview_every, resume)
        self._run_requested.emit(self._job)

    def compare_image(self, plan: FinetunePlan, image_path: str) -> None:
        """Run the plan's starting model and its run's best checkpoint on `image_path`: answered by
        `image_compared`, or by a line on `log_message` (e.g. no checkpoint yet). While a run trains,
        the request waits for it to end."""
        if not self._closed:
            self._compare_requested.emit(plan, str(image_path))

    def cancel(self) -> None:
        """Stop the run before its next iteration (last.pt then holds it), or skip what is left of
        its evaluation; `finished` still follows."""
        if self._job is not None:
            self._job.cancelled.set()

    def is_running(self) -> bool:
        """True from `start` until the training thread is done with the run (its signals may still be queued)."""
        return self._job is not None and not self._job.done.is_set()

    def wait(self, ms: int) -> bool:
        """Block up to `ms` for the training thread to finish the run; True when it has (or none runs)."""
        return self._job is None or self._job.done.wait(ms / 1000)

    def shutdown(self, wait_s: float = SHUTDOWN_WAIT_S) -> None:
        """Cancel any run and stop the thread; returns within about `wait_s`."""
        if self._closed:
            return
        self._closed = True
        self.cancel()
        self._throttle.stop()
        self._thread.quit()
        if not self._thread.wait(int(wait_s * 1000)):
            # Still inside one iteration or an evaluation: keep the thread alive until it ends.
            LINGERING.add(self._thread)
            self._thread.finished.connect(self._thread.deleteLater)

    @Slot(object)
    def _on_progress(self, record: Progress) -> None:
        if self._closed:
            return
        if record.event == "iteration" and self._throttle.isActive():
            self._pending = record
            return
        self._flush()
        self.progress.emit(record)
        if record.event == "iteration":
            self._throttle.start()

    def _flush(self) -> None:
        """Emit the held-back iteration record, if any."""
        pending, self._pending = self._pending, None
        if pending is not None and not self._closed:
            self.progress.emit(pending)
            self._throttle.start()

    @Slot(object)
    def _on_preview(self, preview: PreviewDetections) -> None:
        if not self._closed:
            self.preview.emit(preview)

    @Slot(object)
    def _on_finished(self, result: FinetuneResult) -> None:
        self._throttle.stop()
        self._pending = None  # the final record supersedes it
        if result.seconds_per_iteration is not None:
            self.last_timing = (result.seconds_per_iteration, result.device)
        if not self._closed:
            self.finished.emit(result)

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self._throttle.stop()
        self._pending = None
        if not self._closed:
            self.failed.emit(message)

    @Slot(object)
    def _on_image_compared(self, compared: ImageComparison) -> None:
        if not self._closed:
            self.image_compared.emit(compared)

    @Slot(str)
    def _on_log_message(self, text: str) -> None:
        if not self._closed:
            self.log_message.emit(text)
