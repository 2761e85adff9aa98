"""The picture `frcnn explain` writes: a saliency map over the photo, the explained box, a caption.

The map's positive part is normalised to its maximum and drawn in the jet colours with an opacity
that grows with the value, so the photo stays visible where the score does not rest.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw

from frcnn_core.render.stage_pictures import _JET, _colour_map, _Style, _tag, _with_caption

MAX_OPACITY = 0.7


def heat_layer(heatmap: torch.Tensor) -> np.ndarray:
    """(H, W) map -> (H, W, 4) uint8 RGBA: jet colour by value over the positive maximum, opacity
    MAX_OPACITY times that share (0 where the map is at or below 0)."""
    values = heatmap.detach().float().cpu().clamp(min=0).numpy()
    peak = float(values.max())
    share = values / peak if peak > 0 else np.zeros_like(values)
    alpha = np.round(share * MAX_OPACITY * 255).astype(np.uint8)
    return np.concatenate([_colour_map(share, _JET), alpha[..., None]], axis=-1)


def render_saliency(image: torch.Tensor, heatmap: torch.Tensor, box: torch.Tensor, tag: str,
                    caption: str) -> Image.Image:
    """image (3, H, W) in [0, 1]; heatmap (H, W); box (4,) in original pixels, outlined in white
    with `tag` on it. Returns an RGB image of (W, H + caption band)."""
    pixels = (image.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    picture = Image.fromarray(np.ascontiguousarray(pixels), mode="RGB").convert("RGBA")
    picture.alpha_composite(Image.fromarray(heat_layer(heatmap), mode="RGBA"))
    picture = picture.convert("RGB")
    style = _Style.for_size(picture.height, picture.width)
    draw = ImageDraw.Draw(picture)
    x1, y1, x2, y2 = (float(v) for v in box)
    draw.rectangle((x1 - 1, y1 - 1, x2 + 1, y2 + 1), outline=(0, 0, 0), width=style.thick + 2)
    draw.rectangle((x1, y1, x2, y2), outline=(255, 255, 255), width=style.thick)
    _tag(draw, [x1, y1, x2, y2], tag, (255, 255, 255), style.font)
    return _with_caption(picture, caption, style.font)
