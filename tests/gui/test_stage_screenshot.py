"""`frcnn-gui IMAGE --stage STAGE --screenshot OUT` (for the saliency stage with a click and a mask
count) draws what it claims: in the written PNG, the canvas region shows the photo, and the
stage's overlay on it (the same region rendered with the stage's layers hidden differs), and
nothing else of the window changes. `screenshot_probe.py` runs the command in a subprocess and
notes where the canvas lies when the picture is taken."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from frcnn_core.resources import SAMPLES
from frcnn_gui.app import SCREENSHOT_SIZE

IMAGE = "BloodImage_00014"  # 640 x 480 with 19 GT boxes
PROBE = Path(__file__).with_name("screenshot_probe.py")
MIN_STAGE_SHARE = 0.003  # of the canvas's pixels; measured: proposals 17%, anchor labels 20%, the funnel's chain 1%
MIN_MAP_SHARE = 0.1  # the saliency stage: its map, not only its boxes (measured: 41% after 16 masks on the WBC)


@pytest.mark.parametrize("stage, clicked", [("proposals", []), ("anchor-labels", []), ("funnel", []),
                                            ("saliency", ["--click", "307,282", "--masks", "16"])])  # the WBC
def test_a_stage_screenshot_shows_the_photo_and_the_stage_drawn_over_it(tmp_path, stage, clicked):
    out, probe = tmp_path / f"{stage}.png", tmp_path / "probe.npz"

    command = [sys.executable, str(PROBE), str(probe), str(SAMPLES / f"{IMAGE}.jpg"), "--model", "bccd-demo",
               "--device", "cpu", "--stage", stage, *clicked, "--screenshot", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})

    assert done.returncode == 0, done.stderr
    with Image.open(out) as picture:
        assert picture.size == SCREENSHOT_SIZE
        shot = np.asarray(picture.convert("RGB"))
    noted = np.load(probe)
    (x, y, width, height), bare = noted["canvas"], noted["bare"]
    assert width > 300 and height > 300  # the canvas has most of the window
    canvas, canvas_bare = shot[y : y + height, x : x + width], bare[y : y + height, x : x + width]
    photo_spread = float(canvas_bare.reshape(-1, 3).std(axis=0).mean())
    assert photo_spread > 20, f"the canvas is nearly one colour without the stage (spread {photo_spread:.1f})"
    stage_share = float(np.any(canvas != canvas_bare, axis=2).mean())
    minimum = MIN_MAP_SHARE if stage == "saliency" else MIN_STAGE_SHARE
    assert stage_share > minimum, f"the stage changes only {stage_share:.2%} of the canvas"
    outside = np.ones(shot.shape[:2], bool)
    outside[y : y + height, x : x + width] = False
    assert np.array_equal(shot[outside], bare[outside])  # the PNG is that window; only the canvas differs
