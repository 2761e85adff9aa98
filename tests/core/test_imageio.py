"""Tests for frcnn_core.io.images: modes, EXIF orientation, and every user-caused failure."""
from __future__ import annotations

import io
import os
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image, ImageFile

from frcnn_core.errors import InputError
from frcnn_core.io.images import LoadedImage, load_image

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
EXIF_ORIENTATION_TAG = 0x0112


def _save(tmp_path: Path, image: Image.Image, name: str, **params) -> Path:
    path = tmp_path / name
    image.save(path, **params)
    return path


def _palette_image(transparent_index: int | None) -> Image.Image:
    image = Image.new("P", (2, 1))
    image.putpalette([*RED, *GREEN, *BLUE])
    image.putdata([0, 1])
    if transparent_index is not None:
        image.info["transparency"] = transparent_index
    return image


def _integer_image(mode: str, values: list[int]) -> Image.Image:
    image = Image.new(mode, (len(values), 1))
    image.putdata(values)
    return image


def _assert_valid(loaded: LoadedImage, height: int, width: int) -> None:
    assert loaded.tensor.shape == (3, height, width)
    assert loaded.tensor.dtype == torch.float32
    assert (loaded.height, loaded.width) == (height, width)
    assert 0.0 <= loaded.tensor.min() and loaded.tensor.max() <= 1.0


def _pixels(loaded: LoadedImage) -> list[tuple[float, float, float]]:
    """Row-major list of RGB triples of a one-row image."""
    return [tuple(column.tolist()) for column in loaded.tensor[:, 0, :].T]


# Each case: (file name, stored image, save params, expected RGB of each pixel of the one row).
MODE_CASES = {
    "L": ("l.png", Image.new("L", (1, 1), 51), {}, [(0.2, 0.2, 0.2)]),
    "LA": ("la.png", Image.new("LA", (1, 1), (51, 0)), {}, [(0.2, 0.2, 0.2)]),
    "RGB": ("rgb.png", Image.new("RGB", (1, 1), (255, 0, 51)), {}, [(1.0, 0.0, 0.2)]),
    "RGBA drops alpha": (
        "rgba.png", Image.new("RGBA", (1, 1), (255, 51, 0, 0)), {}, [(1.0, 0.2, 0.0)],
    ),
    "P": ("p.png", _palette_image(None), {}, [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0)]),
    "P transparent": ("pt.png", _palette_image(1), {}, [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0)]),
    "P transparent gif": ("pt.gif", _palette_image(0), {}, [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0)]),
    "CMYK": ("cmyk.tif", Image.new("CMYK", (1, 1), (0, 255, 0, 0)), {}, [(1.0, 0.0, 1.0)]),
    "1": ("one.png", _integer_image("1", [0, 255]), {}, [(0.0,) * 3, (1.0,) * 3]),
    "I;16": (
        "i16.png", _integer_image("I;16", [0, 32768, 65535]), {},
        [(0.0,) * 3, (32768 / 65535,) * 3, (1.0,) * 3],
    ),
    "I;16B": (
        "i16b.tif", _integer_image("I;16B", [0, 32768, 65535]), {},
        [(0.0,) * 3, (32768 / 65535,) * 3, (1.0,) * 3],
    ),
    "I 32-bit": (
        "i32.tif", _integer_image("I", [-5, 2**30, 2**31 - 1]), {},
        [(0.0,) * 3, (2**30 / (2**31 - 1),) * 3, (1.0,) * 3],
    ),
    "I from 16-bit PGM": (
        "i16.pgm", _integer_image("I", [0, 32768, 65535]), {},
        [(0.0,) * 3, (32768 / 65535,) * 3, (1.0,) * 3],
    ),
    "F clipped": (
        "f.tif", _integer_image("F", [-1.0, 0.25, 2.0]), {},
        [(0.0,) * 3, (0.25,) * 3, (1.0,) * 3],
    ),
}


@pytest.mark.parametrize("case", MODE_CASES.values(), ids=MODE_CASES.keys())
def test_each_mode_loads_as_rgb_float(tmp_path, case):
    name, image, params, expected = case
    path = _save(tmp_path, image, name, **params)
    loaded = load_image(path)
    _assert_valid(loaded, height=1, width=len(expected))
    assert loaded.path == str(path)
    for got, want in zip(_pixels(loaded), expected, strict=True):
        assert got == pytest.approx(want, abs=1e-6)


def test_sixteen_bit_white_is_not_clipped_at_255(tmp_path):
    path = _save(tmp_path, _integer_image("I;16", [255, 65535]), "i16.png")
    assert load_image(path).tensor[0, 0].tolist() == pytest.approx([255 / 65535, 1.0])


@settings(max_examples=25, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 5), st.integers(1, 5), st.just(3))))
def test_rgb_png_round_trips_as_values_over_255(rgb):
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "PNG")
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "roundtrip.png"
        path.write_bytes(buffer.getvalue())
        loaded = load_image(path)
    expected = torch.from_numpy(rgb.transpose(2, 0, 1).astype(np.float32) / 255)
    assert torch.allclose(loaded.tensor, expected)


