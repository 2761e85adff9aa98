"""frcnn_gui/engine/error_pass.py, what the engine thread runs for the Errors view (called here
directly, on a random-weight model and tiny images): what is left out and why, the view's score
threshold, and one image's row made again from its file as saved."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from frcnn_core.data.voc import write_voc_xml
from frcnn_core.modeling.zoo import build_model
from frcnn_gui.engine.error_pass import analyse, updated
from frcnn_gui.engine.messages import ErrorsRequest, FolderImage

BOXES = [[4, 4, 30, 30], [34, 34, 60, 60]]
PIXELS = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("mobilenet-v3-320-fpn", "none", score_thresh=0.0)


@pytest.fixture(scope="module")
def label(model) -> str:
    """The class the random model detects most on the image: the dataset's one class, so that
    its detections count (those of classes the dataset lacks are left out)."""
    detections = model([torch.from_numpy(PIXELS).permute(2, 0, 1).float() / 255])[0]
    return model.class_names[int(detections["labels"][0])]


@pytest.fixture
def folder(tmp_path, label):
    """a.png with two boxes, b.png without annotation, c.png with a malformed file, d.png unreadable."""
    for name in ("a", "b", "c"):
        Image.fromarray(PIXELS).save(tmp_path / f"{name}.png")
    write_voc_xml(tmp_path / "a.xml", tmp_path / "a.png", 64, 64, BOXES, [label, label])
    (tmp_path / "c.xml").write_text("<annotation><object>", encoding="utf-8")
    (tmp_path / "d.png").write_bytes(b"not a picture")
    return tmp_path


def images(folder, *names: str) -> tuple[FolderImage, ...]:
    return tuple(FolderImage(str(folder / f"{name}.png"), str(folder / f"{name}.xml")) for name in names)


def request(label: str, folder, *names: str, update_of: int | None = None) -> ErrorsRequest:
    return ErrorsRequest(1, images(folder, *names), ("__background__", label), 0.3, "random", update_of)


def analysed(report) -> list[str]:
    return [row.image_path.rsplit("/", 1)[-1] for row in report.images]


def test_the_pass_analyses_the_annotated_images_and_lists_the_others_with_the_reason(model, folder, label):
    report = analyse(model, request(label, folder, "a", "b", "c", "d"), "cpu")
    assert analysed(report) == ["a.png"]
    row = report.images[0]
    assert len(row.hits) + len(row.false_negatives) == 2  # both GT boxes, found or not
    assert all(fp.score >= 0.3 for fp in row.false_positives) and report.score_thresh == 0.3
    assert model.config.roi_test.score_thresh == 0.0  # the engine's model reports every score again
    every_score = analyse(model, replace(request(label, folder, "a"), score_thresh=0.0), "cpu").images[0]
    assert any(fp.score < 0.3 for fp in every_score.false_positives)
    assert len(report.left_out) == 3
    malformed, unreadable, no_file = report.left_out  # the files that could not be read first
    assert no_file == f"{folder / 'b.png'}: no annotation file"
    assert malformed.startswith(f"{folder / 'c.xml'}: ") and unreadable.startswith(f"{folder / 'd.png'}: ")
    assert report.model == "random" and report.class_names == ["__background__", label]


def test_cancel_between_images_gives_no_report(model, folder, label):
    done = []
    assert analyse(model, request(label, folder, "a", "a", "a"), "cpu", progress=lambda *step: done.append(step),
                   cancelled=lambda: len(done) >= 1) is None
    assert done == [(1, 3)]


def test_an_update_makes_the_images_rows_again_from_their_files_as_saved(model, folder, label):
    report = analyse(model, request(label, folder, "a", "b"), "cpu")
    write_voc_xml(folder / "b.xml", folder / "b.png", 64, 64, BOXES[:1], [label])  # b gets its annotation
    report = updated(model, report, request(label, folder, "b", update_of=1), "cpu")
    assert analysed(report) == ["a.png", "b.png"] and report.left_out == []
    b_row = report.images[1]
    assert len(b_row.hits) + len(b_row.false_negatives) == 1

    (folder / "a.xml").unlink()  # a loses its own: left out, never all false positives
    report = updated(model, report, request(label, folder, "a", update_of=1), "cpu")
    assert analysed(report) == ["b.png"] and report.left_out == [f"{folder / 'a.png'}: no annotation file"]
    assert report.tide.counts["Miss"] == sum(fn.type == "Miss" for fn in b_row.false_negatives)
