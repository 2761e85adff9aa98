"""`frcnn-gui` as the user starts it: the console script in a subprocess (offscreen)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

from frcnn_core.data.voc import write_voc_xml
from frcnn_core.resources import SAMPLES

SCRIPT = Path(sys.executable).parent / "frcnn-gui"
WINDOW_SIZE = (1400, 900)  # MainWindow's size when no saved geometry applies (a screenshot never reads any)


def run_gui(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_screenshot_renders_the_window_after_the_detections(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    image = folder / "rocket.jpg"
    Image.open(SAMPLES / "rocket.jpg").convert("RGB").crop((0, 0, 160, 120)).save(image)
    write_voc_xml(folder / "rocket.xml", image, 160, 120, [[10, 20, 60, 80]], ["rocket"])
    (folder / "broken.jpg").write_bytes(b"garbage" * 20)
    annotation = (folder / "rocket.xml").read_bytes()
    out = tmp_path / "window.png"

    done = run_gui(str(folder), "--model", "mobilenet-v3-320-fpn", "--weights", "none", "--device", "cpu",
                   "--screenshot", str(out))

    assert done.returncode == 0, done.stderr
    with Image.open(out) as picture:
        assert picture.format == "PNG" and picture.size == WINDOW_SIZE
    assert (folder / "rocket.xml").read_bytes() == annotation and not (folder / "broken.xml").exists()


def test_a_missing_path_exits_2_with_one_line(tmp_path):
    missing = tmp_path / "no-such-folder"
    done = run_gui(str(missing), "--screenshot", str(tmp_path / "out.png"), timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"error: {missing}: no such image or folder"]
    assert not (tmp_path / "out.png").exists()


def test_errors_screenshot_waits_for_the_errors_view_s_chain(tmp_path):
    """--errors: the picture is taken once a chain is drawn (the command fails when none ever is)."""
    out = tmp_path / "errors.png"
    done = run_gui(str(SAMPLES), "--errors", "--device", "cpu", "--screenshot", str(out), timeout=300)
    assert done.returncode == 0, done.stderr
    with Image.open(out) as picture:
        assert picture.format == "PNG" and picture.size == WINDOW_SIZE


def test_a_mask_count_below_one_is_refused_with_one_line(tmp_path):
    done = run_gui(str(SAMPLES), "--stage", "saliency", "--masks", "0", "--screenshot", str(tmp_path / "out.png"),
                   timeout=60)
    assert done.returncode == 2 and "argument --masks: '0' is not a whole number >= 1" in done.stderr
    assert not (tmp_path / "out.png").exists()
