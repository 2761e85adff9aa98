"""Box coding, clipping and small-box removal.

Boxes are (x1, y1, x2, y2) float32 everywhere. Shapes: N boxes, K codes per box.

Box coding follows the paper (and torchvision's `BoxCoder`, operation for operation, so that the
same weights give the same floats):
    tx = wx * (gx - ax) / aw,   ty = wy * (gy - ay) / ah,
    tw = ww * log(gw / aw),     th = wh * log(gh / ah)
with (x, y) box centres and (w, h) widths and heights. Invariant:
    decode(encode(gt, anchors), anchors) == gt   (up to float rounding)
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

# Largest log-scale a decoded box may grow by: exp(4.135) = 62.5, i.e. 1000 px from a 16-px anchor.
BBOX_XFORM_CLIP = math.log(1000.0 / 16)


def encode(gt_boxes: Tensor, anchors: Tensor, weights: tuple[float, float, float, float]) -> Tensor:
    """Regression targets that move `anchors` onto `gt_boxes`.

    gt_boxes, anchors: (N, 4) float. Returns (N, 4) float deltas (tx, ty, tw, th).
    """
    wx, wy, ww, wh = weights
    anchor_w = anchors[:, 2] - anchors[:, 0]
    anchor_h = anchors[:, 3] - anchors[:, 1]
    anchor_cx = anchors[:, 0] + 0.5 * anchor_w
    anchor_cy = anchors[:, 1] + 0.5 * anchor_h
    gt_w = gt_boxes[:, 2] - gt_boxes[:, 0]
    gt_h = gt_boxes[:, 3] - gt_boxes[:, 1]
    gt_cx = gt_boxes[:, 0] + 0.5 * gt_w
    gt_cy = gt_boxes[:, 1] + 0.5 * gt_h
    return torch.stack(
        (
            wx * (gt_cx - anchor_cx) / anchor_w,
            wy * (gt_cy - anchor_cy) / anchor_h,
            ww * torch.log(gt_w / anchor_w),
            wh * torch.log(gt_h / anchor_h),
        ),
        dim=1,
    )


def decode(deltas: Tensor, boxes: Tensor, weights: tuple[float, float, float, float]) -> Tensor:
    """Apply deltas to boxes.

    deltas: (N, 4*K) float, K sets of (tx, ty, tw, th) per box (K = number of classes in the
    second stage, 1 in the RPN). boxes: (N, 4). Returns (N, K, 4) boxes; tw, th are clamped at
    `BBOX_XFORM_CLIP` so that no box explodes. Decodes in float32, also under AMP, where the
    heads hand over float16 / bfloat16 deltas: in bfloat16 a corner near 800 px would be off by
    up to 2 px.
    """
    deltas, boxes = deltas.float(), boxes.float()
    wx, wy, ww, wh = weights
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    ctr_x = boxes[:, 0] + 0.5 * widths
    ctr_y = boxes[:, 1] + 0.5 * heights

    dx = deltas[:, 0::4] / wx
    dy = deltas[:, 1::4] / wy
    dw = torch.clamp(deltas[:, 2::4] / ww, max=BBOX_XFORM_CLIP)
    dh = torch.clamp(deltas[:, 3::4] / wh, max=BBOX_XFORM_CLIP)

    pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]
    pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]
    half_w = 0.5 * (torch.exp(dw) * widths[:, None])
    half_h = 0.5 * (torch.exp(dh) * heights[:, None])
    # (N, K) x 4 -> (N, K, 4)
    return torch.stack((pred_ctr_x - half_w, pred_ctr_y - half_h, pred_ctr_x + half_w, pred_ctr_y + half_h), dim=2)


def clip(boxes: Tensor, image_size: tuple[int, int]) -> Tensor:
    """Clip boxes (..., 4) to an image of (height, width)."""
    height, width = image_size
    x = boxes[..., 0::2].clamp(min=0, max=width)
    y = boxes[..., 1::2].clamp(min=0, max=height)
    return torch.stack((x, y), dim=-1).reshape(boxes.shape)


def small_box_mask(boxes: Tensor, min_size: float) -> Tensor:
    """(N,) bool: True where both sides are at least `min_size`."""
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    return (widths >= min_size) & (heights >= min_size)


def scale_boxes(boxes: Tensor, from_size: tuple[int, int], to_size: tuple[int, int]) -> Tensor:
    """Rescale (N, 4) boxes from an image of `from_size` (h, w) to one of `to_size` (h, w)."""
    ratio_h = torch.tensor(to_size[0], dtype=torch.float32) / torch.tensor(from_size[0], dtype=torch.float32)
    ratio_w = torch.tensor(to_size[1], dtype=torch.float32) / torch.tensor(from_size[1], dtype=torch.float32)
    x1, y1, x2, y2 = boxes.unbind(1)
    return torch.stack((x1 * ratio_w, y1 * ratio_h, x2 * ratio_w, y2 * ratio_h), dim=1)
