"""`frcnn diagnose` on a tiny VOC folder of BCCD val images, and `frcnn trace --gt`'s funnel."""
from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
from PIL import Image

from frcnn_core.cli.main import main
from frcnn_core.inspect.describe import FOUND, LOST_AT_WORDS, outcome_words
from frcnn_core.inspect.funnel import OUTCOMES
from frcnn_core.resources import SAMPLES
from frcnn_core.vocabulary import FUNNEL_STAGES as STAGES

IMAGE_IDS = ("BloodImage_00002", "BloodImage_00014", "BloodImage_00028")  # val images, bundled as samples


def count_objects(xml: Path) -> int:
    return len(ElementTree.parse(xml).getroot().findall("object"))


def tiny_voc(root: Path) -> int:
    """A VOC folder of the three sample images with their XML; returns the number of GT boxes."""
    for folder in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (root / folder).mkdir(parents=True)
    for image_id in IMAGE_IDS:
        shutil.copyfile(SAMPLES / f"{image_id}.jpg", root / "JPEGImages" / f"{image_id}.jpg")
        shutil.copyfile(SAMPLES / f"{image_id}.xml", root / "Annotations" / f"{image_id}.xml")
    (root / "ImageSets" / "Main" / "val.txt").write_text("\n".join(IMAGE_IDS) + "\n")
    return sum(count_objects(root / "Annotations" / f"{image_id}.xml") for image_id in IMAGE_IDS)


def test_diagnose_writes_the_documented_record(tmp_path, capsys):
    gt_boxes = tiny_voc(tmp_path / "voc")
    out = tmp_path / "diagnose.json"
    code = main(["diagnose", "--data", str(tmp_path / "voc"), "--model", "bccd-demo", "--json", str(out),
                 "--out", str(tmp_path / "pictures")])
    assert code == 0
    record = json.loads(out.read_text())
    for key in ("images", "gt_boxes", "lost_at", "by_class", "by_size", "anchor_coverage",
                "suggested_anchor_sizes", "suggested_aspect_ratios", "missed", "stages"):
        assert key in record, key
    assert record["stages"] == list(STAGES)
    assert record["images"] == 3 and record["gt_boxes"] == gt_boxes
    assert list(record["lost_at"]) == list(OUTCOMES) and sum(record["lost_at"].values()) == gt_boxes
    assert record["lost_at"]["detected"] >= 0.8 * gt_boxes
    assert set(record["by_class"]) == {"RBC", "WBC", "Platelets"}
    assert sum(sum(counts.values()) for counts in record["by_class"].values()) == gt_boxes
    assert sum(sum(counts.values()) for counts in record["by_size"].values()) == gt_boxes
    assert sum(record["anchor_coverage"].values()) == pytest.approx(1.0)
    assert len(record["missed"]) == gt_boxes - record["lost_at"]["detected"]
    assert json.loads((tmp_path / "pictures" / "diagnose.json").read_text()) == record
    with Image.open(tmp_path / "pictures" / "anchor_iou_histogram.png") as picture:
        assert picture.width >= 400
    screen = capsys.readouterr().out
    assert "anchor coverage" in screen and "suggested" in screen
    header = screen.splitlines()[1].split()  # the outcomes in the words of the GUI's funnel and stages
    assert " ".join(header) == " ".join([*LOST_AT_WORDS.values(), FOUND])


def test_trace_with_gt_has_one_funnel_row_per_box(tmp_path, capsys):
    xml = SAMPLES / "BloodImage_00014.xml"
    out = tmp_path / "trace.json"
    code = main(["trace", str(SAMPLES / "BloodImage_00014.jpg"), "--gt", str(xml), "--model", "bccd-demo",
                 "--json", str(out)])
    assert code == 0
    funnel = json.loads(out.read_text())["funnel"]
    assert [row["gt_index"] for row in funnel] == list(range(count_objects(xml)))
    assert all(row["detected"] == (row["lost_at"] is None) for row in funnel)
    screen = capsys.readouterr().out
    assert "recall funnel" in screen
    table = screen[screen.index("recall funnel"):].splitlines()[2:]
    assert [line.split(maxsplit=2)[:2] for line in table] == [[str(row["gt_index"]), row["label"]] for row in funnel]
    assert all(line.endswith("  " + outcome_words(row["lost_at"])) for line, row in zip(table, funnel, strict=True))


def test_trace_without_gt_has_no_funnel(tmp_path):
    out = tmp_path / "trace.json"
    assert main(["trace", str(SAMPLES / "BloodImage_00014.jpg"), "--model", "bccd-demo", "--json", str(out)]) == 0
    assert "funnel" not in json.loads(out.read_text())


def test_diagnose_on_a_missing_dataset_is_one_line_and_status_2(tmp_path, capsys):
    code = main(["diagnose", "--data", str(tmp_path / "nowhere"), "--model", "bccd-demo"])
    assert code == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
