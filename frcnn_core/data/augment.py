"""Detection augmentations: flips, scale jitter and photometric jitter; boxes follow the image.

Shapes: image float32 (3, H, W) in [0, 1]; boxes (G, 4) x1 y1 x2 y2 pixels. Every random draw
comes from an explicit torch.Generator. `Augment` seeds its generator from (seed, epoch,
image_id), so an image gets the same augmentation in any worker process and on any rerun.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF


def hflip(image: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror left-right: x -> W - x, so (x1, x2) -> (W - x2, W - x1)."""
    width = image.shape[-1]
    return image.flip(-1), torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)


def vflip(image: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror top-bottom: y -> H - y, so (y1, y2) -> (H - y2, H - y1)."""
    height = image.shape[-2]
    return image.flip(-2), torch.stack([boxes[:, 0], height - boxes[:, 3], boxes[:, 2], height - boxes[:, 1]], dim=1)


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def scale_jitter(
    image: torch.Tensor, boxes: torch.Tensor, scales: tuple[float, float], generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize by a random factor in [scales[0], scales[1]] (bilinear, antialiased).

    The output size is rounded to whole pixels; boxes are scaled by the actual ratio per axis
    (new W / W, new H / H), so they stay on the same image content.
    """
    factor = _uniform(generator, *scales)
    height, width = image.shape[-2:]
    new_height, new_width = max(1, round(height * factor)), max(1, round(width * factor))
    if (new_height, new_width) == (height, width):
        return image, boxes
    resized = F.interpolate(image[None], size=(new_height, new_width), mode="bilinear",
                            align_corners=False, antialias=True)[0].clamp(0.0, 1.0)
    ratio = torch.tensor([new_width / width, new_height / height] * 2, dtype=boxes.dtype)
    return resized, boxes * ratio


def photometric(
    image: torch.Tensor, generator: torch.Generator,
    brightness: float = 0.2, contrast: float = 0.2, saturation: float = 0.2, hue: float = 0.0,
) -> torch.Tensor:
    """Brightness, contrast and saturation factors drawn from [1 - a, 1 + a], hue shift from
    [-hue, hue], applied in that fixed order; the result stays in [0, 1]."""
    brightness_factor = _uniform(generator, 1 - brightness, 1 + brightness)
    contrast_factor = _uniform(generator, 1 - contrast, 1 + contrast)
    saturation_factor = _uniform(generator, 1 - saturation, 1 + saturation)
    hue_shift = _uniform(generator, -hue, hue)
    image = TF.adjust_brightness(image, brightness_factor)
    image = TF.adjust_contrast(image, contrast_factor)
    image = TF.adjust_saturation(image, saturation_factor)
    return TF.adjust_hue(image, hue_shift) if hue > 0 else image


@dataclass(frozen=True)
class AugmentConfig:
    """hflip, vflip: probabilities; scale: the range of scale_jitter ((1, 1) = off)."""

    hflip: float = 0.5
    vflip: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)
    photometric: bool = False


class Augment:
    """DetectionDataset.transform: flips, scale jitter, photometric jitter as configured.

    Deterministic in (seed, epoch, target["image_id"]); the trainer sets `epoch`. Picklable, so
    it travels to DataLoader workers (which see the `epoch` of the moment they are started).
    """

    def __init__(self, config: AugmentConfig, seed: int = 0):
        self.config = config
        self.seed = seed
        self.epoch = 0

    def generator_for(self, image_id: int) -> torch.Generator:
        """A generator seeded from (seed, epoch, image_id) by a hash that is stable across runs."""
        key = f"{self.seed}:{self.epoch}:{int(image_id)}".encode()
        seed = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")
        return torch.Generator().manual_seed(seed)

    def __call__(self, image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
        config = self.config
        generator = self.generator_for(target["image_id"])
        boxes = target["boxes"]
        # Both coins are always drawn, so enabling one option does not change the others' draws.
        flip_horizontal = float(torch.rand((), generator=generator)) < config.hflip
        flip_vertical = float(torch.rand((), generator=generator)) < config.vflip
        if flip_horizontal:
            image, boxes = hflip(image, boxes)
        if flip_vertical:
            image, boxes = vflip(image, boxes)
        if tuple(config.scale) != (1.0, 1.0):
            image, boxes = scale_jitter(image, boxes, config.scale, generator)
        if config.photometric:
            image = photometric(image, generator)
        return image, {**target, "boxes": boxes}
