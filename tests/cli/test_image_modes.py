"""Grayscale, RGBA, palette, 16-bit and EXIF-rotated images all go through `frcnn detect`, and
boxes come back in the image's displayed orientation."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from frcnn_core.cli.main import main

from reference import PHOTO

FAST = ["--model", "mobilenet-v3-320-fpn", "--weights", "none", "--score-thresh", "0"]


def detect(path, tmp_path) -> dict:
    out = tmp_path / f"{path.stem}.json"
    assert main(["detect", str(path), *FAST, "--json", str(out)]) == 0
    return json.loads(out.read_text())["images"][0]


@pytest.fixture(scope="module")
def photo():
    return Image.open(PHOTO).convert("RGB").resize((240, 160))


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16"])
def test_modes_give_detections_inside_the_image(mode, photo, tmp_path):
    if mode == "I;16":
        gray = np.asarray(photo.convert("L"), dtype=np.uint16) * 257
        image = Image.frombytes("I;16", (gray.shape[1], gray.shape[0]), gray.astype("<u2").tobytes())
    else:
        image = photo.convert(mode)
    path = tmp_path / f"image-{mode.replace(';', '')}.png"
    image.save(path)
    entry = detect(path, tmp_path)
    assert (entry["width"], entry["height"]) == (240, 160)
    boxes = torch.tensor([d["box"] for d in entry["detections"]])
    assert len(boxes) > 0
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 240).all() and (boxes[:, 3] <= 160).all()


def test_exif_rotated_equals_physically_rotated(photo, tmp_path):
    stored = photo.transpose(Image.Transpose.ROTATE_90)  # sideways on disk, as a camera writes it
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    rotated_path = tmp_path / "exif.png"
    stored.save(rotated_path, exif=exif)
    upright_path = tmp_path / "upright.png"
    stored.transpose(Image.Transpose.ROTATE_270).save(upright_path)

    rotated, upright = detect(rotated_path, tmp_path), detect(upright_path, tmp_path)
    assert (rotated["width"], rotated["height"]) == (upright["width"], upright["height"]) == (240, 160)
    assert [d["box"] for d in rotated["detections"]] == [d["box"] for d in upright["detections"]]