def _marked_image(width: int, height: int) -> Image.Image:
    """Black image with a red marker at the stored top-left pixel."""
    image = Image.new("RGB", (width, height))
    image.putpixel((0, 0), RED)
    return image


def _with_orientation(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[EXIF_ORIENTATION_TAG] = orientation
    return exif.tobytes()


# orientation -> (displayed height, displayed width, (row, col) of the stored top-left pixel),
# for a stored image 4 wide and 2 high.
ORIENTATION_CASES = {
    3: (2, 4, (1, 3)),  # rotated 180: top-left -> bottom-right
    6: (4, 2, (0, 1)),  # rotate 90 clockwise to display: top-left -> top-right
    8: (4, 2, (3, 0)),  # rotate 90 counter-clockwise to display: top-left -> bottom-left
}


@pytest.mark.parametrize("orientation", ORIENTATION_CASES)
def test_exif_orientation_gives_displayed_orientation(tmp_path, orientation):
    image = _marked_image(width=4, height=2)
    path = _save(tmp_path, image, "oriented.png", exif=_with_orientation(orientation))
    height, width, (marker_row, marker_col) = ORIENTATION_CASES[orientation]
    loaded = load_image(path)
    _assert_valid(loaded, height, width)
    red_pixels = (loaded.tensor[0] == 1.0).nonzero().tolist()
    assert red_pixels == [[marker_row, marker_col]]


def test_jpeg_with_orientation_6_swaps_width_and_height(tmp_path):
    image = Image.new("RGB", (40, 20))
    image.paste(RED, (0, 0, 8, 8))  # a block survives JPEG compression; a pixel might not
    path = _save(tmp_path, image, "photo.jpg", exif=_with_orientation(6), quality=95)
    loaded = load_image(path)
    _assert_valid(loaded, height=40, width=20)
    assert loaded.tensor[0, 2, 17] > 0.9  # stored top-left now at the top-right
    assert loaded.tensor[0, 37, 2] < 0.1


def _assert_input_error(path: Path, fragment: str, **kwargs) -> InputError:
    with pytest.raises(InputError) as caught:
        load_image(path, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert fragment in message
    return caught.value


def test_missing_file(tmp_path):
    _assert_input_error(tmp_path / "absent.png", "cannot open file (no such file or directory)")


def test_directory(tmp_path):
    _assert_input_error(tmp_path, "cannot open file (is a directory)")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    _assert_input_error(path, "file is empty")


def test_text_file_named_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not an image\n")
    _assert_input_error(path, "not a readable image (cannot identify image file)")


def _noise(size: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (size, size, 3), np.uint8))


@pytest.mark.parametrize("name", ["cut.png", "cut.jpg"])
def test_truncated_file_is_rejected(tmp_path, name):
    path = _save(tmp_path, _noise(32), name)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    _assert_input_error(path, "image is truncated or corrupt")


def test_corrupt_pixel_data_is_rejected(tmp_path):
    path = _save(tmp_path, _noise(32), "garbled.png")
    data = bytearray(path.read_bytes())
    idat_start = data.index(b"IDAT") + 4
    data[idat_start : idat_start + 64] = bytes(64)
    path.write_bytes(bytes(data))
    _assert_input_error(path, "image is truncated or corrupt")


def _png_with_header_size(tmp_path: Path, width: int, height: int) -> Path:
    """A valid 1x1 PNG whose IHDR claims `width` x `height` (CRC fixed so the header parses)."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    # signature (8) + IHDR length (4) + b"IHDR" (4), then width and height as big-endian u32.
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path = tmp_path / f"bomb_{width}x{height}.png"
    path.write_bytes(bytes(data))
    return path


@pytest.fixture
def decode_calls(monkeypatch) -> list[str]:
    """Records every pixel decode (ImageFile.load) made while the test runs."""
    calls: list[str] = []
    original_load = ImageFile.ImageFile.load

    def spying_load(self):
        calls.append(self.format)
        return original_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spying_load)
    return calls


def test_over_limit_header_reports_size_and_never_decodes(tmp_path, decode_calls):
    path = _png_with_header_size(tmp_path, 10_000, 10_000)
    error = _assert_input_error(
        path, "image is 10000x10000 = 100,000,000 pixels, over the 89,478,485-pixel limit"
    )
    assert error.path == str(path)
    assert decode_calls == []


def test_bomb_sized_header_never_decodes(tmp_path, decode_calls):
    path = _png_with_header_size(tmp_path, 50_000, 50_000)
    _assert_input_error(path, "image is too large to decode safely")
    assert decode_calls == []


def test_small_max_pixels_rejects_before_decoding(tmp_path, decode_calls):
    path = _save(tmp_path, Image.new("RGB", (4, 3)), "small.png")
    _assert_input_error(path, "image is 4x3 = 12 pixels, over the 11-pixel limit", max_pixels=11)
    assert decode_calls == []
    assert load_image(path, max_pixels=12).tensor.shape == (3, 3, 4)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to count open files")
def test_file_handles_are_closed(tmp_path):
    good = _save(tmp_path, Image.new("RGB", (2, 2)), "good.png")
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    open_before = len(os.listdir("/proc/self/fd"))
    load_image(good)
    with pytest.raises(InputError):
        load_image(bad)
    assert len(os.listdir("/proc/self/fd")) == open_before
