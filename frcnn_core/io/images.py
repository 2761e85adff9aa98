"""Read one image file into the float tensor every stage consumes, or fail with one clear line.

Shapes: H, W are the height and width as the image is *displayed*, i.e. after its EXIF
orientation is applied (a 40x20 JPEG stored sideways with orientation 6 loads as H=40, W=20).

Every failure the user can cause (missing, empty, unreadable, truncated, corrupt or oversized
file) raises `InputError(path, problem)`; Pillow's `LOAD_TRUNCATED_IMAGES` stays False so a cut
file is an error, never a silently grey-padded image. `image_size` reads the header alone and
fails the same way, so that a folder can be listed without decoding a picture.
"""
from __future__ import annotations

import os
import re
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from frcnn_core.errors import InputError

if TYPE_CHECKING:
    import torch

MAX_PIXELS: int = 89_478_485  # Pillow's default decompression-bomb warning limit

_EXIF_ORIENTATION = 0x0112
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
    with _opened(path, max_pixels) as stored:
        stored.load()
        full_scale = _integer_full_scale(stored)
        displayed = ImageOps.exif_transpose(stored)
    return LoadedImage(str(path), _to_rgb_tensor(path, displayed, full_scale))


def image_size(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """(W, H) of the image as load_image would return it, from the header only (no pixel is
    decoded); raises the `InputError` load_image would raise for a missing, empty, unreadable or
    oversized file."""
    with _opened(path, max_pixels) as stored:
        width, height = stored.size
        orientation = stored.getexif().get(_EXIF_ORIENTATION, 1)
    # Orientations 5-8 turn the picture by 90 degrees, as exif_transpose does.
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


@contextmanager
def _opened(path: str | os.PathLike, max_pixels: int) -> Iterator[Image.Image]:
    """The image at `path` with its header read and its size checked against `max_pixels`;
    every failure, inside the block too, becomes an `InputError`."""
    try:
        file = open(path, "rb")  # noqa: SIM115 (the `with` below closes it; opened apart to word the OSError)
    except OSError as error:
        reason = (error.strerror or str(error)).lower()
        raise InputError(path, f"cannot open file ({reason})") from error
    with file, warnings.catch_warnings():
        # Our own header check below turns the same condition into an error that names the size.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        # Pillow warns on damaged metadata it can read past ("Corrupt EXIF data"): the pixels are
        # what we load, and a warning on stderr would be a second line beside ours.
        warnings.simplefilter("ignore", UserWarning)
        if os.fstat(file.fileno()).st_size == 0:
            raise InputError(path, "file is empty")
        try:
            with Image.open(file) as stored:
                _check_pixel_count(path, stored.width, stored.height, max_pixels)
                yield stored
        except UnidentifiedImageError as error:
            raise InputError(path, "not a readable image (cannot identify image file)") from error
        except Image.DecompressionBombError as error:
            raise InputError(path, _too_large_to_open(error, max_pixels)) from error
        except (OSError, SyntaxError, ValueError, EOFError, struct.error) as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise InputError(path, f"image is truncated or corrupt ({reason})") from error


def _too_large_to_open(error: Image.DecompressionBombError, max_pixels: int) -> str:
    """The problem of an image so large (over twice Pillow's own limit) that Pillow refuses to
    open it at all, which hides its width and height; Pillow's message holds its pixel count."""
    counted = re.search(r"\((\d+) pixels\)", str(error))
    if counted is None:
        return f"image is too large to decode safely ({error})"
    return f"image is too large to decode safely: {int(counted.group(1)):,} pixels, over the {max_pixels:,}-pixel limit"


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
    """Convert a decoded image to float32 (3, H, W) RGB in [0, 1].

    Only the float32 result and one copy of the decoded pixels are alive at once (no float64
    colour image): an 89-Mpx picture takes ~1.4 GB, not ~3.5 GB.
    """
    import torch  # here, not at the top: the window reads images and annotations before torch is imported
    if full_scale is not None or image.mode == "F":
        gray = np.asarray(image, dtype=np.float64) / (full_scale or 1)
        gray = np.clip(np.nan_to_num(gray, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
        return torch.from_numpy(gray.astype(np.float32)).expand(3, -1, -1).contiguous()  # (H, W) -> (3, H, W)
    try:
        # Via RGBA so palette transparency is resolved by Pillow, then alpha is dropped.
        rgba = np.asarray(image.convert("RGBA"))
    except ValueError as error:
        raise InputError(path, f"unsupported pixel mode {image.mode}") from error
    chw = rgba[:, :, :3].transpose(2, 0, 1).astype(np.float32, order="C")  # (H, W, 4) -> (3, H, W)
    chw /= np.float32(255)  # in float32 v / 255 is float32(v / 255.0) for every byte value
    return torch.from_numpy(chw)
