"""Read one image file into the float tensor every stage consumes, or fail with one clear line.

Shapes: H, W are the height and width as the image is *displayed*, i.e. after its EXIF
orientation is applied (a 40x20 JPEG stored sideways with orientation 6 loads as H=40, W=20).

Every failure the user can cause (missing, empty, unreadable, truncated, corrupt or oversized
file) raises `InputError(path, problem)`; Pillow's `LOAD_TRUNCATED_IMAGES` stays False so a cut
file is an error, never a silently grey-padded image.
"""
from __future__ import annotations

import os
import struct
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from frcnn_core.errors import InputError

MAX_PIXELS: int = 89_478_485  # Pillow's default decompression-bomb warning limit

_SIXTEEN_BIT_FULL_SCALE = 2**16 - 1
_THIRTY_TWO_BIT_FULL_SCALE = 2**31 - 1  # Pillow's mode "I" is signed 32-bit


@dataclass(frozen=True)
class LoadedImage:
    """One decoded image.

    `tensor`: float32 (3, H, W), RGB, values in [0, 1], in displayed orientation.
    `path`: the path it was read from, as given.
    """

    path: str
    tensor: torch.Tensor

    @property
    def height(self) -> int:
        return int(self.tensor.shape[1])

    @property
    def width(self) -> int:
        return int(self.tensor.shape[2])


def load_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> LoadedImage:
    """Decode `path` into a `LoadedImage`, applying its EXIF orientation.

    Accepts modes 1, L, LA, P (with or without transparency), RGB, RGBA, CMYK, I;16*, I and F;
    alpha is dropped, integer grayscale is scaled by its bit depth (65535 -> 1.0 for 16-bit),
    float grayscale is clipped to [0, 1].
    `max_pixels` is checked against the header's width*height before any pixel is decoded.
    Raises `InputError` for every unreadable input; the file handle is always closed.
    """
    try:
        file = open(path, "rb")
    except OSError as error:
        reason = (error.strerror or str(error)).lower()
        raise InputError(path, f"cannot open file ({reason})") from error
    with file, warnings.catch_warnings():
        # Our own header check below turns the same condition into an error that names the size.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        if os.fstat(file.fileno()).st_size == 0:
            raise InputError(path, "file is empty")
        try:
            with Image.open(file) as stored:
                _check_pixel_count(path, stored.width, stored.height, max_pixels)
                stored.load()
                full_scale = _integer_full_scale(stored)
                displayed = ImageOps.exif_transpose(stored)
        except UnidentifiedImageError as error:
            raise InputError(path, "not a readable image (cannot identify image file)") from error
        except Image.DecompressionBombError as error:
            raise InputError(path, f"image is too large to decode safely ({error})") from error
        except (OSError, SyntaxError, ValueError, EOFError, struct.error) as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise InputError(path, f"image is truncated or corrupt ({reason})") from error
    return LoadedImage(str(path), _to_rgb_tensor(path, displayed, full_scale))


def _check_pixel_count(path: str | os.PathLike, width: int, height: int, max_pixels: int) -> None:
    """Raise `InputError` when width*height (from the header) exceeds `max_pixels`."""
    pixels = width * height
    if pixels > max_pixels:
        raise InputError(
            path,
            f"image is {width}x{height} = {pixels:,} pixels, over the {max_pixels:,}-pixel limit",
        )


def _integer_full_scale(image: Image.Image) -> int | None:
    """The value that means white for integer grayscale modes; None for every other mode.

    Pillow decodes PGM files with maxval > 255 to mode "I" but rescales them to 0..65535,
    so those are 16-bit data despite the 32-bit mode.
    """
    if image.mode.startswith("I;16"):
        return _SIXTEEN_BIT_FULL_SCALE
    if image.mode == "I":
        return _SIXTEEN_BIT_FULL_SCALE if image.format == "PPM" else _THIRTY_TWO_BIT_FULL_SCALE
    return None


def _to_rgb_tensor(
    path: str | os.PathLike, image: Image.Image, full_scale: int | None
) -> torch.Tensor:
    """Convert a decoded image to float32 (3, H, W) RGB in [0, 1]."""
    if full_scale is not None or image.mode == "F":
        gray = np.asarray(image, dtype=np.float64) / (full_scale or 1)
        gray = np.clip(np.nan_to_num(gray, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
        rgb = np.repeat(gray[:, :, None], 3, axis=2)  # (H, W) -> (H, W, 3)
    else:
        try:
            # Via RGBA so palette transparency is resolved by Pillow, then alpha is dropped.
            rgba = np.asarray(image.convert("RGBA"))
        except ValueError as error:
            raise InputError(path, f"unsupported pixel mode {image.mode}") from error
        rgb = rgba[:, :, :3] / 255.0
    chw = np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32)  # (H, W, 3) -> (3, H, W)
    return torch.from_numpy(chw)
