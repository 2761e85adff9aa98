"""The stage inspector's side of the engine worker's re-runs (`EngineClient.rerun`): which kinds
are on their way for the current inspection, and what came back.

The worker lets the newest request of a kind win (a request waiting there is replaced by a newer
one), so the results of one kind arrive in the order they were asked for, and the last one to
arrive answers the newest request. Each result is taken as it comes, for live updates during a
drag; a kind is "waiting" until the newest request's result (or failure) is in. Results of another
inspection (another image or model came since) are dropped.
"""
from __future__ import annotations


class Reruns:
    """Re-run requests of one inspection at a time (`reset`) through `engine` (an EngineClient).

    `ms` maps each kind to the worker's time for its latest result, in milliseconds.
    """

    def __init__(self, engine) -> None:
        self.engine = engine
        self.inspection_id: int | None = None
        self.ms: dict[str, float] = {}
        self._newest: dict[str, int] = {}  # kind -> the request id of its newest unanswered request
        self._asked: dict[str, int] = {}  # kind -> the index asked for last, for the kinds fetched by index
        self._fetched: dict[str, tuple[int, object]] = {}  # kind -> (index, value) of its latest result

    def reset(self, inspection_id: int | None) -> None:
        """Work on the inspection of request `inspection_id` (None: none); forget everything else."""
        self.inspection_id = inspection_id
        self.ms.clear()
        self._newest.clear()
        self._asked.clear()
        self._fetched.clear()

    def ask(self, kind: str, **arguments) -> None:
        """Send a re-run of `kind` with `arguments` (plain data, see `frcnn_gui.engine.reruns`)."""
        if self.inspection_id is not None:
            self._newest[kind] = self.engine.rerun(self.inspection_id, kind, **arguments)

    def waiting(self, kind: str) -> bool:
        """True while the newest request of `kind` has not been answered."""
        return kind in self._newest

    def accept(self, result) -> bool:
        """Take a RerunResult: False (dropped) when it belongs to another inspection."""
        request = result.request
        if self.inspection_id is None or request.inspection_id != self.inspection_id:
            return False
        if self._newest.get(request.kind) == request.request_id:
            del self._newest[request.kind]
        self.ms[request.kind] = result.seconds * 1000
        if "index" in request.arguments:
            self._fetched[request.kind] = (request.arguments["index"], result.value)
        return True

    def failed(self, request_id: int) -> bool:
        """A WorkerError for `request_id`: True when it answered the newest request of a kind,
        which then waits no more (the worker's error path has told the user)."""
        kind = next((kind for kind, newest in self._newest.items() if newest == request_id), None)
        if kind is not None:
            del self._newest[kind]
        return kind is not None

    def fetched(self, kind: str, index: int):
        """The value of `kind` for `index` (a RoI, a detection) if it has arrived, else None, after
        asking the worker for it once."""
        held = self._fetched.get(kind)
        if held is not None and held[0] == index:
            return held[1]
        if self._asked.get(kind) != index:
            self._asked[kind] = index
            self.ask(kind, index=index)
        return None
