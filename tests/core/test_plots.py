"""plots.py: PR-curve and confusion-matrix PNGs are complete files, written atomically."""
from __future__ import annotations

import numpy as np
from PIL import Image

from frcnn_core.analysis.evaluate import PrCurve
from frcnn_core.render import plots


def assert_png(path) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) > 100
        image.load()  # a cut file fails here
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_pr_curve_filename_keeps_labels_apart():
    assert plots.pr_curve_filename(3, "traffic light") == "pr_03_traffic_light.png"
    assert plots.pr_curve_filename(12, "N/A") != plots.pr_curve_filename(26, "N/A")
    assert "/" not in plots.pr_curve_filename(1, "../x")


def test_save_pr_curves_one_png_per_class(tmp_path):
    curves = {1: PrCurve(np.array([1.0, 0.5, 2 / 3]), np.array([0.5, 0.5, 1.0]), np.array([1.0] * 6 + [2 / 3] * 5)),
              3: PrCurve(np.zeros(0), np.zeros(0), np.zeros(11))}  # a class with no detections still plots
    written = plots.save_pr_curves(curves, ["__background__", "cat", "dog", "bird"], tmp_path)
    assert [p.name for p in written] == ["pr_01_cat.png", "pr_03_bird.png"]
    for path in written:
        assert_png(path)


def test_save_confusion_matrix(tmp_path):
    matrix = np.zeros((91, 91), dtype=np.int64)
    matrix[0, 17], matrix[17, 17], matrix[1, 0], matrix[1, 17] = 3, 5, 2, 1
    names = ["__background__"] + [f"class_{i}" for i in range(1, 91)]
    path = plots.save_confusion_matrix(matrix, names, tmp_path / "sub" / "confusion.png")
    assert_png(path)
    with Image.open(path) as image:  # three classes shown (background, 1, 17), not 91
        assert max(image.size) < 800


def test_save_confusion_matrix_all_zero(tmp_path):
    assert_png(plots.save_confusion_matrix(np.zeros((3, 3), dtype=np.int64), ["__background__", "a", "b"],
                                           tmp_path / "empty.png"))
