"""Crash safety of the atomic writes (frcnn_core.io.atomic): a writer killed with SIGKILL at a random
moment of an autosave (the document's VOC XML with 2,000 boxes) or of a checkpoint write
(save_checkpoint of a real mobilenet-v2 detector, 42 MB) leaves the old or the new file, whole,
never a mix or a cut one; the temp file of the killed write never shadows the target and the next
write removes it.

SIGKILL does not lose what the kernel has already been given, so these kills test the rename, not
the fsync; the fsync calls (the file before the rename, the folder after it) are checked by
watching them."""
from __future__ import annotations

import fcntl
import os
import random
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from frcnn_core.data.voc import read_voc_xml
from frcnn_core.io.atomic import temp_files, write_bytes_atomic
from frcnn_core.modeling.checkpoints import load_weights_file, save_checkpoint
from frcnn_core.modeling.zoo import build_model
from frcnn_gui.document.document import Box, Document

import crash_writer

ROOT = Path(__file__).resolve().parents[2]
KILLS = {"annotation": 80, "checkpoint": 50}
SECONDS_PER_KIND = 40  # a ceiling: the kills above take about 12 s and 15 s on 2 CPU cores
POLL_S = 0.0002
STOP_ATTEMPTS = 100


class Zygote:
    """crash_writer.py run as a child process, driven through its stdin and stdout; `target` is
    the file its writers save."""

    def __init__(self, kind: str, target: Path, system_temp: Path):
        system_temp.mkdir()
        env = {**os.environ, "TMPDIR": str(system_temp), "PYTHONPATH": str(ROOT)}
        self.target = target
        self.process = subprocess.Popen(
            [sys.executable, str(Path(crash_writer.__file__)), kind, str(target.parent)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT,
        )
        ready, seconds = self._answer().split()
        assert ready == "ready"
        self.save_s = float(seconds)
        self.write_s = 0.0

    def _answer(self) -> str:
        line = self.process.stdout.readline()
        assert line, f"the writer ended (status {self.process.poll()})"
        return line.strip()

    def _ask(self, command: str) -> str:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._answer()

    def _new_temp_file(self, known: set[Path]) -> Path:
        """Wait until a write of the target begins: a temp file not in `known` appears."""
        deadline = time.monotonic() + 10
        while not (started := set(temp_files(self.target)) - known):
            assert time.monotonic() < deadline, "no write began"
            time.sleep(POLL_S)
        return started.pop()

    @contextmanager
    def _writer(self) -> Iterator[int]:
        """Fork a writer (its pid) for the block; SIGKILL it as the block ends and wait until it
        has ended."""
        pid = int(self._ask("fork"))
        try:
            yield pid
        finally:
            os.kill(pid, signal.SIGKILL)
            assert self._ask(f"reap {pid}") == "reaped"

    def measure_write(self) -> None:
        """How long one write of the target takes (`write_s`): its temp file's life, seen from
        here. The writer is killed after that write, which it finished."""
        with self._writer():
            temp = self._new_temp_file(set(temp_files(self.target)))
            start = time.perf_counter()
            while temp.exists():
                time.sleep(POLL_S)
            self.write_s = time.perf_counter() - start

    def kill_at_any_moment(self, rng: random.Random) -> None:
        """Kill a writer at a random moment of its first two saves."""
        with self._writer():
            time.sleep(rng.uniform(0.0, 2.0 * self.save_s))

    def kill_while_writing(self, rng: random.Random) -> None:
        """Kill a writer at a random moment while it writes the target. A write can last less
        than a millisecond, less than it takes here to notice it on a busy machine: the writer is
        stopped (SIGSTOP) first, and killed if that caught it between creating its temp file and
        the rename; otherwise it goes on to its next write and that one is tried."""
        with self._writer() as pid:
            for _ in range(STOP_ATTEMPTS):
                temp = self._new_temp_file(set(temp_files(self.target)))
                time.sleep(rng.uniform(0.0, self.write_s))
                os.kill(pid, signal.SIGSTOP)
                _wait_until_stopped(pid)
                if temp.exists():
                    return
                os.kill(pid, signal.SIGCONT)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


def _wait_until_stopped(pid: int) -> None:
    """Return once process `pid` is stopped: "T" in /proc/PID/stat, after the name in brackets."""
    stat_file = Path(f"/proc/{pid}/stat")
    while stat_file.read_text().rsplit(")", 1)[1].split()[0] != "T":
        time.sleep(POLL_S)


def kill_repeatedly(kind: str, target: Path, check) -> None:
    """Kill KILLS[kind] writers, every other one at any moment and the others while they write
    the target, calling `check()` first on the zygote's version A, then after each kill. A kill
    was in the middle of writing the file when it left a temp file that was not there before;
    at most one is ever there (the next write removes it)."""
    rng = random.Random(0)
    zygote = Zygote(kind, target, target.parent.parent / "system-temp")
    kills = mid_write = 0
    deadline = time.monotonic() + SECONDS_PER_KIND
    try:
        check()
        assert temp_files(target) == []
        zygote.measure_write()
        while kills < KILLS[kind] and time.monotonic() < deadline:
            before = set(temp_files(target))
            (zygote.kill_while_writing if kills % 2 else zygote.kill_at_any_moment)(rng)
            kills += 1
            check()
            after = temp_files(target)
            assert len(after) <= 1, after
            mid_write += bool(set(after) - before)
    finally:
        zygote.close()
    print(f"\n{kind}: {kills} kills survived, {mid_write} of them in the middle of writing the file "
          f"(one save {zygote.save_s * 1000:.0f} ms, of it writing the file {zygote.write_s * 1000:.1f} ms)")
    assert kills >= KILLS[kind] // 2
    assert mid_write >= kills // 3, "too few kills hit a write to test anything"


@pytest.mark.slow
def test_annotation_survives_kills_mid_autosave(tmp_path):
    xml = tmp_path / "data" / "image.xml"
    versions = [[(*coords, label) for *coords, label in version] for version in crash_writer.annotation_versions()]

    def check() -> None:
        annotation = read_voc_xml(xml)
        saved = [(*coords, name) for coords, name in zip(annotation.boxes.tolist(), annotation.names, strict=True)]
        assert saved in versions and annotation.problems == []
        listed = {path.name for path in xml.parent.iterdir()} - {path.name for path in temp_files(xml)}
        assert listed == {"image.png", "image.xml", "classes.txt"}

    kill_repeatedly("annotation", xml, check)

    document = Document()
    document.open_folder(xml.parent)
    document.open_image(0)
    assert [(*box.coords, box.label) for box in document.boxes.values()] in versions
    first_id = next(iter(document.boxes))
    document.replace_box(first_id, Box(1, 1, 9, 9, "cell"))
    document.save()
    assert temp_files(xml) == []
    assert read_voc_xml(xml).boxes[0].tolist() == [1, 1, 9, 9]
    # The document builds its XML in memory (annotation_file): a kill leaves nothing in the temp folder.
    assert list((tmp_path / "system-temp").iterdir()) == []


@pytest.mark.slow
def test_checkpoint_survives_kills_mid_write(tmp_path):
    path = tmp_path / "data" / "model.pt"
    version_a: dict | None = None

    def check() -> None:
        nonlocal version_a
        loaded = load_weights_file(path)
        assert loaded.model_name == "mobilenet-v2" and loaded.class_names == crash_writer.CHECKPOINT_CLASSES
        if version_a is None:  # the first call: the zygote's version A
            version_a = loaded.state_dict
            versions.extend([version_a, crash_writer.checkpoint_version_b(version_a)])
        assert any(_equal(loaded.state_dict, version) for version in versions)

    versions: list[dict] = []
    kill_repeatedly("checkpoint", path, check)

    model = build_model(str(path), "none")
    assert model.model_name == "mobilenet-v2" and model.class_names == crash_writer.CHECKPOINT_CLASSES
    save_checkpoint(path, model.model_name, model.config, model.class_names, model.state_dict())
    assert temp_files(path) == []


def _equal(state_dict: dict, version: dict) -> bool:
    return state_dict.keys() == version.keys() and all(torch.equal(state_dict[k], version[k]) for k in version)


# -- what the kills cannot see -------------------------------------------------------------------

def test_file_is_synced_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(handle: int) -> None:
        events.append("fsync folder" if stat.S_ISDIR(os.fstat(handle).st_mode) else "fsync file")
        real_fsync(handle)

    def replace(source, target) -> None:
        events.append("rename")
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write_bytes_atomic(tmp_path / "a.xml", b"<annotation/>")
    assert events == ["fsync file", "rename", "fsync folder"]


def test_temp_file_of_a_live_writer_is_kept_and_an_abandoned_one_removed(tmp_path):
    target = tmp_path / "a.xml"
    live = tmp_path / ".a.xml.live.tmp"
    live.write_bytes(b"<annot")
    with open(live, "rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # as a writer in progress holds it
        write_bytes_atomic(target, b"<annotation/>")
        assert temp_files(target) == [live]
    write_bytes_atomic(target, b"<annotation></annotation>")  # its writer is gone now
    assert temp_files(target) == [] and target.read_bytes() == b"<annotation></annotation>"


def test_cleanup_neither_waits_on_a_fifo_nor_follows_a_link(tmp_path):
    target = tmp_path / "a.xml"
    fifo, link = tmp_path / ".a.xml.fifo.tmp", tmp_path / ".a.xml.link.tmp"
    os.mkfifo(fifo)
    (tmp_path / "elsewhere").write_bytes(b"kept")
    link.symlink_to(tmp_path / "elsewhere")
    write_bytes_atomic(target, b"<annotation/>")
    assert temp_files(target) == [fifo, link] and (tmp_path / "elsewhere").read_bytes() == b"kept"
