"""Run folders as the Runs panel lists them: what each run is, how far it got, how well it did.

A run folder (see train.py and finetune.py) holds settings.json, log.jsonl, last.pt and final.pt,
and for a fine-tuning run also plan.json and metrics.json. Reading is tolerant: a missing file
means "not there yet"; a malformed one puts a one-line `error` on the run's summary instead of
raising, so one damaged run never hides the others.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from frcnn_core.errors import InputError

SETTINGS_FILE, LOG_FILE, PLAN_FILE, METRICS_FILE = "settings.json", "log.jsonl", "plan.json", "metrics.json"
FINAL_CHECKPOINT, LAST_CHECKPOINT = "final.pt", "last.pt"
BEST_CHECKPOINT = "best.pt"  # a budgeted run's best model while it trains; final.pt when it ends
FINISHED, CANCELLED, STOPPED, RUNNING = "finished", "cancelled", "stopped", "running or interrupted"


@dataclass(frozen=True)
class RunSummary:
    """One run folder at a glance.

    created: POSIX seconds when the run began (settings.json's time, else the folder's).
    state: FINISHED (final.pt exists), CANCELLED or STOPPED (the last logged event), else RUNNING
    (still training, or killed). iteration/total: from the last log record (total from
    settings.json before any record). message: that record's message (e.g. why it stopped).
    best_checkpoint: final.pt, else last.pt, else None. error: one line per unreadable file, "; "
    joined, or None.
    """

    name: str
    path: str
    created: float
    base_model: str | None
    state: str
    iteration: int
    total: int
    metrics: dict | None
    best_checkpoint: str | None
    message: str = ""
    error: str | None = None


def read_json(path: str | os.PathLike) -> dict:
    """A JSON object from a file; InputError (one line) when unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise InputError(path, f"cannot read ({error.strerror or error})") from error
    except (UnicodeDecodeError, ValueError) as error:
        raise InputError(path, f"not valid JSON ({error})") from error
    if not isinstance(data, dict):
        raise InputError(path, f"expected a JSON object, found {type(data).__name__}")
    return data


def read_log(run_dir: str | os.PathLike) -> list[dict]:
    """The records of a run's log.jsonl in order; [] when there is no log.

    Lines that are not a JSON object are left out: a record torn by a kill (or still being
    written) is the last line, or, once the run was resumed, a line of its own inside the log.
    """
    path = Path(run_dir) / LOG_FILE
    if not path.is_file():
        return []
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as error:
        raise InputError(path, f"cannot read ({error.strerror or error})") from error
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def summarize_run(run_dir: str | os.PathLike) -> RunSummary:
    """The summary of one run folder; never raises for a missing or malformed file."""
    run = Path(run_dir)
    errors: list[str] = []

    def tolerant(read, path: Path, default):
        try:
            return read(path) if path.exists() else default
        except InputError as error:
            errors.append(str(error))
            return default

    settings = tolerant(read_json, run / SETTINGS_FILE, {})
    plan = tolerant(read_json, run / PLAN_FILE, {})
    log = tolerant(read_log, run, [])
    metrics = tolerant(read_json, run / METRICS_FILE, None)
    last = log[-1] if log else {}
    state = {"cancelled": CANCELLED, "stopped": STOPPED}.get(last.get("event"), RUNNING)
    if (run / FINAL_CHECKPOINT).exists():
        state = FINISHED
    checkpoint = next((run / name for name in (FINAL_CHECKPOINT, LAST_CHECKPOINT) if (run / name).exists()), None)
    created = (run / SETTINGS_FILE if (run / SETTINGS_FILE).exists() else run).stat().st_mtime
    return RunSummary(
        name=run.name, path=str(run), created=created, base_model=plan.get("base_model", settings.get("model")),
        state=state, iteration=_count(last.get("iteration")), total=_count(last.get("total", settings.get("iters"))),
        metrics=metrics, best_checkpoint=str(checkpoint) if checkpoint else None, message=str(last.get("message", "")),
        error="; ".join(errors) or None,
    )


def _count(value) -> int:
    """An iteration count as a file states it; 0 for anything that is not a whole number."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def is_run(folder: Path) -> bool:
    """A folder is a run once it holds its settings, its plan or its log."""
    return folder.is_dir() and any((folder / name).is_file() for name in (SETTINGS_FILE, PLAN_FILE, LOG_FILE))


def list_runs(runs_dir: str | os.PathLike) -> list[RunSummary]:
    """Every run folder directly inside `runs_dir`, newest first; [] when there is none."""
    root = Path(runs_dir)
    folders = sorted(root.iterdir()) if root.is_dir() else []
    summaries = [summarize_run(folder) for folder in folders if is_run(folder)]
    return sorted(summaries, key=lambda summary: (summary.created, summary.name), reverse=True)


def ap50_fell(metrics: dict) -> bool:
    """Whether `score_run`'s metrics show the new model's validation AP50 below the base model's,
    on the classes both know; False when they cannot tell (not comparable, no validation images)."""
    before_after = metrics.get("before_after") or {}
    before, after = (((before_after.get(side) or {}).get("AP50")) for side in ("before", "after"))
    return before is not None and after is not None and after < before
