"""Tests for frcnn_core.modeling.boxes: box coding round trip, torchvision equality, clipping, filtering."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import clip_boxes_to_image

from frcnn_core.modeling.boxes import BBOX_XFORM_CLIP, clip, decode, encode, scale_boxes, small_box_mask

RPN_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
ROI_WEIGHTS = (10.0, 10.0, 5.0, 5.0)


def _boxes(rows: list[tuple[float, float, float, float]]) -> torch.Tensor:
    """(x, y, w, h) rows -> (N, 4) float32 corner boxes."""
    xywh = torch.tensor(rows, dtype=torch.float32)
    return torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1)


def _random_boxes(count: int, generator: torch.Generator, extent: float = 200.0) -> torch.Tensor:
    corner = torch.rand(count, 2, generator=generator) * extent
    size = torch.rand(count, 2, generator=generator) * extent + 1.0
    return torch.cat([corner, corner + size], dim=1)


# Anchor sides in [10, 600] and GT sides in [1, 600] keep every width ratio below
# exp(BBOX_XFORM_CLIP) = 62.5, so that decode's clamp never bites and the round trip is exact.
_coordinate = st.floats(min_value=-300, max_value=900, allow_nan=False, width=32)
_gt_side = st.floats(min_value=1, max_value=600, width=32)
_anchor_side = st.floats(min_value=10, max_value=600, width=32)
_pairs = st.lists(
    st.tuples(_coordinate, _coordinate, _gt_side, _gt_side, _coordinate, _coordinate, _anchor_side, _anchor_side),
    min_size=1,
    max_size=8,
)


@pytest.mark.parametrize("weights", [RPN_WEIGHTS, ROI_WEIGHTS])
@settings(max_examples=50, deadline=None)
@given(pairs=_pairs)
def test_decode_inverts_encode(weights, pairs):
    gt_boxes = _boxes([p[:4] for p in pairs])
    anchors = _boxes([p[4:] for p in pairs])

    decoded = decode(encode(gt_boxes, anchors, weights), anchors, weights)

    assert decoded.shape == (len(pairs), 1, 4)
    torch.testing.assert_close(decoded[:, 0], gt_boxes, rtol=1e-5, atol=1e-3)


def test_encode_hand_case():
    # anchor: centre (5, 10), size 10 x 20; gt: centre (12, 14), size 20 x 20
    anchors = torch.tensor([[0.0, 0.0, 10.0, 20.0]])
    gt_boxes = torch.tensor([[2.0, 4.0, 22.0, 24.0]])
    # tx = 7 / 10, ty = 4 / 20, tw = log(20 / 10), th = log(20 / 20)
    expected_rpn = torch.tensor([[0.7, 0.2, math.log(2.0), 0.0]])
    # the same, times (10, 10, 5, 5)
    expected_roi = torch.tensor([[7.0, 2.0, 5 * math.log(2.0), 0.0]])

    torch.testing.assert_close(encode(gt_boxes, anchors, RPN_WEIGHTS), expected_rpn)
    torch.testing.assert_close(encode(gt_boxes, anchors, ROI_WEIGHTS), expected_roi)


def test_encode_of_a_box_onto_itself_is_zero():
    boxes = _random_boxes(10, torch.Generator().manual_seed(0))

    assert torch.equal(encode(boxes, boxes, ROI_WEIGHTS), torch.zeros(10, 4))


@pytest.mark.parametrize("weights", [RPN_WEIGHTS, ROI_WEIGHTS])
@pytest.mark.parametrize("codes_per_box", [1, 3])
def test_decode_equals_torchvision_box_coder_bit_for_bit(weights, codes_per_box):
    generator = torch.Generator().manual_seed(1)
    boxes = _random_boxes(40, generator)
    # scaled so that some tw / th reach past the clamp
    deltas = torch.randn(40, 4 * codes_per_box, generator=generator) * 3 * weights[2]

    expected = BoxCoder(weights).decode(deltas, [boxes])

    assert torch.equal(decode(deltas, boxes, weights), expected)


@pytest.mark.parametrize("weights", [RPN_WEIGHTS, ROI_WEIGHTS])
def test_decode_clamps_huge_log_scales(weights):
    # a 16-px anchor centred on (8, 8); tw = th = 100 (after the weights) would overflow exp()
    anchors = torch.tensor([[0.0, 0.0, 16.0, 16.0]])
    deltas = torch.tensor([[0.0, 0.0, 100.0 * weights[2], 1e4 * weights[3]]])

    decoded = decode(deltas, anchors, weights)[0, 0]

    # clamped at log(1000 / 16): the box grows to 16 * 62.5 = 1000 px, centred on (8, 8)
    assert BBOX_XFORM_CLIP == pytest.approx(math.log(62.5))
    torch.testing.assert_close(decoded, torch.tensor([-492.0, -492.0, 508.0, 508.0]), rtol=1e-5, atol=1e-3)


def test_decode_of_zero_deltas_gives_the_boxes_back():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [4.0, 6.0, 20.0, 30.0]])

    assert torch.equal(decode(torch.zeros(2, 8), boxes, ROI_WEIGHTS), boxes[:, None].expand(2, 2, 4))


def test_decode_under_bfloat16_autocast_gives_the_float32_boxes_of_the_float32_path():
    """Under AMP the heads hand over low-precision deltas; the boxes still decode in float32 (a
    bfloat16 corner near 800 px would be off by up to 2 px)."""
    generator = torch.Generator().manual_seed(5)
    anchors = _random_boxes(64, generator, extent=800.0)
    deltas = (torch.randn(64, 8, generator=generator) * 0.5).to(torch.bfloat16)

    with torch.autocast("cpu", dtype=torch.bfloat16):
        amp = decode(deltas, anchors, ROI_WEIGHTS)

    assert amp.dtype == torch.float32
    assert torch.equal(amp, decode(deltas.float(), anchors, ROI_WEIGHTS))


@pytest.mark.parametrize("shape", [(30, 4), (10, 3, 4)])
def test_clip_equals_torchvision(shape):
    boxes = torch.rand(shape, generator=torch.Generator().manual_seed(2)) * 200 - 50

    assert torch.equal(clip(boxes, (80, 120)), clip_boxes_to_image(boxes, (80, 120)))


def test_clip_hand_case():
    # image of height 50, width 100: x in [0, 100], y in [0, 50]
    boxes = torch.tensor([[-5.0, -5.0, 120.0, 60.0], [10.0, 20.0, 30.0, 40.0]])

    assert torch.equal(clip(boxes, (50, 100)), torch.tensor([[0.0, 0.0, 100.0, 50.0], [10.0, 20.0, 30.0, 40.0]]))


def test_small_box_mask_hand_case():
    boxes = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],  # 10 x 10: kept
            [0.0, 0.0, 0.5, 10.0],  # 0.5 wide: dropped
            [0.0, 0.0, 10.0, 0.5],  # 0.5 high: dropped
            [3.0, 3.0, 4.0, 4.0],  # exactly 1 x 1: kept, the bound is inclusive
        ]
    )

    assert small_box_mask(boxes, 1.0).tolist() == [True, False, False, True]


def test_scale_boxes_hand_case():
    # from (h, w) = (100, 200) to (50, 400): y halves, x doubles
    boxes = torch.tensor([[10.0, 20.0, 30.0, 40.0]])

    assert torch.equal(scale_boxes(boxes, (100, 200), (50, 400)), torch.tensor([[20.0, 10.0, 60.0, 20.0]]))


def test_scale_boxes_there_and_back():
    boxes = _random_boxes(20, torch.Generator().manual_seed(3))

    round_trip = scale_boxes(scale_boxes(boxes, (480, 640), (800, 1066)), (800, 1066), (480, 640))

    torch.testing.assert_close(round_trip, boxes)
