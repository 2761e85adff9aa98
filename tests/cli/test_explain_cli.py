"""`frcnn explain`: the picture and the JSON of a map, the deletion test printed, and one line for
every target that is not there (issue 15, point 3)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from frcnn_core.cli.main import main
from frcnn_core.resources import SAMPLES

IMAGE = SAMPLES / "BloodImage_00014.jpg"


def explain(tmp_path, *arguments: str) -> tuple[int, dict | None]:
    out, record = tmp_path / "heat.png", tmp_path / "heat.json"
    code = main(["explain", str(IMAGE), "--model", "bccd-demo", "--out", str(out), "--json", str(record),
                 *arguments])
    return code, json.loads(record.read_text()) if record.exists() else None


def test_a_detection_explained_by_hirescam_writes_the_map_and_the_deletion_test(tmp_path, capsys):
    code, record = explain(tmp_path, "--detection", "0", "--method", "hirescam")
    assert code == 0
    printed = capsys.readouterr().out
    assert "HiResCAM" in printed and "deleting the 10% most salient pixels" in printed
    assert record["kind"] == "detection" and record["label_name"] in ("RBC", "WBC", "Platelets")
    deletion = record["deletion"]
    assert deletion["score"] == pytest.approx(record["score"], abs=1e-3)
    assert deletion["salient_drop"] > 2 * deletion["random_drop"]  # the best detection's map is on its cell
    picture = Image.open(tmp_path / "heat.png")
    photo = Image.open(IMAGE)
    assert picture.width == photo.width and picture.height > photo.height  # the photo under a caption band
    # the heat is drawn: the picture's photo part differs from the photo inside the explained box
    x1, y1, x2, y2 = (round(v) for v in record["box"])
    band = picture.height - photo.height
    drawn = np.asarray(picture.convert("RGB"))[band + y1 + 8: band + y2 - 8, x1 + 8: x2 - 8].astype(int)
    original = np.asarray(photo.convert("RGB"))[y1 + 8: y2 - 8, x1 + 8: x2 - 8].astype(int)
    assert np.abs(drawn - original).mean() > 5


def test_a_users_box_with_drise_names_its_class_and_counts_the_masks(tmp_path, capsys):
    code, record = explain(tmp_path, "--box", "60,40,200,160", "--label", "RBC", "--masks", "16", "--seed", "3")
    assert code == 0
    assert record["label_name"] == "RBC" and record["method"] == "drise" and record["masks"] == 16
    assert "16 masks" in capsys.readouterr().out


@pytest.mark.parametrize(("arguments", "words"), [
    (["--detection", "500"], "there is no detection 500"),
    (["--proposal", "100000"], "there is no proposal 100000"),
    (["--box", "10,10,10,50"], "is empty"),
    (["--box=-20,0,50,50"], "is not inside the 640x480 image"),  # a leading minus needs the = form
    (["--box", "10,10,50,50", "--label", "cat"], "--label 'cat' is not one of the model's classes"),
    (["--detection", "0", "--label", "RBC"], "--label goes with --box"),
])
def test_a_target_that_is_not_there_is_one_line_naming_the_image(tmp_path, capsys, arguments, words):
    code, record = explain(tmp_path, *arguments)
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and record is None and not (tmp_path / "heat.png").exists()
    assert error == [f"error: {IMAGE}: {error[0].split(': ', 2)[2]}"] and words in error[0]


def test_a_box_that_is_not_four_numbers_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        explain(tmp_path, "--box", "1,2,3")
    assert exited.value.code == 2 and "is not X1,Y1,X2,Y2" in capsys.readouterr().err
