"""The messages between the UI and the engine worker: requests in, results and errors out.
Results hold only detached CPU data, so they can cross threads."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch's types: the window imports this module before the engine has imported torch
    import numpy as np

    from frcnn_core.analysis.errors import ErrorReport
    from frcnn_core.inspect.saliency import DeletionTest
    from frcnn_core.modeling.trace import Trace


@dataclass(frozen=True)
class DetectRequest:
    request_id: int
    image_path: str
    trace: bool = True


@dataclass(frozen=True)
class InspectRequest:
    request_id: int
    image_path: str


@dataclass(frozen=True)
class RerunRequest:
    """One stage of the worker's inspection `inspection_id` (the request id of the `InspectRequest`
    that made it) run again: `kind` names what (a key of `frcnn_gui.engine.reruns.RERUNS`),
    `arguments` its keywords, plain Python data only."""

    request_id: int
    inspection_id: int
    kind: str
    arguments: dict


@dataclass(frozen=True)
class LoadModelRequest:
    """`model` is a name from `MODELS`/`BUNDLED` or a checkpoint path; `device` one of `DEVICES`;
    `amp` (float16 autocast) takes effect on CUDA only."""

    request_id: int
    model: str
    weights: str
    device: str = "auto"
    amp: bool = False


@dataclass(frozen=True)
class DetectResult:
    """One image's detections: "boxes" (D, 4) float32 in original pixels, "scores" (D,) float32,
    "labels" (D,) int64, all on the CPU without grad. Every score is kept (threshold 0): the UI
    filters by score without running the model again. `seconds` covers loading the image, the
    forward pass and the trace."""

    request_id: int
    image_path: str
    detections: dict
    trace: Trace | None
    class_names: list[str]
    seconds: float
    device: str


@dataclass(frozen=True)
class InspectResult:
    """One image's inspection for the stage inspector: its `trace` (detached CPU records) and the
    model's `config`. The `Inspection` itself (one backbone pass, its stages re-runnable without
    another) stays in the worker, which keeps the latest one; `RerunRequest`s name it by this
    result's `request_id`."""

    request_id: int
    image_path: str
    trace: Trace
    config: object
    seconds: float


@dataclass(frozen=True)
class RerunResult:
    """What `request` gave: `value`, detached CPU data (the type `RERUNS` documents for its kind),
    computed in `seconds` on the worker's thread."""

    request: RerunRequest
    value: object
    seconds: float


@dataclass(frozen=True)
class ModelLoaded:
    request_id: int
    model_name: str
    class_names: list[str]
    device: str
    seconds: float


@dataclass(frozen=True)
class WorkerError:
    """`message`: one line for the UI. `traceback`: the full text for the log; empty for errors
    the user caused."""

    request_id: int
    message: str
    traceback: str


@dataclass(frozen=True)
class FolderImage:
    """One image of the open folder and where its VOC annotation is (the file may not exist)."""

    image_path: str
    annotation_path: str


@dataclass(frozen=True)
class ErrorsRequest:
    """An error analysis (`frcnn_core.analysis.errors`) of `images` against their annotation
    files as saved, in the label space `class_names` (background first), of the detections that
    score >= `score_thresh`; `model_name` names the model in the report.

    update_of: None for a pass over the folder, which replaces the worker's report, reports
    progress and stops when cancelled; else the request id of the pass whose report gets these
    images' rows anew (their ground truth changed), answered only while the worker holds it."""

    request_id: int
    images: tuple[FolderImage, ...]
    class_names: tuple[str, ...]
    score_thresh: float
    model_name: str
    update_of: int | None = None


@dataclass(frozen=True)
class ErrorsResult:
    """What `request` gave: `report`, an `ErrorReport` of plain data (numbers, tuples, small numpy
    arrays), for an update the pass's report with the images' rows replaced; `pass_id`: the
    request id of the pass the report belongs to; `seconds` on the worker's thread."""

    request: ErrorsRequest
    report: ErrorReport
    pass_id: int
    seconds: float


@dataclass(frozen=True)
class SaliencyRequest:
    """A saliency map (`frcnn_core.inspect.saliency`) of one score of the worker's inspection
    `inspection_id`: `kind` "detection" or "proposal", `index` into that inspection's detections or
    its proposals after NMS; `method` a key of `saliency.METHODS`; `masks` D-RISE's mask count
    (HiResCAM ignores it). Wanted while it is the latest and not cancelled; a cancelled one still
    answers, with the map so far."""

    request_id: int
    inspection_id: int
    kind: str
    index: int
    method: str
    masks: int


@dataclass(frozen=True)
class SaliencyUpdate:
    """D-RISE under way: `done` of `total` masks scored; `heatmap` (H, W) float32, the map so far,
    or None (before the preview's masks are done, and between two maps sent)."""

    request_id: int
    done: int
    total: int
    heatmap: np.ndarray | None


@dataclass(frozen=True)
class SaliencyResult:
    """What `request` gave: `heatmap` (H, W) float32 over the original image (None when cancelled
    before its first masks were scored); the target's `box` (x1, y1, x2, y2, original pixels) and
    `score` in the pass; `masks` scored (0 for HiResCAM); `deletion` the deletion test of the map
    (None when `cancelled`: stopped early, the map is the one so far); `seconds` on the worker's
    thread."""

    request: SaliencyRequest
    heatmap: np.ndarray | None
    box: tuple[float, float, float, float]
    score: float
    masks: int
    deletion: DeletionTest | None
    cancelled: bool
    seconds: float
