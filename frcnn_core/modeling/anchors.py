"""Anchors: base shapes per cell, shifted over each feature level's grid.

Shape glossary: L feature levels; level l has a grid (Hl, Wl), stride (sy, sx) in input pixels and
Al shapes per cell; A = sum over levels of Hl * Wl * Al anchors in all.

Order (shared with the RPN head's flattened outputs): level-major, then grid row, grid column,
then shape — `anchor index = level offset + (row * Wl + col) * Al + shape`. Shapes within a cell
are aspect-ratio-major, then size.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from frcnn_core.modeling.config import AnchorConfig


def base_anchors(sizes: tuple[float, ...], aspect_ratios: tuple[float, ...], round_corners: bool) -> Tensor:
    """The anchor shapes of one cell, centred on (0, 0).

    A shape of size s and ratio r (height / width) has width s / sqrt(r) and height s * sqrt(r),
    so its area is s**2. Returns (len(aspect_ratios) * len(sizes), 4) float32.
    """
    scales = torch.as_tensor(sizes, dtype=torch.float32)
    ratios = torch.as_tensor(aspect_ratios, dtype=torch.float32)
    h_ratios = torch.sqrt(ratios)
    w_ratios = 1 / h_ratios
    widths = (w_ratios[:, None] * scales[None, :]).view(-1)
    heights = (h_ratios[:, None] * scales[None, :]).view(-1)
    shapes = torch.stack([-widths, -heights, widths, heights], dim=1) / 2
    return shapes.round() if round_corners else shapes


def anchor_sides(config: AnchorConfig) -> list[Tensor]:
    """Per level, the (S, 2) float32 width and height of each anchor shape of a cell, as the model lays them out."""
    sides = []
    for sizes, ratios in zip(config.sizes, config.aspect_ratios, strict=True):
        shapes = base_anchors(sizes, ratios, config.round_base)
        sides.append(shapes[:, 2:] - shapes[:, :2])
    return sides


def grid_anchors(shapes: Tensor, grid_size: tuple[int, int], stride: tuple[int, int], center_offset: float) -> Tensor:
    """Shift a cell's shapes (S, 4) over a (H, W) grid. Returns (H * W * S, 4) float32."""
    grid_h, grid_w = grid_size
    stride_h, stride_w = stride
    shifts_x = torch.arange(0, grid_w, dtype=torch.int32) * stride_w
    shifts_y = torch.arange(0, grid_h, dtype=torch.int32) * stride_h
    shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")
    shift_x, shift_y = shift_x.reshape(-1), shift_y.reshape(-1)
    shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=1)
    if center_offset:
        offset = torch.tensor([stride_w, stride_h, stride_w, stride_h], dtype=torch.float32) * center_offset
        shifts = shifts + offset
    # (H*W, 1, 4) + (1, S, 4) -> (H*W*S, 4)
    return (shifts.view(-1, 1, 4) + shapes.view(1, -1, 4)).reshape(-1, 4)


@dataclass(frozen=True)
class LevelAnchors:
    """All anchors of an input, in the order documented above.

    boxes: (A, 4) float32 in input (resized) pixels; level: (A,) int64 level id;
    grid_sizes / strides: per level (H, W) and (sy, sx); shapes_per_cell: per level.
    """

    boxes: Tensor
    level: Tensor
    grid_sizes: list[tuple[int, int]]
    strides: list[tuple[int, int]]
    shapes_per_cell: list[int]

    @property
    def num_per_level(self) -> list[int]:
        return [h * w * s for (h, w), s in zip(self.grid_sizes, self.shapes_per_cell, strict=True)]


def make_anchors(config: AnchorConfig, grid_sizes: list[tuple[int, int]], padded_size: tuple[int, int]) -> LevelAnchors:
    """Anchors for feature levels of the given grid sizes over a (padded) input of `padded_size`.

    The stride of a level is `padded_size // grid_size`, as in torchvision.
    """
    boxes, levels, strides = [], [], []
    for level_id, (grid, sizes, ratios) in enumerate(zip(grid_sizes, config.sizes, config.aspect_ratios, strict=True)):
        stride = (padded_size[0] // grid[0], padded_size[1] // grid[1])
        shapes = base_anchors(sizes, ratios, config.round_base)
        level_boxes = grid_anchors(shapes, grid, stride, config.center_offset)
        boxes.append(level_boxes)
        levels.append(torch.full((len(level_boxes),), level_id, dtype=torch.int64))
        strides.append(stride)
    shapes_per_cell = config.num_anchors_per_location
    return LevelAnchors(torch.cat(boxes), torch.cat(levels), list(grid_sizes), strides, shapes_per_cell)


def inside_mask(anchors: Tensor, image_size: tuple[int, int]) -> Tensor:
    """(A,) bool: True for anchors lying fully inside an image of (height, width), edges included."""
    height, width = image_size
    return (anchors[:, 0] >= 0) & (anchors[:, 1] >= 0) & (anchors[:, 2] <= width) & (anchors[:, 3] <= height)
