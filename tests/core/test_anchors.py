"""Tests for frcnn_core.modeling.anchors: base shapes, torchvision equality, the seed convention, order."""
from __future__ import annotations

import math

import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList

from frcnn_core.modeling.anchors import base_anchors, inside_mask, make_anchors
from frcnn_core.modeling.config import AnchorConfig

SEED_ANCHORS = AnchorConfig(
    sizes=((128, 256, 512),), aspect_ratios=((0.5, 1, 2),), center_offset=0.5, round_base=False
)


def test_base_anchors_hand_case_rounded_like_torchvision():
    # size 32, ratio r = h / w: w = 32 / sqrt(r), h = 32 * sqrt(r)
    #   r = 0.5: 45.25 x 22.63 -> half 22.63, 11.31 -> rounded 23, 11
    #   r = 1:   32 x 32       -> half 16, 16
    #   r = 2:   22.63 x 45.25 -> half 11.31, 22.63 -> rounded 11, 23
    expected = torch.tensor([[-23.0, -11.0, 23.0, 11.0], [-16.0, -16.0, 16.0, 16.0], [-11.0, -23.0, 11.0, 23.0]])

    shapes = base_anchors((32,), (0.5, 1.0, 2.0), round_corners=True)

    assert torch.equal(shapes, expected)
    assert torch.equal(shapes, AnchorGenerator().generate_anchors([32], [0.5, 1.0, 2.0]))


def test_base_anchors_unrounded_keep_area_and_ratio():
    shapes = base_anchors((128, 256), (0.5, 2.0), round_corners=False)
    widths = shapes[:, 2] - shapes[:, 0]
    heights = shapes[:, 3] - shapes[:, 1]

    # aspect-ratio-major, then size: (0.5, 128), (0.5, 256), (2, 128), (2, 256)
    torch.testing.assert_close(widths * heights, torch.tensor([128.0, 256.0, 128.0, 256.0]) ** 2)
    torch.testing.assert_close(heights / widths, torch.tensor([0.5, 0.5, 2.0, 2.0]))
    torch.testing.assert_close(shapes[:, :2], -shapes[:, 2:])


def test_make_anchors_equals_torchvision_on_a_three_level_fpn():
    sizes = ((32,), (64,), (128,))
    ratios = ((0.5, 1.0, 2.0),) * 3
    padded = torch.zeros(2, 3, 64, 96)
    images = ImageList(padded, [(64, 96), (60, 90)])
    features = [torch.zeros(2, 4, 16, 24), torch.zeros(2, 4, 8, 12), torch.zeros(2, 4, 4, 6)]

    expected = AnchorGenerator(sizes, ratios)(images, features)
    anchors = make_anchors(AnchorConfig(sizes=sizes, aspect_ratios=ratios), [(16, 24), (8, 12), (4, 6)], (64, 96))

    assert torch.equal(anchors.boxes, expected[0])
    assert torch.equal(anchors.boxes, expected[1])
    assert anchors.strides == [(4, 4), (8, 8), (16, 16)]
    assert anchors.num_per_level == [16 * 24 * 3, 8 * 12 * 3, 4 * 6 * 3]
    assert anchors.level.tolist() == [0] * 1152 + [1] * 288 + [2] * 72


def test_make_anchors_equals_torchvision_with_nine_shapes_per_cell():
    sizes = ((128, 256, 512),)
    ratios = ((0.5, 1.0, 2.0),)
    images = ImageList(torch.zeros(1, 3, 100, 160), [(100, 160)])
    features = [torch.zeros(1, 4, 7, 10)]  # strides 100 // 7 = 14 and 160 // 10 = 16

    expected = AnchorGenerator(sizes, ratios)(images, features)
    anchors = make_anchors(AnchorConfig(sizes=sizes, aspect_ratios=ratios), [(7, 10)], (100, 160))

    assert torch.equal(anchors.boxes, expected[0])
    assert anchors.strides == [(14, 16)]


def test_seed_convention_gives_the_walkthrough_numbers():
    anchors = make_anchors(SEED_ANCHORS, [(50, 50)], (800, 800))
    inside = inside_mask(anchors.boxes, (800, 800))

    # 50 x 50 cells x 9 shapes; the walkthrough counts 8,940 fully inside the 800 x 800 image
    assert anchors.boxes.shape == (22_500, 4)
    assert int(inside.sum()) == 8_940
    assert anchors.strides == [(16, 16)]

    centres = (anchors.boxes[:, :2] + anchors.boxes[:, 2:]) / 2
    torch.testing.assert_close(centres[0], torch.tensor([8.0, 8.0]))
    # the last cell is centred on (792, 792)
    torch.testing.assert_close(centres[-1], torch.tensor([792.0, 792.0]))

    # anchor 0: ratio 0.5, size 128 = 16 * 8 -> exact width 128 / sqrt(0.5) = 181.019..,
    # height 128 * sqrt(0.5) = 90.509..; corners 8 -/+ 90.5097 and 8 -/+ 45.2548
    first = anchors.boxes[0]
    torch.testing.assert_close(first[2] - first[0], torch.tensor(128 * math.sqrt(2)))
    torch.testing.assert_close(first[3] - first[1], torch.tensor(128 / math.sqrt(2)))
    torch.testing.assert_close(first, torch.tensor([-82.5097, -37.2548, 98.5097, 53.2548]), rtol=0, atol=1e-4)
    # anchor 4: ratio 1, size 256, a 256 x 256 square around (8, 8), not rounded
    torch.testing.assert_close(anchors.boxes[4], torch.tensor([-120.0, -120.0, 136.0, 136.0]))


def test_order_is_level_row_column_shape_on_a_tiny_grid():
    # level 0: a 2 x 3 grid over a 4 x 6 input (stride 2) with two shapes per cell;
    # level 1: one cell (stride 4 x 6) with one shape
    config = AnchorConfig(sizes=((2,), (4,)), aspect_ratios=((1.0, 4.0), (1.0,)), center_offset=0.0, round_base=False)
    # ratio 1, size 2: 2 x 2; ratio 4, size 2: w = 2 / 2 = 1, h = 2 * 2 = 4
    level0_shapes = torch.tensor([[-1.0, -1.0, 1.0, 1.0], [-0.5, -2.0, 0.5, 2.0]])

    anchors = make_anchors(config, [(2, 3), (1, 1)], (4, 6))

    assert anchors.boxes.shape == (2 * 3 * 2 + 1, 4)
    for row in range(2):
        for col in range(3):
            for shape in range(2):
                index = (row * 3 + col) * 2 + shape
                centre = torch.tensor([col * 2.0, row * 2.0, col * 2.0, row * 2.0])
                assert torch.equal(anchors.boxes[index], centre + level0_shapes[shape]), index
    # the level-1 anchor comes last: a 4 x 4 square at (0, 0)
    assert torch.equal(anchors.boxes[12], torch.tensor([-2.0, -2.0, 2.0, 2.0]))
    assert anchors.level.tolist() == [0] * 12 + [1]


def test_inside_mask_includes_the_edges():
    anchors = torch.tensor(
        [
            [0.0, 0.0, 100.0, 50.0],  # exactly the image: inside
            [-0.1, 0.0, 10.0, 10.0],  # left of the image
            [0.0, 0.0, 100.1, 10.0],  # past the right edge
            [0.0, 0.0, 10.0, 50.1],  # past the bottom edge
            [0.0, -1.0, 10.0, 10.0],  # above the image
        ]
    )

    assert inside_mask(anchors, (50, 100)).tolist() == [True, False, False, False, False]
