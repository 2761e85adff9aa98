"""Shared test data: a one-image dataset of 200 random float boxes, for exact round trips."""
from __future__ import annotations

import torch
from PIL import Image

from frcnn_core.data.dataset import DetectionDataset, Sample


def random_boxes_dataset(folder) -> DetectionDataset:
    """A 640x480 black image in `folder` with 200 seeded random boxes of 3 classes (not sorted)."""
    Image.new("RGB", (640, 480)).save(folder / "a.png")
    corners = torch.rand(200, 2, generator=torch.Generator().manual_seed(1)) * 400
    sizes = torch.rand(200, 2, generator=torch.Generator().manual_seed(2)) * 70 + 0.01
    boxes = torch.cat([corners, corners + sizes], dim=1)
    labels = torch.randint(1, 4, (200,), generator=torch.Generator().manual_seed(3))
    return DetectionDataset([Sample(str(folder / "a.png"), boxes, labels, 640, 480)], ["__background__", "c", "b", "a"])
