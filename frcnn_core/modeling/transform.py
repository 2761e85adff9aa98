"""Input preparation: normalise, resize, pad into a batch; and the way back to original pixels.

Images are (3, H, W) float in [0, 1]. The order (normalise, then resize bilinearly with
`recompute_scale_factor`, then zero-pad to a multiple of `size_divisible`) is torchvision's, so the
same weights see the same pixels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from frcnn_core.modeling.boxes import scale_boxes
from frcnn_core.modeling.config import TransformConfig


@dataclass(frozen=True)
class ImageBatch:
    """tensor (N, 3, Hp, Wp) padded; input_sizes: (h, w) of each resized image; original_sizes:
    (h, w) of each image as given."""

    tensor: Tensor
    input_sizes: list[tuple[int, int]]
    original_sizes: list[tuple[int, int]]

    def scale(self, index: int) -> tuple[float, float]:
        """(sy, sx) = resized / original for image `index`."""
        (h, w), (oh, ow) = self.input_sizes[index], self.original_sizes[index]
        return h / oh, w / ow


def normalize(image: Tensor, config: TransformConfig) -> Tensor:
    mean = torch.as_tensor(config.image_mean, dtype=image.dtype, device=image.device)
    std = torch.as_tensor(config.image_std, dtype=image.dtype, device=image.device)
    return (image - mean[:, None, None]) / std[:, None, None]


def _scale_factor(height: int, width: int, config: TransformConfig) -> float:
    return min(config.min_size / min(height, width), config.max_size / max(height, width))


def resize(image: Tensor, config: TransformConfig) -> Tensor:
    """Resize (3, H, W) by the config's rule (see `TransformConfig`)."""
    if config.fixed_size is not None:
        return F.interpolate(image[None], size=list(config.fixed_size), mode="bilinear", align_corners=False)[0]
    height, width = image.shape[-2:]
    return F.interpolate(image[None], scale_factor=_scale_factor(height, width, config), mode="bilinear",
                         recompute_scale_factor=True, align_corners=False)[0]


def resized_size(height: int, width: int, config: TransformConfig) -> tuple[int, int]:
    """(h, w) that `resize` gives an image of (height, width), without any pixel: interpolate
    floors size * factor."""
    if config.fixed_size is not None:
        return int(config.fixed_size[0]), int(config.fixed_size[1])
    factor = _scale_factor(height, width, config)
    return math.floor(height * factor), math.floor(width * factor)


def padded_size(height: int, width: int, size_divisible: int) -> tuple[int, int]:
    """(h, w) after zero-padding to multiples of `size_divisible` (`pad_batch`'s rule)."""
    return (int(math.ceil(height / size_divisible) * size_divisible),
            int(math.ceil(width / size_divisible) * size_divisible))


def pad_batch(images: list[Tensor], size_divisible: int) -> Tensor:
    """Zero-pad (3, Hi, Wi) images to one (N, 3, Hp, Wp) tensor, Hp and Wp multiples of size_divisible."""
    height, width = padded_size(max(i.shape[1] for i in images), max(i.shape[2] for i in images), size_divisible)
    batch = images[0].new_zeros((len(images), images[0].shape[0], height, width))
    for index, image in enumerate(images):  # not `zip(batch, ...)`: unbind's views refuse a copy that needs grad
        batch[index, :, : image.shape[1], : image.shape[2]].copy_(image)
    return batch


def prepare(images: list[Tensor], config: TransformConfig) -> ImageBatch:
    """Normalise, resize and pad a list of (3, H, W) images."""
    original_sizes = [(int(i.shape[1]), int(i.shape[2])) for i in images]
    resized = [resize(normalize(i, config), config) for i in images]
    input_sizes = [(int(i.shape[1]), int(i.shape[2])) for i in resized]
    return ImageBatch(pad_batch(resized, config.size_divisible), input_sizes, original_sizes)


def to_input(boxes: Tensor, batch: ImageBatch, index: int) -> Tensor:
    """Boxes (N, 4) of image `index` from original to input pixels."""
    return scale_boxes(boxes, batch.original_sizes[index], batch.input_sizes[index])


def to_original(boxes: Tensor, batch: ImageBatch, index: int) -> Tensor:
    """Boxes (..., 4) of image `index` from input to original pixels."""
    flat = scale_boxes(boxes.reshape(-1, 4), batch.input_sizes[index], batch.original_sizes[index])
    return flat.reshape(boxes.shape)
