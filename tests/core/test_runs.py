"""Run folders: states from the files a run leaves, newest first, tolerant of torn and damaged files."""
from __future__ import annotations

import json
import os

from frcnn_core.training.runs import CANCELLED, FINISHED, RUNNING, STOPPED, list_runs, read_log


def record(event: str, iteration: int, total: int = 10, message: str = "") -> str:
    return json.dumps({"event": event, "iteration": iteration, "total": total, "losses": {}, "message": message})


def make_run(folder, events: list[str], files=(), settings=None, plan=None, metrics=None, created=None, log_tail=""):
    """A run folder with settings.json, a log of `events` (iterations 0, 1, ...) and empty `files`."""
    folder.mkdir(parents=True)
    (folder / "settings.json").write_text(json.dumps(settings or {"model": "mobilenet-v2", "iters": 10}))
    lines = [record(event, iteration) for iteration, event in enumerate(events)]
    if events or log_tail:
        (folder / "log.jsonl").write_text("".join(line + "\n" for line in lines) + log_tail)
    for name in files:
        (folder / name).write_bytes(b"")
    if plan is not None:
        (folder / "plan.json").write_text(json.dumps(plan))
    if metrics is not None:
        (folder / "metrics.json").write_text(metrics if isinstance(metrics, str) else json.dumps(metrics))
    if created is not None:
        os.utime(folder / "settings.json", (created, created))
    return folder


def test_states_counts_and_checkpoints(tmp_path):
    make_run(tmp_path / "done", ["started", "iteration", "checkpoint", "done"], files=["last.pt", "final.pt"],
             plan={"base_model": "bccd-demo"}, metrics={"AP50": 0.5}, created=4000)
    make_run(tmp_path / "cancelled", ["started", "iteration", "cancelled"], files=["last.pt"], created=3000)
    make_run(tmp_path / "stopped", ["started", "iteration", "stopped"], created=2000)
    make_run(tmp_path / "new", [], created=1000)
    runs = list_runs(tmp_path)
    assert [run.name for run in runs] == ["done", "cancelled", "stopped", "new"]  # newest first
    done, cancelled, stopped, new = runs
    assert (done.state, done.iteration, done.total, done.base_model) == (FINISHED, 3, 10, "bccd-demo")
    assert done.best_checkpoint == str(tmp_path / "done" / "final.pt") and done.metrics == {"AP50": 0.5}
    assert (cancelled.state, cancelled.best_checkpoint) == (CANCELLED, str(tmp_path / "cancelled" / "last.pt"))
    assert (stopped.state, stopped.best_checkpoint, stopped.metrics) == (STOPPED, None, None)
    assert (new.state, new.iteration, new.total, new.base_model) == (RUNNING, 0, 10, "mobilenet-v2")
    assert all(run.error is None for run in runs) and done.created == 4000


def test_a_torn_last_line_is_skipped_and_the_run_reads_as_running(tmp_path):
    run = make_run(tmp_path / "run", ["started", "iteration"], log_tail='{"event": "itera')
    assert [entry["event"] for entry in read_log(run)] == ["started", "iteration"]
    [summary] = list_runs(tmp_path)
    assert (summary.state, summary.iteration, summary.error) == (RUNNING, 1, None)


def test_a_torn_line_inside_a_resumed_log_is_skipped(tmp_path):
    run = make_run(tmp_path / "run", ["started"], log_tail='{"event": "it\n' + record("started", 1) + "\n")
    assert [entry["event"] for entry in read_log(run)] == ["started", "started"]
    [summary] = list_runs(tmp_path)
    assert (summary.iteration, summary.error) == (1, None)


def test_damaged_files_give_a_one_line_error_instead_of_raising(tmp_path):
    run = make_run(tmp_path / "run", ["started", "iteration"], metrics="{not json")
    (run / "settings.json").write_text("[1, 2]")
    [summary] = list_runs(tmp_path)
    assert "metrics.json: not valid JSON" in summary.error and "settings.json: expected a JSON object" in summary.error
    assert "\n" not in summary.error
    assert (summary.metrics, summary.base_model, summary.iteration) == (None, None, 1)


def test_other_folders_and_missing_places_list_nothing(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    assert list_runs(tmp_path) == [] and list_runs(tmp_path / "missing") == []
    assert read_log(tmp_path / "images") == []


def test_the_stopping_message_is_carried(tmp_path):
    run = make_run(tmp_path / "run", [])
    (run / "log.jsonl").write_text(record("stopped", 7, message="non-finite loss at iteration 8") + "\n")
    [summary] = list_runs(tmp_path)
    assert (summary.state, summary.iteration, summary.message) == (STOPPED, 7, "non-finite loss at iteration 8")
