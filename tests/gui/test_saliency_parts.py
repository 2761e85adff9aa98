"""Hand-checkable cases of the saliency stage's parts: the box a click picks, the map's colours and
opacity over the photo, and the deletion test in words."""
from __future__ import annotations

import numpy as np
import torch
from PySide6.QtGui import QColor

from frcnn_core.inspect.saliency import DeletionTest
from frcnn_gui.inspector.pictures import SALIENCY_ALPHA, saliency_image
from frcnn_gui.inspector.saliency_view import smallest_box_at
from frcnn_gui.inspector.texts import deletion_words


def test_a_click_picks_the_smallest_box_containing_it():
    boxes = torch.tensor([[0.0, 0.0, 100.0, 100.0], [40.0, 40.0, 60.0, 60.0], [50.0, 50.0, 90.0, 90.0]])
    assert smallest_box_at(boxes, 45, 45) == 1  # inside the big one too
    assert smallest_box_at(boxes, 55, 55) == 1  # 20 x 20 inside 40 x 40
    assert smallest_box_at(boxes, 80, 80) == 2
    assert smallest_box_at(boxes, 10, 10) == 0
    assert smallest_box_at(boxes, 100, 100) == 0  # the edge counts
    assert smallest_box_at(boxes, 101, 50) is None
    assert smallest_box_at(torch.zeros(0, 4), 1, 1) is None


def test_the_map_is_its_positive_part_scaled_to_its_highest_dark_red_to_yellow_and_as_opaque_as_high():
    heatmap = np.array([[-2.0, 0.0], [0.5, 2.0]], dtype=np.float32)
    image = saliency_image(heatmap)
    assert (image.width(), image.height()) == (2, 2)
    colour = [[QColor.fromRgba(image.pixel(x, y)) for x in range(2)] for y in range(2)]
    assert colour[0][0].alpha() == 0 and colour[0][1].alpha() == 0  # negative and zero: the photo as it is
    assert colour[1][1].getRgb() == (255, 255, 0, SALIENCY_ALPHA)  # the highest: yellow
    quarter = colour[1][0]  # 0.5 / 2 = 0.25 of the way to yellow's 2/3 of the ramp: half red, a quarter as opaque
    assert quarter.getRgb() == (127, 0, 0, int(0.25 * SALIENCY_ALPHA))
    assert saliency_image(np.array([[-1.0, 0.0]], dtype=np.float32)) is None  # nothing positive: nothing drawn


def test_the_deletion_test_in_words_says_whether_the_map_beats_random_pixels():
    faithful = deletion_words(DeletionTest(score=0.99, salient=0.03, random=0.97, share=0.1), "score")
    assert faithful == ("Deleting the 10% most salient pixels: score 0.99 → 0.03; a random 10%: 0.97. The map points"
                        " at pixels the score needs.")
    unfaithful = deletion_words(DeletionTest(score=0.8, salient=0.75, random=0.6, share=0.1), "objectness")
    assert unfaithful.startswith("Deleting the 10% most salient pixels: objectness 0.80 → 0.75; a random 10%: 0.60.")
    assert unfaithful.endswith("Its pixels matter no more than random ones: the map is not faithful here.")
