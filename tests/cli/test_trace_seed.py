"""The seed walkthrough: an 800x800 image with 4 GT boxes through `frcnn trace --preset seed
--model paper-vgg16` gives the article's numbers at every stage."""
from __future__ import annotations

import json

import pytest
from PIL import Image

from frcnn_core.cli.main import main

from reference import SAMPLES

VOC_TEMPLATE = """<annotation><filename>walk.png</filename>
<size><width>800</width><height>800</height><depth>3</depth></size>{objects}</annotation>"""
OBJECT = ("<object><name>{name}</name>"
          "<bndbox><xmin>{0}</xmin><ymin>{1}</ymin><xmax>{2}</xmax><ymax>{3}</ymax></bndbox></object>")


def write_voc(path, boxes, name="person"):
    objects = "".join(OBJECT.format(*box, name=name) for box in boxes)
    path.write_text(VOC_TEMPLATE.format(objects=objects))


@pytest.mark.slow
def test_seed_walkthrough_numbers(tmp_path, capsys):
    image = tmp_path / "walk.png"
    Image.open(SAMPLES / "astronaut.png").convert("RGB").resize((800, 800)).save(image)
    annotation = tmp_path / "walk.xml"
    # four real objects of the astronaut photo, scaled to 800x800: face, flag, rocket, badge
    write_voc(annotation, [(250, 50, 460, 330), (0, 0, 230, 460), (650, 200, 780, 780), (500, 500, 700, 700)])
    out = tmp_path / "trace.json"
    code = main(["trace", str(image), "--model", "paper-vgg16", "--weights", "none", "--preset", "seed",
                 "--gt", str(annotation), "--json", str(out)])
    assert code == 0
    summary = json.loads(out.read_text())
    stages = summary["stages"]
    assert summary["input_size"] == [800, 800]
    assert summary["features"] == [[512, 50, 50]]
    assert stages["anchors"] == {"total": 22_500, "inside": 8_940}
    labels = stages["anchor_labels"]
    assert 1 <= labels["sampled_positive"] <= 128
    assert labels["sampled_positive"] + labels["sampled_negative"] == 256
    assert labels["positive"] + labels["negative"] + labels["ignored"] == 22_500
    assert stages["proposals"]["post_nms"] == 2_000
    assert stages["roi_samples"]["positive"] + stages["roi_samples"]["negative"] == 128
    assert stages["roi_samples"]["positive"] <= 64
    assert stages["roi_pool"]["output_shape"] == [128, 512, 7, 7]
    printed = capsys.readouterr().out
    assert "22,500 total, 8,940 inside" in printed
